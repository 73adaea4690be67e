"""bpr_projection: no test purchase leaks into training, the loss falls on real data."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data, splits
from visrec_utils.tuning import finetune


@pytest.fixture(scope="module")
def slice_split(hm_catalogue):
    cat = data.slice_catalogue(hm_catalogue, 300, 3000, seed=0)
    return cat, splits.leave_last_basket_out(cat)


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
