"""The UMAP maps you can hover (issue 19, item 4): notebook 02 saves the coordinates it computed,
the index draws them with plotly (offline), and headless Chromium shows an item's card."""
import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from demo_study import MODELS, demo_study
from visrec_utils.core.layout import StudyLayout
from visrec_utils.reports import gallery, hover_map, index, screenshot


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, request):
    """The demo study with its maps saved by ``umap_map``; UMAP itself replaced by a stub that
    counts its calls (the real one is tested in test_plots.py): 300 points per map."""
    from visrec_utils.catalogue import data
    from visrec_utils.features.embedding_sets import load_embedding_sets

    out = demo_study(tmp_path_factory.mktemp("hover_study"))
    calls = []

    def fake_umap(emb, max_points=4000, seed=0):
        calls.append(len(emb))
        rows = np.sort(np.random.default_rng(seed).choice(len(emb), size=max_points, replace=False))
        return rows, np.asarray(emb[rows, :2], dtype=np.float32)  # the first two dimensions: cos, sin of the hue

    mp = pytest.MonkeyPatch()
    mp.setattr(gallery, "umap_coordinates", fake_umap)
    request.addfinalizer(mp.undo)
    layout = StudyLayout(out)
    cat = data.load_study_catalogue(out)
    sets = {m: e for (m, _), e in load_embedding_sets(out).items()}
    gallery.umap_map(cat, sets, color="shape", max_points=300, path=layout.figure("umap"),
                     coordinates=layout.result("umap_coordinates"), thumbnails=layout.result("umap_thumbnails"))
    return out, cat, sets, calls


def test_the_map_table_holds_what_umap_map_computed_once(mapped):
    out, cat, sets, calls = mapped
    assert calls == [400, 400]  # one UMAP per set, for the PNG and the table together
    coords = pd.read_parquet(StudyLayout(out).result("umap_coordinates"))
    assert list(coords.columns) == hover_map.COORDINATE_COLUMNS + ["hue"]  # the demo's text column besides shape
    assert coords["model"].value_counts().to_dict() == {m: 300 for m in MODELS}
    for model, emb in sets.items():
        rows = coords[coords["model"] == model]
        idx = cat.items.reset_index(drop=True).set_index(cat.items["item_id"].astype(str)).index.get_indexer(rows["item_id"])
        assert np.array_equal(rows[["x", "y"]].to_numpy(), emb[idx, :2])  # the stub's coordinates, row by row
        assert rows["group"].tolist() == cat.items["shape"].to_numpy()[idx].tolist()
    assert set(coords["group_by"]) == {"shape"}
    thumbs = pd.read_parquet(StudyLayout(out).result("umap_thumbnails"))
    assert sorted(thumbs["item_id"]) == sorted(set(coords["item_id"]))  # each mapped item once
    assert max(Image.open(io.BytesIO(thumbs["jpeg"].iloc[0])).size) == hover_map.THUMB_SIZE


def test_hover_columns_prefer_the_article_columns_and_skip_paths_and_long_text():
    items = pd.DataFrame({"item_id": ["1"], "image_path": ["/x/1.jpg"], "prod_name": ["Tee"], "detail_desc": ["x" * 80],
                          "colour_group_name": ["Black"], "product_group_name": ["Garment"]})
    assert hover_map.hover_columns(items, "product_group_name") == ["prod_name", "colour_group_name"]
    assert hover_map.hover_columns(items.drop(columns=["prod_name", "colour_group_name"]), "product_group_name") == []
    generic = pd.DataFrame({"item_id": ["1"], "image_path": ["p"], "brand": ["b"], "sku_code": ["c"], "size": ["M"]})
    assert hover_map.hover_columns(generic, "brand") == ["size"]


def test_the_index_embeds_every_point_and_item_once_and_ships_plotly_beside_it(mapped):
    out, _, _, _ = mapped
    page = index.write_index(out).read_text()
    reports = StudyLayout(out).reports
    assert page.count('<script charset="utf-8" src="plotly.min.js"></script>') == 1
    assert (reports / "plotly.min.js").stat().st_size > 3_000_000  # offline: the bundle beside the page
    items = json.loads(re.search(r'id="visrec-umap-items">(.*?)</script>', page, re.S).group(1))
    coords = pd.read_parquet(StudyLayout(out).result("umap_coordinates"))
    assert [i[0] for i in items] == list(dict.fromkeys(coords["item_id"]))
    first = coords.iloc[0]
    assert items[0][1] == [f"shape: {first['group']}", f"hue: {first['hue']}"]
    assert Image.open(io.BytesIO(base64.b64decode(items[0][2]))).format == "JPEG"
    figure = json.loads(re.search(r'Plotly.newPlot\(\s*"visrec-umap",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    # every point of both maps, each pointing at its item; legend entries on the first map only
    points = [(t["xaxis"] if "xaxis" in t else "x", i) for t in figure for i in t["customdata"]]
    assert len(points) == 600 and sorted(set(i for _, i in points)) == list(range(len(items)))
    assert {t.get("xaxis", "x") for t in figure} == {"x", "x2"} and all(t["hoverinfo"] == "none" for t in figure)
    assert [t["name"] for t in figure if t["showlegend"]] == [t["name"] for t in figure if t.get("xaxis", "x") == "x"]
    assert "Hover a dot to see the item&#39;s photo and details" in page or "Hover a dot to see the item's photo" in page
    assert '<a href="../figures/umap.png">figures/umap.png</a>' in page


def test_without_saved_coordinates_the_png_stays(tmp_path):
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "figures" / "umap.png")
    page = index.write_index(tmp_path).read_text()
    assert "visrec-umap" not in page and "plotly.min.js" not in page and page.count("data:image/png;base64,") == 1


def test_chromium_shows_an_items_card_on_the_map(mapped, tmp_path):
    if screenshot.find_chromium() is None:
        pytest.skip("chromium not installed (make test installs Debian's chromium when run as root)")
    out, cat, _, _ = mapped
    page = index.write_index(out)
    coords = pd.read_parquet(StudyLayout(out).result("umap_coordinates"))
    item = coords["item_id"].iloc[5]
    dom = screenshot.rendered_dom(page, fragment=f"item={item}", budget_ms=5000)
    assert dom.count('class="point plotly-customdata"') == 600  # plotly drew every dot
    card = re.search(r'<div id="visrec-umap-card"[^>]*>.*?</div>', dom, re.S).group(0)
    assert f'data-item="{item}"' in card and "display: block" in card
    assert '<img alt="the item\'s photo" style="' in card and 'src="data:image/jpeg;base64,' in card
    assert f"<b>{item}</b>" in card and f"shape: {coords['group'].iloc[5]}" in card
    # the picture: a tall window (the maps are below the tables), the map's part not blank
    shot = screenshot.screenshot(page, tmp_path / "map.png", width=1200, height=4000, fragment=f"item={item}",
                                 budget_ms=5000)
    grey = np.asarray(Image.open(shot).convert("L"), dtype=np.int16)
    assert grey.shape == (4000, 1200) and (grey < 200).mean() > 0.005
