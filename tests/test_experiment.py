"""run_experiment on hand-built splits: per-user averaging of test points, coverage rows, leak guard."""
import numpy as np
import pandas as pd
import pytest

from statsmodels.stats.multitest import multipletests

from visrec_utils.evaluation import experiment, metrics, recommenders, stats
from visrec_utils.catalogue.splits import Split


def _two_point_split():
    inter = pd.DataFrame({"user_id": ["a", "b"], "item_idx": [0, 1],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-01"])})
    # user a has two test points (time replay), user b one
    return Split(users=np.array(["a", "a", "b"], dtype=object),
                 profiles=[np.array([0]), np.array([0, 2]), np.array([1])],
                 truth=[np.array([2]), np.array([3]), np.array([3])],
                 test_day=np.array(["2020-01-02", "2020-01-03", "2020-01-03"], dtype="datetime64[ns]"),
                 train=inter, n_items=5, interactions=inter, protocol="replay_all")


def test_points_are_averaged_per_user_before_intervals():
    split = _two_point_split()
    emb = np.array([[1, 0], [0, 1], [1, 0.1], [0.2, 1], [-1, -1]], dtype=np.float32)
    m, pu = experiment.run_experiment(split, {("toy", "frozen"): emb}, ["visrank_max"], [], ks=(1, 2),
                                      n_resamples=50, progress=False)
    per_point = metrics.evaluate_scores(
        lambda pos: np.stack([np.max(recommenders.SharedSimilarities(emb, split).rows(np.array([p]))[0], 0)
                              for p in pos]), split, ks=(1, 2))
    row_a = pu.set_index("user_id").loc["a"]
    assert row_a["n_points"] == 2
    assert row_a["auc"] == pytest.approx(per_point["auc"].iloc[:2].mean())
    auc = m[(m["metric"] == "auc")].iloc[0]
    assert auc["n_users"] == 2 and auc["value"] == pytest.approx(pu["auc"].mean())
    cov = m[m["metric"] == "coverage"].set_index("k")["value"]
    assert set(cov.index) == {1, 2} and 0 < cov[1] <= cov[2] <= 1
    assert (m["protocol"] == "replay_all").all()


def test_fine_tuned_sets_are_kept_out_of_other_protocols():
    sets = {("m", "frozen"): 1, ("m", "bpr_projection"): 2, ("u", "precomputed"): 3}
    uses = {("m", "frozen"): False, ("m", "bpr_projection"): True, ("u", "precomputed"): False,
            ("m", "contrastive"): False}
    assert experiment.leak_free_sets(sets, "leave_last_basket_out", uses) == sets
    assert set(experiment.leak_free_sets(sets, "temporal", uses)) == {("m", "frozen"), ("u", "precomputed")}
    assert ("m", "contrastive") in experiment.leak_free_sets({("m", "contrastive"): 4}, "replay_all", uses)
    with pytest.raises(ValueError) as e:
        experiment.leak_free_sets({("m", "partial_bpr"): 5, **sets}, "temporal", uses)
    assert str(e.value) == ("uses_purchases has no entry for the embedding set m/partial_bpr (1 set(s) missing); "
                            "pass the manifest's uses_purchases for every set")


def test_study_params_leave_the_random_holdout_on_the_whole_catalogue():
    assert experiment.study_params("temporal", availability="first_seen", one_of_a_kind=True, seed=2, cut=0.5) == \
        {"seed": 2, "cut": 0.5, "availability": "first_seen", "one_of_a_kind": True}
    assert experiment.study_params("random_holdout", availability="first_seen", one_of_a_kind=True, seed=2) == \
        {"seed": 2, "cut": 0.8}


def test_evaluations_are_cached_by_content(hm_catalogue, tmp_path, monkeypatch):
    from visrec_utils.catalogue import data, protocols, splits

    cat = data.slice_catalogue(hm_catalogue, max_users=40, max_items=300, seed=5)
    split = protocols.leave_last_basket_out(cat)
    emb = np.random.default_rng(0).normal(size=(len(cat.items), 8)).astype(np.float32)
    kw = dict(recommenders=["visrank_max"], baselines=["popularity"], n_resamples=20, progress=False,
              cache_dir=tmp_path)
    m1, pu1 = experiment.run_experiment(split, {("x", "frozen"): emb}, **kw)
    files = sorted((tmp_path / "evaluations").glob("*.parquet"))
    assert len(files) == 2  # one per embedding set / baseline group

    def boom(*a, **k):
        raise AssertionError("a cached evaluation was recomputed")

    monkeypatch.setattr(experiment, "evaluate_many", boom)
    m2, pu2 = experiment.run_experiment(split, {("x", "frozen"): emb}, **kw)
    pd.testing.assert_frame_equal(m1, m2)
    pd.testing.assert_frame_equal(pu1.reset_index(drop=True), pu2.reset_index(drop=True), check_dtype=False)
    emb2 = emb.copy()
    emb2[0, 0] += 1.0  # other embedding bytes: recomputed
    with pytest.raises(AssertionError, match="recomputed"):
        experiment.run_experiment(split, {("x", "frozen"): emb2}, **kw)
    other = protocols.leave_last_basket_out(cat, availability="first_seen")  # other candidates: another key
    assert splits.split_digest(other) != splits.split_digest(split)
    assert splits.split_digest(protocols.leave_last_basket_out(cat)) == splits.split_digest(split)


def test_run_protocols_takes_plain_split_settings(hm_catalogue):
    from visrec_utils.catalogue import data, protocols

    cat = data.slice_catalogue(hm_catalogue, max_users=40, max_items=300, seed=5)
    kw = dict(recommenders=[], baselines=["popularity", "random"], n_resamples=20, progress=False, seed=1)
    m, paired, described = experiment.run_protocols(cat, {}, ["temporal", "random_holdout"], availability="catalogue",
                                                    cut=0.7, reference=("-", "-", "popularity"), **kw)
    assert set(described) == {"temporal", "random_holdout"}
    # Holm within each protocol and, inside it, within each family (AUC and nDCG@20 are primary)
    assert list(paired.columns) == [*stats.PAIRED_COLUMNS, "protocol"]
    primary = paired[paired["family"] == "primary"]
    assert sorted(zip(primary["protocol"], primary["metric"], primary["k"])) == [
        (p, mk, k) for p in ("random_holdout", "temporal") for mk, k in (("auc", 0), ("ndcg", 20))]
    for _, g in paired.groupby(["protocol", "family"]):
        np.testing.assert_allclose(g["p_holm"], multipletests(g["wilcoxon_p"], method="holm")[1], rtol=1e-12)
    for name, split_kw in [("temporal", dict(cut=0.7, availability="catalogue")), ("random_holdout", dict(seed=1))]:
        want, _ = experiment.run_experiment(protocols.make_split(cat, name, **split_kw), {}, **kw)
        pd.testing.assert_frame_equal(m[m["protocol"] == name].reset_index(drop=True), want)


def test_set_major_evaluation_fills_the_cache_with_the_same_numbers(tmp_path):
    from visrec_utils.evaluation import set_major

    split = _two_point_split()
    other = Split(users=np.array(["b"], dtype=object), profiles=[np.array([1, 4])], truth=[np.array([0])],
                  test_day=np.array(["2020-01-03"], dtype="datetime64[ns]"), train=split.train, n_items=5,
                  interactions=split.interactions, protocol="temporal")
    sets = {("toy", "frozen"): np.array([[1, 0], [0, 1], [1, 0.1], [0.2, 1], [-1, -1]], dtype=np.float32),
            ("toy", "other"): np.array([[1, 2], [0, 1], [3, 0.1], [0.2, 1], [1, -1]], dtype=np.float32)}
    recs = ["visrank_max", "visrank_top3"]
    jobs = [(split, sets, recs), (other, {("toy", "frozen"): sets[("toy", "frozen")]}, ["visrank_max", "random"]),
            (split, sets, ["visrank_max"])]  # the same split again: nothing more to compute
    assert set_major.evaluate_set_major(jobs, ks=(1, 2), cache_dir=tmp_path, progress=False) == 5
    assert set_major.evaluate_set_major(jobs, ks=(1, 2), cache_dir=tmp_path, progress=False) == 0
    for s, ss, r in jobs:
        fresh = experiment.run_experiment(s, ss, r, ["random"], ks=(1, 2), n_resamples=50, progress=False,
                                          cache_dir=False)
        cached = experiment.run_experiment(s, ss, r, ["random"], ks=(1, 2), n_resamples=50, progress=False,
                                           cache_dir=tmp_path)
        pd.testing.assert_frame_equal(cached[0], fresh[0], check_exact=True)
        pd.testing.assert_frame_equal(cached[1], fresh[1], check_exact=True)
