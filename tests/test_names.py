"""Identifiers that become file names: safe, distinct, stable; names as given stay in the data."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from visrec_utils.features import embeddings
from visrec_utils.core.naming import MAX_LEN, safe_name, safe_stem

AWKWARD = [
    "tf_efficientnet_lite0=/path/to/weights.pth",
    "tf_efficientnet_lite0=/data/my weights/w.pth",
    "tf_efficientnet_lite0=C:\\ckpt\\w.pth",
    "resnet50=../../etc/passwd",
    "..", ".", "", "/", "a/b", "a_b", "a__b", "a___b", "_a", "a_", "-rf", ".hidden",
    "a:b", "a b", "a\tb", "a\nb", "modèle", "modele", "模型", "😀", "Resnet50", "resnet50", "RESNET50",
    "x" * 300, "x" * 301, "x" * 80, "x" * 81, "con", "nul.txt", "model-0123456789",
    "tf_efficientnet_lite0@stage3", "random_tf_efficientnet_lite0", "tf_efficientnet_lite0.in1k",
]


def test_plain_names_are_kept_as_they_are():
    # existing caches and output folders keep their file names
    for name in ["tf_efficientnet_lite0", "mobilenetv1_025_keras", "random_tf_efficientnet_lite0",
                 "tf_efficientnet_lite0@stage3", "tf_efficientnet_lite0.in1k", "frozen", "bpr_projection", "x" * 80]:
        assert safe_name(name) == name


def test_distinct_names_never_collide_and_nothing_unsafe_survives():
    safe = [safe_name(n) for n in AWKWARD]
    assert len(set(safe)) == len(AWKWARD)
    # case-insensitive file systems (macOS, Windows) must not merge them either
    assert len({s.lower() for s in safe}) == len(AWKWARD)
    for name, s in zip(AWKWARD, safe):
        assert s.isascii() and s.isprintable() and 0 < len(s) <= MAX_LEN, (name, s)
        assert not any(bad in s for bad in ("/", "\\", ":", "..", "__", " ", "\t", "\n")), (name, s)
        assert not s.startswith((".", "-", "_")), (name, s)
    # what was lossy carries the 10-digit hash; the readable part keeps what it could
    assert safe_name("tf_efficientnet_lite0=/path/to/weights.pth") == "tf_efficientnet_lite0_path_to_weights_pth-" + \
        __import__("hashlib").sha256(b"tf_efficientnet_lite0=/path/to/weights.pth").hexdigest()[:10]
    assert safe_name("modèle").startswith("modele-") and safe_name("modèle") != safe_name("modele")
    assert safe_name("..") .startswith("x-") and safe_name("con").startswith("con-")
    # a verbatim name that looks hashed is itself hashed, so it cannot meet a hashed one
    assert safe_name("model-0123456789") != "model-0123456789"


def test_stems_of_pairs_are_unambiguous():
    pairs = [("a__b", "c"), ("a", "b__c"), ("a_", "_b"), ("a", "_b"), ("a_", "b"), ("a", "b")]
    stems = [safe_stem(*p) for p in pairs]
    assert len(set(stems)) == len(pairs)
    assert safe_stem("mobilenetv1_025_keras", "frozen") == "mobilenetv1_025_keras__frozen"


def test_safe_names_are_stable_across_processes():
    code = ("import json; from visrec_utils.core.naming import safe_name; "
            "print(json.dumps([safe_name(n) for n in %r]))" % AWKWARD)
    other = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                      env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout)
    assert other == [safe_name(n) for n in AWKWARD]
    with pytest.raises(TypeError):
        safe_name(3)


def test_embedding_sets_round_trip_under_any_name(tmp_path):
    rng = np.random.default_rng(0)
    sets = {(m, s): rng.standard_normal((7, 4)).astype(np.float32)
            for m, s in [("tf_efficientnet_lite0=/data/my weights/w.pth", "frozen"), ("a__b", "c"), ("a", "b__c"),
                         ("modèle", "frozen"), ("resnet50=../../x.pth", "bpr_projection"), ("x" * 300, "frozen"),
                         ("mobilenetv1_025_keras", "frozen")]}
    for (m, s), e in sets.items():
        p = embeddings.save_embedding_set(tmp_path, m, s, e)
        assert p.parent == tmp_path / "embeddings"  # never a sub-folder or outside
    assert sorted(p.name for p in (tmp_path / "embeddings").iterdir()) == sorted(
        f"{safe_stem(m, s)}.{ext}" for m, s in sets for ext in ("npy", "json"))  # no temporary files left
    back = embeddings.load_embedding_sets(tmp_path)
    assert set(back) == set(sets)
    for k, e in sets.items():
        np.testing.assert_array_equal(back[k], e)
    rows = embeddings.read_manifest(tmp_path)
    assert {(r["model"], r["strategy"], r["n_items"], r["dim"]) for r in rows} == {(m, s, 7, 4) for m, s in sets}
    # filters and order as before: given model order, frozen first
    sel = embeddings.load_embedding_sets(tmp_path, models=["resnet50=../../x.pth", "a"])
    assert list(sel) == [("resnet50=../../x.pth", "bpr_projection"), ("a", "b__c")]
    # saving again replaces the row, not adds one
    embeddings.save_embedding_set(tmp_path, "a", "b__c", np.zeros((3, 2)))
    assert len(embeddings.read_manifest(tmp_path)) == len(sets)
    assert embeddings.load_embedding_sets(tmp_path)[("a", "b__c")].shape == (3, 2)


def test_output_folder_without_manifest_stays_readable(tmp_path):
    d = tmp_path / "embeddings"
    d.mkdir()
    np.save(d / "mobilenetv1_025_keras__frozen.npy", np.ones((5, 3), np.float32))
    np.save(d / "mobilenetv1_025_keras__bpr_projection.npy", np.zeros((5, 2), np.float32))
    np.save(d / ".mobilenetv1_025_keras__frozen.tmp.npy", np.zeros((1, 1), np.float32))  # a crashed write
    assert list(embeddings.load_embedding_sets(tmp_path)) == [("mobilenetv1_025_keras", "frozen"),
                                                               ("mobilenetv1_025_keras", "bpr_projection")]
    # a new set beside them carries its own row; the older ones are still read by their file names
    embeddings.save_embedding_set(tmp_path, "hand crafted/v1", "frozen", np.ones((5, 9)))
    back = embeddings.load_embedding_sets(tmp_path)
    assert len(back) == 3 and back[("mobilenetv1_025_keras", "frozen")].sum() == 15
    assert back[("hand crafted/v1", "frozen")].shape == (5, 9)
    row = d / f"{safe_stem('hand crafted/v1', 'frozen')}.json"
    row.write_text("{not json")
    with pytest.raises(ValueError, match=f"{row} is not a visrec embedding-set manifest row"):
        embeddings.read_manifest(tmp_path)


def test_embed_catalogue_drops_unreadable_rows_from_every_frozen_set_by_manifest(tmp_path, monkeypatch):
    """Unreadable images: the sets listed in the manifest lose their rows, whatever their names."""
    from visrec_utils.catalogue import data

    items = pd.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "image_path": ["a", "b", "c", "d"]})
    inter = pd.DataFrame({"user_id": ["u"] * 4, "item_id": items["item_id"], "timestamp": pd.Timestamp("2024-01-01")})
    cat = data.Catalogue(items, inter, name="t", source="test")
    odd = "tf_efficientnet_lite0=/data/my weights/w.pth"
    embeddings.save_embedding_set(tmp_path, odd, "frozen", np.arange(8, dtype=np.float32).reshape(4, 2))
    embeddings.save_embedding_set(tmp_path, "other", "frozen", np.ones((3, 2)))  # not this catalogue's: left alone
    monkeypatch.setattr(embeddings, "image_set_sha256", lambda ids, paths: "x")

    class Spec:
        name, arch, family, published_top1, top1_source, weights = "m/1", "a", "f", None, "", ""

    class Loaded:
        spec, dim, weights_sha256, data_config, model = Spec, 2, "w", {}, None

    monkeypatch.setattr("visrec_utils.features.models.load_model", lambda name: Loaded)
    monkeypatch.setattr(embeddings, "cached_embeddings", lambda *a, **k: (
        np.array([[0, 0], [1, 1], [np.nan, np.nan], [3, 3]], np.float32),
        {"failed": {"i2": "corrupt"}, "hit": True, "seconds": 0.0, "fast_path": "cache"}))
    table, unreadable = embeddings.embed_catalogue(["m/1"], cat, tmp_path, progress=False)
    sets = embeddings.load_embedding_sets(tmp_path)
    np.testing.assert_array_equal(sets[(odd, "frozen")], [[0, 1], [2, 3], [6, 7]])
    np.testing.assert_array_equal(sets[("m/1", "frozen")], [[0, 0], [1, 1], [3, 3]])
    assert sets[("other", "frozen")].shape == (3, 2)
    assert table["model"].tolist() == ["m/1"] and unreadable["item_id"].tolist() == ["i2"]
    assert pd.read_csv(tmp_path / "results" / "models.csv")["model"].tolist() == ["m/1"]


def test_precomputed_sets_keep_their_names_through_prepared_files(tmp_path):
    from visrec_utils.catalogue import data

    items = pd.DataFrame({"item_id": ["a", "b"], "image_path": [None, None]})
    inter = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    odd = "clip/ViT-B 32: shop__v2"
    emb = np.arange(6, dtype=np.float32).reshape(2, 3)
    data.save_prepared(data.Catalogue(items, inter, precomputed={odd: emb}), tmp_path)
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert all("/" not in f and " " not in f and ":" not in f for f in files)
    back = data.load_prepared(tmp_path).precomputed
    assert list(back) == [odd]
    np.testing.assert_array_equal(back[odd], emb)
