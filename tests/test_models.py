"""Offline checkpoints against their published ImageNet behaviour."""
import numpy as np
import pytest

from visrec_utils.features import embeddings, models, offline_weights


@pytest.mark.slow
@pytest.mark.parametrize("name", models.OFFLINE_MODELS)
def test_top1_on_imagenet_sample_near_published(name, imagenet_dir):
    loaded = models.load_model(name)
    res = embeddings.imagenet_top1(loaded, imagenet_dir, batch_size=50, progress=False, compile=False)
    published = loaded.spec.published_top1
    print(f"{name}: measured {res['top1']:.1f}% on {res['n_images']} images, published {published}%")
    assert res["n_images"] == 1000
    # a broken conversion or preprocessing lands far below; the sample is easier than val
    assert res["top1"] >= published - 15


def test_lite_key_rename_covers_every_key():
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    src = torch.load(offline_weights.lite_wheel_path(1), map_location="cpu", weights_only=True)
    renamed = models.rename_lite_keys(src, model)
    assert set(renamed) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert renamed[k].shape == v.shape, k


def test_keras_conversion_layouts():
    loaded = models.load_model("mobilenetv1_025_keras")
    w = models.read_keras_h5_weights(offline_weights.tfjs_mobilenet_dir() / "mobilenet_2_5_224_tf.h5")
    sd = loaded.model.state_dict()
    # HWIO -> OIHW for the stem, (H, W, C, 1) -> (C, 1, H, W) for depthwise
    np.testing.assert_array_equal(sd["conv_stem.weight"].numpy()[:, :, 1, 2], w["conv1/kernel"][1, 2].T)
    np.testing.assert_array_equal(sd["blocks.0.0.conv_dw.weight"].numpy()[:, 0], w["conv_dw_1/depthwise_kernel"][..., 0].transpose(2, 0, 1))
    assert loaded.dim == 256
    assert loaded.data_config["mean"] == (0.5, 0.5, 0.5)  # Keras MobileNet scales inputs to [-1, 1]


def test_registry_entries_carry_top1_and_source():
    for name in models.OFFLINE_MODELS:
        spec = models.get_spec(name)
        assert 40 < spec.published_top1 < 90 and spec.top1_source
    assert models.get_spec("tf_efficientnet_lite0").published_top1 == 74.846


def test_unknown_model_suggests_names():
    with pytest.raises(KeyError, match="tf_efficientnet_lite0"):
        models.get_spec("tf_efficientnet_lite00")


def test_timm_model_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = models.get_spec("resnet18")
    assert spec.published_top1 is None or spec.published_top1 > 60
    with pytest.raises(models.ModelUnavailable, match="resnet18"):
        spec.build()


def test_weights_hash_is_stable():
    a = models.load_model("mobilenetv1_025_keras")
    b = models.load_model("mobilenetv1_025_keras")
    assert a.weights_sha256 == b.weights_sha256 and len(a.weights_sha256) == 64


def test_top1_check_is_cached(tmp_path, imagenet_dir):
    loaded = models.load_model("mobilenetv1_025_keras")
    a = embeddings.cached_imagenet_top1(loaded, imagenet_dir, limit=40, cache_dir=tmp_path, progress=False, compile=False)
    b = embeddings.cached_imagenet_top1(loaded, imagenet_dir, limit=40, cache_dir=tmp_path, progress=False, compile=False)
    assert not a["hit"] and b["hit"] and a["top1"] == b["top1"] and b["n_images"] == 40
    direct = embeddings.imagenet_top1(loaded, imagenet_dir, limit=40, progress=False, compile=False)
    assert direct["top1"] == a["top1"]


def test_top1_check_measures_no_micro_batch_and_takes_a_pinned_one(imagenet_dir, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from visrec_utils.features import runtime

    real_pin = runtime.pinned_micro_batch

    def must_not_measure(*args, measure=True, **kwargs):
        if measure:
            raise AssertionError("the top-1 check measured micro-batches")
        return real_pin(*args, measure=measure, **kwargs)

    monkeypatch.setattr(runtime, "pinned_micro_batch", must_not_measure)
    loaded = models.load_model("mobilenetv1_025_keras")
    sizes = []
    real = runtime.micro_batched
    monkeypatch.setattr("visrec_utils.features.runtime.micro_batched", lambda f, m: sizes.append(m) or real(f, m))
    kw = dict(limit=24, batch_size=12, progress=False, compile=False, runtime="openvino", runtime_cache=tmp_path)
    first = embeddings.imagenet_top1(loaded, imagenet_dir, **kw)
    assert sizes == [runtime.MICRO_BATCHES[0]] and not (tmp_path / "micro_batch.json").exists()
    (xml,) = (tmp_path / "openvino").glob("*.xml")  # a size pinned by an earlier extraction is used
    (tmp_path / "micro_batch.json").write_text(f'{{"{runtime.micro_batch_key(xml.stem, uint8=True)}": 16}}')
    assert embeddings.imagenet_top1(loaded, imagenet_dir, **kw)["top1"] == first["top1"] and sizes[-1] == 16


def test_top1_check_bar_says_what_the_pass_is(imagenet_dir, monkeypatch):
    import io

    import tqdm.auto

    seen = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("desc"))
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    loaded = models.load_model("mobilenetv1_025_keras")
    embeddings.imagenet_top1(loaded, imagenet_dir, limit=8, compile=False)
    assert seen == ["ImageNet top-1 mobilenetv1_025_keras"]


def test_a_checkpoint_needs_a_timm_architecture_name(tmp_path):
    w = tmp_path / "my w.pth"
    w.write_bytes(b"not read before the name is checked")
    with pytest.raises(KeyError, match=r"Model 'mobilenetv1_025_keras=.*my w\.pth': 'mobilenetv1_025_keras' is not a "
                                       r"timm architecture, and a checkpoint is loaded into one"):
        models.get_spec(f"mobilenetv1_025_keras={w}")
    assert models.get_spec(f"tf_efficientnet_lite0={w}").arch == "tf_efficientnet_lite0"


def test_timm_model_offline_loads_from_the_local_hub_cache(tmp_path, monkeypatch):
    """Offline (HF_HUB_OFFLINE), weights come from the hub cache ($HF_HUB_CACHE) without a network call."""
    import timm
    import torch
    from safetensors.torch import save_file

    cfg = timm.models.get_pretrained_cfg("resnet18")
    snapshot = tmp_path / f"models--{cfg.hf_hub_id.replace('/', '--')}" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    torch.manual_seed(3)
    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file(weights, str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert models.hub_offline()
    assert models.cached_hub_weights("resnet18") == str(snapshot / "model.safetensors")
    loaded = models.load_model("resnet18")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert models.cached_hub_weights("resnet34") is None
