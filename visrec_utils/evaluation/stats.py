"""Paired comparisons of configurations over the same test users.

For each configuration and metric, the per-user difference against a reference configuration
(the same users, the same split) is summarised by its mean, a 95% percentile bootstrap interval
that resamples users (``scipy.stats.bootstrap``), and a two-sided Wilcoxon signed-rank p-value
(``scipy.stats.wilcoxon``; users with a zero difference are dropped, Wilcoxon's original
treatment, so a metric that is 0 for most users is tested on the users where it differs).

The comparisons fall into two families: the *primary* ones (:data:`PRIMARY`: AUC and nDCG@20,
the questions the study asks) and the *secondary* ones (every other metric and cut-off). Holm's
step-down method (``statsmodels.stats.multitest.multipletests``), which controls the family-wise
error rate, runs within each family separately, so the many secondary cut-offs do not dilute the
primary answer. The verdict follows both the test and the interval: "better"/"worse" when the
Holm-corrected p-value is below ``alpha``; "better before correction"/"worse before correction"
when it is not but the 95% interval excludes 0; "no detectable difference" otherwise. The
``why`` column says which, in one sentence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import bootstrap_cis
from ..core.skips import PartSkipped

CONFIG = ["model", "strategy", "recommender"]
META = {"user_id", "n_truth", "n_candidates", "n_points", *CONFIG}
#: The primary comparisons, ``(metric, k)`` (k = 0: no cut-off); every other metric is secondary.
PRIMARY = (("auc", 0), ("ndcg", 20))
#: Columns of a paired comparison table (:func:`paired_comparison`).
PAIRED_COLUMNS = [*CONFIG, "metric", "k", "reference", "mean_diff", "ci_low", "ci_high", "n_users", "n_nonzero",
                  "wilcoxon_p", "p_holm", "verdict", "family", "why"]
#: Every verdict, from the strongest evidence for "better" to the strongest for "worse".
VERDICTS = ("better", "better before correction", "no detectable difference", "worse before correction", "worse")
#: Columns :func:`holm` needs (a finished run's table read back from CSV has them).
JUDGED_FROM = ["metric", "k", "mean_diff", "ci_low", "ci_high", "wilcoxon_p"]


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
                      alpha: float = 0.05, n_resamples: int = 1000, seed: int = 0,
                      primary=PRIMARY) -> pd.DataFrame:
    """Every configuration against ``reference``, metric by metric, Holm-corrected per family.

    Args:
        per_user: per-user metrics with ``model, strategy, recommender, user_id`` and one
            column per metric (``results/per_user.parquet``).
        reference: the (model, strategy, recommender) every other configuration is compared to.
        metrics: metric columns to compare (default: all).
        alpha: family-wise error rate for the verdict.
        primary: the ``(metric, k)`` pairs of the primary family (:data:`PRIMARY`).

    Returns:
        One row per (configuration, metric) with :data:`PAIRED_COLUMNS`; ``p_holm``, ``verdict``,
        ``family`` and ``why`` as in :func:`holm`, the whole table being one correction per family.

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
    is_ref = np.logical_and.reduce([per_user[c].to_numpy() == v for c, v in zip(CONFIG, reference)])
    ref = per_user[is_ref].set_index("user_id")
    rows = []
    for cfg, g in per_user.groupby(CONFIG, sort=False):
        if tuple(cfg) == tuple(reference):
            continue
        g = g.set_index("user_id")
        users = g.index.intersection(ref.index)
        diffs = (g.loc[users, metrics].to_numpy(dtype=float)  # one aligned block per configuration
                 - ref.loc[users, metrics].to_numpy(dtype=float))
        finite = [diffs[:, j][np.isfinite(diffs[:, j])] for j in range(len(metrics))]
        cis = bootstrap_cis(finite, n_resamples=n_resamples, seed=seed)  # one quantile call per configuration
        for j, col in enumerate(metrics):
            d = finite[j]
            mean, lo, hi = (float(x) for x in cis[j])
            nz = int(np.count_nonzero(d))
            p = _wilcoxon_p(d) if nz > 0 else 1.0
            metric, _, k = col.partition("@")
            rows.append({**dict(zip(CONFIG, cfg)), "metric": metric, "k": int(k) if k else 0,
                         "reference": "/".join(reference), "mean_diff": mean, "ci_low": lo, "ci_high": hi,
                         "n_users": len(d), "n_nonzero": nz, "wilcoxon_p": p})
    return holm(pd.DataFrame(rows, columns=PAIRED_COLUMNS[:-4]), alpha, primary=primary)


def _p(p: float) -> str:
    """``"= 0.006"``, ``"= 0.13"``, ``"< 0.001"`` (two significant figures)."""
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def _why(verdict: str, r, n: int, family: str) -> str:
    """One sentence: why ``verdict`` for row ``r`` of a family of ``n`` comparisons."""
    over = f"over {n} {family} comparison{'s' if n != 1 else ''}"
    if np.isnan(r.wilcoxon_p):
        return "no test: no user has this metric for both configurations"
    if verdict in ("better", "worse"):
        tail = "" if (r.ci_low > 0 or r.ci_high < 0) else ", though the 95% interval of the mean difference includes 0"
        return f"Holm p {_p(r.p_holm)} {over}{tail}"
    if verdict != "no detectable difference":
        if r.wilcoxon_p < 0.05:
            return (f"the 95% interval excludes 0 and Wilcoxon p {_p(r.wilcoxon_p)}, but not after Holm's correction "
                    f"{over} (p {_p(r.p_holm)})")
        return f"the 95% interval excludes 0, but Wilcoxon p {_p(r.wilcoxon_p)} (Holm p {_p(r.p_holm)} {over})"
    if np.isnan(r.ci_low):
        return f"no 95% interval (fewer than 2 users) and Holm p {_p(r.p_holm)} {over}"
    return f"the 95% interval includes 0 (Holm p {_p(r.p_holm)} {over})"


def holm_adjusted(p) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values of ``p`` ``(m,)``, in the same order.

    The i-th smallest p (i from 0) is multiplied by ``m - i``; the products are made
    non-decreasing (running maximum) and capped at 1, as ``statsmodels.stats.multitest.
    multipletests(p, method="holm")[1]`` computes them (equal to it in the tests). Computed here
    because that function calls ``gc.collect()`` on every call: 0.27 s each with a study's heap,
    3.3 s of notebook 04.

    Raises:
        ValueError: a p-value outside [0, 1] or NaN (drop NaNs first).
    """
    p = np.asarray(p, dtype=float)
    if p.size and not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"Holm's correction needs p-values in [0, 1] without NaN; got {p[~((p >= 0) & (p <= 1))][:3]}")
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)), 1.0)
    return adjusted


def holm(table: pd.DataFrame, alpha: float = 0.05, primary=PRIMARY, within=()) -> pd.DataFrame:
    """Recompute ``family``, ``p_holm``, ``verdict`` and ``why`` of a paired comparison table.

    Each row belongs to the ``"primary"`` family when its ``(metric, k)`` is in ``primary``, else
    to the ``"secondary"`` one; Holm's step-down correction (:func:`holm_adjusted`,
    Holm 1979) runs over the rows of each family separately, and separately again per value of
    the ``within`` columns (e.g. ``("protocol",)``). Rows without a p-value (NaN) are left out
    of the correction and keep a NaN ``p_holm``.

    The verdict: "better"/"worse" (the sign of ``mean_diff``) when ``p_holm < alpha``; else
    "better before correction"/"worse before correction" when the 95% interval
    ``[ci_low, ci_high]`` excludes 0; else "no detectable difference". ``why`` says which in
    one sentence, with the p-values and the size of the family.

    Works on a finished run's table read back from CSV: it needs only :data:`JUDGED_FROM`.

    Args:
        table: paired comparison rows (:func:`paired_comparison`, ``results/paired_vs_reference.csv``).
        alpha: family-wise error rate.
        primary: ``(metric, k)`` pairs of the primary family.
        within: columns whose values are corrected separately (each its own set of families).

    Returns:
        A copy of ``table`` with those four columns (added in the order of :data:`PAIRED_COLUMNS`
        when absent, overwritten when present).

    Raises:
        ValueError: a column of :data:`JUDGED_FROM` or ``within`` is missing (named).
    """
    missing = [c for c in [*JUDGED_FROM, *within] if c not in table.columns]
    if missing:
        raise ValueError(f"a paired comparison table needs the columns {', '.join([*JUDGED_FROM, *within])} "
                         f"(e.g. results/paired_vs_reference.csv); this one lacks {', '.join(missing)}")
    out = table.copy()
    for col, fill in (("p_holm", np.nan), ("verdict", ""), ("family", ""), ("why", "")):
        if col not in out:
            out[col] = fill
    if out.empty:
        return out
    wanted = {(str(m), int(k)) for m, k in primary}
    out["family"] = ["primary" if (str(m), int(k)) in wanted else "secondary" for m, k in zip(out["metric"], out["k"])]
    out["p_holm"] = np.nan
    size = pd.Series(0, index=out.index)
    p = out["wilcoxon_p"].astype(float)
    for _, g in out.groupby([*within, "family"], sort=False, dropna=False):
        ok = g.index[np.isfinite(p[g.index])]
        if len(ok):
            out.loc[ok, "p_holm"] = holm_adjusted(p[ok].to_numpy())
        size[g.index] = len(ok)
    sig = out["p_holm"] < alpha
    out["verdict"] = np.select(
        [sig & (out["mean_diff"] > 0), sig & (out["mean_diff"] < 0), ~sig & (out["ci_low"] > 0),
         ~sig & (out["ci_high"] < 0)],
        ["better", "worse", "better before correction", "worse before correction"], "no detectable difference")
    out["why"] = [_why(v, r, n, f) for v, r, n, f in zip(out["verdict"], out.itertuples(), size, out["family"])]
    return out


def rejudge(table, alpha: float = 0.05, primary=PRIMARY) -> pd.DataFrame:
    """Re-judge a finished run's paired table without recomputing per-user data.

    Args:
        table: a DataFrame or the path of a ``.csv``/``.parquet`` paired table
            (``results/paired_vs_reference.csv``, ``finetune_vs_frozen.csv``, ``paired_protocols.csv``).
        alpha, primary: as in :func:`holm`.

    Returns:
        :func:`holm` of the table, corrected per ``protocol`` when it has that column (as
        :func:`visrec_utils.evaluation.experiment.run_protocols` does), columns in the order of
        :data:`PAIRED_COLUMNS` then the rest.

    Raises:
        FileNotFoundError: no such file. ValueError: see :func:`holm`.
    """
    if not isinstance(table, pd.DataFrame):
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such paired table; pass a results/*.csv or .parquet of a finished run")
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    out = holm(table, alpha, primary=primary, within=("protocol",) if "protocol" in table else ())
    return out[[c for c in PAIRED_COLUMNS if c in out] + [c for c in out if c not in PAIRED_COLUMNS]]


def paired_vs_frozen(per_user: pd.DataFrame, recommender: str = "visrank_max", metrics=None, alpha: float = 0.05,
                     n_resamples: int = 1000, seed: int = 0, primary=PRIMARY) -> pd.DataFrame:
    """Every fine-tuning strategy against the same model's frozen features, per user.

    Runs :func:`paired_comparison` per model (reference ``(model, "frozen", recommender)``) and
    applies Holm's correction once over the whole table, within each family (:func:`holm`).

    Returns:
        The :func:`paired_comparison` columns; models without a frozen set are left out.
    """
    parts = []
    sel = per_user[per_user["recommender"] == recommender]
    for model, g in sel.groupby("model", sort=False):
        if (g["strategy"] == "frozen").any() and g["strategy"].nunique() > 1:
            parts.append(paired_comparison(g, (model, "frozen", recommender), metrics=metrics, alpha=alpha,
                                           n_resamples=n_resamples, seed=seed, primary=primary))
    if not parts:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    return holm(pd.concat(parts, ignore_index=True), alpha, primary=primary)
