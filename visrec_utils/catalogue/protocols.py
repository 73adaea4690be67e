"""Evaluation protocols: how a :class:`~visrec_utils.catalogue.splits.Split` is built from a
catalogue, and the registry that builds them by name.

Protocols are registered :class:`Protocol` objects (:data:`PROTOCOLS`, :func:`list_protocols`,
:func:`register_protocol`) built through one verb with one call signature::

    make_split(cat, "temporal", availability="auto", one_of_a_kind=False, seed=0, cut=0.8)

Every protocol accepts these four keywords; each uses those in its ``params`` (a protocol
ignores the others) and validates them. Protocol-specific keywords (``fraction`` of
``random_holdout``) go through ``**more``. The registered protocols:

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
  Since it ignores time, its candidates are always the whole catalogue: it accepts
  ``availability`` ``"auto"`` or ``"catalogue"`` and ``one_of_a_kind=False`` only (a time-based
  rule raises ``ValueError``); ``Protocol.time_aware`` is False for it, and study functions
  (:func:`visrec_utils.evaluation.experiment.run_protocols`) pass it neither keyword.

Availability rules (``availability``, ``one_of_a_kind``) are described in
:mod:`visrec_utils.catalogue.splits` and applied by :func:`~visrec_utils.catalogue.splits.apply_availability`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped
from .splits import Split, apply_availability

if TYPE_CHECKING:  # pragma: no cover
    from .data import Catalogue


def _indexed(cat: "Catalogue") -> pd.DataFrame:
    inter = cat.interactions.copy()
    inter["item_idx"] = cat.item_index().loc[inter["item_id"].to_numpy()].to_numpy()
    return inter.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)


def _points_from_baskets(inter: pd.DataFrame, test_rows: np.ndarray) -> dict:
    """Test points from the rows flagged in ``test_rows``, grouped by (user, timestamp).

    A point's profile is every item its user bought strictly before its timestamp (all rows,
    flagged or not); its truth the items of its flagged rows not in the profile (a point left
    without truth is counted in ``dropped_repeat_only``). Points are ordered by time, then user
    id (as text). Vectorised: rows are sorted once by (user, time), so each profile is a
    contiguous range of its user's rows.
    """
    codes, uniques = pd.factorize(inter["user_id"], sort=False)
    ts = inter["timestamp"].to_numpy("datetime64[ns]")
    items = inter["item_idx"].to_numpy()
    order = np.lexsort((ts, codes))  # by user, then time
    cs, tss, its = codes[order], ts[order], items[order]
    n = len(cs)
    run_new = np.ones(n, dtype=bool)  # a new (user, timestamp) run starts here
    run_new[1:] = (cs[1:] != cs[:-1]) | (tss[1:] != tss[:-1])
    run_start = np.maximum.accumulate(np.where(run_new, np.arange(n), 0))
    user_new = np.ones(n, dtype=bool)
    user_new[1:] = cs[1:] != cs[:-1]
    user_start = np.maximum.accumulate(np.where(user_new, np.arange(n), 0))
    flagged = np.flatnonzero(np.asarray(test_rows, dtype=bool)[order])
    g_new = np.ones(flagged.size, dtype=bool)  # flagged rows of one (user, timestamp) are contiguous
    g_new[1:] = run_start[flagged[1:]] != run_start[flagged[:-1]]
    g_start = np.flatnonzero(g_new)
    g_end = np.append(g_start[1:], flagged.size)
    users, profiles, truth, days, dropped = [], [], [], [], 0
    for a, b in zip(g_start.tolist(), g_end.tolist()):
        first = flagged[a]
        prof = np.unique(its[user_start[first]:run_start[first]]).astype(np.int64)
        tr = np.setdiff1d(np.unique(its[flagged[a:b]]), prof).astype(np.int64)
        if tr.size == 0:
            dropped += 1
            continue
        users.append(uniques[cs[first]]), profiles.append(prof), truth.append(tr), days.append(tss[first])
    order = np.lexsort((np.array(users, dtype=str), np.array(days, dtype="datetime64[ns]"))) if users else []
    return dict(users=np.array(users, dtype=object)[order], profiles=[profiles[i] for i in order],
                truth=[truth[i] for i in order], test_day=np.array(days, dtype="datetime64[ns]")[order],
                dropped_repeat_only=dropped)


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
    pts = _points_from_baskets(inter, is_test)
    split = Split(**pts, train=inter[~is_test].reset_index(drop=True), n_items=cat.n_items, interactions=inter,
                  protocol="leave_last_basket_out")
    return apply_availability(split, cat, availability, one_of_a_kind)


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
    pts = _points_from_baskets(inter, is_test)
    if variant == "last" and len(pts["users"]):
        keep = pd.Series(np.arange(len(pts["users"]))).groupby(pts["users"]).max().sort_values().to_numpy()
        pts = dict(users=pts["users"][keep], profiles=[pts["profiles"][i] for i in keep],
                   truth=[pts["truth"][i] for i in keep], test_day=pts["test_day"][keep],
                   dropped_repeat_only=pts["dropped_repeat_only"])
    split = Split(**pts, train=inter[~is_test].reset_index(drop=True), n_items=cat.n_items, interactions=inter,
                  protocol=f"replay_{variant}")
    return apply_availability(split, cat, availability, one_of_a_kind)


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
    return apply_availability(split, cat, availability, one_of_a_kind)


def random_holdout(cat: "Catalogue", fraction: float = 0.2, seed: int = 0, availability: str = "auto",
                   one_of_a_kind: bool = False) -> Split:
    """Random hold-out of ``fraction`` of each user's distinct items (at least 1, at most all but 1).

    Time is ignored: the profile may hold purchases made after the held-out ones and popularity
    is counted over the whole training part. Labelled leaky in every report; kept only to show
    how far it is from the time-aware protocols. Without test times, availability rules (which
    judge items at a test time) do not apply: the candidates are the whole catalogue.

    Args:
        cat: catalogue.
        fraction: share of each user's distinct items held out, in (0, 1).
        seed: seed of the hold-out draw.
        availability: ``"auto"`` or ``"catalogue"`` (both: the whole catalogue).
        one_of_a_kind: must be False (items sold "before" a test time has no meaning here).

    Raises:
        ValueError: ``fraction`` outside (0, 1), a time-based ``availability``, or ``one_of_a_kind=True``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), not {fraction}")
    if availability not in ("auto", "catalogue"):
        raise ValueError(f"random_holdout ignores time, so availability={availability!r} cannot apply; "
                         "use 'auto' or 'catalogue' (the whole catalogue)")
    if one_of_a_kind:
        raise ValueError("random_holdout ignores time, so one_of_a_kind=True cannot apply (no item is sold "
                         "before a test time); use a time-aware protocol")
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
    return apply_availability(split, cat, "catalogue", False)

#: The keywords every protocol accepts (:func:`make_split`), with their defaults.
COMMON_PARAMS = {"availability": "auto", "one_of_a_kind": False, "seed": 0, "cut": 0.8}


@dataclass(frozen=True)
class Protocol:
    """A registered evaluation protocol.

    Attributes:
        name: registry name (``Split.protocol``).
        description: one line for reports and :func:`list_protocols`.
        params: the keywords of :data:`COMMON_PARAMS` that ``fn`` takes (the others are accepted
            by :meth:`build` and ignored).
        fn: ``fn(cat, **params, **more) -> Split``.
        extra: protocol-specific keywords ``fn`` takes besides ``params`` (e.g. ``fraction``).
        time_aware: False for a protocol without test times (``random_holdout``): availability
            rules and one-of-a-kind do not apply to it, so study functions leave them at their defaults.
    """

    name: str
    description: str
    params: tuple[str, ...]
    fn: Callable[..., Split]
    extra: tuple[str, ...] = ()
    time_aware: bool = True

    def build(self, cat: "Catalogue", **params) -> Split:
        """The split of ``cat``: the keywords in ``params`` / ``extra`` are passed to ``fn``, the other
        common keywords are ignored.

        Raises:
            TypeError: a keyword neither common nor in ``extra``.
            ValueError: from ``fn`` (an invalid value, named).
        """
        unknown = sorted(set(params) - set(COMMON_PARAMS) - set(self.extra))
        if unknown:
            raise TypeError(f"protocol {self.name!r} takes no keyword {', '.join(unknown)}; it takes "
                            f"{', '.join([*COMMON_PARAMS, *self.extra])}")
        return self.fn(cat, **{k: v for k, v in params.items() if k in self.params or k in self.extra})

    __call__ = build  # PROTOCOLS[name](cat, **kw), as before


#: The protocol registry, ``{name: Protocol}``, in registration order (see :func:`register_protocol`).
PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol, replace: bool = False) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (so :func:`make_split` builds it by name).

    Raises:
        ValueError: the name is taken (pass ``replace=True`` to replace it), or ``params`` names a
            keyword outside :data:`COMMON_PARAMS`.
    """
    if protocol.name in PROTOCOLS and not replace:
        raise ValueError(f"a protocol named {protocol.name!r} is already registered; pass replace=True")
    bad = sorted(set(protocol.params) - set(COMMON_PARAMS))
    if bad:
        raise ValueError(f"params must be among {list(COMMON_PARAMS)}, not {bad}; put other keywords in extra")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def unregister_protocol(name: str) -> None:
    """Remove a protocol from :data:`PROTOCOLS` (e.g. after a test); unknown names are ignored."""
    PROTOCOLS.pop(name, None)


def list_protocols() -> list[str]:
    """The registered protocol names, in registration order."""
    return list(PROTOCOLS)


def get_protocol(protocol: "str | Protocol") -> Protocol:
    """The :class:`Protocol` registered as ``protocol`` (a Protocol is returned as is).

    Raises:
        ValueError: unknown name: ``unknown protocol 'x'; choose from a, b, ... (did you mean 'y'?)``.
    """
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        close = difflib.get_close_matches(str(protocol), list(PROTOCOLS), n=1)
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    return PROTOCOLS[protocol]


def make_split(cat: "Catalogue", protocol: "str | Protocol" = "leave_last_basket_out", *, availability: str = "auto",
               one_of_a_kind: bool = False, seed: int = 0, cut: "str | float" = 0.8, **more) -> Split:
    """Build the split of ``protocol`` (a registered name or a :class:`Protocol`): the one verb.

    Args:
        cat: catalogue.
        protocol: see :func:`list_protocols`.
        availability: candidates rule (:data:`AVAILABILITY`; module docstring).
        one_of_a_kind: items sold before the test time leave the candidates.
        seed: seed of protocols that draw (``random_holdout``).
        cut: ``temporal``'s cut, a date or a quantile in (0, 1).
        **more: protocol-specific keywords (``Protocol.extra``, e.g. ``fraction``).

    Each protocol uses the keywords in its ``params`` and ignores the others.

    Raises:
        ValueError: unknown protocol (naming the choices and the closest match), or an invalid
            value of a keyword the protocol uses (naming it); PartSkipped (a ValueError): no test
            user (``temporal`` cut).
        TypeError: a keyword the protocol does not know.
    """
    return get_protocol(protocol).build(cat, availability=availability, one_of_a_kind=one_of_a_kind, seed=seed,
                                        cut=cut, **more)


def study_params(protocol, availability: str = "auto", one_of_a_kind: bool = False, seed: int = 0,
                 cut: str | float = 0.8) -> dict:
    """The :func:`make_split` keywords of ``protocol`` in a study with
    these settings: a protocol that ignores time (``Protocol.time_aware`` False: random hold-out)
    keeps its whole-catalogue candidates, so ``availability`` and ``one_of_a_kind`` are not passed to it.

    Raises:
        ValueError: unknown protocol.
    """
    params = {"seed": seed, "cut": cut}
    if get_protocol(protocol).time_aware:
        params |= {"availability": availability, "one_of_a_kind": one_of_a_kind}
    return params


def _replay_last(cat, **kw) -> Split:
    return replay(cat, variant="last", **kw)


def _replay_all(cat, **kw) -> Split:
    return replay(cat, variant="all", **kw)


_AVAIL = ("availability", "one_of_a_kind")
for _p in (
    Protocol("leave_last_basket_out", "each user's last basket is the truth, earlier baskets the profile",
             _AVAIL, leave_last_basket_out),
    Protocol("temporal", "one global time cut: profile before it, truth every later purchase",
             (*_AVAIL, "cut"), temporal),
    Protocol("replay_last", "time replay, each user's last basket with a new item", _AVAIL, _replay_last),
    Protocol("replay_all", "time replay, every basket of a user with a profile", _AVAIL, _replay_all),
    Protocol("random_holdout", "a random 20% of each user's items, ignoring time (LEAKY, for comparison)",
             (*_AVAIL, "seed"), random_holdout, extra=("fraction",), time_aware=False),
):
    register_protocol(_p)
del _p
