"""Figures that read right: captions, AUC from chance, legends outside the data, grey baselines,
labels in words, a gallery that shows the test basket, and thumbnails decoded like extraction."""
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from test_decoder_noise import odd_tiffs
from visrec_utils.catalogue import data, protocols
from visrec_utils.reports import analysis, captions, gallery, plots
from visrec_utils.reports.captions import caption

STAGES = Path(__file__).resolve().parents[1] / "visrec_utils" / "pipeline" / "stages"


def _figure_names() -> set:
    """Every figure name the stages write: ``out.figure("name")`` literals, and f-string names with
    each main metric's file token (``auc``, ``ndcg20``, ...) put in for the ``{...}`` part."""
    tokens = [analysis.metric_label(m, k).replace("@", "") for m, k in analysis.MAIN_METRICS]
    names = set()
    for path in STAGES.glob("stage_*.py"):
        for f, name in re.findall(r"\.figure\((f?)\"([^\"]+)\"", path.read_text()):
            names |= {re.sub(r"\{[^}]*\}", t, name) for t in tokens} if f and "{" in name else {name}
    return names


def test_every_figure_the_stages_write_has_a_sentence_caption():
    names = _figure_names()
    assert {"data_overview", "contact_sheet", "neighbours", "umap", "gallery", "metric_bars_auc", "protocols_auc",
            "finetune_auc", "finetune_ndcg20", "models_ndcg20", "imagenet_vs_precision10", "measured_top1_vs_ndcg20",
            "layers_auc", "layers_ndcg20", "learning_curves", "stage_learning_curves"} <= names
    for name in names:
        text = caption(name)
        assert text.endswith(".") and text != name and "_" not in text, (name, text)
        assert len(text.split()) >= 12, (name, text)  # a sentence that says how to read it, not a title


def test_captions_name_the_metric_and_how_to_read_auc():
    assert caption("metric_bars_auc").startswith("AUC of every configuration (dots, 95% interval bars, on an axis "
                                                 "from chance (0.5); right of the dashed line is better than ranking "
                                                 "at random")
    assert caption("imagenet_vs_ndcg20").startswith("Each ImageNet model's published ImageNet top-1 accuracy (x) "
                                                    "against its nDCG@20")
    assert "measured on the ImageNet sample" in caption("measured_top1_vs_auc")
    assert caption("figures/gallery.png") == captions.FIXED["gallery"]
    assert caption("my_extra_figure") == "My extra figure."
    assert caption("") == "Figure."


def _metrics() -> pd.DataFrame:
    rows = [("tf_efficientnet_lite0", "frozen", "visrank_max", 0.60, 0.58, 0.62),
            ("mobilenetv1_025_keras", "frozen", "visrank_max", 0.56, 0.54, 0.58),
            ("random_tf_efficientnet_lite0", "frozen", "visrank_max", 0.55, 0.53, 0.57),
            ("-", "-", "popularity_30d", 0.57, 0.56, 0.58),
            ("-", "-", "random", 0.49, 0.47, 0.51)]
    return pd.DataFrame([dict(model=m, strategy=s, recommender=r, metric="auc", k=0, value=v, ci_low=lo, ci_high=hi)
                         for m, s, r, v, lo, hi in rows])


def _points(ax) -> dict:
    """{y: (x, colour)} of the dots drawn (marker ``o`` or ``D``)."""
    import matplotlib.colors as mc

    out = {}
    for line in ax.lines:
        if line.get_marker() in ("o", "D"):
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                out[round(float(y), 6)] = (float(x), mc.to_hex(line.get_color()))
    return out


def _chance_line(ax) -> bool:
    return any(line.get_linestyle() == "--" and list(line.get_xdata()) == [0.5, 0.5] for line in ax.lines)


def _ticks(ax) -> dict:
    return {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}


def test_auc_bars_are_dots_from_chance_with_grey_baselines_in_words(tmp_path):
    fig = plots.metric_bars(_metrics(), "auc", 0, path=tmp_path / "metric_bars_auc.png")
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0.5 and _chance_line(ax)
    assert not [p for p in ax.patches if p.get_width() > 0.1]  # no bar from 0
    ticks = _ticks(ax)
    assert set(ticks) == {"EfficientNet-Lite0, frozen, VisRank (max)", "MobileNet-V1 0.25, frozen, VisRank (max)",
                          "EfficientNet-Lite0, random weights, frozen, VisRank (max)", "popularity, last 30 days",
                          "random"}
    points = _points(ax)
    model = points[ticks["EfficientNet-Lite0, frozen, VisRank (max)"]]
    baseline = points[ticks["popularity, last 30 days"]]
    assert model == (0.60, plots.KIND_COLOURS["ImageNet model"])  # the value drawn is the value computed
    assert baseline == (0.57, plots.KIND_COLOURS["baseline"]) and baseline[1] != model[1]
    assert points[ticks["EfficientNet-Lite0, random weights, frozen, VisRank (max)"]][1] == plots.KIND_COLOURS["control"]
    # below chance: marked at the edge, its value written out, not hidden
    assert ticks["random"] not in points
    assert "0.490 [0.470, 0.510], below chance" in [t.get_text() for t in ax.texts]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["ImageNet models", "controls (random weights, hand-made features)", "non-visual baselines"]
    assert (tmp_path / "metric_bars_auc.png").stat().st_size > 5000


def test_other_metrics_stay_bars_with_their_values_written():
    m = _metrics().assign(metric="ndcg", k=20)
    ax = plots.metric_bars(m, "ndcg", 20).axes[0]
    assert ax.get_xlim()[0] == 0 and sorted(round(p.get_width(), 6) for p in ax.patches) == [0.49, 0.55, 0.56, 0.57, 0.6]
    assert {"0.600", "0.570"} <= {t.get_text().strip() for t in ax.texts}
    base = [p for p in ax.patches if round(p.get_width(), 6) == 0.57][0]
    import matplotlib.colors as mc

    assert mc.to_hex(base.get_facecolor()) == plots.KIND_COLOURS["baseline"]
    assert ax.get_xlabel() == "nDCG@20 (longer is better)"


def _legend_outside(fig) -> bool:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    leg = ax.get_legend()
    box, area = leg.get_window_extent(renderer), ax.get_window_extent(renderer)
    kept = fig.get_tightbbox(renderer)  # what save_figure's bbox_inches="tight" keeps, in inches
    inches = box.transformed(fig.dpi_scale_trans.inverted())
    return box.x0 >= area.x1 and kept.x1 >= inches.x1 - 1e-6


def test_protocols_auc_dots_from_chance_legend_outside_and_baseline_rows_named(tmp_path):
    m = pd.concat([_metrics().assign(protocol="leave_last_basket_out", leaky=False),
                   _metrics().assign(protocol="random_holdout", leaky=True,
                                     value=lambda d: d["value"] + 0.05, ci_low=lambda d: d["ci_low"] + 0.05,
                                     ci_high=lambda d: d["ci_high"] + 0.05)], ignore_index=True)
    fig = plots.grouped_bars(m, "auc", 0, group="protocol", path=tmp_path / "protocols_auc.png")
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0.5 and _chance_line(ax) and _legend_outside(fig)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["leave last basket out", "random holdout (LEAKY)", "non-visual baselines"]
    assert "EfficientNet-Lite0, frozen, VisRank (max)" in _ticks(ax) and not [t for t in _ticks(ax) if " / " in t]
    xs = sorted(round(x, 6) for x, _ in _points(ax).values())
    assert xs == [0.54, 0.55, 0.56, 0.57, 0.6, 0.6, 0.61, 0.62, 0.65]  # 0.49 is below chance: marked at the edge
    assert len(ax.patches) == 2  # the grey rows behind the two baselines


def test_finetune_figures_legend_outside_and_models_in_words():
    m = pd.concat([_metrics().iloc[:3].assign(strategy="frozen"),
                   _metrics().iloc[:3].assign(strategy="bpr_projection", value=0.63, ci_low=0.61, ci_high=0.65)], ignore_index=True)
    fig = plots.grouped_bars(m, "auc", 0, group="strategy", config=("model",))
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0.5 and _legend_outside(fig)
    assert set(_ticks(ax)) == {"EfficientNet-Lite0", "MobileNet-V1 0.25", "EfficientNet-Lite0, random weights"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen", "BPR projection"]
    nd = plots.grouped_bars(m.assign(metric="ndcg", k=20), "ndcg", 20, group="strategy", config=("model",))
    assert nd.axes[0].get_xlim()[0] == 0 and _legend_outside(nd)


def _png(path: Path, colour) -> str:
    Image.new("RGB", (40, 60), colour).save(path)
    return str(path)


@pytest.fixture()
def small_catalogue(tmp_path):
    """12 items with plain-colour photos; 4 users with two baskets each (the last one held out)."""
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{k:02d}" for k in range(12)],
                          "image_path": [_png(tmp_path / f"i{k:02d}.png", tuple(int(c) for c in rng.integers(0, 255, 3)))
                                         for k in range(12)]})
    baskets = {"u0": ([0, 1, 2], [3, 4]), "u1": ([4, 5], [6]), "u2": ([6, 7, 8], [9, 10, 11]), "u3": ([1, 9], [0, 2])}
    rows = [(u, f"i{i:02d}", pd.Timestamp(day)) for u, (first, last) in baskets.items()
            for day, basket in (("2020-01-01", first), ("2020-02-01", last)) for i in basket]
    cat = data.Catalogue(items, pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    return cat, baskets


def test_gallery_shows_history_test_basket_and_whole_model_names(small_catalogue):
    cat, baskets = small_catalogue
    split = protocols.make_split(cat, "leave_last_basket_out")
    rng = np.random.default_rng(1)
    sets = {"tf_efficientnet_lite0": rng.normal(size=(12, 8)).astype(np.float32),
            "random_tf_efficientnet_lite0": rng.normal(size=(12, 8)).astype(np.float32)}
    fig = gallery.recommendation_gallery(cat, split, sets, n_users=3, k=4, n_profile=3)
    rows = fig.gallery_rows
    assert len(rows) == 3 * 4 and rows["row"].tolist()[:4] == ["history", "bought", *sets]
    for point, g in rows.groupby("point"):
        user = split.users[point]
        bought = g.set_index("row").loc["bought", "items"]
        assert bought == [cat.items["item_id"][i] for i in split.truth[point]]
        assert bought == [f"i{i:02d}" for i in baskets[user][1]]  # the basket held out, by hand
        assert g.set_index("row").loc["history", "items"] == [f"i{i:02d}" for i in baskets[user][0]]
        for model in sets:
            top = g.set_index("row").loc[model]
            assert len(top["items"]) == 4 and top["hits"] == [i in bought for i in top["items"]]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "EfficientNet-Lite0\ntop 4" in texts and "EfficientNet-Lite0,\nrandom weights\ntop 4" in texts
    green = [ax for ax in fig.axes if ax.spines["top"].get_visible()
             and tuple(ax.spines["top"].get_edgecolor()[:3]) == pytest.approx((0x2c / 255, 0xa0 / 255, 0x2c / 255))]
    n_bought = sum(len(b) for b in rows.loc[rows["row"] == "bought", "items"])
    n_hits = sum(sum(h) for h in rows.loc[rows["row"].isin(list(sets)), "hits"])
    assert len(green) == n_bought + n_hits and all(ax.images for ax in green)


def test_images_extraction_reads_are_pictured_not_unreadable(tmp_path):
    """16-bit greyscale TIFF, CMYK JPEG, RGBA PNG and a G4 TIFF that libtiff complains about all
    decode for extraction (load_image), so their tiles are pictures, in RGB; a truly broken file
    stays an "unreadable" tile and an item without a file a "no photo" tile."""
    odd_tiffs(tmp_path)
    a = np.full((60, 40), 65535, np.uint16)
    a[:, :20] = 32896
    Image.fromarray(a).save(tmp_path / "grey16.tif")
    assert Image.open(tmp_path / "grey16.tif").mode.startswith("I;16")
    Image.new("RGB", (40, 60), (200, 30, 30)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.new("RGBA", (40, 60), (0, 0, 255, 0)).save(tmp_path / "clear.png")
    good = ["grey16.tif", "cmyk.jpg", "clear.png", "noisy_g4.tif"]
    paths = [str(tmp_path / n) for n in good] + [str(tmp_path / "strip_lzw.tif"), None]
    cat = data.Catalogue(pd.DataFrame({"item_id": [f"i{k}" for k in range(len(paths))], "image_path": paths}),
                         pd.DataFrame(columns=["user_id", "item_id", "timestamp"]))
    emb = np.eye(len(paths), dtype=np.float32) + 0.01  # every item a neighbour of every other
    fig = gallery.neighbour_strips(cat, {"tf_efficientnet_lite0": emb}, n_items=1, k=len(paths) - 1)
    tiles = [ax for ax in fig.axes if ax.images or ax.texts and ax.texts[0].get_text() in ("unreadable", "no photo")]
    pictured = [ax.images[0].get_array() for ax in tiles if ax.images]
    words = sorted(ax.texts[0].get_text() for ax in tiles if not ax.images)
    assert len(pictured) == len(good) and words == ["no photo", "unreadable"]
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in pictured)
    grey = plots.thumbnail(tmp_path / "grey16.tif")
    assert grey[0, 0].tolist() == [128, 128, 128] and grey[0, -1].tolist() == [255, 255, 255]
    red = plots.thumbnail(tmp_path / "cmyk.jpg")[30, 20]
    assert red[0] > 150 and red[1] < 80 and red[2] < 80  # CMYK shown in its colours, not as 4 channels
    assert plots.thumbnail(tmp_path / "clear.png")[0, 0].tolist() == [255, 255, 255]  # alpha on white


def _imagenet_table(n_models: int) -> pd.DataFrame:
    rows = []
    for j in range(n_models):
        row = {"model": f"model{j}", "family": "F", "published_top1": 70.0 + j, "measured_top1": np.nan,
               "measured_top1_stderr": np.nan}
        for metric, k in analysis.MAIN_METRICS:
            lab = analysis.metric_label(metric, k)
            row.update({lab: 0.55 + 0.01 * j, f"{lab}_low": 0.54 + 0.01 * j, f"{lab}_high": 0.56 + 0.01 * j})
        rows.append(row)
    control = {**rows[0], "model": "handcrafted", "family": "control", "published_top1": np.nan}
    return pd.DataFrame([*rows, control])


def test_scatter_figures_need_three_imagenet_models_and_leave_no_stale_file(tmp_path):
    from visrec_utils.core.layout import StudyLayout
    from visrec_utils.core.skips import SkipLog
    from visrec_utils.pipeline.stages.stage_compare import correlation_figures

    out = StudyLayout(tmp_path).make_dirs()
    stale = out.figure("imagenet_vs_auc")
    Image.new("RGB", (4, 4)).save(stale)
    Image.new("RGB", (4, 4)).save(out.figure("measured_top1_vs_auc"))
    log = SkipLog(tmp_path, "05_imagenet_vs_transfer")
    shown = _imagenet_table(1)
    note = correlation_figures(out, log, shown, shown[shown["family"] != "control"], "frozen", "visrank_max")
    reason = ("a correlation across models needs at least 3 ImageNet models with both a published top-1 and auc "
              "values, and this study has 1")
    assert note == f"No scatter plot of ImageNet top-1 against the metrics was drawn: {reason}."
    assert log.rows == [{"notebook": "05_imagenet_vs_transfer", "part": "correlation figures", "reason": reason + "."}]
    assert sorted(out.figures.glob("*.png")) == []  # the earlier run's scatter plots are gone

    shown = _imagenet_table(3)
    log = SkipLog(tmp_path, "05_imagenet_vs_transfer")
    note = correlation_figures(out, log, shown, shown[shown["family"] != "control"], "frozen", "visrank_max")
    assert note == ("The scatter plots show the 3 ImageNet models the correlations use (dots, 95% intervals) and "
                    "the controls (dashed lines).")
    assert log.rows == []
    assert sorted(p.stem for p in out.figures.glob("*.png")) == [
        "imagenet_vs_auc", "imagenet_vs_mrr", "imagenet_vs_ndcg20", "imagenet_vs_precision10", "imagenet_vs_recall20"]


def test_umap_small_maps_use_exact_cosine_distances_equal_to_umaps_own():
    """Below umap-learn's 4,096-point threshold the map is built from a precomputed cosine matrix
    (one matrix product instead of 9M Python calls); it must equal umap-learn's own ``cosine``,
    zero rows (unreadable images) included, and give the same exact neighbours."""
    from umap.distances import cosine

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 12)).astype(np.float32)
    x[[5, 17]] = 0.0
    d = gallery.cosine_distances(x)
    ref = np.array([[cosine(a, b) for b in x.astype(np.float64)] for a in x.astype(np.float64)])
    np.fill_diagonal(ref, 0.0)
    assert d.dtype == np.float32 and d.shape == (60, 60)
    np.testing.assert_allclose(d, ref, atol=1e-6)
    assert d[5, 17] == 0.0 and d[5, 6] == 1.0
    # the 15 nearest rows of each non-zero row are the same under both
    live = np.setdiff1d(np.arange(60), [5, 17])
    for i in live[:10]:
        assert set(np.argsort(d[i], kind="stable")[:15]) == set(np.argsort(ref[i], kind="stable")[:15])
    with warnings.catch_warnings():  # umap-learn's notices (precomputed metric, seeded n_jobs) stay out of reports
        warnings.simplefilter("error", UserWarning)
        rows, xy = gallery.umap_coordinates(x, max_points=40, seed=0)
    assert rows.shape == (40,) and xy.shape == (40, 2) and np.isfinite(xy).all()
