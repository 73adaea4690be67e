"""Profile similarity rows (:func:`similarity_rows`, numpy's BLAS float32 product), their compiled
(numba) aggregation (VisRank's max, mean and top-k mean) and the hybrid's row standardisation
(:func:`zscore_rows`).

One pass over each user's profile rows gives every aggregate that is wanted (each row of the
``(n_rows, n_items) float32`` similarity matrix is read once, not once per aggregate), users in
parallel, without gathering the rows into a copy. The arithmetic is fixed so the numbers do not
depend on the pass:

* max: ``acc = row_0``, then ``acc[i] = max(acc[i], row_p[i])`` in profile order;
* mean: ``acc = row_0``, then ``acc[i] += row_p[i]`` in profile order, then ``acc /= P``
  (float32 running sum, as numpy's ``sims.mean(0)`` over the rows);
* top-k mean: the ``kk = min(k, P)`` largest values of each column, summed from the smallest to
  the largest in float32 and divided by ``kk``: ``np.sort(sims, axis=0)[-kk:].mean(0)``, which is
  also what ``np.partition(sims, P - kk, axis=0)[-kk:].mean(0)`` gives wherever numpy's
  selection leaves the top ``kk`` in ascending order (its SIMD quickselect does; checked in
  ``tests/test_aggregation.py``).

The kernels are compiled at their first call, so numba is not imported with this module.
"""
from __future__ import annotations

import numpy as np

from ..core.linalg import l2_normalize

_KERNELS: dict = {}
prange = range  # numba.prange once the kernel is compiled (see _kernel)


def _aggregates_py(sims, rows, ptr, want_max, want_mean, k, out_max, out_mean, out_top):  # pragma: no cover
    """Kernel of :func:`profile_aggregates` (compiled); empty profiles leave their output rows as
    they are (zeros)."""
    n_items = sims.shape[1]
    for u in prange(len(ptr) - 1):
        a, b = ptr[u], ptr[u + 1]
        if b <= a:
            continue
        top3 = k > 0 and min(k, b - a) == 3  # the usual top-3: three levels, one pass per row
        t1 = np.full(n_items if top3 else 0, -np.inf, dtype=np.float32)
        t2 = np.full(n_items if top3 else 0, -np.inf, dtype=np.float32)
        t3 = np.full(n_items if top3 else 0, -np.inf, dtype=np.float32)
        amax, amean = out_max[u], out_mean[u]
        if want_max:
            amax[:] = sims[rows[a]]
        if want_mean:
            amean[:] = sims[rows[a]]
        for p in range(a, b):  # each row read once (from memory) for every aggregate
            src = sims[rows[p]]
            if want_max and p > a:
                for i in range(n_items):
                    amax[i] = max(amax[i], src[i])
            if want_mean and p > a:
                for i in range(n_items):
                    amean[i] = amean[i] + src[i]
            if top3:
                for i in range(n_items):
                    c, x1, x2, x3 = src[i], t1[i], t2[i], t3[i]
                    h1 = c if c > x1 else x1
                    c = x1 if c > x1 else c
                    h2 = c if c > x2 else x2
                    c = x2 if c > x2 else c
                    t3[i] = c if c > x3 else x3
                    t1[i], t2[i] = h1, h2
        if want_mean:
            amean /= b - a
        if top3:
            res = out_top[u]
            for i in range(n_items):
                res[i] = (t3[i] + t2[i]) + t1[i]
            res /= np.float32(3)
        elif k > 0:
            kk = min(k, b - a)
            top = np.full((kk, n_items), -np.inf, dtype=np.float32)  # top[0] the largest
            carry = np.empty(n_items, dtype=np.float32)
            for p in range(a, b):
                src = sims[rows[p]]
                for i in range(n_items):
                    carry[i] = src[i]
                for j in range(kk):  # insertion: each level keeps the larger, passes the smaller on
                    tj = top[j]
                    for i in range(n_items):
                        c, t = carry[i], tj[i]
                        tj[i] = c if c > t else t
                        carry[i] = t if c > t else c
            res = out_top[u]
            for i in range(n_items):
                s = top[kk - 1, i]
                for j in range(kk - 2, -1, -1):  # smallest first
                    s = s + top[j, i]
                res[i] = s
            res /= np.float32(kk)


def _max_from_py(sims, rows, ptr, base, base_of, out):  # pragma: no cover (compiled)
    """Kernel of :func:`max_from`."""
    n_items = sims.shape[1]
    for u in prange(len(ptr) - 1):
        a, b = ptr[u], ptr[u + 1]
        acc = out[u]
        if base_of[u] >= 0:
            acc[:] = base[base_of[u]]
        elif b > a:
            acc[:] = sims[rows[a]]
            a += 1
        else:
            continue
        for p in range(a, b):
            src = sims[rows[p]]
            for i in range(n_items):
                acc[i] = max(acc[i], src[i])


def _kernel(fn):
    """``fn`` compiled with numba (parallel, cached on disk) at its first use."""
    if fn.__name__ not in _KERNELS:
        import numba

        globals()["prange"] = numba.prange
        _KERNELS[fn.__name__] = numba.njit(parallel=True, cache=True, nogil=True)(fn)
    return _KERNELS[fn.__name__]


def profile_aggregates(sims: np.ndarray, rows: np.ndarray, ptr: np.ndarray, hows) -> dict:
    """The wanted aggregates of each user's profile similarity rows, in one pass.

    Args:
        sims: ``(n_rows, n_items) float32`` similarity rows.
        rows: ``(n_profile_rows,) int64``, the row of ``sims`` of each profile item, users one
            after the other.
        ptr: ``(n_users + 1,) int64``, user ``u``'s rows are ``rows[ptr[u]:ptr[u + 1]]`` (an empty
            range: a user without profile, whose aggregates are zeros).
        hows: aggregates among ``"max"``, ``"mean"`` and ``("topk", k)`` (k >= 1).

    Returns:
        ``{how: (n_users, n_items) float32}`` for each of ``hows`` (module docstring: the arithmetic).

    Raises:
        ValueError: an unknown aggregate, or two top-k aggregates with different k.
    """
    hows = list(dict.fromkeys(hows))
    tops = [h for h in hows if isinstance(h, tuple) and h[0] == "topk"]
    bad = [h for h in hows if h not in ("max", "mean") and h not in tops]
    if bad or any(int(h[1]) < 1 for h in tops):
        raise ValueError(f"aggregates are 'max', 'mean' or ('topk', k >= 1), not {bad or tops}")
    if len(tops) > 1:
        raise ValueError(f"one top-k aggregate per pass, not {tops}")
    n_users, n_items = len(ptr) - 1, sims.shape[1]

    def block(wanted):
        return np.zeros((n_users, n_items if wanted else 0), dtype=np.float32)  # unwanted: empty rows

    out_max, out_mean, out_top = block("max" in hows), block("mean" in hows), block(bool(tops))
    k = int(tops[0][1]) if tops else 0
    if n_users:
        _kernel(_aggregates_py)(np.ascontiguousarray(sims, dtype=np.float32), np.asarray(rows, dtype=np.int64),
                                np.asarray(ptr, dtype=np.int64), "max" in hows, "mean" in hows, k,
                                out_max, out_mean, out_top)
    out = {"max": out_max, "mean": out_mean}
    if tops:
        out[tops[0]] = out_top
    return {h: out[h] for h in hows}


def max_from(sims: np.ndarray, rows: np.ndarray, ptr: np.ndarray, base: np.ndarray, base_of: np.ndarray) -> np.ndarray:
    """Per user, the max of a known max row and some more similarity rows: the max of a profile
    that extends an earlier one (time replay: a user's next test point), reading only the new rows.

    ``out[u] = max(base[base_of[u]], sims[rows[ptr[u]:ptr[u + 1]]])`` (``base_of[u] = -1``: no base,
    the max of the rows alone; neither: zeros). The max is exact whatever the order of its terms.

    Args:
        sims: ``(n_rows, n_items) float32``; rows, ptr: as in :func:`profile_aggregates`.
        base: ``(n_base, n_items) float32`` known max rows.
        base_of: ``(n_users,) int64`` row of ``base`` of each user, or -1.

    Returns:
        ``(n_users, n_items) float32``.
    """
    out = np.zeros((len(ptr) - 1, sims.shape[1]), dtype=np.float32)
    if len(out):
        _kernel(_max_from_py)(sims, np.asarray(rows, dtype=np.int64), np.asarray(ptr, dtype=np.int64),
                              np.ascontiguousarray(base, dtype=np.float32), np.asarray(base_of, dtype=np.int64), out)
    return out


def replay_plan(keys, profiles) -> dict:
    """What :func:`extend_max` needs of a split whose users have several test points, computed
    once per split (it does not depend on the embeddings).

    Args:
        keys: ``(n_points,)`` user of each point; profiles: each point's sorted profile items.

    Returns:
        ``{"slot": (n_points,) int64`` user number, ``"prev"``: the same user's previous point
        when its profile is contained in this one, else -1, ``"new"``: per point, the positions
        in its profile of the items its ``prev`` lacks (all when ``prev`` is -1), ``"n_slots"``}.
    """
    slot, uniq = pd_factorize(keys)
    prev = np.full(len(profiles), -1, np.int64)
    new, last = [], {}
    for p, (s, prof) in enumerate(zip(slot.tolist(), profiles)):
        q = last.get(s)
        keep = None
        if q is not None:
            inside = np.isin(prof, profiles[q], assume_unique=True)
            if int(inside.sum()) == len(profiles[q]):  # q's profile is contained in p's
                prev[p], keep = q, np.flatnonzero(~inside)
        new.append(np.arange(len(prof)) if keep is None else keep)
        last[s] = p
    return {"slot": slot, "prev": prev, "new": new, "n_slots": len(uniq)}


def pd_factorize(keys):
    """``(codes (n,) int64, uniques)`` of ``keys`` in order of appearance (pandas' factorize)."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(keys, dtype=object), sort=False)
    return codes.astype(np.int64), uniques


def extend_max(state: dict, plan: dict, positions: np.ndarray, profiles, sims: np.ndarray,
               rows: np.ndarray) -> np.ndarray:
    """The max aggregate of a block of test points when users have several points (time replay):
    a point whose ``plan["prev"]`` point's max is kept in ``state`` starts from that max row and
    reads only the rows of its new profile items (:func:`max_from`); the same numbers as the max
    over the whole profile, since a max does not depend on the order of its terms.

    Args:
        state: carried from block to block (filled here): the latest max row of each user
            (``(n_slots, n_items) float32``, one row per user) and its point.
        plan: :func:`replay_plan` of the split.
        positions: the block's points, ascending; profiles: their sorted profile items.
        sims, rows: the similarity rows and the row of each profile item, profiles one after the other.

    Returns:
        ``(len(positions), n_items) float32``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if "max" not in state:
        state["max"] = np.zeros((plan["n_slots"], sims.shape[1]), np.float32)
        state["point"] = np.full(plan["n_slots"], -1, np.int64)
    slots = plan["slot"][positions]
    prev = plan["prev"][positions]
    has_base = (prev >= 0) & (state["point"][slots] == prev)  # the previous point's max is kept
    lens = np.array([len(p) for p in profiles], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    sel = [plan["new"][p] + st if b else np.arange(st, st + n)
           for p, st, n, b in zip(positions.tolist(), starts.tolist(), lens.tolist(), has_base.tolist())]
    ptr = np.concatenate([[0], np.cumsum([len(x) for x in sel])]).astype(np.int64)
    sel = np.concatenate(sel).astype(np.int64) if sel else np.empty(0, np.int64)
    out = max_from(sims, np.asarray(rows)[sel], ptr, state["max"], np.where(has_base, slots, -1))
    done = lens > 0
    last = np.unique(slots[::-1][done[::-1]], return_index=True)[1]  # each user's last point of the block
    idx = np.flatnonzero(done)[::-1][last] if done.any() else np.empty(0, np.int64)
    state["max"][slots[idx]] = out[idx]
    state["point"][slots[idx]] = positions[idx]
    return out


def zscore_rows(x: np.ndarray) -> np.ndarray:
    """``(x - x.mean(1)) / max(x.std(1), 1e-12)`` per row of ``x (B, n) float``, with numpy's own
    steps of ``std`` (the mean, the squared deviations summed, divided by the row length) done
    once instead of twice: the same numbers, in the dtype of ``x``."""
    m = x.mean(1, keepdims=True)
    d = x - m
    var = np.multiply(d, d).sum(1, keepdims=True)
    var = np.true_divide(var, np.intp(x.shape[1]), out=var, casting="unsafe")
    return d / np.maximum(np.sqrt(var, out=var), 1e-12)


def similarities(emb: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``(len(items), n_items) float32`` rows ``emb[items] @ emb.T`` (numpy's BLAS float32 matmul,
    4,096 rows at a time to bound temporaries)."""
    out = np.empty((len(items), len(emb)), dtype=np.float32)
    for a in range(0, len(items), 4096):
        np.matmul(emb[items[a:a + 4096]], emb.T, out=out[a:a + 4096])
    return out


def similarity_rows(embeddings: np.ndarray, splits) -> tuple[np.ndarray, np.ndarray]:
    """The cosine-similarity rows of every profile item of several splits, computed once.

    Each element is the same float32 dot product :class:`~visrec_utils.evaluation.recommenders.SharedSimilarities` computes for one
    split (each row ``e_j . E^T`` by the same BLAS product, whatever other rows share its call),
    so VisRank's scores are the same numbers; the rows are computed once for all the splits that
    evaluate one embedding set instead of once per split.

    Args:
        embeddings: ``(n_items, dim)`` (normalised here).
        splits: splits over the same catalogue.

    Returns:
        (sims ``(n_distinct, n_items) float32``, row_of ``(n_items,) int64``: the row of each item,
        -1 for items in no profile), for :meth:`~visrec_utils.evaluation.recommenders.SharedSimilarities.from_rows`.
    """
    emb = l2_normalize(embeddings)
    profiles = [np.concatenate(s.profiles) for s in splits if s.n_users]
    distinct = np.unique(np.concatenate(profiles)) if profiles else np.empty(0, np.int64)
    row_of = np.full(len(emb), -1, dtype=np.int64)
    row_of[distinct] = np.arange(distinct.size)
    return similarities(emb, distinct), row_of
