"""One-sentence captions of the study's figures, for readers who do not read code.

Every figure a stage writes (``<out>/figures/<name>.png``) has a caption here that says what is
shown and how to read it; reports show it under the figure instead of the file name. Names with a
metric in them (``imagenet_vs_ndcg20``, ``layers_auc``, ``metric_bars_recall20``) are captioned by
pattern, with the metric in words (:func:`visrec_utils.reports.labels.metric_label`).

>>> caption("metric_bars_auc")[:40]
'AUC of every configuration (dots, 95% in'
"""
from __future__ import annotations

import re

from .labels import metric_label

#: AUC's value for a ranking at random: the dashed line of every AUC figure.
CHANCE = "chance (0.5)"

#: Captions of the figures whose name holds no metric.
FIXED = {
    "data_overview": "How the purchases are spread: purchases per user and per item (counts on a log scale, so "
                     "the long tail of rarely bought items shows) and purchases per month.",
    "contact_sheet": "A random sample of the catalogue's product photos, labelled with their product type: the "
                     "pictures the models turn into embeddings.",
    "neighbours": "For a few sample items (blue frame, left), the items each model finds most similar, by cosine "
                  "similarity of their embeddings (the number above each photo; 1 is the most similar possible).",
    "umap": "A 2-D map (UMAP) of each model's embeddings: every dot is an item, coloured by its product group; "
            "items close together look alike to that model, and groups that form clusters are ones the model "
            "tells apart.",
    "learning_curves": "Training (solid) and validation (dashed) BPR loss of the BPR projection per epoch, one colour "
                       "per model (left), and the share of validation pairs it ranks the right way round (right); a "
                       "validation loss that rises while the training loss falls means over-fitting.",
    "stage_learning_curves": "Validation (solid) and training (dashed) loss per training step of each fine-tuning "
                             "strategy (one panel each, one colour per model); flattening curves mean training "
                             "converged, a rising validation loss means over-fitting.",
    "ranking_agreement": "Kendall's tau between the rankings of the ImageNet models under each pair of metrics "
                         "(left) and of evaluation protocols (middle: AUC, right: nDCG@20), with its 95% interval; "
                         "1 (dark blue) means both put the models in the same order, -1 (dark red) in reverse order.",
    "model_pareto": "Cost against quality: each embedding set's nDCG@20 (dots, 95% interval bars) against its "
                    "extraction speed, the peak memory of its extraction pass and its embedding dimension; the dashed "
                    "line joins the sets that no other set beats on both axes at once (the Pareto front).",
    "gallery": "For a few sample test users: the photos of what they bought before (history), what they actually "
               "bought at the test point (green frames), and each model's top 10 recommendations, where a green "
               "frame marks a recommendation they did buy (a hit).",
    "explanations": "Why VisRank (max) recommended each item, for a few sample test users: under each of a model's "
                    "top recommendations (green frame: bought at the test point), the item of the user's history it "
                    "is closest to, with their cosine similarity, which is the recommendation's score.",
}

_AUC_READING = (f"dots, 95% interval bars, on an axis from {CHANCE}; right of the dashed line is better than ranking "
                "at random, and values below chance sit at the left edge with their number")


def _metric(token: str) -> tuple[str, bool]:
    """``"ndcg20"`` -> ``("nDCG@20", False)``; ``"auc"`` -> ``("AUC", True)``."""
    m = re.fullmatch(r"([a-z_]+?)(\d*)", token)
    if not m:
        return token.replace("_", " "), False
    return metric_label(m.group(1), int(m.group(2) or 0)), m.group(1) == "auc"


def _metric_bars(label: str, auc: bool) -> str:
    if auc:
        return (f"{label} of every configuration ({_AUC_READING}); grey: the non-visual baselines, which use no "
                "photo.")
    return (f"{label} of every configuration, mean over test users (bars, 95% interval lines); longer is better, "
            "and grey bars are the non-visual baselines, which use no photo.")


def _models(label: str, auc: bool) -> str:
    how = _AUC_READING if auc else "bars, 95% interval lines; longer is better"
    return f"{label} of each model's embeddings with the strategy and recommender this comparison uses ({how})."


def _finetune(label: str, auc: bool) -> str:
    how = _AUC_READING if auc else "bars, 95% interval lines; longer is better"
    return (f"{label} of each model frozen and after each fine-tuning strategy, one colour per strategy ({how}); "
            "a strategy helps where its interval lies right of the frozen one's.")


def _protocols(label: str, auc: bool) -> str:
    how = _AUC_READING if auc else "bars, 95% interval lines; longer is better"
    return (f"{label} of each configuration under each evaluation protocol, one colour per protocol ({how}); hollow "
            "or hatched marks are leaky protocols, which let test information in and overstate quality, and grey "
            "rows are the non-visual baselines.")


def _imagenet(label: str, auc: bool, measured: bool) -> str:
    x = ("ImageNet top-1 accuracy measured on the ImageNet sample (x, 95% interval bars)" if measured
         else "published ImageNet top-1 accuracy (x)")
    return (f"Each ImageNet model's {x} against its {label} (y, 95% interval bars); dashed lines with shaded bands "
            "are the controls (random weights, hand-made features), and dots rising to the right would mean that "
            "better ImageNet models recommend better.")


def _layers(label: str, auc: bool) -> str:
    return (f"{label} of each model's features taken from earlier feature stages and from its final pooled layer "
            "(frozen, VisRank (max)); brighter cells are better, and the number in each cell is the value.")


def _slices(label: str, auc: bool) -> str:
    how = f"dots, 95% interval bars; {CHANCE} is the dashed line" if auc else "dots, 95% interval bars; higher is better"
    return (f"{label} of VisRank (max) with the best frozen ImageNet model (blue) and of the non-visual baselines "
            "(grey) when only the test purchases of one kind of item count: by how often the item had been bought "
            "before the test point (left, from never to most often) and by how many days had passed since it first "
            f"appeared (right) ({how}); images help where the blue line lies above the grey ones.")


_PATTERNS = [
    (re.compile(r"metric_bars_(.+)"), _metric_bars),
    (re.compile(r"models_(.+)"), _models),
    (re.compile(r"finetune_(.+)"), _finetune),
    (re.compile(r"protocols_(.+)"), _protocols),
    (re.compile(r"imagenet_vs_(.+)"), lambda lab, auc: _imagenet(lab, auc, measured=False)),
    (re.compile(r"measured_top1_vs_(.+)"), lambda lab, auc: _imagenet(lab, auc, measured=True)),
    (re.compile(r"layers_(.+)"), _layers),
    (re.compile(r"slices_(.+)"), _slices),
]


def caption(name: str) -> str:
    """The one-sentence caption of the figure ``name`` (its file name without ``.png``; a path or
    a name with ``.png`` works too).

    Names with a metric (``imagenet_vs_ndcg20``, ``measured_top1_vs_auc``, ``layers_auc``,
    ``metric_bars_recall20``, ``finetune_auc``, ``protocols_auc``, ``models_ndcg20``) are
    captioned by pattern. An unknown name never raises: it comes back in plain words
    (``"my_extra_figure"`` -> ``"My extra figure."``).
    """
    stem = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem[:-4] if stem.lower().endswith(".png") else stem
    if stem in FIXED:
        return FIXED[stem]
    for pattern, write in _PATTERNS:
        m = pattern.fullmatch(stem)
        if m:
            return write(*_metric(m.group(1)))
    words = " ".join(stem.replace("_", " ").replace("-", " ").split()) or "figure"
    return words[0].upper() + words[1:] + "."
