"""Controls (random weights, hand-made features), local checkpoints and presets."""
import numpy as np
import pandas as pd
import pytest
import torch

from visrec_utils.features import controls, embedding_sets, embeddings, models
from visrec_utils.catalogue import data


def test_handcrafted_features_by_hand():
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    f = controls.handcrafted_features(red)[0].numpy()
    hist, scal = f[:108], dict(zip(controls.SCALAR_FEATURES, f[108:]))
    # hue 0 -> bin 0, saturation 1 -> bin 2, value 1 -> bin 2: flat index (0 * 3 + 2) * 3 + 2 = 8
    assert hist[8] == pytest.approx(1.0) and hist.sum() == pytest.approx(1.0)
    assert scal["brightness"] == pytest.approx(1.0) and scal["saturation"] == pytest.approx(1.0)
    # Hasler & Suesstrunk: rg = 1, yb = 0.5, no spread -> 0.3 * sqrt(1 + 0.25)
    assert scal["colourfulness"] == pytest.approx(0.3 * np.sqrt(1.25), rel=1e-5)
    assert scal["contrast"] == pytest.approx(0.0, abs=1e-6) and scal["sharpness"] == pytest.approx(0.0, abs=1e-6)
    assert scal["entropy"] == pytest.approx(0.0, abs=1e-6)
    half = torch.zeros(1, 3, 8, 8)
    half[..., 4:] = 1.0  # left black, right white
    s = dict(zip(controls.SCALAR_FEATURES, controls.handcrafted_features(half)[0, 108:].numpy()))
    assert s["entropy"] == pytest.approx(1 / 8) and s["brightness"] == pytest.approx(0.5)
    assert s["contrast"] == pytest.approx(np.std([0.0] * 32 + [1.0] * 32, ddof=1), rel=1e-5)
    assert s["sharpness"] > 0 and s["saturation"] == pytest.approx(0.0)


def test_random_control_is_the_same_architecture_reinitialised():
    real = models.load_model("mobilenetv1_025_keras")
    rand = models.load_model("random_mobilenetv1_025_keras")
    again = models.load_model("random_mobilenetv1_025_keras")
    assert rand.spec.family == "control" and rand.spec.published_top1 == pytest.approx(0.1)
    assert rand.weights_sha256 == again.weights_sha256 != real.weights_sha256  # seeded, and not the real weights
    assert list(rand.model.state_dict()) == list(real.model.state_dict())
    bn = [m for m in rand.model.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    assert rand.data_config == real.data_config


def test_local_checkpoint_and_presets(tmp_path):
    import timm

    torch.manual_seed(1)
    net = timm.create_model("resnet18", pretrained=False)
    ckpt = tmp_path / "my_resnet18.pth"
    torch.save(net.state_dict(), ckpt)
    loaded = models.load_model(f"resnet18={ckpt}")
    assert loaded.weights_sha256 == models.state_dict_sha256(net) and loaded.spec.weights.endswith(str(ckpt))
    with pytest.raises(KeyError, match="does not exist"):
        models.get_spec(f"resnet18={tmp_path / 'missing.pth'}")
    assert models.expand_presets(["paper", "handcrafted", "resnet50"]) == models.PRESETS["paper"] + ["handcrafted"]
    assert "vit_base_patch16_224" in models.PRESETS["modern"]


def test_controls_run_through_extraction_on_a_real_slice(hm_catalogue, imagenet_dir, tmp_path):
    cat = data.slice_catalogue(hm_catalogue, 20, 120, seed=0)
    data.save_prepared(cat, tmp_path)
    table, _ = embeddings.embed_catalogue(["controls"], cat, tmp_path, imagenet_dir=imagenet_dir, imagenet_limit=100,
                                          progress=False)
    table = table.set_index("model")
    assert table.loc[["random_tf_efficientnet_lite0", "handcrafted"], "status"].tolist() == ["ok", "ok"]
    assert table.loc["random_tf_efficientnet_lite0", "measured_top1"] < 5  # chance is 0.1%
    assert np.isnan(table.loc["handcrafted", "measured_top1"])  # no classifier, no check
    sets = embedding_sets.load_embedding_sets(tmp_path)
    assert sets[("handcrafted", "frozen")].shape == (120, 114)
    assert all(np.isfinite(v).all() for v in sets.values())


def test_handcrafted_features_match_float64_references_on_an_8bit_image():
    """The table look-ups and integer sums against colorsys (bins), numpy and scipy in float64."""
    import colorsys

    from scipy import ndimage, stats as sps

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (2, 3, 40, 56), dtype=np.uint8)
    img[1, :, :20] = 255  # a white background, as in catalogue photos
    f = controls.handcrafted_features(torch.from_numpy(img).float() / 255).numpy()
    for i in range(2):
        rgb = img[i].reshape(3, -1).T / 255.0
        hsv = np.array([colorsys.rgb_to_hsv(*c) for c in rgb])
        nh, ns, nv = controls.HIST_BINS
        edge = np.minimum.reduce([np.abs(hsv[:, 0] * nh - np.round(hsv[:, 0] * nh)),
                                  np.abs(hsv[:, 1] * ns - np.round(hsv[:, 1] * ns)),
                                  np.abs(hsv[:, 2] * nv - np.round(hsv[:, 2] * nv))])
        bins = (np.minimum((hsv[:, 0] * nh).astype(int), nh - 1) * ns + np.minimum((hsv[:, 1] * ns).astype(int), ns - 1)) \
            * nv + np.minimum((hsv[:, 2] * nv).astype(int), nv - 1)
        inner = edge > 1e-6  # pixels on a bin edge may round either way in float32
        counts = np.bincount(bins[inner], minlength=108)
        got = (f[i, :108] ** 2) * rgb.shape[0]  # the histogram is the square root of the shares
        assert np.all(got >= counts - 1e-3) and got.sum() == pytest.approx(rgb.shape[0], rel=1e-5)
        assert np.abs(got - counts).sum() <= (~inner).sum() + 1e-3
        s = dict(zip(controls.SCALAR_FEATURES, f[i, 108:]))
        r, g, b = (img[i].astype(np.float64) / 255)
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        rg, yb = r - g, 0.5 * (r + g) - b
        assert s["brightness"] == pytest.approx(hsv[:, 2].mean(), rel=1e-6)
        assert s["saturation"] == pytest.approx(hsv[:, 1].mean(), rel=1e-6)
        assert s["colourfulness"] == pytest.approx(np.hypot(rg.std(ddof=1), yb.std(ddof=1))
                                                  + 0.3 * np.hypot(rg.mean(), yb.mean()), rel=1e-6)
        assert s["contrast"] == pytest.approx(luma.std(ddof=1), rel=1e-6)
        assert s["sharpness"] == pytest.approx(np.log1p(ndimage.laplace(luma)[1:-1, 1:-1].var(ddof=1) * 100), rel=1e-6)
        levels = np.clip(np.floor(luma * 255 + 1e-9), 0, 255).astype(int)
        assert s["entropy"] == pytest.approx(sps.entropy(np.bincount(levels.ravel()), base=2) / 8, abs=2e-3)


def test_handcrafted_features_of_uint8_equal_those_of_its_float_scaling():
    """A uint8 batch and the same batch / 255 give equal rows (the extraction hands the control its
    decoded uint8 images); saturation comes from the (max, min) table, which holds the per-pixel
    float64 division."""
    rng = np.random.default_rng(5)
    u = torch.from_numpy(rng.integers(0, 256, (4, 3, 31, 45), dtype=np.uint8))
    u[1] = 0  # black: saturation 0 where max is 0
    u[2, :, :, :9] = torch.tensor([200, 50, 50], dtype=torch.uint8).view(3, 1, 1)
    np.testing.assert_array_equal(controls.handcrafted_features(u).numpy(),
                                  controls.handcrafted_features(u.float() / 255).numpy())
    _, sat = controls._lookup_tables()
    assert sat[(200 << 8) | 50].item() == (200 - 50) / 200 and sat[0].item() == 0.0 and sat[(7 << 8) | 7].item() == 0.0


def test_only_a_uint8_model_with_the_plain_scaling_skips_the_float_conversion():
    from visrec_utils.features.extract import reads_uint8
    from visrec_utils.features.runtime import Normalize

    hc, lite = models.load_model("handcrafted").model, torch.nn.Identity()
    assert reads_uint8(hc, Normalize((0.0,) * 3, (1.0,) * 3))
    assert not reads_uint8(hc, Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))  # would change values
    assert not reads_uint8(hc, None) and not reads_uint8(lite, Normalize((0.0,) * 3, (1.0,) * 3))


def test_handcrafted_control_runs_plain(tmp_path):
    """No OpenVINO or compiled path is tried for the hand-made features (already table look-ups),
    and the extracted rows are the features of the decoded 8-bit images."""
    from PIL import Image

    from visrec_utils.features.extract import extract_embeddings

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(paths[-1])
    hc = models.load_model("handcrafted")
    out = extract_embeddings(hc, [str(p) for p in paths], batch_size=2, progress=False, compile=True)
    assert out.path == "plain NCHW" and int(hc.model.version) == 2
    x = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in paths]).float() / 255
    np.testing.assert_array_equal(out.embeddings, controls.handcrafted_features(x).numpy())
