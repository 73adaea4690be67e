"""The study's answer: ImageNet top-1 against recommendation quality, model by model."""
from __future__ import annotations

import numpy as np
import pandas as pd

MAIN_METRICS = [("auc", 0), ("ndcg", 20), ("recall", 20), ("precision", 10), ("mrr", 0)]


def metric_label(metric: str, k: int) -> str:
    """``("ndcg", 20)`` -> ``"ndcg@20"``; ``("auc", 0)`` -> ``"auc"``."""
    return f"{metric}@{k}" if k else metric


def imagenet_table(metrics: pd.DataFrame, models: pd.DataFrame, strategy: str = "frozen",
                   recommender: str = "visrank_max", which=MAIN_METRICS) -> pd.DataFrame:
    """One row per model: published top-1 and each main metric with its 95% interval.

    Args:
        metrics: tidy metrics (``results/metrics.csv``).
        models: one row per model with ``model``, ``published_top1`` (percent) and optionally
            ``measured_top1``.
        strategy, recommender: which configuration to compare across models.
        which: (metric, k) pairs to include.

    Returns:
        DataFrame with ``model, published_top1, [measured_top1,] <m>, <m>_low, <m>_high ...``
        sorted by published top-1.
    """
    sel = metrics[(metrics["strategy"] == strategy) & (metrics["recommender"] == recommender)]
    out = models.set_index("model").copy()
    for metric, k in which:
        rows = sel[(sel["metric"] == metric) & (sel["k"] == k)].set_index("model")
        lab = metric_label(metric, k)
        out[lab] = rows["value"]
        out[f"{lab}_low"] = rows["ci_low"]
        out[f"{lab}_high"] = rows["ci_high"]
    return out.reset_index().sort_values("published_top1").reset_index(drop=True)


def correlations(table: pd.DataFrame, x: str = "published_top1", which=MAIN_METRICS) -> pd.DataFrame:
    """Spearman and Pearson correlation (scipy.stats) between ``x`` and each metric across models.

    Returns:
        DataFrame with ``metric, n_models, spearman_rho, spearman_p, pearson_r, pearson_p``; NaN
        where fewer than 3 models have both values (a correlation of 2 points is meaningless).
    """
    from scipy import stats

    rows = []
    for metric, k in which:
        lab = metric_label(metric, k)
        if lab not in table:
            continue
        d = table[[x, lab]].dropna()
        row = {"metric": lab, "n_models": len(d)}
        if len(d) >= 3 and d[x].nunique() > 1 and d[lab].nunique() > 1:
            sr = stats.spearmanr(d[x], d[lab])
            pr = stats.pearsonr(d[x], d[lab])
            row.update(spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue),
                       pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue))
        else:
            row.update(spearman_rho=np.nan, spearman_p=np.nan, pearson_r=np.nan, pearson_p=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def answer_text(table: pd.DataFrame, corr: pd.DataFrame, metric: str = "ndcg@20") -> str:
    """A short plain-language reading of the correlation, generated from the numbers."""
    row = corr[corr["metric"] == metric]
    if row.empty or np.isnan(row["spearman_rho"].iloc[0]):
        return f"Too few models with a published top-1 to correlate with {metric}."
    r = row.iloc[0]
    best_in = table.loc[table["published_top1"].idxmax(), "model"]
    best_rec = table.loc[table[metric].idxmax(), "model"]
    same = "also" if best_in == best_rec else "not"
    return (
        f"Across {int(r['n_models'])} models, Spearman's rho between published ImageNet top-1 and "
        f"{metric} is {r['spearman_rho']:.2f} (p = {r['spearman_p']:.2f}); Pearson's r is "
        f"{r['pearson_r']:.2f} (p = {r['pearson_p']:.2f}). The best ImageNet model ({best_in}) is "
        f"{same} the best recommender by {metric} ({best_rec}). With {int(r['n_models'])} models "
        "the correlation is weak evidence either way; compare the metric intervals in the table."
    )
