"""bpr_projection: no test purchase leaks into training, the loss falls on real data."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data, protocols
from visrec_utils.tuning import finetune


@pytest.fixture(scope="module")
def slice_split(hm_catalogue):
    cat = data.slice_catalogue(hm_catalogue, 300, 3000, seed=0)
    return cat, protocols.leave_last_basket_out(cat)


def test_training_events_never_contain_a_test_purchase(slice_split):
    _, split = slice_split
    ev = finetune.training_events(split.train)
    test_pairs = {(u, int(i)) for u, t in zip(split.users, split.truth) for i in t}
    pos_pairs = {(ev.user[e], int(i)) for e, i in zip(ev.event, ev.pos)}
    assert len(pos_pairs) > 100
    assert not (test_pairs & pos_pairs)


def test_events_catch_a_leaked_test_purchase(slice_split):
    """If test baskets were handed to training, the same check would see them."""
    _, split = slice_split
    leaked = split.interactions  # includes the test baskets
    ev = finetune.training_events(leaked)
    test_pairs = {(u, int(i)) for u, t in zip(split.users, split.truth) for i in t}
    pos_pairs = {(ev.user[e], int(i)) for e, i in zip(ev.event, ev.pos)}
    assert test_pairs & pos_pairs


def test_events_by_hand():
    train = pd.DataFrame({"user_id": ["u"] * 4, "item_idx": [0, 1, 1, 2],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-01", "2020-01-02", "2020-01-03"])})
    ev = finetune.training_events(train)
    # day 2 only repeats item 1 -> no event; day 3 brings item 2 with profile [0, 1]
    assert ev.pos.tolist() == [2]
    assert ev.profile_items[0].tolist() == [0, 1]


def test_bpr_projection_loss_falls_on_real_slice(slice_split):
    """Real frozen MobileNet features of the slice's images; the projection starts at identity."""
    from visrec_utils.features import embeddings, models

    cat, split = slice_split
    loaded = models.load_model("mobilenetv1_025_keras")
    emb, _ = embeddings.cached_embeddings(loaded, cat.items["item_id"].tolist(), cat.items["image_path"].tolist(),
                                          progress=False)
    tuned, hist = finetune.train_bpr_projection(emb, split, finetune.BPRConfig(max_steps=120, seed=0), progress=False)
    assert tuned.shape == emb.shape and tuned.dtype == np.float32
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[1]
    assert hist["val_loss"].min() < hist["val_loss"].iloc[0]
    assert not np.allclose(tuned, emb)


def test_strategy_cache_and_unknown_name(tmp_path, slice_split):
    _, split = slice_split
    emb = np.random.default_rng(1).normal(size=(split.n_items, 8)).astype(np.float32)
    cfg = finetune.BPRConfig(max_steps=2, eval_every=1)
    a, _, info_a = finetune.apply_strategy("bpr_projection", emb, split, tmp_path, cfg, progress=False)
    b, _, info_b = finetune.apply_strategy("bpr_projection", emb, split, tmp_path, cfg, progress=False)
    assert not info_a["hit"] and info_b["hit"]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError, match="choose from"):
        finetune.apply_strategy("lora", emb, split, tmp_path)


# --- the strategy registry ------------------------------------------------------------------
from visrec_utils.core.skips import SkipLog
from visrec_utils.tuning import strategies as S


def test_create_strategy_names_the_choices_and_a_close_match():
    choices = "['frozen', 'bpr_projection', 'partial_bpr', 'proxy_metadata', 'contrastive']"
    with pytest.raises(ValueError) as e:
        S.create_strategy("bpr_projectoin")
    assert str(e.value) == f"Unknown fine-tuning strategy 'bpr_projectoin'; did you mean 'bpr_projection'? Choose from {choices}"
    with pytest.raises(ValueError) as e:
        S.create_strategy("lora")
    assert str(e.value) == f"Unknown fine-tuning strategy 'lora'; choose from {choices}"
    with pytest.raises(TypeError, match="no parameters \\['epoch'\\]"):
        S.create_strategy("bpr_projection", epoch=3)


def test_list_strategies_and_what_they_train_on():
    names = S.list_strategies()
    assert names == ["frozen", "bpr_projection", "partial_bpr", "proxy_metadata", "contrastive"]
    assert {n: S.create_strategy(n).uses_purchases for n in names} == {
        "frozen": False, "bpr_projection": True, "partial_bpr": True, "proxy_metadata": False, "contrastive": False}
    assert S.list_strategies(needs_backbone=True) == ["partial_bpr", "proxy_metadata", "contrastive"]
    assert S.list_strategies(uses_purchases=False, needs_backbone=False) == ["frozen"]
    s = S.create_strategy("bpr_projection", max_steps=4)
    assert s.params() == {**S.create_strategy("bpr_projection").params(), "max_steps": 4}
    assert S.create_strategy("bpr_projection").params()["max_steps"] == 400  # the registered one is unchanged
    with pytest.raises(ValueError, match="already registered"):
        S.register_strategy(S.create_strategy("frozen"))


class Toy(S.Strategy):
    name, uses_purchases, needs_backbone = "toy_double", False, False

    def __init__(self):
        self.calls = []

    def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
        self.calls.append(model_name)
        return frozen_embeddings * 2, pd.DataFrame({"epoch": [0, 1], "train_loss": [np.nan, 1.0]}), {
            "hit": False, "seconds": 0.5, "activation_seconds": 0.0, "train_seconds": 0.5}

    def budget(self, history):
        return "toy"


def test_a_registered_strategy_is_listed_and_run_by_tune(tmp_path):
    toy = Toy()
    S.register_strategy(toy)
    try:
        assert "toy_double" in S.list_strategies()
        frozen = {(m, "frozen"): np.full((5, 3), i + 1, np.float32) for i, m in enumerate(["a", "b"])}
        log = SkipLog(tmp_path, "03_fine_tuning")
        tuned, prov, hist, stage_hist, cost = S.tune(frozen, None, None, ["toy_double"], [], tmp_path, log=log)
    finally:
        S.unregister_strategy("toy_double")
    assert "toy_double" not in S.list_strategies()
    assert toy.calls == ["a", "b"]
    np.testing.assert_array_equal(tuned[("b", "toy_double")], np.full((5, 3), 4, np.float32))
    assert prov[("a", "toy_double")] == {"strategy": "toy_double", "strategy_params": {}, "uses_purchases": False}
    assert hist["model"].tolist() == ["a", "a", "b", "b"]
    assert list(stage_hist.columns) == S.STAGE_HISTORY_COLUMNS and len(stage_hist) == 0
    assert cost.to_dict("records") == [
        {"model": m, "strategy": "toy_double", "budget": "toy", "activation_seconds": 0.0, "train_seconds": 0.5,
         "cache_hit": False} for m in ("a", "b")]
    skipped = pd.read_csv(log.path)
    assert skipped["part"].tolist() == ["bpr_projection", "stage strategies"]
    assert skipped["reason"].tolist() == [
        "bpr_projection is not in strategies.",
        "strategies names none of the stage strategies partial_bpr, proxy_metadata, contrastive."]


def test_tune_runs_bpr_projection_as_apply_strategy(tmp_path, slice_split):
    """tune's bpr_projection part gives apply_strategy's embeddings, history and cost row."""
    cat, split = slice_split
    emb = np.random.default_rng(1).normal(size=(split.n_items, 8)).astype(np.float32)
    cfg = finetune.BPRConfig(max_steps=2, eval_every=1)
    skips = []
    tuned, prov, hist, _, cost = S.tune({("m", "frozen"): emb}, cat, split, ["frozen", "bpr_projection"], [],
                                        tmp_path, bpr_cfg=cfg, on_skip=lambda part, e: skips.append(part),
                                        progress=False)
    ref, ref_hist, info = finetune.apply_strategy("bpr_projection", emb, split, tmp_path, cfg, progress=False)
    assert info["hit"]  # tune stored it under the same key
    np.testing.assert_array_equal(tuned[("m", "bpr_projection")], ref)
    pd.testing.assert_frame_equal(hist, ref_hist.assign(model="m"))
    assert list(hist.columns) == finetune.HISTORY_COLUMNS + ["model"]
    assert prov[("m", "bpr_projection")]["strategy_params"]["max_steps"] == 2
    assert prov[("m", "bpr_projection")]["uses_purchases"] is True
    assert cost.iloc[0]["budget"] == f"{int(ref_hist['step'].max())} of 2 steps"
    assert list(cost.columns) == S.COST_COLUMNS and skips == ["stage strategies"]


def _toy_split(n_users=40, n_items=60, seed=0):
    """A synthetic split: each user buys on 4 days, 2 items a day; the last day is the test basket."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", int(i), pd.Timestamp("2020-01-01") + pd.Timedelta(days=d))
            for u in range(n_users) for d in range(4) for i in rng.choice(n_items, 2, replace=False)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_idx", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    last = inter.groupby("user_id")["timestamp"].transform("max")
    return inter, items, inter[inter["timestamp"] < last], inter[inter["timestamp"] == last]


def test_bpr_projection_takes_exactly_max_steps_and_is_deterministic(monkeypatch):
    """Without early stopping (patience larger than the validations) exactly max_steps steps run,
    validated every eval_every steps and after the last; the same seed gives identical embeddings."""
    from types import SimpleNamespace

    inter, items, train, test = _toy_split()
    truth = [g["item_idx"].to_numpy() for _, g in test.groupby("user_id", sort=True)]
    split = SimpleNamespace(train=train, n_items=len(items), users=np.array(sorted(test["user_id"].unique())),
                            truth=truth, test_day=test.groupby("user_id", sort=True)["timestamp"].max().to_numpy(),
                            n_users=test["user_id"].nunique())
    emb = np.random.default_rng(1).normal(size=(len(items), 8)).astype(np.float32)
    cfg = finetune.BPRConfig(max_steps=7, eval_every=3, batch_size=16, patience=100, lr=1e-2, seed=3)
    a, hist = finetune.train_bpr_projection(emb, split, cfg, progress=False)
    b, hist_b = finetune.train_bpr_projection(emb, split, cfg, progress=False)
    assert hist["step"].tolist() == [0, 3, 6, 7]
    assert list(hist.columns) == finetune.HISTORY_COLUMNS
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(hist.drop(columns="seconds"), hist_b.drop(columns="seconds"))
    c, _ = finetune.train_bpr_projection(emb, split, finetune.BPRConfig(**{**cfg.__dict__, "seed": 4}), progress=False)
    assert not np.array_equal(a, c)
    # patience 1: stops at the first validation that does not improve (deterministically)
    _, short = finetune.train_bpr_projection(emb, split, finetune.BPRConfig(**{**cfg.__dict__, "patience": 1,
                                                                               "lr": 0.0}), progress=False)
    assert short["step"].tolist() == [0, 3]


def test_sample_training_negatives_matches_the_per_triplet_loop():
    """The vectorised sampler draws exactly what the loop over triplets (redraw while bought) draws."""
    _, items, train, _ = _toy_split(n_items=12)
    ev = finetune.training_events(train)
    got = finetune.sample_training_negatives(ev, np.random.default_rng(5), len(items))
    rng = np.random.default_rng(5)
    ref = rng.integers(0, len(items), size=len(ev.pos))
    for t in range(len(ref)):
        while ref[t] in set(ev.bought[ev.user[ev.event[t]]].tolist()):
            ref[t] = rng.integers(0, len(items))
    np.testing.assert_array_equal(got, ref)
    assert all(n not in ev.bought[ev.user[e]] for n, e in zip(got, ev.event))


def test_single_threaded_fits_side_by_side_equal_fits_one_after_the_other(tmp_path, slice_split):
    """bpr_projection's sets are fitted in parallel threads (torch on one thread each): the
    embeddings, histories and order are exactly those of fitting each set alone."""
    import torch

    cat, split = slice_split
    rng = np.random.default_rng(4)
    sets = [((f"m{i}", "frozen"), rng.normal(size=(split.n_items, 16)).astype(np.float32)) for i in range(3)]
    strategy = S.create_strategy("bpr_projection", max_steps=6, eval_every=3)
    assert strategy.single_threaded and not S.create_strategy("partial_bpr").single_threaded
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # consumed as the stage does, by zip(), which never closes the generator: restored all the same
        fitted = S.fit_side_by_side(strategy, sets, cat, split, tmp_path / "a", progress=False, workers=3)
        together = [r for _, r in zip(sets, fitted)]  # ``fitted`` still referenced, as in the stage
        assert torch.get_num_threads() == 2  # the stage strategies after it train on every core again
    finally:
        torch.set_num_threads(threads)
    alone = [finetune.apply_strategy("bpr_projection", emb, split, tmp_path / "b", strategy.config, progress=False)
             for _, emb in sets]
    assert len(together) == 3
    for (emb, hist, info), (ref, ref_hist, _) in zip(together, alone):
        assert not info["hit"]
        np.testing.assert_array_equal(emb, ref)
        pd.testing.assert_frame_equal(hist.drop(columns="seconds"), ref_hist.drop(columns="seconds"))
    assert not np.array_equal(together[0][0], together[1][0])  # each set got its own fit
