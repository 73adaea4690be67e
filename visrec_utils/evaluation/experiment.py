"""An experiment = split x embedding sets x recommenders x metrics, returned as tidy tables.

Content-based recommenders run once per embedding set (model, strategy), sharing one
computation of profile-to-item similarities; non-visual baselines run once with
``model = strategy = "-"``. Metrics are computed per test point, averaged per user (a user
has several test points under time replay), and every summary row carries the mean over
users with a 95% bootstrap interval that resamples users
(:func:`visrec_utils.evaluation.metrics.summarize`). Catalogue coverage@k is one number per
configuration, without an interval (:func:`visrec_utils.evaluation.metrics.coverage` says why).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalogue.protocols import get_protocol, make_split, study_params  # noqa: F401 (study_params re-exported)
from ..catalogue.splits import Split, restrict_truth, split_digest
from ..core.backends import check_backend
from ..core.numbers import with_interval
from ..core.skips import PartSkipped
from ..core.store import Store, content_key
from .metrics import DEFAULT_KS, EVAL_VERSION, coverage, evaluate_many, summarize
from .recommenders import BASELINES, CONTENT_RECOMMENDERS, make_recommender, make_score_fns
from .stats import PAIRED_COLUMNS

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["model", "strategy", "recommender", "metric", "k", "value", "ci_low", "ci_high", "n_users"]
SPLIT_COLUMNS = ["protocol", "availability", "leaky"]
#: Store kind of the cached per-point evaluations.
EVALUATIONS = "evaluations"


def per_user_means(per_point: pd.DataFrame) -> pd.DataFrame:
    """Average per-test-point metrics per user (identity when every user has one point).

    Returns:
        One row per user, ``n_points`` added after ``n_candidates``.
    """
    if per_point["user_id"].is_unique:
        return per_point.assign(n_points=1)
    g = per_point.groupby("user_id", sort=False)
    out = g.mean(numeric_only=True).reset_index()
    out["n_points"] = g.size().to_numpy()
    return out


_EMB_DIGESTS: dict = {}  # id(array) -> (array, digest): each embedding matrix is hashed once per process


def _embedding_digest(emb) -> str:
    """Content digest of an embedding matrix (dtype, shape, bytes), memoised per array object."""
    hit = _EMB_DIGESTS.get(id(emb))
    if hit is not None and hit[0] is emb:
        return hit[1]
    a = np.ascontiguousarray(emb)
    digest = content_key(f"{a.dtype}{a.shape}", a.tobytes(), length=32)
    if len(_EMB_DIGESTS) > 256:
        _EMB_DIGESTS.clear()
    _EMB_DIGESTS[id(emb)] = (emb, digest)
    return digest


def evaluation_key(digest: str, emb, config, ks, seed) -> str:
    """Content key of one recommender's evaluation on one split and embedding set: metric
    version, split digest, the recommender's configuration (``repr``: its class and parameters),
    ks, seed and the embedding digest. Per recommender, so a part that evaluates a subset of the
    recommenders on the same split (the every-protocol table, the availability rules) reuses
    the main evaluation's per-point results."""
    parts = [EVAL_VERSION, digest, repr(config), list(ks), seed]
    if emb is not None:
        parts.append(_embedding_digest(emb))
    return content_key(*parts, length=32)


def load_evaluation(store: Store, key: str, name: str):
    """One recommender's cached evaluation ``(per-point DataFrame, (n_points, max(ks)) top lists)``
    under ``key`` (:func:`evaluation_key`), or None when absent or incomplete."""
    if not store.has(EVALUATIONS, key, ".parquet"):  # written last: present only when complete
        return None
    tops = store.get_arrays(EVALUATIONS, key)
    if tops is None or name not in tops:
        return None
    return store.get_table(EVALUATIONS, key), tops[name]


def save_evaluation(store: Store, key: str, name: str, per_point: pd.DataFrame, top: np.ndarray) -> None:
    """Cache one recommender's evaluation under ``key`` (what :func:`load_evaluation` reads)."""
    store.put_arrays(EVALUATIONS, key, **{name: top})
    store.put_table(EVALUATIONS, key, per_point)  # the parquet last: both exist only when complete


def run_experiment(
    split: Split,
    embedding_sets: dict[tuple[str, str], np.ndarray],
    recommenders=CONTENT_RECOMMENDERS,
    baselines=BASELINES,
    ks=DEFAULT_KS,
    seed: int = 0,
    n_resamples: int = 1000,
    progress: bool = True,
    backend: str = "local",
    ray_address: str | None = None,
    cache_dir: str | Path | bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every (embedding set, recommender) pair and every baseline on ``split``.

    Args:
        split: any protocol's split (:mod:`visrec_utils.catalogue.splits`).
        embedding_sets: ``{(model, strategy): (n_items, dim) float32}``.
        recommenders: content-based recommenders, names and/or objects (registry of
            :mod:`visrec_utils.evaluation.recommenders`); rows are labelled with their ``name``.
            Each runs on the sets it ``accepts`` (every set, except VBPR: frozen sets of whole models).
        baselines: non-visual recommenders, names and/or objects.
        ks: cut-offs for the @k metrics.
        seed: seed of tie-breaking, random baseline and bootstrap.
        n_resamples: bootstrap resamples.
        backend: ``"local"``, or ``"ray"`` to shard the test points over a Ray cluster
            (:func:`visrec_utils.evaluation.ray_evaluate.ray_evaluate`; the same numbers).
        ray_address: Ray cluster address (default ``$RAY_ADDRESS``, else a local Ray).
        cache_dir: per-point results are cached in the :class:`visrec_utils.core.store.Store` at
            ``cache_dir`` (kind ``"evaluations"``: per recommender, a parquet of per-point metrics
            and an npz of its top lists), keyed by the split's content
            (:func:`visrec_utils.catalogue.splits.split_digest`), the embedding bytes, the
            recommender's configuration (:func:`evaluation_key`; entries written by
            :func:`visrec_utils.evaluation.set_major.evaluate_set_major` are found here), ks, seed and
            :data:`visrec_utils.evaluation.metrics.EVAL_VERSION`; default ``$VISREC_CACHE`` or
            ``~/.cache/visrec``; False disables it.

    Returns:
        (metrics: tidy DataFrame with :data:`METRIC_COLUMNS` plus :data:`SPLIT_COLUMNS`, one
        row per (model, strategy, recommender, metric, k), coverage included; per_user: one
        row per (configuration, user) with a column per metric).

    Raises:
        PartSkipped: the split has no test point, or there is nothing to evaluate (no
            embedding set or no content-based recommender, and no baseline).
        ValueError: an unknown recommender name, or two recommenders with the same name.
    """
    from tqdm.auto import tqdm

    if split.n_users == 0:
        raise PartSkipped(f"no test user under {split.protocol} ({split.describe()})")
    require_rankable(split)
    content = [make_recommender(r, seed=seed) for r in recommenders]  # configured objects
    plain = [make_recommender(r, seed=seed) for r in baselines]
    groups = [((m, s), [c for c in content if c.accepts(m, s)]) for (m, s) in embedding_sets]  # VBPR: frozen only
    groups.append((("-", "-"), plain))
    if not any(configs for _, configs in groups):
        raise PartSkipped(nothing_to_evaluate(embedding_sets, recommenders, baselines))
    store = None if cache_dir is False else Store(cache_dir or None)
    digest = split_digest(split) if store else ""
    summaries, per_users = [], []
    for (model, strategy), configs in tqdm(groups, desc=f"evaluate {split.protocol}", disable=not progress):
        if not configs:
            continue
        names = [c.name for c in configs]
        if len(set(names)) < len(names):
            raise ValueError(f"two recommenders are named {next(n for n in names if names.count(n) > 1)!r}; "
                             "give each configuration its own name")
        emb = embedding_sets.get((model, strategy))
        keys = {c.name: evaluation_key(digest, emb, c, ks, seed) for c in configs} if store else {}
        per_point, tops = {}, {}
        for c in configs if store else ():
            cached = load_evaluation(store, keys[c.name], c.name)
            if cached is not None:
                log.debug("evaluation of %s/%s/%s under %s: cached", model, strategy, c.name, split.protocol)
                per_point[c.name], tops[c.name] = cached
        todo = [c for c in configs if c.name not in per_point]
        if todo:
            if check_backend(backend) == "ray":
                from .ray_evaluate import ray_evaluate

                new_pp, new_tops = ray_evaluate(split, emb, todo, ks=ks, seed=seed, address=ray_address)
            else:
                new_pp, new_tops = evaluate_many(make_score_fns(split, emb, todo, seed=seed), split, ks=ks,
                                                 seed=seed, return_top=True)
            for c in todo:
                if store:
                    save_evaluation(store, keys[c.name], c.name, new_pp[c.name], new_tops[c.name])
            per_point.update(new_pp)
            tops.update(new_tops)
        for rec in names:
            pp = per_point[rec]
            labels = {"model": model, "strategy": strategy, "recommender": rec}
            pu = per_user_means(pp)
            cov = []
            for k in ks:
                cov.append({**labels, "metric": "coverage", "k": k, "value": coverage(tops[rec], split.n_items, k),
                            "ci_low": np.nan, "ci_high": np.nan, "n_users": pu["user_id"].nunique()})
            summaries.append(pd.concat([summarize(pu.drop(columns=["n_points"]), labels, n_resamples=n_resamples,
                                                  seed=seed), pd.DataFrame(cov)], ignore_index=True))
            per_users.append(pu.assign(**labels))
    split_labels = {"protocol": split.protocol, "availability": split.availability, "leaky": split.leaky}
    metrics = pd.concat(summaries, ignore_index=True)[METRIC_COLUMNS].assign(**split_labels)
    return metrics, pd.concat(per_users, ignore_index=True)


def left_out(embedding_sets: dict, recommenders, baselines, ks) -> list[tuple[str, str]]:
    """The parts of the main evaluation that these parameters leave out, ``[(part, reason)]``
    (for :meth:`visrec_utils.core.skips.SkipLog.skip`); empty with the defaults."""
    out = []
    if not len(recommenders) or not embedding_sets:
        why = "recommenders is empty" if not len(recommenders) else "there is no embedding set to evaluate"
        out.append(("content-based recommenders", f"{why}, so only the baselines were evaluated"))
    if not len(baselines):
        out.append(("baselines", "baselines is empty, so no non-visual baseline was evaluated"))
    if not len(ks):
        out.append(("@k metrics", "ks is empty, so only AUC, MRR and MAP were computed"))
    return out


def require_interval_users(split: Split) -> None:
    """Raises :class:`PartSkipped` when ``split`` has fewer than 2 test users: a bootstrap interval
    resamples users, so the tables then show means without intervals."""
    n = len(set(split.users.tolist()))
    if n < 2:
        raise PartSkipped(f"a 95% bootstrap interval resamples test users and needs at least 2, and {split.protocol} "
                          f"has {n}, so the tables show means without intervals")


def empty_metrics(*extra: str) -> pd.DataFrame:
    """A metrics table with no row: :data:`METRIC_COLUMNS`, :data:`SPLIT_COLUMNS` and ``extra``
    columns (what a skipped part writes, so no earlier run's table is left behind)."""
    return pd.DataFrame(columns=[*METRIC_COLUMNS, *SPLIT_COLUMNS, *extra])


def require_rankable(split, chunk: int = 1024) -> None:
    """Raises :class:`PartSkipped` when no test point has a candidate besides its truth items:
    then every ranking, random included, puts the truth first (nDCG = 1, AUC undefined) and the
    metrics say nothing (e.g. a slice of 2 or 3 items).

    Args:
        split: the evaluation's split; chunk: test points per block of candidate masks
            (``(chunk, n_items)`` bool at a time).
    """
    for start in range(0, split.n_users, chunk):
        pos = np.arange(start, min(start + chunk, split.n_users))
        if (split.candidate_masks(pos).sum(1) > np.array([len(split.truth[u]) for u in pos])).any():
            return
    raise PartSkipped(f"every test user's only candidates under {split.protocol} are the items they bought, so any "
                      "ranking, random included, is perfect and the metrics would say nothing; use more items "
                      "(--max-items)")


def empty_per_user() -> pd.DataFrame:
    """A per-user table with no row (configuration and ``user_id`` columns), what a skipped main
    evaluation writes to ``results/per_user.parquet``."""
    return pd.DataFrame({c: pd.Series(dtype=str) for c in ("model", "strategy", "recommender", "user_id")})


def nothing_to_evaluate(embedding_sets, recommenders, baselines) -> str:
    """The sentence saying why a set of configurations is empty (for :class:`PartSkipped`)."""
    visual = "no embedding set" if not embedding_sets else "no content-based recommender (recommenders is empty)"
    return f"nothing to evaluate: {visual} and no baseline (baselines is empty)"


def _skipper(on_skip):
    """``on_skip`` or a no-op: the callback ``(part, reason)`` of the functions below."""
    return on_skip or (lambda part, reason: None)


def cold_warm_breakdown(split: Split, embedding_sets: dict, recommenders=("visrank_max",), baselines=BASELINES,
                        ks=DEFAULT_KS, seed: int = 0, n_resamples: int = 1000, progress: bool = False,
                        backend: str = "local", ray_address: str | None = None, enabled: bool = True,
                        on_skip=None, subs: dict | None = None, cache_dir: str | Path | bool | None = None) -> pd.DataFrame:
    """Metrics on cold and on warm truth items separately (:func:`visrec_utils.catalogue.splits.restrict_truth`).

    Args:
        enabled: False (the notebook's ``cold_warm``) skips the breakdown.
        on_skip: called ``on_skip(part, reason)`` for a half with no test point (e.g. no user
            bought a cold item), e.g. :meth:`visrec_utils.core.skips.SkipLog.skip`.
        subs: optional ``{"cold": Split, "warm": Split}`` already made by :func:`cold_warm_splits`.
        cache_dir: the evaluation cache (:func:`run_experiment`).

    Returns:
        Tidy metrics like :func:`run_experiment` with a ``truth`` column ("cold", "warm").

    Raises:
        PartSkipped: ``enabled`` is False, neither half has a test point, or there is nothing
            to evaluate.
    """
    if not enabled:
        raise PartSkipped("cold_warm is False, which switches the breakdown off")
    subs = subs or cold_warm_splits(split)
    if not any(sub.n_users for sub in subs.values()):
        raise PartSkipped("no test user has a cold or a warm truth item")
    parts = []
    for which, sub in subs.items():
        if sub.n_users == 0:
            _skipper(on_skip)(f"cold/warm breakdown: {which}", f"no test user has a {which} truth item")
            continue
        m, _ = run_experiment(sub, embedding_sets, recommenders, baselines, ks=ks, seed=seed,
                              n_resamples=n_resamples, progress=progress, backend=backend, ray_address=ray_address,
                              cache_dir=cache_dir)
        parts.append(m.assign(truth=which))
    return pd.concat(parts, ignore_index=True)


def cold_warm_splits(split: Split) -> dict:
    """``{"cold": Split, "warm": Split}``: ``split`` with truth restricted to cold, then warm items
    (:func:`visrec_utils.catalogue.splits.restrict_truth`), as :func:`cold_warm_breakdown` uses."""
    return {which: restrict_truth(split, which) for which in ("cold", "warm")}


def leak_free_sets(embedding_sets: dict, protocol: str, uses_purchases) -> dict:
    """Embedding sets that may be evaluated under ``protocol`` without leaking test purchases.

    Sets trained on purchases (e.g. ``bpr_projection``, ``partial_bpr``) saw the
    leave-last-basket-out training part; under another protocol some of those purchases are
    test purchases, so only sets that never saw a purchase are kept there.

    Args:
        embedding_sets: ``{(model, strategy): (n_items, dim)}``.
        protocol: protocol name.
        uses_purchases: ``{(model, strategy): bool}``, whether each set's training saw purchases
            (the embedding-set manifest's ``uses_purchases`` column); every set needs an entry.

    Returns:
        The kept sets, in their order (all of them under ``leave_last_basket_out``).

    Raises:
        ValueError: a set without an entry in ``uses_purchases`` (named).
    """
    uses_purchases = uses_purchases if uses_purchases is not None else {}
    missing = [k for k in embedding_sets if tuple(k) not in uses_purchases]
    if missing:
        raise ValueError(f"uses_purchases has no entry for the embedding set {'/'.join(missing[0])} "
                         f"({len(missing)} set(s) missing); pass the manifest's uses_purchases for every set")
    if protocol == "leave_last_basket_out":
        return dict(embedding_sets)
    return {k: v for k, v in embedding_sets.items() if not uses_purchases[tuple(k)]}


def study_protocols(protocol: str, other_protocols) -> list[str]:
    """The protocols of the "every protocol" part: the main one, then the others.

    Raises:
        PartSkipped: ``other_protocols`` names no protocol besides the main one.
    """
    others = [p for p in other_protocols if p != protocol]
    if not others:
        raise PartSkipped(f"other_protocols names no protocol besides the main one ({protocol}), whose "
                          "metrics are the main table above")
    return [protocol, *others]


def run_protocols(cat, embedding_sets: dict, protocols, recommenders=("visrank_max", "hybrid_itemknn_visrank"),
                  baselines=BASELINES, reference=("-", "-", "random"), *, uses_purchases=None,
                  availability: str = "auto", one_of_a_kind: bool = False, cut: str | float = 0.8,
                  split_kwargs: dict | None = None, ks=DEFAULT_KS, seed: int = 0, n_resamples: int = 1000,
                  progress: bool = True, backend: str = "local", ray_address: str | None = None, on_skip=None,
                  splits: dict | None = None, cache_dir: str | Path | bool | None = None):
    """The same configurations under several protocols, with paired tests per protocol.

    Args:
        cat: catalogue.
        embedding_sets: ``{(model, strategy): (n_items, dim)}``; filtered per protocol by
            :func:`leak_free_sets` with ``uses_purchases``.
        protocols: names from :func:`visrec_utils.catalogue.protocols.list_protocols`.
        recommenders, baselines: names and/or objects (:func:`run_experiment`).
        reference: configuration every other one is compared to, within each protocol.
        uses_purchases: ``{(model, strategy): bool}`` for every embedding set (:func:`leak_free_sets`).
        availability, one_of_a_kind, cut: the split settings of every protocol (see
            :func:`visrec_utils.catalogue.protocols.study_params`; ``seed`` also seeds the random hold-out).
        split_kwargs: optional ``{protocol: kwargs}`` overriding those settings per protocol.
        on_skip: called ``on_skip(part, reason)`` for a protocol with no test user or nothing to
            evaluate, and for a protocol's paired tests without the reference.
        splits: optional ``{protocol: Split}`` already built with these settings (reused, not rebuilt).
        cache_dir: the evaluation cache (:func:`run_experiment`).

    Returns:
        (metrics: tidy with :data:`SPLIT_COLUMNS`; paired: :func:`visrec_utils.evaluation.stats.paired_comparison`
        rows with a ``protocol`` column, Holm-corrected within each protocol and, inside it, within
        each family (primary: :data:`visrec_utils.evaluation.stats.PRIMARY`, secondary: the rest),
        since each protocol asks its own question (empty when no protocol has the reference);
        descriptions: ``{protocol: one line}``).

    Raises:
        PartSkipped: no protocol has a test user and something to evaluate.
        ValueError: an unknown protocol, an invalid setting, or a set missing from ``uses_purchases``.
    """
    from .stats import paired_comparison

    split_kwargs = split_kwargs or {}
    skip = _skipper(on_skip)
    metrics, paired, described = [], [], {}
    for name in protocols:
        kw = study_params(name, availability=availability, one_of_a_kind=one_of_a_kind, seed=seed, cut=cut)
        try:
            split = (splits or {}).get(name) or make_split(cat, name, **{**kw, **split_kwargs.get(name, {})})
            described[name] = split.describe()
            m, pu = run_experiment(split, leak_free_sets(embedding_sets, name, uses_purchases), recommenders,
                                   baselines, ks=ks, seed=seed, n_resamples=n_resamples, progress=progress,
                                   backend=backend, ray_address=ray_address, cache_dir=cache_dir)
        except PartSkipped as e:
            skip(f"every protocol: {name}", e)
            continue
        metrics.append(m)
        try:
            paired.append(paired_comparison(pu, reference, n_resamples=n_resamples, seed=seed).assign(protocol=name))
        except PartSkipped as e:
            skip(f"every protocol: {name} paired tests", e)
    if not metrics:
        raise PartSkipped(f"no protocol of {list(protocols)} has a test user and a configuration to evaluate")
    paired = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame(columns=[*PAIRED_COLUMNS, "protocol"])
    return pd.concat(metrics, ignore_index=True), paired, described


def availability_sensitivity(cat, embedding_sets: dict, modes, protocol: str = "leave_last_basket_out",
                             recommenders=("visrank_max",), baselines=("random", "popularity"), *,
                             uses_purchases=None, one_of_a_kind: bool = False, cut: str | float = 0.8,
                             ks=DEFAULT_KS, seed: int = 0, n_resamples: int = 1000, progress: bool = False,
                             backend: str = "local", ray_address: str | None = None, on_skip=None,
                             splits: dict | None = None, cache_dir: str | Path | bool | None = None) -> pd.DataFrame:
    """The main metrics under each availability rule.

    Args:
        cat: catalogue.
        embedding_sets: ``{(model, strategy): (n_items, dim)}``, filtered by :func:`leak_free_sets`.
        modes: availability rules (:data:`visrec_utils.catalogue.splits.AVAILABILITY`).
        protocol: a time-aware protocol (availability rules judge items at a test time).
        recommenders, baselines: names and/or objects (:func:`run_experiment`).
        uses_purchases: ``{(model, strategy): bool}`` for every embedding set.
        one_of_a_kind, cut, seed: the split settings (:func:`visrec_utils.catalogue.protocols.make_split`).
        on_skip: called ``on_skip(part, reason)`` for a rule the catalogue cannot support
            (``items_table`` without dates) or that leaves no test user or nothing to evaluate.
        splits: optional ``{mode: Split}`` already built with these settings (reused, not rebuilt).
        cache_dir: the evaluation cache (:func:`run_experiment`).

    Returns:
        Tidy metrics like :func:`run_experiment`, ``availability`` naming the rule, plus ``test_points``.

    Raises:
        PartSkipped: ``modes`` is empty, or no rule could be evaluated.
        ValueError: a protocol that ignores time (``random_holdout``), or a set missing from
            ``uses_purchases``.
    """
    if not len(modes):
        raise PartSkipped("sensitivity names no availability rule to compare")
    if not get_protocol(protocol).time_aware:
        raise ValueError(f"{protocol} ignores time, so availability rules do not apply to it; "
                         "compare them under a time-aware protocol (e.g. leave_last_basket_out)")
    sets = leak_free_sets(embedding_sets, protocol, uses_purchases)
    has_dates = "available_from" in cat.items and cat.items["available_from"].notna().any()
    parts = []
    for mode in modes:
        try:
            if mode == "items_table" and not has_dates:
                raise PartSkipped("the items table has no available_from dates")
            split = (splits or {}).get(mode) or make_split(cat, protocol, availability=mode,
                                                          one_of_a_kind=one_of_a_kind, seed=seed, cut=cut)
            parts.append(run_experiment(split, sets, recommenders, baselines, ks=ks, seed=seed,
                                        n_resamples=n_resamples, progress=progress, backend=backend,
                                        ray_address=ray_address, cache_dir=cache_dir)[0]
                         .assign(test_points=split.n_users))
        except PartSkipped as e:
            _skipper(on_skip)(f"availability sensitivity: {mode}", e)
    if not parts:
        raise PartSkipped(f"no availability rule of {list(modes)} could be evaluated")
    return pd.concat(parts, ignore_index=True)


def format_table(metrics: pd.DataFrame, index=("model", "strategy", "recommender"), ks=(20,),
                 names=("auc", "mrr", "ndcg", "recall", "coverage", "novelty")) -> pd.DataFrame:
    """Wide table for reports: one row per ``index``, one column per metric, cells
    ``"mean [low, high]"`` at three significant figures (:func:`visrec_utils.core.numbers.with_interval`);
    metrics with a cut-off are shown at the given ``ks``."""
    d = metrics[metrics["metric"].isin(names) & ((metrics["k"] == 0) | metrics["k"].isin(ks))].copy()
    d["cell"] = [with_interval(v, lo, hi)  # three significant figures, as every report; no interval: coverage, n < 2
                 for v, lo, hi in zip(d["value"], d["ci_low"], d["ci_high"])]
    d["metric"] = d["metric"] + d["k"].map(lambda k: f"@{k}" if k else "")
    order = [c for n in names for c in d["metric"].unique() if c.split("@")[0] == n]
    return d.pivot_table(index=list(index), columns="metric", values="cell", aggfunc="first", sort=False)[order]
