"""Correlation across models against scipy, with exact permutation p-values."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visrec_utils.core.skips import PartSkipped
from visrec_utils.reports import analysis


def _table(x, y):
    return pd.DataFrame({"model": [f"m{i}" for i in range(len(x))], "published_top1": x, "auc": y})


def test_coefficients_match_scipy_and_p_is_exact():
    x = [74.8, 76.7, 77.5, 50.6]
    y = [0.59, 0.60, 0.61, 0.58]
    c = analysis.correlations(_table(x, y), which=[("auc", 0)]).iloc[0]
    assert c["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert c["kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert c["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    # perfect rank agreement of 4 models: exactly 2 of the 24 pairings reach |rho| = 1
    assert c["spearman_rho"] == pytest.approx(1.0) and c["spearman_p"] == pytest.approx(2 / 24)
    # by brute force for Pearson
    r0 = abs(stats.pearsonr(x, y).statistic)
    hits = sum(abs(stats.pearsonr(x, p).statistic) >= r0 - 1e-12 for p in itertools.permutations(y))
    assert c["pearson_p"] == pytest.approx(hits / 24)


def test_too_few_models_gives_nan():
    c = analysis.correlations(_table([70, 75], [0.5, 0.6]), which=[("auc", 0)]).iloc[0]
    assert np.isnan(c["spearman_rho"]) and c["n_models"] == 2


def _per_user(values_by_model, strategy="frozen", recommender="visrank_max"):
    rows = []
    for model, vals in values_by_model.items():
        for u, v in enumerate(vals):
            rows.append({"model": model, "strategy": strategy, "recommender": recommender, "user_id": f"u{u}", "auc": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n", [4, 7])
def test_the_coefficients_of_many_rows_are_scipys_per_row_values_bit_for_bit(n):
    rng = np.random.default_rng(n)
    x = np.array([71.2, 77.5, 80.1, 75.0, 62.3, 79.9, 81.0][:n])
    rows = 0.6 + 0.01 * rng.normal(size=(300, n))
    rows[:40] = np.round(rows[:40], 2)  # ties within a row
    rows[40] = 0.61  # a constant row: NaN, as _coef gives it
    rows[41, :] = [0.4, 0.9, 1.0000001, 0.5, 0.6, 0.7, 0.8][:n]  # log-odds clips the 1.0000001
    for name in analysis.COEFFICIENTS:
        expected = np.array([analysis._coef(name, x, r) for r in rows])
        np.testing.assert_array_equal(analysis.coefficient_rows(name, x, rows), expected)
    assert np.isnan(analysis.coefficient_rows("kendall_tau", np.full(n, 80.0), rows)).all()


def test_log_odds_by_hand():
    np.testing.assert_allclose(analysis.log_odds([0.5, 75.0, 0.9]), [0.0, np.log(3), np.log(9)])


def test_correlation_interval_known_answers():
    table = pd.DataFrame({"model": ["a", "b", "c", "d"], "published_top1": [60.0, 70.0, 75.0, 80.0]})
    # every user ranks the models in top-1 order: every resample gives rho = 1, so the interval is [1, 1]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.6, size=200)
    per_user = _per_user({m: base + 0.05 * i for i, m in enumerate("abcd")})
    ci = analysis.correlation_intervals(per_user, table, which=[("auc", 0)], n_resamples=200).set_index("coefficient")
    assert ci.loc["spearman_rho", ["estimate", "ci_low", "ci_high"]].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ci.loc["kendall_tau", "perm_p"] == pytest.approx(2 / 24)
    means = np.array([(base + 0.05 * i).mean() for i in range(4)])
    assert ci.loc["pearson_logodds_r", "estimate"] == pytest.approx(
        stats.pearsonr(analysis.log_odds(table["published_top1"]), analysis.log_odds(means)).statistic)
    # pure noise around equal means: the interval must straddle zero
    noisy = _per_user({m: rng.uniform(0, 1, size=200) for m in "abcd"})
    ci = analysis.correlation_intervals(noisy, table, which=[("auc", 0)], n_resamples=300).set_index("coefficient")
    assert ci.loc["spearman_rho", "ci_low"] < 0 < ci.loc["spearman_rho", "ci_high"]
    assert "includes zero" in analysis.interval_text(ci.reset_index(), "auc")


def test_flagged_checkpoints():
    models = pd.DataFrame({"model": ["ok", "broken", "unmeasured"], "published_top1": [75.0, 75.0, 70.0],
                           "measured_top1": [80.0, 12.0, np.nan]})
    assert analysis.flag_checkpoints(models).tolist() == [False, True, False]


def test_layer_table_puts_stages_beside_the_final_features():
    table = pd.DataFrame({"model": ["m", "m@stage2", "m@stage3", "other"], "auc": [0.6, 0.55, 0.58, 0.7],
                          "auc_low": [0.5] * 4, "auc_high": [0.8] * 4})
    cells, values = analysis.layer_table(table, "auc")
    assert list(values.columns) == ["stage2", "stage3", "final"] and list(values.index) == ["m"]
    assert values.loc["m"].tolist() == [0.55, 0.58, 0.6]
    assert cells.loc["m", "final"] == "0.6000 [0.5000, 0.8000]"
    # the manifest's backbone and layer say what a set is, whatever its name
    renamed = table.assign(model=["m", "m mid", "m late", "other"])
    _, by_manifest = analysis.layer_table(renamed, "auc", layers={"m mid": ("m", "stage2"), "m late": ("m", "stage3")})
    pd.testing.assert_frame_equal(by_manifest, values)
    with pytest.raises(PartSkipped, match="there is no layer variant in this study"):
        analysis.layer_table(renamed, "auc", layers={})


def test_too_few_models_for_an_interval_says_so():
    table = pd.DataFrame({"model": ["a", "b"], "published_top1": [60.0, 70.0]})
    ci = analysis.correlation_intervals(_per_user({"a": [0.5, 0.6], "b": [0.6, 0.7]}), table, which=[("auc", 0)])
    assert ci.empty and "Fewer than 3 models" in analysis.interval_text(ci, "auc")


def _vs_frozen():
    """A paired_vs_frozen-like table: two strategies, two primary metrics and one secondary."""
    rows = [("bpr_projection", "auc", 0, 0.02, 0.01, 0.03, 1e-5), ("bpr_projection", "ndcg", 20, 0.003, 0.001, 0.005, 0.02),
            ("bpr_projection", "recall", 20, 0.01, 0.002, 0.02, 0.001),
            ("contrastive", "auc", 0, -0.001, -0.003, 0.001, 0.5), ("contrastive", "ndcg", 20, -0.002, -0.004, -0.0005, 0.3),
            ("contrastive", "recall", 20, 0.0, -0.01, 0.01, 0.9)]
    return pd.DataFrame([{"model": "m", "strategy": s, "recommender": "visrank_max", "metric": metric, "k": k,
                          "reference": "m/frozen/visrank_max", "mean_diff": d, "ci_low": lo, "ci_high": hi,
                          "n_users": 50, "n_nonzero": 50, "wilcoxon_p": p} for s, metric, k, d, lo, hi, p in rows])


def test_finetune_summary_says_the_family_and_the_new_verdicts():
    from visrec_utils.evaluation import stats as paired_stats

    table = paired_stats.holm(_vs_frozen())
    text = analysis.finetune_summary(table)
    assert text.splitlines() == [
        "Primary comparisons: AUC and nDCG@20, Holm-corrected together (4 comparisons); the other metrics are a "
        "secondary family, corrected on their own. \"Before correction only\": the 95% interval excludes 0, but the "
        "corrected test does not reject.",
        "",
        "- `m` / `bpr_projection`: AUC +0.0200 [+0.0100, +0.0300], Holm p = 4e-05: **helps**; "
        "nDCG@20 +0.0030 [+0.0010, +0.0050], Holm p = 0.06: **helps before correction only**",
        "- `m` / `contrastive`: AUC -0.0010 [-0.0030, +0.0010], Holm p = 0.6: **no detectable effect**; "
        "nDCG@20 -0.0020 [-0.0040, -0.0005], Holm p = 0.6: **hurts before correction only**",
        "",
        "On AUC (primary family, Holm over 4 comparisons), of 2 (model, strategy) pairs against frozen: 1 helps, "
        "1 no detectable effect, 0 hurts.",
        "",
        "On nDCG@20 (primary family, Holm over 4 comparisons), of 2 (model, strategy) pairs against frozen: 0 helps, "
        "1 helps before correction only, 0 no detectable effect, 1 hurts before correction only, 0 hurts."]
    # a table of an older run (no family column) is re-judged: the same summary
    assert analysis.finetune_summary(_vs_frozen().assign(p_holm=1.0, verdict="no detectable difference")) == text
    secondary = analysis.finetune_summary(table, shown=(("recall", 20),))
    assert secondary.splitlines()[-1] == ("On Recall@20 (secondary family, Holm over 2 comparisons), of 2 "
                                          "(model, strategy) pairs against frozen: 1 helps, 1 no detectable effect, "
                                          "0 hurts.")


def test_notebook_tables_show_the_primary_family_by_difference():
    from visrec_utils.evaluation import stats as paired_stats
    from visrec_utils.pipeline.stages.stage_evaluate import SHORT_COLUMNS, short_paired

    table = paired_stats.holm(_vs_frozen())
    short = short_paired(table)
    assert list(short.columns) == SHORT_COLUMNS
    assert short[["configuration", "metric"]].values.tolist() == [
        ["m, BPR projection, VisRank (max)", "AUC"], ["m, contrastive fine-tuning, VisRank (max)", "AUC"],
        ["m, BPR projection, VisRank (max)", "nDCG@20"], ["m, contrastive fine-tuning, VisRank (max)", "nDCG@20"]]
    assert short["mean_diff"].tolist() == [0.02, -0.001, 0.003, -0.002]  # unrounded
    by_protocol = pd.concat([table.assign(protocol="temporal"), table.assign(protocol="replay_all")])
    shown = short_paired(by_protocol, first=("protocol",))
    assert shown["protocol"].tolist() == ["temporal"] * 4 + ["replay_all"] * 4
    assert short_paired(table.iloc[:0]).columns.tolist() == SHORT_COLUMNS
