"""Figures of the study (matplotlib/seaborn), each saved as PNG and returned (the ``Figure``) for display.

Conventions, so the figures read right for people who do not read code:

* labels in words (:mod:`visrec_utils.reports.labels`): "EfficientNet-Lite0, frozen, VisRank (max)",
  not ``tf_efficientnet_lite0 / frozen / visrank_max``; captions in :mod:`visrec_utils.reports.captions`;
* AUC is drawn as dots with 95% interval bars on an axis that starts at chance (:data:`CHANCE_AUC`,
  a dashed line), never as bars from 0, where 0.56 and 0.60 look the same; a value below chance
  is marked at the left edge with its number;
* the non-visual baselines (model ``"-"``) are grey (:data:`KIND_COLOURS`) and named so in the legend;
* legends sit outside the data area (right of the axes), so they never cover an interval.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped
from ..core.store import atomic_write
from .labels import config_label, kind_of, metric_label, model_label, sig3, strategy_label

#: AUC of a ranking at random: where every AUC axis starts, drawn as a dashed line.
CHANCE_AUC = 0.5

#: Colour of each kind of configuration (:func:`visrec_utils.reports.labels.kind_of`).
KIND_COLOURS = {"ImageNet model": "#1f77b4", "layer variant": "#9467bd", "control": "#ff7f0e",
                "baseline": "#8c8c8c"}

#: Legend entry of each kind.
KIND_NAMES = {"ImageNet model": "ImageNet models", "layer variant": "layer variants (earlier feature stages)",
              "control": "controls (random weights, hand-made features)", "baseline": "non-visual baselines"}

#: Background of the baseline rows in figures where colour means something else (protocol, strategy).
BASELINE_ROW = "#e6e6e6"


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
    """Save ``fig`` to ``path`` (format from its suffix, 120 dpi, tight box, so legends outside
    the axes are kept) atomically (:func:`visrec_utils.core.store.atomic_write`) when ``path`` is
    given; returns ``fig``."""
    if path:
        fmt = Path(path).suffix[1:] or None  # the temporary file's name must not choose the format
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=fmt))
    return fig


def legend_outside(ax, handles=None, labels=None, title: str | None = None, fontsize: int = 8, **kwargs):
    """A legend right of ``ax``, outside its data area (anchored at the axes' top right corner);
    :func:`save_figure` keeps it in the picture. ``kwargs`` go to ``Axes.legend``. Returns the
    legend (None when nothing is labelled)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=fontsize, title=title, title_fontsize=fontsize, frameon=False, **kwargs)


def thumbnail(path, size: int = 96) -> np.ndarray:
    """The picture of an item as a thumbnail: ``(h, w, 3) uint8``, longer side at most ``size``.

    Decoded by :func:`visrec_utils.features.images.load_image`, the decoder extraction uses, so
    an image that was embedded (16-bit, alpha, CMYK, odd TIFFs, EXIF-rotated) is also pictured.

    Raises:
        ImageError: no image file for the item (``path`` None, NaN or "": e.g. a catalogue with
            precomputed embeddings only), or a file ``load_image`` cannot read (its reason).
    """
    from ..features.images import ImageError, load_image

    if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == "":
        raise ImageError(str(path), "no image file for this item")
    im = load_image(path, min_side=size)
    im.thumbnail((size, size))
    return np.asarray(im)


def contact_sheet(paths, labels=None, cols: int = 8, thumb: int = 128, path=None, title: str = ""):
    """Grid of thumbnails of ``paths`` (image files, decoded by :func:`thumbnail`) with optional
    labels; saved to ``path``. An unreadable file shows as a tile with its reason instead of
    stopping the figure."""
    from ..features.images import ImageError

    plt = pyplot()
    n = len(paths)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.9))
    for ax, i in zip(np.ravel(axes), range(rows * cols)):
        ax.axis("off")
        if i < n:
            try:
                ax.imshow(thumbnail(paths[i], thumb))
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


def row_label(row, config=("model", "strategy", "recommender")) -> str:
    """A configuration's label in words: :func:`~visrec_utils.reports.labels.config_label` for
    the full configuration, :func:`~visrec_utils.reports.labels.model_label` for ``("model",)``."""
    if tuple(config) == ("model", "strategy", "recommender"):
        return config_label(row["model"], row["strategy"], row["recommender"])
    if tuple(config) == ("model",):
        return model_label(row["model"]) or "non-visual baseline"
    return ", ".join(str(row[c]) for c in config)


def auc_points(ax, y, value, low, high, color, label=None, hollow: bool = False, marker: str = "o"):
    """Dots with 95% interval bars on an AUC axis that starts at :data:`CHANCE_AUC`: values at or
    above chance as ``marker`` (white-filled when ``hollow``), values below chance as a ``<`` at
    the left edge with the value and interval written beside it (so nothing is hidden)."""
    y, value, low, high = (np.asarray(a, float) for a in (y, value, low, high))
    ok = ~np.isnan(value)
    above = ok & (value >= CHANCE_AUC)
    below = ok & (value < CHANCE_AUC)
    fill = "white" if hollow else color
    if above.any():
        err = np.nan_to_num(np.vstack([value - low, high - value])[:, above])
        ax.errorbar(value[above], y[above], xerr=err, fmt=marker, color=color, ms=5, lw=1.2, capsize=2, mfc=fill,
                    label=label)
        label = None
    for yy, v, lo, hi in zip(y[below], value[below], low[below], high[below]):
        ax.plot([CHANCE_AUC], [yy], marker="<", ms=6, color=color, mfc=fill, ls="none", clip_on=False, label=label)
        label = None
        ax.annotate(f"{sig3(v)} [{sig3(lo)}, {sig3(hi)}], below chance", (CHANCE_AUC, yy), xytext=(7, 0),
                    textcoords="offset points", va="center", fontsize=6.5, color=color)


def auc_axis(ax, highs) -> None:
    """x axis of an AUC figure: from :data:`CHANCE_AUC` (dashed line, "chance" label) to a little
    past the highest interval end in ``highs``."""
    top = float(np.nanmax(np.asarray(highs, float), initial=CHANCE_AUC))
    top = max(top, CHANCE_AUC + 0.02)
    ax.set_xlim(CHANCE_AUC, top + 0.06 * (top - CHANCE_AUC))
    ax.axvline(CHANCE_AUC, ls="--", lw=1.5, color="0.25", zorder=5, clip_on=False)
    ax.text(CHANCE_AUC, 1.0, " chance", transform=ax.get_xaxis_transform(), fontsize=7, color="0.25",
            va="bottom", ha="left")


def _kind_handles(kinds) -> tuple[list, list]:
    from matplotlib.patches import Patch

    present = [k for k in KIND_COLOURS if k in set(kinds)]
    return [Patch(color=KIND_COLOURS[k]) for k in present], [KIND_NAMES[k] for k in present]


def metric_bars(metrics: pd.DataFrame, metric: str = "ndcg", k: int = 20, path=None):
    """One metric of every configuration with its 95% interval, sorted, a row per configuration
    labelled in words; colour by kind (:data:`KIND_COLOURS`: the non-visual baselines grey).

    AUC is drawn as dots on an axis from chance (:func:`auc_points`, :func:`auc_axis`); other
    metrics as bars from 0 with the value written at the end of each bar.

    Returns:
        The matplotlib ``Figure`` (one axes), also saved to ``path`` when given.

    Raises:
        PartSkipped: ``metrics`` has no row of that metric and ``k``.
    """
    plt = pyplot()
    d = _rows(metrics, metric, k).sort_values("value", kind="stable")
    d["label"] = [row_label(r) for _, r in d.iterrows()]
    d["kind"] = [kind_of(m) for m in d["model"]]
    y = np.arange(len(d))
    name = metric_label(metric, k)
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(d) + 1.4))
    if metric == "auc":
        for kind, g in d.assign(y=y).groupby("kind", sort=False):
            auc_points(ax, g["y"], g["value"], g["ci_low"], g["ci_high"], KIND_COLOURS[kind])
        auc_axis(ax, d["ci_high"])
        xlabel = f"{name} (0.5 = ranking at random; right is better)"
    else:
        err = np.nan_to_num(np.vstack([d["value"] - d["ci_low"], d["ci_high"] - d["value"]]))  # no interval: n < 2
        ax.barh(y, d["value"], xerr=err, color=[KIND_COLOURS[kd] for kd in d["kind"]], capsize=2)
        ends = d["ci_high"].fillna(d["value"])
        for yy, hi, v in zip(y, ends, d["value"]):
            ax.text(hi, yy, f" {sig3(v)}", va="center", fontsize=6.5, color="0.2")
        top = float(np.nanmax(ends.to_numpy(float), initial=0.0))
        ax.set_xlim(0, top * 1.15 if top > 0 else 1.0)
        xlabel = f"{name} (longer is better)"
    ax.set_yticks(y, d["label"])
    ax.set_ylim(-0.7, len(d) - 0.3)
    for tick, kind in zip(ax.get_yticklabels(), d["kind"]):
        tick.set_color("0.4" if kind == "baseline" else "0.1")
    ax.set(xlabel=xlabel, title=f"{name}: mean over test users, 95% bootstrap interval")
    legend_outside(ax, *_kind_handles(d["kind"]))
    return save_figure(fig, path)


def _group_label(group: str, value) -> str:
    if group == "strategy":
        return strategy_label(value)
    return str(value).replace("_", " ")


def grouped_bars(metrics: pd.DataFrame, metric: str = "auc", k: int = 0, group: str = "protocol",
                 config=("model", "strategy", "recommender"), path=None, title: str = ""):
    """One metric with 95% intervals: a row per configuration (labelled in words), a colour per
    ``group`` value (e.g. protocol, or strategy with ``config=("model",)``); leaky protocols are
    hollow (AUC) or hatched (bars) and named so in the legend; the non-visual baselines' rows
    have a grey background. AUC as dots on an axis from chance (:func:`auc_points`), other
    metrics as bars; the legend sits right of the axes.

    Returns:
        The matplotlib ``Figure`` (one axes), also saved to ``path`` when given.

    Raises:
        PartSkipped: ``metrics`` has no row of that metric and ``k``.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    d = _rows(metrics, metric, k)
    d["config"] = d[list(config)].astype(str).agg(" / ".join, axis=1)
    leaky = d["leaky"].astype(bool) if "leaky" in d else pd.Series(False, index=d.index)
    d["label"] = [_group_label(group, v) + (" (LEAKY)" if lk else "") for v, lk in zip(d[group], leaky)]
    configs = list(d.groupby("config")["value"].mean().sort_values().index)
    first = d.drop_duplicates("config").set_index("config")
    names = [row_label(first.loc[c], config) for c in configs]
    baseline = [("model" in config) and str(first.loc[c, "model"]) == "-" for c in configs]
    labels = list(dict.fromkeys(d["label"]))
    # each configuration's row holds only the groups it has, top to bottom in legend order
    present = {c: [lab for lab in labels if ((d["config"] == c) & (d["label"] == lab)).any()] for c in configs}
    h = 0.8 / max(max(map(len, present.values()), default=1), 1)
    ypos = {(c, lab): i + ((len(present[c]) - 1) / 2 - present[c].index(lab)) * h
            for i, c in enumerate(configs) for lab in present[c]}
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(configs) * max(1, len(labels) / 3) + 1.5))
    ax.grid(False, axis="y")
    for i, is_base in enumerate(baseline):
        if is_base:
            ax.axhspan(i - 0.5, i + 0.5, color=BASELINE_ROW, zorder=0, lw=0)
        if i:
            ax.axhline(i - 0.5, color="0.85", lw=0.8, zorder=0)
    for j, lab in enumerate(labels):
        g = d[d["label"] == lab].drop_duplicates("config").set_index("config")
        g = g.loc[[c for c in configs if (c, lab) in ypos]]
        y = np.array([ypos[(c, lab)] for c in g.index])
        is_leaky = "LEAKY" in lab
        if metric == "auc":
            auc_points(ax, y, g["value"], g["ci_low"], g["ci_high"], f"C{j}", label=lab, hollow=is_leaky,
                       marker="D" if is_leaky else "o")
        else:
            err = np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]])
            ax.barh(y, g["value"], height=h * 0.9, xerr=err, capsize=1.5, label=lab, color=f"C{j}",
                    hatch="//" if is_leaky else None)
    if metric == "auc":
        auc_axis(ax, d["ci_high"])
    ax.set_yticks(np.arange(len(configs)), names)
    ax.set_ylim(-0.6, len(configs) - 0.4)
    for tick, is_base in zip(ax.get_yticklabels(), baseline):
        tick.set_color("0.4" if is_base else "0.1")
    name = metric_label(metric, k)
    reading = "0.5 = ranking at random; right is better" if metric == "auc" else "longer is better"
    ax.set(xlabel=f"{name} ({reading})", title=title or f"{name} by {group}: mean over users, 95% bootstrap interval")
    handles, labs = ax.get_legend_handles_labels()
    if any(baseline):
        handles, labs = [*handles, Patch(color=BASELINE_ROW)], [*labs, KIND_NAMES["baseline"]]
    legend_outside(ax, handles, labs, title=group)
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
    fig, axes = plt.subplots(1, max(1, len(strategies)), figsize=(4.2 * max(1, len(strategies)) + 2, 3.4),
                             squeeze=False)
    for ax, st in zip(axes[0], strategies):
        for model, g in history[history["strategy"] == st].groupby("model"):
            line, = ax.plot(g["step"], g["val_loss"], marker=".", label=f"{model_label(model)}, validation")
            ax.plot(g["step"], g["train_loss"], ls="--", color=line.get_color(), label=f"{model_label(model)}, training")
        ax.set(xlabel="training step", ylabel="loss", title=strategy_label(st))
    legend_outside(axes[0, -1], fontsize=7)
    return save_figure(fig, path)


def layer_heatmap(values: pd.DataFrame, metric: str, path=None):
    """Heatmap of a model x layer grid (:func:`visrec_utils.reports.analysis.layer_table` values), annotated;
    models labelled in words."""
    plt = pyplot()
    import seaborn as sns

    name = metric_label(metric)
    shown = values.astype(float).rename(index=lambda m: model_label(m) or str(m))
    fig, ax = plt.subplots(figsize=(1.6 * values.shape[1] + 2.5, 0.6 * values.shape[0] + 1.6))
    sns.heatmap(shown, annot=True, fmt=".4f", cmap="viridis", ax=ax, cbar_kws={"label": f"{name} (brighter is better)"})
    ax.set(xlabel="layer (feature stage, or the final pooled features)", ylabel="model",
           title=f"{name} by layer (frozen, VisRank (max))")
    return save_figure(fig, path)


def learning_curves(history: pd.DataFrame, path=None):
    """Train and validation BPR loss per epoch, one colour per model (``history`` has ``model``).

    Raises:
        PartSkipped: ``history`` is empty (bpr_projection was not trained).
    """
    if history.empty:
        raise PartSkipped("bpr_projection was not trained, so there is no learning curve to draw")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    for j, (model, g) in enumerate(history.groupby("model")):
        name = model_label(model)
        axes[0].plot(g["epoch"], g["train_loss"], marker=".", color=f"C{j}", label=f"{name}, training")
        axes[0].plot(g["epoch"], g["val_loss"], ls="--", color=f"C{j}", label=f"{name}, validation")
        axes[1].plot(g["epoch"], g["val_acc"], marker=".", color=f"C{j}", label=name)
    axes[0].set(xlabel="epoch", ylabel="BPR loss", title="BPR projection: loss")
    axes[1].set(xlabel="epoch", ylabel="share ranked right (s_pos > s_neg)", title="validation pairwise accuracy")
    legend_outside(axes[1], *axes[0].get_legend_handles_labels(), fontsize=7)
    return save_figure(fig, path)


def imagenet_scatter(table: pd.DataFrame, metric: str, x: str = "published_top1", path=None, title: str = ""):
    """Labelled scatter: ImageNet top-1 (x) against a recommendation metric with 95% CI (y),
    models and metric labelled in words.

    Rows whose ``family`` is ``"control"`` (random weights, hand-made features) are drawn as
    horizontal reference lines with their interval as a band, not as points; the legend sits
    right of the axes."""
    plt = pyplot()
    is_control = table["family"].eq("control") if "family" in table else pd.Series(False, index=table.index)
    controls = table[is_control].dropna(subset=[metric])
    d = table[~is_control].dropna(subset=[x, metric])
    name = metric_label(metric)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for j, (_, r) in enumerate(controls.iterrows()):
        color = f"C{j + 3}"
        ax.axhline(r[metric], ls="--", lw=1, color=color, label=f"control: {model_label(r['model'])}")
        ax.axhspan(r[f"{metric}_low"], r[f"{metric}_high"], color=color, alpha=0.12)
    if d.empty:
        ax.text(0.5, 0.5, "no model with both a published top-1 and this metric", ha="center", va="center",
                transform=ax.transAxes)
    err = np.vstack([d[metric] - d[f"{metric}_low"], d[f"{metric}_high"] - d[metric]])
    xerr = 1.96 * d[f"{x}_stderr"] if f"{x}_stderr" in d else None  # measured top-1: 95% binomial interval
    ax.errorbar(d[x], d[metric], yerr=err, xerr=xerr, fmt="o", capsize=3, color=KIND_COLOURS["ImageNet model"],
                label="ImageNet models (95% intervals)")
    for i, (_, r) in enumerate(d.sort_values(x).iterrows()):  # alternate sides so close points stay legible
        ax.annotate(model_label(r["model"]), (r[x], r[metric]), textcoords="offset points", fontsize=8,
                    xytext=(6, 8 if i % 2 == 0 else -12))
    which = "measured" if x.startswith("measured") else "published"
    ax.set(xlabel=f"{which} ImageNet top-1 accuracy (%)", ylabel=f"{name} (95% interval)",
           title=title or f"ImageNet top-1 vs {name}")
    legend_outside(ax, fontsize=7)
    return save_figure(fig, path)


def slice_lines(panels: dict, metric: str = "ndcg", k: int = 20, visual=None, path=None, titles=None):
    """One metric by slice (popularity, item age ...), one panel per table in ``panels``: slices
    on x in ``slice_order``, the mean over test users with 95% interval bars on y, one line per
    configuration (``visual``, a ``(model, strategy, recommender)``, in colour; every non-visual
    baseline, model ``"-"``, in grey tones), dodged sideways so intervals do not overlap.

    Args:
        panels: ``{kind: tidy metrics with slice, slice_order}``
            (:func:`visrec_utils.evaluation.slices.slice_breakdown`); an empty table is left out.
        metric, k: the metric drawn (AUC gets a dashed line at chance).
        visual: the visual configuration shown (default: none, baselines only).
        titles: optional ``{kind: panel title}``.

    Returns:
        The matplotlib ``Figure``, also saved to ``path`` when given.

    Raises:
        PartSkipped: no panel has a row of that metric and ``k``.
    """
    plt = pyplot()
    tables = {}
    for kind, m in panels.items():
        d = m[(m["metric"] == metric) & (m["k"] == k)] if len(m) else m
        keep = d["model"].eq("-") | pd.Series([tuple(r) == tuple(visual or ()) for r in d[
            ["model", "strategy", "recommender"]].itertuples(index=False)], index=d.index, dtype=bool)
        if len(d) and keep.any():
            tables[kind] = d[keep]
    if not tables:
        raise PartSkipped(f"there are no {metric_label(metric, k)} values by slice to draw")
    name = metric_label(metric, k)
    configs = list(dict.fromkeys(c for d in tables.values()
                                 for c in d[["model", "strategy", "recommender"]].itertuples(index=False, name=None)))
    configs.sort(key=lambda c: c[0] == "-")  # the visual configuration first
    greys = iter(["0.2", "0.45", "0.6", "0.35", "0.55", "0.7"])
    style = {c: ("C0", "o", "-") if c[0] != "-" else (next(greys, "0.5"), "s^vDpx"[i % 6], ["--", ":", "-."][i % 3])
             for i, c in enumerate(configs)}
    fig, axes = plt.subplots(1, len(tables), figsize=(6.2 * len(tables), 4.2), squeeze=False)
    for ax, (kind, d) in zip(axes[0], tables.items()):
        ticks = d.drop_duplicates("slice_order").sort_values("slice_order")
        for j, c in enumerate(configs):
            g = d[(d["model"] == c[0]) & (d["strategy"] == c[1]) & (d["recommender"] == c[2])].sort_values("slice_order")
            if g.empty:
                continue
            x = g["slice_order"].to_numpy(float) + (j - (len(configs) - 1) / 2) * min(0.12, 0.6 / len(configs))
            err = np.nan_to_num(np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]]))
            colour, marker, line = style[c]
            ax.errorbar(x, g["value"], yerr=err, color=colour, marker=marker, ms=4, lw=1.8 if line == "-" else 1.1,
                        ls=line, capsize=2, label=config_label(*c))
        if metric == "auc":
            ax.axhline(CHANCE_AUC, ls="--", lw=1.2, color="0.25")
        ax.set_xticks(ticks["slice_order"], ticks["slice"], rotation=35, ha="right", fontsize=7.5)
        ax.set(xlabel=(titles or {}).get(kind, str(kind).replace("_", " ")), ylabel=f"{name} (higher is better)")
    axes[0][0].set_title(f"{name} by slice: mean over test users, 95% bootstrap interval", loc="left", fontsize=10)
    legend_outside(axes[0][-1])
    return save_figure(fig, path)
