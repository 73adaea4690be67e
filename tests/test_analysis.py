"""Correlation across models against scipy, with exact permutation p-values."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visrec_utils import analysis


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
