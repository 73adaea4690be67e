"""Does the purchase-free attribute probe predict recommendation quality better than ImageNet top-1?

The probe (:mod:`visrec_utils.evaluation.attribute_probe`) gives each embedding set a kNN
attribute precision per catalogue column; this module puts it next to top-1 as a predictor of
each main recommendation metric across models, with the same correlation machinery
(:func:`visrec_utils.reports.analysis.correlations`: Spearman, Kendall and Pearson coefficients,
exact permutation p-values for up to 8 models).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import analysis

#: Prefix of the probe's predictor columns in :func:`probe_wide` (``probe:<column>``, ``probe:mean``).
PREFIX = "probe:"


def probe_wide(probe: pd.DataFrame, strategy: str = "frozen") -> pd.DataFrame:
    """One row per model of one strategy: ``model``, ``probe:<column>`` (precision) per probed
    column and ``probe:mean`` (their unweighted mean).

    Args:
        probe: :func:`visrec_utils.evaluation.attribute_probe.probe_sets` rows.
        strategy: which sets (``frozen`` = the ImageNet features as released).
    """
    sel = probe[probe["strategy"] == strategy]
    wide = sel.pivot(index="model", columns="column", values="precision")
    wide = wide.reindex(columns=list(pd.unique(sel["column"])))
    wide.columns = [f"{PREFIX}{c}" for c in wide.columns]
    wide[f"{PREFIX}mean"] = wide.mean(axis=1)
    return wide.reset_index()


def probe_correlations(probe: pd.DataFrame, table: pd.DataFrame, x: str = "published_top1", strategy: str = "frozen",
                       which=analysis.MAIN_METRICS, common: bool = True) -> pd.DataFrame:
    """Correlation of each predictor (``x``, then each probe column, then the probe mean) with
    each main metric across the models of ``table``.

    Args:
        probe: :func:`visrec_utils.evaluation.attribute_probe.probe_sets` rows.
        table: one row per model with ``model``, ``x`` and the metric columns
            (:func:`visrec_utils.reports.analysis.imagenet_table`, ``results/imagenet_vs_transfer.csv``;
            pass the models the study correlates, e.g. ``compare``'s ``used``).
        x: the ImageNet column compared with the probe.
        strategy: the probe's sets to use (match the table's strategy).
        which: (metric, k) pairs, as :func:`~visrec_utils.reports.analysis.correlations`.
        common: True keeps only the models with ``x`` and a probe value, so every predictor is
            judged on the same models; False lets each predictor use all the models it has (the
            probe then also ranks controls and layer variants, which have no top-1 of their own).

    Returns:
        ``predictor`` then :func:`~visrec_utils.reports.analysis.correlations`'s columns
        (``metric, n_models, spearman_rho, spearman_p, kendall_tau, kendall_p, pearson_r,
        pearson_p``), one row per (predictor, metric), ``x`` first.

    Raises:
        ValueError: ``table`` lacks ``model`` or ``x``, or no probe row has ``strategy``.
    """
    missing = [c for c in ("model", x) if c not in table]
    if missing:
        raise ValueError(f"table: columns {missing} are missing; pass analysis.imagenet_table's table")
    wide = probe_wide(probe, strategy)
    if wide.empty:
        raise ValueError(f"strategy: the probe has no {strategy!r} rows; its strategies are "
                         f"{sorted(pd.unique(probe['strategy']))}")
    merged = table.merge(wide, on="model", how="left")
    predictors = [x, *[c for c in wide.columns if c.startswith(PREFIX)]]
    if common:
        merged = merged.dropna(subset=predictors)
    parts = [analysis.correlations(merged, x=p, which=which).assign(predictor=p) for p in predictors]
    out = pd.concat(parts, ignore_index=True)
    return out[["predictor", *[c for c in out.columns if c != "predictor"]]]


def probe_text(corr: pd.DataFrame, x: str = "published_top1", metric: str = "ndcg@20",
               predictor: str = f"{PREFIX}mean") -> str:
    """A sentence comparing the probe's and top-1's Spearman correlation with ``metric``,
    generated from :func:`probe_correlations`."""
    def row(p):
        r = corr[(corr["predictor"] == p) & (corr["metric"] == metric)]
        return r.iloc[0] if len(r) and np.isfinite(r["spearman_rho"].iloc[0]) else None

    a, b = row(x), row(predictor)
    if a is None or b is None:
        return f"Too few models with both {x} and the attribute probe to correlate with {metric}."
    better = ("higher than" if abs(b.spearman_rho) > abs(a.spearman_rho) else
              "no higher than")
    return (f"Across {int(b.n_models)} models, Spearman's rho of {metric} with the attribute probe ({predictor}) is "
            f"{b.spearman_rho:.2f} (permutation p = {b.spearman_p:.2f}), with {x} {a.spearman_rho:.2f} "
            f"(p = {a.spearman_p:.2f}): the probe's rank agreement is {better} top-1's. With "
            f"{int(b.n_models)} models this comparison is weak evidence either way.")
