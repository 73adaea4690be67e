"""Evaluation protocols: who is tested, on which held-out items, against which candidates.

A :class:`Split` is a list of *test points*: a user, their profile (items bought before the
test point), the truth (items bought at the test point that are not in the profile) and the
test time. Every protocol returns one; recommenders and metrics only see a Split.

Protocols (:data:`PROTOCOLS`, chosen by name in notebook 04):

* ``leave_last_basket_out`` (default): each user's last basket is the truth, all earlier
  baskets the profile. A *basket* is one user's purchases at one timestamp (one day for H&M).
* ``temporal``: one global cut (a date, or a quantile of the interaction times); the profile is
  everything before the cut, the truth every later purchase; test users are those with a profile
  before and a purchase after the cut (a cut that leaves none raises :class:`PartSkipped`).
* ``replay_last`` / ``replay_all``: time replay as in the UGallery studies of Messina,
  Dominguez, Parra et al. (2018/2019): purchases are walked in time order and every basket of
  a user who already has a profile is a test point (``replay_all``), or only each user's last
  such basket (``replay_last``); candidates are the items available at that moment.
* ``random_holdout``: a random 20% of each user's items is the truth, ignoring time. It lets
  the future leak into profiles and popularity, kept only for comparison: every report labels it *leaky*.

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

from ..core.skips import PartSkipped

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
        protocol: protocol name (:data:`PROTOCOLS`).
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


def _indexed(cat: "Catalogue") -> pd.DataFrame:
    inter = cat.interactions.copy()
    inter["item_idx"] = cat.item_index().loc[inter["item_id"].to_numpy()].to_numpy()
    return inter.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)


def _points_from_baskets(inter: pd.DataFrame, test_rows: np.ndarray, profile_rule) -> dict:
    """Test points from the rows flagged in ``test_rows``, grouped by (user, timestamp).

    ``profile_rule(user_rows, t)`` gives the profile item indices of a point.
    """
    users, profiles, truth, days, dropped = [], [], [], [], 0
    by_user = {u: g for u, g in inter.groupby("user_id", sort=False)}
    for (u, t), g in inter[test_rows].groupby(["user_id", "timestamp"], sort=False):
        prof = np.unique(profile_rule(by_user[u], t)).astype(np.int64)
        tr = np.setdiff1d(np.unique(g["item_idx"].to_numpy()), prof).astype(np.int64)
        if tr.size == 0:
            dropped += 1
            continue
        users.append(u), profiles.append(prof), truth.append(tr), days.append(t)
    order = np.lexsort((np.array(users, dtype=str), np.array(days, dtype="datetime64[ns]"))) if users else []
    return dict(users=np.array(users, dtype=object)[order], profiles=[profiles[i] for i in order],
                truth=[truth[i] for i in order], test_day=np.array(days, dtype="datetime64[ns]")[order],
                dropped_repeat_only=dropped)


def _before(rows: pd.DataFrame, t) -> np.ndarray:
    return rows.loc[rows["timestamp"] < t, "item_idx"].to_numpy()


def leave_last_basket_out(cat: "Catalogue", availability: str = "auto", one_of_a_kind: bool = False) -> Split:
    """Leave-last-basket-out: each user's last basket is the truth, earlier baskets the profile.

    Users with a single basket are not tested; a last basket that only repeats profile items
    is counted in ``dropped_repeat_only``. ``train`` is every purchase outside the test baskets.

    Args:
        cat: catalogue.
        availability: see the module docstring (:data:`AVAILABILITY`).
        one_of_a_kind: items already sold before the test time leave the candidates.

    Raises:
        ValueError: unknown ``availability``, or ``"items_table"`` without ``available_from``.
    """
    inter = _indexed(cat)
    last = inter.groupby("user_id")["timestamp"].transform("max")
    is_test = ((inter["timestamp"] == last) & (inter.groupby("user_id")["timestamp"].transform("nunique") >= 2)).to_numpy()
    pts = _points_from_baskets(inter, is_test, _before)
    split = Split(**pts, train=inter[~is_test].reset_index(drop=True), n_items=cat.n_items, interactions=inter,
                  protocol="leave_last_basket_out")
    return _with_availability(split, cat, availability, one_of_a_kind)


def replay(cat: "Catalogue", variant: str = "all", availability: str = "auto", one_of_a_kind: bool = False) -> Split:
    """Time replay: every basket of a user who already has a profile is a test point.

    Args:
        cat: catalogue.
        variant: ``"all"`` (every such basket; a user may have several test points, averaged
            per user before any interval is computed) or ``"last"`` (each user's last basket
            that has a new item; it differs from leave-last-basket-out in that a last basket
            of re-purchases falls back to the user's previous basket).
        availability, one_of_a_kind: see :func:`leave_last_basket_out`.

    Returns:
        Split sorted by test time; ``train`` holds each user's first basket only (every later
        basket is tested), so fitted models should use ``interactions`` before ``test_day``.

    Raises:
        ValueError: unknown variant or availability.
    """
    if variant not in ("all", "last"):
        raise ValueError(f"variant must be 'all' or 'last', not {variant!r}")
    inter = _indexed(cat)
    first = inter.groupby("user_id")["timestamp"].transform("min")
    is_test = (inter["timestamp"] > first).to_numpy()
    pts = _points_from_baskets(inter, is_test, _before)
    if variant == "last" and len(pts["users"]):
        keep = pd.Series(np.arange(len(pts["users"]))).groupby(pts["users"]).max().sort_values().to_numpy()
        pts = dict(users=pts["users"][keep], profiles=[pts["profiles"][i] for i in keep],
                   truth=[pts["truth"][i] for i in keep], test_day=pts["test_day"][keep],
                   dropped_repeat_only=pts["dropped_repeat_only"])
    split = Split(**pts, train=inter[~is_test].reset_index(drop=True), n_items=cat.n_items, interactions=inter,
                  protocol=f"replay_{variant}")
    return _with_availability(split, cat, availability, one_of_a_kind)


def temporal(cat: "Catalogue", cut: str | float = 0.8, availability: str = "auto", one_of_a_kind: bool = False) -> Split:
    """Global temporal split: train before ``cut``, test on every purchase at or after it.

    Args:
        cat: catalogue.
        cut: a date (``"2020-06-01"``) or a quantile in (0, 1) of the interaction timestamps.
        availability, one_of_a_kind: see :func:`leave_last_basket_out`; availability is judged
            at the end of the test period.

    Raises:
        ValueError: a quantile outside (0, 1); PartSkipped (a ValueError): a cut that leaves no test user.
    """
    inter = _indexed(cat)
    if isinstance(cut, (float, int)) and not isinstance(cut, bool):
        if not 0 < float(cut) < 1:
            raise ValueError(f"a quantile cut must be in (0, 1), not {cut}")
        t_cut = inter["timestamp"].quantile(float(cut))
        t_cut = inter["timestamp"][inter["timestamp"] >= t_cut].min()
    else:
        t_cut = pd.Timestamp(cut)
    after = (inter["timestamp"] >= t_cut).to_numpy()
    has_prof = inter["user_id"].isin(set(inter.loc[~after, "user_id"])).to_numpy()
    users, profiles, truth, dropped = [], [], [], 0
    prof_map = {u: np.unique(g.to_numpy()) for u, g in inter[~after].groupby("user_id")["item_idx"]}
    for u, g in inter[after & has_prof].groupby("user_id"):
        prof = prof_map[u].astype(np.int64)
        tr = np.setdiff1d(np.unique(g["item_idx"].to_numpy()), prof).astype(np.int64)
        if tr.size == 0:
            dropped += 1
            continue
        users.append(u), profiles.append(prof), truth.append(tr)
    if not users:
        raise PartSkipped(f"the cut {t_cut} leaves no user with purchases on both sides; choose an earlier cut")
    n = len(users)
    split = Split(users=np.array(users, dtype=object), profiles=profiles, truth=truth,
                  test_day=np.full(n, np.datetime64(t_cut, "ns")), train=inter[~after].reset_index(drop=True),
                  n_items=cat.n_items, interactions=inter, dropped_repeat_only=dropped, protocol="temporal",
                  avail_time=np.full(n, inter["timestamp"].max().to_datetime64()).astype("datetime64[ns]"),
                  notes=[f"temporal cut at {t_cut.date()}"])
    return _with_availability(split, cat, availability, one_of_a_kind)


def random_holdout(cat: "Catalogue", fraction: float = 0.2, seed: int = 0, availability: str = "catalogue") -> Split:
    """Random hold-out of ``fraction`` of each user's distinct items (at least 1, at most all but 1).

    Time is ignored: the profile may hold purchases made after the held-out ones and popularity
    is counted over the whole training part. Labelled leaky in every report; kept only to show
    how far it is from the time-aware protocols.

    Raises:
        ValueError: ``fraction`` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), not {fraction}")
    inter = _indexed(cat)
    rng = np.random.default_rng(seed)
    users, profiles, truth, held = [], [], [], []
    for u, g in inter.groupby("user_id"):
        items = np.unique(g["item_idx"].to_numpy())
        if items.size < 2:
            continue
        n_test = int(min(max(1, round(fraction * items.size)), items.size - 1))
        perm = rng.permutation(items)
        users.append(u), truth.append(np.sort(perm[:n_test]).astype(np.int64))
        profiles.append(np.sort(perm[n_test:]).astype(np.int64))
        held.append(pd.DataFrame({"user_id": u, "item_idx": perm[:n_test]}))
    held_df = pd.concat(held) if held else pd.DataFrame(columns=["user_id", "item_idx"])
    is_held = pd.MultiIndex.from_frame(inter[["user_id", "item_idx"]]).isin(pd.MultiIndex.from_frame(held_df))
    train = inter[~is_held].reset_index(drop=True)
    end = inter["timestamp"].max() + pd.Timedelta(days=1)
    split = Split(users=np.array(users, dtype=object), profiles=profiles, truth=truth,
                  test_day=np.full(len(users), end.to_datetime64()).astype("datetime64[ns]"), train=train,
                  n_items=cat.n_items, interactions=train, protocol="random_holdout", leaky=True)
    return _with_availability(split, cat, availability, False)


def _with_availability(split: Split, cat: "Catalogue", availability: str, one_of_a_kind: bool) -> Split:
    """Attach the availability rule (module docstring) and, for first-seen, drop unavailable truth."""
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
    """Keep truth items that someone other than the test user bought by the test time."""
    sales = split.interactions.sort_values("timestamp", kind="stable")
    by_item = {i: (g["timestamp"].to_numpy("datetime64[ns]"), g["user_id"].to_numpy())
               for i, g in sales.groupby("item_idx")}
    keep, truth = [], []
    for p in range(split.n_users):
        u, t = split.users[p], split._avail_time([p])[0]
        tr = [i for i in split.truth[p]
              if i in by_item and np.any(by_item[i][1][by_item[i][0] <= t] != u)]
        if tr:
            keep.append(p), truth.append(np.array(tr, dtype=np.int64))
    return _subset(split, np.array(keep, dtype=np.int64), truth,
                   dropped_unavailable=split.dropped_unavailable + split.n_users - len(keep))


def _subset(split: Split, keep: np.ndarray, truth: list[np.ndarray], **changes) -> Split:
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
    out = _subset(split, keep, truth, notes=split.notes + [f"{which} truth items only"])
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


PROTOCOLS = {
    "leave_last_basket_out": leave_last_basket_out,
    "temporal": temporal,
    "replay_last": lambda cat, **kw: replay(cat, variant="last", **kw),
    "replay_all": lambda cat, **kw: replay(cat, variant="all", **kw),
    "random_holdout": random_holdout,
}


def make_split(cat: "Catalogue", protocol: str = "leave_last_basket_out", **kwargs) -> Split:
    """Build a split by protocol name (:data:`PROTOCOLS`), passing ``kwargs`` on.

    Raises:
        KeyError: unknown protocol, listing the valid names.
    """
    if protocol not in PROTOCOLS:
        raise KeyError(f"Unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    return PROTOCOLS[protocol](cat, **kwargs)


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
