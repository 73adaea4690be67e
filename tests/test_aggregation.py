"""The compiled profile aggregations against numpy references (exact equality)."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue.splits import Split
from visrec_utils.evaluation import aggregation, recommenders


def _rows(rng, n_rows=30, n_items=257, n_users=40, max_profile=12):
    sims = rng.standard_normal((n_rows, n_items)).astype(np.float32)
    sims[3, :5] = sims[4, :5]  # exact ties between rows
    profiles = [rng.choice(n_rows, size=int(rng.integers(0, max_profile)), replace=False) for _ in range(n_users)]
    ptr = np.concatenate([[0], np.cumsum([len(p) for p in profiles])]).astype(np.int64)
    return sims, profiles, np.concatenate(profiles).astype(np.int64), ptr


def test_profile_aggregates_equal_numpy_max_mean_and_sorted_topk_mean():
    rng = np.random.default_rng(0)
    sims, profiles, rows, ptr = _rows(rng)
    for k in (1, 2, 3, 5):
        got = aggregation.profile_aggregates(sims, rows, ptr, ["max", "mean", ("topk", k)])
        for u, p in enumerate(profiles):
            if not len(p):
                for arr in got.values():
                    np.testing.assert_array_equal(arr[u], 0)
                continue
            block = sims[p]
            np.testing.assert_array_equal(got["max"][u], block.max(0))
            mean = block[0].copy()
            for r in block[1:]:
                mean += r
            mean /= len(p)
            np.testing.assert_array_equal(got["mean"][u], mean)
            kk = min(k, len(p))
            np.testing.assert_array_equal(got[("topk", k)][u], np.sort(block, axis=0)[-kk:].mean(0))


def test_topk_mean_equals_numpy_partition_here():
    """What VisRank computed before (``np.partition(...)[-k:].mean(0)``): numpy leaves the top k in
    ascending order, so the sums are the same."""
    rng = np.random.default_rng(1)
    sims, profiles, rows, ptr = _rows(rng, n_rows=400, max_profile=350, n_users=12)
    got = aggregation.profile_aggregates(sims, rows, ptr, [("topk", 3)])[("topk", 3)]
    for u, p in enumerate(profiles):
        if len(p):
            kk = min(3, len(p))
            np.testing.assert_array_equal(got[u], np.partition(sims[p], len(p) - kk, axis=0)[-kk:].mean(0))


def test_profile_aggregates_rejects_unknown_aggregates():
    sims = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="aggregates are 'max', 'mean' or"):
        aggregation.profile_aggregates(sims, np.array([0]), np.array([0, 1]), ["median"])
    with pytest.raises(ValueError, match="one top-k aggregate per pass"):
        aggregation.profile_aggregates(sims, np.array([0]), np.array([0, 1]), [("topk", 2), ("topk", 3)])


def test_extend_max_over_blocks_equals_the_max_of_whole_profiles():
    rng = np.random.default_rng(2)
    n_rows, n_items = 25, 64
    sims = rng.standard_normal((n_rows, n_items)).astype(np.float32)
    keys, profiles = [], []
    for user in ("a", "b", "c"):  # growing profiles, as time replay makes them
        prof = np.empty(0, np.int64)
        for _ in range(5):
            prof = np.union1d(prof, rng.choice(n_rows, size=3)).astype(np.int64)
            keys.append(user), profiles.append(prof)
    keys.append("d"), profiles.append(np.empty(0, np.int64))
    keys.append("a"), profiles.append(np.array([0], np.int64))  # not an extension of a's last profile
    state = {}
    plan = aggregation.replay_plan(keys, profiles)
    assert plan["prev"][:6].tolist() == [-1, 0, 1, 2, 3, -1] and plan["prev"][-1] == -1 and plan["n_slots"] == 4
    for block in (np.arange(0, 7), np.arange(7, 12), np.arange(12, 17)):
        rows = np.concatenate([profiles[i] for i in block]).astype(np.int64)
        got = aggregation.extend_max(state, plan, block, [profiles[i] for i in block], sims, rows)
        for r, i in enumerate(block):
            want = sims[profiles[i]].max(0) if len(profiles[i]) else np.zeros(n_items, np.float32)
            np.testing.assert_array_equal(got[r], want)
    assert state["point"].tolist() == [16, 9, 14, -1]  # each user's latest point with a profile


def _replay_split(rng, n_items=50):
    users, profiles, truth, days = [], [], [], []
    for user in ("a", "b", "c", "d"):
        prof = rng.choice(n_items, size=2, replace=False)
        for day in range(1, 5):
            tr = rng.choice(np.setdiff1d(np.arange(n_items), prof), size=2, replace=False)
            users.append(user), profiles.append(np.sort(prof).astype(np.int64))
            truth.append(np.sort(tr).astype(np.int64)), days.append(f"2020-01-0{day}")
            prof = np.union1d(prof, tr)
    order = np.argsort(np.array(days), kind="stable")
    inter = pd.DataFrame({"user_id": ["a"], "item_idx": [0], "timestamp": pd.to_datetime(["2020-01-01"])})
    return Split(users=np.array(users, dtype=object)[order], profiles=[profiles[i] for i in order],
                 truth=[truth[i] for i in order], test_day=np.array(days, dtype="datetime64[ns]")[order],
                 train=inter, n_items=n_items, interactions=inter)


def test_visrank_on_repeated_users_equals_fresh_scores_per_point():
    rng = np.random.default_rng(3)
    split = _replay_split(rng)
    emb = rng.standard_normal((split.n_items, 5)).astype(np.float32)
    shared = recommenders.SharedSimilarities(emb, split)
    fns = {n: recommenders.make_recommender(n).fit(split, emb, shared=shared).score
           for n in ("visrank_max", "visrank_mean", "visrank_top3")}
    blocks = [fns[n](np.arange(a, min(a + 5, split.n_users))) for a in range(0, split.n_users, 5) for n in fns]
    for b, a in enumerate(range(0, split.n_users, 5)):
        for j, n in enumerate(fns):
            for r, u in enumerate(range(a, min(a + 5, split.n_users))):
                alone = recommenders.make_recommender(n).fit(split, emb).score(np.array([u]))[0]
                np.testing.assert_array_equal(blocks[b * 3 + j][r], alone)
    assert shared._last_max["point"].tolist() == [12, 13, 14, 15]
