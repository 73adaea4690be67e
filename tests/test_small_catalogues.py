"""Parts switched off, parameter lists left empty and catalogues too small for a part (issue 14).

A part that cannot run is skipped with one sentence, shown in its notebook, listed in
``results/skipped.csv`` and in the index's "Skipped parts", and the study goes on; a study that
could compute nothing stops before notebook 01 (:func:`visrec_utils.pipeline.preflight.check_study`).

Four small studies on seeded slices of the real H&M sample (20 users; their items first), shared
by module-scoped fixtures: 10 items with the defaults, the same output folder rerun with every
list of notebooks 03-04 emptied (notebooks 01-02 reused), 2 items, and 3 items with ``baselines``
and ``stage_models`` emptied and the UMAP maps switched off.
"""
import html
import shutil

import numpy as np
import pandas as pd
import pytest

from visrec_utils.evaluation import experiment, stats
from visrec_utils.pipeline import preflight, runner
from visrec_utils.core import skips
from visrec_utils.catalogue import protocols

FAST = {"max_users": 20, "models": ["mobilenetv1_025_keras"], "stage_models": ["mobilenetv1_025_keras"],
        "imagenet_dir": "", "n_resamples": 50, "max_steps": 4, "contrastive_images": 40}

IMAGENET = ("02_embedding_extraction", "ImageNet top-1 check",
            "imagenet_dir is empty (no labelled ImageNet sample given or found), so no model's measured top-1 was "
            "computed.")
NO_ITEMS_TABLE = ("04_recommendation_eval", "availability sensitivity: items_table",
                  "the items table has no available_from dates.")
NO_WARM = ("04_recommendation_eval", "cold/warm breakdown: warm", "no test user has a warm truth item.")
_ONE_USER_SLICE = ("a 95% bootstrap interval resamples test users and needs at least 2, and leave_last_basket_out has "
                   "1, so the tables show means without intervals.")
# one test user: each slice it falls in is shown without an interval, and no slice has the 2 users a breakdown needs
NO_SLICES = [("04_recommendation_eval", "item popularity at the test point: unseen", _ONE_USER_SLICE),
             ("04_recommendation_eval", "item popularity at the test point breakdown",
              "no slice of item popularity at the test point has 2 test users and a candidate to rank."),
             ("04_recommendation_eval", "item age at the test point: Q1 (0 days)", _ONE_USER_SLICE),
             ("04_recommendation_eval", "item age at the test point breakdown",
              "no slice of item age at the test point has 2 test users and a candidate to rank."),
             ("04_recommendation_eval", "figure slices_ndcg20", "there are no nDCG@20 values by slice to draw.")]
NO_PARETO = ("05_imagenet_vs_transfer", "figure model_pareto", "there are no nDCG@20 values to draw.")
ONE_MODEL = "a correlation across models needs at least 3 ImageNet models with both a published top-1 and auc values, " \
            "and this study has {}."
NO_TRIPLETS = ("no training triplets: no user has a training basket with a new item after an earlier basket, and "
               "purchase-based fine-tuning learns from those.")
PROXY = "'product_type_name' has 0 classes with >= 5 items; the proxy task needs 2."
CORRELATION_05 = [("05_imagenet_vs_transfer", "correlations within a family",
                   "no architecture family has 3 or more models in this study."),
                  ("05_imagenet_vs_transfer", "layer table",
                   "there is no layer variant in this study (add e.g. tf_efficientnet_lite0@stage3 to models).")]


def _correlations(n_models: int) -> list:
    """Notebook 05's skipped parts with fewer than 3 ImageNet models, in order: correlations, their
    intervals, within a family, the scatter figures, the layer table."""
    return [("05_imagenet_vs_transfer", part, ONE_MODEL.format(n_models))
            for part in ("correlations", "correlation intervals")] + [
        CORRELATION_05[0], ("05_imagenet_vs_transfer", "correlation figures", ONE_MODEL.format(n_models)),
        CORRELATION_05[1]]


def _first_seen(n_items: int, dropped: int) -> tuple:
    return ("04_recommendation_eval", "availability sensitivity: first_seen",
            f"no test user under leave_last_basket_out (leave_last_basket_out: 0 test points from 0 users, {n_items} "
            "items; candidates: first seen in sales (test user's own test purchases not counted); "
            f"{dropped} points dropped (no truth item available)).")


def _umap(n: int) -> tuple:
    return ("02_embedding_extraction", "UMAP map",
            f"a UMAP map needs more points than its 15 neighbours per point, and there are {n}.")


def _run(out, hm_dir, **params):
    return runner.run_study({"data_dir": str(hm_dir), **FAST, **params}, out)


def _study(tmp_path_factory, hm_dir, name: str, **params):
    out = tmp_path_factory.mktemp(name)
    _run(out, hm_dir, **params)
    return out


def _check_skipped(out, expected: list) -> None:
    """``expected`` (notebook, part, reason) rows are exactly ``results/skipped.csv``, and each
    sentence is in its notebook's HTML and in the index."""
    table = pd.read_csv(out / "results" / "skipped.csv", keep_default_na=False)
    assert list(table.columns) == skips.SKIP_COLUMNS
    assert list(map(tuple, table.to_numpy())) == expected
    index = html.unescape((out / "reports" / "index.html").read_text())
    assert "<h2>Skipped parts</h2>" in index
    for notebook, part, reason in expected:
        page = html.unescape((out / "reports" / f"{notebook}.html").read_text())
        assert f"Skipped: {part}.</strong> {reason}" in page, (notebook, part)
        assert f"<td>{part}</td>" in index and f"<td>{reason}</td>" in index, part


def _rows(out, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "results" / name)


@pytest.fixture(scope="module")
def ten_items(tmp_path_factory, hm_dir):
    return _study(tmp_path_factory, hm_dir, "ten_items", max_items=10)


@pytest.fixture(scope="module")
def empty_lists(ten_items, tmp_path_factory, hm_dir):
    out = tmp_path_factory.mktemp("empty_lists") / "study"
    shutil.copytree(ten_items, out)
    record = _run(out, hm_dir, max_items=10, strategies=[], other_protocols=[], sensitivity=[], recommenders=[], ks=[],
                  cold_warm=False)
    return out, record


@pytest.fixture(scope="module")
def two_items(tmp_path_factory, hm_dir):
    return _study(tmp_path_factory, hm_dir, "two_items", max_items=2)


@pytest.fixture(scope="module")
def three_items(tmp_path_factory, hm_dir):
    return _study(tmp_path_factory, hm_dir, "three_items", max_items=3, baselines=[], stage_models=[], umap_points=0)


# ---------------------------------------------------------------- nothing to compute: preflight


def _preflight(hm_dir, tmp_path, **params):
    with pytest.raises(preflight.StudyInfeasible) as e:
        preflight.check_study({"data_dir": str(hm_dir), "out_dir": str(tmp_path), **params})
    return str(e.value)


def test_preflight_stops_a_slice_of_one_item(hm_dir, tmp_path):
    assert _preflight(hm_dir, tmp_path, max_users=20, max_items=1) == (
        "the catalogue slice (max_users=20, max_items=1) has 1 item(s): a recommendation ranks at least 2; "
        "raise --max-items (or leave it out)")


def test_a_slice_without_test_users_warns_then_runs_what_it_can(hm_dir, tmp_path, capsys):
    """The issue's example: ``--max-items 4`` over all users (the 4 items' buyers have no second basket)."""
    from visrec_utils.features import embedding_sets

    why = ("no test user under leave_last_basket_out (leave_last_basket_out: 0 test points from 0 users, 4 items; "
           "candidates: whole catalogue)")
    assert preflight.check_study({"data_dir": str(hm_dir), "out_dir": str(tmp_path), "max_items": 4}) == [
        "the catalogue slice (max_users=None, max_items=4) has no test user under the main protocol "
        "leave_last_basket_out (leave_last_basket_out: 0 test points from 0 users, 4 items; candidates: whole "
        "catalogue): the study prepares the data and embeds the images, and skips the evaluation parts; for results "
        "use more users or items (--max-users, --max-items) or another protocol (-p protocol)"]
    _run(tmp_path, hm_dir, max_users=None, max_items=4)
    assert "[visrec] warning: the catalogue slice (max_users=None, max_items=4) has no test user" in capsys.readouterr().out
    assert embedding_sets.load_embedding_sets(tmp_path)[("mobilenetv1_025_keras", "frozen")].shape == (4, 256)
    table = pd.read_csv(tmp_path / "results" / "skipped.csv", keep_default_na=False).set_index("part")
    assert table.loc["evaluation under the main protocol", "reason"] == why + "."
    assert table.loc["UMAP map", "reason"] == _umap(4)[2]
    assert table.loc["bpr_projection", "reason"] == NO_TRIPLETS
    assert len(_rows(tmp_path, "metrics.csv")) == 0 and len(pd.read_parquet(tmp_path / "results" / "per_user.parquet")) == 0
    index = html.unescape((tmp_path / "reports" / "index.html").read_text())
    assert "<h2>Skipped parts</h2>" in index and f"<td>{why}.</td>" in index and "Key results" not in index


def test_preflight_stops_empty_models_and_no_recommender_at_all(hm_dir, tmp_path):
    assert _preflight(hm_dir, tmp_path, models=[]) == (
        "models is empty and the catalogue ships no embeddings: there is no model to embed the images with; name "
        "at least one (e.g. --models offline)")
    assert _preflight(hm_dir, tmp_path, recommenders=[], baselines=[]) == (
        "recommenders and baselines are both empty: nothing would be evaluated; keep at least one of them "
        "(e.g. -p baselines '[random]')")


def test_preflight_lets_a_catalogue_with_its_own_embeddings_run_without_models(tmp_path):
    from catalogues import write_ugallery

    write_ugallery(tmp_path / "ug")
    assert preflight.check_study({"data_dir": str(tmp_path / "ug"), "out_dir": str(tmp_path / "o"), "models": []}) == []


def test_preflight_passes_a_feasible_slice_quickly(hm_dir, tmp_path):
    import time

    t0 = time.perf_counter()
    preflight.check_study({"data_dir": str(hm_dir), "out_dir": str(tmp_path), "max_users": 20, "max_items": 2,
                           "recommenders": []})
    assert time.perf_counter() - t0 < 15  # reads the whole catalogue, runs no model


# ---------------------------------------------------------------- the package's guards


def test_skip_log_records_shows_and_replaces_a_notebooks_rows(tmp_path, capsys):
    log = skips.SkipLog(tmp_path, "04_recommendation_eval")
    with log.part("cold/warm breakdown"):
        raise skips.PartSkipped("cold_warm is False, which switches the breakdown off")
    assert capsys.readouterr().out == "**Skipped: cold/warm breakdown.** cold_warm is False, which switches the breakdown off.\n"
    assert log.skip("every protocol", "no other protocol.") == "**Skipped: every protocol.** no other protocol."
    with pytest.raises(KeyError):  # other errors are not skips
        with log.part("x"):
            raise KeyError("boom")
    skips.SkipLog(tmp_path, "05_imagenet_vs_transfer").skip("layer table", "none")
    assert skips.skipped_parts(tmp_path).values.tolist() == [
        ["04_recommendation_eval", "cold/warm breakdown", "cold_warm is False, which switches the breakdown off."],
        ["04_recommendation_eval", "every protocol", "no other protocol."],
        ["05_imagenet_vs_transfer", "layer table", "none."]]
    skips.SkipLog(tmp_path, "04_recommendation_eval")  # a rerun clears its own rows only
    assert skips.skipped_parts(tmp_path)["notebook"].tolist() == ["05_imagenet_vs_transfer"]


def _tiny_split():
    from visrec_utils.catalogue.data import Catalogue

    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(6)], "image_path": [None] * 6})
    inter = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["i0", "i1", "i2", "i3", "i4"],
                          "timestamp": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-01", "2020-01-09",
                                                       "2020-01-03"])})
    return protocols.leave_last_basket_out(Catalogue(name="tiny", items=items, interactions=inter))


def test_empty_lists_raise_part_skipped_with_one_sentence():
    split = _tiny_split()
    emb = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    with pytest.raises(skips.PartSkipped, match=r"^nothing to evaluate: no embedding set and no baseline "
                                                 r"\(baselines is empty\)$"):
        experiment.run_experiment(split, {}, ["visrank_max"], [], cache_dir=False, progress=False)
    with pytest.raises(skips.PartSkipped, match=r"^nothing to evaluate: no content-based recommender"):
        experiment.run_experiment(split, {("m", "frozen"): emb}, [], [], cache_dir=False, progress=False)
    m, _ = experiment.run_experiment(split, {}, [], ["random"], ks=(), n_resamples=20, cache_dir=False, progress=False)
    assert sorted(m["metric"]) == ["auc", "map", "mrr"] and (m["n_users"] == 2).all()  # ks empty: no @k metric
    with pytest.raises(skips.PartSkipped, match="^sensitivity names no availability rule to compare$"):
        experiment.availability_sensitivity(None, {}, [])
    with pytest.raises(skips.PartSkipped, match=r"^other_protocols names no protocol besides the main one"):
        experiment.study_protocols("temporal", ["temporal"])
    with pytest.raises(skips.PartSkipped, match="^cold_warm is False, which switches the breakdown off$"):
        experiment.cold_warm_breakdown(split, {}, enabled=False)


def test_a_missing_reference_is_a_skip_and_still_a_key_error():
    split = _tiny_split()
    _, pu = experiment.run_experiment(split, {}, [], ["popularity", "itemknn"], n_resamples=20, cache_dir=False,
                                      progress=False)
    with pytest.raises(stats.ReferenceMissing) as e:
        stats.paired_comparison(pu, ("-", "-", "random"))
    assert isinstance(e.value, KeyError) and str(e.value) == (
        "the reference -/-/random is not among the configurations evaluated (-/-/popularity, -/-/itemknn); set "
        "reference to one of them")
    with pytest.raises(skips.PartSkipped, match=r"^only the reference -/-/popularity was evaluated"):
        stats.paired_comparison(pu[pu["recommender"] == "popularity"], ("-", "-", "popularity"))


# ---------------------------------------------------------------- whole studies on small slices

NO_FINETUNING = [("03_fine_tuning", "figure learning_curves",
                  "bpr_projection was not trained, so there is no learning curve to draw."),
                 ("03_fine_tuning", "figure stage_learning_curves",
                  "no stage strategy was trained, so there is no learning curve to draw."),
                 ("03_fine_tuning", "fine-tuning vs frozen",
                  "no fine-tuned embedding set to compare with the frozen features (every strategy was left out of "
                  "strategies or skipped above).")]
ONE_USER = ("04_recommendation_eval", "95% intervals",
            "a 95% bootstrap interval resamples test users and needs at least 2, and leave_last_basket_out has 1, so "
            "the tables show means without intervals.")


def _contrastive(n: int) -> tuple:
    return ("03_fine_tuning", "contrastive: mobilenetv1_025_keras",
            f"contrastive holds out 32 images for validation and needs 2 more to train on; this catalogue has {n} "
            "usable images.")


@pytest.mark.slow
def test_ten_items_run_every_part_that_has_data(ten_items):
    out = ten_items
    _check_skipped(out, [IMAGENET, _umap(10),
                         ("03_fine_tuning", "proxy_metadata: mobilenetv1_025_keras", PROXY), _contrastive(10),
                         NO_WARM, NO_ITEMS_TABLE, _first_seen(10, 3), *_correlations(1)])
    m = _rows(out, "metrics.csv")
    auc = m[(m["metric"] == "auc") & (m["model"] == "-")].set_index("recommender")
    assert sorted(auc.index) == ["bpr_mf", "itemknn", "popularity", "popularity_30d", "random"]
    assert (auc["n_users"] == 3).all() and auc["value"].between(0, 1).all()  # the slice's 3 test users
    assert (auc["ci_low"] <= auc["value"]).all() and (auc["value"] <= auc["ci_high"]).all()
    # 3 embedding sets x 4 recommenders, VBPR on the frozen set, 5 baselines, 27 rows each (AUC, MRR, MAP,
    # 7 metrics x 3 ks, coverage x 3)
    assert set(m["strategy"]) == {"frozen", "bpr_projection", "partial_bpr", "-"} and len(m) == 18 * 27
    assert _rows(out, "finetune_cost.csv")["strategy"].tolist() == ["bpr_projection", "partial_bpr"]
    assert set(_rows(out, "finetune_vs_frozen.csv")["strategy"]) == {"bpr_projection", "partial_bpr"}
    assert set(_rows(out, "metrics_protocols.csv")["protocol"]) == {
        "leave_last_basket_out", "temporal", "replay_last", "replay_all", "random_holdout"}
    assert set(_rows(out, "metrics_cold_warm.csv")["truth"]) == {"cold"}
    assert set(_rows(out, "metrics_availability.csv")["availability"]) == {
        "whole catalogue", "first seen in sales, test purchases counted (LEAKY)"}
    assert len(_rows(out, "correlation_intervals.csv")) == 0 and len(_rows(out, "correlation_by_family.csv")) == 0
    for fig in ("neighbours", "gallery", "metric_bars_ndcg20", "finetune_auc", "learning_curves", "protocols_auc"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000, fig
    assert not (out / "figures" / "umap.png").exists()


@pytest.mark.slow
def test_every_list_of_notebooks_03_04_empty(empty_lists):
    out, record = empty_lists
    assert [r["reused"] for r in record["notebooks"]][::2] == [True, False, False]  # 01 reused; 03 and 05 ran
    _check_skipped(out, [
        IMAGENET, _umap(10),  # notebook 02 was reused: its rows stay
        ("03_fine_tuning", "bpr_projection", "bpr_projection is not in strategies."),
        ("03_fine_tuning", "stage strategies",
         "strategies names none of the stage strategies partial_bpr, proxy_metadata, contrastive."),
        *NO_FINETUNING,
        ("04_recommendation_eval", "content-based recommenders",
         "recommenders is empty, so only the baselines were evaluated."),
        ("04_recommendation_eval", "@k metrics", "ks is empty, so only AUC, MRR and MAP were computed."),
        ("04_recommendation_eval", "figure metric_bars_ndcg20", "there are no ndcg@20 values to draw."),
        ("04_recommendation_eval", "every protocol",
         "other_protocols names no protocol besides the main one (leave_last_basket_out), whose metrics are the main "
         "table above."),
        ("04_recommendation_eval", "cold/warm breakdown", "cold_warm is False, which switches the breakdown off."),
        ("04_recommendation_eval", "availability sensitivity", "sensitivity names no availability rule to compare."),
        *_correlations(0)[:4],
        ("05_imagenet_vs_transfer", "figure models_ndcg20", "there are no ndcg@20 values to draw."),
        CORRELATION_05[1], NO_PARETO])
    m = _rows(out, "metrics.csv")
    assert sorted(zip(m["recommender"], m["metric"])) == sorted(
        (b, x) for b in ("random", "popularity", "popularity_30d", "itemknn", "bpr_mf") for x in ("auc", "mrr", "map"))
    assert (m["n_users"] == 3).all() and (m["k"] == 0).all()
    paired = _rows(out, "paired_vs_reference.csv")
    assert sorted(set(paired["recommender"])) == ["bpr_mf", "itemknn", "popularity", "popularity_30d"] and len(paired) == 12
    for name in ("finetune_cost.csv", "finetune_metrics.csv", "finetune_vs_frozen.csv", "learning_curves.csv",
                 "metrics_protocols.csv", "paired_protocols.csv", "metrics_cold_warm.csv", "metrics_availability.csv"):
        assert len(_rows(out, name)) == 0, name  # written empty: no earlier run's rows left behind
    assert list(_rows(out, "metrics_cold_warm.csv").columns) == [*experiment.METRIC_COLUMNS, *experiment.SPLIT_COLUMNS,
                                                                 "truth"]


@pytest.mark.slow
def test_two_items_one_test_user_without_negatives(two_items):
    out = two_items
    perfect = ("every test user's only candidates under {} are the items they bought, so any ranking, random "
               "included, is perfect and the metrics would say nothing; use more items (--max-items).")
    protocols = ["leave_last_basket_out", "temporal", "replay_last", "replay_all", "random_holdout"]
    nb4 = "04_recommendation_eval"
    _check_skipped(out, [IMAGENET, _umap(2),
                         ("03_fine_tuning", "bpr_projection", NO_TRIPLETS),
                         ("03_fine_tuning", "partial_bpr: mobilenetv1_025_keras", NO_TRIPLETS),
                         ("03_fine_tuning", "proxy_metadata: mobilenetv1_025_keras", PROXY), _contrastive(2),
                         *NO_FINETUNING,
                         # one test user whose only candidate is the bought item: nDCG would be 1 for any ranking
                         (nb4, "evaluation under the main protocol", perfect.format(protocols[0])),
                         (nb4, "paired differences against the reference",
                          "nothing was evaluated (see the evaluation above), so there is nothing to compare."),
                         (nb4, "figure metric_bars_ndcg20", "there are no ndcg@20 values to draw."),
                         (nb4, "figure metric_bars_auc", "there are no auc values to draw."),
                         *[(nb4, f"every protocol: {p}", perfect.format(p)) for p in protocols],
                         (nb4, "every protocol", f"no protocol of {protocols} has a test user and a configuration to "
                                                 "evaluate."),
                         (nb4, "cold/warm breakdown", perfect.format(protocols[0])),
                         *NO_SLICES,
                         (nb4, "availability sensitivity: catalogue", perfect.format(protocols[0])),
                         NO_ITEMS_TABLE, _first_seen(2, 1),
                         (nb4, "availability sensitivity: first_seen_leaky", perfect.format(protocols[0])),
                         (nb4, "availability sensitivity", "no availability rule of ['catalogue', 'items_table', "
                                                           "'first_seen', 'first_seen_leaky'] could be evaluated."),
                         *_correlations(0)[:4],
                         ("05_imagenet_vs_transfer", "figure models_ndcg20", "there are no ndcg@20 values to draw."),
                         _correlations(0)[4], NO_PARETO])
    assert len(_rows(out, "metrics.csv")) == 0
    assert (out / "figures" / "neighbours.png").is_file()


@pytest.mark.slow
def test_three_items_without_baselines_stage_models_and_maps(three_items):
    out = three_items
    evaluated = ("mobilenetv1_025_keras/frozen/visrank_max, mobilenetv1_025_keras/frozen/hybrid_itemknn_visrank, "
                 "mobilenetv1_025_keras/frozen/vbpr")
    missing = "the reference -/-/random is not among the configurations evaluated ({}); set reference to one of them."
    _check_skipped(out, [
        IMAGENET, ("02_embedding_extraction", "UMAP map", "umap_points is 0, which switches the maps off."),
        ("03_fine_tuning", "bpr_projection", NO_TRIPLETS),
        ("03_fine_tuning", "stage strategies",
         "stage_models is empty, so partial_bpr, proxy_metadata, contrastive train no model."),
        *NO_FINETUNING,
        ("04_recommendation_eval", "baselines", "baselines is empty, so no non-visual baseline was evaluated."),
        ONE_USER,
        ("04_recommendation_eval", "paired differences against the reference", missing.format(
            "mobilenetv1_025_keras/frozen/visrank_max, mobilenetv1_025_keras/frozen/visrank_mean, "
            "mobilenetv1_025_keras/frozen/visrank_top3, mobilenetv1_025_keras/frozen/hybrid_itemknn_visrank, "
            "mobilenetv1_025_keras/frozen/vbpr")),
        ("04_recommendation_eval", "every protocol: leave_last_basket_out paired tests", missing.format(evaluated)),
        ("04_recommendation_eval", "every protocol: temporal",
         "the cut 2020-01-13 00:00:00 leaves no user with purchases on both sides; choose an earlier cut."),
        *[("04_recommendation_eval", f"every protocol: {p} paired tests", missing.format(evaluated))
          for p in ("replay_last", "replay_all", "random_holdout")],
        NO_WARM, *NO_SLICES, NO_ITEMS_TABLE, _first_seen(3, 1),
        # the leaky rule counts the test purchases, so only the bought item is a candidate: any ranking is perfect
        ("04_recommendation_eval", "availability sensitivity: first_seen_leaky",
         "every test user's only candidates under leave_last_basket_out are the items they bought, so any ranking, "
         "random included, is perfect and the metrics would say nothing; use more items (--max-items)."),
        *_correlations(1)])
    m = _rows(out, "metrics.csv")
    assert set(m["model"]) == {"mobilenetv1_025_keras"} and len(m) == 5 * 27
    auc = m[m["metric"] == "auc"]
    visrank = auc["recommender"] != "vbpr"  # VisRank: the one test user's item ranks first
    assert (auc.loc[visrank, "value"] == 1.0).all() and (auc["n_users"] == 1).all()
    assert auc.loc[~visrank, "value"].isin([0.0, 1.0]).all()  # VBPR, fitted on 2 purchases: one pair, either order
    assert set(_rows(out, "metrics_protocols.csv")["protocol"]) == {
        "leave_last_basket_out", "replay_last", "replay_all", "random_holdout"}
    assert len(_rows(out, "paired_vs_reference.csv")) == 0 and len(_rows(out, "paired_protocols.csv")) == 0
    assert not (out / "figures" / "umap.png").exists()
