"""The study's embedding sets and their manifest: one table saying what each set is.

``<out>/embeddings/<stem>.npy`` holds a set, ``(n_items, dim) float32``; ``<stem>.json`` beside
it is its manifest row: the model and strategy names as given, the architecture, weights sha256,
layer, pooling, preprocessing, image-set sha256, strategy parameters, whether its training saw
purchases, the file of its item ids (``items-<content key>.txt``, one id per row, in row order),
library versions and when it was written. :func:`read_manifest` reads the rows as one table.
Each set has its own row, so a stage that adds sets (``tune``) never rewrites a file an earlier
stage (``extract``) wrote. File names are safe keys (:mod:`visrec_utils.core.naming`), never parsed.
"""
from __future__ import annotations

import functools
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.layout import StudyLayout
from ..core.naming import safe_stem
from ..core.store import atomic_write, content_key, write_json
from .models import LoadedModel


def data_config_json(data_config: Mapping) -> str:
    """A timm data config as the JSON text the study's tables keep (tuples as lists, keys in
    the config's order): the ``data_config`` column of ``models.csv`` and the ``preprocessing``
    column of the embedding-set manifest."""
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()})


#: Columns of the embedding-set manifest (:func:`read_manifest`), one ``<stem>.json`` row per set.
MANIFEST_COLUMNS = ("model", "strategy", "file", "n_items", "dim", "arch", "weights_sha256", "backbone", "layer",
                    "pooling", "preprocessing", "image_set", "strategy_params", "uses_purchases", "items", "versions", "created")
#: The columns a caller may set through ``save_embedding_set(..., provenance=...)``.
PROVENANCE_COLUMNS = ("arch", "weights_sha256", "backbone", "layer", "pooling", "preprocessing", "image_set",
                      "strategy_params", "uses_purchases")
_REQUIRED = MANIFEST_COLUMNS[:5]


def _defaults(strategy: str) -> dict:
    return {"arch": "", "weights_sha256": "", "backbone": "", "layer": "", "pooling": "", "preprocessing": "", "image_set": "",
            "strategy_params": {}, "uses_purchases": False if strategy == "frozen" else None, "items": "",
            "versions": {}, "created": ""}


@functools.lru_cache(maxsize=1)
def library_versions() -> dict:
    """Versions of the libraries an embedding depends on: ``torch, timm, numpy, visrec_utils``
    ("" for one that is not installed)."""
    from importlib import metadata

    from .. import __version__

    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return ""
    return {"torch": version("torch"), "timm": version("timm"), "numpy": np.__version__, "visrec_utils": __version__}


def model_provenance(loaded: LoadedModel) -> dict:
    """The manifest columns that describe a loaded model: ``arch``, ``weights_sha256``,
    ``backbone`` and ``layer`` (for a ``<model>@<i>`` layer variant, the model it taps and
    ``"stage<i>"``; else "" and "": the final pooled features, from its
    :class:`~visrec_utils.features.models.ModelSpec`), ``pooling`` (the timm model's ``global_pool``
    type, e.g. ``"avg"``; ``"avg"`` for a layer variant, which averages its stage's output; ``""``
    when unknown) and ``preprocessing`` (:func:`data_config_json`). Pass it as ``provenance`` to
    :func:`save_embedding_set`."""
    layer = loaded.spec.layer
    pool = getattr(loaded.model, "global_pool", None)
    pooling = "avg" if layer else (pool if isinstance(pool, str) else getattr(pool, "pool_type", "")) or ""
    return {"arch": loaded.spec.arch, "weights_sha256": loaded.weights_sha256 or "", "backbone": loaded.spec.backbone,
            "layer": layer, "pooling": str(pooling), "preprocessing": data_config_json(loaded.data_config or {})}


def _save_item_ids(d: Path, item_ids) -> str:
    """Write an item-id list once (content-addressed, one id per line); returns its file name."""
    ids = [str(i) for i in item_ids]
    bad = next((i for i in ids if "\n" in i or "\r" in i), None)
    if bad is not None:
        raise ValueError(f"item id {bad!r} contains a line break; item ids are kept one per line")
    path = d / f"items-{content_key(ids)}.txt"
    if not path.is_file():
        text = "".join(f"{i}\n" for i in ids)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path.name


def load_item_ids(out_dir: str | os.PathLike, row: Mapping) -> list[str] | None:
    """The item ids of an embedding set, in row order, or None when it was saved without them.

    Args:
        out_dir: study output folder.
        row: the set's manifest row (a row of :func:`read_manifest`, or any mapping with ``items``).

    Returns:
        ``n_items`` ids (str), the i-th naming the set's i-th row.

    Raises:
        ValueError: the list file is missing or does not hold the list its name was made from.
    """
    name = row.get("items") if hasattr(row, "get") else row["items"]
    if not isinstance(name, str) or not name:
        return None
    path = StudyLayout(out_dir).embeddings / name
    try:
        ids = path.read_text(encoding="utf-8").split("\n")[:-1]
    except OSError as e:
        raise ValueError(f"{path}: the item-id list of embedding set {row['file']} cannot be read ({e}); "
                         "rerun the notebook that wrote the set") from e
    if name != f"items-{content_key(ids)}.txt":
        raise ValueError(f"{path} does not hold the item-id list its name was made from; delete it and rerun "
                         "the notebook that wrote the set")
    return ids


def read_manifest(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The study's embedding sets, one row each, read from the ``<stem>.json`` written beside
    every ``<stem>.npy`` in ``<out_dir>/embeddings/`` by :func:`save_embedding_set`.

    Each set has its own row, so a notebook that adds sets (03) never rewrites a file an earlier
    one (02) wrote. An array without a row (a crashed write, a file put there by hand) is no set.

    Returns:
        DataFrame, one row per set sorted by ``file``, columns :data:`MANIFEST_COLUMNS`:
        ``model`` and ``strategy`` exactly as given; ``file`` (the array's file name inside
        ``embeddings/``, a :func:`visrec_utils.core.naming.safe_stem`); ``n_items``, ``dim``;
        ``arch``, ``weights_sha256``, ``backbone``, ``layer``, ``pooling``, ``preprocessing`` (data config as
        JSON text), ``image_set`` ("" when unknown); ``strategy_params`` (dict);
        ``uses_purchases`` (bool, None when not recorded); ``items`` (its item-id list's file,
        :func:`load_item_ids`; "" when none); ``versions`` (dict); ``created`` (ISO time). A
        column missing from an older row gets its default; no folder gives an empty table.

    Raises:
        ValueError: a row that is not valid JSON or lacks a required column (``model``,
            ``strategy``, ``file``, ``n_items``, ``dim``); the one-line message names the file.
    """
    d = StudyLayout(out_dir).embeddings
    rows = []
    for arr in sorted(d.glob("*.npy")) if d.is_dir() else []:
        side = arr.with_suffix(".json")
        if arr.name.startswith(".") or not side.is_file():  # a write in progress, a crashed one, no row
            continue
        try:
            row = json.loads(side.read_text(encoding="utf-8"))
            rows.append({**_defaults(row["strategy"]), **{k: row[k] for k in _REQUIRED},
                         **{k: row[k] for k in MANIFEST_COLUMNS[5:] if k in row}})
        except (ValueError, KeyError, TypeError) as e:
            why = " ".join(f"{type(e).__name__}: {e}".split())  # one line, whatever the parser said
            raise ValueError(f"{side} is not a visrec embedding-set manifest row ({why}); "
                             "delete it with its .npy and rerun the notebook that wrote it") from e
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def save_embedding_set(out_dir: str | os.PathLike, model: str, strategy: str, emb: np.ndarray,
                       item_ids: Sequence[str] | None = None, provenance: Mapping | None = None) -> Path:
    """Write one embedding set, ``(n_items, dim) float32``, with its manifest row.

    The array goes to ``<out_dir>/embeddings/<safe_stem(model, strategy)>.npy``
    (:func:`visrec_utils.core.naming.safe_stem`: any model or strategy name, with paths, spaces or
    unicode, gives a portable file name, distinct for distinct names); ``<stem>.json`` beside it
    is the set's manifest row (:func:`read_manifest`), and the item ids go to
    ``embeddings/items-<content_key>.txt`` (written once per distinct list, one id per line,
    shared by the sets that have that list). Every write is atomic and the row is written last,
    so a row never names a missing or partial file.

    Args:
        out_dir: study output folder.
        model, strategy: names as given (kept verbatim in the row).
        emb: ``(n_items, dim)`` array (stored as float32).
        item_ids: ``n_items`` ids naming the rows, or None (the row's ``items`` is then "").
        provenance: values of :data:`PROVENANCE_COLUMNS` (e.g. :func:`model_provenance` of the
            model, ``image_set``, ``strategy_params``, ``uses_purchases``); the rest default to
            "" ({} for ``strategy_params``; ``uses_purchases`` False for ``"frozen"``, else None).

    Returns:
        the path of the array.

    Raises:
        ValueError: ``item_ids`` not of length ``n_items`` or holding a line break, or a
            ``provenance`` key outside :data:`PROVENANCE_COLUMNS`.
    """
    provenance = dict(provenance or {})
    unknown = sorted(set(provenance) - set(PROVENANCE_COLUMNS))
    if unknown:
        raise ValueError(f"provenance columns {unknown} are not among {list(PROVENANCE_COLUMNS)}")
    d = StudyLayout(out_dir).embeddings
    emb = np.asarray(emb, dtype=np.float32)
    if item_ids is not None and len(item_ids) != emb.shape[0]:
        raise ValueError(f"{len(item_ids)} item ids for an embedding set of {emb.shape[0]} rows ({model}, {strategy})")
    items = _save_item_ids(d, item_ids) if item_ids is not None else ""
    path = atomic_write(d / f"{safe_stem(model, strategy)}.npy", lambda tmp: np.save(tmp, emb))
    row = {**_defaults(strategy), **provenance, "model": model, "strategy": strategy, "file": path.name,
           "n_items": int(emb.shape[0]), "dim": int(emb.shape[1]) if emb.ndim == 2 else None, "items": items,
           "versions": dict(library_versions()), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(path.with_suffix(".json"), {k: row[k] for k in MANIFEST_COLUMNS})
    return path


def load_embedding_sets(out_dir: str | os.PathLike, models=None, strategies=None) -> dict:
    """Read the embedding sets of a study: ``{(model, strategy): (n_items, dim) float32}``.

    Names are the ones given to :func:`save_embedding_set` (read from the manifest rows, never
    parsed from file names).

    Args:
        models, strategies: keep only these (None = all found), in the given order.

    Raises:
        ValueError: a manifest row that cannot be read (:func:`read_manifest`).
    """
    d = StudyLayout(out_dir).embeddings
    found = {(r["model"], r["strategy"]): d / r["file"] for r in read_manifest(out_dir).to_dict("records")}
    keys = [k for k in found if (models is None or k[0] in models) and (strategies is None or k[1] in strategies)]
    model_order = list(models) if models is not None else sorted({k[0] for k in keys})
    keys.sort(key=lambda k: (model_order.index(k[0]), k[1] != "frozen", k[1]))
    return {k: np.load(found[k]) for k in keys}


def layer_variants(manifest: pd.DataFrame) -> dict:
    """The layer variants among a study's models, ``{model: (backbone, "stage<i>")}``, read from
    the frozen sets' manifest rows (:func:`read_manifest`; columns ``backbone`` and ``layer``):
    the models whose sets are an earlier stage's pooled output, not the final features."""
    rows = manifest[(manifest["strategy"] == "frozen") & (manifest["layer"].fillna("") != "")]
    return dict(zip(rows["model"], zip(rows["backbone"], rows["layer"])))
