"""The model card table, its Pareto fronts and figure, and its place in the index."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.reports import model_card


def _models():
    return pd.DataFrame({
        "model": ["a", "b", "c", "d", "gone"], "status": ["ok", "ok", "ok", "ok", "skipped"],
        "family": ["F", "F", "G", "control", ""], "published_top1": [70.0, 75.0, 80.0, 0.1, np.nan],
        "n_params": [1e6, 2e6, 4e6, 1e6, np.nan], "gflops": [0.4, 0.8, 1.6, 0.4, np.nan], "dim": [64, 128, 256, 64, 0],
        "extract_images_per_s": [300.0, 200.0, 100.0, 300.0, np.nan],
        "extract_peak_rss_gib": [1.0, 2.0, 1.5, 1.0, np.nan]})


def _metrics():
    rows = []
    for model, auc, nd in [("a", 0.60, 0.010), ("b", 0.62, 0.008), ("c", 0.65, 0.020), ("d", 0.55, 0.002)]:
        for metric, k, v in (("auc", 0, auc), ("ndcg", 20, nd), ("recall", 20, nd * 3), ("mrr", 0, nd / 2)):
            rows.append({"model": model, "strategy": "frozen", "recommender": "visrank_max", "metric": metric, "k": k,
                         "value": v, "ci_low": v - 0.001, "ci_high": v + 0.001})
    rows.append({**rows[0], "strategy": "bpr_projection", "value": 0.9})  # another strategy: not on the card
    return pd.DataFrame(rows)


def test_model_card_joins_cost_and_metrics_with_intervals():
    card = model_card.model_card(_models(), _metrics())
    assert card["model"].tolist() == ["d", "a", "b", "c"]  # by published top-1; the skipped model is left out
    row = card.set_index("model").loc["b"]
    assert (row["params_m"], row["gflops"], row["dim"]) == (2.0, 0.8, 128)
    assert (row["auc"], row["auc_low"], row["auc_high"]) == pytest.approx((0.62, 0.619, 0.621))
    assert row["ndcg@20"] == 0.008 and "n_params" not in card and "pretrain_data" in card
    with pytest.raises(ValueError, match=r"^the model card needs results/models.csv with a 'model' column \(run notebook 02 first\)$"):
        model_card.model_card(pd.DataFrame({"x": [1]}), _metrics())


def test_pareto_front_by_hand():
    card = model_card.model_card(_models(), _metrics()).set_index("model")
    # speed (more is better) against nDCG@20: c is best by nDCG@20; a is fastest (d ties on speed, lower nDCG);
    # b is slower than a and worse: dominated
    on = model_card.pareto_front(card, "extract_images_per_s", True)
    assert on[on].index.tolist() == ["a", "c"]
    # memory (less is better): a and d use 1.0 GiB, a has the higher nDCG@20; c beats b on both
    on = model_card.pareto_front(card, "extract_peak_rss_gib", False)
    assert sorted(on[on].index) == ["a", "c"]
    assert model_card.card_text(card.reset_index()).startswith(
        "No other embedding set is both better by nDCG@20 and cheaper, against extraction speed: a, c; against peak "
        "memory of the extraction pass: a, c (the Pareto fronts")
    card.loc["a", "ndcg@20"] = np.nan  # no value: not on the front, and b (2.0 GiB, 0.008) is then beaten by c alone
    on = model_card.pareto_front(card, "extract_peak_rss_gib", False)
    assert sorted(on[on].index) == ["c", "d"]


def test_pareto_figure_draws_the_axes_with_values_and_says_when_there_are_none(tmp_path):
    card = model_card.model_card(_models(), _metrics())
    fig = model_card.pareto_figure(card, path=tmp_path / "p.png")
    assert len(fig.axes) == 3 and (tmp_path / "p.png").stat().st_size > 5000
    bare = card.drop(columns=["extract_images_per_s", "extract_peak_rss_gib"]).assign(dim=np.nan)
    with pytest.raises(ValueError, match=r"^no embedding set has both nDCG@20 and a cost \(extract_images_per_s, "
                                         r"extract_peak_rss_gib, dim\) in the model card"):
        model_card.pareto_figure(bare)
    assert model_card.card_text(bare) == ""
