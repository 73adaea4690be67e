"""Slices beyond cold and warm: metrics by the truth items' popularity and age at the test point.

Like the cold/warm breakdown (:func:`visrec_utils.evaluation.experiment.cold_warm_breakdown`),
each slice is the split with every test point's truth limited to the items in the slice; the
point's other truth items leave the candidates (neither hits nor misses), and points left
without truth are dropped. A test point whose purchases fall in several slices is scored in
each of them. Every slice is then evaluated by
:func:`~visrec_utils.evaluation.experiment.run_experiment`, so its rows carry the same 95%
bootstrap intervals over test users.

* **Popularity** of a truth item at a test point: its purchases by anyone strictly before the
  test point (``split.interactions`` before ``test_day``), the counts the popularity baseline
  ranks by (:class:`visrec_utils.evaluation.baselines.Popularity`), so nothing after the test
  point is counted. Items never bought before form the slice ``"unseen"`` (the cold items of
  :func:`visrec_utils.catalogue.splits.restrict_truth`); the others are cut into quantile bins
  of the test purchases (:func:`pandas.qcut`, equal numbers of test purchases per bin, ties
  kept together).
* **Age** of a truth item at a test point: whole days from its first appearance to the test
  point, where the first appearance is the earlier of its first sale (in ``split.interactions``)
  and the test point, or a date given per item (e.g. the items table's ``available_from``). An
  item first sold at the test point itself is 0 days old; a sale after the test point is never
  used.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalogue.splits import Split, subset_split
from ..core.skips import PartSkipped
from .experiment import empty_metrics, require_interval_users, run_experiment
from .metrics import DEFAULT_KS
from .recommenders import BASELINES

log = logging.getLogger(__name__)

#: Columns a slice breakdown adds to :func:`~visrec_utils.evaluation.experiment.run_experiment`'s.
SLICE_COLUMNS = ["slice", "slice_kind", "slice_order"]
#: Label of the popularity slice of items never bought before the test point.
UNSEEN = "unseen"
#: Why a breakdown switched off is skipped (the notebook's ``slices=False``).
OFF = "slices is False, which switches the popularity and item-age breakdowns off"
#: What each kind of slice says in words (skip reasons, figure panels).
SLICE_KINDS = {"popularity": "item popularity at the test point", "item_age": "item age at the test point"}


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer (e.g. 10 for deciles), not {n_bins!r}")
    return int(n_bins)


def _flat_truth(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """``(point, item)`` of every truth item, ``(n_pairs,) int64`` each, in point order."""
    lens = np.array([len(t) for t in split.truth], dtype=np.int64)
    items = np.concatenate(split.truth).astype(np.int64) if split.n_users else np.empty(0, np.int64)
    return np.repeat(np.arange(split.n_users, dtype=np.int64), lens), items


def _per_point(split: Split, values: np.ndarray) -> list[np.ndarray]:
    """Flat per-truth-item ``values`` cut back into one array per test point."""
    return np.split(values, np.cumsum([len(t) for t in split.truth])[:-1]) if split.n_users else []


def truth_popularity(split: Split) -> list[np.ndarray]:
    """Purchases of each truth item strictly before its test point (all users, ``split.interactions``).

    Returns:
        Per test point, ``(len(truth[p]),) int64`` counts aligned with ``split.truth[p]``; 0 marks
        an item nobody had bought yet (a cold item).
    """
    point, items = _flat_truth(split)
    inter = split.interactions
    sale_t = inter["timestamp"].to_numpy("datetime64[ns]")
    times, rank = np.unique(np.concatenate([sale_t, split.test_day.astype("datetime64[ns]")]), return_inverse=True)
    n_r = len(times) + 1
    keys = np.sort(inter["item_idx"].to_numpy(dtype=np.int64) * n_r + rank[:len(sale_t)])
    q_rank = rank[len(sale_t):].astype(np.int64)[point]
    counts = np.searchsorted(keys, items * n_r + q_rank, "left") - np.searchsorted(keys, items * n_r, "left")
    return _per_point(split, counts.astype(np.int64))


def truth_age_days(split: Split, first_seen: np.ndarray | None = None) -> list[np.ndarray]:
    """Whole days from each truth item's first appearance to its test point (``split.test_day``).

    Args:
        split: the evaluation's split.
        first_seen: optional per-item date of first appearance, ``(n_items,) datetime64`` (NaT:
            unknown), e.g. the items table's ``available_from``; where missing, the item's first
            sale in ``split.interactions``. Either is capped at the test point, so an item first
            seen at or after it is 0 days old.

    Returns:
        Per test point, ``(len(truth[p]),) int64`` ages in days aligned with ``split.truth[p]``.

    Raises:
        ValueError: ``first_seen`` of the wrong length.
    """
    first = pd.Series(pd.NaT, index=pd.RangeIndex(split.n_items), dtype="datetime64[ns]")
    sold = split.interactions.groupby("item_idx")["timestamp"].min()
    first.loc[sold.index.to_numpy(dtype=np.int64)] = pd.to_datetime(sold).to_numpy("datetime64[ns]")
    if first_seen is not None:
        given = pd.to_datetime(pd.Series(np.asarray(first_seen)))
        if len(given) != split.n_items:
            raise ValueError(f"first_seen has {len(given)} dates and the split has {split.n_items} items; "
                             "pass one date (or NaT) per item, in item-index order")
        first = given.set_axis(first.index).fillna(first)
    point, items = _flat_truth(split)
    t = split.test_day.astype("datetime64[ns]")[point]
    seen = first.to_numpy("datetime64[ns]")[items]
    seen = np.where(np.isnat(seen) | (seen > t), t, seen)
    return _per_point(split, ((t - seen) // np.timedelta64(1, "D")).astype(np.int64))


def restrict_to(split: Split, select: list[np.ndarray], note: str) -> Split:
    """``split`` with each point's truth limited to ``select`` (the cold/warm rule of
    :func:`visrec_utils.catalogue.splits.restrict_truth` for any selection): the other truth items
    leave the candidates, and points left without truth are dropped.

    Args:
        select: per test point, ``(len(truth[p]),) bool``.
        note: line added to the split's notes.
    """
    keep = np.array([p for p, s in enumerate(select) if s.any()], dtype=np.int64)
    prev = split.excluded or [np.empty(0, np.int64)] * split.n_users
    out = subset_split(split, keep, [split.truth[p][select[p]] for p in keep], notes=split.notes + [note])
    out.excluded = [np.concatenate([prev[p], split.truth[p][~select[p]]]).astype(np.int64) for p in keep]
    if out.candidates is not None:  # sampled candidates ignore ``excluded``: take the other truth items out
        out.candidates = [np.setdiff1d(c, e) for c, e in zip(out.candidates, out.excluded)]
    return out


def _range(lo: int, hi: int, unit: str) -> str:
    """``"1 purchase"``, ``"3-5 purchases"``, ``"0 days"``."""
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return f"{span} {unit}" if lo == hi == 1 else f"{span} {unit}s"


def _binned(split: Split, values: list[np.ndarray], n_bins: int, unit: str, skip_zero: bool) -> dict[str, Split]:
    """Quantile bins of the flat ``values`` (ties together, :func:`pandas.qcut` with
    ``duplicates="drop"``), labelled by the range of values each bin holds."""
    flat = np.concatenate(values) if values else np.empty(0, np.int64)
    ranked = flat[flat > 0] if skip_zero else flat
    if not len(ranked):
        return {}
    codes = np.full(len(flat), -1, dtype=np.int64)
    cut = (np.zeros(len(ranked), np.int64) if ranked.min() == ranked.max()  # qcut: no bin for a single value
           else pd.qcut(ranked, n_bins, labels=False, duplicates="drop"))
    codes[flat > 0 if skip_zero else slice(None)] = np.asarray(cut, dtype=np.int64)
    prefix = "D" if n_bins == 10 else "Q"
    out = {}
    for n, b in enumerate(np.unique(codes[codes >= 0]), start=1):  # numbered 1.. even when ties merged bins
        inside = ranked[np.asarray(cut) == b]
        label = f"{prefix}{n} ({_range(int(inside.min()), int(inside.max()), unit)})"
        out[label] = restrict_to(split, _per_point(split, codes == b), f"truth items of {unit}s {label}")
    return out


def popularity_slices(split: Split, n_bins: int = 10) -> dict[str, Split]:
    """``split`` restricted to each popularity slice of its truth items (module docstring).

    Args:
        split: the evaluation's split.
        n_bins: quantile bins of the items bought before (10: deciles ``D1`` .. ``D10``); fewer
            come back, numbered from 1, when ties leave bins empty.

    Returns:
        ``{label: Split}`` in order of popularity: ``"unseen"`` first (when some truth item was
        never bought before its test point), then e.g. ``"D1 (1-2 purchases)"``; the numbers
        are the smallest and largest purchase counts in the slice.

    Raises:
        ValueError: ``n_bins`` is not a positive integer.
    """
    n_bins = _check_bins(n_bins)
    pop = truth_popularity(split)
    out = {}
    if any((p == 0).any() for p in pop):
        out[UNSEEN] = restrict_to(split, [p == 0 for p in pop], "truth items never bought before the test point")
    return {**out, **_binned(split, pop, n_bins, "purchase", skip_zero=True)}


def age_slices(split: Split, n_bins: int = 5, first_seen: np.ndarray | None = None) -> dict[str, Split]:
    """``split`` restricted to each age slice of its truth items (:func:`truth_age_days`).

    Args:
        split: the evaluation's split.
        n_bins: quantile bins of the ages (5: ``Q1`` .. ``Q5``); fewer when ties leave bins empty.
        first_seen: optional per-item first-appearance dates (:func:`truth_age_days`).

    Returns:
        ``{label: Split}`` from the youngest items, e.g. ``"Q1 (0-12 days)"``.

    Raises:
        ValueError: ``n_bins`` is not a positive integer, or ``first_seen`` of the wrong length.
    """
    n_bins = _check_bins(n_bins)
    return _binned(split, truth_age_days(split, first_seen), n_bins, "day", skip_zero=False)


def slice_breakdown(slices: dict[str, Split], embedding_sets: dict, kind: str, recommenders=("visrank_max",),
                    baselines=BASELINES, ks=DEFAULT_KS, seed: int = 0, n_resamples: int = 1000,
                    progress: bool = False, backend: str = "local", ray_address: str | None = None,
                    enabled: bool = True, on_skip=None, cache_dir: str | Path | bool | None = None) -> pd.DataFrame:
    """Metrics in each slice (:func:`popularity_slices`, :func:`age_slices`), one
    :func:`~visrec_utils.evaluation.experiment.run_experiment` per slice.

    Args:
        slices: ``{label: Split}`` in display order.
        embedding_sets: ``{(model, strategy): (n_items, dim) float32}``.
        kind: ``"popularity"`` or ``"item_age"`` (:data:`SLICE_KINDS`), written in ``slice_kind``.
        recommenders, baselines, ks, seed, n_resamples, progress, backend, ray_address, cache_dir:
            as in :func:`~visrec_utils.evaluation.experiment.run_experiment`.
        enabled: False (the notebook's ``slices``) skips the breakdown.
        on_skip: called ``on_skip(part, reason)`` for a slice with fewer than 2 test users (no
            bootstrap interval: :func:`~visrec_utils.evaluation.experiment.require_interval_users`)
            or nothing rankable, e.g. :meth:`visrec_utils.core.skips.SkipLog.skip`.

    Returns:
        Tidy metrics like ``run_experiment`` plus :data:`SLICE_COLUMNS` (``slice_order``: 0 for
        ``"unseen"``, then 1, 2, ... in the order of ``slices``).

    Raises:
        PartSkipped: ``enabled`` is False, or no slice could be evaluated.
        ValueError: an unknown ``kind``.
    """
    if kind not in SLICE_KINDS:
        raise ValueError(f"kind must be one of {list(SLICE_KINDS)}, not {kind!r}")
    if not enabled:
        raise PartSkipped(OFF)
    skip = on_skip or (lambda part, reason: None)
    parts = []
    for order, (label, sub) in enumerate(slices.items(), start=0 if UNSEEN in slices else 1):
        try:
            require_interval_users(sub)
            m, _ = run_experiment(sub, embedding_sets, recommenders, baselines, ks=ks, seed=seed,
                                  n_resamples=n_resamples, progress=progress, backend=backend,
                                  ray_address=ray_address, cache_dir=cache_dir)
        except PartSkipped as e:
            skip(f"{SLICE_KINDS[kind]}: {label}", e)
            continue
        parts.append(m.assign(slice=label, slice_kind=kind, slice_order=order))
    if not parts:
        raise PartSkipped(f"no slice of {SLICE_KINDS[kind]} has 2 test users and a candidate to rank")
    return pd.concat(parts, ignore_index=True)


def empty_slices() -> pd.DataFrame:
    """A slice table with no row (what a skipped breakdown writes)."""
    return empty_metrics(*SLICE_COLUMNS)
