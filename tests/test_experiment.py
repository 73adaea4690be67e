"""run_experiment on hand-built splits: per-user averaging of test points, coverage rows, leak guard."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils import experiment, metrics
from visrec_utils.splits import Split


def _two_point_split():
    inter = pd.DataFrame({"user_id": ["a", "b"], "item_idx": [0, 1],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-01"])})
    # user a has two test points (time replay), user b one
    return Split(users=np.array(["a", "a", "b"], dtype=object),
                 profiles=[np.array([0]), np.array([0, 2]), np.array([1])],
                 truth=[np.array([2]), np.array([3]), np.array([3])],
                 test_day=np.array(["2020-01-02", "2020-01-03", "2020-01-03"], dtype="datetime64[ns]"),
                 train=inter, n_items=5, interactions=inter, protocol="replay_all")


def test_points_are_averaged_per_user_before_intervals():
    split = _two_point_split()
    emb = np.array([[1, 0], [0, 1], [1, 0.1], [0.2, 1], [-1, -1]], dtype=np.float32)
    m, pu = experiment.run_experiment(split, {("toy", "frozen"): emb}, ["visrank_max"], [], ks=(1, 2),
                                      n_resamples=50, progress=False)
    per_point = metrics.evaluate_scores(
        lambda pos: np.stack([np.max(experiment.SharedSimilarities(emb, split).rows(np.array([p]))[0], 0)
                              for p in pos]), split, ks=(1, 2))
    row_a = pu.set_index("user_id").loc["a"]
    assert row_a["n_points"] == 2
    assert row_a["auc"] == pytest.approx(per_point["auc"].iloc[:2].mean())
    auc = m[(m["metric"] == "auc")].iloc[0]
    assert auc["n_users"] == 2 and auc["value"] == pytest.approx(pu["auc"].mean())
    cov = m[m["metric"] == "coverage"].set_index("k")["value"]
    assert set(cov.index) == {1, 2} and 0 < cov[1] <= cov[2] <= 1
    assert (m["protocol"] == "replay_all").all()


def test_fine_tuned_sets_are_kept_out_of_other_protocols():
    sets = {("m", "frozen"): 1, ("m", "bpr_projection"): 2, ("u", "precomputed"): 3}
    assert experiment.leak_free_sets(sets, "leave_last_basket_out") == sets
    assert set(experiment.leak_free_sets(sets, "temporal")) == {("m", "frozen"), ("u", "precomputed")}
    assert ("m", "contrastive") in experiment.leak_free_sets({("m", "contrastive"): 4}, "replay_all")
