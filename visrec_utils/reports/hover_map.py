"""The UMAP maps as an interactive figure for the HTML index: hover a dot to see the item's photo
and details.

Notebook 02 computes each map once (:func:`visrec_utils.reports.gallery.umap_map`) and saves
what it computed: ``results/umap_coordinates.parquet`` (:func:`coordinates_table`: one row per
(model, item) with its 2-D position and the metadata shown on hover) and
``results/umap_thumbnails.parquet`` (:func:`thumbnails_table`: each mapped item's photo as a
64 px JPEG). :func:`hover_map_html` draws the maps from those two files, never from the
embeddings, with plotly (offline: ``plotly.min.js`` is written once beside ``index.html`` by
:func:`write_plotlyjs`, so the reports folder works without a network). Each item's photo and
details are embedded once in the page, whatever the number of maps; a dot carries only its
position and the item's row. Hovering a dot shows a card with the photo and details (the
static PNG, ``figures/umap.png``, stays for the README). ``index.html#item=<item_id>`` opens
the page with that item's card shown on the first map (a link to one item).
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from .labels import model_label

#: Item columns shown on hover when the catalogue has them (H&M's article columns), after the colouring one.
HOVER_COLUMNS = ("prod_name", "product_type_name", "colour_group_name", "department_name")
#: At most this many hover columns besides the colouring one (a catalogue without :data:`HOVER_COLUMNS`
#: gets its first short text columns).
MAX_HOVER_COLUMNS = 3
#: Longer side of the hover photo, in pixels, and its JPEG quality (about 1 kB a photo on H&M).
THUMB_SIZE = 64
THUMB_QUALITY = 75
#: The colours of the PNG map (matplotlib's tab10) for the 8 commonest groups; the rest grey.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
OTHER = "#cccccc"
#: Columns of ``results/umap_coordinates.parquet`` before the hover columns.
COORDINATE_COLUMNS = ["model", "item_id", "x", "y", "group_by", "group"]
#: Element ids of the figure, the card and the embedded item table in the page.
FIGURE_ID, CARD_ID, ITEMS_ID = "visrec-umap", "visrec-umap-card", "visrec-umap-items"


def hover_columns(items: pd.DataFrame, color: str) -> list[str]:
    """The item columns shown on hover besides ``item_id`` and the colouring column ``color``:
    those of :data:`HOVER_COLUMNS` present, else the first text columns whose values average
    under 40 characters (paths, ids and long descriptions left out); at most :data:`MAX_HOVER_COLUMNS`."""
    found = [c for c in HOVER_COLUMNS if c in items and c != color]
    if not found:
        skip = {"item_id", "image_path", color}
        for c in items.columns:
            if c in skip or c.endswith(("_id", "_path", "_no", "_code")):
                continue
            values = items[c].dropna().astype(str)
            if len(values) and values.str.len().mean() < 40:
                found.append(c)
    return found[:MAX_HOVER_COLUMNS]


def coordinates_table(cat, maps, color: str) -> pd.DataFrame:
    """The UMAP coordinates as a tidy table, one row per (model, item).

    Args:
        cat: the catalogue the maps were drawn from (``items`` with ``item_id``).
        maps: ``[(model, rows, xy)]``: the model's name, the item rows mapped ``(m,) int`` and their
            coordinates ``(m, 2) float32`` (:func:`visrec_utils.reports.gallery.umap_coordinates`).
        color: the item column the maps are coloured by (absent: every item in group "all").

    Returns:
        DataFrame with :data:`COORDINATE_COLUMNS` (``group_by`` the colouring column's name,
        ``group`` its value as text, "" when missing) then :func:`hover_columns` (text, "" when
        missing), in the maps' order.
    """
    items = cat.items
    shown = hover_columns(items, color)
    group = items[color].astype("string").fillna("").to_numpy(dtype=object) if color in items \
        else np.full(len(items), "all", dtype=object)
    frames = []
    for name, rows, xy in maps:
        rows = np.asarray(rows, dtype=np.int64)
        frame = pd.DataFrame({"model": str(name), "item_id": items["item_id"].astype(str).to_numpy()[rows],
                              "x": np.asarray(xy, dtype=np.float32)[:, 0], "y": np.asarray(xy, dtype=np.float32)[:, 1],
                              "group_by": color, "group": group[rows]})
        for c in shown:
            frame[c] = items[c].astype("string").fillna("").to_numpy(dtype=object)[rows]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COORDINATE_COLUMNS + shown)


def thumbnails_table(cat, rows, size: int = THUMB_SIZE, quality: int = THUMB_QUALITY) -> pd.DataFrame:
    """Each item's photo as a small JPEG, for the hover card.

    Decoded by :func:`visrec_utils.reports.plots.thumbnail` (the extraction's decoder; about 2 ms
    an H&M photo), longer side ``size`` px, JPEG ``quality``.

    Args:
        cat: the catalogue (``items.item_id``, ``items.image_path``).
        rows: item rows ``(m,) int``.

    Returns:
        DataFrame ``item_id`` (str), ``jpeg`` (bytes); an item without a readable photo has no row.
    """
    from PIL import Image

    from ..features.images import ImageError
    from .plots import thumbnail

    ids = cat.items["item_id"].astype(str).tolist()
    paths = cat.items["image_path"].tolist() if "image_path" in cat.items else [None] * len(ids)
    out = []
    for r in np.asarray(rows, dtype=np.int64):
        try:
            buf = io.BytesIO()
            Image.fromarray(thumbnail(paths[r], size)).save(buf, "JPEG", quality=quality, optimize=True)
        except ImageError:
            continue
        out.append((ids[r], buf.getvalue()))
    return pd.DataFrame(out, columns=["item_id", "jpeg"])


def write_plotlyjs(folder) -> Path:
    """``<folder>/plotly.min.js``, the plotly.js bundle of the installed plotly (about 4.8 MB),
    written when missing or different; the page loads it with ``<script src="plotly.min.js">``."""
    from plotly.offline import get_plotlyjs

    path = Path(folder) / "plotly.min.js"
    js = get_plotlyjs().encode("utf-8")
    if not path.is_file() or path.stat().st_size != len(js) or path.read_bytes() != js:
        from ..core.store import atomic_write

        atomic_write(path, lambda tmp: Path(tmp).write_bytes(js))
    return path


def _items_json(coords: pd.DataFrame, thumbs: pd.DataFrame) -> tuple[list[str], str]:
    """The distinct mapped items in order of first appearance, and the page's item table as JSON:
    ``[[item_id, [detail lines], base64 JPEG or ""], ...]`` (``<`` escaped, safe inside a script)."""
    ids = list(dict.fromkeys(coords["item_id"].astype(str)))
    first = coords.drop_duplicates("item_id").set_index("item_id")
    extra = [c for c in coords.columns if c not in COORDINATE_COLUMNS]
    jpeg = dict(zip(thumbs["item_id"].astype(str), thumbs["jpeg"])) if len(thumbs) else {}
    rows = []
    for iid in ids:
        r = first.loc[iid]
        lines = [f"{r['group_by']}: {r['group']}" if r["group"] else ""] + [f"{c}: {r[c]}" for c in extra if r[c]]
        photo = jpeg.get(iid)
        rows.append([iid, [line for line in lines if line], base64.b64encode(photo).decode() if photo else ""])
    text = json.dumps(rows, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")
    return ids, text


def hover_figure(coords: pd.DataFrame, ids: list[str]):
    """The plotly figure of the maps: one panel per model (two per row), one trace per colour
    group (the 8 commonest values, the rest and missing values grey; the legend toggles a group on
    every panel); each dot's ``customdata`` is its item's index in ``ids``. Hover labels are
    off: the page's card shows the item (:func:`hover_map_html`)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = list(dict.fromkeys(coords["model"]))
    cols = 1 if len(models) == 1 else 2
    n_rows = -(-len(models) // cols)
    groups = coords.drop_duplicates("item_id")["group"]
    common = groups[groups != ""].value_counts().index[:len(PALETTE)].tolist()  # a missing value is grey
    titles = [f"{model_label(m) or m} ({int((coords['model'] == m).sum()):,} items)" for m in models]
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.04, vertical_spacing=0.06)
    index = {iid: i for i, iid in enumerate(ids)}
    for mi, m in enumerate(models):
        sub = coords[coords["model"] == m]
        traces = [("other or missing", ~sub["group"].isin(common), OTHER)] + [
            (g, sub["group"] == g, PALETTE[i]) for i, g in enumerate(common)]
        for label, sel, colour in traces:
            part = sub[sel.to_numpy()]
            if not len(part):
                continue
            fig.add_trace(go.Scatter(
                x=part["x"].to_numpy(np.float32), y=part["y"].to_numpy(np.float32), mode="markers",
                marker={"size": 4, "color": colour}, name=label, legendgroup=label,
                showlegend=mi == 0, hoverinfo="none", customdata=[index[i] for i in part["item_id"].astype(str)]),
                row=mi // cols + 1, col=mi % cols + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    group_by = str(coords["group_by"].iloc[0]) if len(coords) else ""
    fig.update_layout(template="plotly_white", height=460 * n_rows + 60, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      hovermode="closest", legend={"title": {"text": group_by}, "itemsizing": "constant"})
    return fig


#: The card that follows the hovered dot, and the ``#item=<id>`` link (plain JavaScript, no library but plotly).
_SCRIPT = """<script>
(function () {
  var gd = document.getElementById("%(fig)s"), card = document.getElementById("%(card)s");
  var items = JSON.parse(document.getElementById("%(items)s").textContent);
  var img = card.querySelector("img"), title = card.querySelector("b"), text = card.querySelector("span");
  function show(pt, ev) {
    var item = items[pt.customdata], box = gd.getBoundingClientRect(), x, y;
    if (!item) { return; }
    title.textContent = item[0];
    text.textContent = item[1].join("\\n");
    if (item[2]) { img.src = "data:image/jpeg;base64," + item[2]; img.style.display = "block"; } else { img.style.display = "none"; }
    if (ev && ev.clientX !== undefined) { x = ev.clientX - box.left; y = ev.clientY - box.top; }
    else if (pt.bbox) { x = pt.bbox.x1; y = pt.bbox.y0; } else { x = box.width - 200; y = 40; }
    card.style.left = Math.max(0, x + 200 > box.width ? x - 196 : x + 12) + "px";
    card.style.top = Math.max(0, y - 20) + "px";
    card.setAttribute("data-item", item[0]);
    card.style.display = "block";
  }
  gd.on("plotly_hover", function (ev) { show(ev.points[0], ev.event); });
  gd.on("plotly_unhover", function () { card.style.display = "none"; });
  function fromHash() {
    var m = /^#item=(.+)$/.exec(decodeURIComponent(location.hash || "")), want, t, p, tr;
    if (!m) { return; }
    for (want = 0; want < items.length && items[want][0] !== m[1]; want++) {}
    for (t = 0; t < gd.data.length; t++) {
      tr = gd.data[t];
      p = Array.prototype.indexOf.call(tr.customdata, want);
      if (p >= 0) {
        Plotly.Fx.hover(gd, [{curveNumber: t, pointNumber: p}], (tr.xaxis || "x") + (tr.yaxis || "y"));
        // plotly emits no plotly_hover for a hover made by code; the point it hovered (with its bbox) is kept here
        if (gd._hoverdata && gd._hoverdata.length) { show(gd._hoverdata[0]); }
        return;
      }
    }
  }
  window.addEventListener("load", function () { setTimeout(fromHash, 0); });
  window.addEventListener("hashchange", fromHash);
})();
</script>"""

_CARD = ('<div id="{card}" style="display:none;position:absolute;z-index:10;width:184px;pointer-events:none;'
         'background:#fff;border:1px solid #999;border-radius:4px;padding:6px;font-size:.78rem;'
         'box-shadow:0 2px 6px rgba(0,0,0,.25)"><img alt="the item\'s photo" style="display:block;margin:0 auto 4px;'
         'border:0;max-width:100%"><b></b><br><span style="white-space:pre-line"></span></div>')


def hover_map_html(out_dir, reports_dir=None) -> Markup | None:
    """The interactive UMAP maps for the index page, or None when the run saved no coordinates.

    Reads ``results/umap_coordinates.parquet`` and ``results/umap_thumbnails.parquet`` (written by
    notebook 02, :func:`visrec_utils.reports.gallery.umap_map`; no UMAP is computed here), writes
    ``plotly.min.js`` into ``reports_dir`` (default ``<out>/reports``, :func:`write_plotlyjs`) and
    returns the HTML: a ``<script src="plotly.min.js">``, the figure (:func:`hover_figure`), the
    item table (id, detail lines, photo; each item once) and the hover script. On H&M (3,000
    items x 4 maps) it is about 3.7 MB, almost all of it the photos.
    """
    from ..core.layout import StudyLayout

    layout = StudyLayout(out_dir)
    path = layout.result("umap_coordinates")
    if not path.is_file():
        return None
    coords = pd.read_parquet(path)
    if coords.empty:
        return None
    thumbs_path = layout.result("umap_thumbnails")
    thumbs = pd.read_parquet(thumbs_path) if thumbs_path.is_file() else pd.DataFrame(columns=["item_id", "jpeg"])
    ids, items = _items_json(coords, thumbs)
    fig = hover_figure(coords, ids)
    write_plotlyjs(reports_dir or layout.reports)
    plot = fig.to_html(full_html=False, include_plotlyjs="directory", div_id=FIGURE_ID,
                       config={"displaylogo": False, "responsive": True})
    names = {"fig": FIGURE_ID, "card": CARD_ID, "items": ITEMS_ID}
    return Markup(f'<div class="umap-interactive" style="position:relative">{plot}{_CARD.format(card=CARD_ID)}'
                  f'<script type="application/json" id="{ITEMS_ID}">{items}</script>{_SCRIPT % names}</div>')
