"""Stage fine-tuning: cached-activation gradients equal the full forward's, losses fall, leaks are refused."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from visrec_utils.catalogue import data, protocols
from visrec_utils.tuning import finetune, stage_tuning
from visrec_utils.features import models


@pytest.fixture(scope="module")
def mobilenet():
    return models.load_model("mobilenetv1_025_keras")


def test_cached_activation_path_gives_the_full_forward_gradients(mobilenet):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 224, 224)
    staged = stage_tuning.StagedModel(mobilenet.model, n_stages=2)
    head_params = list(staged.head.parameters())
    m = mobilenet.model  # the head is a copy of these modules: the same parameters, in the same order
    originals = [p for mod in (*m.blocks[-2:], m.conv_head, m.bn2) for p in mod.parameters()]
    assert [p.shape for p in originals] == [p.shape for p in head_params]
    for p in originals:
        p.requires_grad_(True)
    full = m.forward_head(m.forward_features(x), pre_logits=True)
    loss_full = (full ** 2).sum() + full[:, 0].sum()
    g_full = torch.autograd.grad(loss_full, originals)
    for p in originals:
        p.requires_grad_(False)
    full = full.detach()
    with torch.no_grad():
        cached = staged.frozen(x).clone()  # what the cache stores
    out = staged.head(cached)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)
    g_cached = torch.autograd.grad((out ** 2).sum() + out[:, 0].sum(), head_params)
    for a, b in zip(g_full, g_cached):  # the head trains in channels_last: sums in another order,
        torch.testing.assert_close(a, b, atol=1e-6 * float(a.abs().max()), rtol=1e-5)  # float32-level gaps
    assert staged.act_shape[0] * staged.act_shape[1] * staged.act_shape[2] == cached.shape[1]


def test_staged_model_explains_what_it_supports():
    import timm

    with pytest.raises(ValueError, match="EfficientNet/MobileNet family"):
        stage_tuning.StagedModel(timm.create_model("resnet18", pretrained=False))
    with pytest.raises(ValueError, match="n_stages"):
        stage_tuning.StagedModel(timm.create_model("tf_efficientnet_lite0", pretrained=False), n_stages=0)


def test_nt_xent_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).numpy()
    sim = z @ z.T / tau
    loss = 0.0
    for i, j in [(0, 2), (1, 3), (2, 0), (3, 1)]:  # each view's positive is its pair
        others = [k for k in range(4) if k != i]
        loss += -(sim[i, j] - np.log(np.exp(sim[i, others]).sum()))
    assert float(stage_tuning.nt_xent(z1, z2, tau)) == pytest.approx(loss / 4, rel=1e-6)


@pytest.fixture(scope="module")
def small(hm_catalogue):
    cat = data.slice_catalogue(hm_catalogue, 150, 1500, seed=0)
    return cat, protocols.leave_last_basket_out(cat)


def test_a_leaked_test_purchase_is_refused(small):
    cat, split = small
    leaky = replace(split, train=split.interactions)  # test baskets handed to training
    with pytest.raises(ValueError, match="test purchases"):
        finetune.assert_no_test_purchases(leaky.train, leaky)
    with pytest.raises(ValueError, match="test purchases"):
        finetune.train_bpr_projection(np.ones((split.n_items, 4), np.float32), leaky, progress=False)
    finetune.assert_no_test_purchases(split.train, split)  # the real training part passes


@pytest.mark.slow
@pytest.mark.parametrize("strategy", stage_tuning.STAGE_STRATEGIES)
def test_each_stage_strategy_learns_on_a_real_slice(small, mobilenet, tmp_path_factory, strategy):
    cat, split = small
    cache = tmp_path_factory.getbasetemp() / "stage_cache"
    cfg = stage_tuning.StageConfig(max_steps=32, eval_every=8, patience=10, contrastive_images=300)
    emb, hist, info = stage_tuning.run_stage_strategy(strategy, mobilenet, cat, split, cfg, cache, progress=False)
    assert emb.shape == (cat.n_items, mobilenet.dim) and np.isfinite(emb).all()
    assert not info["hit"] and hist["val_loss"].iloc[1:].min() < hist["val_loss"].iloc[0]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[1] + 0.05
    again, _, info2 = stage_tuning.run_stage_strategy(strategy, mobilenet, cat, split, cfg, cache, progress=False)
    assert info2["hit"]
    np.testing.assert_array_equal(again, emb)


@pytest.mark.slow
def test_a_checkpoint_name_never_becomes_a_cache_path(hm_catalogue, mobilenet, tmp_path):
    """A local checkpoint's name (a path, with spaces and '..') stays out of the cache's file names."""
    cat = data.slice_catalogue(hm_catalogue, 30, 120, seed=0)
    split = protocols.leave_last_basket_out(cat)
    odd = replace(mobilenet, spec=replace(mobilenet.spec, name="mobilenetv1_025_keras=/x/../my weights/w.pth"))
    cfg = stage_tuning.StageConfig(max_steps=2, eval_every=1, patience=10, min_class_items=2)
    emb, _, info = stage_tuning.run_stage_strategy("proxy_metadata", odd, cat, split, cfg, tmp_path, progress=False)
    assert Path(info["path"]).parent == tmp_path / "finetune" and emb.shape == (cat.n_items, mobilenet.dim)
    made = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert all(" " not in p.name and "=" not in p.name for p in made), made


def test_proxy_classes_are_ordered_by_count_then_name():
    import pandas as pd

    items = pd.DataFrame({"product_type_name": ["Socks"] * 3 + ["Shorts"] * 3 + ["Dress"] * 4 + ["Bra"] * 3 + ["Hat"]})
    cfg = stage_tuning.StageConfig(min_class_items=3)
    assert stage_tuning.proxy_classes(items, cfg) == ["Dress", "Bra", "Shorts", "Socks"]
    shuffled = items.sample(frac=1, random_state=1)
    assert stage_tuning.proxy_classes(shuffled, cfg) == ["Dress", "Bra", "Shorts", "Socks"]


def test_training_a_head_leaves_the_model_as_loaded(mobilenet):
    """Each stage strategy starts from the ImageNet weights, whatever strategy ran before it."""
    before = models.state_dict_sha256(mobilenet.model)
    staged = stage_tuning.StagedModel(mobilenet.model, 1)
    opt = torch.optim.SGD([p for p in staged.head.parameters() if p.requires_grad], lr=1.0)
    torch.manual_seed(0)
    loss = staged.head(torch.randn(4, int(np.prod(staged.act_shape)))).pow(2).sum()
    loss.backward()
    opt.step()
    assert models.state_dict_sha256(mobilenet.model) == before == mobilenet.weights_sha256
    assert models.state_dict_sha256(staged.head) != models.state_dict_sha256(stage_tuning.StagedModel(mobilenet.model, 1).head)


def test_trained_weights_are_written_atomically(tmp_path, monkeypatch):
    """A torch.save that fails half-way leaves neither a .pt nor a temporary file behind."""
    from visrec_utils.core.store import Store

    store = Store(tmp_path)
    head = torch.nn.Linear(3, 2)
    path = stage_tuning.save_weights(store, "k1", "partial_bpr-m", head)
    assert path == store.path("finetune", "k1", ".pt", name="partial_bpr-m") and path.is_file()
    torch.testing.assert_close(torch.load(path)["weight"], head.weight)

    def broken_save(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        stage_tuning.save_weights(store, "k2", "partial_bpr-m", head)
    assert sorted(p.name for p in (tmp_path / "finetune").iterdir()) == [path.name]


def test_stage_data_is_checked_before_any_image_is_read(small):
    cat, split = small
    with pytest.raises(ValueError, match="no 'colour' column"):
        stage_tuning.require_stage_data("proxy_metadata", cat, split, stage_tuning.StageConfig(proxy_column="colour"))
    with pytest.raises(KeyError, match="choose from"):
        stage_tuning.require_stage_data("bpr_projection", cat, split)
    stage_tuning.require_stage_data("partial_bpr", cat, split)


def test_tune_passes_the_loaded_backbone_to_a_registered_stage_strategy(tmp_path, small):
    import pandas as pd

    from visrec_utils.core.skips import SkipLog
    from visrec_utils.tuning import strategies as S

    cat, split = small

    class ToyStage(S.Strategy):
        name, uses_purchases, needs_backbone = "toy_stage", False, True

        def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
            assert loaded == f"loaded {model_name}" and store.root == tmp_path
            return frozen_embeddings + 1, pd.DataFrame({"step": [0, 3], "val_loss": [1.0, 0.5]}), {
                "hit": True, "seconds": 0.0, "activation_seconds": 1.04, "train_seconds": 2.0}

        def budget(self, history):
            return f"{int(history['step'].max())} steps"

    S.register_strategy(ToyStage)
    try:
        frozen = {("m1", "frozen"): np.zeros((4, 2), np.float32)}
        log = SkipLog(tmp_path, "03_fine_tuning")
        tuned, prov, _, stage_hist, cost = S.tune(frozen, cat, split, ["toy_stage"], ["m1", "m2"], tmp_path, log=log,
                                                  load_model=lambda name: f"loaded {name}")
    finally:
        S.unregister_strategy("toy_stage")
    assert list(tuned) == [("m1", "toy_stage")] and (tuned[("m1", "toy_stage")] == 1).all()
    assert stage_hist[["model", "strategy"]].drop_duplicates().values.tolist() == [["m1", "toy_stage"]]
    assert cost[["budget", "activation_seconds", "train_seconds", "cache_hit"]].values.tolist() == [["3 steps", 1.0, 2.0, True]]
    skipped = pd.read_csv(log.path)
    assert skipped["part"].tolist() == ["bpr_projection", "stage strategies: m2"]
    assert skipped["reason"].iloc[1] == "m2 has no frozen embeddings in this study (add it to models)."


def _proxy_run(mobilenet, **cfg):
    """train_proxy_metadata on 60 random activation rows (3 balanced classes), row 5 unreadable."""
    import pandas as pd

    from visrec_utils.tuning import stage_training

    staged = stage_tuning.StagedModel(mobilenet.model, 1, mobilenet.data_config["input_size"])
    acts = np.random.default_rng(0).normal(size=(60, int(np.prod(staged.act_shape)))).astype(np.float32)
    acts[5] = np.nan
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(60)], "kind": ["a", "b", "c"] * 20})
    c = stage_tuning.StageConfig(**{"proxy_column": "kind", "min_class_items": 2, "batch_size": 8, "lr": 1e-3,
                                    "seed": 0, **cfg})
    return stage_training.train_proxy_metadata(staged, acts, items, c, progress=False)


def test_stage_budget_is_steps_and_a_seed_gives_identical_embeddings(mobilenet):
    """Exactly max_steps steps without early stopping (validated every eval_every and after the
    last), no wall clock unless asked, and the same seed twice gives identical embeddings."""
    assert stage_tuning.StageConfig().max_seconds is None
    assert not hasattr(stage_tuning.StageConfig(), "seconds")
    emb, hist = _proxy_run(mobilenet, max_steps=5, eval_every=2, patience=100)
    again, hist2 = _proxy_run(mobilenet, max_steps=5, eval_every=2, patience=100)
    assert hist["step"].tolist() == [0, 2, 4, 5] and not hist["stopped_by_clock"].any()
    np.testing.assert_array_equal(emb, again)
    np.testing.assert_array_equal(hist["val_loss"].to_numpy(), hist2["val_loss"].to_numpy())
    assert emb.shape == (60, mobilenet.dim) and np.isfinite(emb).all()


def test_stage_clock_is_an_explicit_opt_in_and_recorded(mobilenet):
    _, hist = _proxy_run(mobilenet, max_steps=50, eval_every=20, patience=100, max_seconds=0.0)
    assert hist["step"].tolist() == [0, 1] and hist["stopped_by_clock"].tolist() == [False, True]
    _, stopped = _proxy_run(mobilenet, max_steps=50, eval_every=1, patience=1, lr=0.0)
    assert stopped["step"].tolist() == [0, 1]  # lr 0: the first validation does not improve, patience 1 stops


def test_unreadable_rows_by_chunks():
    acts = np.ones((5, 3), np.float32)
    acts[1, 2], acts[4, 0] = np.nan, np.inf
    assert stage_tuning.unreadable_rows(acts, chunk=2).tolist() == [False, True, False, False, True]
    assert stage_tuning.unreadable_rows(np.zeros((0, 3), np.float32)).tolist() == []


def test_stage_step_budgets_one_number_or_by_strategy():
    from visrec_utils.pipeline.stages import stage_tune

    assert stage_tune.stage_steps(stage_tune.STAGE_STEPS) == {"partial_bpr": 200, "proxy_metadata": 400,
                                                              "contrastive": 400}
    assert stage_tune.stage_steps(20) == {"partial_bpr": 20, "proxy_metadata": 20, "contrastive": 20}
    assert stage_tune.stage_steps({"contrastive": 50}) == {"partial_bpr": 200, "proxy_metadata": 400,
                                                           "contrastive": 50}
    with pytest.raises(ValueError, match=r"max_steps names \['partial_bp'\], which are not stage strategies"):
        stage_tune.stage_steps({"partial_bp": 10})
    with pytest.raises(ValueError, match="max_steps for partial_bpr must be a positive whole number of optimiser "
                                         "steps, not 0"):
        stage_tune.stage_steps({"partial_bpr": 0})
