"""Is the ranking of models robust? Kendall's tau between the models' rankings under each metric
and under each protocol, with bootstrap intervals, as a tidy table and a heatmap."""
from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from .analysis import MAIN_METRICS, metric_label
from .few_models import bootstrap_model_means
from .labels import metric_label as metric_name
from .plots import pyplot, save_figure

logger = logging.getLogger(__name__)

COLUMNS = ["compared", "within", "a", "b", "n_models", "tau", "ci_low", "ci_high", "interval"]

#: How each kind of interval was made (the ``interval`` column).
USERS = "users resampled"
NORMAL = "normal draws from each model's 95% interval (no per-user values under this protocol)"


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two rankings (``scipy.stats.kendalltau``); NaN when fewer than 3
    pairs or one side is constant."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.unique(a).size < 2 or np.unique(b).size < 2:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`kendall_tau` of each row of ``a`` with the same row of ``b`` (both ``(B, n)``):
    ``(B,) float64``, bit for bit the per-row values, computed once per distinct pair of rank
    rows (tau depends on a row only through its ranks; a bootstrap over a handful of models
    repeats few of them)."""
    from scipy import stats

    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] == 0:
        return np.full(len(a), np.nan)
    ranks = np.hstack([stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)])
    pairs, back = np.unique(ranks, axis=0, return_inverse=True)
    n = a.shape[1]
    return np.array([kendall_tau(p[:n], p[n:]) for p in pairs])[back.ravel()]


def _pairs(views, est: np.ndarray, boot: np.ndarray, compared: str, within: str, interval: str,
           confidence: float) -> list[dict]:
    """Rows of tau between every pair of views: ``est`` ``(n_views, n_models)``, ``boot``
    ``(n_resamples, n_views, n_models)``; models missing (NaN) in either view are left out."""
    q = (1 - confidence) / 2
    rows = []
    for i, j in itertools.combinations(range(len(views)), 2):
        both = np.isfinite(est[i]) & np.isfinite(est[j])
        taus = kendall_rows(boot[:, i][:, both], boot[:, j][:, both])
        taus = taus[np.isfinite(taus)]
        rows.append({"compared": compared, "within": within, "a": views[i], "b": views[j], "n_models": int(both.sum()),
                     "tau": kendall_tau(est[i, both], est[j, both]),
                     "ci_low": float(np.quantile(taus, q)) if taus.size else np.nan,
                     "ci_high": float(np.quantile(taus, 1 - q)) if taus.size else np.nan, "interval": interval})
    return rows


def metric_agreement(per_user: pd.DataFrame, models, strategy: str = "frozen", recommender: str = "visrank_max",
                     which=MAIN_METRICS, protocol: str = "main protocol", n_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Kendall's tau between the models' rankings under every pair of metrics.

    Each resample draws the users with replacement, recomputes every model's mean of every metric
    on that same draw (:func:`visrec_utils.reports.few_models.bootstrap_model_means`), ranks the
    models under each metric and recomputes tau; the interval is the percentile interval.

    Args:
        per_user: ``results/per_user.parquet`` rows (the main protocol).
        models: the models to rank (those without per-user rows are left out).
        protocol: the protocol ``per_user`` comes from (the ``within`` column).

    Returns:
        Tidy rows ``compared="metric", within, a, b, n_models, tau, ci_low, ci_high, interval``.
    """
    labs = [metric_label(m, k) for m, k in which if metric_label(m, k) in per_user]
    kept, est, boot = bootstrap_model_means(per_user, models, labs, strategy, recommender, n_resamples, seed)
    return pd.DataFrame(_pairs(labs, est, boot, "metric", protocol, USERS, confidence), columns=COLUMNS)


def protocol_agreement(metrics: pd.DataFrame, models, strategy: str = "frozen", recommender: str = "visrank_max",
                       which=(("auc", 0), ("ndcg", 20)), n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> pd.DataFrame:
    """Kendall's tau between the models' rankings under every pair of protocols, for each metric.

    ``results/per_user.parquet`` holds the main protocol only, so the users cannot be resampled
    under the others: each resample draws every (model, protocol) mean independently from a normal
    with the mean and the standard error ``(ci_high - ci_low) / (2 z)`` of its 95% interval
    (``z = 1.96``). Independent draws ignore that the models share users, which makes the intervals
    wider than a user bootstrap would (conservative).

    Args:
        metrics: ``results/metrics_protocols.csv`` rows (``protocol, model, strategy, recommender,
            metric, k, value, ci_low, ci_high``).
        models: the models to rank.

    Returns:
        Tidy rows ``compared="protocol", within=<metric>, a, b, n_models, tau, ci_low, ci_high, interval``.

    Raises:
        ValueError: ``metrics`` lacks a column, or holds two rows for one (model, protocol, metric).
    """
    from scipy import stats

    need = {"protocol", "model", "strategy", "recommender", "metric", "k", "value", "ci_low", "ci_high"}
    if need - set(metrics.columns):
        raise ValueError(f"metrics lacks the columns {sorted(need - set(metrics.columns))}; "
                         "pass results/metrics_protocols.csv")
    models = list(models)
    sel = metrics[(metrics["strategy"] == strategy) & (metrics["recommender"] == recommender)
                  & metrics["model"].isin(models)]
    z = stats.norm.ppf(0.5 + confidence / 2)
    rng = np.random.default_rng(seed)
    rows = []
    for metric, k in which:
        d = sel[(sel["metric"] == metric) & (sel["k"] == k)]
        if d.duplicated(["model", "protocol"]).any():
            raise ValueError(f"metrics holds several rows for one (model, protocol) of {metric_label(metric, k)}; "
                             "filter it to one availability rule first")
        protocols = list(dict.fromkeys(d["protocol"]))
        if len(protocols) < 2:
            continue
        value = d.pivot(index="protocol", columns="model", values="value").reindex(index=protocols, columns=models)
        width = d.pivot(index="protocol", columns="model", values="ci_high") - d.pivot(
            index="protocol", columns="model", values="ci_low")
        se = width.reindex(index=protocols, columns=models).to_numpy(float) / (2 * z)
        est = value.to_numpy(float)
        boot = est + se * rng.standard_normal((n_resamples, *est.shape))
        rows += _pairs(protocols, est, boot, "protocol", metric_label(metric, k), NORMAL, confidence)
    return pd.DataFrame(rows, columns=COLUMNS)


def _square(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Symmetric matrices of tau and of its ``"tau\\n[low, high]"`` cell text, 1 on the diagonal."""
    views = list(dict.fromkeys([*rows["a"], *rows["b"]]))
    tau = pd.DataFrame(np.eye(len(views)), index=views, columns=views)
    text = pd.DataFrame("1", index=views, columns=views)
    for r in rows.itertuples(index=False):
        cell = f"{r.tau:.2f}\n[{r.ci_low:.2f}, {r.ci_high:.2f}]"
        tau.loc[r.a, r.b] = tau.loc[r.b, r.a] = r.tau
        text.loc[r.a, r.b] = text.loc[r.b, r.a] = cell
    return tau, text


def _view_label(view: str) -> str:
    metric, _, k = view.partition("@")
    return metric_name(metric, int(k) if k else 0) if "_" not in view else view.replace("_", " ")


def agreement_heatmap(table: pd.DataFrame, path=None):
    """One heatmap per (compared, within) group of :func:`metric_agreement` and
    :func:`protocol_agreement` rows: Kendall's tau between the rankings, annotated with its
    interval; blue when the rankings agree, red when they reverse.

    Raises:
        ValueError: ``table`` has no row.
    """
    if table.empty:
        raise ValueError("table has no row: no two rankings to compare")
    import seaborn as sns

    plt = pyplot()
    groups = list(table.groupby(["compared", "within"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 6.2), squeeze=False, layout="constrained")
    for ax, ((compared, within), rows) in zip(axes[0], groups):
        tau, text = _square(rows)
        shown = tau.rename(index=_view_label, columns=_view_label)
        sns.heatmap(shown, annot=text.to_numpy(), fmt="", cmap="RdBu", vmin=-1, vmax=1, square=True, ax=ax,
                    annot_kws={"fontsize": 8}, cbar_kws={"label": "Kendall tau (95% interval)", "shrink": 0.8})
        n = int(rows["n_models"].max())
        what = (f"metrics ({within.replace('_', ' ')})" if compared == "metric"
                else f"protocols ({_view_label(within)})")
        ax.set_title(f"rankings of {n} models under {what}", fontsize=10)
        ax.tick_params(axis="x", rotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    return save_figure(fig, path)


def agreement_text(table: pd.DataFrame) -> str:
    """Plain words on how far the rankings agree, generated from the rows: per group, the lowest
    tau with its interval and how many pairs' intervals exclude a perfect agreement."""
    if table.empty:
        return "Fewer than two rankings to compare: no Kendall tau is estimated."
    lines = []
    for (compared, within), rows in table.groupby(["compared", "within"], sort=False):
        if rows["tau"].isna().all():
            continue
        low = rows.iloc[int(np.nanargmin(rows["tau"].to_numpy(float)))]
        below = int((rows["ci_high"] < 1).sum())
        where = (f"between metrics ({within.replace('_', ' ')})" if compared == "metric"
                 else f"between protocols on {within}")
        lines.append(f"- Rankings of {int(rows['n_models'].max())} models {where}: tau from {rows['tau'].min():.2f} "
                     f"({low['a']} vs {low['b']}, 95% interval [{low['ci_low']:.2f}, {low['ci_high']:.2f}]) to "
                     f"{rows['tau'].max():.2f}; {below} of {len(rows)} pairs have an interval that excludes "
                     "perfect agreement.")
    return "\n".join(lines)
