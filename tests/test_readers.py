"""Readers of each layout and their validation reports."""
import numpy as np
import pandas as pd
import pytest

from catalogues import write_generic, write_ugallery
from visrec_utils import data, demo, readers, splits


def _count(cat, check):
    r = cat.report.set_index("check")
    return int(r.loc[check, "count"])


def test_generic_layout_with_every_row_problem(tmp_path):
    exp = write_generic(tmp_path, with_bad=False)
    cat = readers.load_catalogue(tmp_path)
    assert cat.name == "generic-test"
    assert _count(cat, "empty ids") == 1
    assert _count(cat, "unparseable or missing timestamps") == 1
    assert "line " in cat.report.set_index("check").loc["unparseable or missing timestamps", "examples"]
    assert "'yesterday'" in cat.report.set_index("check").loc["unparseable or missing timestamps", "examples"]
    assert _count(cat, "duplicate rows (same user, item, timestamp)") == exp["n_dupes"]
    assert _count(cat, "interactions naming items with no image") == 1
    assert "sku999" in cat.report.set_index("check").loc["interactions naming items with no image", "examples"]
    assert _count(cat, "image files matching no item") == 1
    assert len(cat.interactions) == exp["rows"] - 1 - 1 - 2 - 1
    # Unix seconds parsed; weight kept; metadata joined; any extension found
    assert cat.interactions["timestamp"].min() >= pd.Timestamp("2020-09-13")
    assert "weight" in cat.interactions and cat.items["colour"].notna().all()
    assert set(cat.items["image_path"].str.rsplit(".", n=1).str[1]) >= {"png", "jpg", "webp", "bmp"}


def test_generic_reader_names_missing_columns(tmp_path):
    write_generic(tmp_path, with_bad=False)
    with pytest.raises(data.DataError, match=r"no column\(s\) \['user'\].*columns found.*user_col"):
        readers.read_generic(tmp_path, user_col="user")
    with pytest.raises(data.DataError, match="Unknown reader option"):
        readers.read_generic(tmp_path, colour="red")
    cfg = (tmp_path / "visrec.json")
    cfg.write_text(cfg.read_text().replace('"user_col"', '"user_column"'))
    with pytest.raises(data.DataError, match=r"visrec.json: unknown reader option\(s\) \['user_column'\]; valid keys"):
        readers.load_catalogue(tmp_path)


def test_dates_datetimes_and_seconds_parse_alike():
    for raw, fmt in ((pd.Series(["2020-01-02", "2020-01-03"]), None),
                     (pd.Series(["2020-01-02T10:00:00Z", "2020-01-03 11:30:00"]), None),
                     (pd.Series(["1577959200", "1578051000"]), None)):
        out = readers._parse_times(raw, fmt)
        assert out.notna().all() and out.dt.date.astype(str).tolist() == ["2020-01-02", "2020-01-03"]


def test_ugallery_layout(tmp_path):
    exp = write_ugallery(tmp_path)
    cat = readers.load_catalogue(tmp_path)
    emb = cat.precomputed["ugallery_resnet50"]
    assert emb.shape == (exp["n_items"], exp["dim"]) and emb.dtype == np.float32
    assert cat.items["image_path"].isna().all()
    assert cat.items["artist_id"].notna().all() and cat.items["available_from"].notna().all()
    # baskets = same user and timestamp
    split = splits.leave_last_basket_out(cat)
    assert split.n_users > 20
    # rows of the precomputed matrix follow the items table
    raw = np.load(tmp_path / "ugallery_resnet50_embeddings.npy", allow_pickle=True)
    lookup = {r[0]: r[1] for r in raw}
    i = 17
    np.testing.assert_array_equal(emb[i], lookup[cat.items["item_id"][i]])


def test_demo_catalogue_is_labelled_and_has_visual_signal(tmp_path):
    cat = readers.open_catalogue("demo", tmp_path)
    assert cat.synthetic and "SYNTHETIC" in cat.name and "SYNTHETIC" in data.banner(cat)
    s = cat.summary()
    assert s["items"] >= 350 and s["users"] == 150
    again = demo.make_demo_catalogue(tmp_path / "demo_catalogue")
    assert demo.is_synthetic(again)
    # the hidden tastes make users' items closer in hue than random pairs
    hue = cat.items.set_index("item_id")["hue"].astype(float)
    g = cat.interactions.groupby("user_id")["item_id"].apply(list)
    d_user = np.mean([min(abs(hue[a] - hue[b]), 1 - abs(hue[a] - hue[b])) for items in g for a, b in zip(items, items[1:])])
    assert d_user < 0.15  # random pairs average 0.25


def test_layout_detection_error_lists_layouts(tmp_path):
    with pytest.raises(data.DataError, match="three layouts"):
        readers.load_catalogue(tmp_path)
