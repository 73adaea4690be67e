"""The H&M loader on the real sample, the split on hand-built cases, slicing, errors."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visrec_utils.catalogue import data, protocols, readers


def test_real_sample_matches_its_readme(hm_catalogue):
    s = hm_catalogue.summary()
    assert s["users"] == 1364
    assert s["items"] == 17033
    assert s["interactions"] == 31662
    assert s["user_item_pairs"] == 27443
    assert s["baskets"] == 8802
    assert (s["first_day"], s["last_day"]) == ("2018-09-20", "2020-09-22")
    assert hm_catalogue.items["item_id"].str.len().eq(10).all()
    # metadata joined for the 4,116 articles that have it
    assert hm_catalogue.items["product_type_name"].notna().sum() == 4116


def test_real_split_users(hm_catalogue):
    split = protocols.leave_last_basket_out(hm_catalogue)
    n_days = hm_catalogue.interactions.groupby("user_id")["timestamp"].nunique()
    assert split.n_users + split.dropped_repeat_only == int((n_days >= 2).sum())
    # no test item is in the profile; test baskets are not in the training interactions
    for p, t in zip(split.profiles[:200], split.truth[:200]):
        assert len(np.intersect1d(p, t)) == 0 and len(t) > 0
    assert len(split.train) < len(hm_catalogue.interactions)


def _tiny_catalogue(tmp_path, rows, int_ids=False):
    """Write a 4-article H&M-layout folder; ``rows`` = (day, customer, article)."""
    ids = sorted({r[2] for r in rows})
    for a in ids:
        p = tmp_path / "images" / a[:3] / f"{a}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (int(a[-1]) * 40, 0, 0)).save(p)
    df = pd.DataFrame(rows, columns=["t_dat", "customer_id", "article_id"])
    if int_ids:
        df["article_id"] = df["article_id"].astype(int)
    df.to_csv(tmp_path / "transactions_train.csv", index=False)
    return tmp_path


def test_leave_last_basket_out_by_hand(tmp_path):
    rows = [
        ("2020-01-01", "u1", "0000000001"), ("2020-01-01", "u1", "0000000002"),
        ("2020-01-05", "u1", "0000000003"), ("2020-01-05", "u1", "0000000001"),  # 1 repeats
        ("2020-01-02", "u2", "0000000004"),                                      # one basket only
        ("2020-01-01", "u3", "0000000002"), ("2020-01-03", "u3", "0000000002"),  # repeat only
    ]
    cat = readers.load_hm(_tiny_catalogue(tmp_path, rows, int_ids=True))
    assert cat.items["item_id"].tolist() == ["0000000001", "0000000002", "0000000003", "0000000004"]
    split = protocols.leave_last_basket_out(cat)
    assert split.users.tolist() == ["u1"]
    assert split.profiles[0].tolist() == [0, 1]
    assert split.truth[0].tolist() == [2]  # item 1 was re-bought: not a truth item
    assert split.dropped_repeat_only == 1
    assert split.candidate_mask(0).tolist() == [False, False, True, True]
    # the test basket is out of training; everything else is in
    assert len(split.train) == len(rows) - 2 - 1


def test_bad_date_is_dropped_and_reported_with_its_line(tmp_path):
    rows = [("2020-01-01", "u1", "0000000001"), ("01/02/2020", "u1", "0000000002"), ("2020-01-03", "u1", "0000000002")]
    cat = readers.load_hm(_tiny_catalogue(tmp_path, rows))
    assert len(cat.interactions) == 2
    bad = cat.report.set_index("check").loc["unparseable or missing timestamps"]
    assert bad["count"] == 1 and "transactions_train.csv line 3: '01/02/2020'" in bad["examples"]
    with pytest.raises(data.DataError, match="No valid interaction"):
        readers.load_hm(_tiny_catalogue(tmp_path / "all_bad", [("someday", "u1", "0000000001")]))


def test_missing_dataset_explains_the_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("VISREC_DATA", raising=False)
    with pytest.raises(data.DataError, match="transactions_train.csv.*VISREC_DATA"):
        data.resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("VISREC_DATA", str(tmp_path))
    assert data.resolve_data_dir() == tmp_path.resolve()


def test_slice_is_seeded_and_puts_user_items_first(hm_catalogue):
    a = data.slice_catalogue(hm_catalogue, 60, 1500, seed=0)
    b = data.slice_catalogue(hm_catalogue, 60, 1500, seed=0)
    c = data.slice_catalogue(hm_catalogue, 60, 1500, seed=1)
    assert a.items["item_id"].tolist() == b.items["item_id"].tolist()
    assert a.items["item_id"].tolist() != c.items["item_id"].tolist()
    assert a.interactions["user_id"].nunique() == 60 and len(a.items) == 1500
    # every item the kept users bought is kept (they have fewer than 1,500 items)
    assert set(a.interactions["item_id"]) <= set(a.items["item_id"])
    assert len(a.interactions) == hm_catalogue.interactions["user_id"].isin(
        set(a.interactions["user_id"])).sum()


def test_prepared_round_trip(tmp_path, hm_catalogue):
    small = data.slice_catalogue(hm_catalogue, 10, 200, seed=0)
    data.save_prepared(small, tmp_path)
    back = data.load_prepared(tmp_path)
    pd.testing.assert_frame_equal(back.interactions, small.interactions, check_dtype=False)
    pd.testing.assert_frame_equal(back.items, small.items, check_dtype=False)
    pd.testing.assert_frame_equal(back.report, small.report, check_dtype=False)
    with pytest.raises(data.DataError, match="run notebook 01"):
        data.load_prepared(tmp_path / "empty")


def test_availability_from_items_table_dates():
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "image_path": ["x"] * 4,
                          "available_from": pd.to_datetime(["2020-01-01", None, "2020-02-01", "2020-03-01"])})
    inter = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "d"],
                          "timestamp": pd.to_datetime(["2020-01-05", "2020-01-05", "2020-02-15"])})
    cat = data.Catalogue(items, inter)
    split = protocols.leave_last_basket_out(cat)  # auto: the items table has dates
    assert split.availability == "items table dates"
    # c was available (Feb 1 <= Feb 15); d is the truth and stays a candidate although dated Mar 1
    assert split.candidate_mask(0).tolist() == [False, False, True, True]
    assert protocols.leave_last_basket_out(cat, availability="catalogue").candidate_mask(0).tolist() == [False, False, True, True]
    late = cat.items.assign(available_from=pd.to_datetime(["2020-01-01", None, "2020-03-01", "2020-03-01"]))
    split = protocols.leave_last_basket_out(data.Catalogue(late, inter))
    assert split.candidate_mask(0).tolist() == [False, False, False, True]  # c not yet available
    with pytest.raises(ValueError, match="availability"):
        protocols.leave_last_basket_out(cat, availability="first_sold")


def test_a_prepared_folder_from_an_older_visrec_asks_for_notebook_01_again(tmp_path, hm_catalogue):
    cat = data.slice_catalogue(hm_catalogue, 10, 50, 0)
    data.save_prepared(cat, tmp_path)
    meta = json.loads((tmp_path / "data" / "catalogue.json").read_text())
    del meta["precomputed"]  # how visrec wrote it before the sets' names were recorded
    (tmp_path / "data" / "catalogue.json").write_text(json.dumps(meta))
    with pytest.raises(data.DataError, match=r"catalogue.json was written by an older visrec \(no 'precomputed' "
                                             r"entry\); rerun notebook 01_data_prep"):
        data.load_prepared(tmp_path)
