"""The study's answer: ImageNet top-1 against recommendation quality, model by model."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped
from ..evaluation import stats
from .labels import metric_label as metric_name

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


def perm_p(x: np.ndarray, y: np.ndarray, statistic, seed: int = 0) -> float:
    """Two-sided permutation p-value of ``statistic(x, y)`` (scipy.stats.permutation_test,
    'pairings'): exact over all n! pairings when n <= 8, else 9,999 random pairings. Only ``x``
    is permuted (``y`` held fixed): permuting both samples enumerates (n!)^2 pairings, the same
    p-value at n! times the cost (1.6e9 for 8 models)."""
    from scipy import stats

    res = stats.permutation_test((x,), lambda a: statistic(a, y), permutation_type="pairings",
                                 n_resamples=np.inf if len(x) <= 8 else 9999, alternative="two-sided",
                                 random_state=np.random.default_rng(seed))
    return float(res.pvalue)


def correlations(table: pd.DataFrame, x: str = "published_top1", which=MAIN_METRICS) -> pd.DataFrame:
    """Spearman, Kendall and Pearson correlation between ``x`` and each metric across models.

    Coefficients come from scipy.stats; p-values are two-sided permutation p-values (exact over
    all pairings for up to 8 models), because the usual t-approximation is wrong for a handful
    of models (it gives p = 0 for a perfect rank correlation of 4 models, whose exact p is 1/12).

    Returns:
        DataFrame with ``metric, n_models, spearman_rho, spearman_p, kendall_tau, kendall_p,
        pearson_r, pearson_p``; NaN where fewer than 3 models have both values.
    """
    from scipy import stats

    rows = []
    coef = {"spearman_rho": lambda a, b: stats.spearmanr(a, b).statistic,
            "kendall_tau": lambda a, b: stats.kendalltau(a, b).statistic,
            "pearson_r": lambda a, b: stats.pearsonr(a, b).statistic}
    for metric, k in which:
        lab = metric_label(metric, k)
        if lab not in table:
            continue
        d = table[[x, lab]].dropna()
        row = {"metric": lab, "n_models": len(d)}
        ok = len(d) >= 3 and d[x].nunique() > 1 and d[lab].nunique() > 1
        for name, fn in coef.items():
            pname = name.split("_")[0] + "_p"
            if ok:
                a, b = d[x].to_numpy(float), d[lab].to_numpy(float)
                row[name], row[pname] = float(fn(a, b)), perm_p(a, b, fn)
            else:
                row[name], row[pname] = np.nan, np.nan
        rows.append(row)
    return pd.DataFrame(rows)


MIN_MODELS = 3


def require_models(table: pd.DataFrame, x: str = "published_top1", metric: str = "auc", n: int = MIN_MODELS) -> pd.DataFrame:
    """``table`` when at least ``n`` of its models have both ``x`` and ``metric`` (a correlation
    over fewer says nothing).

    Raises:
        PartSkipped: fewer than ``n`` such models.
    """
    have = len(table[[x, metric]].dropna()) if {x, metric} <= set(table.columns) else 0
    if have < n:
        what = {"published_top1": "published top-1", "measured_top1": "measured top-1"}.get(x, x)
        raise PartSkipped(f"a correlation across models needs at least {n} ImageNet models with both a {what} "
                          f"and {metric} values, and this study has {have}")
    return table


def family_groups(table: pd.DataFrame, n: int = MIN_MODELS) -> list[tuple[str, pd.DataFrame]]:
    """``[(family, rows)]`` of the families with at least ``n`` models in ``table``.

    Raises:
        PartSkipped: no family has ``n`` models (or ``table`` has no ``family`` column).
    """
    groups = [(f, g) for f, g in table.groupby("family")] if "family" in table else []
    groups = [(f, g) for f, g in groups if len(g) >= n]
    if not groups:
        raise PartSkipped(f"no architecture family has {n} or more models in this study")
    return groups


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
        f"{metric} is {r['spearman_rho']:.2f} (permutation p = {r['spearman_p']:.2f}); Pearson's r is "
        f"{r['pearson_r']:.2f} (p = {r['pearson_p']:.2f}). The best ImageNet model ({best_in}) is "
        f"{same} the best of these models by {metric} ({best_rec}). With {int(r['n_models'])} models "
        "the correlation is weak evidence either way; compare the metric intervals in the table."
    )


#: Verdict of :func:`visrec_utils.evaluation.stats.holm` -> the effect of fine-tuning, in words.
_EFFECT = {"better": "helps", "better before correction": "helps before correction only",
           "no detectable difference": "no detectable effect", "worse before correction": "hurts before correction only",
           "worse": "hurts"}


def finetune_summary(paired: pd.DataFrame, shown=stats.PRIMARY) -> str:
    """Markdown summary of fine-tuning against frozen, generated from :func:`visrec_utils.evaluation.stats.paired_vs_frozen`.

    A line saying which comparisons are primary and how many the Holm correction runs over; one
    line per (model, strategy) with the mean per-user difference, its 95% interval, the
    Holm-corrected p-value and the effect ("helps", "helps before correction only", "no
    detectable effect", "hurts before correction only", "hurts"; see
    :func:`visrec_utils.evaluation.stats.holm`); then the count of each effect per metric, with
    its family. A table without a ``family`` column (an older run) is re-judged first. Nothing
    in it is written by hand.
    """
    if paired.empty:
        return "No fine-tuned embedding set to compare with the frozen features."
    if "family" not in paired:
        paired = stats.holm(paired)
    size = paired[paired["wilcoxon_p"].notna()].groupby("family").size()
    primary = paired.loc[paired["family"] == "primary", ["metric", "k"]].drop_duplicates()
    said = (f"Primary comparisons: {' and '.join(metric_name(m, k) for m, k in primary.itertuples(index=False))}, "
            f"Holm-corrected together ({size.get('primary', 0)} comparisons); the other metrics are a secondary "
            "family, corrected on their own." if len(primary) else "This table has no primary comparison; its "
            "metrics are one secondary family, Holm-corrected together.")
    lines = [said + " \"Before correction only\": the 95% interval excludes 0, but the corrected test does not "
             "reject.\n"]
    for (model, strategy), g in paired.groupby(["model", "strategy"], sort=False):
        parts = []
        for metric, k in shown:
            r = g[(g["metric"] == metric) & (g["k"] == k)]
            if len(r):
                r = r.iloc[0]
                parts.append(f"{metric_name(metric, k)} {r.mean_diff:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}], "
                             f"Holm p = {r.p_holm:.3g}: **{_EFFECT[r.verdict]}**")
        lines.append(f"- `{model}` / `{strategy}`: " + "; ".join(parts))
    for metric, k in shown:
        r = paired[(paired["metric"] == metric) & (paired["k"] == k)]
        if r.empty:
            continue
        counts = r["verdict"].map(_EFFECT).value_counts()
        family = r["family"].iloc[0]
        said = [f"{counts.get(v, 0)} {v}" for v in _EFFECT.values()
                if counts.get(v, 0) or "before correction" not in v]
        lines.append(f"\nOn {metric_name(metric, k)} ({family} family, Holm over {size.get(family, 0)} comparisons), of {len(r)} "
                     "(model, strategy) pairs against frozen: " + ", ".join(said) + ".")
    return "\n".join(lines)


def log_odds(p) -> np.ndarray:
    """``log(p / (1 - p))`` for shares in (0, 1) (percentages are divided by 100 first), clipped
    to [1e-6, 1 - 1e-6]; the scale on which Kornblith, Shlens & Le (CVPR 2019) correlate
    ImageNet accuracy with transfer accuracy."""
    p = np.asarray(p, dtype=float)
    p = np.where(p > 1, p / 100.0, p)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


COEFFICIENTS = ("spearman_rho", "kendall_tau", "pearson_r", "pearson_logodds_r")


def _coef(name: str, a: np.ndarray, b: np.ndarray) -> float:
    """The coefficient ``name`` of ``a`` and ``b``; NaN (without scipy's warning) when one is constant."""
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    if name == "spearman_rho":
        return float(stats.spearmanr(a, b).statistic)
    if name == "kendall_tau":
        return float(stats.kendalltau(a, b).statistic)
    if name == "pearson_r":
        return float(stats.pearsonr(a, b).statistic)
    return float(stats.pearsonr(log_odds(a), log_odds(b)).statistic)


def coefficient_rows(name: str, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`_coef` of ``x`` ``(n,)`` with every row of ``rows`` ``(B, n)``: ``(B,) float64``,
    bit for bit the same values (tested against the per-row calls), in a few calls instead of
    ``B``: scipy's ``pearsonr`` along the rows, and Spearman's rho and Kendall's tau once per
    distinct row of ranks (both depend on a row only through its ranks, and a bootstrap over a
    handful of models repeats few rank orders)."""
    from scipy import stats

    x, rows = np.asarray(x, float), np.atleast_2d(np.asarray(rows, float))
    out = np.full(len(rows), np.nan)
    ok = np.ptp(rows, axis=1) > 0 if rows.shape[1] else np.zeros(len(rows), bool)
    if np.ptp(x) == 0 or not ok.any():
        return out
    if name in ("spearman_rho", "kendall_tau"):
        orders, back = np.unique(stats.rankdata(rows[ok], axis=1), axis=0, return_inverse=True)
        out[ok] = np.array([_coef(name, x, r) for r in orders])[back.ravel()]
        return out
    a, b = (x, rows[ok]) if name == "pearson_r" else (log_odds(x), log_odds(rows[ok]))
    out[ok] = stats.pearsonr(np.broadcast_to(a, b.shape), b, axis=1).statistic
    return out


def flag_checkpoints(models: pd.DataFrame, threshold: float = 10.0) -> pd.Series:
    """True for models whose measured top-1 is more than ``threshold`` points below the published
    figure (a wrongly loaded checkpoint or preprocessing), ``(n_models,) bool``; False where
    either figure is missing."""
    m = models.get("measured_top1", pd.Series(np.nan, index=models.index))
    return (m < models["published_top1"] - threshold).fillna(False).astype(bool)


def correlation_intervals(per_user: pd.DataFrame, table: pd.DataFrame, x: str = "published_top1",
                          strategy: str = "frozen", recommender: str = "visrank_max", which=MAIN_METRICS,
                          n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Correlation of ``x`` with each metric across the models of ``table``, with intervals.

    Every coefficient (Spearman, Kendall, Pearson, and Pearson on log-odds as in Kornblith et al.
    2019) gets a percentile bootstrap interval that resamples *users*: each resample draws the
    test users with replacement, recomputes every model's mean metric on that same draw, and
    recomputes the coefficient; the p-value is the exact permutation p-value over models
    (:func:`perm_p`). With few models the interval is wide, and the table says how wide.

    Args:
        per_user: per-user metrics with ``model, strategy, recommender, user_id`` (results/per_user.parquet).
        table: one row per model with ``model`` and ``x`` (models to correlate; at least 3).

    Returns:
        One row per (metric, coefficient): ``metric, coefficient, n_models, estimate, ci_low,
        ci_high, perm_p``.
    """
    sel = per_user[(per_user["strategy"] == strategy) & (per_user["recommender"] == recommender)
                   & per_user["model"].isin(table["model"])]
    models_ = [m for m in table["model"] if m in set(sel["model"])]
    xs = table.set_index("model").loc[models_, x].to_numpy(float)
    rng = np.random.default_rng(seed)
    rows = []
    for metric, k in which:
        lab = metric_label(metric, k)
        if lab not in sel or len(models_) < 3 or np.unique(xs).size < 2:
            continue
        wide = sel.pivot_table(index="user_id", columns="model", values=lab)[models_].dropna()
        vals = wide.to_numpy(float)
        est = vals.mean(0)
        draws = rng.integers(0, len(vals), size=(n_resamples, len(vals)))
        boot_means = np.stack([vals[d].mean(0) for d in draws])
        for name in COEFFICIENTS:
            if np.unique(est).size < 2:
                continue
            boot = coefficient_rows(name, xs, boot_means)
            boot = boot[np.isfinite(boot)]
            a = (1 - confidence) / 2
            rows.append({"metric": lab, "coefficient": name, "n_models": len(models_),
                         "estimate": _coef(name, xs, est),
                         "ci_low": float(np.quantile(boot, a)) if boot.size else np.nan,
                         "ci_high": float(np.quantile(boot, 1 - a)) if boot.size else np.nan,
                         "perm_p": perm_p(xs, est, lambda p, q, n=name: _coef(n, p, q), seed=seed)})
    return pd.DataFrame(rows, columns=["metric", "coefficient", "n_models", "estimate", "ci_low", "ci_high", "perm_p"])


def interval_text(ci: pd.DataFrame, metric: str = "ndcg@20", coefficient: str = "spearman_rho") -> str:
    """Plain words on how much the correlation interval allows, generated from the numbers."""
    r = ci[(ci["metric"] == metric) & (ci["coefficient"] == coefficient)]
    if r.empty:
        return f"Fewer than 3 models with {metric}: no correlation is estimated."
    r = r.iloc[0]
    if r.ci_low > 0:
        reading = "the interval excludes zero: higher top-1 goes with higher " + metric + " on these users"
    elif r.ci_high < 0:
        reading = "the interval excludes zero: higher top-1 goes with *lower* " + metric + " on these users"
    else:
        reading = "the interval includes zero: the data do not tell the direction"
    return (f"{coefficient} between top-1 and {metric} over {int(r.n_models)} models: {r.estimate:.2f}, 95% interval "
            f"[{r.ci_low:.2f}, {r.ci_high:.2f}] (users resampled), exact permutation p = {r.perm_p:.3f}; {reading}. "
            f"The interval covers only the users' sampling noise; with {int(r.n_models)} models, which models were "
            "chosen matters at least as much, so the permutation p-value is the sturdier guide.")


def layer_table(table: pd.DataFrame, metric: str = "ndcg@20", layers: dict | None = None) -> pd.DataFrame:
    """Model x layer grid of one metric: the final pooled features (column ``final``, the model
    itself) and each layer variant of it (column ``stage<i>``), ``"mean [low, high]"``.

    Args:
        table: :func:`imagenet_table` rows (``model``, ``<metric>``, ``<metric>_low``, ``<metric>_high``).
        metric: e.g. ``"ndcg@20"`` or ``"auc"``.
        layers: ``{variant model name: (backbone model name, "stage<i>")}``, read from the
            embedding-set manifest (columns ``backbone`` and ``layer``); the other models are
            final pooled features. None reads ``<backbone>@<i>`` names (tables without a manifest).

    Returns:
        (cells: formatted strings, values: the means), both indexed by backbone model; models
        without a layer variant are left out.

    Raises:
        PartSkipped: no layer variant in ``table``.
    """
    if layers is None:
        layers = {m: (m.split("@")[0], m.split("@")[1]) for m in table["model"] if "@" in m}
    d = table.copy()
    d["base"] = [layers[m][0] if m in layers else m for m in d["model"]]
    d["layer"] = [layers[m][1] if m in layers else "final" for m in d["model"]]
    if not (d["layer"] != "final").any():
        raise PartSkipped("there is no layer variant in this study (add e.g. tf_efficientnet_lite0@stage3 to models)")
    bases = set(d.loc[d["layer"] != "final", "base"])
    d = d[d["base"].isin(bases)]
    d["cell"] = [f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in zip(d[metric], d[f"{metric}_low"], d[f"{metric}_high"])]
    cols = sorted(c for c in d["layer"].unique() if c != "final") + ["final"]
    return (d.pivot(index="base", columns="layer", values="cell").reindex(columns=cols),
            d.pivot(index="base", columns="layer", values=metric).reindex(columns=cols))
