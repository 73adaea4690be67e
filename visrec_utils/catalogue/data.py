"""Catalogue loading, seeded slicing, and the prepared-catalogue files (splits: :mod:`visrec_utils.catalogue.splits`).

A *catalogue* is what every later step needs: a table of items (one row per item, with the
path of its image and any metadata) and a table of interactions (who bought what, when).
The H&M Kaggle layout is read by :func:`visrec_utils.catalogue.readers.load_hm`; :func:`resolve_data_dir` finds the
default dataset.

Terms: a *basket* is one customer's purchases on one day (H&M ``t_dat`` has day
resolution). The *leave-last-basket-out* split holds out each user's last basket as ground
truth and keeps all earlier purchases as the user's *profile*.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.layout import StudyLayout
from ..core.naming import safe_name
from ..core.store import atomic_write, write_json

LAYOUTS_HELP = (
    "visrec reads three layouts. (1) Generic: 'interactions.csv' or '.parquet' with columns "
    "user_id, item_id, timestamp (dates, datetimes or Unix epochs; other names via visrec.json), "
    "images at 'images/<item_id>.<any extension>' or an 'image_path' column in 'items.csv', optional "
    "items.csv metadata. (2) H&M Kaggle: 'transactions_train.csv' (t_dat, customer_id, article_id), "
    "'articles.csv', 'images/<first 3 digits>/<article_id>.jpg'. (3) UGallery: 'ugallery_purchases.csv', "
    "'ugallery_inventory.csv', 'ugallery_resnet50_embeddings.npy'. Point visrec at such a folder with "
    "'--data DIR' (CLI), the 'data_dir' notebook parameter or the VISREC_DATA environment variable; "
    "'--data demo' runs on a generated synthetic catalogue. See docs/data.md."
)


class DataError(ValueError):
    """Raised when a catalogue is missing or malformed; the message says what to do."""


@dataclass
class Catalogue:
    """A catalogue: items with images, and dated interactions.

    Attributes:
        items: one row per item, index-free, columns ``item_id`` (str), ``image_path`` (str,
            absolute) and any metadata columns. Sorted by ``item_id``; the row position is the
            item index used by embeddings, recommenders and metrics.
        interactions: one row per purchase, columns ``user_id`` (str), ``item_id`` (str),
            ``timestamp`` (datetime64[ns], day resolution for H&M).
        name: a short label used in reports.
        source: the folder the catalogue was read from.
        notes: human-readable lines about what loading did (slicing, dropped rows).
        report: the validation report (``check, count, action, examples, what_to_do``).
        precomputed: embeddings shipped with the catalogue, ``{name: (n_items, dim) float32}``
            aligned with ``items`` (e.g. UGallery's ResNet50 vectors).
        synthetic: True for the generated demo catalogue (every report says so).
    """

    items: pd.DataFrame
    interactions: pd.DataFrame
    name: str = "catalogue"
    source: str = ""
    notes: list[str] = field(default_factory=list)
    report: pd.DataFrame | None = None
    precomputed: dict = field(default_factory=dict)
    synthetic: bool = False

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_index(self) -> pd.Series:
        """Map ``item_id`` -> row position (int64)."""
        return pd.Series(np.arange(len(self.items)), index=self.items["item_id"].to_numpy())

    def summary(self) -> dict:
        """Headline figures: users, items, interaction rows, baskets, date span."""
        inter = self.interactions
        baskets = inter.groupby(["user_id", "timestamp"]).ngroups
        return {
            "users": int(inter["user_id"].nunique()),
            "items": int(len(self.items)),
            "interactions": int(len(inter)),
            "user_item_pairs": int(inter[["user_id", "item_id"]].drop_duplicates().shape[0]),
            "baskets": int(baskets),
            "first_day": str(inter["timestamp"].min().date()) if len(inter) else "",
            "last_day": str(inter["timestamp"].max().date()) if len(inter) else "",
        }


def find_default_data_dir() -> Path | None:
    """``$VISREC_DATA``, else ``../shared/data/hm_sample`` (from the working directory or this
    repository) when it exists, else None."""
    if os.environ.get("VISREC_DATA"):
        return Path(os.environ["VISREC_DATA"])
    repo = Path(__file__).resolve().parents[2]
    for c in (Path.cwd().parent / "shared/data/hm_sample", repo.parent / "shared/data/hm_sample"):
        if c.is_dir():
            return c.resolve()
    return None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Find the dataset folder.

    Order: the ``data_dir`` argument, the ``VISREC_DATA`` environment variable, then
    ``../shared/data/hm_sample`` relative to the current directory or to this repository.

    Raises:
        DataError: when none of these exists, with the expected layout and how to point at it.
    """
    candidates = []
    if data_dir:
        candidates.append(Path(data_dir))
    elif os.environ.get("VISREC_DATA"):
        candidates.append(Path(os.environ["VISREC_DATA"]))
    else:
        repo = Path(__file__).resolve().parents[2]
        candidates += [Path.cwd().parent / "shared/data/hm_sample", repo.parent / "shared/data/hm_sample"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if data_dir:  # the folder the user named: say plainly that it is not there
        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise DataError(f"--data / data_dir: {Path(data_dir).resolve()} {what}; name the catalogue folder. "
                        f"{LAYOUTS_HELP}")
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"No dataset found (looked at: {tried}). {LAYOUTS_HELP}")


def slice_catalogue(
    cat: Catalogue, max_users: int | None = None, max_items: int | None = None, seed: int = 0
) -> Catalogue:
    """Seeded slice for quick runs.

    ``max_users`` users are drawn at random; their items come first (in a seeded random
    order, cut at ``max_items`` if there are more), then other catalogue items are drawn until
    ``max_items`` items are kept. Interactions are restricted to kept users and items.

    Args:
        cat: the full catalogue.
        max_users: number of users to keep (None = all).
        max_items: number of items to keep (None = all items of the kept users and, when
            ``max_users`` is None, the whole catalogue).
        seed: random seed; the same seed gives the same slice.

    Returns:
        A new Catalogue; ``notes`` records the slice.
    """
    if max_users is None and max_items is None:
        return cat
    rng = np.random.default_rng(seed)
    inter = cat.interactions
    users = np.sort(inter["user_id"].unique())
    if max_users is not None and max_users < len(users):
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    inter = inter[inter["user_id"].isin(set(users))]
    user_items = np.sort(inter["item_id"].unique())
    rng.shuffle(user_items)
    if max_items is None:
        keep = user_items if max_users is not None else cat.items["item_id"].to_numpy()
    elif len(user_items) >= max_items:
        keep = user_items[:max_items]
    else:
        others = np.setdiff1d(cat.items["item_id"].to_numpy(), user_items)
        extra = rng.choice(others, size=min(len(others), max_items - len(user_items)), replace=False)
        keep = np.concatenate([user_items, extra])
    keep_set = set(keep)
    items = cat.items[cat.items["item_id"].isin(keep_set)].reset_index(drop=True)
    inter = inter[inter["item_id"].isin(keep_set)].reset_index(drop=True)
    note = f"seeded slice (seed={seed}): {inter['user_id'].nunique()} users, {len(items)} items"
    rows = cat.items["item_id"].isin(keep_set).to_numpy()
    return replace(cat, items=items, interactions=inter, notes=cat.notes + [note],
                   precomputed={k: v[rows] for k, v in cat.precomputed.items()})


def drop_items(cat: Catalogue, item_ids: set, check: str, examples=()) -> Catalogue:
    """Catalogue without ``item_ids`` (and their interactions), the drop added to the report.

    Args:
        cat: catalogue.
        item_ids: ids to remove.
        check: name of the validation check that caused the drop (e.g. "unreadable images").
        examples: first offenders to list in the report.
    """
    keep = ~cat.items["item_id"].isin(item_ids).to_numpy()
    n_rows = int(cat.interactions["item_id"].isin(item_ids).sum())
    row = pd.DataFrame([{"check": check, "count": int((~keep).sum()),
                         "action": f"items left out of the study with their {n_rows} interaction rows",
                         "examples": "; ".join(map(str, list(examples)[:5])), "what_to_do": "re-export or replace those files"}])
    report = row if cat.report is None else pd.concat([cat.report, row], ignore_index=True)
    return replace(cat, items=cat.items[keep].reset_index(drop=True),
                   interactions=cat.interactions[~cat.interactions["item_id"].isin(item_ids)].reset_index(drop=True),
                   notes=cat.notes + [f"{check}: {(~keep).sum()} items left out"], report=report,
                   precomputed={k: v[keep] for k, v in cat.precomputed.items()})


def save_prepared(cat: Catalogue, out_dir: str | os.PathLike) -> Path:
    """Write a catalogue to ``<out_dir>/data/``: items.parquet, interactions.parquet,
    validation.csv (the report; removed when there is none), ``precomputed__<safe name>.npy`` per
    shipped embedding set, and catalogue.json (name, source, notes, summary, the precomputed
    sets' names as given -> file names), written last.

    Every file is written atomically (:func:`visrec_utils.core.store.atomic_write`): a reader
    sees the old file or the new one, never half of one.

    Returns:
        the ``data`` folder.
    """
    d = Path(out_dir) / "data"
    atomic_write(d / "items.parquet", lambda tmp: cat.items.to_parquet(tmp, index=False))
    atomic_write(d / "interactions.parquet", lambda tmp: cat.interactions.to_parquet(tmp, index=False))
    if cat.report is not None:
        atomic_write(d / "validation.csv", lambda tmp: cat.report.to_csv(tmp, index=False))
    elif (d / "validation.csv").is_file():  # an earlier catalogue's report
        (d / "validation.csv").unlink()
    files = {}  # name as given -> safe file name (names never become paths: visrec_utils.core.naming)
    for name, emb in cat.precomputed.items():
        files[name] = f"precomputed__{safe_name(name)}.npy"
        arr = np.asarray(emb, dtype=np.float32)
        atomic_write(d / files[name], lambda tmp: np.save(tmp, arr))
    meta = {"name": cat.name, "source": cat.source, "notes": cat.notes, "summary": cat.summary(),
            "synthetic": cat.synthetic, "precomputed": files}
    write_json(d / "catalogue.json", meta, indent=2)
    for old in d.glob("precomputed__*.npy"):  # sets of an earlier catalogue
        if old.name not in files.values():
            old.unlink()
    return d


def load_prepared(out_dir: str | os.PathLike) -> Catalogue:
    """Read the catalogue written by :func:`save_prepared` (notebook 01), as it was prepared.

    Later notebooks read :func:`load_study_catalogue` instead (the same catalogue without the
    items whose images could not be read).

    Raises:
        DataError: when ``<out_dir>/data`` is missing (run notebook 01 first), or was prepared by
            an older visrec (rerun notebook 01).
    """
    import json

    d = Path(out_dir) / "data"
    if not (d / "catalogue.json").is_file():
        raise DataError(f"{d} holds no prepared catalogue; run notebook 01_data_prep with out_dir={str(out_dir)!r} first.")
    meta = json.loads((d / "catalogue.json").read_text())
    report = pd.read_csv(d / "validation.csv", keep_default_na=False) if (d / "validation.csv").is_file() else None
    if "precomputed" not in meta:  # prepared by an older visrec, which named the sets only in file names
        raise DataError(f"{d / 'catalogue.json'} was written by an older visrec (no 'precomputed' entry); "
                        "rerun notebook 01_data_prep (python -m visrec_utils study reruns it)")
    pre = {name: np.load(d / f) for name, f in meta["precomputed"].items()}
    return Catalogue(pd.read_parquet(d / "items.parquet"), pd.read_parquet(d / "interactions.parquet"),
                     name=meta["name"], source=meta["source"], notes=meta["notes"], report=report,
                     precomputed=pre, synthetic=bool(meta.get("synthetic", False)))


def load_study_catalogue(out_dir: str | os.PathLike) -> Catalogue:
    """The catalogue the study's embeddings describe: :func:`load_prepared`, without the items
    whose images could not be read (``<out_dir>/results/unreadable_images.csv``, written by
    notebook 02), dropped with :func:`drop_items` (check ``"unreadable images"``, the first
    offenders as ``"<image_path>: <reason>"`` examples in the report). Without that file, with
    an empty one, or when none of its items is in the prepared catalogue (an output folder from
    before this function, whose ``data/`` notebook 02 had already reduced), it is the prepared
    catalogue itself.

    Returns:
        :class:`Catalogue`; its rows align with every frozen embedding set of the study.

    Raises:
        DataError: no prepared catalogue (run notebook 01 first).
    """
    cat = load_prepared(out_dir)
    path = StudyLayout(out_dir).result("unreadable_images")
    if not path.is_file() or path.stat().st_size == 0:
        return cat
    bad = pd.read_csv(path, dtype=str, keep_default_na=False)  # ids stay strings ("0108775015")
    if not cat.items["item_id"].isin(set(bad["item_id"])).any():  # none, or a folder whose data/ has none of them
        return cat
    return drop_items(cat, set(bad["item_id"]), check="unreadable images",
                      examples=[f"{r.image_path}: {r.reason}" for r in bad.itertuples()])


def banner(cat: Catalogue) -> str:
    """One Markdown line naming the catalogue; a loud warning when it is the synthetic demo."""
    s = cat.summary()
    line = (f"**Catalogue:** {cat.name} ({s['users']:,} users, {s['items']:,} items, "
            f"{s['interactions']:,} interactions, {s['first_day']} to {s['last_day']})")
    if cat.synthetic:
        return ("> **SYNTHETIC DATA.** This report runs on visrec's generated demo catalogue (asked for with "
                "`--data demo`, or no dataset was given or found). Its numbers show that the pipeline works, "
                "not how real recommenders behave.\n\n" + line)
    return line
