"""Figures of the study (matplotlib/seaborn), each saved as PNG and returned for display."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped
from ..core.store import atomic_write


def pyplot():
    """``matplotlib.pyplot`` with the study's seaborn theme; the Agg backend outside a notebook
    kernel unless ``$MPLBACKEND`` chooses one."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in str(matplotlib.get_backend()).lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt


def _rows(metrics: pd.DataFrame, metric: str, k: int) -> pd.DataFrame:
    """The rows of one metric, copied.

    Raises:
        PartSkipped: there is none (e.g. ``k`` is not among the study's ``ks``).
    """
    d = metrics[(metrics["metric"] == metric) & (metrics["k"] == k)].copy()
    if d.empty:
        raise PartSkipped(f"there are no {metric}@{k} values to draw" if k else f"there are no {metric} values to draw")
    return d


def save_figure(fig, path):
    """Save ``fig`` to ``path`` (format from its suffix, 120 dpi, tight box) atomically
    (:func:`visrec_utils.core.store.atomic_write`) when ``path`` is given; returns ``fig``."""
    if path:
        fmt = Path(path).suffix[1:] or None  # the temporary file's name must not choose the format
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=fmt))
    return fig


def contact_sheet(paths, labels=None, cols: int = 8, thumb: int = 128, path=None, title: str = ""):
    """Grid of thumbnails of ``paths`` (image files) with optional labels; saved to ``path``.

    An unreadable file shows as a tile with its reason instead of stopping the figure.
    """
    from ..features.images import ImageError, load_image

    plt = pyplot()
    n = len(paths)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.9))
    for ax, i in zip(np.ravel(axes), range(rows * cols)):
        ax.axis("off")
        if i < n:
            try:
                im = load_image(paths[i], min_side=thumb)
                im.thumbnail((thumb, thumb))
                ax.imshow(im)
            except ImageError as e:  # shown, not fatal: extraction lists and drops it
                ax.text(0.5, 0.5, "unreadable:\n" + e.reason[:40], ha="center", va="center", fontsize=6, wrap=True)
            if labels is not None:
                ax.set_title(str(labels[i])[:18], fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def data_figures(interactions: pd.DataFrame, path=None):
    """Purchases per user, purchases per item (log scale) and purchases per month."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    per_user = interactions.groupby("user_id").size()
    per_item = interactions.groupby("item_id").size()
    axes[0].hist(per_user, bins=50, log=True)
    axes[0].set(title="purchases per user", xlabel="purchases", ylabel="users (log)")
    axes[1].hist(per_item, bins=50, log=True)
    axes[1].set(title="purchases per item", xlabel="purchases", ylabel="items (log)")
    monthly = interactions.set_index("timestamp").resample("MS").size()
    axes[2].plot(monthly.index, monthly.to_numpy(), marker=".")
    axes[2].set(title="purchases per month", ylabel="purchases")
    fig.autofmt_xdate()
    return save_figure(fig, path)


def metric_bars(metrics: pd.DataFrame, metric: str = "ndcg", k: int = 20, path=None):
    """Horizontal bars of one metric with 95% intervals, one bar per configuration.

    Raises:
        PartSkipped: ``metrics`` has no row of that metric and ``k``.
    """
    plt = pyplot()
    d = _rows(metrics, metric, k)
    d["config"] = d["model"] + " / " + d["strategy"] + " / " + d["recommender"]
    d = d.sort_values("value")
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(d) + 1.2))
    err = np.vstack([d["value"] - d["ci_low"], d["ci_high"] - d["value"]])
    ax.barh(d["config"], d["value"], xerr=err, color="tab:blue", alpha=0.8, capsize=2)
    ax.set(xlabel=f"{metric}@{k}" if k else metric, title=f"{metric}{'@' + str(k) if k else ''} (mean over test users, 95% bootstrap CI)")
    return save_figure(fig, path)


def grouped_bars(metrics: pd.DataFrame, metric: str = "auc", k: int = 0, group: str = "protocol",
                 config=("model", "strategy", "recommender"), path=None, title: str = ""):
    """One metric with 95% intervals: a row per configuration, a colour per ``group`` value
    (e.g. protocol, or strategy with ``config=("model",)``); leaky protocols are hatched and
    named so in the legend.

    Raises:
        PartSkipped: ``metrics`` has no row of that metric and ``k``.
    """
    plt = pyplot()
    d = _rows(metrics, metric, k)
    d["config"] = d[list(config)].astype(str).agg(" / ".join, axis=1)
    leaky = d["leaky"].astype(bool) if "leaky" in d else pd.Series(False, index=d.index)
    d["label"] = d[group].astype(str) + np.where(leaky, " (LEAKY)", "")
    configs = list(d.groupby("config")["value"].mean().sort_values().index)
    labels = list(dict.fromkeys(d["label"]))
    h = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(configs) * max(1, len(labels) / 3) + 1.5))
    for j, lab in enumerate(labels):
        g = d[d["label"] == lab].drop_duplicates("config").set_index("config").reindex(configs)
        y = np.arange(len(configs)) + (j - (len(labels) - 1) / 2) * h
        err = np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]])
        ax.barh(y, g["value"], height=h, xerr=err, capsize=1.5, label=lab, hatch="//" if "LEAKY" in lab else None)
    ax.set_yticks(np.arange(len(configs)), configs)
    name = f"{metric}@{k}" if k else metric
    ax.set(xlabel=name, title=title or f"{name} by {group} (mean over users, 95% bootstrap CI)")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def stage_curves(history: pd.DataFrame, path=None):
    """Validation (solid) and training (dashed) loss per step, one panel per stage strategy, a
    line per model (``history``: ``model, strategy, step, train_loss, val_loss``).

    Raises:
        PartSkipped: ``history`` is empty (no stage strategy was trained).
    """
    if history.empty:
        raise PartSkipped("no stage strategy was trained, so there is no learning curve to draw")
    plt = pyplot()
    strategies = list(dict.fromkeys(history["strategy"]))
    fig, axes = plt.subplots(1, max(1, len(strategies)), figsize=(4.2 * max(1, len(strategies)), 3.4), squeeze=False)
    for ax, st in zip(axes[0], strategies):
        for model, g in history[history["strategy"] == st].groupby("model"):
            line, = ax.plot(g["step"], g["val_loss"], marker=".", label=f"{model} val")
            ax.plot(g["step"], g["train_loss"], ls="--", color=line.get_color(), label=f"{model} train")
        ax.set(xlabel="step", ylabel="loss", title=st)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def layer_heatmap(values: pd.DataFrame, metric: str, path=None):
    """Heatmap of a model x layer grid (:func:`visrec_utils.reports.analysis.layer_table` values), annotated."""
    plt = pyplot()
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.6 * values.shape[1] + 2.5, 0.6 * values.shape[0] + 1.6))
    sns.heatmap(values.astype(float), annot=True, fmt=".4f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
    ax.set(xlabel="layer (feature stage, or the final pooled features)", ylabel="model",
           title=f"{metric} by layer (VisRank-max, frozen)")
    return save_figure(fig, path)


def learning_curves(history: pd.DataFrame, path=None):
    """Train and validation BPR loss per epoch, one line per model (``history`` has ``model``).

    Raises:
        PartSkipped: ``history`` is empty (bpr_projection was not trained).
    """
    if history.empty:
        raise PartSkipped("bpr_projection was not trained, so there is no learning curve to draw")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for model, g in history.groupby("model"):
        axes[0].plot(g["epoch"], g["train_loss"], marker=".", label=f"{model} train")
        axes[0].plot(g["epoch"], g["val_loss"], ls="--", label=f"{model} val")
        axes[1].plot(g["epoch"], g["val_acc"], marker=".", label=model)
    axes[0].set(xlabel="epoch", ylabel="BPR loss", title="bpr_projection: loss")
    axes[1].set(xlabel="epoch", ylabel="share s_pos > s_neg", title="validation pairwise accuracy")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return save_figure(fig, path)


def imagenet_scatter(table: pd.DataFrame, metric: str, x: str = "published_top1", path=None, title: str = ""):
    """Labelled scatter: ImageNet top-1 (x) against a recommendation metric with 95% CI (y).

    Rows whose ``family`` is ``"control"`` (random weights, hand-made features) are drawn as
    horizontal reference lines with their interval as a band, not as points."""
    plt = pyplot()
    is_control = table["family"].eq("control") if "family" in table else pd.Series(False, index=table.index)
    controls = table[is_control].dropna(subset=[metric])
    d = table[~is_control].dropna(subset=[x, metric])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for j, (_, r) in enumerate(controls.iterrows()):
        color = f"C{j + 3}"
        ax.axhline(r[metric], ls="--", lw=1, color=color, label=f"control: {r['model']}")
        ax.axhspan(r[f"{metric}_low"], r[f"{metric}_high"], color=color, alpha=0.12)
    if len(controls):
        ax.legend(fontsize=7, loc="best")
    if d.empty:
        ax.text(0.5, 0.5, "no model with both a published top-1 and this metric", ha="center", va="center",
                transform=ax.transAxes)
    err = np.vstack([d[metric] - d[f"{metric}_low"], d[f"{metric}_high"] - d[metric]])
    xerr = 1.96 * d[f"{x}_stderr"] if f"{x}_stderr" in d else None  # measured top-1: 95% binomial interval
    ax.errorbar(d[x], d[metric], yerr=err, xerr=xerr, fmt="o", capsize=3)
    for i, (_, r) in enumerate(d.sort_values(x).iterrows()):  # alternate sides so close points stay legible
        ax.annotate(r["model"], (r[x], r[metric]), textcoords="offset points", fontsize=8,
                    xytext=(6, 8 if i % 2 == 0 else -12))
    ax.set(xlabel=f"{'measured' if x.startswith('measured') else 'published'} ImageNet top-1 (%)", ylabel=f"{metric} (95% CI)",
           title=title or f"ImageNet top-1 vs {metric}")
    return save_figure(fig, path)
