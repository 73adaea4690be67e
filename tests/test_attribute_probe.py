"""The purchase-free attribute probe (kNN attribute precision@k) and its correlation with the metrics."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visrec_utils.evaluation import attribute_probe as ap
from visrec_utils.reports import probe_report

# Seven items on the axes: cosines are exactly 1, 0 or -1, so every tie below is exact.
EMB = np.array([[5, 0], [1, 0], [2, 0], [0, 1], [0, 3], [-1, 0], [0, -1]], dtype=np.float32)
ITEMS = pd.DataFrame({
    "item_id": [f"i{j}" for j in range(7)],
    "colour": [None, "red", "blue", "red", "red", "blue", "  "],  # item 0 NA, item 6 blank: both missing
    "kind": ["top", "top", "top", "dress", "dress", "top", "dress"],
})


def test_neighbours_by_hand_with_ties_to_the_lower_index():
    # item 3 (0,1): cosine 1 with item 4, then 0 with items 0, 1, 2, 5 (tie -> item 0); item 5 (-1,0): 0 with 3, 4, 6
    nb = ap.nearest_neighbours(EMB, k=2)
    assert nb.tolist() == [[1, 2], [0, 2], [0, 1], [0, 4], [0, 3], [3, 4], [0, 1]]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 100])
def test_block_size_does_not_change_the_neighbours(block_size):
    assert ap.nearest_neighbours(EMB, k=3, block_size=block_size).tolist() == ap.nearest_neighbours(EMB, k=3).tolist()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(53, 6))
    x[7] = x[3] * 2  # an exact duplicate direction
    x[10] = 0  # a zero vector: cosine 0 with everything
    assert (ap.nearest_neighbours(x, k=5, block_size=block_size) == ap.nearest_neighbours(x, k=5, block_size=53)).all()


def test_neighbours_match_a_full_sort():
    x = np.random.default_rng(0).normal(size=(40, 8))
    u = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    want = np.sort(np.argsort(-sims, axis=1, kind="stable")[:, :4], axis=1)
    assert (ap.nearest_neighbours(x, k=4, block_size=6) == want).all()


def test_precision_and_chance_by_hand():
    out = ap.attribute_probe(EMB, ITEMS, ["colour", "kind"], k=2, n_resamples=200, seed=3).set_index("column")
    # colour: items 0 and 6 missing, left out of scoring AND of the search. Among items 1..5:
    # 1 -> {2, 3} (blue, red) 1/2; 2 -> {1, 3} 0; 3 -> {4, 1} 1; 4 -> {3, 1} 1; 5 -> {3, 4} 0
    c = out.loc["colour"]
    assert c["precision"] == pytest.approx(2.5 / 5)
    assert c["chance"] == pytest.approx((3 / 5) ** 2 + (2 / 5) ** 2)
    assert c["lift"] == pytest.approx(0.5 / 0.52)
    assert (c["n_items"], c["n_scored"], c["n_missing"], c["n_values"]) == (7, 5, 2, 2)
    # kind: tops 0,1,2 agree fully, dresses 3,4 get one dress and item 0, item 5 -> {3,4}, item 6 -> {0,1}
    d = out.loc["kind"]
    per_item = np.array([1, 1, 1, 0.5, 0.5, 0, 0])
    assert d["precision"] == pytest.approx(4 / 7)
    assert d["chance"] == pytest.approx(25 / 49)
    ref = stats.bootstrap((per_item,), np.mean, n_resamples=200, vectorized=True, method="percentile",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert d["ci_low"] < d["precision"] < d["ci_high"]


def test_columns_are_chosen_automatically():
    n = 10
    items = pd.DataFrame({
        "item_id": [str(j) for j in range(n)], "image_path": [f"/x/{j}.jpg" for j in range(n)],
        "price": np.arange(n, dtype=float),  # numeric
        "sku": [f"s{j}" for j in range(n)],  # every value distinct: id-like
        "shop_id": ["a", "b"] * 5,  # an id by name
        "one": ["x"] * n,  # one value
        "sparse": ["a", "a", "b"] + [None] * 7,  # 30% labelled -> kept (default 20%)
        "rare": ["a"] + [None] * 9,
        "colour": pd.Categorical(["r", "g"] * 5),
    })
    assert ap.categorical_columns(items) == ["sparse", "colour"]
    assert ap.categorical_columns(items, min_present=0.5) == ["colour"]
    assert ap.categorical_columns(items, max_values=1) == []
    out = ap.attribute_probe(np.eye(n)[:, :4] + 1, items, k=3)  # None chooses as categorical_columns(k=3)
    assert out["column"].tolist() == ["colour"]  # "sparse" has 3 labelled items: too few for 3 neighbours


def test_a_column_that_recodes_another_is_taken_once_by_its_name():
    items = pd.DataFrame({"type_no": ["304", "273", "304", None, "532", "273"],
                          "type_name": ["Tights", "Leggings", "Tights", None, "Umbrella", "Leggings"],
                          "group": ["Socks", "Lower", "Socks", None, "Items", "Socks"],  # another grouping
                          "type_code": ["T", "L", "T", None, "U", "L"]})
    assert ap.categorical_columns(items) == ["type_name", "group"]


def test_probe_sets_aligns_items_by_id_and_labels_rows():
    shuffled = ITEMS.iloc[::-1].reset_index(drop=True)
    got = ap.probe_sets({("m", "frozen"): EMB, "plain": EMB}, shuffled, "kind", k=2,
                        item_ids={("m", "frozen"): ITEMS["item_id"].tolist()}, n_resamples=50)
    assert got[["model", "strategy"]].values.tolist() == [["m", "frozen"], ["plain", ""]]
    assert got.loc[0, "precision"] == pytest.approx(4 / 7)  # aligned: the hand value
    assert got.loc[1, "precision"] != pytest.approx(4 / 7)  # the reversed table read as aligned


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"^columns: 'size' is not a column of the items table; its usable "
                                         r"categorical columns are \['colour', 'kind'\]$"):
        ap.attribute_probe(EMB, ITEMS, ["kind", "size"], k=2)
    with pytest.raises(ValueError, match=r"^columns: the items table has no usable categorical column"):
        ap.attribute_probe(EMB, ITEMS[["item_id"]].assign(n=np.arange(7)), k=2)
    with pytest.raises(ValueError, match=r"^columns: 'colour' has 5 labelled items, too few for k=5 neighbours"):
        ap.attribute_probe(EMB, ITEMS, "colour", k=5)
    with pytest.raises(ValueError, match=r"^items has 6 rows but the embedding set has shape \(7, 2\)"):
        ap.attribute_probe(EMB, ITEMS.iloc[:6], "kind")
    with pytest.raises(ValueError, match=r"^item_ids: 1 ids of the embedding set are not in the items table"):
        ap.align_items(ITEMS, ["i1", "zz"])
    with pytest.raises(ValueError, match=r"^emb holds NaN"):
        ap.nearest_neighbours(np.array([[1.0, np.nan], [0, 1], [1, 1]]), k=1)
    with pytest.raises(ValueError, match=r"^k must be between 1 and n_items - 1 = 6, not 7$"):
        ap.nearest_neighbours(EMB, k=7)


def _probe_rows(values: dict) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "strategy": "frozen", "column": col, "precision": v}
                         for m, cols in values.items() for col, v in cols.items()])


def test_probe_correlations_next_to_top1():
    probe = _probe_rows({"a": {"c1": 0.1, "c2": 0.3}, "b": {"c1": 0.4, "c2": 0.2}, "c": {"c1": 0.2, "c2": 0.6},
                         "d": {"c1": 0.5, "c2": 0.7}, "ctrl": {"c1": 0.0, "c2": 0.0}})
    table = pd.DataFrame({"model": ["a", "b", "c", "d", "ctrl"], "published_top1": [70.0, 72, 75, 71, np.nan],
                          "ndcg@20": [0.01, 0.03, 0.02, 0.04, 0.001], "auc": [0.6, 0.55, 0.7, 0.65, 0.5]})
    corr = probe_report.probe_correlations(probe, table, which=[("ndcg", 20), ("auc", 0)])
    assert corr["predictor"].unique().tolist() == ["published_top1", "probe:c1", "probe:c2", "probe:mean"]
    got = corr.set_index(["predictor", "metric"])
    four = table.iloc[:4]
    assert got.loc[("probe:c1", "ndcg@20"), "spearman_rho"] == pytest.approx(
        stats.spearmanr([0.1, 0.4, 0.2, 0.5], four["ndcg@20"]).statistic)
    assert got.loc[("probe:mean", "auc"), "kendall_tau"] == pytest.approx(
        stats.kendalltau([0.2, 0.3, 0.4, 0.6], four["auc"]).statistic)
    assert got.loc[("published_top1", "auc"), "spearman_rho"] == pytest.approx(
        stats.spearmanr(four["published_top1"], four["auc"]).statistic)
    assert (corr["n_models"] == 4).all()  # the control has no top-1: left out of every predictor
    loose = probe_report.probe_correlations(probe, table, which=[("ndcg", 20)], common=False)
    assert loose.set_index("predictor")["n_models"].to_dict() == {"published_top1": 4, "probe:c1": 5, "probe:c2": 5,
                                                                  "probe:mean": 5}
    text = probe_report.probe_text(corr)
    assert text.startswith("Across 4 models, Spearman's rho of ndcg@20 with the attribute probe (probe:mean) is 0.80")
    with pytest.raises(ValueError, match=r"^strategy: the probe has no 'tuned' rows; its strategies are \['frozen'\]$"):
        probe_report.probe_correlations(probe, table, strategy="tuned")
