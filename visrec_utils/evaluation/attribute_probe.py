"""A probe that needs no purchases: do an embedding set's nearest neighbours share catalogue attributes?

For a categorical column of the items table (H&M: ``product_type_name``, ``colour_group_name``,
``graphical_appearance_name``, ``index_group_name``) and an embedding set ``(n_items, dim)``, the
*attribute precision@k* of item ``i`` is the share of its ``k`` nearest neighbours by cosine
similarity (``i`` itself excluded) whose value equals ``i``'s. The probe reports its mean over
items with a seeded percentile bootstrap 95% interval over items, and the *chance level*
``sum_v share_v ** 2``: the expected precision of neighbours drawn at random from the column's
value distribution, so ``lift = precision / chance`` says how far the embedding beats guessing.

Rules (one per question a reader may ask):

- **Missing values.** A value is missing when ``pandas.isna`` says so or it is a blank string.
  Per column, the items with a missing value are left out entirely: they are neither scored nor
  searched as neighbours (an unlabelled neighbour can neither agree nor disagree), and they are
  counted in ``n_missing``. Shares, the chance level and the neighbour search all use the
  ``n_scored`` labelled items only; columns with the same missing pattern share one search.
- **Exact ties.** Among neighbours whose float32 cosine similarity equals the k-th largest, the
  lower row index (the items table's order; the study sorts by ``item_id``) is taken. The result
  therefore does not depend on ``block_size`` or on ``np.argpartition``'s arbitrary order.
- **Zero vectors.** A row of norm 0 has cosine 0 with every item (so its neighbours are decided
  by the tie rule); a non-finite value is an error.
- **Memory.** Neighbours are found in blocks of query rows: one ``(block_size, n_scored)``
  float32 similarity block at a time, never an ``n x n`` matrix; the top-k comes from
  ``np.argpartition`` (whose int64 result doubles the block), so the peak is about
  ``13 * block_size * n_scored`` bytes plus one float32 copy of the embeddings (H&M, 17,033 x
  1,280, default block: 500 MiB traced, 21 s on 2 cores).

Everything here is numpy/pandas (and scipy for the bootstrap): it reads embeddings as arrays and
never imports the feature extraction.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Columns of :func:`attribute_probe` (``model, strategy`` in front in :func:`probe_sets`).
PROBE_COLUMNS = ["column", "k", "n_items", "n_scored", "n_missing", "n_values", "precision", "ci_low", "ci_high",
                 "chance", "lift"]
#: Names never taken as attributes (identifiers and file paths).
ID_COLUMNS = ("item_id", "image_path")
#: Bytes of one float32 similarity block when ``block_size`` is None (128 MiB).
BLOCK_BYTES = 2 ** 27


def _missing(s: pd.Series) -> np.ndarray:
    """``(n,) bool``: True where a value is NA or a blank string."""
    blank = s.astype("string").str.strip().eq("").fillna(False).to_numpy(bool)
    return s.isna().to_numpy(bool) | blank


def _is_text(s: pd.Series) -> bool:
    return (isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(s.dtype)
            or pd.api.types.is_string_dtype(s.dtype))


def categorical_columns(items: pd.DataFrame, max_values: int = 200, min_present: float = 0.2,
                        k: int = 1) -> list[str]:
    """The columns of ``items`` the probe can use when none are named, in table order.

    A column is taken when its dtype is object, string or category; it is not an id or a path
    (:data:`ID_COLUMNS`, a name ending in ``_id``, or every labelled value distinct); it has
    2 to ``max_values`` distinct values; at least ``min_present`` of the items have a value
    (missing: NA or blank); and more than ``k`` items have one (each needs ``k`` neighbours).

    ``min_present`` defaults to 0.2, not 0.5: the H&M sample has attributes for 24% of its
    articles, and the probe stays valid on a labelled subset (it searches among labelled items
    only; ``n_missing`` reports the rest).

    A column that only recodes another (the same grouping of the items, e.g. H&M's
    ``product_type_no`` and ``product_type_name``) is taken once: the one whose values are
    words rather than digits, then the longest on average (the name, not the code).

    Returns:
        column names (possibly empty).
    """
    chosen = []
    for col in items.columns:
        s = items[col]
        if col in ID_COLUMNS or str(col).lower().endswith("_id") or not _is_text(s):
            continue
        present = s[~_missing(s)]
        n_values = present.nunique()
        if (2 <= n_values <= max_values and n_values < len(present) and len(present) > k
                and len(present) >= min_present * len(items)):
            chosen.append(col)
    groupings = {}  # the items' grouping (codes by first appearance, -1 missing) -> the columns giving it
    for col in chosen:
        codes = pd.Series(np.where(_missing(items[col]), None, items[col].astype(str))).factorize()[0]
        groupings.setdefault(codes.tobytes(), []).append(col)

    def readable(c):  # words before codes, then longer values
        v = items[c][~_missing(items[c])].astype(str)
        return (not v.str.fullmatch(r"[\d\s.,-]+").all(), v.str.len().mean(), -chosen.index(c))

    keep = {max(cols, key=readable) for cols in groupings.values()}
    return [c for c in chosen if c in keep]


def _normalised(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, ``(n, dim) float32`` (one float32 copy); zero rows stay zero."""
    x = np.array(emb, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.where(norms > 0, norms, np.float32(1))
    return x


def _topk_block(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row of ``sims`` (ties: lower index),
    ``(rows, k) int64`` in no particular order: ``np.argpartition``, then, only in rows with more
    candidates than places at the k-th value, the tied candidates taken in index order."""
    n = sims.shape[1]
    top = np.argpartition(sims, n - k, axis=1)[:, n - k:]
    kth = np.take_along_axis(sims, top, axis=1).min(axis=1)
    tied = np.flatnonzero((sims >= kth[:, None]).sum(axis=1) > k)  # more candidates than places
    if tied.size:
        s, t = sims[tied], kth[tied, None]
        above = s > t
        at = s == t
        need = k - above.sum(axis=1, keepdims=True)
        keep = above | (at & (np.cumsum(at, axis=1, dtype=np.int64) <= need))
        top[tied] = np.nonzero(keep)[1].reshape(len(tied), k)
    return top


def nearest_neighbours(emb: np.ndarray, k: int = 10, block_size: int | None = None) -> np.ndarray:
    """The ``k`` nearest neighbours of every row by cosine similarity, the row itself excluded.

    Args:
        emb: ``(n, dim)`` embeddings (any float dtype; compared in float32 after scaling each row
            to unit norm; a zero row has cosine 0 with everything).
        k: neighbours per row, ``1 <= k < n``.
        block_size: query rows per block; None picks ``BLOCK_BYTES // (4 * n)`` (at least 1).
            The result does not depend on it (the tie rule is applied to the computed float32
            similarities, which BLAS gives alike for any block).

    Returns:
        ``(n, k) int64`` row indices, each row's neighbours in increasing index order; exact ties
        at the k-th place go to the lower index.

    Raises:
        ValueError: ``emb`` not 2-d or not finite, ``k`` out of range, ``block_size`` < 1.
    """
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"emb must be a 2-d (n_items, dim) array, not shape {emb.shape}")
    n = emb.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and n_items - 1 = {n - 1}, not {k}")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be a positive number of rows, not {block_size}")
    if not np.isfinite(emb).all():
        raise ValueError("emb holds NaN or infinite values; recompute the embedding set")
    x = _normalised(emb)
    step = int(block_size) if block_size is not None else max(1, BLOCK_BYTES // (4 * n))
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, step):
        stop = min(start + step, n)
        sims = x[start:stop] @ x.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never one's own neighbour
        out[start:stop] = np.sort(_topk_block(sims, k), axis=1)
    return out


def _codes(items: pd.DataFrame, col) -> tuple[np.ndarray, np.ndarray]:
    """``(codes (n,) int64, labelled (n,) bool)``: integer codes of a column's values, -1 where missing."""
    s = items[col]
    labelled = ~_missing(s)
    codes = np.full(len(s), -1, dtype=np.int64)
    codes[labelled] = pd.factorize(s[labelled].astype(str))[0]
    return codes, labelled


def _interval(v: np.ndarray, n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(v)`` resampling items (``scipy.stats.bootstrap``,
    ``rng=np.random.default_rng(seed)``, batches of ``max(1, 2**22 // len(v))`` resamples)."""
    from scipy import stats

    if v.size < 2:
        return np.nan, np.nan
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    res = stats.bootstrap((v,), np.mean, n_resamples=n_resamples, batch=max(1, 2 ** 22 // v.size), vectorized=True,
                          method="percentile", confidence_level=confidence, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _check_columns(items: pd.DataFrame, columns, k: int) -> list:
    if columns is None:
        chosen = categorical_columns(items, k=k)
        if not chosen:
            raise ValueError("columns: the items table has no usable categorical column (text or category dtype, 2 to "
                             "200 distinct values, not an id, at least 20% of items labelled); name columns= explicitly")
        return chosen
    columns = [columns] if isinstance(columns, str) else list(columns)
    for col in columns:
        if col not in items.columns:
            choices = categorical_columns(items, k=k)
            raise ValueError(f"columns: {col!r} is not a column of the items table; its usable categorical columns "
                             f"are {choices}")
    return columns


def attribute_probe(emb: np.ndarray, items: pd.DataFrame, columns: Sequence[str] | str | None = None, k: int = 10,
                    n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                    block_size: int | None = None) -> pd.DataFrame:
    """kNN attribute precision@k of one embedding set, per categorical column.

    Args:
        emb: ``(n_items, dim)`` embeddings, row ``i`` describing ``items`` row ``i``.
        items: the items table, ``n_items`` rows in the embedding's order.
        columns: columns to probe; None chooses them (:func:`categorical_columns`).
        k: neighbours per item.
        n_resamples, confidence, seed: the bootstrap over items (percentile interval).
        block_size: query rows per similarity block (:func:`nearest_neighbours`).

    Returns:
        One row per column, :data:`PROBE_COLUMNS`: ``n_items`` rows of ``emb``, ``n_scored``
        labelled items (scored and searched), ``n_missing`` left out, ``n_values`` distinct
        values, ``precision`` (mean over labelled items) with ``ci_low``/``ci_high``, ``chance``
        (``sum_v (n_v / n_scored) ** 2``) and ``lift`` (precision / chance). See the module
        docstring for the tie and missing-value rules.

    Raises:
        ValueError: ``items`` not of ``n_items`` rows; a named column not in ``items``; no usable
            column when none is named; a column with ``k`` or fewer labelled items.
    """
    emb = np.asarray(emb)
    if emb.ndim != 2 or len(items) != emb.shape[0]:
        raise ValueError(f"items has {len(items)} rows but the embedding set has shape {emb.shape}; pass the items "
                         "table in the embedding's row order (align_items)")
    rows, searched = [], {}
    for col in _check_columns(items, columns, k):
        codes, labelled = _codes(items, col)
        n_scored = int(labelled.sum())
        if n_scored <= k:
            raise ValueError(f"columns: {col!r} has {n_scored} labelled items, too few for k={k} neighbours; "
                             "lower k or choose another column")
        key = labelled.tobytes()
        if key not in searched:  # columns with the same missing pattern share one search
            searched[key] = nearest_neighbours(emb[labelled], k=k, block_size=block_size)
        c = codes[labelled]
        per_item = (c[searched[key]] == c[:, None]).mean(axis=1)
        share = np.bincount(c) / n_scored
        chance = float(np.sum(share ** 2))
        low, high = _interval(per_item, n_resamples, confidence, seed)
        precision = float(per_item.mean())
        rows.append({"column": col, "k": k, "n_items": len(items), "n_scored": n_scored,
                     "n_missing": len(items) - n_scored, "n_values": int(share.size), "precision": precision,
                     "ci_low": low, "ci_high": high, "chance": chance, "lift": precision / chance})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def align_items(items: pd.DataFrame, item_ids: Sequence[str]) -> pd.DataFrame:
    """``items`` reordered to ``item_ids`` (an embedding set's rows), index reset.

    Raises:
        ValueError: an id not in ``items["item_id"]`` (naming the first few).
    """
    table = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
    ids = [str(i) for i in item_ids]
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise ValueError(f"item_ids: {len(absent)} ids of the embedding set are not in the items table "
                         f"(e.g. {absent[:3]}); probe the catalogue the set was extracted from")
    return table.loc[ids].reset_index()


def probe_sets(sets: Mapping, items: pd.DataFrame, columns: Sequence[str] | str | None = None, k: int = 10,
               item_ids: Mapping | None = None, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
               block_size: int | None = None) -> pd.DataFrame:
    """:func:`attribute_probe` of every embedding set, one tidy table.

    Args:
        sets: ``{(model, strategy): (n_items, dim) array}``, as
            ``visrec_utils.features.embedding_sets.load_embedding_sets`` returns (a plain string
            key is taken as the model, strategy "").
        items: the items table; its rows are each set's rows unless ``item_ids`` is given.
        columns: as :func:`attribute_probe`; None chooses them once, from ``items``.
        item_ids: ``{key: ids or None}``, each set's row ids (``load_item_ids``); a set with
            ids gets ``items`` reordered to them (:func:`align_items`).
        k, n_resamples, confidence, seed, block_size: as :func:`attribute_probe` (same seed for
            every set and column).

    Returns:
        ``model, strategy`` then :data:`PROBE_COLUMNS`, one row per (set, column), sets in the
        order of ``sets``.
    """
    columns = _check_columns(items, columns, k)
    parts = []
    for key, emb in sets.items():
        model, strategy = key if isinstance(key, tuple) else (key, "")
        ids = (item_ids or {}).get(key)
        table = align_items(items, ids) if ids is not None else items
        logger.info("attribute probe of %s / %s (%d items, k=%d)", model, strategy, len(table), k)
        part = attribute_probe(emb, table, columns, k=k, n_resamples=n_resamples, confidence=confidence, seed=seed,
                               block_size=block_size)
        parts.append(part.assign(model=model, strategy=strategy))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "strategy", *PROBE_COLUMNS])
    return out[["model", "strategy", *PROBE_COLUMNS]]
