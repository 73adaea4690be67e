"""Ranking metrics per test user, and their mean with a bootstrap confidence interval.

Conventions (stated once, used everywhere):

* Each user ranks their *candidates* (items that may be recommended); non-candidates carry
  score ``-inf`` and never count. The truth items are always candidates.
* AUC: the probability that a truth item scores above a non-truth candidate, ties counting
  1/2 (Mann-Whitney U with mid-ranks; Hanley & McNeil 1982).
* Top-k lists break score ties with a seeded random order (never in the truth's favour).
* Precision@k = hits in the top k / k (k stays the denominator when a user has fewer than k
  candidates); Recall@k = hits / |truth|; nDCG@k with binary gains, DCG = sum of
  1/log2(rank+1) over hits, ideal DCG over min(|truth|, k) items (Jarvelin & Kekalainen 2002);
  MRR = 1 / rank of the first truth item in the full ranking; F1@k = harmonic mean of
  Precision@k and Recall@k; HitRate@k = 1 if any truth item is in the top k; AP@k = sum over
  hits in the top k of precision at that hit's rank, divided by min(|truth|, k); MAP = the same
  over the full ranking divided by |truth| (the mean over users is reported).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_KS = (10, 20, 50)
METRICS_AT_K = ("precision", "recall", "f1", "ndcg", "ap", "hitrate")
METRICS_FULL = ("auc", "mrr", "map")


def _ranks_and_auc(scores: np.ndarray, truth: np.ndarray, rng: np.random.Generator):
    """Ranks (1-based, tie-broken) of truth items, and the AUC with ties as 1/2.

    Args:
        scores: ``(n_items,) float`` with ``-inf`` for non-candidates.
        truth: ``(m,) int`` item indices (candidates).
        rng: random generator for tie-breaking.

    Returns:
        (ranks ``(m,) int64`` distinct and sorted ascending, auc float, n_candidates int)
    """
    cand = np.isfinite(scores)
    n_cand = int(cand.sum())
    m = len(truth)
    s_truth = scores[truth]
    # tie-broken rank: strictly greater, plus a random position among equal scores
    cs = np.sort(scores[cand])
    greater = n_cand - np.searchsorted(cs, s_truth, side="right")
    less = np.searchsorted(cs, s_truth, side="left")
    equal = n_cand - greater - less
    # a random order inside each tie group: truth items tied with each other get distinct slots
    ranks = greater + 1
    for val in np.unique(s_truth[equal > 1]):
        sel = np.flatnonzero(s_truth == val)
        e = int(equal[sel[0]])
        ranks[sel] += rng.choice(e, size=len(sel), replace=False)
    # AUC via mid-ranks among candidates: U = sum(midrank of truth) - m(m+1)/2 (ascending)
    midrank = less + (equal + 1) / 2.0
    n_neg = n_cand - m
    auc = float((midrank.sum() - m * (m + 1) / 2.0) / (m * n_neg)) if n_neg > 0 else np.nan
    return np.sort(ranks), auc, n_cand


def user_metrics(
    scores: np.ndarray, truth: np.ndarray, ks=DEFAULT_KS, rng: np.random.Generator | None = None
) -> dict[str, float]:
    """All metrics for one user.

    Args:
        scores: ``(n_items,) float``; ``-inf`` marks items that are not candidates.
        truth: ``(m,) int`` indices of the held-out items, m >= 1, all candidates.
        ks: cut-offs.
        rng: generator for tie-breaking (default: seed 0).

    Returns:
        ``{"auc", "mrr", "map", "precision@k", "recall@k", "f1@k", "ndcg@k", "ap@k", "hitrate@k"}``

    Raises:
        ValueError: empty truth, or a truth item that is not a candidate.
    """
    truth = np.asarray(truth, dtype=np.int64)
    if truth.size == 0:
        raise ValueError("a test user needs at least one truth item")
    if not np.all(np.isfinite(scores[truth])):
        raise ValueError("every truth item must be a candidate (finite score)")
    rng = rng or np.random.default_rng(0)
    ranks, auc, n_cand = _ranks_and_auc(np.asarray(scores, dtype=np.float64), truth, rng)
    m = len(truth)
    # precision at each truth item's rank: j-th hit (1-based) at rank r_j -> j / r_j
    prec_at_hit = np.arange(1, m + 1) / ranks
    out = {"auc": auc, "mrr": 1.0 / ranks[0], "map": float(prec_at_hit.sum() / m)}
    gains = 1.0 / np.log2(ranks + 1.0)
    for k in ks:
        hit = ranks <= k
        h = int(hit.sum())
        idcg = float((1.0 / np.log2(np.arange(2, min(m, k) + 2))).sum())
        p, r = h / k, h / m
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if h else 0.0
        out[f"ndcg@{k}"] = float(gains[hit].sum()) / idcg
        out[f"ap@{k}"] = float(prec_at_hit[hit].sum() / min(m, k))
        out[f"hitrate@{k}"] = float(h > 0)
    return out


def evaluate_many(score_fns: dict, split, ks=DEFAULT_KS, seed: int = 0, chunk: int = 256) -> dict:
    """:func:`evaluate_scores` for several scoring functions, block of users by block.

    Every function sees the same user blocks in the same order (so VisRank aggregates can share
    their similarity rows) and its own tie-breaking generator seeded with ``seed``: the result
    for each function equals :func:`evaluate_scores` run on it alone.

    Returns:
        ``{name: per-user DataFrame}``.
    """
    rngs = {name: np.random.default_rng(seed) for name in score_fns}
    rows: dict[str, list] = {name: [] for name in score_fns}
    for start in range(0, split.n_users, chunk):
        pos = np.arange(start, min(start + chunk, split.n_users))
        masks = [split.candidate_mask(u) for u in pos]
        for name, fn in score_fns.items():
            scores = np.array(fn(pos), dtype=np.float64)  # a copy: masked in place below
            for r, u in enumerate(pos):
                s = scores[r]
                s[~masks[r]] = -np.inf
                row = user_metrics(s, split.truth[u], ks=ks, rng=rngs[name])
                row.update(user_id=split.users[u], n_truth=len(split.truth[u]), n_candidates=int(masks[r].sum()))
                rows[name].append(row)
    out = {}
    for name, r in rows.items():
        df = pd.DataFrame(r)
        front = ["user_id", "n_truth", "n_candidates"]
        out[name] = df[front + [c for c in df.columns if c not in front]] if len(df) else df
    return out


def evaluate_scores(score_fn, split, ks=DEFAULT_KS, seed: int = 0, chunk: int = 256) -> pd.DataFrame:
    """Per-user metrics for a scoring function over a split.

    Args:
        score_fn: ``score_fn(user_positions: np.ndarray) -> (len, n_items) float32`` scores for
            those test users (row order of ``split.users``).
        split: :class:`visrec_utils.data.Split`.
        ks: cut-offs.
        seed: tie-breaking seed.
        chunk: users scored per call.

    Returns:
        DataFrame, one row per test user: ``user_id``, ``n_truth``, ``n_candidates`` and one
        column per metric (``auc``, ``mrr``, ``precision@10`` ...).
    """
    return evaluate_many({"scores": score_fn}, split, ks=ks, seed=seed, chunk=chunk)["scores"]


def bootstrap_ci(values: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Mean of per-user values with a percentile bootstrap interval (resampling users).

    Uses ``scipy.stats.bootstrap`` (percentile method). The same seed and number of users give
    the same resamples, so intervals of different configurations share their user draws.

    Returns:
        (mean, ci_low, ci_high); the interval is (mean, mean) when all values are equal and NaN
        when fewer than 2 users.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if v.size else np.nan
    if v.size < 2:
        return mean, np.nan, np.nan
    if np.all(v == v[0]):
        return mean, mean, mean
    res = stats.bootstrap((v,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(per_user: pd.DataFrame, labels: dict, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Tidy summary of per-user metrics: one row per (metric, k).

    Args:
        per_user: output of :func:`evaluate_scores`.
        labels: columns to add to every row, e.g. ``{"model": .., "strategy": .., "recommender": ..}``.

    Returns:
        DataFrame with columns ``*labels, metric, k, value, ci_low, ci_high, n_users``
        (``k`` is 0 for metrics without a cut-off: auc, mrr).
    """
    rows = []
    for col in per_user.columns:
        if col in ("user_id", "n_truth", "n_candidates"):
            continue
        metric, _, k = col.partition("@")
        mean, lo, hi = bootstrap_ci(per_user[col].to_numpy(), n_resamples=n_resamples, seed=seed)
        rows.append({**labels, "metric": metric, "k": int(k) if k else 0, "value": mean,
                     "ci_low": lo, "ci_high": hi, "n_users": int(per_user[col].notna().sum())})
    return pd.DataFrame(rows)
