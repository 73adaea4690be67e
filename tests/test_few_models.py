"""Statistics for few models (issue 18 items 2 and 4): partial rank correlation on model size,
leave-one-model-out, power by simulation, and Kendall's tau between the models' rankings."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visrec_utils.reports import few_models, ranking_agreement


def _ranks(a):
    return stats.rankdata(a)


def _ols_residual_partial(x, y, z):
    """Reference: statsmodels OLS residuals of the ranks, then scipy's Pearson."""
    import statsmodels.api as sm

    rz = sm.add_constant(_ranks(z))
    ex = sm.OLS(_ranks(x), rz).fit().resid
    ey = sm.OLS(_ranks(y), rz).fit().resid
    return stats.pearsonr(ex, ey).statistic, ex, ey


def test_partial_spearman_equals_statsmodels_residuals_and_the_closed_formula():
    rng = np.random.default_rng(1)
    z = rng.normal(size=12)
    x = z + rng.normal(size=12)
    y = 0.5 * z - x + rng.normal(size=12)
    ref, _, _ = _ols_residual_partial(x, y, z)
    assert few_models.partial_spearman(x, y, z) == pytest.approx(ref, abs=1e-12)
    r = lambda a, b: stats.spearmanr(a, b).statistic  # noqa: E731
    formula = (r(x, y) - r(x, z) * r(y, z)) / math.sqrt((1 - r(x, z) ** 2) * (1 - r(y, z) ** 2))
    assert few_models.partial_spearman(x, y, z) == pytest.approx(formula, abs=1e-12)
    # a tied control (embedding widths: one narrow model, the rest equal) is handled like statsmodels does
    dim = np.array([256, 1280, 1280, 1280, 1280])
    ref, _, _ = _ols_residual_partial(x[:5], y[:5], dim)
    assert few_models.partial_spearman(x[:5], y[:5], dim) == pytest.approx(ref, abs=1e-12)


def test_partial_spearman_rejects_too_few_or_unequal_values():
    with pytest.raises(ValueError, match="^a partial correlation needs at least 4 values, got 3$"):
        few_models.partial_spearman([1, 2, 3], [1, 2, 3], [3, 1, 2])
    with pytest.raises(ValueError, match="^x, y and z must have the same length, got 4, 4 and 3$"):
        few_models.partial_spearman([1, 2, 3, 4], [1, 2, 3, 4], [3, 1, 2])


def _table(n=6, seed=0):
    rng = np.random.default_rng(seed)
    top1 = np.linspace(50, 80, n) + rng.normal(size=n)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "published_top1": top1,
                         "auc": 0.55 + 0.001 * top1 + rng.normal(scale=0.01, size=n),
                         "ndcg@20": rng.uniform(0.001, 0.01, size=n)})


def test_partial_correlations_match_scipy_and_a_permutation_of_the_residuals():
    table = _table()
    size = pd.Series(np.random.default_rng(5).uniform(1, 10, size=6), index=table["model"])
    got = few_models.partial_correlations(table, size, which=[("auc", 0), ("ndcg", 20), ("mrr", 0)], control="dim")
    assert list(got["metric"]) == ["auc", "ndcg@20"]  # mrr: not a column
    for r in got.itertuples():
        x, y, z = table["published_top1"], table[r.metric], size.to_numpy()
        ref, ex, ey = _ols_residual_partial(x, y, z)
        assert r.control == "dim" and r.n_models == 6
        assert r.spearman_rho == pytest.approx(stats.spearmanr(x, y).statistic)
        assert r.partial_rho == pytest.approx(ref, abs=1e-12)
        perm = stats.permutation_test((ex,), lambda a: stats.pearsonr(a, ey).statistic,
                                      permutation_type="pairings", n_resamples=np.inf)
        assert r.perm_p == pytest.approx(perm.pvalue)


def test_partial_correlation_says_why_when_size_ranks_the_models_as_top1_does():
    table = _table()
    size = pd.Series(table["published_top1"].to_numpy() * 1e5, index=table["model"])  # same order as top-1
    got = few_models.partial_correlations(table, size, which=[("auc", 0)], control="n_params")
    r = got.iloc[0]
    assert np.isnan(r.partial_rho) and np.isnan(r.perm_p) and r.spearman_rho == pytest.approx(
        stats.spearmanr(table["published_top1"], table["auc"]).statistic)
    assert r.note == ("n_params ranks the models exactly as published_top1: once n_params is held fixed nothing of "
                      "published_top1 is left, so the partial correlation is undefined (these models cannot tell "
                      "top-1 from size apart)")
    assert few_models.partial_correlations(table.iloc[:3], size, which=[("auc", 0)]).iloc[0].note == (
        "3 models have every value; a partial correlation needs 4")


def test_model_size_prefers_parameter_counts_and_names_the_columns_when_none_fits():
    models = pd.DataFrame({"model": ["a", "b", "c"], "dim": [256, 1280, 1280], "n_params": [0.5e6, 4.6e6, np.nan]})
    size, col = few_models.model_size(models, ["a", "b"])
    assert col == "n_params" and size.to_dict() == {"a": 0.5e6, "b": 4.6e6}
    size, col = few_models.model_size(models, ["a", "c"])  # c has no parameter count: widths for all
    assert col == "dim" and size.to_dict() == {"a": 256.0, "c": 1280.0}
    with pytest.raises(ValueError, match=r"^models has no size column \(n_params, dim\) filled for every one of "
                                         r"\['a', 'x'\]; rerun the extract stage"):
        few_models.model_size(models, ["a", "x"])


def test_leave_one_out_recomputes_spearman_without_each_model():
    table = _table(5)
    got = few_models.leave_one_out(table, which=[("auc", 0)])
    assert list(got["model_left_out"]) == list(table["model"]) and set(got["n_models"]) == {4}
    whole = stats.spearmanr(table["published_top1"], table["auc"]).statistic
    for r in got.itertuples():
        rest = table[table["model"] != r.model_left_out]
        assert r.rho == pytest.approx(stats.spearmanr(rest["published_top1"], rest["auc"]).statistic)
        assert r.rho_all == pytest.approx(whole) and r.change == pytest.approx(r.rho - whole)
    three = few_models.leave_one_out(table.head(3), which=[("auc", 0)])
    assert three["rho"].isna().all() and three["rho_all"].notna().all()  # 2 models left: no correlation


def test_exact_null_gives_scipys_permutation_p_and_one_in_twelve_for_four_models():
    assert few_models.smallest_p(4) == pytest.approx(1 / 12)
    assert few_models.smallest_p(170) == pytest.approx(2 / math.factorial(170))
    assert few_models.smallest_p(400) == 0.0  # 400! overflows a float; the p-value underflows instead
    perfect = stats.permutation_test(([1, 2, 3, 4],), lambda a: stats.spearmanr(a, [10, 20, 30, 40]).statistic,
                                     permutation_type="pairings", n_resamples=np.inf)
    assert perfect.pvalue == pytest.approx(1 / 12)
    assert few_models.null_p(np.array([1.0]), 4)[0] == pytest.approx(perfect.pvalue)
    rng = np.random.default_rng(2)
    for n in (5, 7):
        x, y = rng.normal(size=n), rng.normal(size=n)
        rho = stats.spearmanr(x, y).statistic
        ref = stats.permutation_test((x,), lambda a, y=y: stats.spearmanr(a, y).statistic,
                                     permutation_type="pairings", n_resamples=np.inf).pvalue
        assert few_models.null_p(np.array([rho]), n)[0] == pytest.approx(ref)
    with pytest.raises(ValueError, match="^n must be at least 3 models, got 2$"):
        few_models.spearman_null(2)


def _analytic_power(n, rho, alpha=0.05):
    """Fisher-z approximation for Spearman's rho, variance 1.06 / (n - 3) (Fieller, Hartley & Pearson 1957)."""
    z = math.atanh(rho) * math.sqrt((n - 3) / 1.06)
    c = stats.norm.ppf(1 - alpha / 2)
    return stats.norm.cdf(z - c) + stats.norm.cdf(-z - c)


def test_power_simulation_agrees_with_the_known_cases():
    assert few_models.spearman_power(4, 0.8) == 0.0  # smallest exact p 1/12 > 0.05: no study of 4 can reject
    assert few_models.spearman_power(4, 1.0) == 0.0
    for n, rho in [(30, 0.5), (12, 0.8)]:  # zero noise: the analytic Spearman power
        assert few_models.spearman_power(n, rho, n_sim=4000) == pytest.approx(_analytic_power(n, rho), abs=0.04)
    assert few_models.spearman_power(40, 0.0, n_sim=4000) == pytest.approx(0.05, abs=0.015)  # the test's size
    assert few_models.spearman_power(40, 0.8, noise_ratio=np.inf, n_sim=4000) == pytest.approx(0.05, abs=0.015)
    # noise as large as the spread halves the signal variance: the correlation seen is weaker, power lower
    assert few_models.spearman_power(20, 0.5, 1.0) < few_models.spearman_power(20, 0.5, 0.0) - 0.1
    with pytest.raises(ValueError, match="^noise_ratio must be 0 or more, got -1.0$"):
        few_models.spearman_power(10, 0.5, -1.0)


def test_models_needed_near_the_analytic_sample_size():
    def analytic(rho):
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        return 3 + 1.06 * (z / math.atanh(rho)) ** 2

    assert few_models.models_needed(0.8) == pytest.approx(analytic(0.8), abs=2)
    assert few_models.models_needed(0.5) == pytest.approx(analytic(0.5), abs=3)
    assert few_models.models_needed(0.8, 1.0) > few_models.models_needed(0.8) + 3
    assert few_models.models_needed(0.8, np.inf) is None
    assert few_models.models_needed(0.5, 3.0, n_max=20) is None
    # a noisy metric: the search doubles past 170 models (2 / n! beyond a float) and ends at n_max
    assert few_models.models_needed(0.5, 5.0, n_sim=200) is None


def _per_user(n_users=400, means=(0.55, 0.57, 0.60, 0.61), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for j, m in enumerate(means):
        auc = m + rng.normal(scale=0.1, size=n_users)
        rows.append(pd.DataFrame({"user_id": np.arange(n_users), "model": f"m{j}", "strategy": "frozen",
                                  "recommender": "visrank_max", "auc": auc, "ndcg@20": 2 * auc + 1,
                                  "mrr": rng.uniform(size=n_users)}))
    return pd.concat(rows, ignore_index=True)


def test_measured_noise_is_the_standard_error_of_the_mean_and_the_spread_between_models():
    pu = _per_user()
    got = few_models.measured_noise(pu, ["m0", "m1", "m2", "m3", "absent"], which=[("auc", 0)], n_resamples=2000)
    r = got.iloc[0]
    means = pu.groupby("model")["auc"].mean()
    sem = np.sqrt(np.mean(pu.groupby("model")["auc"].sem() ** 2))
    assert r.n_models == 4 and r.bootstrap_se == pytest.approx(sem, rel=0.1)
    assert r.spread == pytest.approx(means.std(ddof=1))
    # independent users per model here, so a difference's noise is each model's noise twice over
    assert r.paired_se == pytest.approx(sem, rel=0.1)
    assert r.true_spread == pytest.approx(math.sqrt(r.spread ** 2 - r.paired_se ** 2))
    assert r.noise_ratio == pytest.approx(r.paired_se / r.true_spread)
    shared = pu.assign(auc=pu["auc"] + np.tile(np.random.default_rng(9).normal(scale=0.3, size=400), 4))
    common = few_models.measured_noise(shared, ["m0", "m1", "m2", "m3"], which=[("auc", 0)], n_resamples=2000).iloc[0]
    assert common.bootstrap_se > 2 * r.bootstrap_se  # a user effect shared by every model: noisier means ...
    assert common.paired_se == pytest.approx(r.paired_se, rel=0.1)  # ... that cannot reorder the models
    one = pu[pu["model"] == "m0"]
    same = pd.concat([one.assign(model=m) for m in ["m0", "m1", "m2", "m3"]])  # four models, the same values
    flat = few_models.measured_noise(same, ["m0", "m1", "m2", "m3"], which=[("auc", 0)])
    assert flat["true_spread"].iloc[0] == 0 and np.isinf(flat["noise_ratio"].iloc[0])  # noise explains it all


def test_power_text_reads_the_table():
    power = pd.DataFrame({"metric": ["ndcg@20", "ndcg@20"], "rho": [0.5, 0.8], "noise_ratio": [0.4, 0.4],
                          "n_models": [4, 4], "power_now": [0.0, 0.0], "models_needed": [41.0, np.nan]})
    assert few_models.power_text(power, 4) == (
        "With 4 models the smallest possible exact two-sided p is 0.083 (above alpha = 0.05, so no rank correlation "
        "can be significant: power 0); on ndcg@20 (paired bootstrap noise 0.40 times the true spread between models), "
        "detecting rho = 0.8 would need more models than simulated and rho = 0.5 at 80% power would need about 41 "
        "models.")
    assert few_models.power_text(power.iloc[:0], 6) == (
        "With 6 models the smallest possible exact two-sided p is 0.003; ndcg@20 has no measured noise, so no power "
        "was simulated.")


def test_kendall_tau_is_scipys_tau_b_with_ties():
    a, b = [1, 2, 2, 3, 5], [2, 1, 3, 3, 4]
    assert ranking_agreement.kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert np.isnan(ranking_agreement.kendall_tau([1, 1, 1], [1, 2, 3]))


def test_kendall_rows_are_the_per_row_taus_bit_for_bit():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 5)), rng.normal(size=(500, 5))
    a[:50], b[50:80] = np.round(a[:50]), b[50:80, :1]  # ties, and constant rows (NaN)
    expected = np.array([ranking_agreement.kendall_tau(p, q) for p, q in zip(a, b)])
    assert np.isnan(expected[50:80]).all() and np.isfinite(expected[80:]).all()
    np.testing.assert_array_equal(ranking_agreement.kendall_rows(a, b), expected)


def test_metric_agreement_ranks_model_means_and_resamples_users():
    pu = _per_user()
    got = ranking_agreement.metric_agreement(pu, ["m0", "m1", "m2", "m3"], which=[("auc", 0), ("ndcg", 20), ("mrr", 0)],
                                             protocol="temporal", n_resamples=300, seed=1)
    assert list(zip(got["a"], got["b"])) == [("auc", "ndcg@20"), ("auc", "mrr"), ("ndcg@20", "mrr")]
    assert set(got["compared"]) == {"metric"} and set(got["within"]) == {"temporal"} and set(got["n_models"]) == {4}
    means = pu.groupby("model")[["auc", "ndcg@20", "mrr"]].mean()
    for r in got.itertuples():
        assert r.tau == pytest.approx(stats.kendalltau(means[r.a], means[r.b]).statistic)
        assert r.interval == ranking_agreement.USERS and -1 <= r.ci_low <= r.ci_high <= 1
    same = got.iloc[0]  # "ndcg@20" is 2 auc + 1 user by user, so its means rank the models as auc's do, every draw
    assert (same.tau, same.ci_low, same.ci_high) == (1.0, 1.0, 1.0)
    again = ranking_agreement.metric_agreement(pu, ["m0", "m1", "m2", "m3"], protocol="temporal", n_resamples=300,
                                               which=[("auc", 0), ("ndcg", 20), ("mrr", 0)], seed=1)
    pd.testing.assert_frame_equal(got, again)


def _protocol_metrics():
    values = {"p1": [0.50, 0.55, 0.60, 0.65], "p2": [0.52, 0.51, 0.61, 0.70], "p3": [0.70, 0.60, 0.55, 0.50]}
    rows = [{"protocol": p, "model": f"m{j}", "strategy": "frozen", "recommender": "visrank_max", "metric": "auc",
             "k": 0, "value": v, "ci_low": v - 1e-6, "ci_high": v + 1e-6} for p, vs in values.items()
            for j, v in enumerate(vs)]
    return pd.DataFrame(rows), values


def test_protocol_agreement_is_scipys_tau_with_intervals_from_each_models_interval():
    metrics, values = _protocol_metrics()
    got = ranking_agreement.protocol_agreement(metrics, ["m0", "m1", "m2", "m3"], n_resamples=200)
    assert list(zip(got["a"], got["b"])) == [("p1", "p2"), ("p1", "p3"), ("p2", "p3")]
    for r in got.itertuples():
        tau = stats.kendalltau(values[r.a], values[r.b]).statistic
        assert r.within == "auc" and r.tau == pytest.approx(tau)
        assert r.ci_low == pytest.approx(tau) and r.ci_high == pytest.approx(tau)  # intervals of 2e-6: no reordering
    wide = metrics.assign(ci_low=metrics["value"] - 0.2, ci_high=metrics["value"] + 0.2)
    loose = ranking_agreement.protocol_agreement(wide, ["m0", "m1", "m2", "m3"], n_resamples=500)
    assert (loose["ci_high"] - loose["ci_low"] > 1).all()  # noise larger than the gaps: any order is possible
    with pytest.raises(ValueError, match=r"^metrics holds several rows for one \(model, protocol\) of auc; "):
        ranking_agreement.protocol_agreement(pd.concat([metrics, metrics.head(1)]), ["m0", "m1"])
    with pytest.raises(ValueError,
                       match=r"^metrics lacks the columns \['protocol'\]; pass results/metrics_protocols.csv$"):
        ranking_agreement.protocol_agreement(metrics.drop(columns="protocol"), ["m0"])


def test_agreement_heatmap_and_text(tmp_path):
    metrics, _ = _protocol_metrics()
    table = pd.concat([ranking_agreement.metric_agreement(_per_user(), ["m0", "m1", "m2", "m3"], n_resamples=50),
                       ranking_agreement.protocol_agreement(metrics, ["m0", "m1", "m2", "m3"], n_resamples=50)])
    fig = ranking_agreement.agreement_heatmap(table, path=tmp_path / "ranking_agreement.png")
    assert (tmp_path / "ranking_agreement.png").stat().st_size > 0 and len(fig.axes) == 4  # 2 heatmaps + colour bars
    text = ranking_agreement.agreement_text(table)
    assert "- Rankings of 4 models between protocols on auc: tau from -1.00 (p1 vs p3, 95% interval [-1.00, -1.00]) " \
           "to 0.67; 3 of 3 pairs have an interval that excludes perfect agreement." in text
    with pytest.raises(ValueError, match="^table has no row: no two rankings to compare$"):
        ranking_agreement.agreement_heatmap(table.iloc[:0])


def test_compare_few_model_statistics_write_their_tables_and_heatmap(tmp_path):
    from visrec_utils.core.layout import StudyLayout
    from visrec_utils.core.skips import SkipLog
    from visrec_utils.pipeline.stages import stage_compare

    out = StudyLayout(tmp_path).make_dirs()
    metrics, _ = _protocol_metrics()
    metrics.to_csv(out.result("metrics_protocols"), index=False)
    pu = _per_user()
    names = ["m0", "m1", "m2", "m3"]
    used = pd.DataFrame({"model": names, "published_top1": [50.0, 70.0, 75.0, 77.0]})
    used = used.merge(pu.groupby("model")[["auc", "ndcg@20", "mrr"]].mean().reset_index(), on="model")
    models = pd.DataFrame({"model": names, "dim": [256, 1280, 1280, 1280]})
    log = SkipLog(tmp_path, stage_compare.NOTEBOOK)
    got = stage_compare.few_model_statistics(out, log, models, used, pu, "frozen", "visrank_max", 100, 0, "temporal")
    assert log.rows == []
    keys = ["partial", "leave_one_out", "power", "ranking_agreement"]
    for name, key in zip(stage_compare.FEW_MODEL_TABLES, keys):
        pd.testing.assert_frame_equal(pd.read_csv(out.results / f"{name}.csv").fillna({"note": ""}), got[key],
                                      check_dtype=False)
    assert set(got["partial"]["control"]) == {"dim"} and len(got["leave_one_out"]) == 4 * 3
    assert set(got["ranking_agreement"]["compared"]) == {"metric", "protocol"}
    assert got["power_text"].startswith("With 4 models the smallest possible exact two-sided p is 0.083 (above alpha")
    assert out.figure("ranking_agreement").is_file()
    # two models: nothing estimated, nothing logged twice (the part "correlations" says why), no stale figure
    got = stage_compare.few_model_statistics(out, log, models, used.head(2), pu, "frozen", "visrank_max", 100, 0)
    assert log.rows == [] and not out.figure("ranking_agreement").is_file()
    assert got["power_text"] == ("Not estimated: a correlation across models needs at least 3 ImageNet models with "
                                 "both a published top-1 and auc values, and this study has 2.")
    assert len(pd.read_csv(out.results / "ranking_agreement.csv")) == 0


def test_compare_probe_tables_probe_every_frozen_set_and_say_why_when_they_cannot(tmp_path, monkeypatch):
    """The compare stage's attribute probe: the probe of each frozen set, as probe_sets gives it,
    written to results/; with fewer than 3 models no correlation, and a sentence saying why."""
    from types import SimpleNamespace

    from visrec_utils.core.layout import StudyLayout
    from visrec_utils.evaluation import attribute_probe
    from visrec_utils.pipeline.stages import stage_compare

    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(40)]
    items = pd.DataFrame({"item_id": ids, "kind": ["a", "b", "c", "d"] * 10})
    sets = {("m0", "frozen"): rng.normal(size=(40, 8)).astype(np.float32),
            ("m1", "frozen"): rng.normal(size=(40, 8)).astype(np.float32)}
    manifest = pd.DataFrame({"model": ["m0", "m1", "m0"], "strategy": ["frozen", "frozen", "bpr_projection"]})
    monkeypatch.setattr(stage_compare.data, "load_study_catalogue", lambda root: SimpleNamespace(items=items))
    monkeypatch.setattr(stage_compare.embedding_sets, "load_embedding_sets", lambda root, strategies: sets)
    monkeypatch.setattr(stage_compare.embedding_sets, "load_item_ids", lambda root, row: ids)
    out = StudyLayout(tmp_path).make_dirs()
    used = pd.DataFrame({"model": ["m0", "m1"], "published_top1": [70.0, 75.0], "auc": [0.6, 0.61]})
    got = stage_compare.probe_tables(out, manifest, used, None, 3, 50, 0)
    want = attribute_probe.probe_sets(sets, items, k=3, item_ids={k: ids for k in sets}, n_resamples=50, seed=0)
    pd.testing.assert_frame_equal(got["probe"], want)
    pd.testing.assert_frame_equal(pd.read_csv(out.result("attribute_probe")), want, check_dtype=False)
    assert got["probe_correlations"].empty
    assert got["probe_text"] == ("The probe is not correlated with recommendation quality: a correlation across models "
                                 "needs at least 3 ImageNet models with both a published top-1 and auc values, and this "
                                 "study has 2.")
    items["kind"] = None  # no usable column: an empty table and one sentence
    got = stage_compare.probe_tables(out, manifest, used, None, 3, 50, 0)
    assert got["probe"].empty and got["probe_text"].startswith("No attribute probe: ")
