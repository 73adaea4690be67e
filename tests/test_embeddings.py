"""Extraction, unreadable images, and the content-keyed, chunked, resumable cache."""
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from catalogues import BAD_IMAGES, write_generic
from visrec_utils.features import embedding_sets, embeddings, models
from visrec_utils.features.extract import extract_embeddings


@pytest.fixture(scope="module")
def mobilenet():
    return models.load_model("mobilenetv1_025_keras")


def _copy_images(hm_catalogue, folder, n):
    items = hm_catalogue.items.iloc[:n]
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for src in items["image_path"]:
        dst = folder / src.split("/")[-1]
        shutil.copy(src, dst)
        paths.append(str(dst))
    return items["item_id"].tolist(), paths


@pytest.fixture()
def images(tmp_path, hm_catalogue):
    return _copy_images(hm_catalogue, tmp_path / "img", 12)


def test_fast_path_equals_plain_forward(mobilenet, images):
    _, paths = images
    plain = extract_embeddings(mobilenet, paths, batch_size=5, fast=False, compile=False, progress=False)
    fast = extract_embeddings(mobilenet, paths, batch_size=5, fast=True, compile=False, progress=False, runtime="torch")
    assert plain.embeddings.shape == (12, 256) and plain.embeddings.dtype == np.float32
    assert np.abs(plain.embeddings - fast.embeddings).max() < embeddings.FAST_PATH_ATOL
    assert plain.path == "plain NCHW" and fast.path.startswith("channels_last")
    one = extract_embeddings(mobilenet, paths, batch_size=12, fast=False, compile=False, progress=False)
    assert np.abs(plain.embeddings - one.embeddings).max() < 1e-5  # batching does not matter


def test_openvino_runtime_equals_plain_forward_and_its_conversion_is_cached(mobilenet, images, tmp_path):
    pytest.importorskip("openvino")
    _, paths = images
    plain = extract_embeddings(mobilenet, paths, batch_size=5, fast=False, compile=False, progress=False)
    first = extract_embeddings(mobilenet, paths, batch_size=5, progress=False, runtime="openvino", runtime_cache=tmp_path)
    assert first.path.startswith("openvino")
    assert np.abs(plain.embeddings - first.embeddings).max() < embeddings.FAST_PATH_ATOL
    (xml,) = (tmp_path / "openvino").glob("mobilenetv1_025_keras-*.xml")
    assert xml.with_suffix(".bin").stat().st_size > 4 * 200_000  # float32 weights (~220k parameters), not fp16
    assert sorted(p.name for p in xml.parent.iterdir()) == [xml.with_suffix(".bin").name, xml.name]  # no temporaries
    mtime = xml.stat().st_mtime_ns
    again = extract_embeddings(mobilenet, paths, batch_size=5, progress=False, runtime="openvino", runtime_cache=tmp_path)
    np.testing.assert_array_equal(first.embeddings, again.embeddings)
    assert xml.stat().st_mtime_ns == mtime  # read back, not converted again


def test_a_kept_forward_is_reused_only_for_the_same_model_object(mobilenet, images, tmp_path, monkeypatch):
    """``forwards`` (what a Ray worker keeps between shards): the second call with the same model
    object does not choose again and gives the same rows; an entry made for another object under
    the same key (an id reused after a reload) is chosen anew."""
    pytest.importorskip("openvino")
    from visrec_utils.features import extract

    _, paths = images
    chosen = []
    choose = extract.choose_forward
    monkeypatch.setattr(extract, "choose_forward", lambda *a, **k: chosen.append(1) or choose(*a, **k))
    kept: dict = {}
    kw = dict(batch_size=5, progress=False, runtime="openvino", runtime_cache=tmp_path, forwards=kept)
    first = extract_embeddings(mobilenet, paths, **kw)
    again = extract_embeddings(mobilenet, paths, **kw)
    assert len(chosen) == 1 and len(kept) == 1 and again.path == first.path
    np.testing.assert_array_equal(first.embeddings, again.embeddings)
    (key, entry), = kept.items()
    kept[key] = (object(), *entry[1:])  # as if another model object had made this entry
    third = extract_embeddings(mobilenet, paths, **kw)
    assert len(chosen) == 2 and kept[key][0] is mobilenet.model  # chosen anew, the entry now this model's
    np.testing.assert_array_equal(first.embeddings, third.embeddings)
    amp = {}
    extract_embeddings(mobilenet, paths[:2], batch_size=5, progress=False, amp=True, forwards=amp)
    assert amp == {}  # an amp forward is never read back, so it is not kept


def test_the_conversion_without_the_trace_check_gives_openvinos_own_model(mobilenet):
    ov = pytest.importorskip("openvino")
    import torch

    from visrec_utils.features import runtime

    example = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(1)).numpy()
    outputs = []
    for model in (ov.convert_model(mobilenet.model.eval(), example_input=example),
                  runtime._convert(mobilenet.model.eval(), example)):
        outputs.append(ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0])
    assert outputs[0].shape == (5, 1000)  # the classifier's logits: the whole network
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_cache_hits_and_invalidates_only_on_content(mobilenet, images, tmp_path):
    ids, paths = images
    cache = tmp_path / "cache"
    a, info_a = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    b, info_b = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    assert not info_a["hit"] and info_b["hit"] and info_a["key"] == info_b["key"]
    np.testing.assert_array_equal(a, b)
    # moved files with the same bytes: still a hit
    moved = [shutil.copy(p, tmp_path / f"moved_{i}.jpg") for i, p in enumerate(paths)]
    assert embeddings.cached_embeddings(mobilenet, ids, moved, cache_dir=cache, progress=False)[1]["hit"]
    # other preprocessing: a new entry
    other = models.load_model("mobilenetv1_025_keras")
    other.data_config = {**other.data_config, "crop_pct": 1.0}
    assert embeddings.cache_key(other, "x") != embeddings.cache_key(mobilenet, "x")
    # other weights: a new entry
    import torch
    with torch.no_grad():
        other.model.conv_stem.weight.add_(0.01)
    other.weights_sha256 = models.state_dict_sha256(other.model)
    assert embeddings.cache_key(other, "x") != embeddings.cache_key(mobilenet, "x")
    # other image bytes: a new entry; only that row changes
    shutil.copy(paths[1], paths[0])
    c, info_c = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    assert not info_c["hit"] and info_c["key"] != info_a["key"]
    np.testing.assert_allclose(c[0], c[1], atol=1e-5)
    np.testing.assert_array_equal(c[2:], a[2:])


def test_bad_images_are_listed_and_the_rest_extracted(mobilenet, tmp_path):
    write_generic(tmp_path)
    paths = sorted(str(p) for p in (tmp_path / "pics").iterdir() if p.name != "orphan_image.png")
    ids = [p.rsplit("/", 1)[1].split(".")[0] for p in paths]
    emb, info = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=tmp_path / "c", progress=False)
    expected = {name.split(".")[0]: why for name, why in BAD_IMAGES.items()}
    assert set(info["failed"]) == set(expected)
    for iid, why in expected.items():
        assert why in info["failed"][iid]
    bad_rows = [ids.index(i) for i in expected]
    assert np.isnan(emb[bad_rows]).all()
    good = np.delete(emb, bad_rows, axis=0)
    assert np.isfinite(good).all() and len(good) == 80
    # the failures are cached too
    assert embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=tmp_path / "c", progress=False)[1]["failed"] == info["failed"]


KILL_SCRIPT = textwrap.dedent("""
    import sys, json
    from visrec_utils.features import embeddings, models
    ids, paths = json.load(open(sys.argv[1]))
    m = models.load_model("mobilenetv1_025_keras")
    embeddings.cached_embeddings(m, ids, paths, cache_dir=sys.argv[2], chunk_images=32, batch_size=16,
                                 progress=False, num_workers=0)
""")


def test_killed_extraction_resumes_to_identical_embeddings(mobilenet, hm_catalogue, tmp_path):
    import json

    ids, paths = _copy_images(hm_catalogue, tmp_path / "img", 320)
    (tmp_path / "job.json").write_text(json.dumps([ids, paths]))
    (tmp_path / "kill.py").write_text(KILL_SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "kill.py"), str(tmp_path / "job.json"), str(cache)])
    deadline = time.time() + 300
    parts = []
    while time.time() < deadline and proc.poll() is None:
        parts = list(cache.glob("embeddings/*.parts/chunk_*.npz"))
        if len(parts) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the extraction finished before it could be killed; use more images"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(cache.glob("embeddings/*.parts/chunk_*.npz")))
    assert 2 <= n_done < 10 and not list(cache.glob("embeddings/*.npz"))
    resumed, info = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, chunk_images=32,
                                                 batch_size=16, progress=False, num_workers=0)
    assert info["extracted"] == 320 - 32 * n_done
    fresh, _ = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=tmp_path / "fresh", chunk_images=32,
                                            batch_size=16, progress=False, num_workers=0)
    np.testing.assert_array_equal(resumed, fresh)
    assert not list(cache.glob("embeddings/*.parts"))  # parts removed once complete


def test_mixed_precision_is_close_to_float32_and_cached_apart(mobilenet, images, tmp_path):
    from visrec_utils.features.extract import resolve_device

    ids, paths = images
    fp32 = extract_embeddings(mobilenet, paths, batch_size=6, progress=False, runtime="torch", device="cpu")
    amp = extract_embeddings(mobilenet, paths, batch_size=6, progress=False, device="cpu", amp=True)
    assert "autocast (bfloat16" in amp.path
    cos = (fp32.embeddings * amp.embeddings).sum(1) / (
        np.linalg.norm(fp32.embeddings, axis=1) * np.linalg.norm(amp.embeddings, axis=1))
    # bfloat16 keeps 8 mantissa bits: measured cosine to float32 0.978-0.996 on these 12 images
    assert cos.min() > 0.95 and cos.mean() > 0.98 and np.abs(fp32.embeddings - amp.embeddings).max() > 1e-2
    assert next(mobilenet.model.parameters()).device.type == "cpu"  # the model is back on the CPU
    _, a = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=tmp_path, progress=False)
    _, b = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=tmp_path, progress=False, amp=True)
    assert not b["hit"] and a["path"] != b["path"]
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")


def test_micro_batch_is_measured_once_and_pinned(tmp_path):
    import time

    import torch

    from visrec_utils.features import extract

    def per_call_overhead(x):  # a fixed cost per call: the largest micro-batch is fastest
        time.sleep(0.01)
        return x.mean((2, 3))

    shape = (32, 3, 8, 8)
    assert extract.pinned_micro_batch(per_call_overhead, shape, "m", tmp_path, seconds=0.05) == max(extract.MICRO_BATCHES)

    def must_not_run(x):
        raise AssertionError("measured again")

    assert extract.pinned_micro_batch(must_not_run, shape, "m", tmp_path) == max(extract.MICRO_BATCHES)
    x = torch.randn(37, 3, 8, 8)
    np.testing.assert_array_equal(extract.micro_batched(per_call_overhead, 8)(x).numpy(), x.mean((2, 3)).numpy())


def test_uint8_transfer_is_bitwise_the_model_transform(mobilenet, images):
    import torch
    from torchvision import transforms as T

    from visrec_utils.features import extract
    from visrec_utils.features.images import load_image

    _, paths = images
    tf = mobilenet.transform()
    head, normalize = extract.split_normalize(tf)
    ims = [load_image(p) for p in paths[:4]]
    u8 = torch.stack([head(im) for im in ims])
    assert u8.dtype == torch.uint8 and u8.shape == (4, 3, 224, 224)
    assert torch.equal(normalize(u8), torch.stack([tf(im) for im in ims]))
    # transforms of another shape are left whole (augmentations, a final custom step)
    whole = T.Compose([*tf.transforms, T.Lambda(lambda x: x)])
    assert extract.split_normalize(whole) is None
    assert extract.split_normalize(lambda im: im) is None
    # extraction through the split (uint8 from the worker) equals extraction through the whole transform
    split = extract_embeddings(mobilenet, paths, batch_size=5, fast=False, progress=False)
    float_path = extract_embeddings(mobilenet, paths, batch_size=5, fast=False, progress=False, transform=whole,
                                    num_workers=0)
    np.testing.assert_array_equal(split.embeddings, float_path.embeddings)


def test_frozen_sets_written_by_embed_catalogue_carry_their_provenance(mobilenet, hm_catalogue, tmp_path):
    from datetime import datetime

    from visrec_utils.catalogue import data

    cat = data.Catalogue(hm_catalogue.items.iloc[:6].reset_index(drop=True),
                         hm_catalogue.interactions.iloc[:0], name="six", source="test")
    out = tmp_path / "study"
    layer = "mobilenetv1_025_keras@stage2"
    table, unreadable = embeddings.embed_catalogue(["mobilenetv1_025_keras", layer], cat, out,
                                                   cache_dir=tmp_path / "cache", progress=False)
    assert table["status"].tolist() == ["ok", "ok"] and unreadable.empty
    assert not (out / "data").exists()  # notebook 01's prepared files are not embed_catalogue's to write
    rows = embedding_sets.read_manifest(out).set_index("model")
    ids, paths = cat.items["item_id"].tolist(), cat.items["image_path"].tolist()
    row = rows.loc["mobilenetv1_025_keras"]
    assert row["strategy"] == "frozen" and (row["n_items"], row["dim"]) == (6, 256)
    assert (row["arch"], row["weights_sha256"], row["layer"], row["pooling"]) == (
        mobilenet.spec.arch, mobilenet.weights_sha256, "", "avg")
    assert row["preprocessing"] == embedding_sets.data_config_json(mobilenet.data_config)
    assert row["preprocessing"] == table.set_index("model").loc["mobilenetv1_025_keras", "data_config"]
    assert row["image_set"] == embeddings.image_set_sha256(ids, paths)
    assert row["strategy_params"] == {} and row["uses_purchases"] is not None and not row["uses_purchases"]
    assert embedding_sets.load_item_ids(out, row) == ids
    assert set(row["versions"]) == {"torch", "timm", "numpy", "visrec_utils"} and row["versions"]["torch"]
    datetime.fromisoformat(row["created"])
    assert (rows.loc[layer, "backbone"], rows.loc[layer, "layer"], rows.loc[layer, "pooling"],
            rows.loc[layer, "image_set"]) == ("mobilenetv1_025_keras", "stage2", "avg", row["image_set"])
    assert (row["backbone"], row["layer"]) == ("", "")  # the final pooled features of the model itself
    assert rows.loc[layer, "items"] == row["items"]  # one list file for both sets
    assert [p.name for p in (out / "embeddings").glob("items-*.txt")] == [row["items"]]


def test_one_shared_pass_equals_single_extractions_and_fills_their_cache_entries(mobilenet, hm_catalogue, tmp_path):
    """Layer variants, a second network with the same preprocessing and the stage activations
    come from one pass over the images, bit for bit what each gives alone, under each one's own
    cache key (so notebook 03's cached_activations and a later single extraction read them)."""
    from visrec_utils.catalogue import data
    from visrec_utils.features import passes
    from visrec_utils.tuning.stage_tuning import StagedModel, cached_activations

    cat = data.Catalogue(hm_catalogue.items.iloc[:40].reset_index(drop=True),
                         hm_catalogue.interactions.iloc[:0], name="forty", source="test")
    ids, paths = cat.items["item_id"].tolist(), cat.items["image_path"].tolist()
    names = ["mobilenetv1_025_keras", "mobilenetv1_025_keras@stage2", "mobilenetv1_025_keras@stage3",
             "random_mobilenetv1_025_keras"]
    loaded = [models.load_model(n) for n in names]
    plan = passes.plan_passes([passes.taps_of(m) for m in loaded] + [passes.activation_tap(loaded[0], 1)])
    assert len(plan) == 1 and len(plan[0].nets) == 2  # one decode; the layer variants ride on their backbone
    assert [t.net for t in plan[0].taps] == [0, 0, 0, 1, 0]
    out, cache = tmp_path / "study", tmp_path / "cache"
    table, _ = embeddings.embed_catalogue(names, cat, out, cache_dir=cache, progress=False, batch_size=16,
                                          activations=[("mobilenetv1_025_keras", 1)])
    assert table["status"].tolist() == ["ok"] * 4 and not table["cache_hit"].any()
    assert table["shared_pass"].tolist() == [plan[0].describe()] * 4
    assert table["fast_path"].str.startswith("openvino").all()  # the activations do not push it off the fast path
    import torch

    ref = torch.zeros(2, plan[0].dim)
    ref[:, -1] = 50.0  # an activation of magnitude 50: its columns get 50x the pooled features' tolerance
    tol = passes.pass_module(plan[0]).tolerance(ref)
    act = plan[0].taps[-1].dim
    assert tol[:-act].eq(embeddings.FAST_PATH_ATOL).all() and torch.allclose(tol[-act:], torch.tensor(50 * 1e-4))
    sets = embedding_sets.load_embedding_sets(out)
    for m in loaded:
        alone = extract_embeddings(m, paths, batch_size=16, compile=False, progress=False)
        np.testing.assert_array_equal(sets[(m.spec.name, "frozen")], alone.embeddings)
    acts, info = cached_activations(loaded[0], ids, paths, 1, cache_dir=cache, progress=False)
    assert info["hit"]  # notebook 03 reads what the pass wrote
    staged = StagedModel(loaded[0].model, 1, loaded[0].data_config["input_size"])
    alone = extract_embeddings(loaded[0], paths, batch_size=16, compile=False, progress=False, module=staged.frozen,
                               dim=acts.shape[1])
    np.testing.assert_array_equal(acts, alone.embeddings)
    again, _ = embeddings.embed_catalogue(names[1:2], cat, tmp_path / "again", cache_dir=cache, progress=False)
    assert again["cache_hit"].tolist() == [True] and again["shared_pass"].tolist() == [""]


def test_model_table_records_cost_and_pretraining_and_keeps_the_pass_cost_on_a_cache_hit(mobilenet, hm_catalogue, tmp_path):
    from visrec_utils.catalogue import data
    from visrec_utils.features import model_cost

    cat = data.Catalogue(hm_catalogue.items.iloc[:6].reset_index(drop=True),
                         hm_catalogue.interactions.iloc[:0], name="six", source="test")
    names = ["mobilenetv1_025_keras", "mobilenetv1_025_keras@stage2"]
    first, _ = embeddings.embed_catalogue(names, cat, tmp_path / "a", cache_dir=tmp_path / "cache", progress=False)
    again, _ = embeddings.embed_catalogue(names, cat, tmp_path / "b", cache_dir=tmp_path / "cache", progress=False)
    row = first.set_index("model").loc["mobilenetv1_025_keras"]
    assert {k: row[k] for k in ("n_params", "gflops")} == model_cost.network_cost(mobilenet)
    assert (row["input_size"], row["pretrain_data"], row["pretrain_objective"]) == (
        224, "ImageNet-1k", "supervised classification")
    assert row["extract_images_per_s"] == row["images_per_s"] > 0
    assert row["extract_peak_rss_gib"] >= row["extract_added_rss_gib"] >= 0
    assert row["extract_pass"] == "mobilenetv1_025_keras +1 set, 1 network"
    # read from the cache: this run's speed is not measured, the pass that computed the set is kept
    assert again["cache_hit"].all() and again["images_per_s"].isna().all()
    pd.testing.assert_frame_equal(again[embeddings.COST_COLUMNS], first[embeddings.COST_COLUMNS])
