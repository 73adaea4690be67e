"""The model card (issue 18): what each embedding set is, what it costs, how well it recommends.

:func:`model_card` joins ``results/models.csv`` (published and measured top-1, parameters, GFLOPs,
input size, embedding dimension, pretraining data and objective from
:mod:`visrec_utils.features.model_cost`; images/s and peak memory of the extraction pass) with the
main metrics of the study's recommender on frozen features and their 95% intervals
(``results/metrics.csv``). :func:`pareto_front` and :func:`pareto_figure` show cost against
quality: which sets no other set beats on both at once.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import imagenet_table
from .analysis import metric_label as column_of
from .labels import metric_label
from .plots import legend_outside, pyplot, save_figure

#: The model card's columns about the network and its extraction, in order (those present are kept).
CARD_COLUMNS = ["model", "family", "published_top1", "measured_top1", "measured_top1_stderr", "n_params", "gflops",
                "input_size", "dim", "pretrain_data", "pretrain_objective", "extract_images_per_s",
                "extract_peak_rss_gib", "extract_added_rss_gib", "extract_pass"]
#: Its metrics (metric, k): each comes with ``<label>_low`` and ``<label>_high``, the 95% interval.
CARD_METRICS = [("auc", 0), ("ndcg", 20), ("recall", 20), ("mrr", 0)]

#: Cost axes of the Pareto figure: column, words, and whether more is better.
COST_AXES = [("extract_images_per_s", "extraction speed (images/s, more is better)", True),
             ("extract_peak_rss_gib", "peak memory of the extraction pass (GiB, less is better)", False),
             ("dim", "embedding dimension (less is cheaper to store and search)", False)]


def model_card(models: pd.DataFrame, metrics: pd.DataFrame, strategy: str = "frozen",
               recommender: str = "visrank_max", which=CARD_METRICS) -> pd.DataFrame:
    """One row per embedding set extracted (status ``ok`` or ``precomputed``): :data:`CARD_COLUMNS`
    then each metric of ``which`` with its interval, for ``strategy`` and ``recommender``.

    Args:
        models: ``results/models.csv`` (a column it lacks, e.g. from a run before the model card,
            is left empty).
        metrics: tidy metrics (``results/metrics.csv``).

    Returns:
        DataFrame sorted by published top-1 (sets without one last), ``n_params`` in millions as
        ``params_m``; a set the evaluation did not reach has NaN metrics.

    Raises:
        ValueError: ``models`` has no ``model`` column.
    """
    if "model" not in models:
        raise ValueError("the model card needs results/models.csv with a 'model' column (run notebook 02 first)")
    ok = models[models["status"].isin(["ok", "precomputed"])] if "status" in models else models
    card = ok.reindex(columns=CARD_COLUMNS)
    card = imagenet_table(metrics, card, strategy=strategy, recommender=recommender, which=which)
    card.insert(card.columns.get_loc("n_params"), "params_m", pd.to_numeric(card["n_params"], errors="coerce") / 1e6)
    return card.drop(columns="n_params")


def pareto_front(card: pd.DataFrame, cost: str, more_is_better: bool, quality: str = "ndcg@20") -> pd.Series:
    """Whether each row is on the Pareto front of ``quality`` (more is better) against ``cost``:
    no other row is at least as good on both and strictly better on one. Rows missing either
    value are not on it.

    Returns:
        Boolean Series aligned with ``card``.
    """
    q = pd.to_numeric(card[quality], errors="coerce").to_numpy(float)
    c = pd.to_numeric(card[cost], errors="coerce").to_numpy(float)
    c = c if more_is_better else -c  # both axes: more is better
    ok = np.isfinite(q) & np.isfinite(c)
    front = np.zeros(len(card), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = others & (q >= q[i]) & (c >= c[i]) & ((q > q[i]) | (c > c[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=card.index)


def pareto_figure(card: pd.DataFrame, metric: str = "ndcg", k: int = 20, path=None):
    """Cost against quality: one panel per cost axis of :data:`COST_AXES` that has values, every
    embedding set a dot with its 95% interval of ``metric@k``, the Pareto front joined by a line
    and its sets labelled.

    Returns:
        The matplotlib figure (also saved to ``path`` when given).

    Raises:
        ValueError: no set has the metric, or none has both the metric and any cost axis.
    """
    plt = pyplot()
    quality, words_q = column_of(metric, k), metric_label(metric, k)
    if card.get(quality, pd.Series(dtype=float)).isna().all():
        raise ValueError(f"there are no {words_q} values to draw")
    axes_used = [(col, words, more) for col, words, more in COST_AXES
                 if col in card and (pd.to_numeric(card[col], errors="coerce").notna() & card[quality].notna()).any()]
    if not axes_used:
        raise ValueError(f"no embedding set has both {words_q} and a cost ({', '.join(c for c, _, _ in COST_AXES)}) "
                         "in the model card; extract the models in this run to measure their cost")
    fig, axes = plt.subplots(1, len(axes_used), figsize=(5.2 * len(axes_used), 4.2), squeeze=False)
    families = sorted(card["family"].fillna("other").unique())
    colours = dict(zip(families, plt.get_cmap("tab10").colors))
    for ax, (col, words, more) in zip(axes[0], axes_used):
        x = pd.to_numeric(card[col], errors="coerce")
        on = pareto_front(card, col, more, quality)
        for fam, rows in card.groupby(card["family"].fillna("other")):
            ax.errorbar(x[rows.index], rows[quality], yerr=[rows[quality] - rows[f"{quality}_low"],
                                                            rows[f"{quality}_high"] - rows[quality]],
                        fmt="o", color=colours[fam], label=fam, capsize=3, alpha=0.85)
        front = card[on].assign(_x=x[on]).sort_values("_x")
        ax.plot(front["_x"], front[quality], "--", color="0.3", lw=1)
        for _, r in front.iterrows():
            ax.annotate(r["model"], (r["_x"], r[quality]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        if col != "dim" and x.dropna().gt(0).all() and x.max() / max(x.min(), 1e-9) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(words)
        ax.set_ylabel(f"{words_q} (95% interval)")
        ax.grid(alpha=0.3)
    legend_outside(axes[0][-1], title="family")
    fig.tight_layout()
    if path:
        save_figure(fig, path)
    return fig


def card_text(card: pd.DataFrame, quality: str = "ndcg@20") -> str:
    """One sentence on the Pareto fronts: the sets no other set beats on quality and speed at
    once, and on quality and memory; "" when the card has no cost measurements."""
    parts = []
    for col, words, more in COST_AXES[:2]:
        if col not in card or card[col].isna().all():
            continue
        on = card[pareto_front(card, col, more, quality)]
        if len(on):
            what = words.split(" (")[0]
            parts.append(f"against {what}: {', '.join(on['model'])}")
    if not parts:
        return ""
    return (f"No other embedding set is both better by {metric_label('ndcg', 20) if quality == 'ndcg@20' else quality} and cheaper, {'; '.join(parts)} "
            "(the Pareto fronts of the figure; the intervals say how much of each gap is noise).")
