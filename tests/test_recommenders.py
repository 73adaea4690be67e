"""Recommenders on hand-built cases."""
from dataclasses import dataclass, field

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
    with pytest.raises(ValueError, match="did you mean 'visrank_max'"):
        recommenders.make_recommender("visrank_maxx")
    with pytest.raises(ValueError) as e:
        recommenders.create_recommender("visrank_maxx")
    assert str(e.value) == ("unknown recommender 'visrank_maxx'; choose from visrank_max, visrank_mean, visrank_top3, "
                            "random, popularity, popularity_30d, itemknn, hybrid_itemknn_visrank, vbpr, bpr_mf "
                            "(did you mean 'visrank_max'?)")
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


def test_names_of_configured_objects_are_todays_names():
    assert recommenders.list_recommenders() == ["visrank_max", "visrank_mean", "visrank_top3", "random", "popularity",
                                                "popularity_30d", "itemknn", "hybrid_itemknn_visrank", "vbpr", "bpr_mf"]
    for name in recommenders.list_recommenders():
        assert recommenders.create_recommender(name).name == name
    assert recommenders.CONTENT_RECOMMENDERS == ["visrank_max", "visrank_mean", "visrank_top3", "hybrid_itemknn_visrank"]
    assert recommenders.BASELINES == ["random", "popularity", "popularity_30d", "itemknn"]
    assert [recommenders.VisRank("max").name, recommenders.Popularity(window_days=7).name,
            recommenders.ItemKNN(k=20).name, recommenders.Hybrid(alpha=0.3).name] == \
        ["visrank_max", "popularity_7d", "itemknn_k20_refit30d", "hybrid_itemknn_visrank_a0.3"]
    assert recommenders.create_recommender("visrank_top3", k=5).name == "visrank_top5"
    assert recommenders.make_recommender("random", seed=4).seed == 4



def test_baselines_live_in_their_module_and_in_the_one_registry():
    from visrec_utils.evaluation import baselines

    for cls in (baselines.RandomRec, baselines.Popularity, baselines.ItemKNN, baselines.Recommender):
        assert getattr(recommenders, cls.__name__) is cls
    assert [type(recommenders.create_recommender(n)) for n in recommenders.BASELINES] == \
        [baselines.RandomRec, baselines.Popularity, baselines.Popularity, baselines.ItemKNN]
    assert not any(getattr(baselines, c).content_based for c in ("RandomRec", "Popularity", "ItemKNN"))


def test_create_recommender_by_name_equals_the_configured_object():
    rng = np.random.default_rng(0)
    split = _split([[0, 1, 2], [3, 4]], [[5], [6]], ["2020-01-02"] * 2, n_items=10)
    emb = rng.normal(size=(10, 4)).astype(np.float32)
    by_name = recommenders.create_recommender("visrank_top3")
    obj = recommenders.VisRank(aggregate="topk", k=3)
    assert by_name.name == obj.name == "visrank_top3" and by_name == obj
    np.testing.assert_array_equal(by_name.fit(split, emb).score(np.arange(2)), obj.fit(split, emb).score(np.arange(2)))
    # objects are accepted wherever names are, and give the same scores
    a = recommenders.make_score_fns(split, emb, ["visrank_top3", "visrank_max"])
    b = recommenders.make_score_fns(split, emb, [obj, recommenders.VisRank()])
    assert list(a) == list(b) == ["visrank_top3", "visrank_max"]
    for n in a:
        np.testing.assert_array_equal(a[n](np.arange(2)), b[n](np.arange(2)))
    with pytest.raises(ValueError, match="two recommenders are named 'visrank_max'"):
        recommenders.make_score_fns(split, emb, ["visrank_max", recommenders.VisRank("max", k=5)])


@dataclass
class _FirstItem(recommenders.Recommender):
    """Toy content-based recommender: cosine similarity to the profile's first item."""

    content_based = True
    _emb: np.ndarray = field(default=None, init=False, repr=False)
    _split: Split = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return "first_item"

    def fit(self, split, embeddings=None, shared=None):
        self._emb, self._split = recommenders.l2_normalize(embeddings), split
        return self

    def score(self, users):
        first = [self._split.profiles[u][0] for u in users]
        return (self._emb[first] @ self._emb.T).astype(np.float32)


def test_a_registered_toy_recommender_runs():
    from visrec_utils.evaluation import experiment

    inter = pd.DataFrame({"user_id": ["a", "b", "c"], "item_idx": [0, 1, 2],
                          "timestamp": pd.to_datetime(["2020-01-01"] * 3)})
    split = _split([[0], [1], [2]], [[3], [4], [5]], ["2020-01-02"] * 3, inter, n_items=8)
    emb = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    recommenders.register_recommender("first_item", _FirstItem)
    try:
        assert "first_item" in recommenders.list_recommenders(content_based=True)
        m, pu = experiment.run_experiment(split, {("toy", "frozen"): emb}, ["first_item", "visrank_max"], ["random"],
                                          ks=(2,), n_resamples=20, progress=False, cache_dir=False)
        assert set(m["recommender"]) == {"first_item", "visrank_max", "random"}
        # a one-item profile: the toy scores are VisRank-max's
        toy = pu[pu["recommender"] == "first_item"].drop(columns="recommender").reset_index(drop=True)
        vis = pu[pu["recommender"] == "visrank_max"].drop(columns="recommender").reset_index(drop=True)
        pd.testing.assert_frame_equal(toy, vis)
    finally:
        recommenders.unregister_recommender("first_item")
    assert "first_item" not in recommenders.list_recommenders()


def test_similarity_rows_of_several_splits_score_like_each_split_alone():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((9, 4)).astype(np.float32)
    inter = pd.DataFrame({"user_id": ["a"], "item_idx": [0], "timestamp": pd.to_datetime(["2020-01-01"])})
    one = _split([[0, 3], [5]], [[1], [2]], ["2020-01-02", "2020-01-02"], inter, n_items=9)
    two = _split([[2, 7, 8], [0]], [[4], [6]], ["2020-01-02", "2020-01-02"], inter, n_items=9)
    sims, row_of = recommenders.similarity_rows(emb, [one, two])
    assert sims.shape == (6, 9) and list(np.flatnonzero(row_of >= 0)) == [0, 2, 3, 5, 7, 8]
    for split in (one, two):
        alone = recommenders.make_score_fns(split, emb, ["visrank_max", "visrank_mean", "visrank_top3"])
        shared = recommenders.make_score_fns(split, emb, ["visrank_max", "visrank_mean", "visrank_top3"],
                                             shared=recommenders.SharedSimilarities.from_rows(split, sims, row_of))
        for name in alone:
            np.testing.assert_array_equal(shared[name](np.arange(2)), alone[name](np.arange(2)))
    with pytest.raises(ValueError, match="miss a profile item of this split"):
        recommenders.SharedSimilarities.from_rows(one, *recommenders.similarity_rows(emb, [two]))


def test_hybrid_reuses_the_knn_half_across_embedding_sets_with_fresh_fit_numbers():
    rng = np.random.default_rng(4)
    n_items = 30
    inter = pd.DataFrame({"user_id": rng.choice(list("abcdefg"), 80), "item_idx": rng.integers(0, n_items, 80),
                          "timestamp": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 60, 80), "D")})
    profiles = [np.sort(rng.choice(n_items, 4, replace=False)) for _ in range(9)]
    days = ["2020-01-20", "2020-02-10", "2020-03-05"] * 3
    split = _split(profiles, [[0]] * 9, days, inter, n_items=n_items)
    users = np.arange(9)
    first, second = (rng.standard_normal((n_items, 3)).astype(np.float32) for _ in range(2))
    got = [recommenders.Hybrid().fit(split, e).score(users) for e in (first, second)]
    for e, g in zip((first, second), got):
        fresh = _split(profiles, [[0]] * 9, days, inter.copy(), n_items=n_items)  # no memo: fitted anew
        knn = recommenders.ItemKNN().fit(fresh).score(users)
        vis = recommenders.VisRank("max").fit(fresh, e).score(users)
        want = (0.5 * recommenders._zscore(knn) + 0.5 * recommenders._zscore(vis)).astype(np.float32)
        np.testing.assert_array_equal(g, want)
    assert sum(k[0] == "itemknn_z" for k in split._memo) == 1  # one block, z-scored once


def test_itemknn_fits_are_shared_by_splits_of_the_same_purchases():
    inter = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_idx": [0, 1, 0, 2, 1],
                          "timestamp": pd.to_datetime(["2020-01-01"] * 4 + ["2020-01-03"])})
    one = _split([[0]], [[1]], ["2020-01-02"], inter)
    two = _split([[1], [2]], [[2], [0]], ["2020-01-02", "2020-01-02"], inter.copy())
    a, b = recommenders.ItemKNN().fit(one), recommenders.ItemKNN().fit(two)
    day = np.datetime64("2020-01-02", "ns")
    assert a._sims[day] is b._sims[day]
    later = _split([[0]], [[1]], ["2020-01-04"], inter)  # another anchor: its own fit
    assert recommenders.ItemKNN().fit(later)._sims[np.datetime64("2020-01-04", "ns")] is not a._sims[day]


def test_zscore_equals_numpys_mean_and_std_to_the_last_bit():
    rng = np.random.default_rng(7)
    for x in (rng.standard_normal((64, 1001)).astype(np.float32), np.full((3, 4), 0.5, np.float32),
              (rng.random((9, 300)) < 0.02).astype(np.float32) * 40):
        want = (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-12)
        np.testing.assert_array_equal(recommenders._zscore(x), want)


def test_a_few_users_get_their_own_rows_only_and_the_same_scores():
    rng = np.random.default_rng(8)
    n_items, n_users = 200, 60
    profiles = [np.sort(rng.choice(n_items, size=5, replace=False)) for _ in range(n_users)]
    split = _split(profiles, [[0]] * n_users, ["2020-01-02"] * n_users, n_items=n_items)
    emb = rng.standard_normal((n_items, 16)).astype(np.float32)
    few = recommenders.VisRank("max").fit(split, emb)
    got = few.score(np.array([3, 7]))
    assert few._shared._all is None  # 2 users need under 1/8 of the split's rows
    whole = recommenders.VisRank("max").fit(split, emb)
    np.testing.assert_array_equal(got, whole.score(np.arange(n_users))[[3, 7]])
    assert whole._shared._all is not None
