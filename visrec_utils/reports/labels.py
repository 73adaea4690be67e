"""Human labels for what the reports show: models, strategies, recommenders, metrics, numbers.

Result tables keep the registry names (``tf_efficientnet_lite0``, ``popularity_30d``); the
pages shared with people who do not read code show these labels instead ("EfficientNet-Lite0,
frozen", "popularity, last 30 days"). A name without a label here (a user's own timm model,
strategy or recommender) comes back whole, with underscores read as spaces only for the
strategy and recommender registries' names; it is never cut.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.numbers import sig3, signed3, with_interval  # noqa: F401  (the reports' number formats)

#: Labels of the built-in models (others: the name itself).
MODEL_LABELS = {
    "tf_efficientnet_lite0": "EfficientNet-Lite0",
    "tf_efficientnet_lite1": "EfficientNet-Lite1",
    "tf_efficientnet_lite2": "EfficientNet-Lite2",
    "mobilenetv1_025_keras": "MobileNet-V1 0.25",
    "handcrafted": "hand-made colour features",
}

#: Labels of the built-in fine-tuning strategies.
STRATEGY_LABELS = {
    "frozen": "frozen",
    "bpr_projection": "BPR projection",
    "partial_bpr": "partial fine-tuning (BPR)",
    "proxy_metadata": "fine-tuned on product types",
    "contrastive": "contrastive fine-tuning",
    "-": "",
}

#: Labels of the built-in recommenders and baselines.
RECOMMENDER_LABELS = {
    "visrank_max": "VisRank (max)",
    "visrank_mean": "VisRank (mean)",
    "visrank_top3": "VisRank (top-3 mean)",
    "hybrid_itemknn_visrank": "hybrid ItemKNN + VisRank",
    "random": "random",
    "popularity": "popularity, all time",
    "popularity_30d": "popularity, last 30 days",
    "itemknn": "ItemKNN",
    "vbpr": "VBPR",
    "bpr_mf": "BPR-MF",
}

#: Labels of the metrics (``k`` appended as ``@k``).
METRIC_LABELS = {"auc": "AUC", "ndcg": "nDCG", "recall": "Recall", "precision": "Precision", "hitrate": "HitRate",
                 "hit_rate": "HitRate", "mrr": "MRR", "map": "MAP", "novelty": "novelty", "coverage": "coverage"}

#: The four kinds a configuration's model falls into, in the order reports group them.
KINDS = ("ImageNet model", "layer variant", "control", "baseline")


def model_label(model: str) -> str:
    """``"tf_efficientnet_lite0"`` -> ``"EfficientNet-Lite0"``; ``"random_<m>"`` -> ``"<m's label>, random
    weights"``; ``"<m>@stage3"`` -> ``"<m's label>, stage 3"``; ``"-"`` (a baseline) -> ``""``; any
    other name comes back whole."""
    model = str(model)
    if model == "-":
        return ""
    if model in MODEL_LABELS:
        return MODEL_LABELS[model]
    if "@" in model:
        base, _, layer = model.partition("@")
        return f"{model_label(base)}, {layer.replace('stage', 'stage ')}"
    if model.startswith("random_"):
        return f"{model_label(model[len('random_'):])}, random weights"
    return model


def strategy_label(strategy: str) -> str:
    """``"frozen"`` -> ``"frozen"``, ``"bpr_projection"`` -> ``"BPR projection"``; unknown names with
    underscores read as spaces."""
    strategy = str(strategy)
    return STRATEGY_LABELS.get(strategy, strategy.replace("_", " "))


def recommender_label(recommender: str) -> str:
    """``"visrank_max"`` -> ``"VisRank (max)"``, ``"popularity_30d"`` -> ``"popularity, last 30 days"``;
    unknown names with underscores read as spaces."""
    recommender = str(recommender)
    return RECOMMENDER_LABELS.get(recommender, recommender.replace("_", " "))


def config_label(model: str, strategy: str = "-", recommender: str = "") -> str:
    """One configuration in words: ``("tf_efficientnet_lite0", "frozen", "visrank_max")`` ->
    ``"EfficientNet-Lite0, frozen, VisRank (max)"``; a baseline (model ``"-"``) -> its recommender's
    label (``"popularity, last 30 days"``). Empty parts are left out."""
    if str(model) == "-":
        return recommender_label(recommender)
    parts = [model_label(model), strategy_label(strategy), recommender_label(recommender) if recommender else ""]
    return ", ".join(p for p in parts if p)


def metric_label(metric: str, k: int | float | None = 0) -> str:
    """``("ndcg", 20)`` -> ``"nDCG@20"``, ``("auc", 0)`` -> ``"AUC"``; ``"ndcg@20"`` alone works too."""
    metric = str(metric)
    if "@" in metric and not k:
        metric, _, k = metric.partition("@")
    name = METRIC_LABELS.get(metric.lower(), metric)
    k = int(float(k)) if k not in (None, "") and not (isinstance(k, float) and math.isnan(k)) else 0
    return f"{name}@{k}" if k else name


#: Headings of the columns the result tables share (metrics read by :func:`metric_label`).
COLUMN_LABELS = {"mean_diff": "mean difference [95% interval]", "value": "mean [95% interval]",
                 "estimate": "estimate [95% interval]", "p_holm": "Holm p", "wilcoxon_p": "Wilcoxon p",
                 "n_users": "customers", "n_nonzero": "customers with a difference", "published_top1": "published top-1 (%)",
                 "measured_top1": "measured top-1 (%)", "measured_top1_stderr": "its standard error",
                 "top1_source": "source of the published top-1", "n_models": "models", "metric": "metric",
                 "k": "k", "family": "family", "verdict": "verdict", "why": "why", "reference": "reference"}


def column_label(column: str) -> str:
    """A result table's column heading in words: ``"mean_diff"`` -> ``"mean difference [95%
    interval]"``, ``"ndcg@20"`` -> ``"nDCG@20"``, ``"auc"`` -> ``"AUC"``; other names with
    underscores read as spaces."""
    column = str(column)
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    if column.partition("@")[0].lower() in METRIC_LABELS:
        return metric_label(column)
    return column.replace("_", " ")


def kind_of(model: str, layer_variants=(), controls=None) -> str:
    """Which group a configuration's model belongs to in the reports (:data:`KINDS`).

    Args:
        model: the model name as in the result tables (``"-"`` for the non-visual baselines).
        layer_variants: names of the layer variants (``embedding_sets.layer_variants(manifest)``);
            names with ``@`` count as layer variants too.
        controls: names of the controls (e.g. ``models.csv`` rows of family ``control``); by
            default ``handcrafted`` and ``random_*`` names.
    """
    model = str(model)
    if model == "-":
        return "baseline"
    if model in set(layer_variants) or "@" in model:
        return "layer variant"
    if (model in set(controls)) if controls is not None else (model == "handcrafted" or model.startswith("random_")):
        return "control"
    return "ImageNet model"


def label_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``configuration`` column (:func:`config_label`) first, when it has the
    ``model`` column (and optionally ``strategy``, ``recommender``)."""
    if "model" not in frame:
        return frame
    out = frame.copy()
    out.insert(0, "configuration", [config_label(m, s, r) for m, s, r in zip(
        out["model"], out["strategy"] if "strategy" in out else ["-"] * len(out),
        out["recommender"] if "recommender" in out else [""] * len(out))])
    return out
