"""Readers of each layout and their validation reports; inputs as spreadsheet programs export them."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from catalogues import write_csv_catalogue, write_generic, write_hm_generic, write_ugallery
from visrec_utils.catalogue import data, demo, layouts, protocols, readers, tables


def _count(cat, check):
    r = cat.report.set_index("check")
    return int(r.loc[check, "count"])


def test_generic_layout_with_every_row_problem(tmp_path):
    exp = write_generic(tmp_path, with_bad=False)
    cat = layouts.load_catalogue(tmp_path)
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
        layouts.load_catalogue(tmp_path)


def test_dates_datetimes_and_seconds_parse_alike():
    for raw, fmt in ((pd.Series(["2020-01-02", "2020-01-03"]), None),
                     (pd.Series(["2020-01-02T10:00:00Z", "2020-01-03 11:30:00"]), None),
                     (pd.Series(["1577959200", "1578051000"]), None)):
        out = readers._parse_times(raw, fmt)
        assert out.notna().all() and out.dt.date.astype(str).tolist() == ["2020-01-02", "2020-01-03"]


def test_ugallery_layout(tmp_path):
    exp = write_ugallery(tmp_path)
    cat = layouts.load_catalogue(tmp_path)
    emb = cat.precomputed["ugallery_resnet50"]
    assert emb.shape == (exp["n_items"], exp["dim"]) and emb.dtype == np.float32
    assert cat.items["image_path"].isna().all()
    assert cat.items["artist_id"].notna().all() and cat.items["available_from"].notna().all()
    # baskets = same user and timestamp
    split = protocols.leave_last_basket_out(cat)
    assert split.n_users > 20
    # rows of the precomputed matrix follow the items table
    raw = np.load(tmp_path / "ugallery_resnet50_embeddings.npy", allow_pickle=True)
    lookup = {r[0]: r[1] for r in raw}
    i = 17
    np.testing.assert_array_equal(emb[i], lookup[cat.items["item_id"][i]])


def test_demo_catalogue_is_labelled_and_has_visual_signal(tmp_path):
    cat = layouts.open_catalogue("demo", tmp_path)
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


def test_demo_catalogue_without_visual_taste_buys_by_popularity_alone(tmp_path):
    w = demo.popularity_weights(5, seed=0)
    rank = np.random.default_rng([0, 1]).permutation(5) + 1
    np.testing.assert_allclose(w, (1 / rank) / (1 / rank).sum())  # Zipf: weight 1/r for popularity rank r
    folder = demo.make_demo_catalogue(tmp_path / "none", n_users=150, n_items=400, taste="none")
    visual = demo.make_demo_catalogue(tmp_path / "visual", n_users=150, n_items=400)
    assert (folder / "SYNTHETIC").read_text().endswith("seed=0 taste=none\n")
    assert "taste" not in (visual / "SYNTHETIC").read_text()  # the default's stamp (and catalogue) as before
    for f in ("items.csv", "images/demo00007.jpg"):  # the same images; only the purchases differ
        assert (folder / f).read_bytes() == (visual / f).read_bytes()
    inter = pd.read_csv(folder / "interactions.csv")
    weights = pd.Series(demo.popularity_weights(400, seed=0), index=[f"demo{i:05d}" for i in range(400)])
    counts = inter["item_id"].value_counts().reindex(weights.index, fill_value=0)
    rho = counts.corr(weights, method="spearman")
    assert rho > 0.5  # bought by popularity
    hue = pd.read_csv(folder / "items.csv").set_index("item_id")["hue"]
    g = inter.groupby("user_id")["item_id"].apply(list)
    d_user = np.mean([min(abs(hue[a] - hue[b]), 1 - abs(hue[a] - hue[b])) for items in g for a, b in zip(items, items[1:])])
    assert d_user > 0.2  # no taste in hue: consecutive purchases as far apart as random pairs (0.25)
    with pytest.raises(ValueError, match="^taste='colour' is not a demo taste; use one of 'visual', 'none'$"):
        demo.make_demo_catalogue(tmp_path / "bad", taste="colour")


def test_layout_detection_error_lists_layouts(tmp_path):
    with pytest.raises(data.DataError, match="three layouts"):
        layouts.load_catalogue(tmp_path)


def _row(cat, check):
    return cat.report.set_index("check").loc[check]


# --- timestamps in any unit ------------------------------------------------------------------

@pytest.fixture(scope="module")
def hm_seconds(hm_dir, tmp_path_factory):
    """40 real H&M customers in the generic layout, Unix seconds, read back."""
    folder = tmp_path_factory.mktemp("hm_seconds")
    rows = write_hm_generic(folder, hm_dir)
    return rows, layouts.load_catalogue(folder, weight_col="weight")


@pytest.mark.parametrize("unit,name", [("s", "seconds"), ("ms", "milliseconds"), ("us", "microseconds"),
                                       ("ns", "nanoseconds")])
def test_epoch_unit_is_detected_and_times_equal_the_seconds_version(tmp_path, hm_dir, hm_seconds, unit, name):
    rows, ref = hm_seconds
    write_hm_generic(tmp_path, hm_dir, unit=unit)
    cat = layouts.load_catalogue(tmp_path, weight_col="weight")
    assert _row(cat, "timestamp format")["action"] == f"Unix epoch {name} (detected from magnitudes)"
    assert _count(cat, "unparseable or missing timestamps") == 0
    pd.testing.assert_frame_equal(cat.interactions, ref.interactions)
    assert set(cat.interactions["timestamp"]) == set(pd.to_datetime(rows["timestamp"], unit="s"))
    assert cat.interactions["user_id"].nunique() == 40


def test_out_of_range_and_garbage_times_are_dropped_with_their_lines(tmp_path, hm_dir):
    write_hm_generic(tmp_path, hm_dir, unit="ms")
    path = tmp_path / "interactions.csv"
    lines = path.read_text().splitlines()
    garbage = {5: "99999999999999999999",  # year 3e9: out of range
               9: "-123456789012345678901",  # negative garbage
               12: "abc", 20: "",  # text among numbers, empty
               31: "1600000000"}  # seconds in a milliseconds column
    for n, v in garbage.items():  # n = 1-based line in the file
        f = lines[n - 1].split(",")
        lines[n - 1] = ",".join(f[:2] + [v] + f[3:])
    path.write_text("\n".join(lines) + "\n")
    cat = layouts.load_catalogue(tmp_path, weight_col="weight")
    bad = _row(cat, "unparseable or missing timestamps")
    assert bad["count"] == 5 and bad["action"] == "rows dropped"
    assert bad["examples"] == "; ".join(f"interactions.csv line {n}: {v or np.nan!r}" for n, v in garbage.items())
    assert _row(cat, "timestamp format")["action"] == "Unix epoch milliseconds (detected from magnitudes)"
    assert _row(cat, "timestamp format")["count"] == len(lines) - 1 - 5
    assert cat.interactions["timestamp"].between("2018-09-20", "2020-09-23").all()


def test_decimal_epochs_mixed_columns_and_excel_serials():
    times = lambda vals, **kw: tables.parse_times(pd.Series(vals), **kw)  # noqa: E731
    t, how = times(["1600000000.5", "1600000001.25"])
    assert t.tolist() == [pd.Timestamp("2020-09-13 12:26:40.5"), pd.Timestamp("2020-09-13 12:26:41.25")]
    t, how = times(["1600000000,5"], decimal=",")
    assert t[0] == pd.Timestamp("2020-09-13 12:26:40.5")
    # numbers and ISO text in one column: each row read its own way
    t, how = times(["1600000000", "2020-09-13T14:26:40+02:00", "2020-09-13 12:26:40 UTC"])
    assert how == "Unix epoch seconds (detected from magnitudes) + ISO dates/datetimes"
    assert (t == pd.Timestamp("2020-09-13 12:26:40")).all()
    # Excel serial days (all numbers in 20000-80000) would be 1970-01-01 as seconds
    t, how = times(["44000", "44001.5"])
    assert how == "Excel serial days (detected from magnitudes)"
    assert t.tolist() == [pd.Timestamp("2020-06-18"), pd.Timestamp("2020-06-19 12:00")]
    assert times(["44000"], unit="s")[0][0] == pd.Timestamp("1970-01-01 12:13:20")
    # exact integers, no float rounding
    assert times(["1600000000123456789"])[0][0] == pd.Timestamp("2020-09-13 12:26:40.123456789")
    assert times(["1600000001.3"])[0][0] == pd.Timestamp("2020-09-13 12:26:41.3")


def test_ugallery_times_still_parse():
    assert readers._parse_times(pd.Series(["1500000000", "1500000001"])).tolist() == [
        pd.Timestamp("2017-07-14 02:40:00"), pd.Timestamp("2017-07-14 02:40:01")]


# --- CSV files as spreadsheet programs write them ------------------------------------------------

def test_semicolon_and_decimal_comma_file_equals_comma_file(tmp_path, hm_dir, hm_seconds):
    _, ref = hm_seconds
    write_hm_generic(tmp_path, hm_dir, sep=";", decimal=",")
    cat = layouts.load_catalogue(tmp_path, weight_col="weight")
    pd.testing.assert_frame_equal(cat.interactions, ref.interactions)
    assert cat.interactions["weight"].notna().all()
    assert _row(cat, "CSV dialect of interactions.csv")["action"] == (
        "delimiter ';' (detected), decimal ',' (detected), quotechar '\"' (detected), encoding utf-8 (detected)")
    assert _row(cat, "CSV dialect of items.csv")["action"].startswith("delimiter ';' (detected)")
    pd.testing.assert_frame_equal(cat.items, ref.items)


def test_excel_unicode_text_utf16_tab_file(tmp_path, hm_dir, hm_seconds):
    _, ref = hm_seconds
    write_hm_generic(tmp_path, hm_dir, sep="\t", encoding="utf-16")
    cat = layouts.load_catalogue(tmp_path, weight_col="weight")
    pd.testing.assert_frame_equal(cat.interactions, ref.interactions)
    assert _row(cat, "CSV dialect of interactions.csv")["action"] == (
        "delimiter tab (detected), decimal '.' (detected), quotechar '\"' (detected), encoding utf-16 (detected)")


def test_cp1252_accented_ids_keep_their_characters(tmp_path):
    text = ("user_id;item_id;timestamp\nMüller;café;2020-01-01\nMüller;crème;2020-01-02\n"
            "Zoë;café;2020-01-01\nZoë;Øre;2020-01-03\n")
    write_csv_catalogue(tmp_path, text, ["café", "crème", "Øre"], encoding="cp1252")
    cat = layouts.load_catalogue(tmp_path)
    assert sorted(cat.interactions["user_id"].unique()) == ["Müller", "Zoë"]
    assert cat.items["item_id"].tolist() == ["café", "crème", "Øre"]
    assert cat.items["image_path"].notna().all()
    assert _row(cat, "CSV dialect of interactions.csv")["action"].endswith("encoding cp1252 (detected: not UTF-8 at line 2)")


def test_ragged_file_is_one_line_naming_file_line_and_option(tmp_path):
    text = "user_id,item_id,timestamp\nu1,a,2020-01-01\nu1,b,2020-01-02\nu2,a,1,5,2020-01-01\nu2,b,2020-01-03\n"
    write_csv_catalogue(tmp_path, text, ["a", "b"])
    msg = "interactions.csv line 4: expected 3 fields, saw 5; set csv_sep in visrec.json (detected ',') or quote fields that contain it."
    with pytest.raises(data.DataError, match=f"^{re.escape(msg)}$"):
        layouts.load_catalogue(tmp_path)
    (tmp_path / "interactions.csv").write_text(text.replace("u2,a,1,5", '"u2,a,1,5'))
    with pytest.raises(data.DataError, match=r"^interactions.csv line 4: a quoted field is never closed; set csv_quotechar"):
        layouts.load_catalogue(tmp_path)


def test_visrec_json_options_override_detection(tmp_path):
    # "1,500" is ambiguous (detected decimal '.'), small numbers look like seconds, cp1252 is set
    text = "user_id|item_id|timestamp|qty\nJosé|a|86400000|1,500\nJosé|b|172800000|2,5\nAna|a|86400000|1\n"
    write_csv_catalogue(tmp_path, text, ["a", "b"], encoding="cp1252", options={
        "weight_col": "qty", "csv_sep": "|", "csv_decimal": ",", "csv_encoding": "cp1252", "csv_quotechar": "'",
        "time_unit": "ms"})
    cat = layouts.load_catalogue(tmp_path)
    assert _row(cat, "CSV dialect of interactions.csv")["action"] == (
        "delimiter '|' (set), decimal ',' (set), quotechar \"'\" (set), encoding cp1252 (set)")
    assert _row(cat, "timestamp format")["action"] == "Unix epoch milliseconds (time_unit)"
    got = cat.interactions.set_index(["user_id", "item_id"])
    assert got.loc[("José", "a"), "timestamp"] == pd.Timestamp("1970-01-02")
    assert got.loc[("José", "a"), "weight"] == 1.5 and got.loc[("José", "b"), "weight"] == 2.5
    # without the options: seconds (1972), and "1,500" is not a number with a decimal point
    (tmp_path / "visrec.json").write_text('{"weight_col": "qty", "csv_encoding": "cp1252"}')
    cat = layouts.load_catalogue(tmp_path)
    assert cat.interactions["timestamp"].min() == pd.Timestamp("1972-09-27")


@pytest.mark.parametrize("option,value,message", [
    ("time_unit", "sec", r"^Reader option time_unit='sec' is not one of \['s', 'ms', 'us', 'ns', 'excel'\]"),
    ("csv_decimal", ";", r"^Reader option csv_decimal=';' must be '\.' or ','"),
    ("csv_sep", ";;", r"^Reader option csv_sep=';;' must be one character"),
    ("csv_encoding", "klingon", r"^Reader option csv_encoding='klingon' is not a known encoding"),
])
def test_bad_option_values_are_named_with_valid_ones(tmp_path, option, value, message):
    write_csv_catalogue(tmp_path, "user_id,item_id,timestamp\nu1,a,2020-01-01\n", ["a"])
    with pytest.raises(data.DataError, match=message):
        layouts.load_catalogue(tmp_path, **{option: value})


def test_wrong_encoding_option_names_line_and_byte(tmp_path):
    write_csv_catalogue(tmp_path, "user_id,item_id,timestamp\nu1,a,2020-01-01\nMüller,a,2020-01-02\n", ["a"],
                        encoding="cp1252")
    with pytest.raises(data.DataError, match=r"^interactions.csv line 3 \(byte 43\): not valid utf-8; set csv_encoding"):
        layouts.load_catalogue(tmp_path, csv_encoding="utf-8")


# --- more exports a new user tried ---------------------------------------------------------------

def test_excel_sep_line_and_trailing_empty_column(tmp_path):
    # Excel's "sep=;" first line; a trailing delimiter on every line (an empty last column)
    text = "sep=;\nuser_id;item_id;timestamp;\nu1;a;2020-01-01;\nu1;b;yesterday;\nu1;b;2020-01-02;\n"
    write_csv_catalogue(tmp_path, text, ["a", "b"])
    cat = layouts.load_catalogue(tmp_path)
    assert list(cat.interactions.columns) == ["user_id", "item_id", "timestamp"]
    assert _row(cat, "CSV dialect of interactions.csv")["action"].startswith("delimiter ';' (detected: 'sep=' line)")
    assert _row(cat, "unparseable or missing timestamps")["examples"] == "interactions.csv line 4: 'yesterday'"
    # trailing delimiter on the rows only (header without it)
    (tmp_path / "interactions.csv").write_text("user_id,item_id,timestamp\nu1,a,2020-01-01,\nu1,b,2020-01-02,\n")
    cat = layouts.load_catalogue(tmp_path)
    assert cat.interactions["user_id"].tolist() == ["u1", "u1"] and cat.interactions["item_id"].tolist() == ["a", "b"]


def test_thousands_separators_in_epochs_and_weights(tmp_path):
    text = ("user_id;item_id;timestamp;qty\nu1;a;1.600.000.000;1.000,5\nu1;b;1.600.086.400;2\n")
    write_csv_catalogue(tmp_path, text, ["a", "b"])
    cat = layouts.load_catalogue(tmp_path, weight_col="qty")
    assert cat.interactions["timestamp"].tolist() == [pd.Timestamp("2020-09-13 12:26:40"), pd.Timestamp("2020-09-14 12:26:40")]
    assert cat.interactions["weight"].tolist() == [1000.5, 2.0]


def test_ids_in_scientific_notation_are_refused(tmp_path):
    text = "user_id,item_id,timestamp\nu1,493995001,2020-01-01\nu1,4.93995E+11,2020-01-02\nu2,1E+11,2020-01-02\n"
    write_csv_catalogue(tmp_path, text, ["493995001"])
    msg = ("interactions.csv line 3: id '4.93995E+11' in column 'item_id' is in scientific notation (2 rows), so its "
           "digits are lost; re-export with that column formatted as Text.")
    with pytest.raises(data.DataError, match=f"^{re.escape(msg)}$"):
        layouts.load_catalogue(tmp_path)


def test_day_first_dates_iso_weeks_and_time_zone_names(tmp_path):
    t, how = tables.parse_times(pd.Series(["13.07.2020 10:00", "01.08.2020 09:30"]))
    assert how == "dates '%d.%m.%Y %H:%M' (detected)"
    assert t.tolist() == [pd.Timestamp("2020-07-13 10:00"), pd.Timestamp("2020-08-01 09:30")]
    t, how = tables.parse_times(pd.Series(["2020-W05-3", "2020-W53-7"]))
    assert t.tolist() == [pd.Timestamp("2020-01-29"), pd.Timestamp("2021-01-03")]
    with pytest.raises(data.DataError, match=re.escape("Dates like '03/04/2020' can be read day-first or month-first; "
                                                       "set time_format in visrec.json ('%d/%m/%Y' or '%m/%d/%Y').")):
        tables.parse_times(pd.Series(["03/04/2020", "05/06/2020"]))
    # a time-zone name is ambiguous (CST is three zones): that row is dropped and listed
    text = "user_id,item_id,timestamp\nu1,a,2020-01-01 10:00 UTC\nu1,b,2020-01-02 10:00 CET\nu1,b,2020-01-03T10:00+01:00\n"
    write_csv_catalogue(tmp_path, text, ["a", "b"])
    cat = layouts.load_catalogue(tmp_path)
    assert _row(cat, "unparseable or missing timestamps")["examples"] == "interactions.csv line 3: '2020-01-02 10:00 CET'"
    assert cat.interactions["timestamp"].tolist() == [pd.Timestamp("2020-01-01 10:00"), pd.Timestamp("2020-01-03 09:00")]


def test_no_readable_time_at_all_is_one_line(tmp_path):
    write_csv_catalogue(tmp_path, "user_id,item_id,timestamp\nu1,a,soon\nu1,a,later\n", ["a"])
    with pytest.raises(data.DataError, match=r"^No valid interaction left in interactions.csv: no value of column "
                                             r"'timestamp' could be read as a time \(line 2: 'soon'"):
        layouts.load_catalogue(tmp_path)


def test_parquet_input_still_reads(tmp_path):
    write_csv_catalogue(tmp_path, "x\n", ["a", "b"])
    (tmp_path / "interactions.csv").unlink()
    pd.DataFrame({"user_id": ["007", "007"], "item_id": ["a", "b"],
                  "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"])}).to_parquet(tmp_path / "interactions.parquet")
    cat = layouts.load_catalogue(tmp_path)
    assert cat.interactions["user_id"].tolist() == ["007", "007"]
    assert _row(cat, "timestamp format")["action"] == "datetime column"


@pytest.mark.parametrize("option, value, message", [
    ("basket_by_day", "no", r"Reader option basket_by_day='no' \(e\.g\. in .*visrec\.json\) must be true or false "
                            r"\(a JSON boolean, without quotes\)\."),
    ("id_zfill", "10", r"Reader option id_zfill='10' .* must be a positive whole number \(without quotes\) or null\."),
    ("duplicates", "remove", r"Reader option duplicates='remove' .* must be 'drop' \(exact duplicate rows removed\) "
                             r"or 'keep' \(each row is one unit\)\."),
    ("user_col", 3, r"Reader option user_col=3 .* must be text\."),
])
def test_reader_option_values_of_the_wrong_kind_are_named(tmp_path, option, value, message):
    write_generic(tmp_path, with_bad=False)
    cfg = tmp_path / "visrec.json"
    opts = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**opts, option: value}))
    with pytest.raises(data.DataError, match=f"^{message}$"):
        layouts.load_catalogue(tmp_path)
    cfg.write_text(json.dumps({**opts, "basket_by_day": False}))  # a JSON boolean is read
    assert len(layouts.load_catalogue(tmp_path).interactions) > 0


def test_visrec_json_that_is_not_an_object_is_one_line(tmp_path):
    write_generic(tmp_path, with_bad=False)
    cfg = tmp_path / "visrec.json"
    cfg.write_text("[1, 2]")
    with pytest.raises(data.DataError, match=r"visrec\.json must hold a JSON object of reader options .* not a list$"):
        layouts.load_catalogue(tmp_path)
    cfg.write_text('{"user_col": "customer",}')
    with pytest.raises(data.DataError, match=r"visrec\.json is not valid JSON \(line 1: Expecting property name"):
        layouts.load_catalogue(tmp_path)


def test_month_name_dates_and_an_empty_time_column(tmp_path):
    for name, days in (("short", ["1 Mar 2020", "14 Mar 2020", "2 Mar 2020", "30 Apr 2020"]),
                       ("long", ['"March 1, 2020"', '"March 14, 2020"', '"March 2, 2020"', '"April 30, 2020"'])):
        rows = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{d}\n" for (u, i), d in
                                                      zip([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")], days))
        write_csv_catalogue(tmp_path / name, rows, ["a", "b"])
        inter = layouts.load_catalogue(tmp_path / name).interactions.sort_values(["user_id", "item_id"])
        assert inter["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2020-03-01", "2020-03-14", "2020-03-02",
                                                                       "2020-04-30"], name
    write_csv_catalogue(tmp_path / "empty", "user_id,item_id,timestamp\nu1,a,\nu1,b,\n", ["a", "b"])
    with pytest.raises(data.DataError, match=r"^No valid interaction left in interactions\.csv: column 'timestamp' is "
                                             r"empty on every line; fill in when each interaction happened"):
        layouts.load_catalogue(tmp_path / "empty")


def test_a_registered_layout_is_detected_before_generic_and_opened_by_the_study(tmp_path):
    """A new catalogue layout is one registered object: here a shop's export, ``purchases.csv``
    with its own column names and no ``visrec.json``, read by the generic reader."""
    write_generic(tmp_path, with_bad=False)
    options = json.loads((tmp_path / "visrec.json").read_text())
    ref = layouts.load_catalogue(tmp_path)  # the same files, described by visrec.json
    (tmp_path / "visrec.json").unlink()
    with pytest.raises(data.DataError, match="holds no catalogue visrec recognises"):
        layouts.detect_layout(tmp_path)

    def read_shop(folder, **kw):
        return readers.read_generic(folder, **options, **kw)

    shop = layouts.Layout("shop", lambda root: (root / "purchases.csv").is_file(), read_shop, "purchases.csv")
    layouts.register_layout(shop)
    try:
        assert layouts.list_layouts() == ["hm", "ugallery", "shop", "generic"]
        assert layouts.detect_layout(tmp_path) == "shop"
        cat = layouts.open_catalogue(str(tmp_path), tmp_path / "out")
        pd.testing.assert_frame_equal(cat.interactions, ref.interactions)
        pd.testing.assert_frame_equal(cat.items, ref.items)
        with pytest.raises(ValueError, match="a catalogue layout named 'shop' is already registered"):
            layouts.register_layout(shop)
    finally:
        layouts.unregister_layout("shop")
    assert layouts.list_layouts() == ["hm", "ugallery", "generic"]
