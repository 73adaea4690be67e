"""The generated answer (reports/answer.py) and the human labels (reports/labels.py), on small
hand-made result folders whose numbers are known."""
import json

import numpy as np
import pandas as pd
import pytest

from visrec_utils.evaluation import stats
from visrec_utils.reports import answer, labels


def test_labels_read_as_words_and_never_cut_a_name():
    assert labels.config_label("tf_efficientnet_lite0", "frozen", "visrank_max") == "EfficientNet-Lite0, frozen, VisRank (max)"
    assert labels.config_label("-", "-", "popularity_30d") == "popularity, last 30 days"
    assert labels.model_label("random_tf_efficientnet_lite0") == "EfficientNet-Lite0, random weights"
    assert labels.model_label("mobilenetv1_025_keras@stage3") == "MobileNet-V1 0.25, stage 3"
    long = "vit_large_patch14_clip_336.openai_ft_in12k_in1k"
    assert labels.model_label(long) == long and labels.strategy_label("my_own_strategy") == "my own strategy"
    assert labels.metric_label("ndcg", 20) == "nDCG@20" and labels.metric_label("auc", 0) == "AUC"
    assert labels.metric_label("ndcg@20") == "nDCG@20" and labels.metric_label("hitrate", 20.0) == "HitRate@20"
    assert [labels.kind_of(m) for m in ("-", "handcrafted", "random_x", "a@stage2", "resnet50")] == \
        ["baseline", "control", "control", "layer variant", "ImageNet model"]


@pytest.mark.parametrize("value, text", [(0.56234, "0.562"), (12345.6, "12300"), (0.000123456, "0.000123"),
                                         (-0.0881, "-0.0881"), (99.96, "100"), (0.99996, "1.00"), (74.846, "74.8"),
                                         (float("nan"), ""), (None, ""), (0, "0"), (3.7512e-40, "3.75e-40"),
                                         (2.5e7, "2.50e+07")])
def test_three_significant_figures(value, text):
    assert labels.sig3(value) == text


def test_interval_text():
    assert labels.with_interval(0.088, 0.018, 0.159, signed=True) == "+0.0880 [+0.0180, +0.159]"
    assert labels.with_interval(0.5623, float("nan"), float("nan")) == "0.562"


def _run(out, rng, n_users=200, images_better=True):
    """A finished run's result tables: one ImageNet model against popularity, per-user values drawn
    so that the model's nDCG@20 is higher by about 0.05 (or equal)."""
    for d in ("results", "data"):
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / "data" / "catalogue.json").write_text(json.dumps({
        "name": "my_shop", "summary": {"users": 300, "items": 1000, "interactions": 4321, "first_day": "2020-01-01",
                                       "last_day": "2020-12-31"}}))
    (out / "results" / "run.json").write_text(json.dumps({"started": "2026-11-30 10:00:00",
                                                           "parameters": {"seed": 0, "max_users": None}}))
    users = np.arange(n_users)
    base_nd = rng.uniform(0, 0.1, n_users)
    gain = 0.05 if images_better else 0.0
    half = rng.normal(0, 0.01, n_users // 2)
    noise = np.concatenate([half, -half])  # symmetric: no difference at all when gain is 0
    per_user = pd.concat([
        pd.DataFrame({"user_id": users, "model": "-", "strategy": "-", "recommender": "popularity_30d",
                      "auc": rng.uniform(0.5, 0.6, n_users), "ndcg@20": base_nd, "n_candidates": 990}),
        pd.DataFrame({"user_id": users, "model": "tf_efficientnet_lite0", "strategy": "frozen",
                      "recommender": "visrank_max", "auc": rng.uniform(0.55, 0.65, n_users),
                      "ndcg@20": base_nd + gain + noise, "n_candidates": 1010})])
    _write_tables(out, per_user)
    return per_user


def _write_tables(out, per_user):
    """per_user.parquet and the metrics.csv of its means (intervals +-0.01; HitRate@20 by hand)."""
    n_users = per_user["user_id"].nunique()
    per_user.to_parquet(out / "results" / "per_user.parquet", index=False)
    rows = []
    for (m, s, r), g in per_user.groupby(["model", "strategy", "recommender"]):
        for metric, k, col in (("auc", 0, "auc"), ("ndcg", 20, "ndcg@20")):
            rows.append({"model": m, "strategy": s, "recommender": r, "metric": metric, "k": k,
                         "value": g[col].mean(), "ci_low": g[col].mean() - 0.01, "ci_high": g[col].mean() + 0.01,
                         "n_users": n_users})
        rows.append({"model": m, "strategy": s, "recommender": r, "metric": "hitrate", "k": 20,
                     "value": 0.0364 if m == "-" else 0.0512, "ci_low": 0.03, "ci_high": 0.04, "n_users": n_users})
    pd.DataFrame(rows).to_csv(out / "results" / "metrics.csv", index=False)


def test_the_answer_says_what_the_numbers_say(tmp_path):
    per_user = _run(tmp_path, np.random.default_rng(0))
    a = answer.study_answer(tmp_path)
    assert a.facts["Catalogue"] == "my_shop"
    assert a.facts["Purchases"] == "4,321 purchases by 300 customers of 1,000 items, 2020-01-01 to 2020-12-31"
    assert a.facts["Test"] == ("the last basket of 200 customers (those with an earlier basket and a new item in the "
                               "last one) held out and predicted from their earlier ones; "
                               "each ranking 1,000 candidate items (median)")
    # the paired difference is the one stats computes on the same customers
    ref = stats.paired_comparison(per_user, ("-", "-", "popularity_30d"), metrics=["auc", "ndcg@20"])
    nd = ref[ref["metric"] == "ndcg"].iloc[0]
    assert nd.verdict == "better" and nd.ci_low > 0
    first = a.sentences[0]
    nd_model = per_user[per_user["model"] != "-"]["ndcg@20"].mean()
    nd_base = per_user[per_user["model"] == "-"]["ndcg@20"].mean()
    assert first == (f"Ranked by nDCG@20, the best ImageNet model, EfficientNet-Lite0, frozen, VisRank (max), reaches "
                     f"{labels.sig3(nd_model)} against {labels.sig3(nd_base)} for the best non-visual baseline "
                     "(popularity, last 30 days): for about 5 in 100 customers one of their next purchases was in its "
                     "top 20, against about 4 in 100 customers with popularity, last 30 days. Paired over the same customers, "
                     f"the difference in nDCG@20 is {labels.with_interval(nd.mean_diff, nd.ci_low, nd.ci_high, True)}: "
                     "better, after Holm's correction.")
    assert a.headline == "Image recommendations from ImageNet features beat the best non-visual baseline " \
                         "(popularity, last 30 days)."
    md = a.markdown("## Found")
    assert md.startswith("## Found\n") and "**AUC**:" in md and "- **Catalogue:** my_shop" in md


def test_the_answer_on_equal_models_and_too_few_for_a_correlation(tmp_path):
    _run(tmp_path, np.random.default_rng(1), images_better=False)
    pd.DataFrame([{"metric": "ndcg@20", "coefficient": "spearman_rho", "n_models": 1, "estimate": np.nan,
                   "ci_low": np.nan, "ci_high": np.nan, "perm_p": np.nan}]).to_csv(
        tmp_path / "results" / "correlation_intervals.csv", index=False)
    a = answer.study_answer(tmp_path)
    assert "no detectable difference." in a.sentences[0]
    assert a.sentences[1] == ("With 1 ImageNet model there is no saying whether top-1 predicts recommendation "
                              "quality (a correlation needs at least 3).")
    assert a.headline.startswith("Image recommendations from ImageNet features do neither better nor worse than")


def test_a_run_without_results_has_facts_and_no_sentences(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "catalogue.json").write_text(json.dumps({"name": "demo", "synthetic": True}))
    a = answer.study_answer(tmp_path)
    assert a.sentences == [] and a.headline == "" and a.synthetic and a.facts == {"Catalogue": "demo"}
    assert "SYNTHETIC demo catalogue" in a.markdown()


def test_the_readme_block_is_replaced_between_its_markers_only():
    text = "# T\n\nbefore\n<!-- visrec:answer:start -->\nold\nlines\n<!-- visrec:answer:end -->\nafter\n"
    assert answer.replace_block(text, "new\n") == \
        "# T\n\nbefore\n<!-- visrec:answer:start -->\nnew\n<!-- visrec:answer:end -->\nafter\n"
    with pytest.raises(ValueError, match="the markers <!-- visrec:answer:start --> and <!-- visrec:answer:end -->"):
        answer.replace_block("no markers", "x")


def test_fine_tuning_cold_items_and_popularity_below_chance_in_words(tmp_path):
    _run(tmp_path, np.random.default_rng(2))
    rows = []
    for model in ("tf_efficientnet_lite0", "tf_efficientnet_lite1"):
        for metric, k, diff, lo, hi, p in (("auc", 0, 0.02, 0.01, 0.03, 1e-6), ("ndcg", 20, 0.001, -0.002, 0.004, 0.5)):
            rows.append({"model": model, "strategy": "bpr_projection", "recommender": "visrank_max", "metric": metric,
                         "k": k, "reference": f"{model}/frozen/visrank_max", "mean_diff": diff, "ci_low": lo,
                         "ci_high": hi, "n_users": 200, "n_nonzero": 200, "wilcoxon_p": p})
    stats.holm(pd.DataFrame(rows)).to_csv(tmp_path / "results" / "finetune_vs_frozen.csv", index=False)
    cold = pd.DataFrame([
        {"model": "tf_efficientnet_lite0", "strategy": "frozen", "recommender": "visrank_max", "metric": "hitrate",
         "k": 20, "value": 0.021, "ci_low": 0.012, "ci_high": 0.03, "n_users": 150, "truth": "cold"},
        {"model": "-", "strategy": "-", "recommender": "popularity", "metric": "hitrate", "k": 20, "value": 0.0,
         "ci_low": 0.0, "ci_high": 0.0, "n_users": 150, "truth": "cold"}])
    cold.to_csv(tmp_path / "results" / "metrics_cold_warm.csv", index=False)
    metrics = pd.read_csv(tmp_path / "results" / "metrics.csv")
    pd.concat([metrics, pd.DataFrame([{"model": "-", "strategy": "-", "recommender": "popularity", "metric": "auc",
                                       "k": 0, "value": 0.369, "ci_low": 0.35, "ci_high": 0.39, "n_users": 200}])]
              ).to_csv(tmp_path / "results" / "metrics.csv", index=False)
    a = answer.study_answer(tmp_path)
    assert ("Against the same model's frozen features, after Holm's correction: BPR projection raised AUC for 2 of 2 "
            "embedding sets (mean +0.0200), and nDCG@20 for 0.") in a.sentences
    assert ("Images win where purchase history cannot help: on items nobody had bought before (cold, 150 customers), "
            "EfficientNet-Lite0 put one in the top 20 for about 2 in 100 customers, the best baseline (popularity, all "
            "time) for no customer.") in a.sentences
    assert a.sentences[-1] == ("Popularity, all time (AUC 0.369) scores below chance because it ranks every "
                               "never-bought item last.")
    assert a.headline.endswith("and win on items nobody had bought before; fine-tuning with BPR projection raises "
                               "AUC, not nDCG@20.")
    # when it helped only some sets, the headline counts them
    table = pd.read_csv(tmp_path / "results" / "finetune_vs_frozen.csv")
    lite1_auc = (table["model"] == "tf_efficientnet_lite1") & (table["metric"] == "auc")
    table.loc[lite1_auc, ["ci_low", "wilcoxon_p"]] = [-0.01, 0.5]
    stats.holm(table).to_csv(tmp_path / "results" / "finetune_vs_frozen.csv", index=False)  # verdicts recomputed
    assert answer.study_answer(tmp_path).headline.endswith(
        "fine-tuning with BPR projection raises AUC for 1 of 2 embedding sets, not nDCG@20.")


def test_when_hit_rate_disagrees_with_ndcg_and_bpr_mf_is_below_chance_the_answer_says_so(tmp_path):
    _run(tmp_path, np.random.default_rng(5))
    metrics = pd.read_csv(tmp_path / "results" / "metrics.csv")
    hit = (metrics["metric"] == "hitrate") & (metrics["model"] != "-")
    metrics.loc[hit, "value"] = 0.0211  # the model leads on nDCG@20 (by about 0.05) but not on HitRate@20 (0.0364)
    extra = [{"model": "-", "strategy": "-", "recommender": r, "metric": "auc", "k": 0, "value": v, "ci_low": v - 0.02,
              "ci_high": v + 0.02, "n_users": 200} for r, v in (("bpr_mf", 0.377), ("popularity", 0.369),
                                                                  ("my_baseline", 0.41), ("itemknn", 0.49))]
    pd.concat([metrics, pd.DataFrame(extra)]).to_csv(tmp_path / "results" / "metrics.csv", index=False)
    a = answer.study_answer(tmp_path)
    assert ("; by HitRate@20 the order is reversed: for about 2 in 100 customers one of their next purchases was in "
            "its top 20, against about 4 in 100 customers with popularity, last 30 days. ") in a.sentences[0]
    # item-kNN's interval reaches 0.5: not below chance; the others are, with the reason only where it is known
    assert a.sentences[-2:] == [
        "BPR-MF (AUC 0.377) and popularity, all time (AUC 0.369) score below chance because they rank every "
        "never-bought item last.", "My baseline (AUC 0.410) scores below chance."]
    assert answer.ranks_cold_last("popularity_30d") and not answer.ranks_cold_last("itemknn")


def test_a_whole_hm_study_refreshes_the_readme_block_and_a_slice_does_not(tmp_path):
    from visrec_utils.pipeline import runner

    out = tmp_path / "out"
    _run(out, np.random.default_rng(3))
    readme = tmp_path / "README.md"
    readme.write_text("# visrec\n\n<!-- visrec:answer:start -->\nold\n<!-- visrec:answer:end -->\n\nmore\n")
    (out / "reports").mkdir()
    (out / "reports" / "index.html").write_text("<html><body><p>index</p></body></html>")
    runner.refresh_repo_answer(out, readme=readme, figures=tmp_path / "figures")
    text = readme.read_text()
    block = answer.study_answer(out).markdown(glossary=False).strip()
    assert text == f"# visrec\n\n<!-- visrec:answer:start -->\n{block}\n<!-- visrec:answer:end -->\n\nmore\n"
    assert "- **Catalogue:** my_shop" in text and "<sub>" not in text
    from visrec_utils.reports import screenshot
    assert (tmp_path / "figures" / "index_top.png").is_file() == bool(screenshot.find_chromium())
    run = json.loads((out / "results" / "run.json").read_text())
    run["parameters"]["max_users"] = 50  # a slice: the README keeps the whole study's answer
    (out / "results" / "run.json").write_text(json.dumps(run))
    readme.write_text("<!-- visrec:answer:start -->\nwhole study\n<!-- visrec:answer:end -->\n")
    runner.refresh_repo_answer(out, readme=readme, figures=tmp_path / "figures")
    assert readme.read_text() == "<!-- visrec:answer:start -->\nwhole study\n<!-- visrec:answer:end -->\n"


def test_top1_reads_each_metric_and_needs_the_models_permutation_too(tmp_path):
    _run(tmp_path, np.random.default_rng(4))
    rows = [{"metric": "ndcg@20", "coefficient": "spearman_rho", "n_models": 4, "estimate": 1.0, "ci_low": -0.2,
             "ci_high": 1.0, "perm_p": 1 / 12},
            {"metric": "auc", "coefficient": "spearman_rho", "n_models": 4, "estimate": -0.8, "ci_low": -1.0,
             "ci_high": -0.395, "perm_p": 1 / 3}]
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "correlation_intervals.csv", index=False)
    a = answer.study_answer(tmp_path)
    assert a.sentences[1] == (
        "Across 4 ImageNet models, Spearman's rank correlation of published top-1 with nDCG@20 rho = 1.00 [-0.200, "
        "1.00] (no relation shown) and with AUC rho = -0.800 [-1.00, -0.395] (on these models a higher top-1 went "
        "with a lower AUC, but the permutation p over 4 models is 0.333: too few models to generalise) (95% "
        "intervals over customers).")
    assert "a higher ImageNet top-1 is not shown to help" in a.headline
    rows[1].update(n_models=9, perm_p=0.01)  # enough models, and both tests agree
    pd.DataFrame(rows).to_csv(tmp_path / "results" / "correlation_intervals.csv", index=False)
    assert "a higher ImageNet top-1 goes with a lower AUC" in answer.study_answer(tmp_path).headline


def _cells(out, model, recommender):
    """``"AUC ... and nDCG@20 ..."`` of one row of the written metrics.csv, as the answer prints them."""
    m = pd.read_csv(out / "results" / "metrics.csv")
    m = m[(m["model"] == model) & (m["recommender"] == recommender)].set_index("metric")
    return [labels.with_interval(*m.loc[metric, ["value", "ci_low", "ci_high"]]) for metric in ("auc", "ndcg")]


def test_images_that_lose_to_popularity_are_said_not_to_help(tmp_path):
    per_user = _run(tmp_path, np.random.default_rng(5), images_better=False)
    model = per_user["model"] != "-"
    base = per_user[~model].set_index("user_id")
    per_user.loc[model, "ndcg@20"] -= 0.03  # the popularity's value plus symmetric noise, 0.03 lower
    per_user.loc[model, "auc"] = base["auc"].to_numpy() - 0.02
    _write_tables(tmp_path, per_user)
    ref = stats.paired_comparison(per_user, ("-", "-", "popularity_30d"), metrics=["auc", "ndcg@20"])
    assert list(ref["verdict"]) == ["worse", "worse"]
    a = answer.study_answer(tmp_path)
    (auc_m, nd_m), (auc_b, nd_b) = _cells(tmp_path, "tf_efficientnet_lite0", "visrank_max"), \
        _cells(tmp_path, "-", "popularity_30d")
    assert a.sentences[0] == (
        "On this catalogue images do not help: the best recommender from ImageNet features (EfficientNet-Lite0, "
        f"frozen, VisRank (max)) ranks next purchases worse than popularity, last 30 days: AUC {auc_m} and nDCG@20 "
        f"{nd_m}, against {auc_b} and {nd_b} for popularity, last 30 days (worse after Holm's correction, paired over "
        "the same customers).")
    assert a.headline == ("On this catalogue images do not help: the best recommender from ImageNet features ranks "
                          "next purchases worse than popularity, last 30 days.")
    assert "worse, after Holm's correction." in a.sentences[1]  # the main configuration's sentence agrees

    # worse on nDCG@20 but better on AUC: a trade-off, not "images do not help"
    per_user.loc[model, "auc"] = base["auc"].to_numpy() + 0.02
    _write_tables(tmp_path, per_user)
    a = answer.study_answer(tmp_path)
    assert not any("do not help" in t for t in [a.headline, *a.sentences])
    assert a.headline.startswith("Image recommendations from ImageNet features fall behind the best non-visual")


def _demo_study(root, taste):
    """A finished run's result tables on a small generated catalogue, from the real split and
    evaluation: one embedding set made of each drawn image's own hue (on a circle) and shape
    (one-hot), i.e. exactly what the images show, ranked by VisRank (max) against random and
    popularity."""
    from visrec_utils.catalogue import demo, layouts, protocols
    from visrec_utils.evaluation import experiment

    folder = demo.make_demo_catalogue(root / "catalogue", n_users=150, n_items=300, taste=taste)
    cat = layouts.load_catalogue(folder)
    split = protocols.make_split(cat, "leave_last_basket_out")
    items = pd.read_csv(folder / "items.csv").set_index("item_id").loc[cat.items["item_id"]]
    angle = 2 * np.pi * items["hue"].to_numpy()
    emb = np.column_stack([np.cos(angle), np.sin(angle), pd.get_dummies(items["shape"]).to_numpy(float)])
    metrics, per_user = experiment.run_experiment(
        split, {("hue_shape", "frozen"): emb.astype(np.float32)}, ["visrank_max"], ["random", "popularity"],
        ks=(20,), n_resamples=200, progress=False, cache_dir=False)
    out = root / "out"
    for d in ("results", "data"):
        (out / d).mkdir(parents=True)
    metrics.to_csv(out / "results" / "metrics.csv", index=False)
    per_user.to_parquet(out / "results" / "per_user.parquet", index=False)
    (out / "data" / "catalogue.json").write_text(json.dumps({"name": f"demo, taste={taste}", "synthetic": True}))
    return out, per_user


def test_on_a_catalogue_where_purchases_ignore_images_the_answer_says_images_do_not_help(tmp_path):
    out, per_user = _demo_study(tmp_path / "none", "none")
    ref = stats.paired_comparison(per_user, ("-", "-", "random"), metrics=["auc", "ndcg@20"])
    mine = ref[ref["model"] == "hue_shape"]
    assert len(mine) == 2 and not (mine["verdict"] == "better").any()
    a = answer.study_answer(out)
    (auc_m, nd_m), (auc_r, nd_r) = _cells(out, "hue_shape", "visrank_max"), _cells(out, "-", "random")
    assert a.sentences[0] == (
        "On this catalogue images do not help: no recommender from ImageNet features ranks next purchases detectably "
        "better than random (paired over the same customers, after Holm's correction); the best, hue_shape, frozen, "
        f"VisRank (max), reaches AUC {auc_m} and nDCG@20 {nd_m}, against {auc_r} and {nd_r} for random.")
    assert a.headline == ("On this catalogue images do not help: no recommender from ImageNet features ranks next "
                          "purchases better than random.")
    assert a.sentences[1].endswith("worse, after Holm's correction.")  # and popularity is far ahead
    # the same catalogue with the hidden visual taste: the images help, and the answer says so
    out, _ = _demo_study(tmp_path / "visual", "visual")
    a = answer.study_answer(out)
    assert not any("do not help" in t for t in [a.headline, *a.sentences])
    assert a.headline == "Image recommendations from ImageNet features beat the best non-visual baseline (random)."
