"""Paired comparisons: Wilcoxon signed-rank with Holm correction, against known answers."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.evaluation import stats


def _per_user(values: dict, n=200):
    rows = []
    for cfg, v in values.items():
        m, s, r = cfg
        rows.append(pd.DataFrame({"model": m, "strategy": s, "recommender": r,
                                  "user_id": [f"u{i}" for i in range(n)], "auc": v}))
    return pd.concat(rows, ignore_index=True)


def test_known_answers():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    pu = _per_user({("-", "-", "random"): base,
                    ("m", "frozen", "visrank_max"): base + 0.05 + 0.01 * rng.normal(size=200),
                    ("m", "tuned", "visrank_max"): base - 0.05 + 0.01 * rng.normal(size=200),
                    ("m", "same", "visrank_max"): base})
    out = stats.paired_comparison(pu, ("-", "-", "random"), n_resamples=500).set_index("strategy")
    assert out.loc["frozen", "verdict"] == "better" and out.loc["tuned", "verdict"] == "worse"
    assert out.loc["same", "verdict"] == "no detectable difference" and out.loc["same", "wilcoxon_p"] == 1.0
    assert out.loc["frozen", "mean_diff"] == pytest.approx(0.05, abs=0.003)
    assert out.loc["frozen", "ci_low"] < 0.05 < out.loc["frozen", "ci_high"]


def test_matches_scipy_and_statsmodels():
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    base = rng.random(50)
    diffs = {("a", "s", "r"): 0.02 * rng.normal(size=50), ("b", "s", "r"): 0.02 * rng.normal(size=50) + 0.01}
    pu = _per_user({("ref", "s", "r"): base, **{k: base + d for k, d in diffs.items()}}, n=50)
    out = stats.paired_comparison(pu, ("ref", "s", "r"), n_resamples=200)
    raw = [wilcoxon(diffs[k]).pvalue for k in diffs]
    np.testing.assert_allclose(out["wilcoxon_p"], raw, rtol=1e-9)
    np.testing.assert_allclose(out["p_holm"], multipletests(raw, method="holm")[1], rtol=1e-9)


def test_holm_adjusted_equals_statsmodels_with_ties_and_caps():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for p in (rng.random(40) ** 3, np.array([0.01, 0.04, 0.04, 0.03, 0.5, 0.01]), np.array([0.2]), np.array([0.0, 1.0])):
        np.testing.assert_allclose(stats.holm_adjusted(p), multipletests(p, method="holm")[1], rtol=1e-15)
    assert stats.holm_adjusted(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])  # by hand
    assert stats.holm_adjusted(np.array([])).size == 0
    with pytest.raises(ValueError, match=r"needs p-values in \[0, 1\] without NaN; got \[nan\]"):
        stats.holm_adjusted(np.array([0.1, np.nan]))


def test_reference_errors():
    pu = _per_user({("-", "-", "random"): np.zeros(5)}, n=5)
    with pytest.raises(KeyError, match="not among"):
        stats.paired_comparison(pu, ("-", "-", "popularity"))
    with pytest.raises(ValueError, match="model/strategy/recommender"):
        stats.parse_config("random")


# --- families and verdicts that follow the intervals (issue 16) ---

METRICS_24 = [("auc", 0), ("map", 0), ("mrr", 0)] + [(m, k) for m in ("ap", "f1", "hitrate", "ndcg", "novelty",
                                                                         "precision", "recall") for k in (10, 20, 50)]


def _issue_table():
    """264 rows (11 configurations x 24 metric/cut-offs, 22 primary) as in the H&M run: VisRank-max
    against random on AUC at +0.088 [+0.018, +0.159], Wilcoxon p = 0.006, every other p-value
    larger except one clear primary win."""
    rng = np.random.default_rng(16)
    configs = [("tf_efficientnet_lite0", "frozen", "visrank_max")] + [(f"m{i}", "frozen", "visrank_max")
                                                                       for i in range(10)]
    rows = []
    for cfg in configs:
        for metric, k in METRICS_24:
            mean = rng.normal(0, 0.01)
            rows.append({"model": cfg[0], "strategy": cfg[1], "recommender": cfg[2], "metric": metric, "k": k,
                         "reference": "-/-/random", "mean_diff": mean, "ci_low": mean - 0.02, "ci_high": mean + 0.02,
                         "n_users": 100, "n_nonzero": 100, "wilcoxon_p": rng.uniform(0.0061, 1.0)})
    t = pd.DataFrame(rows)
    target = (t["model"] == "tf_efficientnet_lite0") & (t["metric"] == "auc")
    t.loc[target, ["mean_diff", "ci_low", "ci_high", "wilcoxon_p"]] = [0.088, 0.018, 0.159, 0.006]
    clear = (t["model"] == "m0") & (t["metric"] == "ndcg") & (t["k"] == 20)
    t.loc[clear, ["mean_diff", "ci_low", "ci_high", "wilcoxon_p"]] = [0.1, 0.05, 0.15, 1e-6]
    return t, target, clear


def test_the_issue_case_is_no_longer_no_detectable_difference():
    from statsmodels.stats.multitest import multipletests

    t, target, clear = _issue_table()
    assert len(t) == 264
    # the old rule (Holm over the whole table) could not reject it
    assert multipletests(t["wilcoxon_p"], method="holm")[1][target.to_numpy()][0] > 0.05
    out = stats.holm(t)
    assert list(out.columns) == stats.PAIRED_COLUMNS  # the new columns come after the old ones
    assert (out["family"] == "primary").sum() == 22
    for family in ("primary", "secondary"):  # Holm by hand, family by family
        sel = out["family"] == family
        np.testing.assert_allclose(out.loc[sel, "p_holm"], multipletests(t.loc[sel, "wilcoxon_p"], method="holm")[1],
                                   rtol=1e-12)
    row = out[target].iloc[0]
    assert row["family"] == "primary" and row["p_holm"] == pytest.approx(21 * 0.006)
    assert row["verdict"] == "better before correction"
    assert row["why"] == ("the 95% interval excludes 0 and Wilcoxon p = 0.006, but not after Holm's correction "
                          "over 22 primary comparisons (p = 0.13)")
    won = out[clear].iloc[0]
    assert won["verdict"] == "better" and won["why"] == "Holm p < 0.001 over 22 primary comparisons"
    assert set(out.loc[(out["ci_low"] < 0) & (out["ci_high"] > 0), "verdict"]) == {"no detectable difference"}
    plain = out[(out["family"] == "secondary") & (out["ci_low"] < 0)].iloc[0]
    assert plain["why"] == "the 95% interval includes 0 (Holm p = 1 over 242 secondary comparisons)"


def test_secondary_rows_do_not_depend_on_primary_ones():
    from statsmodels.stats.multitest import multipletests

    t, _, _ = _issue_table()
    first = stats.holm(t)
    primary = first["family"] == "primary"
    moved = t.copy()
    moved.loc[primary.to_numpy(), "wilcoxon_p"] = 1e-9  # every primary comparison now very strong
    second = stats.holm(moved)
    pd.testing.assert_series_equal(first.loc[~primary, "p_holm"], second.loc[~primary, "p_holm"])
    assert (second.loc[primary, "verdict"] != "no detectable difference").all()
    # and a primary-only table gives the primary rows the same p_holm as inside the whole table
    alone = stats.holm(t[primary.to_numpy()])
    pd.testing.assert_series_equal(alone["p_holm"], first.loc[primary, "p_holm"])
    # other primary comparisons, other families
    custom = stats.holm(t, primary=(("recall", 20),))
    assert (custom["family"] == "primary").sum() == 11
    sel = (custom["metric"] == "recall") & (custom["k"] == 20)
    np.testing.assert_allclose(custom.loc[sel, "p_holm"], multipletests(t.loc[sel, "wilcoxon_p"], method="holm")[1])


def test_interval_excludes_zero_but_holm_does_not_reject_on_per_user_data():
    """Per-user data of 11 configurations: one wins on AUC by a margin the interval sees but
    Holm over the 22 primary comparisons does not; the others are symmetric noise."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(7)
    n = 100
    base = {"auc": rng.uniform(0.3, 0.7, n), "ndcg@20": rng.uniform(0.0, 0.2, n)}
    z = rng.normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    win = 0.05 * (3.0 / np.sqrt(n)) + 0.05 * z  # t statistic 3: the interval excludes 0
    half = rng.normal(size=n // 2) * 0.05
    noise = np.concatenate([half, -half])  # symmetric: mean 0, no direction
    rows = [pd.DataFrame({"model": "-", "strategy": "-", "recommender": "random", "user_id": range(n), **base})]
    for i in range(11):
        d = win if i == 0 else noise
        rows.append(pd.DataFrame({"model": f"m{i}", "strategy": "frozen", "recommender": "visrank_max",
                                  "user_id": range(n), "auc": base["auc"] + d, "ndcg@20": base["ndcg@20"] + noise}))
    out = stats.paired_comparison(pd.concat(rows, ignore_index=True), ("-", "-", "random"), n_resamples=1000)
    assert len(out) == 22 and (out["family"] == "primary").all()
    r = out[(out["model"] == "m0") & (out["metric"] == "auc")].iloc[0]
    assert r["ci_low"] > 0 and r["wilcoxon_p"] == pytest.approx(wilcoxon((base["auc"] + win) - base["auc"]).pvalue)
    assert r["p_holm"] == pytest.approx(22 * r["wilcoxon_p"]) and r["p_holm"] > 0.05
    assert r["verdict"] == "better before correction"
    assert r["why"] == ("the 95% interval excludes 0 and Wilcoxon p = 0.0027, but not after Holm's correction "
                        "over 22 primary comparisons (p = 0.059)")
    assert set(out.loc[out["model"] != "m0", "verdict"]) == {"no detectable difference"}


def test_rejudge_a_finished_table_from_csv(tmp_path):
    from statsmodels.stats.multitest import multipletests

    t, target, _ = _issue_table()
    two = pd.concat([t.assign(protocol="temporal"), t.assign(protocol="replay_all",
                                                              wilcoxon_p=t["wilcoxon_p"] / 10)], ignore_index=True)
    two.assign(p_holm=1.0, verdict="no detectable difference").to_csv(tmp_path / "paired_protocols.csv", index=False)
    out = stats.rejudge(tmp_path / "paired_protocols.csv")
    assert list(out.columns) == [*stats.PAIRED_COLUMNS, "protocol"]
    for (protocol, family), g in out.groupby(["protocol", "family"]):  # per protocol and family
        np.testing.assert_allclose(g["p_holm"], multipletests(g["wilcoxon_p"], method="holm")[1], rtol=1e-9)
    tt = out[(out["protocol"] == "temporal")].reset_index(drop=True)
    assert tt.loc[target.to_numpy(), "verdict"].tolist() == ["better before correction"]
    with pytest.raises(ValueError) as e:
        stats.holm(t.drop(columns=["ci_low"]))
    assert str(e.value) == ("a paired comparison table needs the columns metric, k, mean_diff, ci_low, ci_high, "
                            "wilcoxon_p (e.g. results/paired_vs_reference.csv); this one lacks ci_low")
    with pytest.raises(FileNotFoundError, match="no such paired table"):
        stats.rejudge(tmp_path / "missing.csv")


def test_worse_before_correction_and_no_interval():
    t = pd.DataFrame({"metric": ["auc", "auc", "ndcg"], "k": [0, 0, 20], "mean_diff": [-0.05, 0.01, 0.0],
                      "ci_low": [-0.09, np.nan, -0.01], "ci_high": [-0.01, np.nan, 0.01],
                      "wilcoxon_p": [0.2, 0.5, 0.9]})
    out = stats.holm(t)
    assert out["verdict"].tolist() == ["worse before correction", "no detectable difference",
                                       "no detectable difference"]
    assert out["why"].tolist() == [
        "the 95% interval excludes 0, but Wilcoxon p = 0.2 (Holm p = 0.6 over 3 primary comparisons)",
        "no 95% interval (fewer than 2 users) and Holm p = 1 over 3 primary comparisons",
        "the 95% interval includes 0 (Holm p = 1 over 3 primary comparisons)"]
