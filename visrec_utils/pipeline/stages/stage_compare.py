"""Stage ``compare`` (notebook 05): ImageNet top-1 against recommendation quality across models,
with rank correlations, their 95% intervals over users, within-family correlations and the layer table."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ...core.layout import StudyLayout
from ...core.skips import PartSkipped, SkipLog
from ...features import embedding_sets
from ...reports import analysis, labels, plots

NOTEBOOK = "05_imagenet_vs_transfer"

#: The scatter plots of top-1 against the metrics (``<out>/figures/<pattern>.png``).
SCATTER_FIGURES = ("imagenet_vs_*", "measured_top1_vs_*")


@dataclass
class Compared:
    """What :func:`compare` returns (every table is also in ``<out>/results``).

    Attributes:
        table: one row per model: published and measured top-1, metrics, ``flagged`` checkpoints.
        skipped_models: the models ``extract`` skipped, with the reason.
        used: the models the correlations use (controls, layer variants and, unless kept, flagged
            checkpoints left out).
        correlations: Spearman and Kendall rank correlations of top-1 with each metric.
        answer: the answer in words (Markdown); intervals_text: the same for the intervals.
        intervals, family_intervals: correlation 95% intervals (bootstrap over users), overall and by family.
        layers: ``{metric: table}`` of the layer variants (model x stage).
        figures_note: one sentence on the scatter plots of top-1 against each metric: what they
            show, or why none was drawn (fewer than :data:`~visrec_utils.reports.analysis.MIN_MODELS`
            ImageNet models).
    """

    table: pd.DataFrame
    skipped_models: pd.DataFrame
    used: pd.DataFrame
    correlations: pd.DataFrame
    answer: str
    intervals: pd.DataFrame
    intervals_text: str
    family_intervals: pd.DataFrame
    layers: dict = field(default_factory=dict)
    figures_note: str = ""

    @property
    def styled_table(self):
        """:attr:`table` with flagged checkpoints in red."""
        return self.table.style.apply(lambda row: ["color: red" if row["flagged"] else "" for _ in row], axis=1)


def compare(out_dir, strategy: str = "frozen", recommender: str = "visrank_max", keep_flagged: bool = False,
            n_resamples: int = 1000, seed: int = 0) -> Compared:
    """Does a better ImageNet model give better recommendations? One strategy and recommender across models.

    Args:
        out_dir: study output folder holding the ``extract`` and ``evaluate`` stages' results.
        strategy, recommender: which embedding sets and recommender are compared across models.
        keep_flagged: keep checkpoints whose measured top-1 is over 10 points below the published one.
        n_resamples, seed: bootstrap resamples (users) of the correlation intervals and their seed.
    """
    out = StudyLayout(out_dir).make_dirs()
    log = SkipLog(out.root, NOTEBOOK)
    metrics = pd.read_csv(out.result("metrics"))
    models = pd.read_csv(out.result("models"))
    skipped_models = models[models["status"] != "ok"]
    models = models[models["status"].isin(["ok", "precomputed"])]
    keep = [c for c in ["model", "family", "published_top1", "measured_top1", "measured_top1_stderr", "top1_source"]
            if c in models]
    table = analysis.imagenet_table(metrics, models[keep], strategy=strategy, recommender=recommender)
    table["flagged"] = analysis.flag_checkpoints(table).to_numpy()
    table.to_csv(out.result("imagenet_vs_transfer"), index=False)
    manifest = embedding_sets.read_manifest(out.root)
    layer_of = embedding_sets.layer_variants(manifest)  # earlier-stage variants: the layer table below
    layers = table["model"].isin(set(layer_of))
    shown = table[~layers]
    used = shown[shown["family"] != "control"] if "family" in shown else shown  # controls: shown, not correlated
    used = used if keep_flagged else used[~used["flagged"]]

    corr = analysis.correlations(used)
    corr.to_csv(out.result("correlations"), index=False)
    answer = ""
    with log.part("correlations"):
        analysis.require_models(used)
        answer = analysis.answer_text(used, corr)
    per_user = pd.read_parquet(out.result("per_user"))
    ci = analysis.correlation_intervals(per_user, used, strategy=strategy, recommender=recommender,
                                        n_resamples=n_resamples, seed=seed)
    ci.to_csv(out.result("correlation_intervals"), index=False)
    intervals_text = ""
    with log.part("correlation intervals"):
        analysis.require_models(used)
        intervals_text = analysis.interval_text(ci, "ndcg@20") + "\n\n" + analysis.interval_text(ci, "auc")
    family_ci = pd.DataFrame(columns=[*ci.columns, "family"])
    with log.part("correlations within a family"):
        family_ci = pd.concat([analysis.correlation_intervals(per_user, g, strategy=strategy, recommender=recommender,
                                                              n_resamples=n_resamples, seed=seed).assign(family=f)
                               for f, g in analysis.family_groups(used)], ignore_index=True)
    family_ci.to_csv(out.result("correlation_by_family"), index=False)

    figures_note = correlation_figures(out, log, shown, used, strategy, recommender)
    bars = metrics[(metrics["strategy"] == strategy) & (metrics["recommender"] == recommender)]
    bars.to_csv(out.result("models_bars"), index=False)
    with log.part("figure models_ndcg20"):
        plots.metric_bars(bars, "ndcg", 20, path=out.figure("models_ndcg20"))
    layer_cells = {}
    with log.part("layer table"):
        for metric in ["auc", "ndcg@20"]:
            cells, values = analysis.layer_table(table, metric, layers=layer_of)
            cells.to_csv(out.results / f"layers_{metric.replace('@', '')}.csv")
            plots.layer_heatmap(values, metric, path=out.figure(f"layers_{metric.replace('@', '')}"))
            layer_cells[metric] = cells
    return Compared(table=table, skipped_models=skipped_models, used=used, correlations=corr, answer=answer,
                    intervals=ci, intervals_text=intervals_text, family_intervals=family_ci, layers=layer_cells,
                    figures_note=figures_note)


def correlation_figures(out: StudyLayout, log: SkipLog, shown: pd.DataFrame, used: pd.DataFrame, strategy: str,
                        recommender: str) -> str:
    """Draw the scatter plots of ImageNet top-1 against each main metric (``imagenet_vs_<metric>``)
    and, where measured, of measured top-1 (``measured_top1_vs_<metric>``), only when ``used`` has
    at least :data:`~visrec_utils.reports.analysis.MIN_MODELS` ImageNet models; otherwise record
    the part "correlation figures" as skipped in ``log``. Earlier runs' scatter plots are deleted
    first, so ``figures/`` never shows a stale one.

    Args:
        shown: the rows drawn (ImageNet models and controls; layer variants left out).
        used: the ImageNet models the correlations use (controls and flagged checkpoints left out).

    Returns:
        One sentence for the notebook: what the plots show, or why there is none.
    """
    for pattern in SCATTER_FIGURES:
        for old in out.figures.glob(f"{pattern}.png"):
            old.unlink()
    try:
        analysis.require_models(used)
    except PartSkipped as e:
        log.skip("correlation figures", e)
        reason = str(e).rstrip(" .")
        return f"No scatter plot of ImageNet top-1 against the metrics was drawn: {reason}."
    for metric, k in analysis.MAIN_METRICS:
        lab = analysis.metric_label(metric, k)
        plots.imagenet_scatter(shown, lab, path=out.figure(f"imagenet_vs_{lab.replace('@', '')}"),
                               title=f"ImageNet top-1 vs {labels.metric_label(metric, k)} "
                                     f"({labels.strategy_label(strategy)}, {labels.recommender_label(recommender)})")
    n = len(used[["published_top1", "auc"]].dropna())
    note = (f"The scatter plots show the {n} ImageNet models the correlations use (dots, 95% intervals) and the "
            "controls (dashed lines).")
    measured = used["measured_top1"].notna().sum() if "measured_top1" in used else 0
    if measured:  # both axes measured: top-1 on the ImageNet sample with its 95% interval
        try:
            analysis.require_models(used, x="measured_top1")
        except PartSkipped as e:
            log.skip("measured top-1 figures", e)
            return note
        for lab in ["auc", "ndcg@20"]:
            plots.imagenet_scatter(shown, lab, x="measured_top1",
                                   path=out.figure(f"measured_top1_vs_{lab.replace('@', '')}"),
                                   title=f"measured top-1 (ImageNet sample) vs {labels.metric_label(lab)}")
    return note
