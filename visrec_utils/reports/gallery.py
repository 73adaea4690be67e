"""Pictures where people would rather look than read: recommendation galleries, nearest-neighbour
strips and UMAP maps of the embeddings. Each figure is saved as PNG and returned for display.

* :func:`recommendation_gallery`: per sample test user, their profile images, then each model's
  top 10 (VisRank-max over the candidates the evaluation uses), bought test items framed green;
  two or more models side by side.
* :func:`neighbour_strips`: per sample item, its most similar items (cosine) under each model.
* :func:`umap_map`: a 2-D UMAP (McInnes, Healy & Melville 2018; ``umap-learn``) of a model's
  embeddings, coloured by a metadata column, with thumbnails for a sample of points.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .plots import pyplot, save_figure
from ..core.skips import PartSkipped
from ..core.linalg import l2_normalize
from ..evaluation.recommenders import VisRank


def _wrap(label: str, width: int = 12) -> str:
    return "\n".join(label[i:i + width] for i in range(0, len(label), width))


def _thumb(ax, path, size: int = 96, frame: str | None = None, label: str = ""):
    from ..features.images import ImageError, load_image

    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(frame is not None)
        if frame:
            side.set_edgecolor(frame)
            side.set_linewidth(4)
    try:
        im = load_image(path, min_side=size)
        im.thumbnail((size, size))
        ax.imshow(im)
    except ImageError as e:
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=6)
        label = label or e.reason[:20]
    if label:
        ax.set_title(label, fontsize=6)


def recommendation_gallery(cat, split, embedding_sets: dict, n_users: int = 4, k: int = 10, n_profile: int = 5,
                           seed: int = 0, path=None):
    """Profile images and each model's top ``k`` for ``n_users`` sample test users.

    Args:
        cat: catalogue (``items.image_path`` in item order).
        split: the evaluation's split (its candidates and truth).
        embedding_sets: ``{label: (n_items, dim) float32}``, two or more to compare.
        n_users: users drawn (seeded) among those with a truth item.
        n_profile: profile images shown (the most recent first when the split keeps order).

    Returns:
        The matplotlib figure: one row per (user, model), the first row of each user starting
        with their profile.

    Raises:
        PartSkipped: the split has no test user, or ``embedding_sets`` is empty.
    """
    if split.n_users == 0:
        raise PartSkipped(f"the gallery shows test users' recommendations, and {split.protocol} has no test user")
    if not embedding_sets:
        raise PartSkipped("the gallery compares embedding sets, and this study has none")
    plt = pyplot()
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(split.n_users, size=min(n_users, split.n_users), replace=False))
    paths = cat.items["image_path"].tolist()
    masks = split.candidate_masks(users)
    tops = {}
    for label, emb in embedding_sets.items():
        s = VisRank("max").fit(split, emb).score(users)
        s[~masks] = -np.inf
        tops[label] = np.argsort(-s, axis=1, kind="stable")[:, :k]
    cols = n_profile + 1 + k
    rows = len(users) * len(embedding_sets)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.15), squeeze=False)
    for a in axes.ravel():
        a.axis("off")
    for ui, u in enumerate(users):
        truth = set(split.truth[u].tolist())
        for mi, (label, top) in enumerate(tops.items()):
            r = ui * len(embedding_sets) + mi
            if mi == 0:
                for j, item in enumerate(split.profiles[u][-n_profile:]):
                    axes[r, j].axis("on")
                    shown = min(n_profile, len(split.profiles[u]))
                    _thumb(axes[r, j], paths[item], label=f"profile ({shown} of {len(split.profiles[u])})" if j == 0 else "")
            axes[r, n_profile].text(0.5, 0.5, _wrap(label) + "\n->", ha="center", va="center", fontsize=6)
            for j, item in enumerate(top[ui]):
                ax = axes[r, n_profile + 1 + j]
                ax.axis("on")
                hit = int(item) in truth
                _thumb(ax, paths[item], frame="#2ca02c" if hit else None, label=("bought" if hit else f"#{j + 1}"))
    fig.suptitle(f"Top {k} by VisRank-max for {len(users)} sample test users (green frame: bought at the test "
                 "point)", fontsize=9)
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
    fig, axes = plt.subplots(rows, k + 2, figsize=((k + 2) * 1.0, rows * 1.15), squeeze=False)
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
                _thumb(axes[r, 0], paths[item], frame="#1f77b4", label="query")
            axes[r, 1].text(0.5, 0.5, _wrap(label) + "\n->", ha="center", va="center", fontsize=6)
            for j, other in enumerate(near):
                axes[r, j + 2].axis("on")
                _thumb(axes[r, j + 2], paths[other], label=f"{sims[other]:.2f}")
    fig.suptitle("Nearest neighbours by cosine similarity (numbers: cosine)", fontsize=9)
    return save_figure(fig, path)


#: Neighbours of each point in the UMAP graph; a map needs more points than this.
UMAP_NEIGHBOURS = 15


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
    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=UMAP_NEIGHBOURS, min_dist=0.1)
    return rows, reducer.fit_transform(np.nan_to_num(embeddings[rows])).astype(np.float32)


def umap_map(cat, embedding_sets: dict, color: str = "product_group_name", max_points: int = 4000,
             n_thumbs: int = 12, seed: int = 0, path=None):
    """UMAP maps of each model's embeddings side by side, coloured by ``cat.items[color]`` (its 8
    commonest values, the rest grey), with thumbnails for ``n_thumbs`` sample points.

    Raises:
        PartSkipped: ``max_points`` 0, too few items (:func:`umap_points`), or no embedding set.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from ..features.images import ImageError, load_image

    umap_points(len(cat.items), max_points)
    if not embedding_sets:
        raise PartSkipped("there is no ImageNet model's frozen embedding set to map")
    plt = pyplot()
    labels = cat.items[color].astype(str) if color in cat.items else pd.Series(["all"] * len(cat.items))
    common = labels.value_counts().index[:8].tolist()
    fig, axes = plt.subplots(1, len(embedding_sets), figsize=(6 * len(embedding_sets), 5.5), squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, (name, emb) in zip(axes[0], embedding_sets.items()):
        rows, xy = umap_coordinates(emb, max_points=max_points, seed=seed)
        lab = labels.to_numpy()[rows]
        ax.scatter(*xy[~np.isin(lab, common)].T, s=3, c="#cccccc", label="other")
        for i, value in enumerate(common):
            sel = lab == value
            ax.scatter(*xy[sel].T, s=3, color=palette(i % 10), label=value)
        rng = np.random.default_rng(seed)
        for j in rng.choice(len(rows), size=min(n_thumbs, len(rows)), replace=False):
            try:
                im = load_image(cat.items["image_path"].iloc[rows[j]], min_side=48)
                im.thumbnail((48, 48))
                ax.add_artist(AnnotationBbox(OffsetImage(np.asarray(im), zoom=0.6), xy[j], frameon=False))
            except ImageError:
                continue
        ax.set_title(f"{name} ({len(rows):,} items)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, markerscale=3, loc="best")
    fig.suptitle(f"UMAP of the embeddings (cosine), coloured by {color}", fontsize=11)
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
