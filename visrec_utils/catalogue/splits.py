"""Evaluation protocols: who is tested, on which held-out items, against which candidates.

A :class:`Split` is a list of *test points*: a user, their profile (items bought before the
test point), the truth (items bought at the test point that are not in the profile) and the
test time. Every protocol returns one; recommenders and metrics only see a Split.

The protocols that build a Split from a catalogue, and their registry (``make_split``), live in
:mod:`visrec_utils.catalogue.protocols`; this module holds the :class:`Split` itself, the
availability rules (:func:`apply_availability`) and the transforms of a split
(:func:`subset_split`, :func:`restrict_truth`, :func:`sample_negatives`, :func:`split_digest`).

Availability (which items are candidates at a test point; the report states the choice):

* ``catalogue``: every item;
* ``items_table``: items whose ``available_from`` date (launch or upload date) is at or before the test time;
* ``first_seen``: items sold to anyone on or before the test time, *not counting the test
  user's own test purchases*: a truth item that nobody else had bought by then leaves the
  truth (it could not have been recommended), and a test point left without truth is dropped;
* ``first_seen_leaky``: the same with the test purchases counted, so every truth item is a
  candidate only because it was bought: shown in the sensitivity table to measure that leak;
* ``auto``: ``items_table`` when the items table has dates, else ``catalogue``.

For one-of-a-kind catalogues (artworks) ``one_of_a_kind=True`` also removes items already sold
before the test time. Cold items (never bought before the test point) stay candidates under
every rule except the two first-seen ones; :func:`restrict_truth` breaks results down into cold
and warm truth items, and :func:`sample_negatives` builds sampled candidate sets on request.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .data import Catalogue

AVAILABILITY = ("auto", "catalogue", "items_table", "first_seen", "first_seen_leaky")
AVAILABILITY_LABELS = {
    "catalogue": "whole catalogue",
    "items_table": "items table dates",
    "first_seen": "first seen in sales (test user's own test purchases not counted)",
    "first_seen_leaky": "first seen in sales, test purchases counted (LEAKY)",
}


class SampledMetricsWarning(UserWarning):
    """Metrics over sampled negatives are not the full-ranking metrics and can reorder models."""


@dataclass
class Split:
    """Test points of one protocol, in item indices of a catalogue.

    Attributes:
        users: user id of each test point, ``(n_points,)`` object (a user appears once per test
            point: several times under ``replay_all``).
        profiles: per test point, sorted unique item indices bought before it (int64 arrays).
        truth: per test point, sorted unique item indices held out (never empty, never in the
            profile; int64 arrays).
        test_day: per test point, the time before which data may be used,
            ``(n_points,) datetime64[ns]`` (popularity and item-kNN use interactions strictly
            before it).
        train: interactions holding no test purchase of any test point (with ``item_idx``);
            what fitted models (fine-tuning) learn from.
        n_items: size of the catalogue the indices refer to.
        interactions: the interactions time-aware baselines may use, always filtered to
            ``timestamp < test_day`` (all interactions, except for ``random_holdout``:
            ``train``), with ``item_idx``.
        dropped_repeat_only: test points dropped because their purchases only repeated profile
            items.
        available_from: per item, when it became a candidate, ``(n_items,) datetime64[ns]``
            (NaT: always), or None (whole catalogue).
        availability: the availability rule in words.
        protocol: protocol name (:data:`visrec_utils.catalogue.protocols.PROTOCOLS`).
        leaky: True when the protocol or the availability lets test information leak.
        avail_time: per test point, the time availability is judged at (default ``test_day``;
            the end of the test period for ``temporal``).
        sold_from: per item, first sale time for one-of-a-kind catalogues (items sold strictly
            before ``avail_time`` are no longer candidates), or None.
        excluded: per test point, items removed from the candidates (the other truth items in a
            cold/warm breakdown), or None.
        candidates: per test point, an explicit candidate list (sampled negatives), or None.
        dropped_unavailable: test points dropped because no truth item was available.
        notes: lines for the report.
    """

    users: np.ndarray
    profiles: list[np.ndarray]
    truth: list[np.ndarray]
    test_day: np.ndarray
    train: pd.DataFrame
    n_items: int
    interactions: pd.DataFrame
    dropped_repeat_only: int = 0
    available_from: np.ndarray | None = None
    availability: str = "whole catalogue"
    protocol: str = "leave_last_basket_out"
    leaky: bool = False
    avail_time: np.ndarray | None = None
    sold_from: np.ndarray | None = None
    excluded: list[np.ndarray] | None = None
    candidates: list[np.ndarray] | None = None
    dropped_unavailable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        """Number of test points (rows of every score block)."""
        return len(self.users)

    def _avail_time(self, pos) -> np.ndarray:
        return (self.avail_time if self.avail_time is not None else self.test_day)[pos]

    def candidate_masks(self, pos: np.ndarray) -> np.ndarray:
        """Candidates of the test points ``pos``, ``(len(pos), n_items)`` bool.

        Every item that is available at the test time (see the module docstring), minus the
        profile and the excluded items; the truth items are always candidates.
        """
        pos = np.asarray(pos, dtype=np.int64)
        if self.candidates is not None:
            mask = np.zeros((len(pos), self.n_items), dtype=bool)
            lists = [self.candidates[u] for u in pos]
            mask[np.repeat(np.arange(len(pos)), [len(c) for c in lists]), np.concatenate(lists)] = True
            return mask
        mask = np.ones((len(pos), self.n_items), dtype=bool)
        t = self._avail_time(pos)[:, None]
        if self.available_from is not None:
            mask &= ~(self.available_from[None, :] > t)
        if self.sold_from is not None:
            mask &= ~(self.sold_from[None, :] < t)
        rows = np.repeat(np.arange(len(pos)), [len(self.profiles[u]) for u in pos])
        mask[rows, np.concatenate([self.profiles[u] for u in pos]) if len(pos) else []] = False
        if self.excluded is not None:
            for r, u in enumerate(pos):
                mask[r, self.excluded[u]] = False
        for r, u in enumerate(pos):
            mask[r, self.truth[u]] = True
        return mask

    def candidate_mask(self, u: int) -> np.ndarray:
        """Candidates of test point ``u``, ``(n_items,)`` bool (see :meth:`candidate_masks`)."""
        return self.candidate_masks(np.array([u]))[0]

    def cold_truth(self, u: int) -> np.ndarray:
        """Bool per truth item of test point ``u``: True when nobody bought it before ``test_day``
        in ``interactions`` (a *cold* item), ``(len(truth[u]),)``."""
        first = self._first_bought()
        f = first[self.truth[u]]
        return np.isnat(f) | (f >= self.test_day[u])

    def _first_bought(self) -> np.ndarray:
        if "_first" not in self.__dict__:
            first = np.full(self.n_items, np.datetime64("NaT"), dtype="datetime64[ns]")
            g = self.interactions.groupby("item_idx")["timestamp"].min()
            first[g.index.to_numpy(dtype=np.int64)] = g.to_numpy("datetime64[ns]")
            self.__dict__["_first"] = first
        return self.__dict__["_first"]

    def describe(self) -> str:
        """One line: protocol, test points, users, candidates rule, drops, leak label."""
        n_u = len(set(self.users.tolist()))
        text = (f"{self.protocol}: {self.n_users:,} test points from {n_u:,} users, {self.n_items:,} items; "
                f"candidates: {self.availability}")
        if self.sold_from is not None:
            text += ", one-of-a-kind (sold items leave)"
        if self.candidates is not None:
            text += ", SAMPLED negatives"
        if self.dropped_repeat_only:
            text += f"; {self.dropped_repeat_only} points dropped (only re-purchases)"
        if self.dropped_unavailable:
            text += f"; {self.dropped_unavailable} points dropped (no truth item available)"
        return text + (" [LEAKY: for comparison only]" if self.leaky else "")

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (point, user_id, item_idx, role in {'profile','test'})."""
        rows = []
        for p, (u, prof, tr) in enumerate(zip(self.users, self.profiles, self.truth)):
            rows.append(pd.DataFrame({"point": p, "user_id": u, "item_idx": prof, "role": "profile"}))
            rows.append(pd.DataFrame({"point": p, "user_id": u, "item_idx": tr, "role": "test"}))
        cols = ["point", "user_id", "item_idx", "role"]
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def apply_availability(split: Split, cat: "Catalogue", availability: str, one_of_a_kind: bool) -> Split:
    """Attach the availability rule (module docstring) and, for first-seen, drop unavailable truth.

    What every protocol does last (:mod:`visrec_utils.catalogue.protocols`). Sets
    ``available_from`` / ``availability`` / ``leaky`` / ``sold_from`` of ``split`` (in place) and
    returns it, or, for ``"first_seen"``, a new split without the points left with no truth.

    Args:
        split: a protocol's split, before availability.
        cat: its catalogue (``available_from`` of the items table).
        availability: :data:`AVAILABILITY`.
        one_of_a_kind: items sold before the test time leave the candidates.

    Raises:
        ValueError: unknown ``availability``, or ``"items_table"`` without ``available_from`` dates.
    """
    has_dates = "available_from" in cat.items and cat.items["available_from"].notna().any()
    if availability == "auto":
        availability = "items_table" if has_dates else "catalogue"
    if availability not in AVAILABILITY:
        raise ValueError(f"availability must be one of {list(AVAILABILITY)}, not {availability!r}")
    if availability == "items_table" and not has_dates:
        raise ValueError("availability='items_table' needs an 'available_from' column in the items table; "
                         "use 'first_seen' or 'catalogue'")
    first_sale = split._first_bought()  # per item, its first sale in split.interactions (NaT: never sold)
    if availability == "items_table":
        split.available_from = pd.to_datetime(cat.items["available_from"]).to_numpy("datetime64[ns]")
    elif availability.startswith("first_seen"):
        never = np.datetime64("2262-01-01", "ns")  # never sold: never a candidate
        split.available_from = np.where(np.isnat(first_sale), never, first_sale)
    split.availability = AVAILABILITY_LABELS[availability]
    split.leaky = split.leaky or availability == "first_seen_leaky"
    if one_of_a_kind:
        split.sold_from = first_sale
    if availability == "first_seen":
        split = _drop_unavailable_truth(split)
    return split


def _drop_unavailable_truth(split: Split) -> Split:
    """Keep truth items that someone other than the test user bought by the test time.

    Vectorised: a truth item ``i`` of point ``p`` (user ``u``, time ``t``) stays when the sales of
    ``i`` at or before ``t`` outnumber those to ``u``; both counts are binary searches in sales
    sorted by (item, time) and (user, item, time), times replaced by their rank among every sale
    and test time.
    """
    inter = split.interactions
    n_points = split.n_users
    lens = np.array([len(t) for t in split.truth], dtype=np.int64)
    flat = np.concatenate(split.truth).astype(np.int64) if n_points else np.empty(0, np.int64)
    point = np.repeat(np.arange(n_points), lens)
    t_point = split._avail_time(np.arange(n_points)).astype("datetime64[ns]")
    s_time = inter["timestamp"].to_numpy("datetime64[ns]")
    times, rank = np.unique(np.concatenate([s_time, t_point]), return_inverse=True)
    s_rank, p_rank = rank[:len(s_time)].astype(np.int64), rank[len(s_time):].astype(np.int64)
    n_r = len(times) + 1
    codes, _ = pd.factorize(pd.Series(np.concatenate([inter["user_id"].to_numpy(object), split.users.astype(object)])))
    s_user, p_user = codes[:len(s_time)].astype(np.int64), codes[len(s_time):].astype(np.int64)
    s_item = inter["item_idx"].to_numpy(dtype=np.int64)
    by_item = np.sort(s_item * n_r + s_rank)
    by_user = np.sort((s_user * split.n_items + s_item) * n_r + s_rank)
    q_rank, q_user = p_rank[point], p_user[point]
    n_all = np.searchsorted(by_item, flat * n_r + q_rank, "right") - np.searchsorted(by_item, flat * n_r, "left")
    base = (q_user * split.n_items + flat) * n_r
    n_own = np.searchsorted(by_user, base + q_rank, "right") - np.searchsorted(by_user, base, "left")
    ok = n_all > n_own
    kept = np.split(flat[ok], np.cumsum(np.bincount(point[ok], minlength=n_points))[:-1]) if n_points else []
    keep = np.array([p for p in range(n_points) if len(kept[p])], dtype=np.int64)
    return subset_split(split, keep, [kept[p].astype(np.int64) for p in keep],
                        dropped_unavailable=split.dropped_unavailable + n_points - len(keep))


def subset_split(split: Split, keep: np.ndarray, truth: list[np.ndarray], **changes) -> Split:
    per_point = {}
    for name in ("excluded", "candidates"):
        v = getattr(split, name)
        per_point[name] = None if v is None else [v[i] for i in keep]
    return replace(split, users=split.users[keep], profiles=[split.profiles[i] for i in keep], truth=truth,
                   test_day=split.test_day[keep],
                   avail_time=None if split.avail_time is None else split.avail_time[keep], **per_point, **changes)


def restrict_truth(split: Split, which: str) -> Split:
    """The split with truth limited to cold or warm items (for a cold/warm breakdown).

    A *cold* truth item was never bought (in ``split.interactions``) before the test point;
    *warm* items were. The other truth items are removed from the candidates (they are neither
    hits nor misses), and points left without truth are dropped.

    Raises:
        ValueError: ``which`` not in {"cold", "warm"}.
    """
    if which not in ("cold", "warm"):
        raise ValueError(f"which must be 'cold' or 'warm', not {which!r}")
    keep, truth, excluded = [], [], []
    for p in range(split.n_users):
        cold = split.cold_truth(p)
        sel = cold if which == "cold" else ~cold
        if sel.any():
            keep.append(p), truth.append(split.truth[p][sel])
            other = split.truth[p][~sel]
            prev = split.excluded[p] if split.excluded is not None else np.empty(0, np.int64)
            excluded.append(np.concatenate([prev, other]).astype(np.int64))
    keep = np.array(keep, dtype=np.int64)
    out = subset_split(split, keep, truth, notes=split.notes + [f"{which} truth items only"])
    out.excluded = excluded
    return out


def sample_negatives(split: Split, n_negatives: int = 100, seed: int = 0) -> Split:
    """The split with each point's candidates cut to its truth plus ``n_negatives`` sampled items.

    Sampled metrics are not the full-ranking metrics and can reorder models (Krichene &
    Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020); a
    :class:`SampledMetricsWarning` says so and the split's description is marked SAMPLED.

    Raises:
        ValueError: ``n_negatives`` < 1.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, not {n_negatives}")
    warnings.warn(f"sampled metrics ({n_negatives} negatives per test point) are not full-ranking metrics "
                  "and can reorder models (Krichene & Rendle 2020); report full-ranking results", SampledMetricsWarning,
                  stacklevel=2)
    rng = np.random.default_rng(seed)
    cands = []
    for p in range(split.n_users):
        mask = split.candidate_mask(p)
        mask[split.truth[p]] = False
        pool = np.flatnonzero(mask)
        neg = rng.choice(pool, size=min(n_negatives, pool.size), replace=False)
        cands.append(np.sort(np.concatenate([split.truth[p], neg])).astype(np.int64))
    return replace(split, candidates=cands, notes=split.notes + [f"{n_negatives} sampled negatives per point"])


def split_digest(split: Split) -> str:
    """SHA-256 over every field of ``split`` that decides what is evaluated (test points,
    profiles, truth, times, candidates, interactions), independent of cached attributes; the
    evaluation cache's key (:func:`visrec_utils.evaluation.experiment.run_experiment`)."""
    import dataclasses
    import hashlib

    h = hashlib.sha256()
    for f in dataclasses.fields(split):
        v = getattr(split, f.name)
        h.update(f.name.encode())
        if isinstance(v, pd.DataFrame):
            h.update(",".join(map(str, v.columns)).encode())
            h.update(pd.util.hash_pandas_object(v.astype({c: str for c in v.columns if v[c].dtype == object}),
                                                index=False).to_numpy().tobytes() if len(v) else b"empty")
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            h.update(np.array([len(a) for a in v], np.int64).tobytes())
            h.update(np.concatenate(v).astype(np.int64).tobytes())
        elif isinstance(v, np.ndarray):
            h.update(np.asarray(v).astype(str).tobytes() if v.dtype == object else v.tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def assert_no_test_purchases(train: pd.DataFrame, split: Split) -> None:
    """Refuse training data that holds a test purchase: a (user, truth item) row at or after
    that test point's time.

    Raises:
        ValueError: naming the first leaked purchases and what to pass instead (``split.train``).
    """
    pts = pd.DataFrame({"user_id": np.repeat(split.users, [len(t) for t in split.truth]),
                        "item_idx": np.concatenate(split.truth) if split.n_users else np.zeros(0, np.int64),
                        "test_day": np.repeat(split.test_day, [len(t) for t in split.truth])})
    hit = train.merge(pts, on=["user_id", "item_idx"])
    leaked = hit[hit["timestamp"] >= hit["test_day"]]
    if len(leaked):
        ex = "; ".join(f"{r.user_id} bought item {r.item_idx} on {r.timestamp}" for r in leaked.head(3).itertuples())
        raise ValueError(f"training data holds {len(leaked)} test purchases ({ex}); train on split.train, "
                         "which leaves every test point out")
