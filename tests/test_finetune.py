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
    tuned, hist = finetune.train_bpr_projection(emb, split, finetune.BPRConfig(epochs=6, seed=0), progress=False)
    assert tuned.shape == emb.shape and tuned.dtype == np.float32
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[1]
    assert hist["val_loss"].min() < hist["val_loss"].iloc[0]
    assert not np.allclose(tuned, emb)


def test_strategy_cache_and_unknown_name(tmp_path, slice_split):
    _, split = slice_split
    emb = np.random.default_rng(1).normal(size=(split.n_items, 8)).astype(np.float32)
    cfg = finetune.BPRConfig(epochs=2)
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
    s = S.create_strategy("bpr_projection", epochs=4)
    assert s.params() == {**S.create_strategy("bpr_projection").params(), "epochs": 4}
    assert S.create_strategy("bpr_projection").params()["epochs"] == 15  # the registered one is unchanged
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
    cfg = finetune.BPRConfig(epochs=2)
    skips = []
    tuned, prov, hist, _, cost = S.tune({("m", "frozen"): emb}, cat, split, ["frozen", "bpr_projection"], [],
                                        tmp_path, bpr_cfg=cfg, on_skip=lambda part, e: skips.append(part),
                                        progress=False)
    ref, ref_hist, info = finetune.apply_strategy("bpr_projection", emb, split, tmp_path, cfg, progress=False)
    assert info["hit"]  # tune stored it under the same key
    np.testing.assert_array_equal(tuned[("m", "bpr_projection")], ref)
    pd.testing.assert_frame_equal(hist, ref_hist.assign(model="m"))
    assert list(hist.columns) == finetune.HISTORY_COLUMNS + ["model"]
    assert prov[("m", "bpr_projection")]["strategy_params"]["epochs"] == 2
    assert prov[("m", "bpr_projection")]["uses_purchases"] is True
    assert cost.iloc[0]["budget"] == f"{int(ref_hist['epoch'].max())} of 2 epochs"
    assert list(cost.columns) == S.COST_COLUMNS and skips == ["stage strategies"]
