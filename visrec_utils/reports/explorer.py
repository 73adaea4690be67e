"""Why an item was recommended: a test user's top-k under one embedding set, each recommendation
with the item of the user's history it is closest to.

VisRank scores an item by its cosine similarities to the user's profile items (Messina et al.
2018; :class:`visrec_utils.evaluation.recommenders.VisRank`); under VisRank-max the score *is* the
similarity to one profile item, the closest, which is therefore the reason for the
recommendation. :func:`explain` returns that reason as a tidy table, computed with the study's own
recommender code over the candidates the evaluation uses; :class:`Explorer` serves it for any test
user and embedding set of a study output folder (embedding sets are read when first asked for),
and :func:`visrec_utils.reports.explorer_widget.explorer_widget` puts it in JupyterLab (notebook
06). Notebook 06's stage writes the table for a few sample users (``results/explanations.csv``)
and draws it (``figures/explanations.png``, shown in the HTML index).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..catalogue.splits import Split
from ..evaluation.aggregation import similarities
from ..core.linalg import l2_normalize
from ..evaluation.recommenders import SharedSimilarities, VisRank, create_recommender

#: Columns of :func:`explain`'s table (``results/explanations.csv``).
EXPLANATION_COLUMNS = ["point", "user", "model", "strategy", "recommender", "rank", "item_id", "score", "bought",
                       "closest_profile_item", "similarity", "profile_size"]


def top_k(split: Split, embeddings: np.ndarray, points, recommender="visrank_max", k: int = 10,
          shared: SharedSimilarities | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each test point's top ``k`` by a VisRank recommender over its candidates.

    Scores come from the recommender (``create_recommender(recommender).fit(split, embeddings).score``),
    non-candidates (profile items, unavailable items: :meth:`Split.candidate_masks`) are set to
    -inf and items are ranked by score, ties in item order (a stable sort, as in the
    recommendation gallery). A point with fewer than ``k`` candidates gets fewer (index -1 and
    score -inf fill its row).

    Args:
        split: the evaluation's split.
        embeddings: ``(n_items, dim) float32``.
        points: test-point indices into ``split`` ``(m,) int``.
        recommender: a VisRank variant's registered name (``visrank_max``, ``visrank_mean``,
            ``visrank_top3``) or a :class:`VisRank` object.
        k: recommendations per point.
        shared: the embedding set's :class:`SharedSimilarities` for ``split`` (built when None).

    Returns:
        ``(items (m, k) int64, scores (m, k) float32)``.

    Raises:
        ValueError: ``recommender`` is not a VisRank variant, ``k`` < 1, or a point outside the split.
    """
    rec = create_recommender(recommender)
    if not isinstance(rec, VisRank):
        raise ValueError(f"recommender {getattr(rec, 'name', recommender)!r} is not a VisRank variant: the explanation "
                         "is the profile item closest to each recommendation; choose visrank_max, visrank_mean or "
                         "visrank_top<k>")
    if k < 1:
        raise ValueError(f"k={k}: ask for at least 1 recommendation")
    points = np.asarray(points, dtype=np.int64).reshape(-1)
    if len(points) and (points.min() < 0 or points.max() >= split.n_users):
        raise ValueError(f"test points {points.tolist()} are not all in the split's 0..{split.n_users - 1}")
    rec.fit(split, embeddings, shared=shared if shared is not None else SharedSimilarities(embeddings, split))
    scores = np.array(rec.score(points), dtype=np.float32)
    scores[~split.candidate_masks(points)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    return np.where(np.isfinite(top), order, -1), top


def explain(split: Split, embeddings: np.ndarray, points, recommender="visrank_max", k: int = 10, item_ids=None,
            model: str = "", strategy: str = "", shared: SharedSimilarities | None = None) -> pd.DataFrame:
    """The top ``k`` of each test point with, for each recommendation, its closest profile item.

    For recommendation ``i`` of point ``p``, ``closest_profile_item`` is the profile item ``j`` of
    ``p`` with the largest cosine similarity ``cos(e_i, e_j)`` (the first in profile order on a
    tie) and ``similarity`` that cosine, computed by the same float32 product VisRank uses; under
    ``visrank_max`` it equals ``score``. The top ``k`` is :func:`top_k`'s.

    Args:
        split, embeddings, points, recommender, k, shared: as for :func:`top_k`.
        item_ids: ``n_items`` ids naming the catalogue's rows (default: the row numbers as text).
        model, strategy: the embedding set's names, copied into the table.

    Returns:
        DataFrame with :data:`EXPLANATION_COLUMNS`, one row per (point, rank): ``rank`` from 1,
        ``bought`` whether the item is in the point's held-out truth (a hit), ``profile_size``
        the number of profile items; a point with an empty profile has ``closest_profile_item``
        "" and ``similarity`` NaN.

    Raises:
        ValueError: as :func:`top_k`; ``item_ids`` not of length ``split.n_items``.
    """
    ids = [str(i) for i in (range(split.n_items) if item_ids is None else item_ids)]
    if len(ids) != split.n_items:
        raise ValueError(f"{len(ids)} item ids for a split of {split.n_items} items")
    points = np.asarray(points, dtype=np.int64).reshape(-1)
    items, scores = top_k(split, embeddings, points, recommender, k, shared)
    name = create_recommender(recommender).name
    unit = l2_normalize(np.asarray(embeddings, dtype=np.float32))
    rows = []
    for r, p in enumerate(points):
        profile = np.asarray(split.profiles[p], dtype=np.int64)
        truth = set(int(t) for t in split.truth[p])
        sims = similarities(unit, profile) if len(profile) else None  # (len(profile), n_items), VisRank's rows
        for rank, (item, score) in enumerate(zip(items[r], scores[r]), start=1):
            if item < 0:
                break
            closest, sim = "", float("nan")
            if sims is not None:
                j = int(np.argmax(sims[:, item]))
                closest, sim = ids[profile[j]], float(sims[j, item])
            rows.append({"point": int(p), "user": str(split.users[p]), "model": model, "strategy": strategy,
                         "recommender": name, "rank": rank, "item_id": ids[item], "score": float(score),
                         "bought": int(item) in truth, "closest_profile_item": closest, "similarity": sim,
                         "profile_size": len(profile)})
    return pd.DataFrame(rows, columns=EXPLANATION_COLUMNS)


def sample_points(split: Split, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, split.n_users)`` test points drawn without replacement (seeded), sorted; the
    recommendation gallery draws its users with it, so both picture the same users."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(split.n_users, size=min(n, split.n_users), replace=False))


class Explorer:
    """A study's test users and embedding sets, to explain any user's recommendations.

    Args:
        cat: the study catalogue (``items.item_id``, ``items.image_path``; row order = the
            embeddings' rows).
        split: the evaluation's split over ``cat``.
        sets: ``{(model, strategy): (n_items, dim) array or .npy path}``, in the order offered;
            a path is read (memory-mapped) when its set is first asked for.

    Raises:
        ValueError: no embedding set.
    """

    def __init__(self, cat, split: Split, sets: dict):
        if not sets:
            raise ValueError("the explorer needs at least one embedding set; run notebooks 02-03 first")
        self.cat, self.split, self.sets = cat, split, dict(sets)
        self.item_ids = cat.items["item_id"].astype(str).tolist()
        self._loaded: dict = {}  # the last set read, with its shared similarities

    def users(self) -> pd.DataFrame:
        """One row per test point: ``point``, ``user``, ``profile_size``, ``n_bought`` (truth items),
        ``label`` (what the explorer's user list shows)."""
        s = self.split
        sizes = np.array([len(p) for p in s.profiles], dtype=np.int64)
        bought = np.array([len(t) for t in s.truth], dtype=np.int64)
        labels = [f"{u} ({n} before, {b} bought)" for u, n, b in zip(s.users, sizes, bought)]
        return pd.DataFrame({"point": np.arange(s.n_users), "user": [str(u) for u in s.users],
                             "profile_size": sizes, "n_bought": bought, "label": labels})

    def _set(self, key) -> tuple[np.ndarray, SharedSimilarities]:
        key = tuple(key)
        if key not in self.sets:
            raise ValueError(f"no embedding set {'/'.join(key)}; the explorer has {['/'.join(k) for k in self.sets]}")
        if key not in self._loaded:
            emb = self.sets[key]
            emb = np.load(emb, mmap_mode="r") if not isinstance(emb, np.ndarray) else emb
            emb = np.asarray(emb, dtype=np.float32)
            self._loaded = {key: (emb, SharedSimilarities(emb, self.split))}
        return self._loaded[key]

    def explain(self, point: int, key, recommender="visrank_max", k: int = 10) -> pd.DataFrame:
        """:func:`explain` for one test point under the embedding set ``key`` = ``(model, strategy)``.

        Raises:
            ValueError: an unknown set, a point outside the split, or a recommender that is not VisRank.
        """
        emb, shared = self._set(key)
        return explain(self.split, emb, [point], recommender, k, self.item_ids, model=key[0], strategy=key[1],
                       shared=shared)

    def history(self, point: int, last: int | None = None) -> list[str]:
        """The point's profile item ids (the split's order: sorted item rows), the ``last`` ones when given."""
        profile = [self.item_ids[i] for i in self.split.profiles[point]]
        return profile[-last:] if last else profile

    def bought(self, point: int) -> list[str]:
        """The point's held-out truth item ids."""
        return [self.item_ids[i] for i in self.split.truth[point]]

    def image_path(self, item_id: str):
        """The item's image file (None when the catalogue has none)."""
        if "image_path" not in self.cat.items:
            return None
        if not hasattr(self, "_row"):
            self._row = {iid: r for r, iid in enumerate(self.item_ids)}
        return self.cat.items["image_path"].iloc[self._row[str(item_id)]]
