"""Stage ``compare`` (notebook 05): ImageNet top-1 against recommendation quality across models,
with rank correlations, their 95% intervals over users, within-family correlations and the layer table."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ...catalogue import data
from ...core.layout import StudyLayout
from ...core.skips import PartSkipped, SkipLog
from ...features import embedding_sets
from ...evaluation import attribute_probe, stats
from ...core.store import write_json
from ...reports import analysis, few_models, labels, model_card, plots, probe_report, ranking_agreement, scorecard

NOTEBOOK = "05_imagenet_vs_transfer"

#: The scatter plots of top-1 against the metrics (``<out>/figures/<pattern>.png``).
SCATTER_FIGURES = ("imagenet_vs_*", "measured_top1_vs_*")

#: Recommenders whose top-1 correlations notebook 05 shows next to the compared recommender's
#: (:func:`recommender_correlations`): VBPR, the visual collaborative-filtering model.
ALSO_CORRELATED = ("vbpr",)

#: Tables of the few-models statistics and the ranking agreement (``<out>/results/<name>.csv``).
FEW_MODEL_TABLES = ("partial_correlations", "leave_one_out", "power", "ranking_agreement")


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
        partial: rank correlation of top-1 with each metric, plain and partial on model size
            (:func:`visrec_utils.reports.few_models.partial_correlations`).
        leave_one_out: the Spearman correlation with each model left out.
        power: models needed to detect rho = 0.5 and 0.8 at 80% power given each primary metric's
            measured noise (:func:`visrec_utils.reports.few_models.power_table`); power_text: one sentence on it.
        ranking_agreement: Kendall tau between the models' rankings under each pair of metrics and of
            protocols, with intervals (:mod:`visrec_utils.reports.ranking_agreement`); ranking_text: in words.
        probe: kNN attribute precision@k of every frozen embedding set over the items table's
            categorical columns (:func:`visrec_utils.evaluation.attribute_probe.probe_sets`), one row
            per set and column; probe_correlations: the probe's rank correlation with each metric
            next to top-1's, on the same models (:func:`visrec_utils.reports.probe_report.probe_correlations`);
            probe_text: in words.
        model_card: one row per embedding set: top-1, parameters, GFLOPs, input size, dimension,
            pretraining, extraction speed and memory, main metrics with intervals
            (:func:`visrec_utils.reports.model_card.model_card`); card_text: its Pareto fronts in words.
        scorecard: each claim of del Rio et al. 2018 with its verdict and evidence
            (:func:`visrec_utils.reports.scorecard.reproduction_scorecard`); scorecard_text: as Markdown.
        by_recommender: the correlations with 95% intervals of the compared recommender and of each of
            :data:`ALSO_CORRELATED` (VBPR), on the same models (:func:`recommender_correlations`);
            by_recommender_text: in words.
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
    partial: pd.DataFrame = field(default_factory=pd.DataFrame)
    leave_one_out: pd.DataFrame = field(default_factory=pd.DataFrame)
    power: pd.DataFrame = field(default_factory=pd.DataFrame)
    power_text: str = ""
    ranking_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    ranking_text: str = ""
    probe: pd.DataFrame = field(default_factory=pd.DataFrame)
    probe_correlations: pd.DataFrame = field(default_factory=pd.DataFrame)
    probe_text: str = ""
    model_card: pd.DataFrame = field(default_factory=pd.DataFrame)
    card_text: str = ""
    scorecard: pd.DataFrame = field(default_factory=pd.DataFrame)
    scorecard_text: str = ""
    by_recommender: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_recommender_text: str = ""

    @property
    def shown_by_recommender(self) -> pd.DataFrame:
        """:attr:`by_recommender` as notebook 05 shows it: Spearman's rho only, recommenders in words."""
        t = self.by_recommender
        t = t[t["coefficient"] == "spearman_rho"] if "coefficient" in t else t
        return t.assign(recommender=t["recommender"].map(labels.recommender_label)) if len(t) else t

    @property
    def styled_table(self):
        """:attr:`table` with flagged checkpoints in red."""
        return self.table.style.apply(lambda row: ["color: red" if row["flagged"] else "" for _ in row], axis=1)


def compare(out_dir, strategy: str = "frozen", recommender: str = "visrank_max", keep_flagged: bool = False,
            n_resamples: int = 1000, seed: int = 0, probe_columns=None, probe_k: int = 10) -> Compared:
    """Does a better ImageNet model give better recommendations? One strategy and recommender across models.

    Args:
        out_dir: study output folder holding the ``extract`` and ``evaluate`` stages' results.
        strategy, recommender: which embedding sets and recommender are compared across models.
        keep_flagged: keep checkpoints whose measured top-1 is over 10 points below the published one.
        n_resamples, seed: bootstrap resamples (users) of the correlation intervals and their seed.
        probe_columns: the items table's categorical columns of the attribute probe (None: every
            usable one, :func:`visrec_utils.evaluation.attribute_probe.categorical_columns`);
            probe_k: its neighbours per item.
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
    by_rec, by_rec_text = recommender_correlations(out, metrics, models[keep], used, per_user, strategy,
                                                   [recommender, *ALSO_CORRELATED], n_resamples, seed)

    main = str(metrics["protocol"].iloc[0]) if "protocol" in metrics and len(metrics) else "main protocol"
    few = few_model_statistics(out, log, models, used, per_user, strategy, recommender, n_resamples, seed, main)
    few.update(probe_tables(out, manifest, used, probe_columns, probe_k, n_resamples, seed))
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
    few.update(card_and_scorecard(out, log, pd.read_csv(out.result("models")), metrics, strategy, recommender, seed))
    write_json(out.result("readings"), {k: few[k] for k in READINGS})
    return Compared(table=table, skipped_models=skipped_models, used=used, correlations=corr, answer=answer,
                    intervals=ci, intervals_text=intervals_text, family_intervals=family_ci, layers=layer_cells,
                    figures_note=figures_note, by_recommender=by_rec, by_recommender_text=by_rec_text, **few)


def recommender_correlations(out: StudyLayout, metrics: pd.DataFrame, models: pd.DataFrame, used: pd.DataFrame,
                             per_user: pd.DataFrame, strategy: str, recommenders, n_resamples: int,
                             seed: int) -> tuple[pd.DataFrame, str]:
    """Top-1 against each main metric for several recommenders on the same models (``used``: the
    ImageNet models of the main correlations), e.g. VisRank-max and VBPR: does a better ImageNet
    model also make a better VBPR? Written to ``results/correlations_by_recommender.csv``.

    Args:
        models: ``results/models.csv`` rows (``model``, ``published_top1`` ...).
        recommenders: names; one without rows in ``metrics`` (not evaluated) is named in the text.

    Returns:
        (one row per (recommender, metric, coefficient) of
        :func:`visrec_utils.reports.analysis.correlation_intervals` with ``recommender`` first,
        Spearman's rho with its 95% interval in words per recommender; with fewer than
        :data:`~visrec_utils.reports.analysis.MIN_MODELS` models, no row and the reason).
    """
    cols = ["recommender", "metric", "coefficient", "n_models", "estimate", "ci_low", "ci_high", "perm_p"]
    rows, lines = [], []
    try:
        analysis.require_models(used)
    except PartSkipped as e:
        lines.append(f"Not estimated: {str(e).rstrip(' .')}.")
    for rec in dict.fromkeys(recommenders) if not lines else ():
        label = labels.recommender_label(rec)
        if not (metrics["recommender"] == rec).any():
            lines.append(f"{label}: not evaluated in notebook 04 (not among its recommenders).")
            continue
        table = analysis.imagenet_table(metrics, models, strategy=strategy, recommender=rec)
        ci = analysis.correlation_intervals(per_user, table[table["model"].isin(used["model"])],
                                            strategy=strategy, recommender=rec, n_resamples=n_resamples, seed=seed)
        rows.append(ci.assign(recommender=rec))
        lines.append(f"**{label}**: " + analysis.interval_text(ci, "ndcg@20"))
    frame = pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)
    frame.to_csv(out.result("correlations_by_recommender"), index=False)
    return frame, "\n\n".join(lines)


#: The sentences beyond top-1 that ``results/readings.json`` keeps for the index page.
READINGS = ("power_text", "ranking_text", "probe_text", "card_text")


def card_and_scorecard(out: StudyLayout, log: SkipLog, models: pd.DataFrame, metrics: pd.DataFrame, strategy: str,
                       recommender: str, seed: int) -> dict:
    """The model card (``results/model_card.csv``, the figure ``model_pareto``) and the
    reproduction scorecard (``results/scorecard.csv``).

    Returns:
        The :class:`Compared` fields ``model_card, card_text, scorecard, scorecard_text``.
    """
    card = model_card.model_card(models, metrics, strategy=strategy, recommender=recommender)
    card.to_csv(out.result("model_card"), index=False)
    out.figure("model_pareto").unlink(missing_ok=True)
    with log.part("figure model_pareto"):
        try:
            model_card.pareto_figure(card, path=out.figure("model_pareto"))
        except ValueError as e:
            raise PartSkipped(str(e)) from None
    card_ = scorecard.reproduction_scorecard(out.root, recommender=recommender, seed=seed)
    card_.to_csv(out.result("scorecard"), index=False)
    return {"model_card": card, "card_text": model_card.card_text(card), "scorecard": card_,
            "scorecard_text": scorecard.scorecard_markdown(card_)}


def few_model_statistics(out: StudyLayout, log: SkipLog, models: pd.DataFrame, used: pd.DataFrame,
                         per_user: pd.DataFrame, strategy: str, recommender: str, n_resamples: int, seed: int,
                         protocol: str = "main protocol") -> dict:
    """Partial correlations on model size, leave-one-model-out, power and ranking agreement for
    the models of ``used``; each table is written to ``<out>/results/<name>.csv``
    (:data:`FEW_MODEL_TABLES`, empty when ``used`` has fewer than
    :data:`~visrec_utils.reports.analysis.MIN_MODELS` models: the part "correlations" already
    says why) and the heatmap to ``figures/ranking_agreement.png``.

    Args:
        models: ``results/models.csv`` rows (model size: ``n_params`` when recorded, else ``dim``).
        used: the ImageNet models the correlations use.
        protocol: the protocol of ``per_user`` (named in the ranking-agreement table).

    Returns:
        The :class:`Compared` fields ``partial, leave_one_out, power, power_text, ranking_agreement, ranking_text``.
    """
    out.figure("ranking_agreement").unlink(missing_ok=True)
    names = list(used["model"])
    tables = {"partial": pd.DataFrame(columns=few_models.PARTIAL_COLUMNS),
              "leave_one_out": pd.DataFrame(columns=few_models.LOO_COLUMNS),
              "power": pd.DataFrame(columns=few_models.POWER_COLUMNS),
              "ranking_agreement": pd.DataFrame(columns=ranking_agreement.COLUMNS)}
    texts = {"power_text": "", "ranking_text": ""}
    try:
        analysis.require_models(used)
    except PartSkipped as e:
        texts = {k: f"Not estimated: {str(e).rstrip(' .')}." for k in texts}
        names = []
    if names:
        with log.part("partial correlations on model size"):
            try:
                size, control = few_models.model_size(models, names)
            except ValueError as e:
                raise PartSkipped(str(e)) from None
            tables["partial"] = few_models.partial_correlations(used, size, control=control, seed=seed)
        tables["leave_one_out"] = few_models.leave_one_out(used)
        noise = few_models.measured_noise(per_user, names, strategy, recommender, which=stats.PRIMARY,
                                          n_resamples=n_resamples, seed=seed)
        tables["power"] = few_models.power_table(noise, seed=seed)
        texts["power_text"] = few_models.power_text(tables["power"], len(used[["published_top1", "ndcg@20"]].dropna()))
        agreement = [ranking_agreement.metric_agreement(per_user, names, strategy, recommender, protocol=protocol,
                                                        n_resamples=n_resamples, seed=seed)]
        if out.result("metrics_protocols").is_file():
            agreement.append(ranking_agreement.protocol_agreement(pd.read_csv(out.result("metrics_protocols")), names,
                                                                  strategy, recommender, n_resamples=n_resamples,
                                                                  seed=seed))
        tables["ranking_agreement"] = pd.concat(agreement, ignore_index=True)
        texts["ranking_text"] = ranking_agreement.agreement_text(tables["ranking_agreement"])
        with log.part("figure ranking_agreement"):
            drawn = tables["ranking_agreement"].dropna(subset=["tau"])
            if drawn.empty:
                raise PartSkipped("no two rankings of 3 or more models to compare")
            ranking_agreement.agreement_heatmap(drawn, path=out.figure("ranking_agreement"))
    for name, key in zip(FEW_MODEL_TABLES, ["partial", "leave_one_out", "power", "ranking_agreement"]):
        tables[key].to_csv(out.result(name), index=False)
    return {**tables, **texts}


def probe_tables(out: StudyLayout, manifest: pd.DataFrame, used: pd.DataFrame, columns, k: int,
                 n_resamples: int, seed: int) -> dict:
    """The attribute probe of every frozen embedding set (``results/attribute_probe.csv``) and its
    rank correlation with each metric next to top-1's on the models of ``used``
    (``results/probe_correlations.csv``). Where it cannot run (no frozen set, no usable
    categorical column, fewer than :data:`~visrec_utils.reports.analysis.MIN_MODELS` models to
    correlate) the tables are empty and ``probe_text`` says why, as the few-model statistics do
    (the skip log already names a study without enough models).

    Returns:
        The :class:`Compared` fields ``probe, probe_correlations, probe_text``.
    """
    probe, corr = pd.DataFrame(columns=["model", "strategy", *attribute_probe.PROBE_COLUMNS]), pd.DataFrame()
    frozen = manifest[manifest["strategy"] == "frozen"]
    text = "No attribute probe: the study has no frozen embedding set." if frozen.empty else ""
    if not text:
        cat = data.load_study_catalogue(out.root)
        sets = embedding_sets.load_embedding_sets(out.root, strategies=["frozen"])
        ids = {(r["model"], r["strategy"]): embedding_sets.load_item_ids(out.root, r) for r in frozen.to_dict("records")}
        try:
            probe = attribute_probe.probe_sets(sets, cat.items, columns=columns, k=k, item_ids=ids,
                                               n_resamples=n_resamples, seed=seed)
        except ValueError as e:  # no usable column, too few labelled items
            text = f"No attribute probe: {str(e).rstrip(' .')}."
    if not probe.empty:
        try:
            analysis.require_models(used)
            corr = probe_report.probe_correlations(probe, used)
            text = probe_report.probe_text(corr)
        except PartSkipped as e:
            text = f"The probe is not correlated with recommendation quality: {str(e).rstrip(' .')}."
    probe.to_csv(out.result("attribute_probe"), index=False)
    corr.to_csv(out.result("probe_correlations"), index=False)
    return {"probe": probe, "probe_correlations": corr, "probe_text": text}


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
