"""Features computed elsewhere, brought into the study as ``--models file:/path/features.parquet``.

A ``file:`` model is a Parquet file of item vectors (CLIP, DINOv2 or any model run on another
machine, or a set exported by :mod:`visrec_utils.features.exchange`): a column ``item_id`` plus
either one list column of vectors (``list``, ``large_list`` or ``fixed_size_list`` of numbers)
or only numeric columns (one per dimension, in the file's column order). Pandas index columns
(``__index_level_0__``) are ignored. Options follow a ``?``, joined by ``&``:

* ``top1=<percent>``: the model's published ImageNet top-1 (``results/models.csv``
  ``published_top1``; notebook 05 correlates it like any model's); left out, it is empty;
* ``name=<name>``: the set's model name becomes ``file:<name>`` (default: ``file:<file stem>``);
* ``family=<family>``: its architecture family in ``models.csv`` (default: none).

e.g. ``file:/data/clip_vitb16.parquet?top1=68.3&name=clip_vitb16``. Notebook 02
(:func:`visrec_utils.features.embeddings.embed_catalogue`) saves the vectors, aligned with the
catalogue, as the frozen set ``file:<name>``; its manifest row names the file's sha256 in
``weights_sha256`` (``file:<sha256>``) and its ``models.csv`` row has status ``precomputed``, so
every later stage treats it like the embeddings a catalogue ships with. Catalogue items without
a vector get NaN rows and are left out of the study like items whose image cannot be read
(``results/unreadable_images.csv`` says why); a file holding none of the catalogue's items is an
error. Items of the file that are not in the catalogue (a slice) are ignored. Imported features
count as frozen features that never saw the study's purchases (``uses_purchases`` False), except a
set exported by visrec whose training saw them (:func:`exported_saw_purchases`).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.store import file_sha256

log = logging.getLogger(__name__)

PREFIX = "file:"
#: The options a ``file:`` model takes after ``?``.
OPTIONS = ("top1", "name", "family")
_INDEX_COLUMN = re.compile(r"__index_level_\d+__")


@dataclass(frozen=True)
class FileModel:
    """A parsed ``file:`` model.

    Attributes:
        spec: the name as given.
        path: the Parquet file (absolute).
        name: the set's model name, ``file:<name option or file stem>``.
        top1: published ImageNet top-1 in percent given by the user, or None.
        family: architecture family given by the user ("" when none).
    """

    spec: str
    path: Path
    name: str
    top1: float | None = None
    family: str = ""


@dataclass
class ImportedSet:
    """A ``file:`` model's vectors aligned with a catalogue (:func:`import_features`).

    Attributes:
        model: the parsed model.
        embeddings: ``(n_items, dim) float32`` in the catalogue's row order; NaN rows for items
            the file lacks.
        missing: ``{item_id: reason}`` of those items.
        sha256: hex sha256 of the file's bytes.
    """

    model: FileModel
    embeddings: np.ndarray
    missing: dict
    sha256: str
    uses_purchases: bool = False

    @property
    def provenance(self) -> dict:
        """Manifest columns of the set (:data:`~visrec_utils.features.embedding_sets.PROVENANCE_COLUMNS`)."""
        return {"arch": f"features imported from {self.model.path}", "weights_sha256": f"file:{self.sha256}",
                "uses_purchases": self.uses_purchases}

    @property
    def model_row(self) -> dict:
        """The set's row of ``results/models.csv`` (status ``precomputed``)."""
        m = self.model
        row = {"model": m.name, "status": "precomputed", "reason": f"features imported from {m.path}",
               "arch": f"imported features ({m.path.name})", "dim": int(self.embeddings.shape[1]),
               "published_top1": np.nan if m.top1 is None else m.top1,
               "top1_source": "given by the user (top1= of the file: model)" if m.top1 is not None
               else "not given (add ?top1=<percent> to the file: model)",
               "weights": str(m.path), "weights_sha256": f"file:{self.sha256}", "n_unreadable": len(self.missing)}
        return row | ({"family": m.family} if m.family else {})


def is_file_model(name) -> bool:
    """Whether a ``models`` entry names features in a file (``file:...``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_file_model(spec: str) -> FileModel:
    """Read a ``file:`` model's path and options (module docstring); the file is not opened.

    A relative path is taken from the current folder. The text after the last ``?`` holds the
    options, unless the whole text names an existing file (a path with a ``?`` in it).

    Raises:
        ValueError: no path, an option outside :data:`OPTIONS`, an option without ``=``, a
            ``top1`` that is not a number in [0, 100], or an empty ``name``.
    """
    body = spec[len(PREFIX):] if is_file_model(spec) else spec
    path, query = body, ""
    if "?" in body and not Path(body).is_file():
        path, _, query = body.rpartition("?")
    if not path:
        raise ValueError(f"{spec}: no file named; write file:/path/features.parquet")
    opts = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if key not in OPTIONS or not eq:
            raise ValueError(f"{spec}: {part!r} is not an option; write <option>=<value> with an option among "
                             f"{', '.join(OPTIONS)}, e.g. file:/path/features.parquet?top1=81.2&name=clip_b16")
        opts[key] = value
    top1 = None
    if "top1" in opts:
        try:
            top1 = float(opts["top1"])
        except ValueError:
            top1 = float("nan")
        if not 0 <= top1 <= 100:
            raise ValueError(f"{spec}: top1={opts['top1']!r} must be the model's published ImageNet top-1 in percent "
                             "(a number from 0 to 100), e.g. ?top1=81.2")
    if "name" in opts and not opts["name"].strip():
        raise ValueError(f"{spec}: name= is empty; give the name the set should have, e.g. ?name=clip_b16")
    full = Path(path).expanduser().absolute()
    return FileModel(spec=spec, path=full, name=PREFIX + (opts.get("name") or full.stem), top1=top1,
                     family=opts.get("family", ""))


def resolve_file_model(spec: str) -> str:
    """``spec`` with its path made absolute (options kept), so it names the same file from any
    working folder (the notebooks run in ``notebooks/``).

    Raises:
        ValueError: as :func:`parse_file_model`.
    """
    m = parse_file_model(spec)
    body = spec[len(PREFIX):]
    query = "" if Path(body).is_file() or "?" not in body else body.rpartition("?")[2]
    return f"{PREFIX}{m.path}" + (f"?{query}" if query else "")


def set_name(spec: str) -> str:
    """The model name of the set a ``file:`` model gives (``file:<name>``); other names as they are."""
    return parse_file_model(spec).name if is_file_model(spec) else spec


def file_model_digests(names: Sequence[str]) -> dict:
    """``{name: sha256 of its file}`` of the ``file:`` entries of ``names`` ("" for a missing
    file): what the runner's reuse keys add, so a file rewritten in place reruns notebook 02."""
    out = {}
    for n in names or ():
        if is_file_model(n):
            p = parse_file_model(n).path
            out[n] = file_sha256(p) if p.is_file() else ""
    return out


def _examples(values, n: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:n])


def _vectors_of_list_column(path: Path, table, col: str, ids: list[str]) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = table.column(col).combine_chunks()
    if not (pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)):
        raise ValueError(f"{path}: column {col!r} holds lists of {arr.type.value_type}, not numbers; give the "
                         "vectors as lists of floats")
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if nulls.any():
        bad = np.flatnonzero(nulls)
        raise ValueError(f"{path}: {len(bad)} row(s) hold NaN, infinite or missing values, e.g. item_id "
                         f"{_examples(ids[i] for i in bad)}; fix or drop those rows")
    sizes, counts = np.unique(lengths, return_counts=True)
    if len(sizes) > 1:
        common = int(sizes[np.argmax(counts)])
        odd = int(np.flatnonzero(lengths != common)[0])
        raise ValueError(f"{path}: the vectors in column {col!r} have {len(sizes)} different lengths "
                         f"({', '.join(str(int(s)) for s in sizes)}): item_id {ids[odd]!r} has {int(lengths[odd])} "
                         f"values where {int(counts.max())} rows have {common}; every item needs a vector of one dimension")
    if int(sizes[0]) == 0:
        raise ValueError(f"{path}: the vectors in column {col!r} are empty; every item needs a vector of numbers")
    flat = arr.flatten().to_numpy(zero_copy_only=False)  # a null inside a vector is NaN here, caught by the caller
    return flat.astype(np.float32, copy=False).reshape(len(ids), int(sizes[0]))


def read_features_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read and check a Parquet file of item vectors (module docstring).

    Args:
        path: the file.

    Returns:
        (item ids as str in the file's row order, ``(n_rows, dim) float32``); float32 values
        come back bit for bit, other numbers are converted to float32.

    Raises:
        ValueError: one line naming the file and what to fix: it does not exist or is not
            Parquet; it has no ``item_id`` column, no rows or no vector column; its columns are
            neither one list column nor numeric columns; rows without an item id; vectors of
            different lengths; NaN, infinite or missing values; an item id on several rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"{path} {what}; give a Parquet file with an item_id column and the vectors "
                         "(file:/path/features.parquet)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        why = " ".join(str(e).split())
        raise ValueError(f"{path} is not a readable Parquet file ({why}); write it with pandas.DataFrame.to_parquet "
                         "or pyarrow.parquet.write_table") from e
    cols = [c for c in table.column_names if not _INDEX_COLUMN.fullmatch(c)]
    if "item_id" not in cols:
        raise ValueError(f"{path} has no item_id column (its columns: {_examples(cols, 6)}); name the column of "
                         "item ids item_id")
    if table.num_rows == 0:
        raise ValueError(f"{path} has no rows; it needs one row per item")
    id_col = table.column("item_id")
    if id_col.null_count:
        raise ValueError(f"{path}: {id_col.null_count} row(s) have no item_id; give every row its item id")
    ids = [str(i) for i in id_col.to_pylist()]
    others = [c for c in cols if c != "item_id"]
    kinds = {c: table.schema.field(c).type for c in others}
    lists = [c for c, t in kinds.items() if pa.types.is_list(t) or pa.types.is_large_list(t)
             or pa.types.is_fixed_size_list(t)]
    numbers = [c for c, t in kinds.items() if pa.types.is_floating(t) or pa.types.is_integer(t)]
    if not others or (lists and numbers) or len(lists) > 1 or len(lists) + len(numbers) < len(others):
        text = (pa.types.is_string, pa.types.is_large_string)
        shown = sorted(others, key=lambda c: c in lists or c in numbers)[:6]  # the offending columns first
        found = ", ".join(f"{c} ({'text' if any(f(kinds[c]) for f in text) else kinds[c]})" for c in shown) or "nothing"
        raise ValueError(f"{path}: besides item_id it needs one list column of vectors or only numeric columns "
                         f"(one per dimension); found {found}")
    if lists:
        emb = _vectors_of_list_column(path, table, lists[0], ids)
    else:
        # one column per dimension; a null is NaN here, caught below
        emb = np.column_stack([table.column(c).to_numpy() for c in numbers]).astype(np.float32, copy=False)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{path}: {len(rows)} row(s) hold NaN, infinite or missing values, e.g. item_id "
                         f"{_examples(ids[i] for i in rows)}; fix or drop those rows")
    seen, dupes = set(), []
    for i in ids:
        if i in seen and i not in dupes:
            dupes.append(i)
        seen.add(i)
    if dupes:
        raise ValueError(f"{path}: {len(dupes)} item id(s) appear on more than one row, e.g. {_examples(dupes)}; "
                         "keep one row per item")
    zero = np.flatnonzero(~emb.any(axis=1))
    if len(zero):  # allowed (a blank image may give one), but a whole file of them is a failed extraction
        log.warning("%s: %d of %d vectors are all zeros (e.g. item_id %s): their cosine with every item is 0, so "
                    "VisRank cannot rank them; check how the features were computed", path, len(zero), len(ids),
                    _examples(ids[i] for i in zero))
    return ids, np.ascontiguousarray(emb)


def check_file_models(names: Sequence[str]) -> None:
    """Check every ``file:`` entry of ``names`` before a study runs: options, the file and its
    columns and values (:func:`read_features_file`), and that no two give the same set name.

    Raises:
        ValueError: as :func:`parse_file_model` and :func:`read_features_file`, or a set name
            given twice.
    """
    named = {}
    for spec in [n for n in names or () if is_file_model(n)]:
        m = parse_file_model(spec)
        if m.name in named:
            raise ValueError(f"{named[m.name]} and {spec} both give the set name {m.name!r}; name one of them "
                             "with ?name=<another name>")
        named[m.name] = spec
        read_features_file(m.path)


def import_features(spec: str, item_ids: Sequence[str]) -> ImportedSet:
    """A ``file:`` model's vectors in the catalogue's row order.

    Args:
        spec: the ``file:`` model (module docstring).
        item_ids: the catalogue's item ids, in row order, ``(n_items,)``.

    Returns:
        :class:`ImportedSet`: ``(n_items, dim) float32``, NaN rows for the items the file lacks
        (listed in ``missing`` with the reason; a warning line says how many and names a few).

    Raises:
        ValueError: as :func:`parse_file_model` and :func:`read_features_file`, or the file holds
            none of the catalogue's items (the message shows ids of both).
    """
    m = parse_file_model(spec)
    ids, vectors = read_features_file(m.path)
    row_of = {i: r for r, i in enumerate(ids)}
    rows = np.array([row_of.get(str(i), -1) for i in item_ids], dtype=np.int64)
    absent = [str(i) for i, r in zip(item_ids, rows) if r < 0]
    if len(item_ids) and len(absent) == len(item_ids):
        raise ValueError(f"{m.path} holds none of the catalogue's {len(item_ids)} item ids (the file has e.g. "
                         f"{_examples(ids)}; the catalogue e.g. {_examples(item_ids)}); its item_id column must hold "
                         "the catalogue's ids")
    emb = np.full((len(item_ids), vectors.shape[1]), np.nan, dtype=np.float32)
    emb[rows >= 0] = vectors[rows[rows >= 0]]
    if absent:
        log.warning("%s: %d of %d catalogue items have no vector in %s (e.g. %s); they are left out of the study "
                    "like unreadable images (results/unreadable_images.csv)", m.name, len(absent), len(item_ids),
                    m.path, _examples(absent))
    reason = f"no vector in the imported features {m.path.name} ({m.name})"
    saw = exported_saw_purchases(m.path)
    if saw:
        log.warning("%s: %s was exported by visrec from a set whose training saw purchases; it is kept out of the "
                    "protocols that need purchase-free features", m.name, m.path)
    return ImportedSet(model=m, embeddings=emb, missing={i: reason for i in absent}, sha256=file_sha256(m.path),
                       uses_purchases=saw)


def exported_saw_purchases(path) -> bool:
    """Whether a Parquet file written by :func:`visrec_utils.features.exchange.export_embedding_set`
    holds a set whose training saw purchases: its schema metadata (key ``visrec``, the set's
    manifest row) says ``uses_purchases`` true, or unknown for a fine-tuned set. False for files
    without that metadata (features computed elsewhere) and for frozen sets."""
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    try:
        row = json.loads(meta[b"visrec"]) if b"visrec" in meta else {}
    except ValueError:
        return False
    if not isinstance(row, dict):
        return False
    used = row.get("uses_purchases")
    return bool(used) if used is not None else row.get("strategy", "frozen") != "frozen"


def import_file_models(names: Sequence[str], item_ids: Sequence[str]) -> list[ImportedSet]:
    """:func:`import_features` of every ``file:`` entry of ``names``, in order.

    Raises:
        ValueError: as :func:`import_features`, or two entries giving the same set name.
    """
    out, named = [], {}
    for spec in [n for n in names if is_file_model(n)]:
        got = import_features(spec, item_ids)
        if got.model.name in named:
            raise ValueError(f"{named[got.model.name]} and {spec} both give the set name {got.model.name!r}; name one "
                             "of them with ?name=<another name>")
        named[got.model.name] = spec
        out.append(got)
    return out
