"""The explorer in JupyterLab: pick a test user, an embedding set and a VisRank variant, see the
user's history, the top-k with the bought items framed green and, under each recommendation,
the history item it is closest to with their cosine similarity (the reason VisRank-max
recommended it). The logic is :class:`visrec_utils.reports.explorer.Explorer`; this module only
draws (ipywidgets and HTML with embedded thumbnails), imported by notebook 06.
"""
from __future__ import annotations

import base64
import functools
import html
import io

from .gallery import BOUGHT
from .labels import config_label, model_label, strategy_label

#: The VisRank variants the explorer offers.
RECOMMENDERS = ("visrank_max", "visrank_mean", "visrank_top3")


@functools.lru_cache(maxsize=4096)
def _thumb_uri(path, size: int) -> str:
    """The item's photo as a ``data:image/jpeg`` URI (longer side ``size``), or "" when unreadable."""
    from PIL import Image

    from ..features.images import ImageError
    from .plots import thumbnail

    try:
        buf = io.BytesIO()
        Image.fromarray(thumbnail(path, size)).save(buf, "JPEG", quality=80)
    except ImageError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _tile(explorer, item_id: str, size: int, caption: str = "", frame: str | None = None) -> str:
    uri = _thumb_uri(explorer.image_path(item_id), size)
    border = f"3px solid {frame}" if frame else "3px solid transparent"
    pic = (f'<img src="{uri}" style="max-width:{size}px;max-height:{size}px;border:{border}">' if uri
           else f'<div style="width:{size}px;height:{size}px;border:{border};font-size:10px">no photo</div>')
    return (f'<div style="display:inline-block;vertical-align:top;text-align:center;margin:2px;width:{size + 8}px;'
            f'font-size:11px" title="{html.escape(item_id)}">{pic}<br>{caption}</div>')


def explanation_html(explorer, point: int, table, n_history: int = 10, size: int = 96) -> str:
    """The explanation of one test point as an HTML fragment (thumbnails embedded): the last
    ``n_history`` history items, the items bought at the test point (green frames), then per
    recommendation (green frame when bought) its rank and score and, below, the history item it
    is closest to with their cosine similarity.

    Args:
        explorer: the :class:`~visrec_utils.reports.explorer.Explorer`.
        point: the test point.
        table: :meth:`Explorer.explain`'s table for that point (one set and recommender).
    """
    history = explorer.history(point)
    bought = explorer.bought(point)
    user = html.escape(str(explorer.split.users[point]))
    parts = [f"<h4 style='margin:4px 0'>Test user {user}: history, last {min(n_history, len(history))} of "
             f"{len(history)} items</h4>",
             "".join(_tile(explorer, i, size // 2 + 16) for i in history[-n_history:]),
             f"<h4 style='margin:4px 0;color:{BOUGHT}'>Bought at the test point ({len(bought)})</h4>",
             "".join(_tile(explorer, i, size // 2 + 16, frame=BOUGHT) for i in bought[:20])]
    if len(table):
        first = table.iloc[0]
        parts.append(f"<h4 style='margin:8px 0 4px'>Top {len(table)}: "
                     f"{html.escape(config_label(first['model'], first['strategy'], first['recommender']))}; "
                     "under each, the history item it is closest to and their cosine similarity</h4>")
        cells = []
        for r in table.itertuples():
            hit = " bought" if r.bought else ""
            top = _tile(explorer, r.item_id, size, f"#{r.rank}{hit}, score {r.score:.3f}", BOUGHT if r.bought else None)
            why = (_tile(explorer, r.closest_profile_item, size // 2 + 16, f"cos {r.similarity:.3f}")
                   if r.closest_profile_item else "<div style='font-size:11px'>no history</div>")
            cells.append(f'<div style="display:inline-block;vertical-align:top;margin:2px 4px;text-align:center">'
                         f'{top}<div style="font-size:10px;color:#666">closest in history</div>{why}</div>')
        parts.append("".join(cells))
    else:
        parts.append("<p>No candidate to recommend for this user.</p>")
    return "<div>" + "\n".join(parts) + "</div>"


def explorer_widget(explorer, k: int = 10, recommender: str = "visrank_max", size: int = 96):
    """The explorer as ipywidgets: a user list, an embedding-set list, the VisRank variant and
    ``k``, above the explanation (:func:`explanation_html`), redrawn on every change.

    Returns:
        ``ipywidgets.VBox``; its ``explain_table`` attribute holds the table shown now
        (:meth:`Explorer.explain`; None when the study has no test user or no embedding set, which the
        view then says) and ``controls`` the four input widgets by name.
    """
    import ipywidgets as w

    users = explorer.users()
    sets = list(explorer.sets)
    wide = {"description_width": "initial"}  # the labels whole
    user = w.Dropdown(options=list(zip(users["label"], users["point"].astype(int))), description="test user",
                      layout=w.Layout(width="460px"), style=wide)
    emb = w.Dropdown(options=[(f"{model_label(m) or m}, {strategy_label(s)}", i) for i, (m, s) in enumerate(sets)],
                     description="embeddings", layout=w.Layout(width="420px"), style=wide)
    rec = w.Dropdown(options=[(config_label("", "", r), r) for r in RECOMMENDERS], value=recommender,
                     description="recommender", style=wide)
    top = w.IntSlider(value=k, min=1, max=30, description="top k", style=wide)
    out = w.HTML()
    box = w.VBox([w.HBox([user, emb]), w.HBox([rec, top]), out])
    box.controls = {"user": user, "embeddings": emb, "recommender": rec, "k": top}

    def redraw(_=None):
        if user.value is None or emb.value is None:  # a slice without test users, or without an embedding set
            box.explain_table = None
            out.value = (f"<p>Nothing to explore: this study has {len(users)} test user(s) and {len(sets)} "
                         "embedding set(s); the explorer needs one of each.</p>")
            return
        table = explorer.explain(int(user.value), sets[emb.value], rec.value, int(top.value))
        box.explain_table = table
        out.value = explanation_html(explorer, int(user.value), table, size=size)

    for c in (user, emb, rec, top):
        c.observe(redraw, names="value")
    redraw()
    return box
