"""An experiment = split x embedding sets x recommenders x metrics, returned as tidy tables.

Content-based recommenders run once per embedding set (model, strategy), sharing one
computation of profile-to-item similarities; non-visual baselines run once with
``model = strategy = "-"``. Every summary row carries the mean over test users
and a 95% bootstrap interval that resamples users (:func:`visrec_utils.metrics.summarize`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import Split
from .metrics import DEFAULT_KS, evaluate_many, summarize
from .recommenders import BASELINES, CONTENT_RECOMMENDERS, SharedSimilarities, VisRank, make_recommender

METRIC_COLUMNS = ["model", "strategy", "recommender", "metric", "k", "value", "ci_low", "ci_high", "n_users"]


def run_experiment(
    split: Split,
    embedding_sets: dict[tuple[str, str], np.ndarray],
    recommenders=CONTENT_RECOMMENDERS,
    baselines=BASELINES,
    ks=DEFAULT_KS,
    seed: int = 0,
    n_resamples: int = 1000,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every (embedding set, recommender) pair and every baseline on ``split``.

    Args:
        split: leave-last-basket-out split.
        embedding_sets: ``{(model, strategy): (n_items, dim) float32}``.
        recommenders: content-based recommender names (registry of
            :mod:`visrec_utils.recommenders`).
        baselines: non-visual recommender names.
        ks: cut-offs for the @k metrics.
        seed: seed of tie-breaking, random baseline and bootstrap.
        n_resamples: bootstrap resamples.

    Returns:
        (metrics: tidy DataFrame with :data:`METRIC_COLUMNS`, one row per
        (model, strategy, recommender, metric, k); per_user: one row per (configuration, user)
        with a column per metric).
    """
    from tqdm.auto import tqdm

    groups = [((m, s), list(recommenders)) for (m, s) in embedding_sets] + [(("-", "-"), list(baselines))]
    summaries, per_users = [], []
    for (model, strategy), names in tqdm(groups, desc="evaluate", disable=not progress):
        emb = embedding_sets.get((model, strategy))
        shared = SharedSimilarities(emb, split) if emb is not None else None
        fns = {}
        for rec in names:
            r = make_recommender(rec, seed=seed)
            fns[rec] = (r.fit(split, emb, shared=shared) if isinstance(r, VisRank) else r.fit(split, emb)).score
        for rec, pu in evaluate_many(fns, split, ks=ks, seed=seed).items():
            labels = {"model": model, "strategy": strategy, "recommender": rec}
            summaries.append(summarize(pu, labels, n_resamples=n_resamples, seed=seed))
            per_users.append(pu.assign(**labels))
    metrics = pd.concat(summaries, ignore_index=True)[METRIC_COLUMNS]
    return metrics, pd.concat(per_users, ignore_index=True)
