"""Evaluation protocols and availability rules on hand-built cases, and time cuts on the real sample."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data, protocols, splits


def _cat(rows, n_items=5, available_from=None):
    """Catalogue of items i0..i{n-1}; ``rows`` = (day, user, item number)."""
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)], "image_path": "x"})
    if available_from is not None:
        items["available_from"] = pd.to_datetime(available_from)
    inter = pd.DataFrame([(u, f"i{i}", pd.Timestamp(d)) for d, u, i in rows], columns=["user_id", "item_id", "timestamp"])
    return data.Catalogue(items, inter)


ROWS = [("2020-01-01", "a", 0), ("2020-01-05", "a", 1), ("2020-01-09", "a", 2),
        ("2020-01-02", "b", 1), ("2020-01-09", "b", 3),
        ("2020-01-03", "c", 4)]


def test_replay_all_and_last_by_hand():
    s = protocols.replay(_cat(ROWS), "all")
    # points in time order: a@Jan5 (profile {0}, truth {1}), a@Jan9 ({0,1} -> {2}), b@Jan9 ({1} -> {3})
    assert s.users.tolist() == ["a", "a", "b"]
    assert [p.tolist() for p in s.profiles] == [[0], [0, 1], [1]]
    assert [t.tolist() for t in s.truth] == [[1], [2], [3]]
    assert s.train["user_id"].tolist() == ["a", "b", "c"]  # first baskets only
    last = protocols.replay(_cat(ROWS), "last")
    assert last.users.tolist() == ["a", "b"] and [t.tolist() for t in last.truth] == [[2], [3]]


def test_temporal_cut_by_date_and_quantile():
    s = protocols.temporal(_cat(ROWS), cut="2020-01-04")
    assert s.users.tolist() == ["a", "b"]
    assert [p.tolist() for p in s.profiles] == [[0], [1]]
    assert [t.tolist() for t in s.truth] == [[1, 2], [3]]
    assert (s.train["timestamp"] < pd.Timestamp("2020-01-04")).all() and len(s.train) == 3
    # popularity sees only the training period, availability is judged at the end
    assert (s.test_day == np.datetime64("2020-01-04")).all() and (s.avail_time == np.datetime64("2020-01-09")).all()
    q = protocols.temporal(_cat(ROWS), cut=0.5)  # median of the 6 timestamps is Jan 4 -> first day >= it: Jan 5
    assert q.test_day[0] == np.datetime64("2020-01-05")
    with pytest.raises(ValueError, match="no user"):
        protocols.temporal(_cat(ROWS), cut="2021-01-01")
    with pytest.raises(ValueError, match="quantile"):
        protocols.temporal(_cat(ROWS), cut=1.5)


def test_random_holdout_is_labelled_leaky_and_hides_its_truth_from_training():
    s = protocols.random_holdout(_cat(ROWS), fraction=0.5, seed=1)
    assert s.leaky and "LEAKY" in s.describe()
    for u, p, t in zip(s.users, s.profiles, s.truth):
        bought = {int(i[1:]) for i in _cat(ROWS).interactions.query("user_id == @u")["item_id"]}
        assert set(p) | set(t) == bought and not set(p) & set(t)
        assert not set(s.interactions.loc[s.interactions["user_id"] == u, "item_idx"]) & set(t)


def test_first_seen_availability_and_its_leak():
    # item 3's only sale is b's test purchase: a candidate only because it was bought
    cat = _cat(ROWS)
    leaky = protocols.leave_last_basket_out(cat, availability="first_seen_leaky")
    assert leaky.leaky and [t.tolist() for t in leaky.truth] == [[2], [3]]
    # at a's test time (Jan 9), items 0, 1, 4 (and 2, 3, bought that day) have been seen
    assert leaky.candidate_mask(0).tolist() == [False, False, True, True, True]
    fair = protocols.leave_last_basket_out(cat, availability="first_seen")
    # item 2 too was bought only by its test user: both points lose their truth
    assert fair.n_users == 0 and fair.dropped_unavailable == 2
    rows = ROWS + [("2020-01-09", "c", 3)]  # c buys item 3 on b's test day: each saw the other's sale
    fair = protocols.leave_last_basket_out(_cat(rows), availability="first_seen")
    assert fair.users.tolist() == ["b", "c"] and [t.tolist() for t in fair.truth] == [[3], [3]]
    assert not fair.leaky


def test_items_table_and_one_of_a_kind_availability():
    cat = _cat(ROWS, available_from=["2020-01-01", "2020-01-01", "2020-01-01", "2020-01-01", "2020-02-01"])
    s = protocols.leave_last_basket_out(cat)  # auto -> items table
    assert s.availability == "items table dates"
    assert s.candidate_mask(0).tolist() == [False, False, True, True, False]  # item 4 not yet launched
    sold = protocols.leave_last_basket_out(cat, availability="catalogue", one_of_a_kind=True)
    # for a (Jan 9): item 4 was sold on Jan 3 (gone); item 3 is sold on Jan 9 itself (still there)
    assert sold.candidate_mask(0).tolist() == [False, False, True, True, False]
    with pytest.raises(ValueError, match="availability must be one of"):
        protocols.leave_last_basket_out(cat, availability="first_sold")
    with pytest.raises(ValueError, match="needs an 'available_from'"):
        protocols.leave_last_basket_out(_cat(ROWS), availability="items_table")


def test_cold_warm_breakdown_and_sampled_negatives():
    rows = ROWS + [("2020-01-09", "a", 3), ("2020-01-01", "d", 2)]  # a's truth: 2 (warm: d bought it), 3 (cold)
    s = protocols.leave_last_basket_out(_cat(rows))
    a = s.users.tolist().index("a")
    assert s.truth[a].tolist() == [2, 3] and s.cold_truth(a).tolist() == [False, True]
    cold = splits.restrict_truth(s, "cold")
    ca = cold.users.tolist().index("a")
    assert cold.truth[ca].tolist() == [3] and not cold.candidate_mask(ca)[2]  # the warm truth is neither hit nor miss
    warm = splits.restrict_truth(s, "warm")
    assert warm.users.tolist() == ["a"] and warm.truth[0].tolist() == [2]
    with pytest.warns(splits.SampledMetricsWarning, match="reorder models"):
        sampled = splits.sample_negatives(s, n_negatives=1, seed=0)
    assert [int(sampled.candidate_mask(p).sum()) for p in range(s.n_users)] == [len(t) + 1 for t in s.truth]
    assert "SAMPLED" in sampled.describe()


@pytest.mark.parametrize("protocol", ["leave_last_basket_out", "temporal", "replay_all"])
def test_no_protocol_lets_a_test_purchase_into_the_past(hm_catalogue, protocol):
    """Every profile item was bought before its test point, and no training row is a test purchase."""
    s = protocols.make_split(hm_catalogue, protocol)
    inter = s.interactions
    first_buy = inter.groupby(["user_id", "item_idx"])["timestamp"].min()
    for p in range(0, s.n_users, 7):
        t = s.test_day[p]
        assert (first_buy.loc[[(s.users[p], i) for i in s.profiles[p]]].to_numpy() < t).all()
        bought_then = inter[(inter["user_id"] == s.users[p]) & (inter["timestamp"] >= t)]["item_idx"]
        assert set(s.truth[p]) <= set(bought_then)
    test_keys = {(s.users[p], i) for p in range(s.n_users) for i in s.truth[p]}
    train_after = s.train[s.train["timestamp"] >= s.test_day.min()]
    if protocol != "replay_all":  # replay tests every later basket; its train holds first baskets only
        assert not any((u, i) in test_keys and ts >= s.test_day[s.users.tolist().index(u)]
                       for u, i, ts in train_after[["user_id", "item_idx", "timestamp"]].itertuples(index=False))
    with pytest.raises(ValueError, match="choose from"):
        protocols.make_split(hm_catalogue, "leave_one_out")


def test_unknown_protocol_message():
    with pytest.raises(ValueError) as e:
        protocols.make_split(_cat(ROWS), "temporl")
    assert str(e.value) == ("unknown protocol 'temporl'; choose from leave_last_basket_out, temporal, replay_last, "
                            "replay_all, random_holdout (did you mean 'temporal'?)")
    with pytest.raises(ValueError) as e:
        protocols.get_protocol("zzz")
    assert str(e.value) == ("unknown protocol 'zzz'; choose from leave_last_basket_out, temporal, replay_last, "
                            "replay_all, random_holdout")


@pytest.mark.parametrize("name", protocols.list_protocols())
def test_every_protocol_accepts_the_common_keywords(name):
    rows = ROWS + [("2020-01-10", "c", 0), ("2020-01-11", "b", 2)]
    s = protocols.make_split(_cat(rows), name, availability="auto", one_of_a_kind=False, seed=0, cut=0.5)
    assert s.protocol == name and s.n_users > 0
    assert isinstance(protocols.PROTOCOLS[name], protocols.Protocol) and protocols.PROTOCOLS[name].description
    with pytest.raises(TypeError, match="takes no keyword"):
        protocols.make_split(_cat(rows), name, cutoff=0.5)


def test_make_split_equals_the_protocol_functions():
    cat = _cat(ROWS + [("2020-01-10", "c", 0)], available_from=["2020-01-01"] * 4 + ["2020-02-01"])
    pairs = [(protocols.make_split(cat, "leave_last_basket_out", cut=0.3, seed=4), protocols.leave_last_basket_out(cat)),
             (protocols.make_split(cat, "temporal", cut=0.5, one_of_a_kind=True), protocols.temporal(cat, 0.5, one_of_a_kind=True)),
             (protocols.make_split(cat, "replay_last"), protocols.replay(cat, "last")),
             (protocols.make_split(cat, "random_holdout", seed=3, fraction=0.5), protocols.random_holdout(cat, 0.5, seed=3))]
    for a, b in pairs:
        assert splits.split_digest(a) == splits.split_digest(b)
    # random hold-out: the defaults give the whole catalogue (as before), time-based rules are refused
    rh = protocols.make_split(cat, "random_holdout")
    assert rh.availability == "whole catalogue" and rh.available_from is None
    rh_catalogue = protocols.make_split(cat, "random_holdout", availability="catalogue")
    assert splits.split_digest(rh) == splits.split_digest(rh_catalogue)
    with pytest.raises(ValueError, match=r"^random_holdout ignores time, so availability='first_seen' cannot apply"):
        protocols.make_split(cat, "random_holdout", availability="first_seen")
    with pytest.raises(ValueError, match=r"^random_holdout ignores time, so one_of_a_kind=True cannot apply"):
        protocols.make_split(cat, "random_holdout", one_of_a_kind=True)


def test_a_registered_protocol_is_built_by_name():
    first = protocols.Protocol("first_basket_only", "test: leave-last-basket-out by another name", ("availability",),
                            lambda cat, availability="auto": protocols.leave_last_basket_out(cat, availability))
    protocols.register_protocol(first)
    try:
        assert "first_basket_only" in protocols.list_protocols()
        s = protocols.make_split(_cat(ROWS), "first_basket_only", availability="catalogue", seed=9, cut=0.1)
        assert s.users.tolist() == ["a", "b"] and s.availability == "whole catalogue"
        with pytest.raises(ValueError, match="already registered"):
            protocols.register_protocol(first)
    finally:
        protocols.unregister_protocol("first_basket_only")
    assert "first_basket_only" not in protocols.list_protocols()


def test_subset_split_keeps_the_chosen_points():
    s = protocols.replay(_cat(ROWS), "all")
    sub = splits.subset_split(s, np.array([2, 0]), [s.truth[2], s.truth[0][:1]], notes=["picked"])
    assert sub.users.tolist() == ["b", "a"] and [p.tolist() for p in sub.profiles] == [[1], [0]]
    assert [t.tolist() for t in sub.truth] == [[3], [1]] and sub.test_day.tolist() == s.test_day[[2, 0]].tolist()
    assert sub.notes == ["picked"] and s.n_users == 3


def _random_cat(seed, n_users=40, n_items=30, n_rows=400):
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 40, n_rows), "D")
    rows = list(zip(days, rng.choice([f"u{k:02d}" for k in range(n_users)], n_rows), rng.integers(0, n_items, n_rows)))
    return _cat(rows, n_items=n_items)


def _points_by_loop(inter, test_rows):
    """The per-(user, timestamp) loop the vectorised ``_points_from_baskets`` replaced."""
    users, profiles, truth, days, dropped = [], [], [], [], 0
    by_user = {u: g for u, g in inter.groupby("user_id", sort=False)}
    for (u, t), g in inter[test_rows].groupby(["user_id", "timestamp"], sort=False):
        rows = by_user[u]
        prof = np.unique(rows.loc[rows["timestamp"] < t, "item_idx"].to_numpy()).astype(np.int64)
        tr = np.setdiff1d(np.unique(g["item_idx"].to_numpy()), prof).astype(np.int64)
        if tr.size == 0:
            dropped += 1
            continue
        users.append(u), profiles.append(prof), truth.append(tr), days.append(t)
    order = np.lexsort((np.array(users, dtype=str), np.array(days, dtype="datetime64[ns]")))
    return [users[i] for i in order], [profiles[i] for i in order], [truth[i] for i in order], \
        np.array(days, dtype="datetime64[ns]")[order], dropped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_points_equal_the_per_basket_loop(seed):
    cat = _random_cat(seed)
    inter = protocols._indexed(cat)
    first = inter.groupby("user_id")["timestamp"].transform("min")
    for test_rows in ((inter["timestamp"] > first).to_numpy(),
                      np.random.default_rng(seed).random(len(inter)) < 0.5):  # flags inside a basket too
        got = protocols._points_from_baskets(inter, test_rows)
        users, profiles, truth, days, dropped = _points_by_loop(inter, test_rows)
        assert got["users"].tolist() == users and got["dropped_repeat_only"] == dropped
        assert [p.tolist() for p in got["profiles"]] == [p.tolist() for p in profiles]
        assert [t.tolist() for t in got["truth"]] == [t.tolist() for t in truth]
        np.testing.assert_array_equal(got["test_day"], days)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_first_seen_drop_equals_the_per_item_loop(seed):
    split = protocols.replay(_random_cat(seed), "all", availability="first_seen_leaky")
    sales = split.interactions.sort_values("timestamp", kind="stable")
    by_item = {i: (g["timestamp"].to_numpy("datetime64[ns]"), g["user_id"].to_numpy())
               for i, g in sales.groupby("item_idx")}
    keep, truth = [], []
    for p in range(split.n_users):  # the loop the vectorised version replaced
        u, t = split.users[p], split._avail_time([p])[0]
        tr = [i for i in split.truth[p] if i in by_item and np.any(by_item[i][1][by_item[i][0] <= t] != u)]
        if tr:
            keep.append(p), truth.append(tr)
    got = splits._drop_unavailable_truth(split)
    assert 0 < got.n_users < split.n_users
    assert got.users.tolist() == split.users[keep].tolist()
    assert [t.tolist() for t in got.truth] == truth
    assert got.dropped_unavailable == split.dropped_unavailable + split.n_users - len(keep)
