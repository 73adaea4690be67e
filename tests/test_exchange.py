"""Export of embedding sets and the split (Parquet, Cornac, MMRec, Elliot) and import of features
computed elsewhere (``--models file:...``): visrec_utils.features.exchange and feature_files."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data
from visrec_utils.core.store import file_sha256
from visrec_utils.features import embedding_sets, embeddings, exchange, feature_files

IDS = [f"0{100 + i}" for i in range(10)]  # leading zeros, as H&M's article ids
DAYS = ["2024-01-01", "2024-01-05", "2024-01-09"]


def _catalogue() -> data.Catalogue:
    """10 items, 6 users with one basket of two new items on each of three days."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(6):
        bought = rng.permutation(IDS)[:6]
        for b, day in enumerate(DAYS):
            rows += [(f"u{u}", it, pd.Timestamp(day)) for it in bought[2 * b: 2 * b + 2]]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return data.Catalogue(pd.DataFrame({"item_id": IDS, "image_path": [None] * len(IDS)}), inter, name="t", source="test")


def _vectors() -> np.ndarray:
    emb = np.random.default_rng(1).standard_normal((len(IDS), 4)).astype(np.float32)
    emb[0, 0], emb[1, 1] = -0.0, np.float32(1e-45)  # a signed zero and a subnormal must survive the round trip
    return emb


@pytest.fixture
def study(tmp_path):
    """A study output folder: the prepared catalogue, a frozen and a fine-tuned set of 'm/1'."""
    out = tmp_path / "study"
    cat = _catalogue()
    data.save_prepared(cat, out)
    emb = _vectors()
    embedding_sets.save_embedding_set(out, "m/1", "frozen", emb, item_ids=IDS, provenance={"arch": "a", "layer": ""})
    embedding_sets.save_embedding_set(out, "m/1", "bpr_projection", 2 * emb, item_ids=IDS)
    return out, cat, emb


def test_cornac_image_modality_gets_back_each_items_vector(study, tmp_path):
    from cornac.data import Dataset, ImageModality

    out, _, emb = study
    dest = tmp_path / "export"
    folder = exchange.export_embedding_set(out, ("m/1", "frozen"), dest, "cornac")["cornac"]
    exchange.export_split(out, dest)
    train = pd.read_csv(dest / "split" / "train.csv", dtype={"user_id": str, "item_id": str})
    train_set = Dataset.from_uir(list(zip(train["user_id"], train["item_id"], [1.0] * len(train))), seed=0)
    ids = (folder / "item_ids.txt").read_text(encoding="utf-8").splitlines()
    assert ids == IDS
    modality = ImageModality(features=np.load(folder / "features.npy"), ids=ids).build(id_map=train_set.iid_map)
    order = list(train_set.iid_map)
    assert order != [i for i in IDS if i in train_set.iid_map]  # Cornac's indices are not the export's rows
    for raw, idx in train_set.iid_map.items():
        np.testing.assert_array_equal(modality.features[idx], emb[IDS.index(raw)])
    prov = json.loads((folder / "provenance.json").read_text())
    assert (prov["model"], prov["strategy"], prov["arch"], prov["n_items"], prov["dim"]) == ("m/1", "frozen", "a", 10, 4)
    assert prov["export"]["format"] == "cornac"


def test_parquet_export_imports_back_bit_for_bit(study, tmp_path, caplog):
    out, cat, emb = study
    path = exchange.export_embedding_set(out, ("m/1", "frozen"), tmp_path / "export", "parquet")["parquet"]
    ids, back = feature_files.read_features_file(path)
    assert ids == IDS and back.dtype == np.float32 and back.tobytes() == emb.tobytes()
    other = tmp_path / "other"
    data.save_prepared(cat, other)
    with caplog.at_level(logging.WARNING):
        table, unreadable = embeddings.embed_catalogue([f"file:{path}?top1=81.2&name=m1"], cat, other, progress=False)
    assert not caplog.records and unreadable.empty
    sets = embedding_sets.load_embedding_sets(other)
    assert list(sets) == [("file:m1", "frozen")] and sets[("file:m1", "frozen")].tobytes() == emb.tobytes()
    row = embedding_sets.read_manifest(other).iloc[0]
    assert row["weights_sha256"] == f"file:{file_sha256(path)}" and row["uses_purchases"] is not None and not row["uses_purchases"]
    assert row["arch"] == f"features imported from {path}"
    assert embedding_sets.load_item_ids(other, row) == IDS
    models = pd.read_csv(other / "results" / "models.csv")
    r = models.iloc[0]
    assert (r["model"], r["status"], r["published_top1"], r["dim"]) == ("file:m1", "precomputed", 81.2, 4)
    assert r["top1_source"] == "given by the user (top1= of the file: model)"
    # without top1 the published figure stays empty; numeric columns, one per dimension, read the same
    wide = pd.DataFrame(emb, columns=[f"f{i}" for i in range(4)]).assign(item_id=IDS)
    wide.to_parquet(tmp_path / "wide.parquet")
    embeddings.embed_catalogue([f"file:{tmp_path / 'wide.parquet'}"], cat, other, progress=False)
    assert embedding_sets.load_embedding_sets(other)[("file:wide", "frozen")].tobytes() == emb.tobytes()
    models = pd.read_csv(other / "results" / "models.csv").set_index("model")
    assert np.isnan(models.loc["file:wide", "published_top1"])
    assert models.loc["file:wide", "top1_source"] == "not given (add ?top1=<percent> to the file: model)"
    # a fine-tuned set exported by visrec saw purchases: imported again, it says so (kept out of leak-free protocols)
    tuned = exchange.export_embedding_set(out, ("m/1", "bpr_projection"), tmp_path / "export", "parquet")["parquet"]
    assert feature_files.exported_saw_purchases(tuned) and not feature_files.exported_saw_purchases(path)
    assert not feature_files.exported_saw_purchases(tmp_path / "wide.parquet")  # computed elsewhere: no metadata
    with caplog.at_level(logging.WARNING):
        embeddings.embed_catalogue([f"file:{tuned}?name=tuned"], cat, other, progress=False)
    assert "from a set whose training saw purchases; it is kept out of the protocols that need purchase-free" in caplog.text
    manifest = embedding_sets.read_manifest(other).set_index("model")
    assert bool(manifest.loc["file:tuned", "uses_purchases"]) and not bool(manifest.loc["file:wide", "uses_purchases"])


def test_mmrec_rows_follow_the_item_index_of_the_inter_file(study, tmp_path):
    out, _, emb = study
    dest = tmp_path / "export"
    folder = exchange.export_embedding_set(out, "m/1/frozen", dest, "mmrec")["mmrec"]
    split = exchange.export_split(out, dest)
    feat = np.load(folder / "image_feat.npy")
    set_map = pd.read_csv(folder / "i_id_mapping.csv", sep="\t", dtype={"item_id": str})
    split_map = pd.read_csv(split / "i_id_mapping.csv", sep="\t", dtype={"item_id": str})
    pd.testing.assert_frame_equal(set_map, split_map)
    assert split_map["item_id"].tolist() == IDS and split_map["itemID"].tolist() == list(range(10))
    inter = pd.read_csv(split / "visrec.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "timestamp", "x_label"]
    item_of = dict(zip(split_map["itemID"], split_map["item_id"]))
    for r in inter.itertuples():
        np.testing.assert_array_equal(feat[r.itemID], emb[IDS.index(item_of[r.itemID])])
    # leave-last-basket-out: day 3 is the test, day 2 (the last basket of the training part) validation
    day = {0: DAYS[0], 1: DAYS[1], 2: DAYS[2]}
    seconds = {k: int(pd.Timestamp(v).timestamp()) for k, v in day.items()}
    assert inter.groupby("x_label")["timestamp"].agg(set).to_dict() == {k: {v} for k, v in seconds.items()}
    assert inter["x_label"].value_counts().sort_index().tolist() == [12, 12, 12]
    users = pd.read_csv(split / "u_id_mapping.csv", sep="\t")
    assert users["user_id"].tolist() == [f"u{u}" for u in range(6)] and users["userID"].tolist() == list(range(6))
    meta = json.loads((split / "split.json").read_text())
    assert meta["protocol"] == "leave_last_basket_out" and meta["rows"] == {"train": 12, "validation": 12, "test": 12}
    assert meta["mmrec_item_num"] == inter["itemID"].max() + 1


def test_split_tables_partition_the_purchases_with_user_and_item_ids(study, tmp_path):
    out, cat, _ = study
    split = exchange.export_split(out, tmp_path / "export")
    tables = {n: pd.read_parquet(split / f"{n}.parquet") for n in ("train", "validation", "test")}
    for name, day in zip(("train", "validation", "test"), DAYS):
        t = tables[name]
        assert list(t.columns) == exchange.SPLIT_COLUMNS and (t["timestamp"] == pd.Timestamp(day)).all()
        assert (t["item_id"] == [IDS[i] for i in t["item_idx"]]).all()
        csv = pd.read_csv(split / f"{name}.csv", dtype={"user_id": str, "item_id": str}, parse_dates=["timestamp"])
        pd.testing.assert_frame_equal(csv, t, check_dtype=False)
    got = pd.concat(tables.values())[["user_id", "item_id", "timestamp"]].sort_values(["user_id", "timestamp", "item_id"])
    want = cat.interactions.sort_values(["user_id", "timestamp", "item_id"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


def test_elliot_folder_holds_one_vector_file_per_item(study, tmp_path):
    out, _, emb = study
    dest = tmp_path / "export"
    folder = exchange.export_embedding_set(out, ("m/1", "bpr_projection"), dest, "elliot")["elliot"]
    files = sorted((folder / "visual_features").iterdir(), key=lambda f: int(f.stem))
    assert [f.name for f in files] == [f"{i}.npy" for i in range(10)]
    for i, f in enumerate(files):
        vec = np.load(f)
        assert vec.shape == (4,) and vec.dtype == np.float32
        np.testing.assert_array_equal(vec, 2 * emb[i])
    mapping = pd.read_csv(folder / "item_mapping.tsv", sep="\t", dtype={"item_id": str})
    assert mapping["itemId"].tolist() == list(range(10)) and mapping["item_id"].tolist() == IDS
    split = exchange.export_split(out, dest)
    test = pd.read_csv(split / "elliot" / "test.tsv", sep="\t", header=None)
    assert test.shape == (12, 4) and set(test[2]) == {1} and set(test[1]) <= set(range(10))
    again = exchange.export_embedding_set(out, ("m/1", "bpr_projection"), dest, "elliot")["elliot"]  # rewritten whole
    assert len(list((again / "visual_features").iterdir())) == 10


def test_export_study_writes_every_set_in_every_format_and_lists_them(study, tmp_path, capsys):
    from visrec_utils.__main__ import main

    out, _, _ = study
    dest = tmp_path / "export"
    assert main(["export", "--out", str(out), "--to", str(dest)]) == 0
    listed = pd.read_csv(dest / "exports.csv")
    assert len(listed) == 2 * 4 + 1 and set(listed["format"]) == {"parquet", "cornac", "mmrec", "elliot", "split"}
    assert main(["export", "--out", str(out), "--to", str(dest), "--format", "parquet", "--sets", "m/1/bpr_projection",
                 "--no-split"]) == 0
    assert pd.read_csv(dest / "exports.csv")[["model", "strategy", "format"]].values.tolist() == [
        ["m/1", "bpr_projection", "parquet"]]
    capsys.readouterr()
    assert main(["export", "--out", str(out), "--to", str(dest), "--sets", "m/2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"visrec: error: no embedding set named 'm/2' in {out / 'embeddings'} (did you mean 'm/1'?); "
        "sets: m/1/bpr_projection, m/1/frozen")
    assert (dest / "exports.csv").read_text().splitlines()[1].endswith(",10,4")  # n_items and dim as integers
    for args, message in ((["--out", str(tmp_path / "none"), "--to", str(dest)],
                           f"the study folder {tmp_path / 'none'} (--out) does not exist; name the folder a study wrote "
                           "(python -m visrec_utils study --out DIR)"),
                          (["--out", str(out), "--to", str(out)],
                           f"the destination {out} (--to) is the study folder itself; name another folder, e.g. "
                           f"{out / 'exports'}")):
        assert main(["export", *args]) == 2
        assert capsys.readouterr().err.strip() == f"visrec: error: {message}"
    with pytest.raises(ValueError) as e:
        exchange.export_embedding_set(out, "m/1", dest, "parquet")
    assert str(e.value) == "'m/1' names 2 embedding sets (m/1/bpr_projection, m/1/frozen); name one as <model>/<strategy>"
    with pytest.raises(ValueError) as e:
        exchange.export_embedding_set(out, "m/1/frozen", dest, "npz")
    assert str(e.value) == "format 'npz' is not an export format; choose from parquet, cornac, mmrec, elliot or all"


# ------------------------------------------------------------------ bad input, one line each


def _write(path, frame):
    frame.to_parquet(path, index=False)
    return path


def _error(path) -> str:
    with pytest.raises(ValueError) as e:
        feature_files.read_features_file(path)
    return str(e.value)


def test_all_zero_vectors_are_read_with_a_warning_that_names_them(tmp_path, caplog):
    path = _write(tmp_path / "zeros.parquet", pd.DataFrame({"item_id": ["a", "b", "c"], "x": [0.0, 1.0, 0.0],
                                                            "y": [0.0, 2.0, 0.0]}))
    with caplog.at_level(logging.WARNING):
        ids, emb = feature_files.read_features_file(path)
    assert ids == ["a", "b", "c"] and emb.tolist() == [[0, 0], [1, 2], [0, 0]]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 2 of 3 vectors are all zeros (e.g. item_id 'a', 'c'): their cosine with every item is 0, so VisRank "
        "cannot rank them; check how the features were computed"]


def test_each_bad_features_file_is_named_in_one_line(tmp_path):
    missing = tmp_path / "nope.parquet"
    assert _error(missing) == (f"{missing} does not exist; give a Parquet file with an item_id column and the vectors "
                               "(file:/path/features.parquet)")
    no_id = _write(tmp_path / "no_id.parquet", pd.DataFrame({"id": ["a"], "v": [1.0]}))
    assert _error(no_id) == f"{no_id} has no item_id column (its columns: 'id', 'v'); name the column of item ids item_id"
    nan = _write(tmp_path / "nan.parquet", pd.DataFrame({"item_id": ["a", "b", "c"], "x": [1.0, np.nan, 2.0],
                                                         "y": [1.0, 2.0, np.inf]}))
    assert _error(nan) == (f"{nan}: 2 row(s) hold NaN, infinite or missing values, e.g. item_id 'b', 'c'; "
                           "fix or drop those rows")
    ragged = _write(tmp_path / "ragged.parquet", pd.DataFrame({"item_id": ["a", "b", "c"],
                                                               "vec": [[1.0, 2, 3], [1.0, 2], [4.0, 5, 6]]}))
    assert _error(ragged) == (f"{ragged}: the vectors in column 'vec' have 2 different lengths (2, 3): item_id 'b' has "
                              "2 values where 2 rows have 3; every item needs a vector of one dimension")
    dupes = _write(tmp_path / "dupes.parquet", pd.DataFrame({"item_id": ["a", "b", "a", "b", "c"], "x": np.arange(5.0)}))
    assert _error(dupes) == f"{dupes}: 2 item id(s) appear on more than one row, e.g. 'a', 'b'; keep one row per item"
    text = _write(tmp_path / "text.parquet", pd.DataFrame({"item_id": ["a"], "x": [1.0], "colour": ["red"]}))
    assert _error(text) == (f"{text}: besides item_id it needs one list column of vectors or only numeric columns "
                            "(one per dimension); found colour (text), x (double)")
    # the offending column is named even after six good ones
    many = _write(tmp_path / "many.parquet", pd.DataFrame({"item_id": ["a"], **{f"f{i}": [1.0] for i in range(8)},
                                                           "note": ["x"]}))
    assert _error(many).endswith("found note (text), f0 (double), f1 (double), f2 (double), f3 (double), f4 (double)")
    not_parquet = tmp_path / "f.parquet"
    not_parquet.write_text("item_id,x\na,1\n")
    assert _error(not_parquet).startswith(f"{not_parquet} is not a readable Parquet file (")


def test_catalogue_items_missing_from_the_file_are_left_out_like_unreadable_images(study, tmp_path, caplog):
    out, cat, emb = study
    path = _write(tmp_path / "part.parquet", pd.DataFrame({"item_id": IDS[2:] + ["extra"],
                                                           "vec": list(np.vstack([emb[2:], emb[:1]]))}))
    with caplog.at_level(logging.WARNING, logger="visrec_utils"):
        table, unreadable = embeddings.embed_catalogue([f"file:{path}"], cat, out, progress=False)
    assert caplog.records[0].getMessage() == (
        f"file:part: 2 of 10 catalogue items have no vector in {path} (e.g. '0100', '0101'); they are left out of the "
        "study like unreadable images (results/unreadable_images.csv)")
    assert unreadable["item_id"].tolist() == ["0100", "0101"]
    assert set(unreadable["reason"]) == {"no vector in the imported features part.parquet (file:part)"}
    sets = embedding_sets.load_embedding_sets(out)
    np.testing.assert_array_equal(sets[("file:part", "frozen")], emb[2:])
    np.testing.assert_array_equal(sets[("m/1", "frozen")], emb[2:])  # every frozen set loses the same rows
    assert data.load_study_catalogue(out).items["item_id"].tolist() == IDS[2:]
    assert table.set_index("model").loc["file:part", "n_unreadable"] == 2
    none = _write(tmp_path / "none.parquet", pd.DataFrame({"item_id": [100, 101], "x": [1.0, 2.0]}))
    with pytest.raises(ValueError) as e:
        feature_files.import_features(f"file:{none}", IDS)
    assert str(e.value) == (f"{none} holds none of the catalogue's 10 item ids (the file has e.g. '100', '101'; the "
                            "catalogue e.g. '0100', '0101', '0102'); its item_id column must hold the catalogue's ids")


def test_file_model_names_options_and_early_checks(tmp_path, monkeypatch):
    from visrec_utils.pipeline import runner

    monkeypatch.chdir(tmp_path)
    m = feature_files.parse_file_model("file:feats/clip.parquet?top1=68.3&family=ViT")
    assert (m.path, m.name, m.top1, m.family) == (tmp_path / "feats" / "clip.parquet", "file:clip", 68.3, "ViT")
    assert feature_files.resolve_file_model("file:feats/clip.parquet?top1=68.3") == f"file:{tmp_path}/feats/clip.parquet?top1=68.3"
    assert feature_files.set_name("file:/x/clip.parquet?name=clip_b16") == "file:clip_b16"
    assert feature_files.set_name("resnet50") == "resnet50"
    for spec, msg in [
        ("file:/x/f.parquet?top=81", "file:/x/f.parquet?top=81: 'top=81' is not an option; write <option>=<value> with "
         "an option among top1, name, family, e.g. file:/path/features.parquet?top1=81.2&name=clip_b16"),
        ("file:/x/f.parquet?top1=812", "file:/x/f.parquet?top1=812: top1='812' must be the model's published ImageNet "
         "top-1 in percent (a number from 0 to 100), e.g. ?top1=81.2"),
        ("file:", "file:: no file named; write file:/path/features.parquet"),
    ]:
        with pytest.raises(ValueError) as e:
            feature_files.parse_file_model(spec)
        assert str(e.value) == msg
    a = _write(tmp_path / "a.parquet", pd.DataFrame({"item_id": ["x"], "v": [1.0]}))
    (tmp_path / "b").mkdir()
    b = _write(tmp_path / "b" / "a.parquet", pd.DataFrame({"item_id": ["x"], "v": [2.0]}))
    with pytest.raises(ValueError) as e:
        feature_files.check_file_models([f"file:{a}", f"file:{b}"])
    assert str(e.value) == (f"file:{a} and file:{b} both give the set name 'file:a'; name one of them with "
                            "?name=<another name>")
    feature_files.check_file_models([f"file:{a}", f"file:{b}?name=b"])
    digest = feature_files.file_model_digests([f"file:{a}", "resnet50"])
    assert digest == {f"file:{a}": file_sha256(a)}
    _write(a, pd.DataFrame({"item_id": ["x"], "v": [3.0]}))  # rewritten in place: the reuse key changes
    assert feature_files.file_model_digests([f"file:{a}"])[f"file:{a}"] != digest[f"file:{a}"]
    with pytest.raises(ValueError) as e:  # the study stops before notebook 01
        runner.run_study({"data_dir": "demo", "models": ["file:missing.parquet"]}, tmp_path / "out")
    assert str(e.value) == (f"{tmp_path / 'missing.parquet'} does not exist; give a Parquet file with an item_id "
                            "column and the vectors (file:/path/features.parquet)")
    assert not (tmp_path / "out" / "results" / "run.json").exists()


@pytest.mark.slow
def test_imported_features_go_through_tuning_evaluation_and_comparison(tmp_path):
    """Two file: models on a demo catalogue, through the stages as notebooks 01-05 call them: the
    set whose vectors carry the demo's hidden taste (hue) beats the noise set, each keeps its top-1."""
    from visrec_utils.catalogue import demo
    from visrec_utils.pipeline import stages

    folder = demo.make_demo_catalogue(tmp_path / "catalogue", n_users=80, n_items=120, image_size=48)
    out = tmp_path / "out"
    stages.prepare(out, data_dir=str(folder), figures=False)
    ids = data.load_prepared(out).items["item_id"].tolist()
    hue = pd.read_csv(folder / "items.csv").set_index("item_id").loc[ids, "hue"].to_numpy()
    rng = np.random.default_rng(0)
    taste = np.c_[np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue), 0.1 * rng.standard_normal(len(ids))]
    _write(tmp_path / "hue.parquet", pd.DataFrame({"item_id": ids, "vec": list(taste.astype(np.float32))}))
    _write(tmp_path / "noise.parquet", pd.DataFrame({"item_id": ids, "vec": list(rng.standard_normal((len(ids), 8)))}))
    models = [f"file:{tmp_path / 'hue.parquet'}?top1=80", f"file:{tmp_path / 'noise.parquet'}?top1=20"]
    stages.extract(out, models=models, imagenet_dir="", umap_points=0, stage_models=[])
    tuned = stages.tune(out, models=models, stage_models=[], strategies=["bpr_projection"], bpr_steps=20, n_resamples=50)
    assert sorted(tuned.cost["model"]) == ["file:hue", "file:noise"]
    ev = stages.evaluate(out, other_protocols=[], sensitivity=[], cold_warm=False, slices=False,
                         recommenders=["visrank_max"], baselines=["random"], n_resamples=50)
    auc = ev.metrics[(ev.metrics["metric"] == "auc") & (ev.metrics["strategy"] == "frozen")].set_index("model")["value"]
    assert auc["file:hue"] > 0.7 > 0.6 > auc["file:noise"]
    table = stages.compare(out, n_resamples=50).table.set_index("model")
    assert table.loc[["file:hue", "file:noise"], "published_top1"].tolist() == [80.0, 20.0]
