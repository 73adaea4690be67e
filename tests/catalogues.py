"""Builders of small catalogues in each layout, written from scratch by the tests."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

BAD_IMAGES = {  # file name -> expected reason fragment
    "bad_empty.jpg": "empty file",
    "bad_text.png": "not an image",
    "bad_trunc.jpg": "truncated",
}


def _tile(rng, size=64):
    a = np.zeros((size, size, 3), np.uint8)
    a[:] = rng.integers(0, 255, 3)
    a[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rng.integers(0, 255, 3)
    return Image.fromarray(a)


def write_generic(folder: Path, n_users=40, n_items=80, seed=0, with_bad=True) -> dict:
    """A generic-layout catalogue with custom column names (visrec.json), Unix-second times,
    mixed image formats and modes, deliberate row problems and (optionally) bad image files.

    Returns what the reader should report.
    """
    rng = np.random.default_rng(seed)
    img = folder / "pics"
    img.mkdir(parents=True, exist_ok=True)
    ids = [f"sku{i:03d}" for i in range(n_items)]
    modes = ["RGB", "L", "CMYK", "RGBA", "P"]
    for i, iid in enumerate(ids):
        im = _tile(rng).convert(modes[i % len(modes)])
        ext = ["png", "jpg", "webp", "bmp"][(i // 5) % 4] if im.mode != "CMYK" else "jpg"
        if im.mode in ("RGBA", "P") and ext in ("jpg", "bmp"):
            ext = "png"
        im.save(img / f"{iid}.{ext}")
    bad_ids = []
    if with_bad:
        for name in BAD_IMAGES:
            iid = name.split(".")[0]
            bad_ids.append(iid)
            ids.append(iid)
        (img / "bad_empty.jpg").write_bytes(b"")
        (img / "bad_text.png").write_text("this is not a picture")
        buf = io.BytesIO()
        _tile(rng, 256).save(buf, "JPEG")
        (img / "bad_trunc.jpg").write_bytes(buf.getvalue()[:500])
    (img / "orphan_image.png").write_bytes((img / f"{ids[0]}.png").read_bytes() if (img / f"{ids[0]}.png").exists() else b"")
    t0 = 1_600_000_000
    rows = []
    for u in range(n_users):
        for b in range(int(rng.integers(2, 5))):
            ts = t0 + int(rng.integers(0, 3e7))
            for iid in rng.choice(ids, size=int(rng.integers(1, 4)), replace=False):
                rows.append((f"cust{u}", iid, ts, 1))
    df = pd.DataFrame(rows, columns=["customer", "product", "bought_at", "qty"])
    extra = pd.DataFrame([
        ("", "sku001", t0, 1),                 # empty user id
        ("cust0", "sku002", "yesterday", 1),   # unparseable time
        ("cust1", "sku999", t0 + 5, 1),        # item with no image
    ], columns=df.columns)
    df = pd.concat([df, df.iloc[[0, 1]], extra], ignore_index=True)  # two exact duplicates
    df.to_csv(folder / "purchases.csv", index=False)
    pd.DataFrame({"product": ids[:n_items], "colour": rng.choice(["red", "blue"], n_items)}).to_csv(
        folder / "products.csv", index=False)
    (folder / "visrec.json").write_text(json.dumps({
        "interactions": "purchases.csv", "user_col": "customer", "item_col": "product",
        "time_col": "bought_at", "weight_col": "qty", "items": "products.csv",
        "image_pattern": "pics/{item_id}.*", "name": "generic-test"}))
    return {"bad_ids": bad_ids, "n_dupes": 2, "rows": len(df)}


def write_ugallery(folder: Path, n_users=40, n_items=70, dim=2048, seed=0) -> dict:
    """A UGallery-layout folder: purchases, inventory and an object array of embeddings."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"art{i:04d}" for i in range(n_items)]
    artists = [f"artist{i % 9}" for i in range(n_items)]
    centers = rng.normal(size=(9, dim))
    vecs = np.stack([centers[i % 9] + 0.5 * rng.normal(size=dim) for i in range(n_items)]).astype(np.float32)
    emb = np.empty((n_items, 2), dtype=object)
    for i in range(n_items):
        emb[i, 0], emb[i, 1] = ids[i], vecs[i]
    np.save(folder / "ugallery_resnet50_embeddings.npy", emb, allow_pickle=True)
    t0 = 1_500_000_000
    pd.DataFrame({"artwork_id_hash": ids, "artist_id_hash": artists,
                  "upload_timestamp": t0 + rng.integers(0, 1e6, n_items)}).to_csv(folder / "ugallery_inventory.csv", index=False)
    rows = []
    for u in range(n_users):
        fav = rng.integers(0, 9)
        pool = [i for i in range(n_items) if i % 9 == fav]
        for b in range(int(rng.integers(2, 4))):
            ts = t0 + 2_000_000 + int(rng.integers(0, 3e7))
            for i in rng.choice(pool, size=int(rng.integers(1, 3)), replace=False):
                rows.append((f"u{u:03d}", ts, ids[i]))
    pd.DataFrame(rows, columns=["user_id_hash", "purchase_timestamp", "artwork_id_hash"]).to_csv(
        folder / "ugallery_purchases.csv", index=False)
    return {"n_items": n_items, "dim": dim}


EPOCH_FACTOR = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def hm_rows(hm_dir: Path, n_users=40) -> pd.DataFrame:
    """The purchases of the first ``n_users`` customers (sorted ids) of the real H&M sample:
    ``user_id, item_id, timestamp`` (Unix seconds of the day, int64), ``weight`` (the price),
    ``image_path`` (absolute path of the article's real image)."""
    tx = pd.read_csv(hm_dir / "transactions_train.csv", dtype=str)
    users = sorted(tx["customer_id"].unique())[:n_users]
    tx = tx[tx["customer_id"].isin(users)]
    secs = (pd.to_datetime(tx["t_dat"]).astype("datetime64[s]").astype("int64")).to_numpy()
    return pd.DataFrame({"user_id": tx["customer_id"].to_numpy(), "item_id": tx["article_id"].to_numpy(),
                         "timestamp": secs, "weight": tx["price"].to_numpy(),
                         "image_path": [str(hm_dir / "images" / a[:3] / f"{a}.jpg") for a in tx["article_id"]]})


def write_hm_generic(folder: Path, hm_dir: Path, n_users=40, unit="s", sep=",", decimal=".", encoding="utf-8",
                     sep_line=False) -> pd.DataFrame:
    """Real H&M purchases written in the generic layout as a spreadsheet program of some locale would.

    ``interactions.csv`` (``user_id, item_id, timestamp, weight``; timestamp = Unix seconds
    times the factor of ``unit``; weight with ``decimal`` as separator) and ``items.csv``
    (``item_id, image_path``: absolute paths of the real images), both with delimiter ``sep``
    and ``encoding``; ``sep_line`` writes Excel's ``sep=<sep>`` first line. No image is copied.

    Returns:
        the rows written (:func:`hm_rows`, timestamps in seconds).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = hm_rows(hm_dir, n_users)
    out = rows[["user_id", "item_id", "timestamp", "weight"]].copy()
    out["timestamp"] = [str(int(t) * EPOCH_FACTOR[unit]) for t in out["timestamp"]]
    out["weight"] = out["weight"].str.replace(".", decimal, regex=False)
    items = rows[["item_id", "image_path"]].drop_duplicates("item_id")
    for name, frame in (("interactions.csv", out), ("items.csv", items)):
        text = frame.to_csv(sep=sep, index=False)
        (folder / name).write_bytes(((f"sep={sep}\n" if sep_line else "") + text).encode(encoding))
    return rows


def write_csv_catalogue(folder: Path, text: str, item_ids, encoding="utf-8", options: dict | None = None) -> Path:
    """A generic-layout folder from the literal text of ``interactions.csv`` (written in ``encoding``):
    a 4x4 PNG ``images/<item_id>.png`` per item id, and ``visrec.json`` when ``options`` are given."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for k, iid in enumerate(item_ids):
        Image.new("RGB", (4, 4), (40 * k % 255, 0, 0)).save(folder / "images" / f"{iid}.png")
    (folder / "interactions.csv").write_bytes(text.encode(encoding))
    if options is not None:
        (folder / "visrec.json").write_text(json.dumps(options))
    return folder
