"""Recommenders: VisRank (content-based, from image embeddings) and non-visual baselines.

Every recommender is built by name from :data:`RECOMMENDERS`, fitted on a split (and, for
content-based ones, an embedding matrix), and scores the whole catalogue for a block of test
users: ``score(user_positions) -> (n_users_in_block, n_items) float32``. Masking of profile
items happens in evaluation, not here.

VisRank (Messina, Dominguez, Parra et al., "Content-based artwork recommendation", 2018):
score(u, i) = aggregate over the user's profile items j of cos(e_i, e_j); aggregate is the
maximum, the mean, or the mean of the k largest similarities.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from .data import Split


def l2_normalize(emb: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, ``(n, d) float32`` (zero rows stay zero)."""
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), eps)


class SharedSimilarities:
    """Cosine similarities of test users' profile items to every item, for one block of users.

    All VisRank aggregates of one embedding set need the same ``(profile, n_items)`` similarity
    rows; computing them once per block (one matrix product over the stacked profiles) and
    sharing them makes evaluating the three aggregates about three times cheaper.

    Args:
        embeddings: ``(n_items, dim)`` (normalised here).
        split: the split whose profiles are used.
    """

    def __init__(self, embeddings: np.ndarray, split: Split):
        self.emb = l2_normalize(embeddings)
        self.split = split
        self._key = None
        self._rows: list[np.ndarray] = []

    def rows(self, users: np.ndarray) -> list[np.ndarray]:
        """Per user in ``users``, the ``(len(profile), n_items) float32`` similarity rows."""
        key = np.asarray(users).tobytes()
        if key != self._key:
            profiles = [self.split.profiles[u] for u in users]
            stacked = self.emb[np.concatenate(profiles)] @ self.emb.T if profiles else np.zeros((0, len(self.emb)))
            cuts = np.cumsum([len(p) for p in profiles])[:-1]
            self._key, self._rows = key, np.split(stacked, cuts)
        return self._rows


@dataclass
class VisRank:
    """Content-based recommender over L2-normalised embeddings.

    Args:
        aggregate: ``"max"``, ``"mean"`` or ``"topk"`` (mean of the ``k`` largest similarities).
        k: profile items averaged by ``"topk"``.
    """

    aggregate: str = "max"
    k: int = 3
    content_based = True
    _split: Split = field(default=None, repr=False)
    _shared: SharedSimilarities = field(default=None, repr=False)

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
        self._split = split
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items) float32`` for test-user positions ``users``."""
        out = np.empty((len(users), self._split.n_items), dtype=np.float32)
        for r, sims in enumerate(self._shared.rows(np.asarray(users))):  # (profile, n_items) each
            if self.aggregate == "max":
                out[r] = sims.max(0)
            elif self.aggregate == "mean":
                out[r] = sims.mean(0)
            else:
                k = min(self.k, sims.shape[0])
                out[r] = np.partition(sims, sims.shape[0] - k, axis=0)[-k:].mean(0)
        return out


@dataclass
class RandomRec:
    """Uniform random scores, reproducible per (seed, user position)."""

    seed: int = 0
    content_based = False
    _n: int = 0

    def fit(self, split: Split, embeddings=None) -> "RandomRec":
        self._n = split.n_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.stack([np.random.default_rng([self.seed, int(u)]).random(self._n, dtype=np.float32)
                         for u in users]) if len(users) else np.empty((0, self._n), np.float32)


@dataclass
class Popularity:
    """Purchase counts of each item strictly before the user's test day (all users' purchases)."""

    content_based = False
    _split: Split = field(default=None, repr=False)
    _by_day: dict = field(default_factory=dict, repr=False)

    def fit(self, split: Split, embeddings=None) -> "Popularity":
        self._split = split
        inter = split.interactions.sort_values("timestamp")
        ts = inter["timestamp"].to_numpy()
        items = inter["item_idx"].to_numpy()
        for day in np.unique(split.test_day):
            n_before = np.searchsorted(ts, day, side="left")
            self._by_day[day] = np.bincount(items[:n_before], minlength=split.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.stack([self._by_day[self._split.test_day[u]] for u in users]) if len(users) \
            else np.empty((0, self._split.n_items), np.float32)


RECOMMENDERS = {
    "visrank_max": lambda seed=0: VisRank("max"),
    "visrank_mean": lambda seed=0: VisRank("mean"),
    "visrank_top3": lambda seed=0: VisRank("topk", k=3),
    "random": lambda seed=0: RandomRec(seed),
    "popularity": lambda seed=0: Popularity(),
}
CONTENT_RECOMMENDERS = ["visrank_max", "visrank_mean", "visrank_top3"]
BASELINES = ["random", "popularity"]


def make_recommender(name: str, seed: int = 0):
    """Build a recommender by registry name.

    Raises:
        KeyError: unknown name, listing the valid names and the closest match.
    """
    if name not in RECOMMENDERS:
        close = difflib.get_close_matches(name, list(RECOMMENDERS), n=1)
        raise KeyError(f"Unknown recommender {name!r}; choose from {list(RECOMMENDERS)}"
                       + (f" (did you mean {close[0]!r}?)" if close else ""))
    return RECOMMENDERS[name](seed=seed)
