"""VBPR and BPR-MF (Cornac): visrec's numbers against Cornac's own evaluation, the cold-item rule
by hand, the training objective against Cornac's score, bad input, and where the rows appear."""
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue.data import Catalogue
from visrec_utils.catalogue.protocols import make_split
from visrec_utils.catalogue.splits import Split, restrict_truth
from visrec_utils.core.linalg import l2_normalize
from visrec_utils.evaluation import experiment, factorization, recommenders

cornac = pytest.importorskip("cornac")
torch = pytest.importorskip("torch")


def _catalogue(n_users=40, n_items=60, seed=0, cold=()):
    """Customers with two to four dated baskets; the ``cold`` items are bought in test (last)
    baskets only; a customer with one basket (never tested) buys every other item that no
    training basket holds, so every item but the cold ones is a training item."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for b in range(int(rng.integers(2, 5))):
            day = pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(10 * b + rng.integers(0, 9)))
            rows += [(f"u{u:02d}", f"i{i:03d}", day) for i in rng.choice(n_items, int(rng.integers(1, 5)), replace=False)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates()
    in_test = (inter["timestamp"] == inter.groupby("user_id")["timestamp"].transform("max")).to_numpy()
    inter, in_test = inter[~inter["item_id"].isin(cold) | in_test], in_test[~inter["item_id"].isin(cold) | in_test]
    for c in cold:  # bought by the first customer at their test basket
        if not (in_test & (inter["item_id"] == c).to_numpy()).any():
            first = inter.iloc[int(np.flatnonzero(in_test)[0])]
            inter = pd.concat([inter, pd.DataFrame([(first.user_id, c, first.timestamp)], columns=inter.columns)])
            in_test = np.append(in_test, True)
    items = pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(n_items)], "image_path": ""})
    missing = sorted(set(items["item_id"]) - set(inter.loc[~in_test, "item_id"]) - set(cold))
    filler = pd.DataFrame({"user_id": "zz", "item_id": missing, "timestamp": pd.Timestamp("2019-12-01")})
    return Catalogue(items=items, interactions=pd.concat([inter, filler], ignore_index=True))


def _split(**kw) -> Split:
    return make_split(_catalogue(**kw), "leave_last_basket_out", availability="catalogue")


def _emb(n_items=60, dim=16, seed=1):
    return np.random.default_rng(seed).normal(size=(n_items, dim)).astype(np.float32)


def _cornac_train(split, model):
    """The training pairs as a Cornac dataset in the fitted model's own user and item indices."""
    tr = split.train[["user_id", "item_idx"]].drop_duplicates()
    return cornac.data.Dataset.build(list(zip(tr["user_id"].astype(str), tr["item_idx"].astype(str), np.ones(len(tr)))),
                                     global_uid_map=OrderedDict(model.uid_map), global_iid_map=OrderedDict(model.iid_map))


def test_visrec_numbers_equal_cornacs_ranking_eval_where_the_candidates_agree():
    """Every item is a training item and every test customer's profile is their training items, so
    Cornac's candidates (all items minus the customer's training items) are visrec's (the
    catalogue minus the profile). Same fitted model, both evaluators: the same AUC, Recall@k and
    nDCG@k per customer (scores agree to 1e-5, so the rankings are the same)."""
    from cornac.eval_methods import ranking_eval
    from cornac.metrics import AUC, NDCG, Recall

    split, emb = _split(), _emb()
    assert set(split.train["item_idx"]) == set(range(split.n_items))  # no cold item in this slice
    assert all(np.array_equal(split.profiles[p], np.unique(split.train.loc[split.train["user_id"] == u, "item_idx"]))
               for p, u in enumerate(split.users))
    _, per_user = experiment.run_experiment(split, {("m", "frozen"): emb}, ["vbpr"], ["bpr_mf"], ks=(5, 10),
                                            n_resamples=20, progress=False, cache_dir=False)
    for rec in (recommenders.create_recommender("vbpr").fit(split, emb),
                recommenders.create_recommender("bpr_mf").fit(split)):
        model = rec.cornac_model
        train = _cornac_train(split, model)
        test = cornac.data.Dataset.build([(str(u), str(i), 1.0) for u, t in zip(split.users, split.truth) for i in t],
                                         global_uid_map=OrderedDict(model.uid_map),
                                         global_iid_map=OrderedDict(model.iid_map), exclude_unknowns=True)
        ours = per_user[per_user["recommender"] == rec.name].set_index("user_id")
        names = ["auc", "recall@5", "recall@10", "ndcg@10"]
        _, theirs = ranking_eval(model, [AUC(), Recall(k=5), Recall(k=10), NDCG(k=10)], train, test)
        user_of = {row: raw for raw, row in model.uid_map.items()}
        assert len(theirs[0]) == split.n_users == len(ours)
        for name, res in zip(names, theirs):
            for row, value in res.items():
                assert ours.loc[user_of[row], name] == pytest.approx(value, abs=1e-9), (rec.name, name, user_of[row])
        item_of = np.array([int(raw) for raw, _ in sorted(model.iid_map.items(), key=lambda kv: kv[1])])
        for p, u in enumerate(split.users[:5]):  # the scores themselves, in visrec's item order
            np.testing.assert_allclose(rec.score(np.array([p]))[0, item_of], model.score(model.uid_map[str(u)]),
                                       rtol=1e-5, atol=1e-5)


def test_a_cold_item_is_scored_by_the_visual_term_alone():
    """Item 5 is bought only in test baskets: no collaborative factors. VBPR's score of it is
    theta_u . (E^T f_5) + beta' . f_5 from the fitted parameters; a training item's is Cornac's
    own ``score``; BPR-MF ties cold items at the customer's lowest score; a customer without
    training purchases gets the item biases."""
    split, emb = _split(seed=3, cold=("i005",)), _emb(seed=4)
    assert 5 not in set(split.train["item_idx"]) and any(5 in t for t in split.truth)
    vbpr = recommenders.create_recommender("vbpr").fit(split, emb)
    m, f = vbpr.cornac_model, l2_normalize(emb)
    p = next(p for p, t in enumerate(split.truth) if 5 in t)
    u = m.uid_map[str(split.users[p])]
    got = vbpr.score(np.array([p]))[0]
    by_hand = m.theta_user[u] @ (m.emb_matrix.T @ f[5]) + float(f[5] @ m.beta_prime[:, 0])
    assert got[5] == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
    warm = int(split.train["item_idx"].iloc[0])
    assert got[warm] == pytest.approx(float(m.score(u, m.iid_map[str(warm)])), rel=1e-5, abs=1e-6)
    stranger = Split(users=np.array(["nobody"], dtype=object), profiles=[np.array([0])], truth=[np.array([5])],
                     test_day=np.array(["2021-01-01"], dtype="datetime64[ns]"), train=split.train,
                     n_items=split.n_items, interactions=split.interactions)
    alone = recommenders.create_recommender("vbpr").fit(stranger, emb).score(np.array([0]))[0]
    bias = np.zeros(split.n_items, np.float32)
    bias[[int(i) for i in m.iid_map]] = m.beta_item[list(m.iid_map.values())]
    np.testing.assert_allclose(alone, bias + f @ m.beta_prime[:, 0], rtol=1e-5, atol=1e-6)
    bpr = recommenders.create_recommender("bpr_mf").fit(split)
    s = bpr.score(np.array([p]))[0]
    known = np.array([int(i) for i in bpr.cornac_model.iid_map])
    assert s[5] == s[known].min() == pytest.approx(float(bpr.cornac_model.score(u).min()), abs=1e-6)


def test_the_training_objective_is_one_term_per_triple_of_cornacs_score():
    """The loss the loop minimises (regularisation off) is -sum log sigmoid(score(u, i) - score(u, j))
    with Cornac's own ``VBPR.score``; Cornac 3.0.1's loop instead sums a (batch, batch) matrix."""
    split, emb = _split(seed=5), _emb(seed=6)
    m = recommenders.create_recommender("vbpr").fit(split, emb).cornac_model
    names = ("beta_item", "gamma_user", "gamma_item", "theta_user", "emb_matrix", "beta_prime")
    params = {n: torch.tensor(getattr(m, n)) for n in names}
    f = l2_normalize(emb)[[int(raw) for raw, _ in sorted(m.iid_map.items(), key=lambda kv: kv[1])]]
    rng = np.random.default_rng(0)
    u, i, j = rng.integers(0, m.num_users, 7), rng.integers(0, m.num_items, 7), rng.integers(0, m.num_items, 7)
    loss = factorization.vbpr_loss(params, torch.from_numpy(f), *map(torch.from_numpy, (u, i, j)), 0.0, 0.0, 0.0)
    x = np.array([m.score(a, b) - m.score(a, c) for a, b, c in zip(u, i, j)], np.float64)
    assert float(loss) == pytest.approx(float(np.logaddexp(0, -x).sum()), rel=1e-5)


def test_cornacs_own_vbpr_loop_still_sums_every_pair_of_a_batch(monkeypatch):
    """A sentinel: when this fails, Cornac's VBPR loss is per triple and its own ``_fit_torch`` can
    replace visrec's loop (visrec_utils/evaluation/factorization.py)."""
    shapes = []
    real = torch.nn.functional.logsigmoid
    monkeypatch.setattr(torch.nn.functional, "logsigmoid", lambda x: shapes.append(tuple(x.shape)) or real(x))
    data = [(f"u{u}", f"i{(u + k) % 9}", 1.0) for u in range(6) for k in range(3)]
    ds = cornac.data.Dataset.build(data, seed=0)
    ds.add_modalities(item_image=cornac.data.ImageModality(features=_emb(9, 4), ids=[f"i{i}" for i in range(9)])
                      .build(id_map=ds.iid_map))
    cornac.models.VBPR(k=2, k2=2, n_epochs=1, batch_size=4, verbose=False, seed=0).fit(ds)
    assert shapes[0] == (4, 4)


def test_vbpr_without_an_embedding_set_names_the_fix():
    split = _split()
    want = ("vbpr needs an embedding set (n_items, dim): list it under recommenders (run once per embedding set), "
            "not under baselines")
    with pytest.raises(ValueError) as e:
        recommenders.create_recommender("vbpr").fit(split)
    assert str(e.value) == want
    with pytest.raises(ValueError) as e:
        experiment.run_experiment(split, {}, [], ["vbpr"], n_resamples=10, progress=False, cache_dir=False)
    assert str(e.value) == want
    with pytest.raises(ValueError, match="^embeddings have 3 rows, the catalogue 60 items$"):
        recommenders.create_recommender("vbpr").fit(split, np.zeros((3, 4), np.float32))


def test_a_training_part_with_a_test_purchase_is_refused():
    split = _split()
    p = 0
    leak = pd.DataFrame({"user_id": [split.users[p]], "item_idx": [int(split.truth[p][0])],
                         "timestamp": [split.test_day[p]], "item_id": ["x"]})
    bad = Split(users=split.users, profiles=split.profiles, truth=split.truth, test_day=split.test_day,
                train=pd.concat([split.train, leak], ignore_index=True), n_items=split.n_items,
                interactions=split.interactions)
    with pytest.raises(ValueError, match=r"^training data holds 1 test purchases \(.+\); train on split.train, "
                                         r"which leaves every test point out$"):
        recommenders.create_recommender("bpr_mf").fit(bad)


def test_fits_are_reproducible_shared_by_splits_of_the_same_purchases_and_only_on_frozen_sets():
    split, emb = _split(seed=7), _emb(seed=8)
    first = recommenders.create_recommender("vbpr").fit(split, emb)
    scores = first.score(np.arange(split.n_users))
    factorization._FITS.clear()
    again = recommenders.create_recommender("vbpr").fit(_split(seed=7), emb.copy())  # fitted anew, same numbers
    assert again.cornac_model is not first.cornac_model
    np.testing.assert_array_equal(again.score(np.arange(split.n_users)), scores)
    warm = restrict_truth(split, "warm")  # same training part: the fit is reused
    assert recommenders.create_recommender("vbpr").fit(warm, emb).cornac_model is again.cornac_model
    assert recommenders.create_recommender("vbpr", seed=1).fit(split, emb).cornac_model is not again.cornac_model
    sets = {("m", "frozen"): emb, ("m", "bpr_projection"): emb, ("m@stage2", "frozen"): emb}
    m, _ = experiment.run_experiment(split, sets, ["visrank_max", "vbpr"], [], ks=(5,), n_resamples=10,
                                     progress=False, cache_dir=False)
    rows = set(map(tuple, m[["model", "strategy", "recommender"]].drop_duplicates().to_numpy()))
    assert {r for r in rows if r[2] == "vbpr"} == {("m", "frozen", "vbpr")}
    assert len({r for r in rows if r[2] == "visrank_max"}) == 3
    assert recommenders.create_recommender("vbpr", every_set=True).accepts("m@stage2", "contrastive")
    assert [recommenders.VBPR(k=20).name, recommenders.BPRMF(learning_rate=0.01).name] == \
        ["vbpr_k20", "bpr_mf_learning_rate0.01"]


def test_the_index_key_table_shows_vbpr_under_each_model_and_bpr_mf_among_the_baselines(tmp_path):
    from visrec_utils.reports import index

    (tmp_path / "results").mkdir()
    rows = []
    for model, strategy, rec, auc in (("mobilenetv1_025_keras", "frozen", "vbpr", 0.7),
                                      ("mobilenetv1_025_keras", "frozen", "visrank_max", 0.6),
                                      ("tf_efficientnet_lite0", "frozen", "visrank_max", 0.65),
                                      ("tf_efficientnet_lite0", "frozen", "vbpr", 0.72),
                                      ("tf_efficientnet_lite0", "bpr_projection", "vbpr", 0.5),
                                      ("-", "-", "bpr_mf", 0.4), ("-", "-", "random", 0.5)):
        rows.append({"model": model, "strategy": strategy, "recommender": rec, "metric": "auc", "k": None,
                     "value": auc, "ci_low": auc - 0.01, "ci_high": auc + 0.01})
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "metrics.csv", index=False)
    pd.DataFrame({"model": ["mobilenetv1_025_keras", "tf_efficientnet_lite0"], "published_top1": [50.6, 75.2]}).to_csv(
        tmp_path / "results" / "models.csv", index=False)
    table = index.key_table(tmp_path)
    assert table["configuration"].tolist() == ["EfficientNet-Lite0", "EfficientNet-Lite0, VBPR", "MobileNet-V1 0.25",
                                               "MobileNet-V1 0.25, VBPR", "BPR-MF", "random"]
    assert table["AUC [95% interval]"].tolist()[:2] == ["0.650 [0.640, 0.660]", "0.720 [0.710, 0.730]"]


def test_notebook_05_correlates_top1_with_vbpr_on_the_same_models(tmp_path):
    from scipy import stats as sst

    from visrec_utils.core.layout import StudyLayout
    from visrec_utils.pipeline.stages import stage_compare
    from visrec_utils.reports import analysis

    rng = np.random.default_rng(0)
    models = pd.DataFrame({"model": ["a", "b", "c", "d"], "published_top1": [70.0, 75.0, 80.0, 72.0]})
    per_user, metrics = [], []
    for rec, slope in (("visrank_max", 0.01), ("vbpr", -0.01)):
        for m, top1 in zip(models["model"], models["published_top1"]):
            vals = np.clip(0.1 + slope * (top1 - 75) + rng.normal(0, 0.05, 30), 0, 1)
            per_user.append(pd.DataFrame({"model": m, "strategy": "frozen", "recommender": rec,
                                          "user_id": [f"u{i}" for i in range(30)], "ndcg@20": vals, "auc": vals}))
            metrics += [{"model": m, "strategy": "frozen", "recommender": rec, "metric": name, "k": k,
                         "value": vals.mean(), "ci_low": 0, "ci_high": 1} for name, k in (("ndcg", 20), ("auc", 0))]
    per_user, metrics = pd.concat(per_user, ignore_index=True), pd.DataFrame(metrics)
    out = StudyLayout(tmp_path).make_dirs()
    used = analysis.imagenet_table(metrics, models)  # the main correlations' models (VisRank-max) ...
    used = used[used["model"] != "d"]  # ... without, e.g., a flagged checkpoint
    table, text = stage_compare.recommender_correlations(out, metrics, models, used, per_user, "frozen",
                                                         ["visrank_max", "vbpr"], 200, 0)
    rho = table[(table["metric"] == "ndcg@20") & (table["coefficient"] == "spearman_rho")].set_index("recommender")
    for rec in ("visrank_max", "vbpr"):
        means = per_user[(per_user["recommender"] == rec) & per_user["model"].isin(used["model"])] \
            .groupby("model", sort=False)["ndcg@20"].mean()
        want = sst.spearmanr(used.set_index("model").loc[means.index, "published_top1"], means).statistic
        assert rho.loc[rec, "estimate"] == pytest.approx(want) and rho.loc[rec, "n_models"] == 3
    assert text.startswith("**VisRank (max)**: spearman_rho between top-1 and ndcg@20 over 3 models:")
    assert "\n\n**VBPR**: spearman_rho between top-1 and ndcg@20 over 3 models:" in text
    assert pd.read_csv(out.result("correlations_by_recommender"))["recommender"].unique().tolist() == \
        ["visrank_max", "vbpr"]
    _, text = stage_compare.recommender_correlations(out, metrics[metrics["recommender"] != "vbpr"], models, used,
                                                     per_user, "frozen", ["visrank_max", "vbpr"], 50, 0)
    assert text.endswith("\n\nVBPR: not evaluated in notebook 04 (not among its recommenders).")
    table, text = stage_compare.recommender_correlations(out, metrics, models, used.iloc[:2], per_user, "frozen",
                                                         ["visrank_max", "vbpr"], 50, 0)
    assert table.empty and text == ("Not estimated: a correlation across models needs at least 3 ImageNet models "
                                    "with both a published top-1 and auc values, and this study has 2.")


def test_the_set_by_set_evaluation_computes_no_similarity_rows_for_vbpr_alone(monkeypatch, tmp_path):
    from visrec_utils.evaluation import set_major

    calls = []
    real = set_major.similarity_rows
    monkeypatch.setattr(set_major, "similarity_rows", lambda emb, splits: calls.append(len(splits)) or real(emb, splits))
    split, sets = _split(), {("m", "frozen"): _emb()}
    kw = dict(ks=(5,), cache_dir=tmp_path, progress=False)
    assert set_major.evaluate_set_major([(split, sets, ["vbpr"])], **kw) == 1 and calls == []
    assert set_major.evaluate_set_major([(split, sets, ["vbpr", "visrank_max"])], **kw) == 1 and calls == [1]
    cached, _ = experiment.run_experiment(split, sets, ["vbpr"], [], ks=(5,), n_resamples=20, progress=False,
                                          cache_dir=tmp_path)
    fresh, _ = experiment.run_experiment(split, sets, ["vbpr"], [], ks=(5,), n_resamples=20, progress=False,
                                         cache_dir=False)
    pd.testing.assert_frame_equal(cached, fresh)


def test_a_fit_started_ahead_is_the_fit_itself_and_errors_surface_at_fit(monkeypatch, tmp_path):
    """VBPR.fit_ahead runs the fit in the fit-ahead thread: fit() takes it (no second fit), with
    the same numbers as a fit in the caller's thread; a failing fit raises at fit(); the set-by-set
    evaluation starts every VBPR fit ahead and leaves none queued."""
    from visrec_utils.evaluation import set_major

    split, emb = _split(seed=11), _emb(seed=12)
    factorization._FITS.clear()
    inline = recommenders.create_recommender("vbpr").fit(split, emb).score(np.arange(split.n_users))
    factorization._FITS.clear()
    fut = recommenders.create_recommender("vbpr").fit_ahead(split, emb)
    assert fut is not None and recommenders.create_recommender("vbpr").fit_ahead(split, emb) is None  # once
    fut.result()  # finished in the fit-ahead thread
    threads = []
    real_fit = factorization.VBPR._fit
    monkeypatch.setattr(factorization.VBPR, "_fit", lambda self, *a: threads.append(1) or real_fit(self, *a))
    ahead = recommenders.create_recommender("vbpr").fit(split, emb)
    assert threads == [] and not factorization._AHEAD  # taken, not fitted again
    np.testing.assert_array_equal(ahead.score(np.arange(split.n_users)), inline)

    factorization._FITS.clear()
    monkeypatch.setattr(factorization.VBPR, "_fit", lambda self, *a: (_ for _ in ()).throw(MemoryError("no room")))
    recommenders.create_recommender("vbpr").fit_ahead(split, emb)
    with pytest.raises(MemoryError, match="no room"):
        recommenders.create_recommender("vbpr").fit(split, emb)

    monkeypatch.setattr(factorization.VBPR, "_fit", real_fit)
    started = []
    real_ahead = factorization.VBPR.fit_ahead
    monkeypatch.setattr(factorization.VBPR, "fit_ahead", lambda self, s, e: started.append(1) or real_ahead(self, s, e))
    sets = {("m", "frozen"): emb, ("n", "frozen"): _emb(seed=13)}
    assert set_major.evaluate_set_major([(split, sets, ["vbpr", "visrank_max"])], ks=(5,), cache_dir=tmp_path,
                                        progress=False) == 4
    assert len(started) == 2 and not factorization._AHEAD
