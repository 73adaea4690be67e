"""Pictures where people would rather look than read: recommendation galleries, nearest-neighbour
strips and UMAP maps of the embeddings. Each figure is saved as PNG and returned for display.
Thumbnails are decoded by :func:`visrec_utils.reports.plots.thumbnail`, i.e. by the extraction's
decoder, so every item that was embedded is also pictured.

* :func:`recommendation_gallery`: per sample test user, their history, their actual test basket
  (framed green), then each model's top 10 (VisRank-max over the candidates the evaluation uses),
  hits framed green too; it records which items each row shows (``fig.gallery_rows``).
* :func:`explanation_gallery`: per sample test user, each recommendation with the history item it
  is closest to (the reason VisRank-max recommends it; :mod:`visrec_utils.reports.explorer`).
* :func:`neighbour_strips`: per sample item, its most similar items (cosine) under each model.
* :func:`umap_map`: a 2-D UMAP (McInnes, Healy & Melville 2018; ``umap-learn``) of a model's
  embeddings, coloured by a metadata column, with thumbnails for a sample of points.
"""
from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd

from .labels import model_label, recommender_label
from .plots import legend_outside, pyplot, save_figure, thumbnail
from ..core.skips import PartSkipped
from ..core.linalg import l2_normalize
from ..evaluation.recommenders import VisRank

#: Frame of the items a test user bought at the test point, and of the recommendations among them (hits).
BOUGHT = "#2ca02c"
#: Frame of the query item of a neighbour strip.
QUERY = "#1f77b4"


def _wrap(label: str, width: int = 14) -> str:
    """``label`` whole, broken into lines of about ``width`` characters at spaces only (a word
    longer than ``width`` stays on its own line, never cut)."""
    return "\n".join(textwrap.wrap(str(label), width, break_long_words=False, break_on_hyphens=False)) or str(label)


def _thumb(ax, path, size: int = 96, frame: str | None = None, label: str = "") -> bool:
    """Draw the item's picture (:func:`visrec_utils.reports.plots.thumbnail`, the extraction's
    decoder) in ``ax``, framed in ``frame``; a file that cannot be read shows "unreadable" with
    its reason, an item without an image file "no photo". Returns whether a picture was drawn."""
    from ..features.images import ImageError

    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(frame is not None)
        if frame:
            side.set_edgecolor(frame)
            side.set_linewidth(4)
    drawn = True
    try:
        ax.imshow(thumbnail(path, size))
    except ImageError as e:
        missing = e.reason.startswith("no image file")
        ax.text(0.5, 0.5, "no photo" if missing else "unreadable", ha="center", va="center", fontsize=6)
        label = label or ("" if missing else e.reason[:20])
        drawn = False
    if label:
        ax.set_title(label, fontsize=6)
    return drawn


def _row_title(ax, text: str, color: str = "0.1") -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color=color, transform=ax.transAxes)


def recommendation_gallery(cat, split, embedding_sets: dict, n_users: int = 4, k: int = 10, n_profile: int = 5,
                           seed: int = 0, path=None):
    """What sample test users bought before, what they actually bought at the test point, and
    each model's top ``k`` for them.

    Per user (test point), rows top to bottom: their history (the last ``n_profile`` profile
    items in the split's order), their test basket (the held-out truth items, up to ``k``, framed
    green), then one row per model: its top ``k`` by VisRank (max) over the candidates the
    evaluation uses, recommendations they bought (hits) framed green as well. Model names are
    shown whole (:func:`visrec_utils.reports.labels.model_label`, wrapped at spaces).

    Args:
        cat: catalogue (``items.item_id`` and ``items.image_path`` in item order).
        split: the evaluation's split (its users, profiles, candidates and truth).
        embedding_sets: ``{model: (n_items, dim) float32}``, one or more to compare.
        n_users: test points drawn (seeded) among the split's.
        k: recommendations per model, and most truth items shown.
        n_profile: history images shown.

    Returns:
        The matplotlib figure; its ``gallery_rows`` attribute is a DataFrame of what each row
        shows: ``point`` (index into the split), ``user`` (user id), ``row`` ("history",
        "bought" or the model's name), ``items`` (list of item ids, left to right) and ``hits``
        (list of bools: the item is in the test basket).

    Raises:
        PartSkipped: the split has no test user, or ``embedding_sets`` is empty.
    """
    if split.n_users == 0:
        raise PartSkipped(f"the gallery shows test users' recommendations, and {split.protocol} has no test user")
    if not embedding_sets:
        raise PartSkipped("the gallery compares embedding sets, and this study has none")
    from .explorer import sample_points

    plt = pyplot()
    users = sample_points(split, n_users, seed)
    paths = cat.items["image_path"].tolist()
    ids = cat.items["item_id"].astype(str).tolist()
    masks = split.candidate_masks(users)
    tops = {}
    for label, emb in embedding_sets.items():
        s = VisRank("max").fit(split, emb).score(users)
        s[~masks] = -np.inf
        tops[label] = np.argsort(-s, axis=1, kind="stable")[:, :k]
    per_user = 2 + len(embedding_sets)
    cols = 1 + max(n_profile, k)
    rows = len(users) * per_user
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 + (cols - 1) * 1.0, rows * 1.15), squeeze=False,
                             gridspec_kw={"width_ratios": [1.8] + [1] * (cols - 1)})
    for a in axes.ravel():
        a.axis("off")
    record = []
    for ui, u in enumerate(users):
        truth = [int(t) for t in split.truth[u]]
        history = [int(i) for i in split.profiles[u][-n_profile:]]
        r = ui * per_user
        _row_title(axes[r, 0], f"test user {ui + 1}\nhistory ({len(history)} of {len(split.profiles[u])})")
        for j, item in enumerate(history):
            _thumb(axes[r, 1 + j], paths[item])
        record.append({"point": int(u), "user": split.users[u], "row": "history", "items": [ids[i] for i in history],
                       "hits": [False] * len(history)})
        shown = truth[:k]
        _row_title(axes[r + 1, 0], f"bought at the\ntest point ({len(shown)} of {len(truth)})", BOUGHT)
        for j, item in enumerate(shown):
            _thumb(axes[r + 1, 1 + j], paths[item], frame=BOUGHT)
        record.append({"point": int(u), "user": split.users[u], "row": "bought", "items": [ids[i] for i in shown],
                       "hits": [True] * len(shown)})
        bought = set(truth)
        for mi, (label, top) in enumerate(tops.items()):
            rr = r + 2 + mi
            _row_title(axes[rr, 0], _wrap(model_label(label) or str(label), 20) + f"\ntop {k}")
            items = [int(i) for i in top[ui]]
            for j, item in enumerate(items):
                hit = item in bought
                _thumb(axes[rr, 1 + j], paths[item], frame=BOUGHT if hit else None,
                       label=f"#{j + 1} bought" if hit else f"#{j + 1}")
            record.append({"point": int(u), "user": split.users[u], "row": label, "items": [ids[i] for i in items],
                           "hits": [i in bought for i in items]})
    height = rows * 1.15
    fig.subplots_adjust(top=1 - 0.7 / height, bottom=0.1 / height, hspace=0.35, wspace=0.12)
    fig.suptitle(f"{len(users)} sample test users: what they bought before (history), what they bought at the test "
                 f"point (green frames),\nand each model's top {k} by VisRank (max); a green frame on a "
                 "recommendation is a hit", fontsize=9)
    fig.gallery_rows = pd.DataFrame(record, columns=["point", "user", "row", "items", "hits"])
    return save_figure(fig, path)


def explanation_gallery(cat, split, table: pd.DataFrame, n_profile: int = 8, path=None):
    """Why each recommendation was made, for the test points of ``table``
    (:func:`visrec_utils.reports.explorer.explain`'s rows, one or more embedding sets).

    Per point, rows top to bottom: the history (last ``n_profile`` profile items), then per
    embedding set its top recommendations (green frame: bought at the test point; label: rank
    and score) and, under each, the history item it is closest to with their cosine similarity.

    Raises:
        PartSkipped: ``table`` is empty.
    """
    if table.empty:
        raise PartSkipped("there is no recommendation to explain (no test user or no embedding set)")
    plt = pyplot()
    paths = dict(zip(cat.items["item_id"].astype(str), cat.items["image_path"]))
    ids = cat.items["item_id"].astype(str).tolist()
    sets = list(dict.fromkeys(zip(table["model"], table["strategy"])))
    points = list(dict.fromkeys(table["point"]))
    k = int(table["rank"].max())
    per_point = 1 + 2 * len(sets)
    rows, cols = len(points) * per_point, 1 + max(k, n_profile)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 + (cols - 1) * 1.0, rows * 1.15), squeeze=False,
                             gridspec_kw={"width_ratios": [1.8] + [1] * (cols - 1)})
    for a in axes.ravel():
        a.axis("off")
    for pi, point in enumerate(points):
        r = pi * per_point
        history = [ids[i] for i in split.profiles[point]][-n_profile:]
        _row_title(axes[r, 0], f"test user {pi + 1}\nhistory ({len(history)} of {len(split.profiles[point])})")
        for j, item in enumerate(history):
            _thumb(axes[r, 1 + j], paths[item])
        for si, (model, strategy) in enumerate(sets):
            sel = table[(table["point"] == point) & (table["model"] == model) & (table["strategy"] == strategy)]
            rr = r + 1 + 2 * si
            _row_title(axes[rr, 0], _wrap(model_label(model) or str(model), 20) + f"\ntop {len(sel)}")
            _row_title(axes[rr + 1, 0], "closest item\nof the history", "0.35")
            for j, rec in enumerate(sel.itertuples()):
                _thumb(axes[rr, 1 + j], paths[rec.item_id], frame=BOUGHT if rec.bought else None,
                       label=f"#{rec.rank}{' bought' if rec.bought else ''} {rec.score:.2f}")
                if rec.closest_profile_item:
                    _thumb(axes[rr + 1, 1 + j], paths[rec.closest_profile_item], size=64,
                           label=f"cos {rec.similarity:.2f}")
    height = rows * 1.15
    fig.subplots_adjust(top=1 - 0.7 / height, bottom=0.1 / height, hspace=0.4, wspace=0.12)
    fig.suptitle(f"Why these recommendations? {len(points)} sample test users' top {k} by "
                 f"{recommender_label(table['recommender'].iloc[0])}, and under each the item of the user's history it is closest to "
                 "(cosine similarity, the score);\na green frame marks an item they bought at the test point",
                 fontsize=9)
    return save_figure(fig, path)


def neighbour_strips(cat, embedding_sets: dict, n_items: int = 4, k: int = 8, seed: int = 0, path=None):
    """For ``n_items`` sample items (seeded), the ``k`` most similar other items under each model
    (cosine of L2-normalised embeddings), one strip per (item, model)."""
    plt = pyplot()
    rng = np.random.default_rng(seed)
    n = len(cat.items)
    items = rng.choice(n, size=min(n_items, n), replace=False)
    paths = cat.items["image_path"].tolist()
    rows = len(items) * len(embedding_sets)
    fig, axes = plt.subplots(rows, k + 2, figsize=((k + 2) * 1.0 + 0.6, rows * 1.15), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.6] + [1] * k})
    for a in axes.ravel():
        a.axis("off")
    for ii, item in enumerate(items):
        for mi, (label, emb) in enumerate(embedding_sets.items()):
            unit = l2_normalize(emb)
            sims = unit @ unit[item]
            sims[item] = -np.inf
            near = np.argsort(-sims, kind="stable")[:k]
            r = ii * len(embedding_sets) + mi
            if mi == 0:
                axes[r, 0].axis("on")
                _thumb(axes[r, 0], paths[item], frame=QUERY, label="query")
            _row_title(axes[r, 1], _wrap(model_label(label) or str(label), 18))
            for j, other in enumerate(near):
                axes[r, j + 2].axis("on")
                _thumb(axes[r, j + 2], paths[other], label=f"{sims[other]:.2f}")
    fig.subplots_adjust(top=1 - 0.8 / (rows * 1.15), hspace=0.35)
    fig.suptitle("Most similar items under each model (blue frame: the sample item; number: cosine similarity, "
                 "1 = most similar)", fontsize=9)
    return save_figure(fig, path)


#: Neighbours of each point in the UMAP graph; a map needs more points than this.
UMAP_NEIGHBOURS = 15
#: Layout epochs of a map: umap-learn's own choice for data sets of 10,000 points or more (it
#: takes 500 below). 3,000 H&M points of 1,280-d Lite0 features (2 cores, numba compiled): 2.3 s at
#: 200 epochs against 4.9 s at 500, trustworthiness of the 15 nearest neighbours (scikit-learn) 0.955
#: against 0.959.
UMAP_EPOCHS = 200


def umap_points(n_items: int, max_points: int) -> int:
    """Points of a UMAP map: ``min(max_points, n_items)``.

    Raises:
        PartSkipped: ``max_points`` is 0 (the maps are switched off), or there would be no more
            points than :data:`UMAP_NEIGHBOURS`.
    """
    if max_points <= 0:
        raise PartSkipped("umap_points is 0, which switches the maps off")
    n = min(max_points, n_items)
    if n <= UMAP_NEIGHBOURS:
        raise PartSkipped(f"a UMAP map needs more points than its {UMAP_NEIGHBOURS} neighbours per point, and "
                          f"there are {n}")
    return n


def umap_coordinates(embeddings: np.ndarray, max_points: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D UMAP (cosine metric) of a seeded sample of rows: (row indices ``(m,)``, coordinates
    ``(m, 2) float32``). Needs ``umap-learn``.

    Raises:
        PartSkipped: too few rows, or ``max_points`` 0 (:func:`umap_points`).
    """
    import umap

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), size=umap_points(len(embeddings), max_points), replace=False))
    x = np.nan_to_num(embeddings[rows])
    # n_jobs=1: what a seeded UMAP runs with anyway (umap-learn sets it and warns otherwise)
    kw = dict(n_components=2, random_state=seed, n_neighbors=UMAP_NEIGHBOURS, min_dist=0.1, n_epochs=UMAP_EPOCHS,
              n_jobs=1)
    if len(rows) < UMAP_EXACT_BELOW:
        # umap-learn finds the neighbours of fewer than 4,096 points exactly, through scikit-learn's
        # pairwise_distances with its numba cosine as a Python callable: 9M calls, 26 s for 3,000
        # points. The same exact cosine distances as one matrix product take milliseconds.
        with warnings.catch_warnings():  # "inverse_transform will be unavailable": never used here
            warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)
            return rows, umap.UMAP(metric="precomputed", **kw).fit_transform(cosine_distances(x)).astype(np.float32)
    return rows, umap.UMAP(metric="cosine", **kw).fit_transform(x).astype(np.float32)


#: umap-learn computes exact neighbours below this many points (its small-data threshold) and
#: approximate ones (NN-descent) from it on.
UMAP_EXACT_BELOW = 4096


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """Cosine distances ``1 - cos`` between the rows of ``x`` ``(m, d)``: ``(m, m) float32``, 0 on
    the diagonal, clipped to [0, 2]. A zero row is at distance 1 from every non-zero row and 0 from
    another zero row, as in umap-learn's ``cosine`` (``umap.distances.cosine``)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    xn = x / np.where(zero, 1.0, norms)[:, None]
    d = np.clip(1.0 - xn @ xn.T, 0.0, 2.0)
    d[zero, :] = 1.0
    d[:, zero] = 1.0
    d[np.ix_(zero, zero)] = 0.0
    np.fill_diagonal(d, 0.0)
    return d.astype(np.float32)


def umap_map(cat, embedding_sets: dict, color: str = "product_group_name", max_points: int = 4000,
             n_thumbs: int = 12, seed: int = 0, path=None, coordinates=None, thumbnails=None):
    """UMAP maps of each model's embeddings side by side, coloured by ``cat.items[color]`` (its 8
    commonest values, the rest grey), with thumbnails for ``n_thumbs`` sample points.

    The coordinates computed here are the only UMAP of the run: with ``coordinates`` (a
    ``.parquet`` path) they are saved as a tidy table (:func:`visrec_utils.reports.hover_map.coordinates_table`:
    model, item_id, x, y, the colouring column and the hover columns), from which the report's
    interactive map is drawn (:func:`visrec_utils.reports.hover_map.hover_map_html`); with
    ``thumbnails`` (a ``.parquet`` path), each mapped item's photo as a small JPEG
    (:func:`visrec_utils.reports.hover_map.thumbnails_table`, 64 px). Both are written atomically.

    Raises:
        PartSkipped: ``max_points`` 0, too few items (:func:`umap_points`), or no embedding set.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from ..features.images import ImageError

    umap_points(len(cat.items), max_points)
    if not embedding_sets:
        raise PartSkipped("there is no ImageNet model's frozen embedding set to map")
    plt = pyplot()
    labels = cat.items[color].astype(str) if color in cat.items else pd.Series(["all"] * len(cat.items))
    common = labels.value_counts().index[:8].tolist()
    fig, axes = plt.subplots(1, len(embedding_sets), figsize=(6 * len(embedding_sets), 5.5), squeeze=False)
    palette = plt.get_cmap("tab10")
    maps = []
    for ax, (name, emb) in zip(axes[0], embedding_sets.items()):
        rows, xy = umap_coordinates(emb, max_points=max_points, seed=seed)
        maps.append((name, rows, xy))
        lab = labels.to_numpy()[rows]
        ax.scatter(*xy[~np.isin(lab, common)].T, s=3, c="#cccccc", label="other")
        for i, value in enumerate(common):
            sel = lab == value
            ax.scatter(*xy[sel].T, s=3, color=palette(i % 10), label=value)
        rng = np.random.default_rng(seed)
        for j in rng.choice(len(rows), size=min(n_thumbs, len(rows)), replace=False):
            try:
                im = thumbnail(cat.items["image_path"].iloc[rows[j]], 48)
                ax.add_artist(AnnotationBbox(OffsetImage(im, zoom=0.6), xy[j], frameon=False))
            except ImageError:
                continue
        ax.set_title(f"{model_label(name) or name} ({len(rows):,} items)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    legend_outside(axes[0, -1], *axes[0, 0].get_legend_handles_labels(), title=color, markerscale=3)
    fig.suptitle(f"UMAP of the embeddings (cosine), coloured by {color}", fontsize=11)
    if coordinates is not None or thumbnails is not None:
        from . import hover_map
        from ..core.store import atomic_write

        if coordinates is not None:
            table = hover_map.coordinates_table(cat, maps, color)
            atomic_write(coordinates, lambda tmp: table.to_parquet(tmp, index=False))
        if thumbnails is not None:
            rows = np.unique(np.concatenate([r for _, r, _ in maps]))
            thumbs = hover_map.thumbnails_table(cat, rows)
            atomic_write(thumbnails, lambda tmp: thumbs.to_parquet(tmp, index=False))
    return save_figure(fig, path)


def main_sets(embedding_sets: dict, strategy: str = "frozen", limit: int = 4, exclude=()) -> dict:
    """The first ``limit`` sets of one strategy, ``{model: (n_items, dim)}``, without the models in
    ``exclude`` (the study passes its controls and layer variants, read from ``results/models.csv``
    and the embedding-set manifest), for pictures that compare models."""
    out = {}
    for (model, strat), emb in embedding_sets.items():
        if strat == strategy and model not in set(exclude):
            out[model] = emb
    return dict(list(out.items())[:limit])


def picture_sets(embedding_sets: dict, n_items: int, limit: int = 4, strategy: str = "frozen", exclude=()) -> dict:
    """:func:`main_sets` for a picture that compares models' nearest items.

    Raises:
        PartSkipped: no ImageNet model's set of that strategy (controls and layer variants are
            not pictured), or fewer than 2 items (no other item to show).
    """
    sets = main_sets(embedding_sets, strategy, limit, exclude)
    if not sets:
        raise PartSkipped(f"there is no ImageNet model's {strategy} embedding set to picture (controls and layer "
                          "variants are not pictured)")
    if n_items < 2:
        raise PartSkipped(f"the catalogue has {n_items} item, and a picture of similar items needs at least 2")
    return sets
