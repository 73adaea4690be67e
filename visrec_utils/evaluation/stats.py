"""Paired comparisons of configurations over the same test users.

For each configuration and metric, the per-user difference against a reference configuration
(the same users, the same split) is summarised by its mean, a 95% percentile bootstrap interval
that resamples users (``scipy.stats.bootstrap``), and a two-sided Wilcoxon signed-rank p-value
(``scipy.stats.wilcoxon``; users with a zero difference are dropped, Wilcoxon's original
treatment, so a metric that is 0 for most users is tested on the users where it differs). The
p-values of one table are corrected together with Holm's step-down method
(``statsmodels.stats.multitest.multipletests``), which controls the family-wise error rate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import bootstrap_ci
from ..core.skips import PartSkipped

CONFIG = ["model", "strategy", "recommender"]
META = {"user_id", "n_truth", "n_candidates", "n_points", *CONFIG}
#: Columns of a paired comparison table (:func:`paired_comparison`).
PAIRED_COLUMNS = [*CONFIG, "metric", "k", "reference", "mean_diff", "ci_low", "ci_high", "n_users", "n_nonzero",
                  "wilcoxon_p", "p_holm", "verdict"]


class ReferenceMissing(PartSkipped, KeyError):
    """The reference configuration is not among those evaluated (e.g. ``baselines`` left empty
    drops ``-/-/random``): the paired comparison is skipped. Both a :class:`PartSkipped` and,
    as before, a ``KeyError``; its message is the plain sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zeros dropped): the exact distribution for up to 50
    non-zero differences without ties, else the normal approximation with tie correction. (For
    small samples with ties scipy's default falls back to a permutation test that can take
    minutes; the approximation is the textbook choice there.)"""
    from scipy import stats

    nz = d[d != 0]
    exact = len(nz) <= 50 and np.unique(np.abs(nz)).size == len(nz)
    return float(stats.wilcoxon(d, zero_method="wilcox", method="exact" if exact else "asymptotic").pvalue)


def parse_config(text: str) -> tuple[str, str, str]:
    """``"model/strategy/recommender"`` -> tuple, e.g. ``"-/-/random"``.

    Raises:
        ValueError: not three parts separated by '/'.
    """
    parts = tuple(text.split("/"))
    if len(parts) != 3:
        raise ValueError(f"a configuration is 'model/strategy/recommender' (e.g. '-/-/random'), not {text!r}")
    return parts


def paired_comparison(per_user: pd.DataFrame, reference: tuple[str, str, str], metrics=None,
                      alpha: float = 0.05, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every configuration against ``reference``, metric by metric, Holm-corrected.

    Args:
        per_user: per-user metrics with ``model, strategy, recommender, user_id`` and one
            column per metric (``results/per_user.parquet``).
        reference: the (model, strategy, recommender) every other configuration is compared to.
        metrics: metric columns to compare (default: all).
        alpha: family-wise error rate for the verdict.

    Returns:
        One row per (configuration, metric): ``model, strategy, recommender, metric, k,
        reference, mean_diff, ci_low, ci_high, n_users, n_nonzero, wilcoxon_p, p_holm, verdict``
        where verdict is "better", "worse" or "no detectable difference" (Holm-corrected p vs
        ``alpha``).

    Raises:
        ReferenceMissing: (a ``KeyError``) the reference configuration is not in ``per_user``
            (lists the ones that are).
        PartSkipped: the reference is the only configuration.
    """
    configs = per_user[CONFIG].drop_duplicates().apply(tuple, axis=1).tolist()
    if not configs:
        raise PartSkipped("nothing was evaluated (see the evaluation above), so there is nothing to compare")
    if tuple(reference) not in configs:
        raise ReferenceMissing(f"the reference {'/'.join(reference)} is not among the configurations evaluated "
                               f"({', '.join('/'.join(c) for c in configs)}); set reference to one of them")
    if len(configs) == 1:
        raise PartSkipped(f"only the reference {'/'.join(reference)} was evaluated, so there is nothing to compare "
                          "with it")
    metrics = metrics or [c for c in per_user.columns if c not in META]
    ref = per_user[(per_user[CONFIG].apply(tuple, axis=1) == tuple(reference))].set_index("user_id")
    rows = []
    for cfg, g in per_user.groupby(CONFIG, sort=False):
        if tuple(cfg) == tuple(reference):
            continue
        g = g.set_index("user_id")
        users = g.index.intersection(ref.index)
        for col in metrics:
            d = (g.loc[users, col] - ref.loc[users, col]).to_numpy(dtype=float)
            d = d[np.isfinite(d)]
            mean, lo, hi = bootstrap_ci(d, n_resamples=n_resamples, seed=seed)
            nz = int(np.count_nonzero(d))
            p = _wilcoxon_p(d) if nz > 0 else 1.0
            metric, _, k = col.partition("@")
            rows.append({**dict(zip(CONFIG, cfg)), "metric": metric, "k": int(k) if k else 0,
                         "reference": "/".join(reference), "mean_diff": mean, "ci_low": lo, "ci_high": hi,
                         "n_users": len(d), "n_nonzero": nz, "wilcoxon_p": p})
    return holm(pd.DataFrame(rows), alpha)


def holm(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Recompute ``p_holm`` and ``verdict`` of a comparison table over all of its rows (one family)."""
    from statsmodels.stats.multitest import multipletests

    out = table.copy()
    if out.empty:
        return out
    out["p_holm"] = multipletests(out["wilcoxon_p"].to_numpy(), method="holm")[1]
    sig = out["p_holm"] < alpha
    out["verdict"] = np.where(sig & (out["mean_diff"] > 0), "better",
                              np.where(sig & (out["mean_diff"] < 0), "worse", "no detectable difference"))
    return out


def paired_vs_frozen(per_user: pd.DataFrame, recommender: str = "visrank_max", metrics=None, alpha: float = 0.05,
                     n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every fine-tuning strategy against the same model's frozen features, per user.

    Runs :func:`paired_comparison` per model (reference ``(model, "frozen", recommender)``) and
    applies Holm's correction once over the whole table.

    Returns:
        The :func:`paired_comparison` columns; models without a frozen set are left out.
    """
    parts = []
    sel = per_user[per_user["recommender"] == recommender]
    for model, g in sel.groupby("model", sort=False):
        if (g["strategy"] == "frozen").any() and g["strategy"].nunique() > 1:
            parts.append(paired_comparison(g, (model, "frozen", recommender), metrics=metrics, alpha=alpha,
                                           n_resamples=n_resamples, seed=seed))
    return holm(pd.concat(parts, ignore_index=True), alpha) if parts else pd.DataFrame()
