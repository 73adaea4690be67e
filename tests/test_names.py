"""Identifiers that become file names: safe, distinct, stable; names as given stay in the data."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from visrec_utils.features import embedding_sets, embeddings
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
        p = embedding_sets.save_embedding_set(tmp_path, m, s, e)
        assert p.parent == tmp_path / "embeddings"  # never a sub-folder or outside
    assert sorted(p.name for p in (tmp_path / "embeddings").iterdir()) == sorted(
        f"{safe_stem(m, s)}.{ext}" for m, s in sets for ext in ("npy", "json"))  # no temporary files left
    back = embedding_sets.load_embedding_sets(tmp_path)
    assert set(back) == set(sets)
    for k, e in sets.items():
        np.testing.assert_array_equal(back[k], e)
    rows = embedding_sets.read_manifest(tmp_path)
    assert list(rows.columns) == list(embedding_sets.MANIFEST_COLUMNS) and rows["file"].is_monotonic_increasing
    assert set(zip(rows["model"], rows["strategy"], rows["n_items"], rows["dim"])) == {(m, s, 7, 4) for m, s in sets}
    assert (rows["items"] == "").all() and rows["uses_purchases"].tolist() == [
        False if s == "frozen" else None for s in rows["strategy"]]
    # filters and order as before: given model order, frozen first
    sel = embedding_sets.load_embedding_sets(tmp_path, models=["resnet50=../../x.pth", "a"])
    assert list(sel) == [("resnet50=../../x.pth", "bpr_projection"), ("a", "b__c")]
    # saving again replaces the row, not adds one
    embedding_sets.save_embedding_set(tmp_path, "a", "b__c", np.zeros((3, 2)))
    assert len(embedding_sets.read_manifest(tmp_path)) == len(sets)
    assert embedding_sets.load_embedding_sets(tmp_path)[("a", "b__c")].shape == (3, 2)


def test_only_arrays_with_a_manifest_row_are_sets_and_a_bad_row_is_named(tmp_path):
    d = tmp_path / "embeddings"
    d.mkdir()
    assert embedding_sets.read_manifest(tmp_path).empty and embedding_sets.load_embedding_sets(tmp_path) == {}
    np.save(d / "mobilenetv1_025_keras__frozen.npy", np.ones((5, 3), np.float32))  # no row: file names are not parsed
    np.save(d / ".mobilenetv1_025_keras__frozen.tmp.npy", np.zeros((1, 1), np.float32))  # a crashed write
    embedding_sets.save_embedding_set(tmp_path, "hand crafted/v1", "frozen", np.ones((5, 9)))
    back = embedding_sets.load_embedding_sets(tmp_path)
    assert list(back) == [("hand crafted/v1", "frozen")] and back[("hand crafted/v1", "frozen")].shape == (5, 9)
    # a row written before the provenance columns existed is read with their defaults
    old = d / "old__frozen.json"
    np.save(d / "old__frozen.npy", np.ones((2, 2), np.float32))
    old.write_text(json.dumps({"model": "old", "strategy": "frozen", "file": "old__frozen.npy", "n_items": 2, "dim": 2}))
    row = embedding_sets.read_manifest(tmp_path).set_index("model").loc["old"]
    assert (row["arch"], row["items"], row["strategy_params"], row["uses_purchases"]) == ("", "", {}, False)
    assert embedding_sets.load_item_ids(tmp_path, row) is None
    row_file = d / f"{safe_stem('hand crafted/v1', 'frozen')}.json"
    for bad in ("{not json", "[1, 2]", json.dumps({"model": "m"})):
        row_file.write_text(bad)
        with pytest.raises(ValueError, match=f"^{re.escape(str(row_file))} is not a visrec embedding-set manifest row") as e:
            embedding_sets.read_manifest(tmp_path)
        assert "\n" not in str(e.value)


def test_item_ids_round_trip_and_are_written_once_per_list(tmp_path):
    ids = ["0108775015", "a b", "modèle", "", "x" * 300]
    embedding_sets.save_embedding_set(tmp_path, "m1", "frozen", np.zeros((5, 2)), item_ids=ids)
    embedding_sets.save_embedding_set(tmp_path, "m2", "frozen", np.ones((5, 3)), item_ids=np.array(ids))
    embedding_sets.save_embedding_set(tmp_path, "m2", "bpr", np.ones((2, 3)), item_ids=ids[:2],
                                  provenance={"strategy_params": {"lr": 0.01, "epochs": 3}, "uses_purchases": True})
    rows = embedding_sets.read_manifest(tmp_path).set_index(["model", "strategy"])
    assert len(list((tmp_path / "embeddings").glob("items-*.txt"))) == 2  # one file per distinct list
    assert rows.loc[("m1", "frozen"), "items"] == rows.loc[("m2", "frozen"), "items"]
    for key, want in [(("m1", "frozen"), ids), (("m2", "frozen"), ids), (("m2", "bpr"), ids[:2])]:
        assert embedding_sets.load_item_ids(tmp_path, rows.loc[key]) == want
    assert rows.loc[("m2", "bpr"), "strategy_params"] == {"lr": 0.01, "epochs": 3}
    assert rows.loc[("m2", "bpr"), "uses_purchases"] and not rows.loc[("m1", "frozen"), "uses_purchases"]
    assert set(rows.loc[("m1", "frozen"), "versions"]) == {"torch", "timm", "numpy", "visrec_utils"}
    with pytest.raises(ValueError, match="2 item ids for an embedding set of 3 rows"):
        embedding_sets.save_embedding_set(tmp_path, "m3", "frozen", np.ones((3, 2)), item_ids=["a", "b"])
    with pytest.raises(ValueError, match="line break"):
        embedding_sets.save_embedding_set(tmp_path, "m3", "frozen", np.ones((1, 2)), item_ids=["a\nb"])
    with pytest.raises(ValueError, match="provenance columns"):
        embedding_sets.save_embedding_set(tmp_path, "m3", "frozen", np.ones((1, 2)), provenance={"n_items": 3})
    # a list file that does not hold its list is an error, not wrong ids
    f = tmp_path / "embeddings" / rows.loc[("m2", "bpr"), "items"]
    f.write_text("other\n")
    with pytest.raises(ValueError, match="does not hold the item-id list"):
        embedding_sets.load_item_ids(tmp_path, rows.loc[("m2", "bpr")])


def _same_catalogue(a, b):
    for part in ("items", "interactions", "report"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))
    assert (a.name, a.source, a.notes, a.synthetic) == (b.name, b.source, b.notes, b.synthetic)
    assert list(a.precomputed) == list(b.precomputed)
    for k in a.precomputed:
        np.testing.assert_array_equal(a.precomputed[k], b.precomputed[k])


def test_embed_catalogue_drops_unreadable_rows_from_every_frozen_set_by_manifest(tmp_path, monkeypatch):
    """Unreadable images: the sets listed in the manifest lose their rows, whatever their names; the
    prepared catalogue stays as notebook 01 wrote it, and load_study_catalogue leaves those items out."""
    from visrec_utils.catalogue import data

    ids = ["0100", "0101", "0102", "0103"]  # leading zeros, as H&M's article ids
    items = pd.DataFrame({"item_id": ids, "image_path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]})
    inter = pd.DataFrame({"user_id": ["u"] * 4, "item_id": items["item_id"], "timestamp": pd.Timestamp("2024-01-01")})
    report = pd.DataFrame([{"check": "duplicate rows", "count": 2, "action": "dropped", "examples": "",
                            "what_to_do": "nothing"}])
    cat = data.Catalogue(items, inter, name="t", source="test", report=report, notes=["sliced"],
                         precomputed={"shop resnet": np.arange(12, dtype=np.float32).reshape(4, 3)})
    data.save_prepared(cat, tmp_path)  # notebook 01
    prepared = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    odd = "tf_efficientnet_lite0=/data/my weights/w.pth"
    embedding_sets.save_embedding_set(tmp_path, odd, "frozen", np.arange(8, dtype=np.float32).reshape(4, 2))
    embedding_sets.save_embedding_set(tmp_path, "other", "frozen", np.ones((3, 2)))  # not this catalogue's: left alone
    embedding_sets.save_embedding_set(tmp_path, "ids differ", "frozen", np.ones((4, 2)), item_ids=list("abcd"))
    monkeypatch.setattr(embeddings, "image_set_sha256", lambda ids, paths: "x")

    class Spec:
        name, arch, family, published_top1, top1_source, weights, backbone, layer = "m/1", "a", "f", None, "", "", "", ""

    class Loaded:
        spec, dim, weights_sha256, data_config, model = Spec, 2, "w", {"crop_pct": 0.875}, None

    monkeypatch.setattr("visrec_utils.features.models.load_model", lambda name: Loaded)
    monkeypatch.setattr(embeddings, "cached_embeddings", lambda *a, **k: (
        np.array([[0, 0], [1, 1], [np.nan, np.nan], [3, 3]], np.float32),
        {"failed": {"0102": "corrupt"}, "hit": True, "seconds": 0.0, "fast_path": "cache"}))
    table, unreadable = embeddings.embed_catalogue(["m/1"], cat, tmp_path, progress=False)
    sets = embedding_sets.load_embedding_sets(tmp_path)
    np.testing.assert_array_equal(sets[(odd, "frozen")], [[0, 1], [2, 3], [6, 7]])
    np.testing.assert_array_equal(sets[("m/1", "frozen")], [[0, 0], [1, 1], [3, 3]])
    np.testing.assert_array_equal(sets[("shop resnet", "frozen")], cat.precomputed["shop resnet"][[0, 1, 3]])
    assert sets[("other", "frozen")].shape == (3, 2) and sets[("ids differ", "frozen")].shape == (4, 2)
    assert table["model"].tolist() == ["shop resnet", "m/1"] and unreadable["item_id"].tolist() == ["0102"]
    assert pd.read_csv(tmp_path / "results" / "models.csv")["model"].tolist() == ["shop resnet", "m/1"]
    # the frozen sets' provenance, kept through the re-save without the unreadable row
    rows = embedding_sets.read_manifest(tmp_path).set_index("model")
    row = rows.loc["m/1"]
    assert (row["arch"], row["weights_sha256"], row["layer"], row["pooling"], row["image_set"]) == ("a", "w", "", "", "x")
    assert json.loads(row["preprocessing"]) == {"crop_pct": 0.875} and row["n_items"] == 3
    assert row["uses_purchases"] is not None and not row["uses_purchases"] and row["strategy_params"] == {}
    for model in ("m/1", odd, "shop resnet"):
        assert embedding_sets.load_item_ids(tmp_path, rows.loc[model]) == ["0100", "0101", "0103"]
    # notebook 01's files are untouched; the study's catalogue is what notebook 02 used to re-save
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == prepared
    _same_catalogue(data.load_prepared(tmp_path), cat)
    old = data.drop_items(cat, {"0102"}, check="unreadable images", examples=["c.jpg: corrupt"])
    data.save_prepared(old, tmp_path / "old")
    _same_catalogue(data.load_study_catalogue(tmp_path), data.load_prepared(tmp_path / "old"))
    # an output folder whose data/ notebook 02 reduced itself (before load_study_catalogue): read as it is
    (tmp_path / "old" / "results").mkdir()
    shutil.copy(tmp_path / "results" / "unreadable_images.csv", tmp_path / "old" / "results")
    _same_catalogue(data.load_study_catalogue(tmp_path / "old"), data.load_prepared(tmp_path / "old"))
    # a run with every image readable writes an empty list: the study's catalogue is the prepared one
    monkeypatch.setattr(embeddings, "cached_embeddings", lambda *a, **k: (
        np.zeros((4, 2), np.float32), {"failed": {}, "hit": True, "seconds": 0.0, "fast_path": "cache"}))
    embeddings.embed_catalogue(["m/1"], cat, tmp_path, progress=False)
    _same_catalogue(data.load_study_catalogue(tmp_path), data.load_prepared(tmp_path))


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


def test_layer_variants_come_from_the_frozen_rows_of_the_manifest(tmp_path):
    emb = np.ones((3, 2), np.float32)
    embedding_sets.save_embedding_set(tmp_path, "m", "frozen", emb)
    embedding_sets.save_embedding_set(tmp_path, "m mid", "frozen", emb, provenance={"backbone": "m", "layer": "stage2"})
    embedding_sets.save_embedding_set(tmp_path, "m mid", "bpr_projection", emb, provenance={"layer": "stage2"})
    assert embedding_sets.layer_variants(embedding_sets.read_manifest(tmp_path)) == {"m mid": ("m", "stage2")}
