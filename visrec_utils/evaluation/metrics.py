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
* Beyond accuracy: novelty@k = mean self-information -log2 p(i) of the top k
  (:func:`self_information`); catalogue coverage@k = share of the catalogue in at least one
  user's top k (:func:`coverage`; no interval).
* Everything is computed for a block of users at once (:func:`block_metrics`): every accuracy
  metric is a function of the truth items' ranks, which one compiled (numba) comparison pass
  per truth item gives without sorting or copying the scores; the AUC comes from the same
  counts as a rank sum. Top-k lists (novelty, coverage) come from ``torch.topk``.
  :func:`user_metrics` is the same code on a block of one.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

DEFAULT_KS = (10, 20, 50)
#: Bumped whenever a metric's definition or tie-breaking changes (part of the evaluation cache key).
EVAL_VERSION = "2"
METRICS_AT_K = ("precision", "recall", "f1", "ndcg", "ap", "hitrate")
METRICS_FULL = ("auc", "mrr", "map")


def _as_float(scores, copy: bool = False) -> np.ndarray:
    """float32 and float64 scores keep their precision (comparisons are exact either way);
    anything else becomes float64."""
    scores = np.asarray(scores)
    dtype = scores.dtype if scores.dtype in (np.float32, np.float64) else np.float64
    return np.array(scores, dtype=dtype, copy=True) if copy else scores.astype(dtype, copy=False)


_KERNELS: dict = {}
prange = range  # numba.prange once the kernel is compiled (see _kernel)


def _kernel(fn):
    """``fn`` compiled with numba (parallel, cached on disk) at its first use, so importing this
    module (and :mod:`visrec_utils.evaluation.stats`) does not import numba."""
    if fn.__name__ not in _KERNELS:
        import numba

        globals()["prange"] = numba.prange
        _KERNELS[fn.__name__] = numba.njit(parallel=True, cache=True, nogil=True)(fn)
    return _KERNELS[fn.__name__]


def _count_above(scores, mask, truth_flat, truth_ptr):  # pragma: no cover (compiled)
    """Per truth item, the candidates scoring above / equal to it, rows in parallel.

    A candidate is an item with ``mask`` True and a finite score. One branch-free (SIMD) pass
    over the row per truth item. Returns (greater, equal: ``(len(truth_flat),) int64``,
    n_candidates ``(B,) int64``, truth_ok ``(B,) bool`` = every truth item of the row is a
    candidate).
    """
    n_b, n_items = scores.shape
    greater = np.zeros(truth_flat.size, np.int64)
    equal = np.zeros(truth_flat.size, np.int64)
    n_cand = np.zeros(n_b, np.int64)
    ok = np.ones(n_b, np.bool_)
    for r in prange(n_b):
        row, mrow = scores[r], mask[r]
        c = 0
        for i in range(n_items):
            v = row[i]
            c += mrow[i] & (v > -np.inf) & (v < np.inf)
        n_cand[r] = c
        for j in range(truth_ptr[r], truth_ptr[r + 1]):
            t = row[truth_flat[j]]
            if not (mrow[truth_flat[j]] and np.isfinite(t)):
                ok[r] = False
            g, e = 0, 0
            for i in range(n_items):
                v = row[i]
                cand = mrow[i] & (v < np.inf)  # -inf and NaN never compare above or equal to t
                g += cand & (v > t)
                e += cand & (v == t)
            greater[j], equal[j] = g, e
    return greater, equal, n_cand, ok


def _block_ranks(scores: np.ndarray, truth: list[np.ndarray], rngs, mask: np.ndarray | None = None):
    """Tie-broken ranks of every truth item and the AUC, for a block of users at once.

    Args:
        scores: ``(B, n_items) float32/float64``; non-finite scores are not candidates.
        truth: B non-empty arrays of truth item indices (candidates).
        rngs: one generator per row, a function ``row -> generator``, or one shared generator,
            for tie-breaking; drawn from only for truth items tied with other candidates.
        mask: ``(B, n_items) bool`` candidates (default: every item with a finite score).

    Returns:
        (ranks ``(B, M) float64`` sorted ascending per row, 1-based, ``inf`` as padding beyond
        each row's truth; auc ``(B,)``; n_candidates ``(B,) int64``).

    Raises:
        ValueError: a truth item that is not a candidate.
    """
    n_b = len(truth)
    m = np.array([len(t) for t in truth], dtype=np.int64)
    width = int(m.max()) if n_b else 0
    ptr = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
    flat = np.concatenate(truth).astype(np.int64) if n_b else np.empty(0, np.int64)
    mask = np.ones((1, 1), bool) if mask is None else mask
    mask = np.broadcast_to(mask, scores.shape) if mask.shape != scores.shape else mask
    g_flat, e_flat, n_cand, ok = _kernel(_count_above)(scores, mask, flat, ptr)
    if not ok.all():
        raise ValueError(f"every truth item must be a candidate (finite score); block row {int(np.argmin(ok))} "
                         "has one that is not")
    valid = np.arange(width)[None, :] < m[:, None]
    greater = np.zeros((n_b, width), np.int64)
    equal = np.zeros((n_b, width), np.int64)
    greater[valid], equal[valid] = g_flat, e_flat  # row-major order of `valid` = truth order
    less = n_cand[:, None] - greater - equal
    # AUC via mid-ranks among candidates (Mann-Whitney U, ties 1/2): U = sum of midranks - m(m+1)/2
    midrank = np.where(valid, less + (equal + 1) / 2.0, 0.0)
    n_neg = n_cand - m
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(n_neg > 0, (midrank.sum(1) - m * (m + 1) / 2.0) / (m * n_neg), np.nan)
    ranks = np.where(valid, greater + 1, np.iinfo(np.int64).max).astype(np.int64)
    for r in np.flatnonzero((valid & (equal > 1)).any(1)):  # rare for real-valued scores
        rng = rngs(r) if callable(rngs) else rngs[r] if isinstance(rngs, (list, tuple)) else rngs
        st, eq = scores[r, truth[r]], equal[r, : m[r]]
        for val in np.unique(st[eq > 1]):  # a random order inside each tie group
            sel = np.flatnonzero(st == val)
            ranks[r, sel] += rng.choice(int(eq[sel[0]]), size=len(sel), replace=False)
    ranks = np.sort(ranks, axis=1).astype(np.float64)
    ranks[~valid] = np.inf
    return ranks, auc, n_cand


def block_metrics(scores: np.ndarray, truth: list[np.ndarray], ks=DEFAULT_KS, rngs=None,
                  mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric of the module docstring for a block of users, vectorised.

    The ranks come from one compiled pass over each score row (numba, rows in parallel): every
    accuracy metric is a function of the truth items' ranks, so no row is sorted or copied.

    Args:
        scores: ``(B, n_items) float`` with ``-inf`` (or NaN) for non-candidates.
        truth: B arrays of held-out item indices (each non-empty, all candidates).
        ks: cut-offs.
        rngs: tie-breaking generator(s): one per row, ``row -> generator``, or one shared
            (default: seed 0).
        mask: optional ``(B, n_items) bool`` candidates, applied on top of the finite scores
            (saves masking a copy of ``scores``).

    Returns:
        ``{metric: (B,) float64}`` for ``auc, mrr, map`` and ``precision/recall/f1/ndcg/ap/hitrate@k``,
        and ``n_candidates`` ``(B,) int64``.

    Raises:
        ValueError: an empty truth, or a truth item that is not a candidate.
    """
    scores = _as_float(scores)
    truth = [np.asarray(t, dtype=np.int64) for t in truth]
    if any(t.size == 0 for t in truth):
        raise ValueError("a test user needs at least one truth item")
    rngs = rngs if rngs is not None else np.random.default_rng(0)
    ranks, auc, n_cand = _block_ranks(scores, truth, rngs, mask=mask)
    m = np.array([len(t) for t in truth], dtype=np.float64)
    # precision at each truth item's rank: the j-th hit (1-based) at rank r_j -> j / r_j (0 for padding)
    prec_at_hit = np.arange(1, ranks.shape[1] + 1)[None, :] / ranks
    out = {"auc": auc, "mrr": 1.0 / ranks[:, 0], "map": prec_at_hit.sum(1) / m, "n_candidates": n_cand}
    gains = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max(ks, default=0) + 2)))])
    for k in ks:
        hit = ranks <= k
        h = hit.sum(1).astype(np.float64)
        p, r = h / k, h / m
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"precision@{k}"] = p
            out[f"recall@{k}"] = r
            out[f"f1@{k}"] = np.where(h > 0, 2 * p * r / (p + r), 0.0)
        cut = np.minimum(m, k).astype(np.int64)
        out[f"ndcg@{k}"] = np.where(hit, gains, 0.0).sum(1) / ideal[cut]
        out[f"ap@{k}"] = np.where(hit, prec_at_hit, 0.0).sum(1) / cut
        out[f"hitrate@{k}"] = (h > 0).astype(np.float64)
    return out


def user_metrics(
    scores: np.ndarray, truth: np.ndarray, ks=DEFAULT_KS, rng: np.random.Generator | None = None
) -> dict[str, float]:
    """All metrics for one user (:func:`block_metrics` on a block of one).

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
    out = block_metrics(np.asarray(scores, dtype=np.float64)[None, :], [np.asarray(truth)], ks=ks,
                        rngs=rng or np.random.default_rng(0))
    return {k: float(v[0]) for k, v in out.items() if k != "n_candidates"}


def _top_k_distinct(scores, mask, k, out, exact):  # pragma: no cover (compiled)
    """Per row, the ``k`` best candidates (``mask`` True, finite score) best first into ``out``,
    rows in parallel; ``exact[r]`` is False where the order is not unique (a tie among the top k or
    at the cut, fewer than k candidates, a NaN or +inf score), and those rows are left to ``torch.topk``.

    One pass keeps the best k in a sorted buffer (an insertion when a score beats the k-th),
    a second counts the candidates at or above the k-th score: exactly k, all distinct, means the
    order is the sort of k distinct values, which any top-k implementation returns."""
    n_b, n = scores.shape
    for r in prange(n_b):
        row, mrow = scores[r], mask[r]
        vals = np.empty(k, scores.dtype)
        idx = np.empty(k, np.int64)
        filled, ok = 0, True
        for i in range(n):
            v = row[i]
            if not mrow[i] or v == -np.inf:
                continue
            if not (v < np.inf):  # NaN (torch ranks it first) or +inf
                ok = False
                break
            if filled == k and not (v > vals[k - 1]):
                continue
            j = filled if filled < k else k - 1  # shift the smaller ones down, insert
            while j > 0 and vals[j - 1] < v:
                vals[j] = vals[j - 1]
                idx[j] = idx[j - 1]
                j -= 1
            vals[j] = v
            idx[j] = i
            if filled < k:
                filled += 1
        if ok and filled == k:
            for j in range(k - 1):
                if not (vals[j] > vals[j + 1]):
                    ok = False
            at_or_above = 0
            for i in range(n):
                at_or_above += mrow[i] & (row[i] >= vals[k - 1])
            ok = ok and at_or_above == k
        else:
            ok = False
        exact[r] = ok
        if ok:
            for j in range(k):
                out[r, j] = idx[j]


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best candidates per row, best first, ``(B, k) int64``; ``-1`` pads rows
    with fewer than k candidates.

    The result is ``torch.topk`` of the scores with non-candidates (``mask`` False) at ``-inf``:
    a compiled pass (numba, rows in parallel, no masked copy) gives every row whose best k are
    distinct and clear of the cut, where the order is unique; ``torch.topk`` computes the others
    (ties, broken in its implementation's order; fewer than k candidates; NaN). Measured on 2 cores
    for 256 x 17,033 blocks and k = 50 (random scores, 5% masked): 8.8 ms per block against 16.2 ms
    for ``torch.topk`` of a masked copy; on the H&M study's VisRank scores 5% of the rows (182 of
    3,516) went to ``torch.topk``, and notebook 04's tables are unchanged to the bit.

    Args:
        scores: ``(B, n_items) float32/float64``.
        k: list length (at most ``n_items``).
        mask: ``(B, n_items) bool`` candidates, or None (every item).
    """
    import torch

    scores = _as_float(scores)
    k = min(k, scores.shape[1])
    mask = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(mask, scores.shape)
    top = np.full((scores.shape[0], k), -1, np.int64)
    exact = np.zeros(scores.shape[0], np.bool_)
    if k > 0:
        _kernel(_top_k_distinct)(np.ascontiguousarray(scores), np.ascontiguousarray(mask), k, top, exact)
    rest = np.flatnonzero(~exact)
    if len(rest):
        masked = np.where(mask[rest], scores[rest], -np.inf)
        vals, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(masked)), k, dim=1, sorted=True)
        sub = idx.numpy().astype(np.int64)
        sub[~np.isfinite(vals.numpy())] = -1
        top[rest] = sub
    return top


def self_information(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Per item, ``-log2 p(i)`` with ``p(i) = (buyers(i) + 1) / (n_users + 1)`` over ``train``
    (add-one so never-bought items stay finite), ``(n_items,) float64``.

    Novelty@k is the mean of this over a user's top k (Zhou et al., PNAS 2010; Castells, Hurley
    & Vargas, "Novelty and diversity in recommender systems", 2015).
    """
    pairs = train[["user_id", "item_idx"]].drop_duplicates()
    buyers = np.bincount(pairs["item_idx"].to_numpy(dtype=np.int64), minlength=n_items)
    return -np.log2((buyers + 1.0) / (pairs["user_id"].nunique() + 1.0))


def evaluate_many(score_fns: dict, split, ks=DEFAULT_KS, seed: int = 0, chunk: int = 256,
                  return_top: bool = False, novelty: bool = True, points: np.ndarray | None = None):
    """Per-test-point metrics for several scoring functions, block of points by block.

    Every function sees the same blocks in the same order (so VisRank aggregates can share
    their similarity rows). Ties are broken with a generator per test point seeded with
    ``(seed, position)``, so any subset of points (a shard, a block) gets the same numbers.
    Besides the accuracy metrics, ``novelty@k`` (mean self-information of the top k, see
    :func:`self_information`) is computed per point unless ``novelty=False``; only novelty and
    ``return_top`` need the top-k lists (:func:`top_k` of the candidates).

    Args:
        score_fns: ``{name: fn(positions) -> (len, n_items) scores}``.
        split: :class:`visrec_utils.catalogue.splits.Split`.
        ks: cut-offs.
        seed: tie-breaking seed.
        chunk: points per block (memory: a few ``(chunk, n_items)`` arrays).
        return_top: also return each function's top-``max(ks)`` lists (for coverage).
        novelty: add ``novelty@k`` columns.
        points: positions of the test points to evaluate, ascending (default: all); shards of
            :func:`visrec_utils.scaleout.ray_evaluate` use it.

    Returns:
        ``{name: DataFrame}`` with one row per test point (``user_id, n_truth, n_candidates``
        and a column per metric), and with ``return_top`` also ``{name: (n_points, max(ks)) int64}``.
    """
    cols: dict[str, list] = {name: [] for name in score_fns}
    tops: dict[str, list] = {name: [] for name in score_fns}
    info = self_information(split.train, split.n_items) if novelty else None
    kmax = max(ks, default=1)  # no cut-off: AUC, MRR and MAP only
    points = np.arange(split.n_users) if points is None else np.asarray(points, dtype=np.int64)
    for start in range(0, len(points), chunk):
        pos = points[start:start + chunk]
        rngs = lambda r, pos=pos: np.random.default_rng([seed, int(pos[r])])  # noqa: E731
        masks = split.candidate_masks(pos)
        truth = [split.truth[u] for u in pos]
        for name, fn in score_fns.items():
            scores = _as_float(fn(pos))
            res = block_metrics(scores, truth, ks=ks, rngs=rngs, mask=masks)
            if novelty or return_top:
                top = top_k(scores, kmax, mask=masks)
            for k in ks if novelty else ():
                sel = top[:, :k]
                ok = sel >= 0
                res[f"novelty@{k}"] = np.where(ok, info[np.maximum(sel, 0)], 0).sum(1) / np.maximum(ok.sum(1), 1)
            res["user_id"] = split.users[pos]
            res["n_truth"] = np.array([len(t) for t in truth])
            cols[name].append(pd.DataFrame(res))
            if return_top:
                tops[name].append(top)
    front = ["user_id", "n_truth", "n_candidates"]
    out = {}
    for name, parts in cols.items():
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=front)
        out[name] = df[front + [c for c in df.columns if c not in front]]
    if return_top:
        return out, {n: (np.concatenate(t) if t else np.empty((0, kmax), np.int64)) for n, t in tops.items()}
    return out


def coverage(top: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@k: the share of the catalogue in at least one test point's top k
    (Herlocker et al., ACM TOIS 2004; Ge et al., RecSys 2010), in [0, 1].

    It is a property of the whole set of lists, so no bootstrap interval is given: a resample of
    users holds about 63% distinct users and always undercounts it (the percentile interval
    would not even contain the estimate).

    Args:
        top: ``(n_points, >= k) int64`` top lists from :func:`evaluate_many` (``-1`` = none).
        n_items: catalogue size.
    """
    sel = top[:, :k]
    return float(np.unique(sel[sel >= 0]).size / n_items)


def evaluate_scores(score_fn, split, ks=DEFAULT_KS, seed: int = 0, chunk: int = 256) -> pd.DataFrame:
    """Per-user metrics for a scoring function over a split.

    Args:
        score_fn: ``score_fn(user_positions: np.ndarray) -> (len, n_items) float32`` scores for
            those test users (row order of ``split.users``).
        split: :class:`visrec_utils.catalogue.splits.Split`.
        ks: cut-offs.
        seed: tie-breaking seed.
        chunk: users scored per call.

    Returns:
        DataFrame, one row per test user: ``user_id``, ``n_truth``, ``n_candidates`` and one
        column per metric (``auc``, ``mrr``, ``precision@10`` ...).
    """
    return evaluate_many({"scores": score_fn}, split, ks=ks, seed=seed, chunk=chunk)["scores"]


@functools.lru_cache(maxsize=8)
def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """The ``(n_resamples, n) int64`` user draws ``scipy.stats.bootstrap`` makes for ``n`` values
    with ``random_state=np.random.default_rng(seed)`` (its ``rng.integers(0, n, (n_resamples, n))``),
    made once per ``(n, n_resamples, seed)``: every metric and configuration with the same number
    of users shares them (read-only)."""
    i = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    i.flags.writeable = False
    return i


def _pairwise_leaf(v, idx, s, n):  # pragma: no cover (compiled)
    """``sum(v[idx[s:s + n]])`` for ``n <= 128`` in numpy's order: sequential below 8 values, else
    8 accumulators combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += v[idx[s + i]]
        return res
    r0, r1, r2, r3 = v[idx[s]], v[idx[s + 1]], v[idx[s + 2]], v[idx[s + 3]]
    r4, r5, r6, r7 = v[idx[s + 4]], v[idx[s + 5]], v[idx[s + 6]], v[idx[s + 7]]
    i = 8
    while i < n - (n % 8):
        r0 += v[idx[s + i]]
        r1 += v[idx[s + i + 1]]
        r2 += v[idx[s + i + 2]]
        r3 += v[idx[s + i + 3]]
        r4 += v[idx[s + i + 4]]
        r5 += v[idx[s + i + 5]]
        r6 += v[idx[s + i + 6]]
        r7 += v[idx[s + i + 7]]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += v[idx[s + i]]
        i += 1
    return res


def _pairwise_program(n: int, start: int = 0, ops=None) -> list:
    """numpy's pairwise summation of ``n`` values as a post-order program: ``(start, size)`` sums a
    leaf of at most 128 values (:func:`_pairwise_leaf`), ``(-1, -1)`` adds the last two partial
    sums; above 128 values the halves are ``n2 = n // 2 - (n // 2) % 8`` and ``n - n2``."""
    ops = [] if ops is None else ops
    if n <= 128:
        ops.append((start, n))
        return ops
    half = n // 2 - (n // 2) % 8
    _pairwise_program(half, start, ops)
    _pairwise_program(n - half, start + half, ops)
    ops.append((-1, -1))
    return ops


def _resample_means_py(v, idx, ops, work, out):  # pragma: no cover (compiled)
    """``out[r] = np.mean(v[idx[r]])`` for every resample ``r`` (rows in parallel, no gathered copy):
    the pairwise sum of ``ops`` (:func:`_pairwise_program`) on the stack ``work[r]``, plus the
    reduction's initial 0, over n."""
    n = idx.shape[1]
    for r in prange(idx.shape[0]):
        row, stack = idx[r], work[r]
        sp = 0
        for o in range(ops.shape[0]):
            if ops[o, 0] >= 0:
                stack[sp] = _pairwise_leaf(v, row, ops[o, 0], ops[o, 1])
                sp += 1
            else:
                stack[sp - 2] = stack[sp - 2] + stack[sp - 1]
                sp -= 1
        out[r] = (0.0 + stack[0]) / n


#: Largest number of users whose resample means the compiled kernel computes; numpy's reduction
#: sums longer rows in buffered chunks, so they keep ``np.mean``.
_PAIRWISE_MAX = 8192


def resample_means(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.mean(v[idx], axis=-1)`` for ``v (n,) float64`` and draws ``idx (n_resamples, n) int64``,
    the same numbers (numpy's pairwise summation, replicated in a compiled kernel, rows in
    parallel) without the ``(n_resamples, n)`` gathered copy."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    if idx.shape[1] == 0 or idx.shape[1] > _PAIRWISE_MAX:
        return np.mean(v[idx], axis=-1)
    global _pairwise_leaf
    if "_pairwise_leaf" not in _KERNELS:  # the helper compiled first (the kernel calls it)
        import numba

        _KERNELS["_pairwise_leaf"] = _pairwise_leaf = numba.njit(cache=True, nogil=True)(_pairwise_leaf)
    ops = np.array(_pairwise_program(idx.shape[1]), dtype=np.int64)
    out = np.empty(idx.shape[0], dtype=np.float64)
    work = np.empty((idx.shape[0], 16), dtype=np.float64)  # stack depth <= log2(8192 / 128) + 2
    _kernel(_resample_means_py)(v, np.ascontiguousarray(idx, dtype=np.int64), ops, work, out)
    return out


def bootstrap_cis(columns, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> np.ndarray:
    """:func:`bootstrap_ci` of several columns of per-user values at once: the same numbers, with
    one ``scipy.stats.quantile`` call over every column's resample means.

    Args:
        columns: a sequence of 1-d arrays (each may have its own length and NaNs).

    Returns:
        ``(len(columns), 3) float64``: mean, ci_low, ci_high per column.

    Raises:
        ValueError: ``n_resamples`` < 1 (when an interval is computed).
    """
    from scipy import stats

    out = np.full((len(columns), 3), np.nan)
    todo, thetas = [], []
    for j, values in enumerate(columns):
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[j, 0] = v.mean() if v.size else np.nan
        if v.size < 2:
            continue
        if np.all(v == v[0]):
            out[j, 1:] = out[j, 0]
            continue
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be a positive integer, not {n_resamples}")
        todo.append(j)
        thetas.append(resample_means(v, _resample_indices(v.size, int(n_resamples), seed)))
    if todo:
        theta = np.stack(thetas)
        alpha = np.asarray((1 - confidence) / 2, dtype=theta.dtype)
        out[todo, 1:] = stats.quantile(theta, np.stack((alpha, 1 - alpha), axis=-1), axis=-1)
    return out


def bootstrap_ci(values: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0):
    """Mean of per-user values with a percentile bootstrap interval (resampling users).

    The same numbers as ``scipy.stats.bootstrap((v,), np.mean, method="percentile",
    vectorized=True, random_state=np.random.default_rng(seed))``: the same draws (made once per
    number of users, :func:`_resample_indices`), the same resample means (``np.mean`` over each
    row of ``v[draws]``, :func:`resample_means`) and the same quantiles (``scipy.stats.quantile``).
    The same seed and number of users give the same resamples, so intervals of different
    configurations share their user draws. :func:`bootstrap_cis` does several columns at once.

    Returns:
        (mean, ci_low, ci_high); the interval is (mean, mean) when all values are equal and NaN
        when fewer than 2 users.
    """
    mean, lo, hi = bootstrap_cis([values], n_resamples=n_resamples, confidence=confidence, seed=seed)[0]
    return float(mean), float(lo), float(hi)


def summarize(per_user: pd.DataFrame, labels: dict, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Tidy summary of per-user metrics: one row per (metric, k).

    Args:
        per_user: output of :func:`evaluate_scores`.
        labels: columns to add to every row, e.g. ``{"model": .., "strategy": .., "recommender": ..}``.

    Returns:
        DataFrame with columns ``*labels, metric, k, value, ci_low, ci_high, n_users``
        (``k`` is 0 for metrics without a cut-off: auc, mrr).
    """
    cols = [c for c in per_user.columns if c not in ("user_id", "n_truth", "n_candidates")]
    cis = bootstrap_cis([per_user[c].to_numpy() for c in cols], n_resamples=n_resamples, seed=seed)
    rows = []
    for col, (mean, lo, hi) in zip(cols, cis):
        metric, _, k = col.partition("@")
        rows.append({**labels, "metric": metric, "k": int(k) if k else 0, "value": float(mean),
                     "ci_low": float(lo), "ci_high": float(hi), "n_users": int(per_user[col].notna().sum())})
    return pd.DataFrame(rows)
