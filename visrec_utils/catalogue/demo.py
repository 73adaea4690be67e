"""A generated demo catalogue (SYNTHETIC), so a user with no data can see the whole study run.

Items are procedurally drawn images: a coloured shape (circle, square, triangle or stripes) of a
given hue on a light background. By default (``taste="visual"``) users have a hidden visual taste
(a preferred hue and shape); each buys, over dated baskets, items drawn with probability
proportional to how close an item is to that taste. A visual recommender can therefore beat random
here, by construction. With ``taste="none"`` every purchase is drawn by item popularity alone
(:func:`popularity_weights`), ignoring the images: a catalogue where images carry no taste signal,
so popularity should beat every visual recommender. The folder is written in the generic layout
with a ``SYNTHETIC`` marker file, and every report says the data is synthetic.
"""
from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
import pandas as pd

SHAPES = ("circle", "square", "triangle", "stripes")
MARKER = "SYNTHETIC"
#: What drives the generated purchases (``make_demo_catalogue(taste=...)``).
TASTES = ("visual", "none")


def popularity_weights(n_items: int, seed: int = 0, exponent: float = 1.0) -> np.ndarray:
    """Purchase probabilities of a catalogue where only popularity matters (``taste="none"``).

    Zipf's law over a random order of the items: the item of popularity rank ``r`` (1 = most
    bought) has weight ``r ** -exponent``; the order is drawn from its own generator seeded by
    ``(seed, 1)``, so it does not depend on the images or on the users' hidden tastes.

    Returns:
        ``(n_items,) float64``, non-negative, summing to 1.
    """
    rank = np.random.default_rng([seed, 1]).permutation(n_items) + 1
    w = rank.astype(float) ** -exponent
    return w / w.sum()


def _draw(hue: float, shape: str, size: int, rng) -> "Image.Image":
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(215, 250, size=3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.85))
    m = int(size * rng.uniform(0.12, 0.22))
    box = (m, m, size - m, size - m)
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=rgb)
    else:
        w = max(3, size // 10)
        for x in range(m, size - m, 2 * w):
            d.rectangle((x, m, x + w, size - m), fill=rgb)
    return im


def make_demo_catalogue(folder: str | os.PathLike, n_users: int = 150, n_items: int = 400,
                        image_size: int = 96, seed: int = 0, taste: str = "visual") -> Path:
    """Write a synthetic catalogue in the generic layout and return its folder.

    Args:
        folder: where to write (created; an existing demo there is reused when its marker says
            it was made with the same arguments).
        n_users, n_items: size of the catalogue.
        image_size: side of the square JPEG images, in pixels.
        seed: random seed (same seed, same catalogue).
        taste: what drives each purchase (:data:`TASTES`): ``"visual"`` (default), a user's
            hidden preferred hue and shape; ``"none"``, the item's popularity alone
            (:func:`popularity_weights`), the same for every user and blind to the images. The
            images, baskets and dates are drawn the same way in both.

    Returns:
        The folder, holding ``interactions.csv`` (user_id, item_id, timestamp as a date),
        ``items.csv`` (item_id, hue, shape), ``images/<item_id>.jpg`` and ``SYNTHETIC``.

    Raises:
        ValueError: ``taste`` is not one of :data:`TASTES`.
    """
    if taste not in TASTES:
        raise ValueError(f"taste={taste!r} is not a demo taste; use one of {', '.join(map(repr, TASTES))}")
    folder = Path(folder)
    stamp = f"synthetic demo catalogue made by visrec_utils.catalogue.demo: n_users={n_users} n_items={n_items} " \
            f"image_size={image_size} seed={seed}" + (f" taste={taste}" if taste != "visual" else "") + "\n"
    if (folder / MARKER).is_file() and (folder / MARKER).read_text() == stamp:
        return folder
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    ids = [f"demo{i:05d}" for i in range(n_items)]
    hue = rng.random(n_items)
    shape = rng.integers(0, len(SHAPES), n_items)
    for i, iid in enumerate(ids):
        _draw(hue[i], SHAPES[shape[i]], image_size, rng).save(folder / "images" / f"{iid}.jpg", quality=90)
    pd.DataFrame({"item_id": ids, "hue": hue.round(4), "shape": [SHAPES[s] for s in shape]}).to_csv(
        folder / "items.csv", index=False)

    taste_hue = rng.random(n_users)
    taste_shape = rng.integers(0, len(SHAPES), n_users)
    popular = popularity_weights(n_items, seed) if taste == "none" else None
    start = np.datetime64("2023-01-01")
    rows = []
    for u in range(n_users):
        if popular is None:
            dh = np.abs(hue - taste_hue[u])
            dh = np.minimum(dh, 1 - dh)
            w = np.exp(-dh / 0.06) * np.where(shape == taste_shape[u], 3.0, 0.3)
        else:  # the hidden tastes are still drawn (same random stream), but purchases ignore them
            w = popular
        n_baskets = 1 + rng.poisson(3)
        days = np.sort(rng.choice(730, size=n_baskets, replace=False))
        n_buy = rng.integers(1, 4, size=n_baskets)
        picks = rng.choice(n_items, size=min(n_items, int(n_buy.sum())), replace=False, p=w / w.sum())
        k = 0
        for day, nb in zip(days, n_buy):
            for _ in range(nb):
                if k < len(picks):
                    rows.append((f"user{u:04d}", ids[picks[k]], str(start + day)))
                    k += 1
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(folder / "interactions.csv", index=False)
    (folder / MARKER).write_text(stamp)
    return folder


def is_synthetic(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a generated demo catalogue."""
    return (Path(folder) / MARKER).is_file()
