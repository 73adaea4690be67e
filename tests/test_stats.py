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


def test_reference_errors():
    pu = _per_user({("-", "-", "random"): np.zeros(5)}, n=5)
    with pytest.raises(KeyError, match="not among"):
        stats.paired_comparison(pu, ("-", "-", "popularity"))
    with pytest.raises(ValueError, match="model/strategy/recommender"):
        stats.parse_config("random")
