"""Statistics for a study of few models: how much four or five models can say about top-1.

Three questions the correlations of :mod:`visrec_utils.reports.analysis` leave open:

* **Size.** Bigger models have both higher top-1 and richer features; :func:`partial_correlations`
  gives the rank correlation of top-1 with each metric once model size is held fixed
  (partial Spearman: Pearson correlation of the residuals of the ranks, Conover 1999, sec. 5.4).
* **Influence.** :func:`leave_one_out` recomputes the correlation with each model left out.
* **Power.** :func:`power_table` asks how many models a study would need to detect a rank
  correlation of 0.5 or 0.8, given the noise this study measured on each metric
  (:func:`measured_noise`), by simulation (:func:`spearman_power`).
"""
from __future__ import annotations

import itertools
import logging
import math
from functools import lru_cache

import numpy as np
import pandas as pd

from .analysis import MAIN_METRICS, metric_label, perm_p

logger = logging.getLogger(__name__)

#: Model-size columns of ``results/models.csv``, best first: parameter count, else embedding width.
SIZE_COLUMNS = ("n_params", "dim")
NOISE_COLUMNS = ["metric", "n_models", "bootstrap_se", "paired_se", "spread", "true_spread", "noise_ratio"]
#: Columns of :func:`partial_correlations`, :func:`leave_one_out` and :func:`power_table`.
PARTIAL_COLUMNS = ["metric", "control", "n_models", "spearman_rho", "partial_rho", "perm_p", "note"]
LOO_COLUMNS = ["model_left_out", "metric", "n_models", "rho", "rho_all", "change"]
POWER_COLUMNS = ["metric", "rho", "bootstrap_se", "paired_se", "true_spread", "noise_ratio", "n_models", "power_now",
                 "models_needed"]


def _ranks(a: np.ndarray, axis: int = 0) -> np.ndarray:
    from scipy import stats

    return stats.rankdata(a, axis=axis)


def _residuals(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(a)), z])
    coef, *_ = np.linalg.lstsq(design, a, rcond=None)
    return a - design @ coef


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def partial_spearman(x, y, z) -> float:
    """Partial Spearman correlation of ``x`` and ``y`` controlling for ``z``.

    The three are ranked (ties averaged, ``scipy.stats.rankdata``); the ranks of ``x`` and of ``y``
    are each regressed by least squares on an intercept and the ranks of ``z``, and the result is
    the Pearson correlation of the two residuals (Conover, *Practical Nonparametric Statistics*,
    1999, sec. 5.4). With one control it equals
    ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))`` on Spearman coefficients.

    Args:
        x, y: ``(n,)`` values.
        z: ``(n,)`` or ``(n, k)`` controls.

    Returns:
        The coefficient in [-1, 1]; NaN when a residual is constant (e.g. ``z`` explains ``x`` fully).

    Raises:
        ValueError: the lengths differ or fewer than 4 values (a partial correlation of 3 has no freedom left).
    """
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    if not len(x) == len(y) == len(z):
        raise ValueError(f"x, y and z must have the same length, got {len(x)}, {len(y)} and {len(z)}")
    if len(x) < 4:
        raise ValueError(f"a partial correlation needs at least 4 values, got {len(x)}")
    rz = _ranks(z)
    return _pearson(_residuals(_ranks(x), rz), _residuals(_ranks(y), rz))


def model_size(models: pd.DataFrame, names) -> tuple[pd.Series, str]:
    """The size of each model in ``names``, from the first column of :data:`SIZE_COLUMNS` that
    ``models`` has for all of them: parameter count (``n_params``) when the extract stage recorded
    it, else the embedding width (``dim``).

    Args:
        models: ``results/models.csv`` rows with ``model`` and one of :data:`SIZE_COLUMNS`.
        names: the models to size.

    Returns:
        (sizes indexed by model, the column used).

    Raises:
        ValueError: no size column covers every model (names the columns looked for).
    """
    by_model = models.drop_duplicates("model").set_index("model")
    names = list(names)
    for col in SIZE_COLUMNS:
        if col in by_model and by_model.reindex(names)[col].notna().all():
            return by_model.loc[names, col].astype(float), col
    raise ValueError(f"models has no size column ({', '.join(SIZE_COLUMNS)}) filled for every one of {names}; "
                     "rerun the extract stage, which writes dim to results/models.csv")


def partial_correlations(table: pd.DataFrame, size: pd.Series, x: str = "published_top1", which=MAIN_METRICS,
                         control: str = "size", seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of ``x`` with each metric across models, plain and partial on ``size``.

    The permutation p-value permutes the pairings of the two rank residuals (Kennedy 1995's
    permutation of residuals; exact over all pairings for up to 8 models, else 9,999 random ones).

    Args:
        table: one row per model with ``model``, ``x`` and the metric columns (:func:`analysis.imagenet_table`).
        size: model size indexed by model (:func:`model_size`); ``control`` names it in the output.

    Returns:
        One row per metric: ``metric, control, n_models, spearman_rho, partial_rho, perm_p, note``
        (NaN where fewer than 4 models have every value, or where the size ranks the models
        exactly as ``x`` or the metric does, so nothing is left once size is held fixed; ``note``
        then says which, else "").
    """
    from scipy import stats

    rows = []
    for metric, k in which:
        lab = metric_label(metric, k)
        if lab not in table:
            continue
        d = table[["model", x, lab]].assign(size=table["model"].map(size)).dropna()
        row = {"metric": lab, "control": control, "n_models": len(d), "spearman_rho": np.nan, "partial_rho": np.nan,
               "perm_p": np.nan, "note": "" if len(d) >= 4 else f"{len(d)} models have every value; a partial "
                                                                 "correlation needs 4"}
        if len(d) >= 4:
            a, b, z = d[x].to_numpy(float), d[lab].to_numpy(float), d["size"].to_numpy(float)
            row["spearman_rho"] = float(stats.spearmanr(a, b).statistic)
            row["partial_rho"] = partial_spearman(a, b, z)
            for name, v in ((x, a), (lab, b)):
                if not np.isfinite(row["partial_rho"]) and abs(stats.spearmanr(v, z).statistic) > 1 - 1e-12:
                    row["note"] = (f"{control} ranks the models {'exactly as' if stats.spearmanr(v, z).statistic > 0 else 'in the reverse order of'} "
                                   f"{name}: once {control} is held fixed nothing of {name} is left, so the partial "
                                   "correlation is undefined (these models cannot tell top-1 from size apart)")
                    break
            if np.isfinite(row["partial_rho"]):
                rz = _ranks(z)
                ra, rb = _residuals(_ranks(a), rz), _residuals(_ranks(b), rz)
                row["perm_p"] = perm_p(ra, rb, _pearson, seed=seed)
        rows.append(row)
    return pd.DataFrame(rows, columns=PARTIAL_COLUMNS)


def leave_one_out(table: pd.DataFrame, x: str = "published_top1", which=MAIN_METRICS) -> pd.DataFrame:
    """Spearman correlation of ``x`` with each metric, recomputed with each model left out.

    Returns:
        One row per (model left out, metric): ``model_left_out, metric, n_models, rho, rho_all,
        change`` (``rho - rho_all``; ``rho_all`` uses every model); NaN where fewer than 3 models
        remain or one of the two columns is constant.
    """
    from scipy import stats

    def rho(d: pd.DataFrame, lab: str) -> float:
        ok = len(d) >= 3 and d[x].nunique() > 1 and d[lab].nunique() > 1
        return float(stats.spearmanr(d[x], d[lab]).statistic) if ok else np.nan

    rows = []
    for metric, k in which:
        lab = metric_label(metric, k)
        if lab not in table:
            continue
        d = table[["model", x, lab]].dropna()
        whole = rho(d, lab)
        for model in d["model"]:
            rest = d[d["model"] != model]
            r = rho(rest, lab)
            rows.append({"model_left_out": model, "metric": lab, "n_models": len(rest), "rho": r, "rho_all": whole,
                         "change": r - whole})
    return pd.DataFrame(rows, columns=LOO_COLUMNS)


def bootstrap_model_means(per_user: pd.DataFrame, models, labs, strategy: str = "frozen",
                          recommender: str = "visrank_max", n_resamples: int = 1000, seed: int = 0):
    """Every model's mean metric on users resampled with replacement (the same draw for every
    model and metric, so rankings stay paired).

    Args:
        per_user: ``results/per_user.parquet`` rows (``model, strategy, recommender, user_id`` and a
            column per metric label).
        models: the models wanted, in order; those without per-user rows are left out.
        labs: metric labels (``"ndcg@20"``).

    Returns:
        (models kept, ``(n_metrics, n_models)`` means on all users, ``(n_resamples, n_metrics,
        n_models)`` resampled means). Users missing a value for any kept model and metric are dropped.

    Raises:
        ValueError: a metric label is not a column of ``per_user``.
    """
    missing = [lab for lab in labs if lab not in per_user]
    if missing:
        raise ValueError(f"per_user has no column {missing}; choose metric labels among its columns")
    sel = per_user[(per_user["strategy"] == strategy) & (per_user["recommender"] == recommender)]
    kept = [m for m in models if m in set(sel["model"])]
    wide = (sel[sel["model"].isin(kept)].pivot_table(index="user_id", columns="model", values=list(labs)).dropna()
            if kept and labs else pd.DataFrame())
    n = len(wide)
    if n == 0:
        return kept, np.full((len(labs), len(kept)), np.nan), np.full((n_resamples, len(labs), len(kept)), np.nan)
    vals = np.stack([wide[lab][kept].to_numpy(float) for lab in labs], axis=1)  # (n_users, n_metrics, n_models)
    counts = np.zeros((n_resamples, n))
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    boot = np.einsum("ru,umk->rmk", counts, vals) / n
    return kept, vals.mean(0), boot


def measured_noise(per_user: pd.DataFrame, models, strategy: str = "frozen", recommender: str = "visrank_max",
                   which=MAIN_METRICS, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """How noisy each metric's per-model mean is, against how much the models differ.

    ``bootstrap_se`` is the root mean square over models of the standard deviation of each model's
    resampled mean (:func:`bootstrap_model_means`). Every model is scored on the same users, so
    most of that noise moves all models together and cannot reorder them; ``paired_se`` keeps
    the part that can: the root mean square over model pairs of the standard deviation of their
    resampled difference, over sqrt(2) (a model's own noise, were it independent). ``spread`` is
    the standard deviation of the models' means, ``true_spread = sqrt(spread^2 - paired_se^2)``
    the spread noise alone would not make (0 when noise explains it all) and
    ``noise_ratio = paired_se / true_spread`` (inf when 0).

    Returns:
        One row per metric: :data:`NOISE_COLUMNS`.
    """
    labs = [metric_label(m, k) for m, k in which if metric_label(m, k) in per_user]
    kept, est, boot = bootstrap_model_means(per_user, models, labs, strategy, recommender, n_resamples, seed)
    rows = []
    pairs = list(itertools.combinations(range(len(kept)), 2))
    for i, lab in enumerate(labs):
        se = float(np.sqrt(np.mean(boot[:, i, :].var(axis=0, ddof=1)))) if len(kept) else np.nan
        diff = [boot[:, i, a] - boot[:, i, b] for a, b in pairs]
        paired = float(np.sqrt(np.mean([d.var(ddof=1) for d in diff]) / 2)) if pairs else np.nan
        spread = float(np.std(est[i], ddof=1)) if len(kept) > 1 else np.nan
        true = math.sqrt(max(spread ** 2 - paired ** 2, 0.0)) if np.isfinite(spread) else np.nan
        rows.append({"metric": lab, "n_models": len(kept), "bootstrap_se": se, "paired_se": paired, "spread": spread,
                     "true_spread": true,
                     "noise_ratio": paired / true if true > 0 else (np.inf if np.isfinite(true) else np.nan)})
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


@lru_cache(maxsize=64)
def spearman_null(n: int, n_perm: int = 20000, seed: int = 0) -> np.ndarray:
    """Sorted ``|rho|`` of Spearman's coefficient under independence for ``n`` models: every one of
    the ``n!`` pairings when ``n <= 8`` (exact), else ``n_perm`` random ones (seeded). The null
    distribution of ranks does not depend on the data, so one table serves every test of size ``n``.

    Raises:
        ValueError: ``n < 3``.
    """
    if n < 3:
        raise ValueError(f"n must be at least 3 models, got {n}")
    if n <= 8:
        perms = np.array(list(itertools.permutations(range(n))), dtype=float)
    else:
        perms = np.random.default_rng(seed).permuted(np.tile(np.arange(n, dtype=float), (n_perm, 1)), axis=1)
    d2 = ((perms - np.arange(n)) ** 2).sum(axis=1)
    return np.sort(np.abs(1 - 6 * d2 / (n * (n * n - 1))))


def null_p(rho_abs: np.ndarray, n: int) -> np.ndarray:
    """Two-sided permutation p-value ``P(|R| >= |rho|)`` of observed Spearman coefficients for ``n``
    models, from :func:`spearman_null` (exact up to 8 models; the same as
    ``scipy.stats.permutation_test`` with ``permutation_type="pairings"``)."""
    null = spearman_null(n)
    below = np.searchsorted(null, np.abs(rho_abs) - 1e-9, side="left")
    return (len(null) - below) / len(null)


def smallest_p(n: int) -> float:
    """Smallest possible exact two-sided p-value of a rank correlation of ``n`` models: ``2 / n!``
    (the two perfect orderings among ``n!`` equally likely ones); 1/12 = 0.083 for 4 models. Computed
    in logs, so it is 0.0 (not an OverflowError) from 171 models on, where ``n!`` exceeds a float."""
    return math.exp(math.log(2.0) - math.lgamma(n + 1))


def spearman_power(n_models: int, rho: float, noise_ratio: float = 0.0, alpha: float = 0.05, n_sim: int = 2000,
                   seed: int = 0) -> float:
    """Power of the two-sided permutation test of Spearman's rho across ``n_models`` models, by simulation.

    The model simulated: each model's top-1 ``x`` and latent quality ``q`` are standard bivariate
    normal with Pearson ``r = 2 sin(pi rho / 6)``, so their Spearman correlation is ``rho`` (Pearson
    1907, via Kruskal 1958); the study observes ``y = q + noise_ratio * e``, ``e`` standard normal
    and independent across models (the metric's bootstrap noise over its true spread between models,
    :func:`measured_noise`). A study rejects when :func:`null_p` of its observed rho is at most ``alpha``.

    Returns:
        The share of ``n_sim`` simulated studies that reject (seeded by ``seed`` and ``n_models``).

    Raises:
        ValueError: ``rho`` outside [-1, 1] or a negative ``noise_ratio``.
    """
    if not -1 <= rho <= 1:
        raise ValueError(f"rho must be in [-1, 1], got {rho}")
    if not noise_ratio >= 0:
        raise ValueError(f"noise_ratio must be 0 or more, got {noise_ratio}")
    if smallest_p(n_models) > alpha:
        return 0.0
    rng = np.random.default_rng([seed, n_models])
    r = 2 * math.sin(math.pi * rho / 6)
    x = rng.standard_normal((n_sim, n_models))
    q = r * x + math.sqrt(max(1 - r * r, 0.0)) * rng.standard_normal((n_sim, n_models))
    e = rng.standard_normal((n_sim, n_models))
    y = q + noise_ratio * e if np.isfinite(noise_ratio) else e  # infinite noise: the metric ranks at random
    rx, ry = (_ranks(v, axis=1) - (n_models + 1) / 2 for v in (x, y))
    obs = (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    return float(np.mean(null_p(obs, n_models) <= alpha))


def models_needed(rho: float, noise_ratio: float = 0.0, power: float = 0.8, alpha: float = 0.05, n_max: int = 400,
                  n_sim: int = 2000, seed: int = 0) -> int | None:
    """Smallest number of models at which :func:`spearman_power` reaches ``power``: doubling from
    5 to bracket it, then bisection (power rises with the number of models; the simulation's noise,
    about 0.01 at 2,000 studies, makes the answer "about"). None when ``n_max`` models do not reach it."""
    def ok(n: int) -> bool:
        return spearman_power(n, rho, noise_ratio, alpha, n_sim, seed) >= power

    if np.isinf(noise_ratio):
        return None
    lo, hi = 4, 5
    while not ok(hi):
        if hi >= n_max:
            return None
        lo, hi = hi, min(2 * hi, n_max)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def power_table(noise: pd.DataFrame, rhos=(0.5, 0.8), power: float = 0.8, alpha: float = 0.05, n_max: int = 400,
                n_sim: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Models needed to detect each rank correlation in ``rhos`` on each metric of ``noise``.

    Args:
        noise: :func:`measured_noise` rows.

    Returns:
        One row per (metric, rho): :data:`POWER_COLUMNS` (the noise columns copied from ``noise``;
        ``power_now`` at the study's own number of models; ``models_needed`` NaN when more than
        ``n_max``).
    """
    rows = []
    for r in noise.itertuples(index=False):
        ratio = float(r.noise_ratio)
        if np.isnan(ratio) or r.n_models < 3:
            continue
        for rho in rhos:
            need = models_needed(rho, ratio, power, alpha, n_max, n_sim, seed)
            rows.append({"metric": r.metric, "rho": rho, "bootstrap_se": r.bootstrap_se, "paired_se": r.paired_se,
                         "true_spread": r.true_spread,
                         "noise_ratio": ratio, "n_models": int(r.n_models),
                         "power_now": spearman_power(int(r.n_models), rho, ratio, alpha, n_sim, seed),
                         "models_needed": np.nan if need is None else need})
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def power_text(power: pd.DataFrame, n_models: int, metric: str = "ndcg@20", alpha: float = 0.05) -> str:
    """One sentence on what ``n_models`` models can detect, generated from :func:`power_table`."""
    p = smallest_p(n_models)
    said = f"With {n_models} models the smallest possible exact two-sided p is {p:.3f}"
    said += f" (above alpha = {alpha:g}, so no rank correlation can be significant: power 0)" if p > alpha else ""
    rows = power[power["metric"] == metric].sort_values("rho", ascending=False)
    if rows.empty:
        return said + f"; {metric} has no measured noise, so no power was simulated."
    ratio = rows["noise_ratio"].iloc[0]
    parts = [f"rho = {r.rho:g} at 80% power would need about {int(r.models_needed)} models"
             if np.isfinite(r.models_needed) else f"rho = {r.rho:g} would need more models than simulated"
             for r in rows.itertuples()]
    noise = ("noise as large as the whole spread between models" if np.isinf(ratio) else
             f"paired bootstrap noise {ratio:.2f} times the true spread between models")
    return f"{said}; on {metric} ({noise}), detecting " + " and ".join(parts) + "."
