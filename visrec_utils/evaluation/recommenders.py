"""Recommenders: VisRank (content-based, from image embeddings), the hybrid, and the one registry.

The non-visual baselines (random, popularity, item-kNN) and the :class:`Recommender` base live in
:mod:`visrec_utils.evaluation.baselines`, the factorisations fitted with Cornac (BPR-MF, a
baseline, and VBPR, visual) in :mod:`visrec_utils.evaluation.factorization`; they are registered
here and re-exported.

A recommender is a configured object (``VisRank(aggregate="topk", k=3)``, ``Popularity(window_days=30)``)
with a ``name`` (the label of its rows in every result table), a ``content_based`` flag (True:
it needs an embedding matrix, and runs once per embedding set; False: a baseline, run once),
``fit(split, embeddings=None, ...)`` returning itself, and ``score(user_positions) ->
(n_users_in_block, n_items) float32`` over the whole catalogue. Masking of profile and
non-candidate items happens in evaluation, not here.

One registry maps names to configurations: :func:`register_recommender`,
:func:`create_recommender` (a name with optional parameters, or an object), :func:`list_recommenders`.
Names and objects are accepted wherever recommenders are chosen (:func:`make_score_fns`,
:func:`visrec_utils.evaluation.experiment.run_experiment` ``recommenders=`` / ``baselines=``).

VisRank (Messina, Dominguez, Parra et al., "Content-based artwork recommendation", 2018):
score(u, i) = aggregate over the user's profile items j of cos(e_i, e_j); aggregate is the
maximum, the mean, or the mean of the k largest similarities.

Adding a recommender (three steps):

1. A class: a dataclass whose fields are its parameters (state that fitting fills in is a
   ``field(init=False, repr=False)``, so a copy of a configured object starts unfitted), with
   ``name`` (a property built from its parameters; a new name for every configuration that
   scores differently), ``content_based``, ``fit`` and ``score`` as above. A content-based
   ``fit`` takes ``fit(split, embeddings, shared=None)`` (``shared``: the
   :class:`SharedSimilarities` of this embedding set, reuse it or ignore it); a baseline's
   takes ``fit(split, embeddings=None)`` and may use only ``split.interactions`` strictly
   before each ``split.test_day``, or ``split.train`` (no test purchase; what the factorisations
   fit on). A content-based one may define ``accepts(model, strategy) -> bool``, the embedding
   sets it runs on (default every set; VBPR: the frozen sets of whole models). A ``seed``
   field receives the evaluation seed when the recommender is created by name. Profiles
   (``split.profiles[p]``) are sorted item indices, not in time order: the times are in ``split.interactions`` (columns ``user_id``,
   ``item_idx``, ``timestamp``; a time-aware recommender keeps, for each test point, the rows
   before that point's ``split.test_day[p]``, as the :class:`Split` docstring says).
2. Register it: ``register_recommender("my_rec", MyRec, **default_params)``. In this module,
   put the call at the end of the module (after :data:`CONTENT_RECOMMENDERS` and
   :data:`BASELINES`, which list the registrations made before them and are defaults of some
   functions); a study's notebooks import this module, so a recommender registered here can be
   named in ``-p recommenders '[...]'`` (the runner checks the names before anything runs).
   Registered in your own code, it is available to your own calls of the stage functions and
   :func:`~visrec_utils.evaluation.experiment.run_experiment`.
3. A test in ``tests/test_recommenders.py``: scores on a hand-built :class:`Split` checked by
   hand, and the name through ``run_experiment`` (see ``test_a_registered_toy_recommender_runs``).

Example::

    @dataclass
    class FirstItemSimilarity(Recommender):  # cosine similarity to the profile's first item
        content_based = True
        _emb: np.ndarray = field(default=None, init=False, repr=False)
        _split: Split = field(default=None, init=False, repr=False)

        @property
        def name(self) -> str:
            return "first_item_similarity"

        def fit(self, split, embeddings=None, shared=None):
            self._emb, self._split = l2_normalize(embeddings), split
            return self

        def score(self, users):
            first = [self._split.profiles[u][0] for u in users]
            return (self._emb[first] @ self._emb.T).astype(np.float32)

    register_recommender("first_item_similarity", FirstItemSimilarity)
    run_experiment(split, sets, recommenders=["visrank_max", "first_item_similarity"])
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field

import numpy as np

from ..catalogue.splits import Split
from ..core.linalg import l2_normalize  # noqa: F401 (re-exported)
from .aggregation import extend_max, profile_aggregates, replay_plan, zscore_rows
from .aggregation import similarities as _similarities, similarity_rows  # noqa: F401 (re-exported)
from .baselines import ItemKNN, Popularity, RandomRec, Recommender  # noqa: F401 (re-exported)
from .factorization import BPRMF, VBPR  # noqa: F401 (re-exported)

class SharedSimilarities:
    """Cosine similarities of test users' profile items to every item, shared by all VisRank
    aggregates of one embedding set.

    Each *distinct* profile item's row ``e_j . E^T`` is computed once: for the whole split at
    the first call when the ``(n_distinct_profile_items, n_items) float32`` matrix fits in
    ``max_bytes`` (on the H&M leave-last-basket-out split 14,891 distinct items stand for
    22,781 profile rows, 35% fewer FLOPs; time-replay splits repeat profiles far more), else
    per block of users (also while a block needs under 1/8 of the split's rows: a few users
    scored alone, e.g. a gallery). The product is numpy's (BLAS) float32 ``matmul``.

    Args:
        embeddings: ``(n_items, dim)`` (normalised here).
        split: the split whose profiles are used.
        max_bytes: memory allowed for the whole-split matrix (default 2 GiB).
        points: the test points that will be scored (default all); a shard passes its own so
            only its profiles' rows are computed.
    """

    def __init__(self, embeddings: np.ndarray, split: Split, max_bytes: int = 2 * 2**30,
                 points: np.ndarray | None = None, precomputed: tuple[np.ndarray, np.ndarray] | None = None):
        self.emb = l2_normalize(embeddings) if precomputed is None else None
        self.split = split
        self.max_bytes = max_bytes
        self.points = points
        self._key = None
        self._rows: list[np.ndarray] = []
        self._all = None  # (n_distinct, n_items) for the whole split, when it fits
        self._wanted: dict = {}  # aggregates computed together (want)
        self._agg_key, self._agg = None, {}  # the last block's aggregates
        self._repeats = None  # whether users have several test points (time replay)
        self._n_distinct = None  # distinct profile items of the split (_small_block)
        self._last_max: dict = {}  # extend_max's state: each user's latest max row
        self._row_of = None  # item -> row of self._all (-1: not a profile item)
        if precomputed is not None:
            self._all, self._row_of = precomputed
            self.emb = np.empty((self._all.shape[1], 0), np.float32)  # only its length is used from here on

    @classmethod
    def from_rows(cls, split: Split, sims: np.ndarray, row_of: np.ndarray) -> "SharedSimilarities":
        """Shared rows computed beforehand (:func:`similarity_rows`), e.g. once for every split that
        evaluates this embedding set.

        Args:
            split: the split whose profiles are scored.
            sims: ``(n_rows, n_items) float32`` similarity rows.
            row_of: ``(n_items,) int64``, the row of ``sims`` of each item (-1: none); every
                profile item of ``split`` needs a row.

        Raises:
            ValueError: a profile item without a row.
        """
        flat = np.concatenate(split.profiles) if split.n_users else np.empty(0, np.int64)
        if flat.size and (row_of[flat] < 0).any():
            raise ValueError("the precomputed similarity rows miss a profile item of this split; "
                             "compute them with similarity_rows over every split's profiles")
        return cls(None, split, precomputed=(sims, row_of))

    def _similarities(self, items: np.ndarray) -> np.ndarray:
        return _similarities(self.emb, items)

    def _distinct(self) -> np.ndarray:
        profiles = self.split.profiles if self.points is None else [self.split.profiles[p] for p in self.points]
        return np.unique(np.concatenate(profiles)) if len(profiles) else np.empty(0, np.int64)

    def _whole_split(self) -> np.ndarray | None:
        """The whole-split matrix (built at the first call), or None when it exceeds max_bytes."""
        if self._row_of is None:
            distinct = self._distinct()
            self._row_of = np.full(len(self.emb), -1, dtype=np.int64)
            if distinct.size * len(self.emb) * 4 <= self.max_bytes:
                self._row_of[distinct] = np.arange(distinct.size)
                self._all = self._similarities(distinct)
        return self._all

    def _small_block(self, n_distinct: int) -> bool:
        """True while the whole-split matrix is not built and a block needs under 1/8 of its rows
        (a few users, e.g. a gallery): then only the block's rows are computed."""
        if self._n_distinct is None:
            self._n_distinct = self._distinct().size if self._row_of is None else 0
        return self._row_of is None and 8 * n_distinct < self._n_distinct

    def rows(self, users: np.ndarray) -> list[np.ndarray]:
        """Per user in ``users``, the ``(len(profile), n_items) float32`` similarity rows, row ``r``
        for the profile item ``split.profiles[u][r]`` (the profile's order: sorted item indices)."""
        key = np.asarray(users).tobytes()
        if key == self._key:
            return self._rows
        profiles = [self.split.profiles[u] for u in users]
        if self._whole_split() is not None:
            self._rows = [self._all[self._row_of[p]] for p in profiles]
        else:  # per block: distinct items of this block only
            flat = np.concatenate(profiles) if profiles else np.empty(0, np.int64)
            distinct, inverse = np.unique(flat, return_inverse=True)
            sims = self._similarities(distinct)
            cuts = np.cumsum([len(p) for p in profiles])[:-1]
            self._rows = [sims[i] for i in np.split(inverse, cuts)]
        self._key = key
        return self._rows

    def want(self, how) -> None:
        """Register an aggregate (``"max"``, ``"mean"`` or ``("topk", k)``) that will be asked for, so
        :meth:`aggregate` computes every registered one in the same pass over the rows."""
        self._wanted[how] = self._wanted.get(how, 0) + 1

    def take(self, users: np.ndarray, how) -> np.ndarray:
        """:meth:`aggregate` as the caller's own array: handed over (and forgotten here) when one
        recommender registered ``how``, else a copy."""
        out = self.aggregate(users, how)
        if self._wanted.get(how, 0) > 1:
            return out.copy()
        del self._agg[how]
        return out

    def aggregate(self, users: np.ndarray, how="max") -> np.ndarray:
        """``(len(users), n_items) float32``: the max (``how="max"``), mean (``"mean"``) or top-k mean
        (``("topk", k)``) of each user's profile similarity rows, from the shared matrix without
        copying rows (:func:`visrec_utils.evaluation.aggregation.profile_aggregates`); zeros for an
        empty profile. Every aggregate registered with :meth:`want` is computed in the same pass
        and kept for the other calls on the same block: the array is shared, do not modify it."""
        users = np.asarray(users)
        key = users.tobytes()
        if key != self._agg_key or how not in self._agg:
            hows = list(dict.fromkeys([how, *self._wanted]))
            tops = [h for h in hows if isinstance(h, tuple)]
            hows = [h for h in hows if not isinstance(h, tuple) or h == (tops[0] if how not in tops else how)]
            profiles = [self.split.profiles[u] for u in users]
            ptr = np.concatenate([[0], np.cumsum([len(p) for p in profiles])]).astype(np.int64)
            flat = np.concatenate(profiles).astype(np.int64) if profiles else np.empty(0, np.int64)
            distinct, inverse = np.unique(flat, return_inverse=True)
            if not self._small_block(distinct.size) and self._whole_split() is not None:
                sims, rows = self._all, self._row_of[flat]
            else:  # per block: distinct items of this block only
                sims, rows = self._similarities(distinct), inverse.ravel()
            if self._repeats is None:
                self._repeats = len(set(self.split.users.tolist())) < self.split.n_users
            incremental = "max" in hows and self._repeats
            self._agg_key = key
            self._agg = profile_aggregates(sims, rows, ptr, [h for h in hows if h != "max" or not incremental])
            if incremental:  # time replay: a user's next point extends the max of their previous one
                memo = self.split.__dict__.setdefault("_memo", {})
                if "replay_plan" not in memo:  # once per split, shared by every embedding set
                    memo["replay_plan"] = replay_plan(self.split.users, self.split.profiles)
                self._agg["max"] = extend_max(self._last_max, memo["replay_plan"], users, profiles, sims, rows)
            if how not in self._agg:  # a second top-k size on the same block
                self._agg.update(profile_aggregates(sims, rows, ptr, [how]))
        return self._agg[how]


@dataclass
class VisRank(Recommender):
    """Content-based recommender over L2-normalised embeddings.

    Args:
        aggregate: ``"max"``, ``"mean"`` or ``"topk"`` (mean of the ``k`` largest similarities).
        k: profile items averaged by ``"topk"``.

    ``name``: ``visrank_max``, ``visrank_mean`` or ``visrank_top<k>``.
    """

    aggregate: str = "max"
    k: int = 3
    content_based = True
    _split: Split = field(default=None, init=False, repr=False)
    _shared: SharedSimilarities = field(default=None, init=False, repr=False)
    _how: object = field(default=None, init=False, repr=False)  # the aggregate asked of _shared

    @property
    def name(self) -> str:
        return f"visrank_top{self.k}" if self.aggregate == "topk" else f"visrank_{self.aggregate}"

    def fit(self, split: Split, embeddings: np.ndarray | None = None,
            shared: SharedSimilarities | None = None) -> "VisRank":
        """Store the split and normalised ``(n_items, dim)`` embeddings.

        Args:
            split: the split.
            embeddings: ``(n_items, dim)`` item embeddings.
            shared: similarity rows shared with other VisRank aggregates of the same
                embeddings and split (built here when None).

        Raises:
            ValueError: missing embeddings, a row count other than ``split.n_items``, or an
                unknown aggregate.
        """
        if embeddings is None:
            raise ValueError("VisRank needs an embedding matrix (n_items, dim)")
        if len(embeddings) != split.n_items:
            raise ValueError(f"embeddings have {len(embeddings)} rows, the catalogue {split.n_items} items")
        if self.aggregate not in ("max", "mean", "topk"):
            raise ValueError(f"aggregate must be 'max', 'mean' or 'topk', not {self.aggregate!r}")
        self._shared = shared if shared is not None else SharedSimilarities(embeddings, split)
        self._how = ("topk", int(self.k)) if self.aggregate == "topk" else self.aggregate
        self._shared.want(self._how)
        self._split = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items) float32`` for test-user positions ``users`` (the caller's
        own array: the shared aggregate is handed over, or copied when another recommender reads it)."""
        return self._shared.take(np.asarray(users), self._how)


#: Memory for the z-scored item-kNN blocks the hybrid keeps per split (:meth:`Hybrid._knn_z`).
KNN_CACHE_BYTES = 1 << 30


_zscore = zscore_rows  # each score row standardised (the hybrid)


@dataclass
class Hybrid(Recommender):
    """Score-level blend of item-kNN and VisRank-max: ``alpha * z(itemknn) + (1 - alpha) * z(visrank)``,
    each score row standardised over the catalogue. Collaborative signal where an item has
    co-purchases, visual similarity for the rest (cold items score 0 in item-kNN).

    Args:
        alpha: weight of item-kNN (fixed, not tuned on test data).

    ``name``: ``hybrid_itemknn_visrank`` with ``alpha=0.5``, else ``hybrid_itemknn_visrank_a<alpha>``.
    """

    alpha: float = 0.5
    content_based = True
    _knn: ItemKNN = field(default=None, init=False, repr=False)
    _vis: VisRank = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return "hybrid_itemknn_visrank" + ("" if self.alpha == 0.5 else f"_a{self.alpha:g}")

    def fit(self, split: Split, embeddings: np.ndarray | None = None,
            shared: SharedSimilarities | None = None) -> "Hybrid":
        """Fit VisRank-max on ``embeddings`` and item-kNN on the split (reused across embedding sets)."""
        self._vis = VisRank("max").fit(split, embeddings, shared=shared)
        self._knn = ItemKNN().fit(split)
        return self

    def _knn_z(self, users: np.ndarray) -> np.ndarray:
        """``_zscore`` of item-kNN's scores of ``users``: they do not depend on the embedding set,
        so each block's is kept on the split (its ``_memo``, as item-kNN's fit) up to
        :data:`KNN_CACHE_BYTES` per split, and every embedding set reuses it (the same array)."""
        memo = self._knn._split.__dict__.setdefault("_memo", {})
        key = ("itemknn_z", self._knn.k, self._knn.refit_days, users.tobytes())
        if key in memo:
            return memo[key]
        z = _zscore(self._knn.score(users))
        used = memo.get(("itemknn_z_bytes",), 0)
        if used + z.nbytes <= KNN_CACHE_BYTES:
            memo[key], memo[("itemknn_z_bytes",)] = z, used + z.nbytes
        return z

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        vis = self._vis._shared.aggregate(users, "max")  # shared with visrank_max's block, read only
        return (self.alpha * self._knn_z(users) + (1 - self.alpha) * _zscore(vis)).astype(np.float32)


@dataclass(frozen=True)
class _Entry:
    cls: type
    defaults: dict


#: The recommender registry, ``{name: entry}`` in registration order (:func:`register_recommender`).
RECOMMENDERS: dict[str, _Entry] = {}


def register_recommender(name: str, cls: type, replace: bool = False, **defaults) -> None:
    """Register ``cls(**defaults)`` under ``name`` for :func:`create_recommender`.

    Args:
        name: registry name; must equal ``cls(**defaults).name`` (the label in result tables).
        cls: a recommender class (module docstring: how to add one).
        replace: replace an entry of the same name.
        **defaults: the configuration's parameters.

    Raises:
        ValueError: the name is taken (without ``replace``), or differs from the object's ``name``.
    """
    if name in RECOMMENDERS and not replace:
        raise ValueError(f"a recommender named {name!r} is already registered; pass replace=True")
    made = cls(**defaults).name
    if made != name:
        raise ValueError(f"{cls.__name__}(**{defaults}).name is {made!r}, not {name!r}: register it under its name")
    RECOMMENDERS[name] = _Entry(cls, dict(defaults))


def unregister_recommender(name: str) -> None:
    """Remove ``name`` from the registry (e.g. after a test); unknown names are ignored."""
    RECOMMENDERS.pop(name, None)


def list_recommenders(content_based: bool | None = None) -> list[str]:
    """Registered names in registration order; only content-based (True) or baselines (False)
    when ``content_based`` is given."""
    return [n for n, e in RECOMMENDERS.items()
            if content_based is None or bool(getattr(e.cls, "content_based", False)) == content_based]


def _takes(cls, param: str) -> bool:
    try:
        return param in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def create_recommender(name_or_object, **params):
    """A configured, unfitted recommender.

    Args:
        name_or_object: a registered name (:func:`list_recommenders`), or a recommender object
            (an unfitted copy of it is returned, ``params`` applied).
        **params: parameters overriding the registered defaults, e.g.
            ``create_recommender("visrank_top3", k=5)`` (named ``visrank_top5``).

    Raises:
        ValueError: unknown name:
            ``unknown recommender 'x'; choose from a, b, ... (did you mean 'y'?)``.
        TypeError: a parameter the class does not take.
    """
    if not isinstance(name_or_object, str):
        obj = name_or_object
        if dataclasses.is_dataclass(obj):
            return dataclasses.replace(obj, **params)  # state fields are init=False: a fresh copy
        obj = copy.deepcopy(obj)
        for k, v in params.items():
            setattr(obj, k, v)
        return obj
    if name_or_object not in RECOMMENDERS:
        close = difflib.get_close_matches(name_or_object, list(RECOMMENDERS), n=1)
        raise ValueError(f"unknown recommender {name_or_object!r}; choose from {', '.join(RECOMMENDERS)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    entry = RECOMMENDERS[name_or_object]
    return entry.cls(**{**entry.defaults, **params})


def make_recommender(name, seed: int = 0):
    """:func:`create_recommender` with the evaluation ``seed`` given to classes that take one
    (the random baseline); kept for existing callers.

    Raises:
        ValueError: unknown name (see :func:`create_recommender`).
    """
    if isinstance(name, str) and name in RECOMMENDERS and _takes(RECOMMENDERS[name].cls, "seed"):
        return create_recommender(name, seed=seed)
    return create_recommender(name)


register_recommender("visrank_max", VisRank, aggregate="max")
register_recommender("visrank_mean", VisRank, aggregate="mean")
register_recommender("visrank_top3", VisRank, aggregate="topk", k=3)
register_recommender("random", RandomRec)
register_recommender("popularity", Popularity)
register_recommender("popularity_30d", Popularity, window_days=30)
register_recommender("itemknn", ItemKNN)
register_recommender("hybrid_itemknn_visrank", Hybrid)
#: The default content-based recommenders and baselines (the registered ones at import), derived
#: from ``content_based``.
CONTENT_RECOMMENDERS = list_recommenders(content_based=True)
BASELINES = list_recommenders(content_based=False)
# Fitted factorisations (Cornac; :mod:`visrec_utils.evaluation.factorization`): registered after the
# defaults above, so a plain run_experiment does not fit them; the study's notebook 04 names them.
register_recommender("vbpr", VBPR)
register_recommender("bpr_mf", BPRMF)


def make_score_fns(split: Split, embeddings: np.ndarray | None, names, seed: int = 0,
                   points: np.ndarray | None = None, shared: SharedSimilarities | None = None) -> dict:
    """Fitted scoring functions ``{name: score(positions) -> (len, n_items) float32}`` for one
    embedding set (content-based recommenders share one :class:`SharedSimilarities`) or, with
    ``embeddings=None``, for baselines.

    Args:
        split: the split.
        embeddings: ``(n_items, dim)`` or None.
        names: recommender names and/or objects (:func:`create_recommender`); a name gets the
            evaluation ``seed`` when its class takes one, an object keeps its own.
        seed: evaluation seed.
        points: the test points that will be scored (default all; a shard passes its own).
        shared: the similarity rows of this embedding set (:meth:`SharedSimilarities.from_rows`),
            default computed here.

    Raises:
        ValueError: an unknown name, or two recommenders with the same ``name``.
    """
    if shared is None and embeddings is not None:
        shared = SharedSimilarities(embeddings, split, points=points)
    fns = {}
    for n in names:
        r = make_recommender(n, seed=seed)
        if r.name in fns:
            raise ValueError(f"two recommenders are named {r.name!r}; give each configuration its own name")
        fns[r.name] = (r.fit(split, embeddings, shared=shared) if r.content_based else r.fit(split, embeddings)).score
    return fns


def recommender_names(names) -> list[str]:
    """The ``name`` of each recommender name or object (the labels of its result rows)."""
    return [n if isinstance(n, str) else n.name for n in names]
