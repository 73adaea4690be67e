"""Catalogue layouts: one registry, detected from a folder's files, one verb to open a catalogue.

Built in (:data:`LAYOUTS`, in detection order): ``hm`` (H&M Kaggle: ``transactions_train.csv``,
``articles.csv``, ``images/``), ``ugallery`` (``ugallery_purchases.csv``, inventory and precomputed
ResNet50 embeddings) and ``generic`` (``interactions.csv`` or ``.parquet``, optional ``items.csv``
and ``visrec.json`` naming columns: :class:`visrec_utils.catalogue.readers.CatalogueSpec`).
A new layout is one :class:`Layout` passed to :func:`register_layout` (and its test); the study's
``data_dir`` then opens it like the built-in ones (:func:`open_catalogue`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .data import LAYOUTS_HELP, Catalogue, DataError, find_default_data_dir, resolve_data_dir
from .readers import CatalogueSpec, read_generic, read_hm, read_ugallery


@dataclass(frozen=True)
class Layout:
    """A catalogue layout.

    Attributes:
        name: registry name (``"hm"``, ``"ugallery"``, ``"generic"``).
        detect: ``detect(folder: Path) -> bool``, True when the folder's files are this layout's.
        read: ``read(folder, **options) -> Catalogue`` (validated; options are
            :class:`~visrec_utils.catalogue.readers.CatalogueSpec` fields where the layout takes them).
        description: one line naming the files it expects.
    """

    name: str
    detect: Callable[[Path], bool]
    read: Callable[..., Catalogue]
    description: str = ""


def _read_generic(folder, **options) -> Catalogue:
    root = Path(folder)
    if (root / "interactions.parquet").is_file() and "interactions" not in options \
            and not (root / "visrec.json").is_file():
        options["interactions"] = "interactions.parquet"
    return read_generic(folder, **options)


#: The layouts by name, in detection order (:func:`register_layout` adds one before ``generic``).
LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout, replace_existing: bool = False) -> Layout:
    """Add a layout; it is detected before ``generic`` (whose files are the most common).

    Raises:
        ValueError: the name is taken (pass ``replace_existing=True`` to replace it).
    """
    if layout.name in LAYOUTS and not replace_existing:
        raise ValueError(f"a catalogue layout named {layout.name!r} is already registered; pass replace_existing=True")
    generic = LAYOUTS.pop("generic", None) if layout.name != "generic" else None
    LAYOUTS[layout.name] = layout
    if generic is not None:
        LAYOUTS["generic"] = generic
    return layout


def unregister_layout(name: str) -> None:
    """Remove a layout (e.g. after a test); unknown names are ignored."""
    LAYOUTS.pop(name, None)


def list_layouts() -> list[str]:
    """The registered layout names, in detection order."""
    return list(LAYOUTS)


register_layout(Layout("hm", lambda root: (root / "transactions_train.csv").is_file(), lambda folder, **_: read_hm(folder),
                       "transactions_train.csv, articles.csv, images/<3 digits>/<article id>.jpg"))
register_layout(Layout("ugallery", lambda root: (root / "ugallery_purchases.csv").is_file(),
                       lambda folder, **_: read_ugallery(folder),
                       "ugallery_purchases.csv, ugallery_inventory.csv, precomputed ResNet50 embeddings"))
register_layout(Layout("generic", lambda root: (root / "visrec.json").is_file() or any(
    (root / f).is_file() for f in ("interactions.csv", "interactions.parquet")), _read_generic,
    "interactions.csv or .parquet, optional items.csv, images/ and visrec.json"))


def detect_layout(folder: str | os.PathLike) -> str:
    """The name of the first registered layout whose files are in ``folder``.

    Raises:
        DataError: none of the layouts' files is present.
    """
    root = Path(folder)
    for layout in LAYOUTS.values():
        if layout.detect(root):
            return layout.name
    raise DataError(f"{root} holds no catalogue visrec recognises. {LAYOUTS_HELP}")


def load_catalogue(folder: str | os.PathLike, **options) -> Catalogue:
    """Read any supported catalogue folder (layout detected), validated.

    Args:
        folder: catalogue folder.
        **options: :class:`~visrec_utils.catalogue.readers.CatalogueSpec` fields for the generic layout.
    """
    return LAYOUTS[detect_layout(folder)].read(folder, **options)


def open_catalogue(data_dir: str | os.PathLike | None, out_dir: str | os.PathLike, **options) -> Catalogue:
    """The study's catalogue: ``data_dir`` if given ("demo" for the synthetic one), else the
    default dataset, else the generated demo catalogue (written to ``<out_dir>/demo_catalogue``).

    Returns:
        Catalogue; ``synthetic`` is True (and the name says SYNTHETIC) for the demo.

    Raises:
        DataError: an explicit ``data_dir`` that does not exist or holds no known layout.
    """
    from .demo import is_synthetic, make_demo_catalogue

    if data_dir is None:
        found = find_default_data_dir()
        data_dir = str(found) if found else "demo"
    if str(data_dir) == "demo":
        folder = make_demo_catalogue(Path(out_dir) / "demo_catalogue")
        cat = read_generic(folder, CatalogueSpec(), name="demo (SYNTHETIC)")
        cat.notes.insert(0, "SYNTHETIC demo catalogue (asked for with data_dir='demo', or no dataset was given "
                            "or found); its results say nothing about real recommendations.")
        return replace(cat, synthetic=True)
    folder = resolve_data_dir(data_dir)
    cat = load_catalogue(folder, **options)
    if is_synthetic(folder):
        return replace(cat, synthetic=True, name=f"{cat.name} (SYNTHETIC)")
    return cat
