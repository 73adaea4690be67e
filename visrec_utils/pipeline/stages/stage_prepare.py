"""Stage ``prepare`` (notebook 01): read and validate the catalogue, take the seeded slice, save it."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...catalogue import data, layouts, protocols, splits
from ...catalogue.data import Catalogue
from ...core.layout import StudyLayout
from ...reports import plots


@dataclass
class Prepared:
    """What :func:`prepare` returns.

    Attributes:
        catalogue: the prepared :class:`~visrec_utils.catalogue.data.Catalogue` (saved in ``<out>/data``).
        summary: one column of catalogue figures (users, items, interactions, ...).
        split_figures: the leave-last-basket-out split in figures (test users, candidates, ...).
        banner: one Markdown line naming the catalogue (and SYNTHETIC for the demo).
    """

    catalogue: Catalogue
    summary: pd.DataFrame
    split_figures: pd.DataFrame
    banner: str


def split_figures(split: splits.Split) -> pd.DataFrame:
    """The main split in figures, one ``value`` column (medians and means over test users)."""
    prof = pd.Series([len(p) for p in split.profiles])
    truth = pd.Series([len(t) for t in split.truth])
    figures = pd.Series({
        "test users": split.n_users,
        "users whose last basket only repeats profile items (not tested)": split.dropped_repeat_only,
        "profile items per test user (median)": prof.median(),
        "truth items per test user (mean)": round(truth.mean(), 2),
        "candidates": split.availability,
        "candidates per test user (median)": int(pd.Series([split.candidate_mask(u).sum()
                                                            for u in range(split.n_users)]).median())
        if split.n_users else 0,
        "training interactions (test baskets removed)": len(split.train),
    })
    return figures.to_frame("value")


def prepare(out_dir, data_dir=None, max_users: int | None = None, max_items: int | None = None, seed: int = 0,
            reader_options: dict | None = None, figures: bool = True) -> Prepared:
    """Read ``data_dir`` (any supported layout, or ``"demo"``), slice it, save it to ``<out>/data``.

    Args:
        out_dir: study output folder.
        data_dir: catalogue folder (None: ``$VISREC_DATA``, else ``../shared/data/hm_sample``).
        max_users, max_items, seed: the seeded slice (:func:`visrec_utils.catalogue.data.slice_catalogue`).
        reader_options: :class:`visrec_utils.catalogue.readers.CatalogueSpec` fields (generic layout).
        figures: also draw ``data_overview.png`` and ``contact_sheet.png`` (32 random items).

    Raises:
        DataError: the catalogue cannot be read (one line naming the file and what to do).
    """
    out = StudyLayout(out_dir).make_dirs()
    cat = layouts.open_catalogue(data_dir, out.root, **(reader_options or {}))
    cat = data.slice_catalogue(cat, max_users, max_items, seed)
    data.save_prepared(cat, out.root)
    split = protocols.leave_last_basket_out(cat)
    if figures:
        plots.data_figures(cat.interactions, path=out.figure("data_overview"))
        sample = cat.items.dropna(subset=["image_path"])
        sample = sample.sample(min(32, len(sample)), random_state=seed)
        if not sample.empty:
            labels = (sample["product_type_name"].fillna(sample["item_id"]) if "product_type_name" in sample
                      else sample["item_id"])
            plots.contact_sheet(sample["image_path"].tolist(), labels.tolist(), path=out.figure("contact_sheet"),
                                title=f"{cat.name}: {len(sample)} random items")
    return Prepared(catalogue=cat, summary=pd.DataFrame([cat.summary()]).T.rename(columns={0: cat.name}),
                    split_figures=split_figures(split), banner=data.banner(cat))
