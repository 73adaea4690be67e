"""Stage ``evaluate`` (notebook 04): every embedding set and recommender under the main protocol,
paired differences against a reference, every other protocol, cold/warm items, item popularity and age
slices, and availability rules."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...catalogue import data, protocols, splits
from ...core.layout import StudyLayout
from ...core.skips import SkipLog
from ...core.skips import PartSkipped
from ...evaluation import experiment, set_major, stats
from ...evaluation import slices as slicing
from ...evaluation.recommenders import VBPR, create_recommender
from ...features import embedding_sets
from ...reports import gallery, labels, plots
from .stage_extract import not_pictured

NOTEBOOK = "04_recommendation_eval"

#: Recommender classes whose configurations among ``recommenders`` every later part (protocols,
#: cold/warm, slices, availability) also runs: VBPR, on the frozen sets of whole models it accepts.
IN_EVERY_PART = (VBPR,)


@dataclass
class Evaluated:
    """What :func:`evaluate` returns (every table is also in ``<out>/results``).

    Attributes:
        split_text: the main split described in words.
        metrics, per_user: tidy metrics with 95% intervals, and per-user values (main protocol).
        paired: per-user paired differences against the reference configuration.
        by_protocol, paired_protocols: the same under every protocol (frozen and purchase-free sets).
        protocol_text: one line per protocol saying what it tests.
        cold_warm, availability: metrics by cold/warm truth items and by availability rule.
        popularity, item_age: metrics by the truth items' popularity and age at the test point
            (:mod:`visrec_utils.evaluation.slices`; frozen ImageNet sets with VisRank-max and VBPR, and the
            baselines).
        set_names: the (model, strategy) sets evaluated.
    """

    split_text: str
    set_names: list
    metrics: pd.DataFrame
    per_user: pd.DataFrame
    paired: pd.DataFrame
    by_protocol: pd.DataFrame
    paired_protocols: pd.DataFrame
    cold_warm: pd.DataFrame
    availability: pd.DataFrame
    protocol_text: dict = field(default_factory=dict)
    popularity: pd.DataFrame = field(default_factory=slicing.empty_slices)
    item_age: pd.DataFrame = field(default_factory=slicing.empty_slices)

    @property
    def shown_paired(self) -> pd.DataFrame:
        """The primary comparisons against the reference (:func:`short_paired`)."""
        return short_paired(self.paired)

    @property
    def shown_paired_protocols(self) -> pd.DataFrame:
        """The primary comparisons under every protocol (:func:`short_paired`, by protocol)."""
        return short_paired(self.paired_protocols, first=("protocol",))


#: Columns of :func:`short_paired` (after any ``first`` columns).
SHORT_COLUMNS = ["configuration", "metric", "mean_diff", "ci_low", "ci_high", "p_holm", "verdict", "why"]


def main_split(cat, protocol: str, availability: str, one_of_a_kind: bool, temporal_cut, n_negatives: int, seed: int):
    """The main protocol's split as notebooks 04 and 06 build it (same parameters, same split):
    :func:`visrec_utils.catalogue.protocols.make_split`, then ``n_negatives`` sampled candidates
    per test point when positive. Returns (split, the protocol keyword arguments shared with the
    other protocols). Raises ValueError: an unknown protocol or availability rule."""
    common = dict(availability=availability, one_of_a_kind=one_of_a_kind, seed=seed, cut=temporal_cut)
    split = protocols.make_split(cat, protocol, **protocols.study_params(protocol, **common))
    if n_negatives > 0:
        split = splits.sample_negatives(split, n_negatives, seed=seed)
    return split, common


def purchase_flags(manifest: pd.DataFrame) -> dict:
    """``{(model, strategy): saw purchases}`` from the embedding-set manifest; unknown counts as
    True (it may leak test purchases, so leak-free protocols leave it out)."""
    return {(r.model, r.strategy): True if r.uses_purchases is None else bool(r.uses_purchases)
            for r in manifest.itertuples()}


def short_paired(paired: pd.DataFrame, first=()) -> pd.DataFrame:
    """A paired table as a notebook shows it: the primary family only, one row per comparison.

    Args:
        paired: :func:`visrec_utils.evaluation.stats.paired_comparison` rows (a table without a
            ``family`` column is re-judged with :func:`visrec_utils.evaluation.stats.holm`).
        first: columns kept in front and grouped on (e.g. ``("protocol",)``), in their order of
            appearance.

    Returns:
        ``[*first, configuration, metric, mean_diff, ci_low, ci_high, p_holm, verdict, why]``:
        ``configuration`` and ``metric`` in words (:func:`visrec_utils.reports.labels.config_label`,
        :func:`~visrec_utils.reports.labels.metric_label`), metrics in the order of
        :data:`visrec_utils.evaluation.stats.PRIMARY`, then the largest mean difference first;
        numbers unrounded (formatting is the display's).
    """
    cols = [*first, *SHORT_COLUMNS]
    if not len(paired):
        return pd.DataFrame(columns=cols)
    p = paired if "family" in paired else stats.holm(paired, within=tuple(first))
    p = p[p["family"] == "primary"].copy()
    order = {mk: i for i, mk in enumerate(stats.PRIMARY)}
    p["_metric"] = [order.get((m, int(k)), len(order)) for m, k in zip(p["metric"], p["k"])]
    keys = []
    for c in first:
        p[f"_{c}"] = p[c].map({v: i for i, v in enumerate(pd.unique(paired[c]))})
        keys.append(f"_{c}")
    p = p.sort_values([*keys, "_metric", "mean_diff"], ascending=[True] * (len(keys) + 1) + [False], kind="stable")
    p["configuration"] = [labels.config_label(m, s, r) for m, s, r in zip(p["model"], p["strategy"], p["recommender"])]
    p["metric"] = [labels.metric_label(m, k) for m, k in zip(p["metric"], p["k"])]
    return p[cols].reset_index(drop=True)


def evaluate(out_dir, protocol: str = "leave_last_basket_out", availability: str = "auto",
             one_of_a_kind: bool = False, temporal_cut=0.8,
             other_protocols=("temporal", "replay_last", "replay_all", "random_holdout"),
             sensitivity=("catalogue", "items_table", "first_seen", "first_seen_leaky"), cold_warm: bool = True,
             slices: bool = True, n_negatives: int = 0,
             recommenders=("visrank_max", "visrank_mean", "visrank_top3", "hybrid_itemknn_visrank", "vbpr"),
             baselines=("random", "popularity", "popularity_30d", "itemknn", "bpr_mf"), ks=(10, 20, 50),
             n_resamples: int = 1000, seed: int = 0, reference: str = "-/-/random", backend: str = "local",
             ray_address: str | None = None, cache_dir=None) -> Evaluated:
    """Evaluate every embedding set of the study with every recommender and baseline.

    Args:
        out_dir: study output folder holding the earlier stages' outputs.
        protocol: the main protocol (:func:`visrec_utils.catalogue.protocols.list_protocols`).
        availability, one_of_a_kind, temporal_cut: the candidate rule, unique items, and the
            temporal protocol's cut (a quantile of interaction times or a date); the same for
            every protocol.
        other_protocols: also run (frozen and purchase-free sets, VisRank-max, hybrid, VBPR on the frozen
            sets, baselines).
        sensitivity: availability rules compared; cold_warm: break the main protocol down by
            cold and warm truth items; slices: and by the truth items' popularity deciles and age
            quintiles at the test point (frozen ImageNet sets with VisRank-max and VBPR, and the baselines).
        n_negatives: 0 ranks the full catalogue (recommended); above 0, sampled negatives.
        recommenders, baselines: registered recommender names (or configured objects). VBPR
            (:data:`IN_EVERY_PART`) also runs in the later parts, on the frozen sets it accepts.
        ks: cut-offs of the @k metrics.
        n_resamples, seed: bootstrap resamples (95% intervals); seed of ties, baselines and bootstrap.
        reference: ``model/strategy/recommender`` every configuration is compared to (``-`` = any).
        backend, ray_address: ``local`` or ``ray`` and the Ray cluster.
        cache_dir: the artefact store holding each recommender's per-point evaluation (default
            ``$VISREC_CACHE`` or ``~/.cache/visrec``), the study's one store.

    Raises:
        ValueError: an unknown protocol, recommender or availability rule (naming the choices).
    """
    out = StudyLayout(out_dir).make_dirs()
    ks = tuple(ks)
    log = SkipLog(out.root, NOTEBOOK)
    cat = data.load_study_catalogue(out.root)
    split, common = main_split(cat, protocol, availability, one_of_a_kind, temporal_cut, n_negatives, seed)
    manifest = embedding_sets.read_manifest(out.root)
    uses_purchases = purchase_flags(manifest)
    sets = experiment.leak_free_sets(embedding_sets.load_embedding_sets(out.root), protocol, uses_purchases)

    variants = embedding_sets.layer_variants(manifest)
    core = {k: v for k, v in sets.items() if k[0] not in variants}  # layer variants: main protocol only
    purchase_free = experiment.leak_free_sets(core, "temporal", uses_purchases)  # sets that never saw a purchase
    sens_protocol = protocol if protocol != "random_holdout" else "leave_last_basket_out"
    built = _other_splits(cat, split if n_negatives <= 0 else None, protocol, other_protocols, sensitivity,
                          sens_protocol, cold_warm, common, slices)
    frozen = {k: v for k, v in purchase_free.items()  # the sets the slices compare with the baselines
              if k[1] == "frozen" and labels.kind_of(k[0], variants) == "ImageNet model"}
    also = [r for r in recommenders if isinstance(create_recommender(r), IN_EVERY_PART)]  # VBPR
    parts = ["visrank_max", "hybrid_itemknn_visrank", *also]  # the every-protocol and cold/warm parts
    single = ["visrank_max", *also]  # the availability and slice parts
    if backend == "local":  # every split's VisRank rows of one embedding set at once, into the evaluation cache
        jobs = [(split, sets, list(recommenders))]
        jobs += [(s, experiment.leak_free_sets(core, name, uses_purchases), parts)
                 for name, s in built["protocols"].items()]
        jobs += [(s, purchase_free, parts) for s in built["cold_warm"].values()]
        jobs += [(s, experiment.leak_free_sets(purchase_free, sens_protocol, uses_purchases), single)
                 for s in built["availability"].values()]
        jobs += [(s, frozen, single) for subs in built["slices"].values() for s in subs.values()]
        set_major.evaluate_set_major(jobs, ks=ks, seed=seed, cache_dir=cache_dir)

    metrics, per_user = experiment.empty_metrics(), experiment.empty_per_user()
    with log.part("evaluation under the main protocol"):
        metrics, per_user = experiment.run_experiment(split, sets, list(recommenders), list(baselines), ks=ks, seed=seed,
                                                      n_resamples=n_resamples, backend=backend, ray_address=ray_address,
                                                      cache_dir=cache_dir)
        for part, reason in experiment.left_out(sets, recommenders, baselines, ks):
            log.skip(part, reason)
        with log.part("95% intervals"):
            experiment.require_interval_users(split)
    metrics.to_csv(out.result("metrics"), index=False)
    metrics.to_parquet(out.result("metrics_parquet"), index=False)
    per_user.to_parquet(out.result("per_user"), index=False)

    paired = pd.DataFrame(columns=stats.PAIRED_COLUMNS)
    with log.part("paired differences against the reference"):
        paired = stats.paired_comparison(per_user, stats.parse_config(reference), n_resamples=n_resamples, seed=seed)
    paired.to_csv(out.result("paired_vs_reference"), index=False)
    paired.to_parquet(out.result("paired_vs_reference_parquet"), index=False)

    with log.part("figure metric_bars_ndcg20"):
        plots.metric_bars(metrics, "ndcg", 20, path=out.figure("metric_bars_ndcg20"))
    with log.part("figure metric_bars_auc"):
        plots.metric_bars(metrics, "auc", 0, path=out.figure("metric_bars_auc"))
    with log.part("recommendation gallery"):
        compared = gallery.picture_sets(sets, split.n_items, limit=2, exclude=not_pictured(out.root))
        gallery.recommendation_gallery(cat, split, compared, seed=seed, path=out.figure("gallery"))

    by_protocol, paired_protocols = experiment.empty_metrics(), pd.DataFrame(columns=[*stats.PAIRED_COLUMNS, "protocol"])
    described = {}
    with log.part("every protocol"):
        names = experiment.study_protocols(protocol, other_protocols)
        by_protocol, paired_protocols, described = experiment.run_protocols(
            cat, core, names, recommenders=parts, baselines=list(baselines), reference=stats.parse_config(reference),
            uses_purchases=uses_purchases, ks=ks, n_resamples=n_resamples, backend=backend,
            ray_address=ray_address, on_skip=log.skip, splits=built["protocols"], cache_dir=cache_dir, **common)
        with log.part("figure protocols_auc"):
            plots.grouped_bars(by_protocol, "auc", 0, group="protocol", path=out.figure("protocols_auc"))
    by_protocol.to_csv(out.result("metrics_protocols"), index=False)
    by_protocol.to_parquet(out.result("metrics_protocols_parquet"), index=False)
    paired_protocols.to_csv(out.result("paired_protocols"), index=False)

    cw = experiment.empty_metrics("truth")
    with log.part("cold/warm breakdown"):
        cw = experiment.cold_warm_breakdown(split, purchase_free, recommenders=parts,
                                            baselines=list(baselines), ks=ks, seed=seed, n_resamples=n_resamples,
                                            backend=backend, ray_address=ray_address, enabled=cold_warm,
                                            on_skip=log.skip, subs=built["cold_warm"] or None, cache_dir=cache_dir)
    cw.to_csv(out.result("metrics_cold_warm"), index=False)
    by_slice = _slice_parts(out, log, split, cat, frozen, metrics, built["slices"], enabled=slices,
                            recommenders=single, baselines=list(baselines), ks=ks, seed=seed,
                            n_resamples=n_resamples, backend=backend, ray_address=ray_address, cache_dir=cache_dir)

    sens = experiment.empty_metrics("test_points")
    with log.part("availability sensitivity"):
        sens = experiment.availability_sensitivity(
            cat, purchase_free, list(sensitivity), uses_purchases=uses_purchases,
            protocol=sens_protocol, splits=built["availability"], recommenders=single,
            baselines=[b for b in baselines if b in ("random", "popularity", "popularity_30d", "bpr_mf")], ks=ks,
            seed=seed, n_resamples=n_resamples, backend=backend, ray_address=ray_address, on_skip=log.skip,
            cache_dir=cache_dir)
    sens.to_csv(out.result("metrics_availability"), index=False)
    return Evaluated(split_text=split.describe(), set_names=sorted(sets), metrics=metrics, per_user=per_user,
                     paired=paired, by_protocol=by_protocol, paired_protocols=paired_protocols, cold_warm=cw,
                     availability=sens, protocol_text=described, popularity=by_slice["popularity"],
                     item_age=by_slice["item_age"])


def _slice_parts(out, log, split, cat, frozen: dict, metrics, built: dict, enabled: bool, **kw) -> dict:
    """The popularity and item-age breakdowns of the main split (``built``: their slices, or {} to
    build them here), each written to its result table, and the figure ``slices_<metric>`` (nDCG@20,
    or AUC when 20 is not among the ks) with the frozen ImageNet set best on the main table.
    Returns ``{"popularity": metrics, "item_age": metrics}``."""
    out_tables = {kind: slicing.empty_slices() for kind in slicing.SLICE_KINDS}
    for kind in slicing.SLICE_KINDS:
        with log.part(f"{slicing.SLICE_KINDS[kind]} breakdown"):
            subs = built.get(kind) or (_make_slices(split, cat)[kind] if enabled else {})
            out_tables[kind] = slicing.slice_breakdown(subs, frozen, kind, enabled=enabled, on_skip=log.skip, **kw)
        out_tables[kind].to_csv(out.result(f"metrics_{kind}"), index=False)
    metric, k = ("ndcg", 20) if 20 in kw["ks"] else ("auc", 0)
    token = f"{metric}{k or ''}"
    with log.part(f"figure slices_{token}"):
        if not enabled:
            raise PartSkipped(slicing.OFF)
        is_frozen = np.array([(m, s) in frozen for m, s in zip(metrics["model"], metrics["strategy"])], dtype=bool)
        main = metrics[(metrics["recommender"] == "visrank_max") & (metrics["metric"] == metric)
                       & (metrics["k"] == k) & is_frozen]
        best = tuple(main.loc[main["value"].idxmax(), ["model", "strategy", "recommender"]]) if len(main) else (
            *next(iter(frozen), ("-", "-")), "visrank_max")
        plots.slice_lines(out_tables, metric, k, visual=best, titles=slicing.SLICE_KINDS,
                          path=out.figure(f"slices_{token}"))
    return out_tables


def _make_slices(split, cat) -> dict:
    """``{"popularity": {label: Split}, "item_age": {label: Split}}`` of ``split`` (deciles, age
    quintiles from the items table's ``available_from`` where it has dates, else the first sale)."""
    dates = pd.to_datetime(cat.items["available_from"]).to_numpy("datetime64[ns]") if "available_from" in cat.items \
        else None
    return {"popularity": slicing.popularity_slices(split), "item_age": slicing.age_slices(split, first_seen=dates)}


def _other_splits(cat, main, protocol, other_protocols, sensitivity, sens_protocol, cold_warm, common,
                  slices=False) -> dict:
    """The splits of the later parts, built once: ``{"protocols": {name: Split}, "cold_warm":
    {"cold"|"warm": Split}, "availability": {mode: Split}, "slices": {kind: {label: Split}}}``
    (slices: :func:`_make_slices`). ``main`` (the main split, None when
    it was changed, e.g. sampled negatives) stands for the main protocol. A split that cannot be
    built is left out here; its part says why when it builds it again."""
    out = {"protocols": {}, "cold_warm": {}, "availability": {}, "slices": {}}
    try:
        names = experiment.study_protocols(protocol, other_protocols)
    except PartSkipped:
        names = []
    for name in names:
        try:
            out["protocols"][name] = main if name == protocol and main is not None else protocols.make_split(
                cat, name, **protocols.study_params(name, **common))
        except (PartSkipped, ValueError):
            continue
    if cold_warm and main is not None:
        try:
            out["cold_warm"] = experiment.cold_warm_splits(main)
        except (PartSkipped, ValueError):
            pass
    if slices and main is not None:
        out["slices"] = _make_slices(main, cat)
    has_dates = "available_from" in cat.items and cat.items["available_from"].notna().any()
    for mode in sensitivity:
        if mode == "items_table" and not has_dates:
            continue
        try:
            out["availability"][mode] = protocols.make_split(
                cat, sens_protocol, availability=mode, one_of_a_kind=common["one_of_a_kind"], seed=common["seed"],
                cut=common["cut"])
        except (PartSkipped, ValueError):
            continue
    return out
