"""Recommenders on hand-built cases."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.evaluation import recommenders
from visrec_utils.catalogue.splits import Split


def _split(profiles, truth, days, inter=None, n_items=4):
    inter = inter if inter is not None else pd.DataFrame(columns=["user_id", "item_idx", "timestamp"])
    return Split(users=np.array([f"u{i}" for i in range(len(profiles))], dtype=object),
                 profiles=[np.array(p) for p in profiles], truth=[np.array(t) for t in truth],
                 test_day=np.array(days, dtype="datetime64[ns]"), train=inter, n_items=n_items,
                 interactions=inter)


def test_visrank_aggregates_by_hand():
    emb = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], dtype=np.float32)  # cosines are easy
    split = _split([[0, 1]], [[2]], ["2020-01-02"])
    c = 1 / np.sqrt(2)
    sims = np.array([[1, 0, c, c], [0, 1, c, -c]])  # rows: profile items 0 and 1
    for name, expect in [("visrank_max", sims.max(0)), ("visrank_mean", sims.mean(0)),
                         ("visrank_top3", sims.mean(0))]:  # top-3 of a 2-item profile = mean
        rec = recommenders.make_recommender(name).fit(split, emb)
        np.testing.assert_allclose(rec.score(np.array([0]))[0], expect, atol=1e-6)
    rec = recommenders.VisRank("topk", k=1).fit(split, emb)
    np.testing.assert_allclose(rec.score(np.array([0]))[0], sims.max(0), atol=1e-6)


def test_popularity_counts_only_purchases_before_the_test_day():
    inter = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "item_idx": [1, 1, 2, 3],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-01"])})
    split = _split([[0], [0]], [[1], [2]], ["2020-01-02", "2020-01-04"], inter)
    rec = recommenders.make_recommender("popularity").fit(split)
    np.testing.assert_array_equal(rec.score(np.array([0, 1])), [[0, 1, 0, 1], [0, 2, 1, 1]])


def test_random_is_reproducible_and_chunk_independent():
    split = _split([[0]] * 3, [[1]] * 3, ["2020-01-02"] * 3, n_items=50)
    r1 = recommenders.make_recommender("random", seed=3).fit(split)
    r2 = recommenders.make_recommender("random", seed=3).fit(split)
    np.testing.assert_array_equal(r1.score(np.array([0, 1, 2]))[2], r2.score(np.array([2]))[0])


def test_registry_errors_are_helpful():
    with pytest.raises(KeyError, match="did you mean 'visrank_max'"):
        recommenders.make_recommender("visrank_maxx")
    with pytest.raises(ValueError, match="rows"):
        recommenders.VisRank().fit(_split([[0]], [[1]], ["2020-01-02"]), np.zeros((3, 2)))


def test_shared_similarities_and_evaluate_many_equal_the_single_path():
    from visrec_utils.evaluation import metrics

    rng = np.random.default_rng(0)
    n_items, n_users = 60, 30
    profiles = [rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False) for _ in range(n_users)]
    truth = [rng.choice(np.setdiff1d(np.arange(n_items), p), size=2, replace=False) for p in profiles]
    split = _split(profiles, truth, ["2020-01-02"] * n_users, n_items=n_items)
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    shared = recommenders.SharedSimilarities(emb, split)
    fns = {name: recommenders.make_recommender(name).fit(split, emb, shared=shared).score
           for name in recommenders.CONTENT_RECOMMENDERS}
    many = metrics.evaluate_many(fns, split, ks=(5,), chunk=7)
    for name in recommenders.CONTENT_RECOMMENDERS:
        alone = recommenders.make_recommender(name).fit(split, emb)
        single = metrics.evaluate_scores(alone.score, split, ks=(5,), chunk=11)
        pd.testing.assert_frame_equal(many[name], single)


def test_distinct_profile_rows_whole_split_and_per_block_equal_naive_scores():
    """Deduplicated similarity rows (whole split, or per block when over max_bytes) give the
    scores of the plain per-user formula."""
    rng = np.random.default_rng(1)
    n_items, n_users = 40, 25
    profiles = [rng.choice(12, size=int(rng.integers(1, 7)), replace=False) for _ in range(n_users)]  # shared items
    split = _split(profiles, [[39]] * n_users, ["2020-01-02"] * n_users, n_items=n_items)
    emb = rng.normal(size=(n_items, 6)).astype(np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    naive = {"max": lambda s: s.max(0), "mean": lambda s: s.mean(0), "topk": lambda s: np.sort(s, 0)[-3:].mean(0)}
    users = np.arange(n_users)
    for max_bytes in (2**30, 0):
        shared = recommenders.SharedSimilarities(emb, split, max_bytes=max_bytes)
        for agg, f in naive.items():
            got = recommenders.VisRank(agg).fit(split, emb, shared=shared).score(users)
            want = np.stack([f(unit[p] @ unit.T) for p in profiles])
            np.testing.assert_allclose(got, want, atol=1e-6)
        assert (shared._all is None) == (max_bytes == 0)
        if max_bytes:
            assert shared._all.shape == (len(np.unique(np.concatenate(profiles))), n_items)


def test_recent_popularity_counts_only_the_window():
    inter = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "item_idx": [1, 1, 2, 3],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-20", "2020-01-25", "2020-02-05"])})
    split = _split([[0]], [[1]], ["2020-02-05"], inter)
    rec = recommenders.Popularity(window_days=30).fit(split)  # window [Jan 6, Feb 5)
    np.testing.assert_array_equal(rec.score(np.array([0])), [[0, 1, 1, 0]])


def test_itemknn_is_cosine_of_co_purchases_before_the_test_day():
    # users a, b bought items 0 and 1; a also bought 2; e bought 3 only after the test day
    inter = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "e", "e"], "item_idx": [0, 1, 2, 0, 1, 0, 3],
                          "timestamp": pd.to_datetime(["2020-01-01"] * 5 + ["2020-03-01"] * 2)})
    split = _split([[0]], [[2]], ["2020-02-01"], inter)
    rec = recommenders.ItemKNN(k=10).fit(split)
    # item vectors over users (a, b): 0 = (1,1), 1 = (1,1), 2 = (1,0); cos(0,1) = 1, cos(0,2) = 1/sqrt(2)
    # (item 0 keeps its self-similarity 1: profile items are masked in evaluation, not here)
    np.testing.assert_allclose(rec.score(np.array([0]))[0], [1, 1, 1 / np.sqrt(2), 0], atol=1e-6)


def test_hybrid_blends_standardised_scores():
    inter = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_idx": [0, 1, 0, 2],
                          "timestamp": pd.to_datetime(["2020-01-01"] * 4)})
    split = _split([[0]], [[3]], ["2020-02-01"], inter)
    emb = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], dtype=np.float32)
    knn = recommenders.ItemKNN().fit(split).score(np.array([0]))
    vis = recommenders.VisRank("max").fit(split, emb).score(np.array([0]))
    z = lambda x: (x - x.mean()) / x.std()
    got = recommenders.Hybrid(alpha=0.3).fit(split, emb).score(np.array([0]))
    np.testing.assert_allclose(got, 0.3 * z(knn) + 0.7 * z(vis), atol=1e-5)
