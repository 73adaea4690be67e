"""Metrics against hand-computed values and reference implementations."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils import metrics
from visrec_utils.metrics import bootstrap_ci, user_metrics

NEG = -np.inf


def test_single_truth_distinct_scores_by_hand():
    # candidates ranked: item 3 (0.9), item 1 (0.8), item 0 (0.5), item 4 (0.1); item 2 not a candidate
    scores = np.array([0.5, 0.8, NEG, 0.9, 0.1])
    m = user_metrics(scores, np.array([1]), ks=(1, 2, 10))
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["auc"] == pytest.approx(2 / 3)  # above items 0 and 4, below item 3
    assert m["precision@1"] == 0 and m["recall@1"] == 0 and m["ndcg@1"] == 0
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["recall@2"] == 1
    assert m["ndcg@2"] == pytest.approx(1 / np.log2(3))  # hit at rank 2, ideal DCG = 1
    # k larger than the 4 candidates: k stays the denominator of precision
    assert m["precision@10"] == pytest.approx(1 / 10)
    assert m["recall@10"] == 1


def test_several_truth_items_by_hand():
    # ranking: 0 (0.9) 1 (0.7) 2 (0.6) 3 (0.4) 4 (0.2); truth = items 1 and 3
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.2])
    m = user_metrics(scores, np.array([3, 1]), ks=(1, 3, 4))
    assert m["mrr"] == pytest.approx(1 / 2)
    # pairs (truth, non-truth): item1 beats 2,4 not 0 -> 2/3; item3 beats 4 only -> 1/3
    assert m["auc"] == pytest.approx(3 / 6)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(1 / 2)
    idcg3 = 1 + 1 / np.log2(3)  # min(|truth|, k) = 2 ideal hits
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3)) / idcg3)
    assert m["ndcg@4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / idcg3)
    idcg1 = 1.0  # min(2, 1) = 1 ideal hit
    assert m["ndcg@1"] == pytest.approx(0 / idcg1)


def test_ties_count_half_in_auc():
    scores = np.array([1.0, 1.0, 0.0])
    m = user_metrics(scores, np.array([0]), ks=(1,))
    assert m["auc"] == pytest.approx((0.5 + 1) / 2)
    scores = np.full(6, 0.3)
    assert user_metrics(scores, np.array([2, 4]), ks=(1,))["auc"] == pytest.approx(0.5)


def test_ties_are_broken_at_random_not_in_truths_favour():
    # all 4 candidates tied: the truth's rank is uniform on 1..4, so E[1/rank] = (1+1/2+1/3+1/4)/4
    rng = np.random.default_rng(1)
    scores = np.zeros(4)
    rr = [user_metrics(scores, np.array([0]), ks=(1,), rng=rng)["mrr"] for _ in range(4000)]
    assert np.mean(rr) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=0.02)
    # two truth items tied with each other never share a rank: recall@2 = 1 when only they are tied on top
    scores = np.array([5.0, 5.0, 1.0, 0.0])
    m = user_metrics(scores, np.array([0, 1]), ks=(2,), rng=rng)
    assert m["recall@2"] == 1 and m["ndcg@2"] == pytest.approx(1.0)


def test_auc_matches_sklearn_on_random_cases_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = rng.integers(5, 60)
        scores = rng.integers(0, 6, size=n).astype(float)  # many ties
        noncand = rng.random(n) < 0.2
        m = rng.integers(1, max(2, n // 3))
        truth = rng.choice(np.flatnonzero(~noncand), size=min(m, (~noncand).sum() - 1), replace=False)
        s = scores.copy()
        s[noncand] = NEG
        y = np.zeros(n, bool)
        y[truth] = True
        cand = ~noncand
        ref = roc_auc_score(y[cand], scores[cand])
        assert user_metrics(s, truth, ks=(5,))["auc"] == pytest.approx(ref, abs=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one truth"):
        user_metrics(np.zeros(3), np.array([], dtype=int))
    with pytest.raises(ValueError, match="candidate"):
        user_metrics(np.array([0.1, NEG]), np.array([1]))


def test_bootstrap_interval_matches_normal_theory():
    rng = np.random.default_rng(0)
    v = rng.normal(0.3, 0.1, size=2000)
    mean, lo, hi = bootstrap_ci(v, n_resamples=2000, seed=0)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    assert mean == pytest.approx(v.mean())
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert lo < mean < hi
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25, 0.25)


def test_summarize_is_tidy():
    pu = pd.DataFrame({"user_id": ["a", "b"], "n_truth": [1, 1], "n_candidates": [9, 9],
                       "auc": [0.5, 1.0], "ndcg@10": [0.0, 1.0]})
    s = metrics.summarize(pu, {"model": "m"}, n_resamples=200)
    assert list(s.columns) == ["model", "metric", "k", "value", "ci_low", "ci_high", "n_users"]
    assert s.set_index("metric").loc["auc", "value"] == pytest.approx(0.75)
    assert s.set_index("metric").loc["ndcg", "k"] == 10
