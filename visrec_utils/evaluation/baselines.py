"""The recommender interface and the non-visual baselines: random, popularity, item-kNN.

:class:`Recommender` is the base every recommender derives from (``name``, ``content_based``,
``fit``, ``score``; :mod:`visrec_utils.evaluation.recommenders` describes the contract and how to
add one). The baselines here are not content-based (``content_based = False``: they run once,
without embeddings) and use only ``split.interactions`` strictly before each ``split.test_day``.
They are registered, with the visual recommenders, in the one registry of
:mod:`visrec_utils.evaluation.recommenders` (``random``, ``popularity``, ``popularity_30d``,
``itemknn``), which also re-exports these classes.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..catalogue.splits import Split


class Recommender:
    """Base of the recommenders: ``name``, ``content_based``, ``fit``, ``score`` (the contract:
    :mod:`visrec_utils.evaluation.recommenders`)."""

    content_based: bool = False
    #: A content-based recommender whose ``fit`` uses the ``shared`` similarity rows of its
    #: embedding set (VisRank, the hybrid); False (VBPR) lets the set-by-set evaluation skip them.
    uses_similarity_rows: bool = True

    @property
    def name(self) -> str:  # pragma: no cover (overridden)
        raise NotImplementedError

    def fit(self, split: Split, embeddings: np.ndarray | None = None, shared=None) -> "Recommender":
        raise NotImplementedError  # pragma: no cover

    def score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def accepts(self, model: str, strategy: str) -> bool:
        """Whether a content-based recommender is evaluated on the embedding set ``(model, strategy)``:
        every set by default (VBPR: frozen sets of whole models only, one fit per set)."""
        return True


@dataclass
class RandomRec(Recommender):
    """Uniform random scores, reproducible per (seed, user position). ``name``: ``random``."""

    seed: int = 0
    content_based = False
    _n: int = field(default=0, init=False, repr=False)

    @property
    def name(self) -> str:
        return "random"

    def fit(self, split: Split, embeddings=None) -> "RandomRec":
        self._n = split.n_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.stack([np.random.default_rng([self.seed, int(u)]).random(self._n, dtype=np.float32)
                         for u in users]) if len(users) else np.empty((0, self._n), np.float32)


@dataclass
class Popularity(Recommender):
    """Purchase counts of each item strictly before the test point (all users' purchases in
    ``split.interactions``), over all time or over the last ``window_days`` days.

    Args:
        window_days: None (all-time popularity) or the length of the recent window in days.

    ``name``: ``popularity`` or ``popularity_<window_days>d``.
    """

    window_days: int | None = None
    content_based = False
    _split: Split = field(default=None, init=False, repr=False)
    _by_day: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def name(self) -> str:
        return "popularity" if self.window_days is None else f"popularity_{self.window_days}d"

    def fit(self, split: Split, embeddings=None) -> "Popularity":
        self._split = split
        inter = split.interactions.sort_values("timestamp", kind="stable")
        ts = inter["timestamp"].to_numpy("datetime64[ns]")
        items = inter["item_idx"].to_numpy(dtype=np.int64)
        for day in np.unique(split.test_day):
            hi = np.searchsorted(ts, day, side="left")
            lo = 0 if self.window_days is None else np.searchsorted(ts, day - np.timedelta64(self.window_days, "D"), side="left")
            self._by_day[day] = np.bincount(items[lo:hi], minlength=split.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.stack([self._by_day[self._split.test_day[u]] for u in users]) if len(users) \
            else np.empty((0, self._split.n_items), np.float32)


#: Item-kNN similarities by (interactions digest, anchor day, k), shared by the splits of one
#: study (the protocols and the cold/warm halves fit on the same purchases): an entry lives as
#: long as a fitted split holds it.
_FITS = weakref.WeakValueDictionary()


def _interactions_digest(split: Split) -> str:
    """Content digest of what item-kNN fits on (``user_id, item_idx, timestamp`` and ``n_items``),
    computed once per split."""
    memo = split.__dict__.setdefault("_memo", {})
    if "interactions_digest" not in memo:
        import hashlib

        inter = split.interactions[["user_id", "item_idx", "timestamp"]]
        h = hashlib.sha256(f"{split.n_items}:{len(inter)}".encode())
        if len(inter):
            h.update(pd.util.hash_pandas_object(inter.astype({"user_id": str}), index=False).to_numpy().tobytes())
        memo["interactions_digest"] = h.hexdigest()
    return memo["interactions_digest"]


@dataclass
class ItemKNN(Recommender):
    """Item-based collaborative filtering from co-purchases (Sarwar et al., WWW 2001;
    Deshpande & Karypis, ACM TOIS 2004), with the item-item cosine similarities and their
    ``k`` nearest neighbours computed by the ``implicit`` library (``CosineRecommender``).

    score(u, i) = sum over profile items j of sim(j, i), where sim keeps each item's ``k``
    nearest neighbours. Time-aware and leak-free: the similarities used for a test point come
    from interactions strictly before an anchor day on or before its test day; anchors are
    at most ``refit_days`` apart, so the model is refitted about monthly (it can be up to
    ``refit_days`` stale, never ahead of the test point). Items never co-purchased score 0.

    Args:
        k: neighbours kept per item.
        refit_days: longest gap between refits, days.

    ``name``: ``itemknn`` with the defaults, else ``itemknn_k<k>_refit<refit_days>d``.
    """

    k: int = 100
    refit_days: int = 30
    content_based = False
    _split: Split = field(default=None, init=False, repr=False)
    _anchor_of: dict = field(default_factory=dict, init=False, repr=False)
    _sims: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def name(self) -> str:
        return "itemknn" if (self.k, self.refit_days) == (100, 30) else f"itemknn_k{self.k}_refit{self.refit_days}d"

    def fit(self, split: Split, embeddings=None) -> "ItemKNN":
        import warnings

        import scipy.sparse as sp
        from implicit.nearest_neighbours import CosineRecommender

        self._split = split
        memo = split.__dict__.setdefault("_memo", {})
        key = ("itemknn", self.k, self.refit_days)
        if key in memo:  # one fit per split and parameters, shared with the hybrid
            self._anchor_of, self._sims = memo[key]
            return self
        days = np.unique(split.test_day)
        anchor = None
        for d in days:
            if anchor is None or d >= anchor + np.timedelta64(self.refit_days, "D"):
                anchor = d
            self._anchor_of[d] = anchor
        inter = split.interactions
        digest = _interactions_digest(split)
        for a in sorted(set(self._anchor_of.values())):
            shared = _FITS.get((digest, a, self.k))  # another split of the same interactions, same anchor
            if shared is not None:
                self._sims[a] = shared
                continue
            past = inter[inter["timestamp"] < a]
            codes = past["user_id"].astype("category").cat.codes.to_numpy()
            x = sp.csr_matrix((np.ones(len(past), np.float32), (codes, past["item_idx"].to_numpy())),
                              shape=(int(codes.max()) + 1 if len(codes) else 1, split.n_items))
            x.data[:] = 1.0  # bought or not
            model = CosineRecommender(K=self.k)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(x, show_progress=False)
            self._sims[a] = _FITS[(digest, a, self.k)] = sp.csr_matrix(model.similarity)
        memo[key] = (self._anchor_of, self._sims)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items) float32`` for test-point positions ``users``."""
        import scipy.sparse as sp

        users = np.asarray(users, dtype=np.int64)
        out = np.zeros((len(users), self._split.n_items), dtype=np.float32)
        anchors = np.array([self._anchor_of[d] for d in self._split.test_day[users]]) if len(users) else users
        for a in np.unique(anchors):  # per anchor: (profile indicator) @ similarities, one sparse product
            rows = np.flatnonzero(anchors == a)
            profs = [self._split.profiles[u] for u in users[rows]]
            ptr = np.concatenate([[0], np.cumsum([len(p) for p in profs])]).astype(np.int64)
            ind = sp.csr_matrix((np.ones(ptr[-1], np.float32), np.concatenate(profs).astype(np.int64), ptr),
                                shape=(len(rows), self._split.n_items))
            out[rows] = (ind @ self._sims[a]).toarray()  # sums the rows in profile order, as a loop would
        return out
