"""Top-k retrieval from a FAISS index, for catalogues too large to score in full (past ~10^6 items).

Embeddings are L2-normalised, so inner product = cosine similarity (the VisRank similarity).
Index kinds (Johnson, Douze & Jegou, "Billion-scale similarity search with GPUs", 2019; the
``faiss`` library):

* ``"flat"``: exact inner-product search (``IndexFlatIP``), the reference in tests;
* ``"ivf"``: inverted lists over a k-means coarse quantiser (``IndexIVFFlat``), ``nprobe`` lists
  searched per query;
* ``"hnsw"``: a hierarchical navigable small-world graph (``IndexHNSWFlat``, Malkov & Yashunin
  2018), ``ef_search`` candidates per query.

:func:`visrank_max_topk` gives VisRank-max's top k per user from the index: an item in a user's
top k whose best profile match is item j has fewer than k candidates and at most ``|profile|``
profile items closer to j, so it is among j's ``k + |profile|`` nearest neighbours; searching
that many per profile item and merging by maximum is exact with a flat index (up to ties).
:func:`recall_at_k` measures an approximate index against the exact one.
FAISS is an optional extra: ``pip install -e '.[faiss]'``.
"""
from __future__ import annotations

import numpy as np

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("retrieval needs FAISS: pip install -e '.[faiss]'") from e
    return faiss


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_index(embeddings: np.ndarray, kind: str = "flat", nlist: int | None = None, nprobe: int = 16,
                hnsw_m: int = 32, ef_search: int = 128, ef_construction: int = 200, seed: int = 0):
    """An inner-product index over L2-normalised ``(n_items, dim)`` embeddings.

    Args:
        kind: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"``.
        nlist: IVF lists (default ``4 * sqrt(n_items)``); trained on at most 256 points per list.
        nprobe: IVF lists searched per query (``nprobe = nlist`` is exact).
        hnsw_m: HNSW graph degree; ef_search / ef_construction: HNSW search / build breadth.
        seed: k-means seed (IVF).

    Raises:
        ValueError: an unknown kind, or a non-finite embedding row (say which row).
        ImportError: faiss is not installed.
    """
    faiss = _faiss()
    if kind not in INDEX_KINDS:
        raise ValueError(f"kind must be one of {INDEX_KINDS}, not {kind!r}")
    x = _unit(embeddings)
    bad = np.flatnonzero(~np.isfinite(x).all(1))
    if bad.size:
        raise ValueError(f"embedding row {bad[0]} is not finite ({bad.size} rows); drop those items first")
    n, d = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = nlist or max(1, int(4 * np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(n, size=min(n, 256 * nlist), replace=False)]
        index.cp.seed = seed
        index.train(train)
        index.nprobe = min(nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    index.add(x)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest items of each query: (cosines ``(n_q, k) float32``, ids ``(n_q, k) int64``,
    ``-1`` where the index holds fewer)."""
    return index.search(_unit(queries), k)


def visrank_max_topk(index, embeddings: np.ndarray, profiles, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """VisRank-max's top ``k`` items per user from an index (see the module docstring).

    Args:
        index: from :func:`build_index` over ``embeddings``.
        embeddings: ``(n_items, dim)``.
        profiles: per user, an array of profile item indices (non-empty).
        k: list length.
        exclude: per user, items that may not be recommended (default: the profile).

    Returns:
        (scores ``(n_users, k) float32`` best first, items ``(n_users, k) int64``; ``-1`` pads).
    """
    exclude = profiles if exclude is None else exclude
    x = _unit(embeddings)
    out_s = np.full((len(profiles), k), -np.inf, np.float32)
    out_i = np.full((len(profiles), k), -1, np.int64)
    for u, (prof, excl) in enumerate(zip(profiles, exclude)):
        prof = np.asarray(prof, dtype=np.int64)
        sims, ids = index.search(x[prof], min(index.ntotal, k + len(excl)))
        sims, ids = sims.ravel(), ids.ravel()
        keep = (ids >= 0) & ~np.isin(ids, excl)
        sims, ids = sims[keep], ids[keep]
        order = np.lexsort((ids, -sims))  # best first; the max per item is its first occurrence
        ids, first = np.unique(ids[order], return_index=True)
        best = sims[order][first]
        top = np.lexsort((ids, -best))[:k]
        out_s[u, :len(top)], out_i[u, :len(top)] = best[top], ids[top]
    return out_s, out_i


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact top-k list found in the approximate one (``-1`` ignored)."""
    hits = [len(np.intersect1d(a[a >= 0], e[e >= 0])) / max(1, (e >= 0).sum()) for a, e in zip(approx, exact)]
    return float(np.mean(hits)) if hits else float("nan")
