"""Evaluation of several splits embedding set by embedding set, each set's similarity rows computed once.

A study evaluates the same embedding set on many splits (the main protocol, every other
protocol, cold and warm truth items, every availability rule). VisRank's cost is the
similarity rows ``e_j . E^T`` of the profile items, and these do not depend on the split. The
splits of one study are therefore evaluated set by set: one
:func:`visrec_utils.evaluation.recommenders.similarity_rows` over the profile items of every split
that uses the set (at most ``n_items`` rows, one set in memory at a time), then every split's
per-point evaluation from those rows. The results go to the evaluation cache
(:func:`visrec_utils.evaluation.experiment.evaluation_key`, one entry per recommender), where
:func:`~visrec_utils.evaluation.experiment.run_experiment` and the functions built on it find
them, so the tables (order, intervals, paired tests) are made by the same code and hold the
same numbers. Recommenders that fit a model without similarity rows (VBPR) have every fit started
ahead in a thread of their own (:meth:`visrec_utils.evaluation.factorization.VBPR.fit_ahead`), which
runs while the similarity rows and rankings are computed.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..catalogue.splits import Split, split_digest
from ..core.store import Store
from .experiment import evaluation_key, load_evaluation, save_evaluation
from .metrics import DEFAULT_KS, evaluate_many
from .recommenders import SharedSimilarities, make_recommender, make_score_fns, similarity_rows

log = logging.getLogger(__name__)


def evaluate_set_major(jobs, ks=DEFAULT_KS, seed: int = 0, cache_dir: str | Path | None = None,
                       progress: bool = True) -> int:
    """Fill the evaluation cache for the content-based recommenders of several splits, set by set.

    Args:
        jobs: ``[(split, {(model, strategy): (n_items, dim)}, recommenders)]``: each split's
            embedding sets (already filtered for leaks) and recommenders (names and/or objects;
            baselines are left out, :func:`~visrec_utils.evaluation.experiment.run_experiment`
            evaluates them once per split). A split without test points is left out.
        ks, seed: as in :func:`~visrec_utils.evaluation.experiment.run_experiment` (the cache
            key includes them: pass the same values).
        cache_dir: the evaluation cache (default ``$VISREC_CACHE`` or ``~/.cache/visrec``).
        progress: a tqdm bar over embedding sets.

    Returns:
        The number of (split, set, recommender) evaluations computed (the rest were cached).

    Raises:
        ValueError: an unknown recommender name.
    """
    store = Store(cache_dir or None)
    jobs = [(split, sets, [c for c in (make_recommender(r, seed=seed) for r in recs) if c.content_based])
            for split, sets, recs in jobs if split.n_users > 0]
    digests = {id(split): split_digest(split) for split, _, _ in jobs}
    order = list(dict.fromkeys(key for _, sets, configs in jobs if configs for key in sets))
    plans = []  # (key, todo, {id(emb): (emb, its splits)}) of every set with something to compute
    for key in order:
        todo, pending = [], set()  # (split, emb, configs still missing from the cache, their keys)
        for split, sets, configs in jobs:
            if key not in sets:
                continue
            emb = sets[key]
            configs = [c for c in configs if c.accepts(*key)]  # e.g. VBPR: frozen sets only
            keys = {c.name: evaluation_key(digests[id(split)], emb, c, ks, seed) for c in configs}
            missing = [c for c in configs  # a split evaluated twice (same content) is computed once
                       if keys[c.name] not in pending and load_evaluation(store, keys[c.name], c.name) is None]
            pending.update(keys[c.name] for c in missing)
            if missing:
                todo.append((split, emb, missing, keys))
        groups = {}
        for split, emb, missing, _ in todo:
            if any(c.uses_similarity_rows for c in missing):  # not for VBPR alone: it needs no rows
                groups.setdefault(id(emb), (emb, []))[1].append(split)
        if todo:
            plans.append((key, todo, groups))
    # model fits that need no similarity rows (VBPR) start now, one at a time in the order they are
    # needed, on the core that the evaluation's Python and single-threaded parts leave idle
    ahead = [c.fit_ahead(split, emb) for _, todo, _ in plans for split, emb, missing, _ in todo
             for c in missing if hasattr(c, "fit_ahead")]
    try:
        return _evaluate_plans(plans, ks, seed, store, progress)
    finally:  # an error (or Ctrl-C) leaves no fit queued behind it
        for fut in ahead:
            if fut is not None:
                fut.cancel()


def _evaluate_plans(plans, ks, seed, store, progress) -> int:
    """The loop of :func:`evaluate_set_major` over its plans; returns the evaluations computed."""
    from tqdm.auto import tqdm

    done = 0
    with ThreadPoolExecutor(max_workers=1) as pool:  # the next set's rows while this set is evaluated
        def submit(i):
            return {g: pool.submit(similarity_rows, emb, splits) for g, (emb, splits) in plans[i][2].items()} \
                if i < len(plans) else {}

        following = submit(0)
        for i in tqdm(range(len(plans)), desc="evaluate (embedding sets)", disable=not progress):
            key, todo, _ = plans[i]
            current, following = following, submit(i + 1)
            for split, emb, missing, keys in todo:
                needs = any(c.uses_similarity_rows for c in missing)
                shared = SharedSimilarities.from_rows(split, *current[id(emb)].result()) if needs else None
                fns = make_score_fns(split, emb, missing, seed=seed, shared=shared)
                per_point, tops = evaluate_many(fns, split, ks=ks, seed=seed, return_top=True)
                for c in missing:
                    save_evaluation(store, keys[c.name], c.name, per_point[c.name], tops[c.name])
                    done += 1
            log.debug("embedding set %s: %d split(s) evaluated from one set of similarity rows",
                      "/".join(key), len(todo))
            del current, shared, fns
    return done
