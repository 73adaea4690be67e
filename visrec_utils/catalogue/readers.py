"""Catalogue readers: a generic layout, the H&M Kaggle preset, and the UGallery release.

Every reader validates before any model runs and records what it found in a *validation
report* (one row per check: ``check, count, action, examples, what_to_do``). A problem is
either a clear :class:`~visrec_utils.catalogue.data.DataError` that says what to do, or a listed, counted
skip; the study goes on with what is valid and says what it dropped.

Layouts (detected by :func:`load_catalogue`):

* **generic**: an interactions table (CSV or Parquet; columns named by the user, defaults
  ``user_id, item_id, timestamp``, optional ``weight``), images found by a pattern
  (``images/{item_id}.*``: any extension) or an ``image_path`` column of an items table, and
  an optional items table with metadata. Options come from arguments or a ``visrec.json`` file
  in the folder. CSV dialect (delimiter, decimal separator, quoting, encoding) and the time
  format or epoch unit are detected (:mod:`visrec_utils.catalogue.tables`) and can be set.
* **H&M** (``transactions_train.csv``): a preset of the generic reader.
* **UGallery** (``ugallery_purchases.csv``): purchases, an inventory with upload times and
  artists, and precomputed ResNet50 embeddings instead of images.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import tables
from .data import LAYOUTS_HELP, Catalogue, DataError, resolve_data_dir

N_EXAMPLES = 5


@dataclass(frozen=True)
class CatalogueSpec:
    """How to read a generic catalogue folder (every field can be set in ``visrec.json``).

    Attributes:
        interactions: interactions file, CSV or Parquet, relative to the folder.
        user_col, item_col, time_col: column names in the interactions table.
        weight_col: optional weight column (kept as ``weight``).
        time_format: strptime format; None detects (ISO dates/datetimes, day-first or month-first
            dates, or numbers as Unix epochs; see :func:`visrec_utils.catalogue.tables.parse_times`).
        time_unit: unit of numeric times, ``"s"``, ``"ms"``, ``"us"``, ``"ns"`` (Unix epoch) or
            ``"excel"`` (Excel serial days); None detects it from the magnitudes.
        basket_by_day: a basket = a user's purchases on one day (True) or at one timestamp (False).
        items: optional items table (CSV or Parquet) with ``item_col`` and metadata columns.
        image_col: column of the items table holding image paths (relative to the folder).
        image_pattern: image path by item id, ``{item_id}`` formatted (format specs work, e.g.
            ``{item_id:.3}`` = first 3 characters); a trailing ``.*`` accepts any extension.
        id_zfill: left-pad item ids with zeros to this width (H&M ids are 10 digits).
        duplicates: ``"drop"`` exact duplicate rows, or ``"keep"`` them (rows are units).
        name: label of the catalogue in reports.
        csv_sep, csv_decimal, csv_quotechar, csv_encoding: how CSV files (interactions and items)
            are written, e.g. ``";"``, ``","``, ``'"'``, ``"cp1252"``; None detects each
            (:func:`visrec_utils.catalogue.tables.read_csv_table`).
    """

    interactions: str = "interactions.csv"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    weight_col: str | None = None
    time_format: str | None = None
    basket_by_day: bool = False
    items: str | None = "items.csv"
    image_col: str = "image_path"
    image_pattern: str = "images/{item_id}.*"
    id_zfill: int | None = None
    duplicates: str = "drop"
    name: str | None = None
    time_unit: str | None = None
    csv_sep: str | None = None
    csv_decimal: str | None = None
    csv_quotechar: str | None = None
    csv_encoding: str | None = None


HM_SPEC = CatalogueSpec(
    interactions="transactions_train.csv", user_col="customer_id", item_col="article_id",
    time_col="t_dat", time_format="%Y-%m-%d", basket_by_day=True, items="articles.csv",
    image_col="image_path", image_pattern="images/{item_id:.3}/{item_id}.jpg", id_zfill=10,
    duplicates="keep",
)


class Report:
    """Collects validation rows; ``frame()`` gives the tidy report."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, check: str, count: int, action: str, examples=(), what_to_do: str = ""):
        self.rows.append({"check": check, "count": int(count), "action": action,
                          "examples": "; ".join(map(str, list(examples)[:N_EXAMPLES])), "what_to_do": what_to_do})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["check", "count", "action", "examples", "what_to_do"])


_TYPE_RULES = {  # annotation of a CatalogueSpec field -> (check, what the value must be)
    "str": (lambda v: isinstance(v, str), "text"),
    "str | None": (lambda v: v is None or isinstance(v, str), "text or null"),
    "bool": (lambda v: isinstance(v, bool), "true or false (a JSON boolean, without quotes)"),
    "int | None": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
                   "a positive whole number (without quotes) or null"),
}


def _check_types(spec: CatalogueSpec, where: Path) -> None:
    """Every reader option has the type its field declares, and ``duplicates`` is drop or keep.

    Raises:
        DataError: naming the option, the value given and what it must be.
    """
    for f in fields(CatalogueSpec):
        value = getattr(spec, f.name)
        check, must = _TYPE_RULES[str(f.type)]
        if not check(value):
            raise DataError(f"Reader option {f.name}={value!r} (e.g. in {where}) must be {must}.")
    if spec.duplicates not in ("drop", "keep"):
        raise DataError(f"Reader option duplicates={spec.duplicates!r} (e.g. in {where}) must be 'drop' (exact "
                        "duplicate rows removed) or 'keep' (each row is one unit).")


def _read_table(path: Path, what: str, spec: CatalogueSpec | None = None, rep: Report | None = None):
    """Parquet or CSV (dialect detected unless set in ``spec``) -> (frame, decimal separator, first data line).

    The dialect used is added to ``rep`` as a row ``CSV dialect of <file>``.
    """
    if not path.is_file():
        raise DataError(f"{what} file {path} not found. {LAYOUTS_HELP}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path), ".", 2
    spec = spec or CatalogueSpec()
    df, dialect = tables.read_csv_table(path, spec.csv_sep, spec.csv_decimal, spec.csv_quotechar, spec.csv_encoding)
    if rep is not None:
        rep.add(f"CSV dialect of {path.name}", len(df), dialect.describe(),
                what_to_do="set csv_sep, csv_decimal, csv_quotechar or csv_encoding in visrec.json if this is wrong")
    return df, dialect.decimal, 2 + dialect.skiprows


def _parse_times(raw: pd.Series, fmt: str | None = None, unit: str | None = None, decimal: str = ".") -> pd.Series:
    """Times in any export form -> datetime64[ns] (naive UTC), NaT if not a time (:func:`tables.parse_times`)."""
    return tables.parse_times(raw, fmt, unit, decimal)[0]


def _clean_ids(s: pd.Series, zfill: int | None) -> pd.Series:
    s = s.astype("string").str.strip()
    if zfill:
        s = s.where(s.isna(), s.str.zfill(zfill))
    return s


def _image_finder(root: Path, pattern: str):
    """item_id -> existing image path (or None); directory listings are cached."""
    listings: dict[Path, dict[str, str]] = {}

    def find(item_id: str):
        rel = pattern.format(item_id=item_id)
        p = root / rel
        if not rel.endswith(".*"):
            return str(p) if p.is_file() else None
        parent, stem = p.parent, p.name[:-2]
        if parent not in listings:
            listings[parent] = {}
            if parent.is_dir():
                for f in sorted(os.listdir(parent)):
                    listings[parent].setdefault(os.path.splitext(f)[0], f)
        f = listings[parent].get(stem)
        return str(parent / f) if f else None

    return find


def read_generic(folder: str | os.PathLike, spec: CatalogueSpec | None = None, **overrides) -> Catalogue:
    """Read and validate a catalogue folder.

    Args:
        folder: the catalogue folder.
        spec: reading options (default: ``visrec.json`` in the folder if present, else defaults).
        **overrides: fields of :class:`CatalogueSpec` to change.

    Returns:
        Catalogue whose ``report`` lists every check with counts and first offenders.

    Raises:
        DataError: missing file or column (names the columns found and the option to set), a bad
            option value, a CSV that cannot be parsed or decoded (file, line and the option that
            fixes it), ids in scientific notation, no readable time, or nothing valid left.
    """
    root = Path(folder)
    valid = [f.name for f in fields(CatalogueSpec)]
    if spec is None:
        cfg = root / "visrec.json"
        try:
            opts = json.loads(cfg.read_text(encoding="utf-8-sig")) if cfg.is_file() else {}
        except ValueError as e:
            raise DataError(f"{cfg} is not valid JSON (line {getattr(e, 'lineno', '?')}: {getattr(e, 'msg', e)}); "
                            'write it as an object, e.g. {"user_col": "customer"}') from None
        if not isinstance(opts, dict):
            raise DataError(f"{cfg} must hold a JSON object of reader options (e.g. {{\"user_col\": \"customer\"}}), "
                            f"not a {type(opts).__name__}")
        bad = sorted(set(opts) - set(valid))
        if bad:
            raise DataError(f"{cfg}: unknown reader option(s) {bad}; valid keys are {valid}.")
        spec = CatalogueSpec(**opts)
    unknown = set(overrides) - set(valid)
    if unknown:
        raise DataError(f"Unknown reader option(s) {sorted(unknown)}; valid: {valid}")
    spec = replace(spec, **overrides)
    _check_types(spec, root / "visrec.json")
    tables.check_options(spec.csv_sep, spec.csv_decimal, spec.csv_quotechar, spec.csv_encoding,
                         spec.time_unit, spec.time_format)
    rep = Report()
    tx_path = root / spec.interactions
    tx, decimal, first_line = _read_table(tx_path, "interactions", spec, rep)
    need = {"user_col": spec.user_col, "item_col": spec.item_col, "time_col": spec.time_col}
    if spec.weight_col:
        need["weight_col"] = spec.weight_col
    missing = {k: v for k, v in need.items() if v not in tx.columns}
    if missing:
        read_as = f" (read as: {rep.rows[0]['action']})" if rep.rows else ""
        raise DataError(f"{tx_path} has no column(s) {sorted(missing.values())} (columns found: {list(tx.columns)}){read_as}. "
                        f"Name the right ones with the reader options {sorted(missing)} (e.g. in {root / 'visrec.json'})")
    rownum = pd.Series(np.arange(first_line, len(tx) + first_line), index=tx.index)  # 1-based line in the file
    for col in (spec.user_col, spec.item_col):
        tables.check_ids(tx[col], tx_path.name, col, rownum)
    inter = pd.DataFrame({"user_id": _clean_ids(tx[spec.user_col], None),
                          "item_id": _clean_ids(tx[spec.item_col], spec.id_zfill)})
    inter["timestamp"], time_how = tables.parse_times(tx[spec.time_col], spec.time_format, spec.time_unit, decimal)
    rep.add("timestamp format", inter["timestamp"].notna().sum(), time_how,
            what_to_do="set time_unit ('s', 'ms', 'us', 'ns', 'excel') or time_format in visrec.json if this is wrong")
    if spec.weight_col:
        inter["weight"] = tables.to_number(tx[spec.weight_col], decimal)
    for extra in ("price", "sales_channel_id"):
        if extra in tx.columns and extra not in inter:
            inter[extra] = tables.to_number(tx[extra], decimal)

    empty = inter["user_id"].isna() | (inter["user_id"] == "") | inter["item_id"].isna() | (inter["item_id"] == "")
    rep.add("empty ids", empty.sum(), "rows dropped" if empty.any() else "ok",
            [f"{tx_path.name} line {n}" for n in rownum[empty]], "fill in user and item ids or remove those rows")
    bad_t = inter["timestamp"].isna() & ~empty
    rep.add("unparseable or missing timestamps", bad_t.sum(), "rows dropped" if bad_t.any() else "ok",
            [f"{tx_path.name} line {n}: {v!r}" for n, v in zip(rownum[bad_t], tx.loc[bad_t, spec.time_col])],
            f"use dates, ISO datetimes or Unix epochs (one unit per column) in '{spec.time_col}', or set "
            "time_format / time_unit")
    if bad_t.any() and bad_t.sum() == (~empty).sum():
        first = np.flatnonzero(bad_t.to_numpy())[0]
        if tx[spec.time_col].isna().all():
            raise DataError(f"No valid interaction left in {tx_path.name}: column '{spec.time_col}' is empty on every "
                            "line; fill in when each interaction happened (dates, ISO datetimes or Unix epochs), or "
                            "name the right column with time_col in visrec.json.")
        raise DataError(f"No valid interaction left in {tx_path.name}: no value of column '{spec.time_col}' could be read "
                        f"as a time (line {rownum.iloc[first]}: {tx[spec.time_col].iloc[first]!r}, read as {time_how}); set time_format "
                        "(e.g. '%d.%m.%Y %H:%M' or '%d %b %Y') or time_unit ('s', 'ms', 'us', 'ns', 'excel') in visrec.json.")
    inter = inter[~empty & ~bad_t]
    if spec.basket_by_day:
        inter["timestamp"] = inter["timestamp"].dt.floor("D")
    dup = inter.duplicated(["user_id", "item_id", "timestamp"], keep="first")
    keep_dups = spec.duplicates == "keep"
    rep.add("duplicate rows (same user, item, timestamp)", dup.sum(),
            ("kept: each row is one unit" if keep_dups else "rows dropped") if dup.any() else "ok",
            [f"{tx_path.name} line {n}" for n in rownum[inter.index[dup]]],
            "" if keep_dups else "set duplicates='keep' if repeated rows are units")
    if not keep_dups:
        inter = inter[~dup]

    # items: interacted items plus items-table items; images by column or pattern
    ids = pd.Index(inter["item_id"].unique())
    meta = None
    items_path = root / spec.items if spec.items else None
    if items_path is not None and items_path.is_file():
        meta = _read_table(items_path, "items", spec, rep)[0]
        if spec.item_col not in meta.columns:
            raise DataError(f"{items_path} has no item id column {spec.item_col!r} (columns: {list(meta.columns)}).")
        meta = meta.rename(columns={spec.item_col: "item_id"})
        meta["item_id"] = _clean_ids(meta["item_id"], spec.id_zfill)
        meta = meta.drop_duplicates("item_id")
        ids = ids.union(pd.Index(meta["item_id"].dropna()))
    items = pd.DataFrame({"item_id": np.sort(ids.to_numpy(dtype=str))})
    if meta is not None:
        items = items.merge(meta, on="item_id", how="left")
    if meta is not None and spec.image_col in meta.columns:
        rel = items[spec.image_col]
        items["image_path"] = [str(root / r) if isinstance(r, str) and (root / r).is_file() else None for r in rel]
    else:
        find = _image_finder(root, spec.image_pattern)
        items["image_path"] = [find(i) for i in items["item_id"]]
    no_img = items["image_path"].isna()
    bought = set(inter["item_id"])
    no_img_bought = no_img & items["item_id"].isin(bought)
    n_rows = inter["item_id"].isin(set(items.loc[no_img_bought, "item_id"])).sum()
    rep.add("interactions naming items with no image", n_rows,
            f"{n_rows} rows of {no_img_bought.sum()} items dropped" if n_rows else "ok",
            items.loc[no_img_bought, "item_id"], f"add the images (pattern '{spec.image_pattern}') or fix the ids")
    items = items[~no_img].reset_index(drop=True)
    inter = inter[inter["item_id"].isin(set(items["item_id"]))]
    never = ~items["item_id"].isin(bought)
    rep.add("images with no interaction", never.sum(), "kept as never-bought candidates" if never.any() else "ok",
            items.loc[never, "item_id"])
    stray = _stray_images(root, spec, set(items["item_id"]))
    if stray:
        rep.add("image files matching no item", len(stray), "ignored", stray)
    return _finish(items, inter, rep, spec.name or root.name, root)


def _stray_images(root: Path, spec: CatalogueSpec, known: set) -> list[str]:
    top = spec.image_pattern.split("{")[0].rstrip("/")
    base = root / top if top else None
    if base is None or not base.is_dir():
        return []
    out = []
    for dirpath, _, files in os.walk(base):
        for f in sorted(files):
            if os.path.splitext(f)[0] not in known:
                out.append(str(Path(dirpath, f).relative_to(root)))
    return sorted(out)


def _finish(items, inter, rep: Report, name: str, root: Path, precomputed=None) -> Catalogue:
    if inter.empty:
        raise DataError(f"No valid interaction left in {root} (see the checks: "
                        f"{rep.frame()[['check', 'count']].to_dict('records')}). {LAYOUTS_HELP}")
    inter = inter.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    n_baskets = inter.groupby("user_id")["timestamp"].nunique()
    few = n_baskets[n_baskets < 2]
    rep.add("users with fewer than 2 baskets (cannot be tested)", len(few),
            "not tested; their purchases still train models and popularity" if len(few) else "ok", few.index)
    notes = [f"{r['check']}: {r['count']} ({r['action']})" for r in rep.rows if r["action"] != "ok"]
    return Catalogue(items=items, interactions=inter, name=name, source=str(root), notes=notes,
                     report=rep.frame(), precomputed=precomputed or {})


def read_hm(folder: str | os.PathLike) -> Catalogue:
    """The H&M Kaggle layout: the generic reader with :data:`HM_SPEC` (ids zero-padded to 10 digits)."""
    return read_generic(folder, HM_SPEC, name=Path(folder).name)


def load_hm(data_dir: str | os.PathLike | None = None) -> Catalogue:
    """Read a folder in the H&M Kaggle layout (see :data:`visrec_utils.catalogue.data.LAYOUTS_HELP`),
    validated; ``data_dir`` None means ``$VISREC_DATA``, else ``../shared/data/hm_sample``
    (:func:`visrec_utils.catalogue.data.resolve_data_dir`).

    A preset of the generic reader (:func:`read_hm`): article ids are zero-padded to 10 digits, a
    basket is a customer's purchases on one day, rows are units.

    Raises:
        DataError: no dataset found, or a missing file or column.
    """
    return read_hm(resolve_data_dir(data_dir))


def read_ugallery(folder: str | os.PathLike) -> Catalogue:
    """The UGallery public release: purchases, inventory and ResNet50 embeddings, no images.

    ``ugallery_purchases.csv`` (user_id_hash, purchase_timestamp, artwork_id_hash; a basket =
    same user and timestamp), ``ugallery_inventory.csv`` (artwork_id_hash, artist_id_hash,
    upload_timestamp: when the item became available, kept as ``available_from``) and
    ``ugallery_resnet50_embeddings.npy`` (object array (n_items, 2) of (artwork_id_hash,
    2048-d vector); loaded with ``allow_pickle``, so only open files you trust).

    Returns:
        Catalogue with ``precomputed = {"ugallery_resnet50": (n_items, 2048) float32}`` aligned
        to ``items`` and no image paths.
    """
    root = Path(folder)
    emb_path = root / "ugallery_resnet50_embeddings.npy"
    if not emb_path.is_file():
        raise DataError(f"{emb_path} not found. {LAYOUTS_HELP}")
    raw = np.load(emb_path, allow_pickle=True)
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise DataError(f"{emb_path}: expected an object array of shape (n_items, 2) of (artwork_id_hash, vector), got {raw.shape}")
    emb_ids = [str(r[0]) for r in raw]
    dims = {len(r[1]) for r in raw}
    if len(dims) != 1:
        raise DataError(f"{emb_path}: vectors have different lengths {sorted(dims)}")
    vectors = np.stack([np.asarray(r[1], dtype=np.float32) for r in raw])
    rep = Report()
    tx = _read_table(root / "ugallery_purchases.csv", "purchases", rep=rep)[0]
    inv = _read_table(root / "ugallery_inventory.csv", "inventory", rep=rep)[0]
    for col, where in ((("user_id_hash", "purchase_timestamp", "artwork_id_hash"), "ugallery_purchases.csv"),
                       (("artwork_id_hash", "artist_id_hash", "upload_timestamp"), "ugallery_inventory.csv")):
        frame = tx if where.startswith("ugallery_p") else inv
        miss = [c for c in col if c not in frame.columns]
        if miss:
            raise DataError(f"{root / where} lacks column(s) {miss} (found {list(frame.columns)}). {LAYOUTS_HELP}")
    inter = pd.DataFrame({"user_id": _clean_ids(tx["user_id_hash"], None), "item_id": _clean_ids(tx["artwork_id_hash"], None),
                          "timestamp": _parse_times(tx["purchase_timestamp"], None)})
    bad = inter.isna().any(axis=1)
    rep.add("empty ids or unparseable timestamps", bad.sum(), "rows dropped" if bad.any() else "ok",
            [f"ugallery_purchases.csv line {i + 2}" for i in np.flatnonzero(bad)])
    inter = inter[~bad]
    dup = inter.duplicated()
    rep.add("duplicate rows (same user, item, timestamp)", dup.sum(), "rows dropped" if dup.any() else "ok",
            [f"ugallery_purchases.csv line {i + 2}" for i in inter.index[dup]])
    inter = inter[~dup]
    items = pd.DataFrame({"item_id": np.sort(np.unique(emb_ids))})
    inv = inv.rename(columns={"artwork_id_hash": "item_id", "artist_id_hash": "artist_id"})
    inv["available_from"] = _parse_times(inv["upload_timestamp"], None)
    items = items.merge(inv[["item_id", "artist_id", "available_from"]].drop_duplicates("item_id"), on="item_id", how="left")
    items["image_path"] = None
    no_emb = ~inter["item_id"].isin(set(items["item_id"]))
    rep.add("interactions naming items with no embedding", no_emb.sum(), "rows dropped" if no_emb.any() else "ok",
            inter.loc[no_emb, "item_id"].unique(), "the embeddings file must cover every purchased artwork")
    inter = inter[~no_emb]
    order = {i: k for k, i in enumerate(emb_ids)}
    precomputed = {"ugallery_resnet50": vectors[[order[i] for i in items["item_id"]]]}
    return _finish(items, inter, rep, "ugallery", root, precomputed)
