"""Popularity and item-age slices on a hand-built split: membership, ages and metrics by hand."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data, protocols, splits
from visrec_utils.core.skips import PartSkipped
from visrec_utils.evaluation import experiment, slices


def _cat(rows, n_items=6):
    """Catalogue of items i0..i{n-1}; ``rows`` = (day, user, item number)."""
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)], "image_path": "x"})
    inter = pd.DataFrame([(u, f"i{i}", pd.Timestamp(d)) for d, u, i in rows], columns=["user_id", "item_id", "timestamp"])
    return data.Catalogue(items, inter)


# d, e, f buy once (no test point); a, b, c each have a profile basket and a test basket.
ROWS = [("2020-01-01", "d", 0), ("2020-01-01", "d", 1), ("2020-01-02", "e", 0), ("2020-01-03", "f", 0),
        ("2020-01-03", "f", 1),
        ("2020-01-04", "a", 2), ("2020-01-10", "a", 0), ("2020-01-10", "a", 5),
        ("2020-01-05", "b", 3), ("2020-01-12", "b", 1), ("2020-01-12", "b", 4),
        ("2020-01-06", "c", 3), ("2020-01-12", "c", 0), ("2020-01-12", "c", 5)]


@pytest.fixture
def split():
    s = protocols.leave_last_basket_out(_cat(ROWS))
    assert s.users.tolist() == ["a", "b", "c"] and [t.tolist() for t in s.truth] == [[0, 5], [1, 4], [0, 5]]
    return s


def test_popularity_counts_only_purchases_before_the_test_point(split):
    # a@Jan10: item 0 bought by d, e, f (a's own Jan 10 purchase not counted), item 5 never;
    # b@Jan12: item 1 by d and f, item 4 never; c@Jan12: item 0 by d, e, f and a (Jan 10), item 5 by a
    assert [p.tolist() for p in slices.truth_popularity(split)] == [[3, 0], [2, 0], [4, 1]]
    got = slices.popularity_slices(split, n_bins=2)
    # warm purchases' counts 3, 2, 4, 1: median split -> {1, 2} and {3, 4}
    assert list(got) == ["unseen", "Q1 (1-2 purchases)", "Q2 (3-4 purchases)"]
    assert {k: (v.users.tolist(), [t.tolist() for t in v.truth]) for k, v in got.items()} == {
        "unseen": (["a", "b"], [[5], [4]]),
        "Q1 (1-2 purchases)": (["b", "c"], [[1], [5]]),
        "Q2 (3-4 purchases)": (["a", "c"], [[0], [0]])}
    # the point's other truth item is neither hit nor miss: out of the candidates
    assert [e.tolist() for e in got["unseen"].excluded] == [[0], [1]]
    assert not got["unseen"].candidate_mask(0)[0] and got["unseen"].candidate_mask(0)[5]
    deciles = slices.popularity_slices(split)
    assert list(deciles)[1:] == ["D1 (1 purchase)", "D2 (2 purchases)", "D3 (3 purchases)", "D4 (4 purchases)"]


def test_age_in_days_from_first_sale_or_given_date(split):
    # item 0 first sold Jan 1: 9 days at Jan 10, 11 at Jan 12; item 1 Jan 1: 11; item 4 first sold at
    # b's own test point: 0; item 5 first sold Jan 10 (a's test purchase): 0 at Jan 10, 2 at Jan 12
    assert [a.tolist() for a in slices.truth_age_days(split)] == [[9, 0], [11, 0], [11, 2]]
    given = np.array(["2019-12-31", None, None, None, "2020-01-20", "2020-01-05"], dtype="datetime64[ns]")
    # item 0 listed Dec 31 (10 and 12 days), item 4's date after the test point counts as 0, item 5 Jan 5
    assert [a.tolist() for a in slices.truth_age_days(split, given)] == [[10, 5], [11, 0], [12, 7]]
    got = slices.age_slices(split, n_bins=2)
    assert {k: [t.tolist() for t in v.truth] for k, v in got.items()} == {
        "Q1 (0-2 days)": [[5], [4], [5]], "Q2 (9-11 days)": [[0], [1], [0]]}
    late = np.full(split.n_items, np.datetime64("2020-02-01"), dtype="datetime64[ns]")  # every item listed later
    one = slices.age_slices(split, first_seen=late)  # all ages 0: one slice holding every test purchase
    assert {k: [t.tolist() for t in v.truth] for k, v in one.items()} == {"Q1 (0 days)": [[0, 5], [1, 4], [0, 5]]}


def test_slice_metrics_equal_run_experiment_on_the_hand_restricted_split(split):
    emb = np.random.default_rng(0).normal(size=(split.n_items, 4)).astype(np.float32)
    kw = dict(ks=(2,), n_resamples=50, progress=False, cache_dir=False)
    got = slices.slice_breakdown(slices.popularity_slices(split, n_bins=2), {("m", "frozen"): emb}, "popularity",
                                 baselines=["popularity", "itemknn"], **kw)
    assert got.groupby("slice")["slice_order"].first().to_dict() == {
        "unseen": 0, "Q1 (1-2 purchases)": 1, "Q2 (3-4 purchases)": 2}
    # Q2 by hand: points a and c keep item 0, each with its other truth item 5 out of the candidates
    hand = splits.subset_split(split, np.array([0, 2]), [np.array([0]), np.array([0])])
    hand.excluded = [np.array([5]), np.array([5])]
    want, _ = experiment.run_experiment(hand, {("m", "frozen"): emb}, ["visrank_max"], ["popularity", "itemknn"], **kw)
    mine = got[got["slice"] == "Q2 (3-4 purchases)"].drop(columns=slices.SLICE_COLUMNS).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, want)
    assert list(got.columns) == [*experiment.METRIC_COLUMNS, *experiment.SPLIT_COLUMNS, *slices.SLICE_COLUMNS]


def test_small_slices_are_skipped_with_a_reason(split):
    skipped = []
    one = {"x": slices.restrict_to(split, [np.array([True, False]), np.array([False, False]),
                                           np.array([False, False])], "one point")}
    with pytest.raises(PartSkipped, match="^no slice of item age at the test point has 2 test users"):
        slices.slice_breakdown(one, {}, "item_age", baselines=["popularity"], on_skip=lambda *a: skipped.append(a),
                               cache_dir=False)
    assert skipped[0][0] == "item age at the test point: x" and "needs at least 2" in str(skipped[0][1])
    with pytest.raises(PartSkipped, match="^slices is False, which switches"):
        slices.slice_breakdown(one, {}, "item_age", enabled=False)


def test_bad_parameters_give_one_clear_line(split):
    with pytest.raises(ValueError) as e:
        slices.popularity_slices(split, n_bins=0)
    assert str(e.value) == "n_bins must be a positive integer (e.g. 10 for deciles), not 0"
    with pytest.raises(ValueError) as e:
        slices.age_slices(split, first_seen=np.array(["2020-01-01"], dtype="datetime64[ns]"))
    assert str(e.value) == ("first_seen has 1 dates and the split has 6 items; pass one date (or NaT) per item, "
                            "in item-index order")
    with pytest.raises(ValueError, match=r"^kind must be one of \['popularity', 'item_age'\], not 'age'$"):
        slices.slice_breakdown({}, {}, "age")


def test_slice_figure_draws_a_line_per_configuration_with_intervals(split, tmp_path):
    from visrec_utils.reports import plots

    emb = np.random.default_rng(0).normal(size=(split.n_items, 4)).astype(np.float32)
    got = slices.slice_breakdown(slices.popularity_slices(split, n_bins=2), {("m", "frozen"): emb}, "popularity",
                                 baselines=["popularity", "itemknn"], ks=(2,), n_resamples=50, cache_dir=False)
    fig = plots.slice_lines({"popularity": got, "item_age": slices.empty_slices()}, "ndcg", 2,
                            visual=("m", "frozen", "visrank_max"), path=tmp_path / "s.png")
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and (tmp_path / "s.png").is_file()  # the empty panel is left out
    assert [t.get_text() for t in ax.get_xticklabels()] == ["unseen", "Q1 (1-2 purchases)", "Q2 (3-4 purchases)"]
    assert len(ax.containers) == 3  # VisRank (max) and the two baselines, each with error bars
    want = got[(got["metric"] == "ndcg") & (got["recommender"] == "popularity")].sort_values("slice_order")["value"]
    drawn = [c for c in ax.containers if "popularity" in c.get_label().lower()][0].lines[0].get_ydata()
    np.testing.assert_allclose(np.asarray(drawn, float), want.to_numpy(float))
    with pytest.raises(PartSkipped, match=r"^there are no Recall@5 values by slice to draw$"):  # ks were (2,)
        plots.slice_lines({"popularity": got}, "recall", 5)
