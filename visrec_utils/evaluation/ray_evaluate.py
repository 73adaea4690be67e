"""Evaluation sharded by users over Ray tasks (the ``ray`` backend of evaluation); the same numbers
as one process (tie-breaking draws per test point)."""
from __future__ import annotations

import numpy as np

from ..core.backends import init_ray, shard_points


def _evaluate_shard(split, embeddings, names, ks, seed, points):
    from .metrics import evaluate_many
    from .recommenders import make_score_fns

    fns = make_score_fns(split, embeddings, names, seed=seed, points=points)
    return evaluate_many(fns, split, ks=ks, seed=seed, return_top=True, points=points)


def ray_evaluate(split, embeddings: np.ndarray | None, names, ks=(10, 20, 50), seed: int = 0,
                 n_shards: int | None = None, address: str | None = None):
    """:func:`visrec_utils.evaluation.metrics.evaluate_many` of the recommenders with the test points
    sharded over Ray tasks; returns exactly what the local call returns (``return_top=True``).

    Each task fits the recommenders on the whole split (the split and the embeddings travel
    once through the object store) and scores only its shard's points; VisRank computes only
    that shard's profile rows.

    Args:
        split: :class:`visrec_utils.catalogue.splits.Split`.
        embeddings: ``(n_items, dim) float32`` for content-based names, None for baselines.
        names: recommender names and/or objects (:func:`visrec_utils.evaluation.recommenders.create_recommender`).
        n_shards: tasks (default: twice the cluster's CPUs, at most one per 64 points).
        address: Ray cluster address.

    Returns:
        (``{name: per-point DataFrame}``, ``{name: (n_points, max(ks)) int64}`` top lists), keyed
        by each recommender's ``name``.
    """
    import pandas as pd

    from .recommenders import make_recommender

    ray = init_ray(address)
    n_shards = n_shards or max(1, min(2 * int(ray.cluster_resources().get("CPU", 1)), split.n_users // 64))
    task = ray.remote(_evaluate_shard)
    split_ref, emb_ref = ray.put(split), ray.put(embeddings)
    configs = [make_recommender(n, seed=seed) for n in names]  # configured objects travel to the tasks
    refs = [task.remote(split_ref, emb_ref, configs, tuple(ks), seed, pos)
            for pos in shard_points(split.n_users, n_shards)]
    parts = ray.get(refs)
    labels = [c.name for c in configs]
    per_point = {n: pd.concat([p[0][n] for p in parts], ignore_index=True) for n in labels}
    tops = {n: np.concatenate([p[1][n] for p in parts]) for n in labels}
    return per_point, tops
