"""Export a study's embedding sets and its split in the formats other recommender toolkits read.

Every set goes out with its item ids in row order and a provenance JSON (its manifest row,
:func:`visrec_utils.features.embedding_sets.read_manifest`, plus an ``export`` entry: format,
source file, time). Under the destination folder, ``<stem>`` being the set's file stem in
``<out>/embeddings`` (``safe_stem(model, strategy)``):

* ``parquet/<stem>.parquet``: columns ``item_id`` (string) and ``embedding``
  (``fixed_size_list<float32>[dim]``), the manifest row also in the schema metadata (key
  ``visrec``); ``parquet/<stem>.json`` the provenance. It imports back bit for bit as
  ``--models file:<that file>`` (:mod:`visrec_utils.features.feature_files`).
* ``cornac/<stem>/``: ``features.npy`` ``(n_items, dim) float32`` and ``item_ids.txt`` (one id
  a line, in row order), the pair ``cornac.data.ImageModality(features=..., ids=...)`` takes
  (Cornac's ``FeatureModality``: "numpy 2d-array that the row indices are aligned with
  user/item in ids"; ``build(id_map=...)`` reorders the rows to a train set's item indices).
* ``mmrec/<stem>/``: ``image_feat.npy``, row ``i`` the vector of the item whose ``itemID`` is
  ``i``, and ``i_id_mapping.csv`` (tab-separated, ``item_id`` and ``itemID``). MMRec
  (github.com/enoche/MMRec) loads ``vision_feature_file: image_feat.npy`` from the dataset folder
  (``src/common/abstract_recommender.py``) and indexes it by the ``itemID`` column of
  ``<dataset>.inter``; its preprocessing writes the raw-id mapping as ``i_id_mapping.csv``
  (``preprocessing/0rating2inter.ipynb``). ``itemID`` is the row of the set, which for the
  study's sets is the item's row in the study catalogue: the ``itemID`` of :func:`export_split`'s
  ``visrec.inter``.
* ``elliot/<stem>/``: ``visual_features/<itemId>.npy``, one ``(dim,) float32`` vector per item,
  and ``item_mapping.tsv`` (``itemId`` and ``item_id``). Elliot (github.com/sisinflab/elliot)
  reads the folder named by ``visual_features`` file by file, taking each file's stem as an
  integer item id (``elliot/dataset/modular_loaders/visual/visual_attribute.py``), so the folder
  holds nothing else and ``itemId`` is the set's row, as in :func:`export_split`'s Elliot files.

:func:`export_split` writes the study's split; :func:`export_study` (``python -m visrec_utils
export``) writes every set in every format and the split, with an ``exports.csv`` listing them.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.layout import StudyLayout
from ..core.store import atomic_write, read_json, write_json
from .embedding_sets import MANIFEST_COLUMNS, load_item_ids, read_manifest

log = logging.getLogger(__name__)

#: The formats :func:`export_embedding_set` writes (``"all"``: every one).
FORMATS = ("parquet", "cornac", "mmrec", "elliot")
#: Columns of the split tables (:func:`export_split`).
SPLIT_COLUMNS = ["user_id", "item_id", "user_idx", "item_idx", "timestamp"]


def _formats(format) -> list[str]:
    asked = [format] if isinstance(format, str) else list(format)
    if "all" in asked:
        return list(FORMATS)
    bad = [f for f in asked if f not in FORMATS]
    if bad or not asked:
        raise ValueError(f"format {bad[0] if bad else asked!r} is not an export format; choose from "
                         f"{', '.join(FORMATS)} or all")
    return list(dict.fromkeys(asked))


def select_sets(out_dir: str | os.PathLike, names: Sequence | None = None) -> list[dict]:
    """Manifest rows of the sets named in ``names`` (all sets when None), in manifest order.

    A name is a model name (every set of that model), ``<model>/<strategy>``, a set's file stem
    (``tf_efficientnet_lite0__frozen``), a ``(model, strategy)`` pair or a manifest row.

    Raises:
        ValueError: a name that matches no set (the message lists the sets and the closest
            name), or a study without embedding sets.
    """
    rows = read_manifest(out_dir).to_dict("records")
    if not rows:
        raise ValueError(f"{StudyLayout(out_dir).embeddings} holds no embedding set; run notebook 02 "
                         "(python -m visrec_utils study) first")
    if names is None:
        return rows
    chosen = []
    for name in names:
        if isinstance(name, Mapping):
            found = [r for r in rows if r["file"] == name.get("file")]
        elif isinstance(name, tuple):
            found = [r for r in rows if (r["model"], r["strategy"]) == tuple(name)]
        else:
            found = [r for r in rows if name in (r["model"], f"{r['model']}/{r['strategy']}", Path(r["file"]).stem)]
        if not found:
            known = [f"{r['model']}/{r['strategy']}" for r in rows]
            close = difflib.get_close_matches(str(name), known + [r["model"] for r in rows], n=1)
            raise ValueError(f"no embedding set named {name!r} in {StudyLayout(out_dir).embeddings}"
                             + (f" (did you mean {close[0]!r}?)" if close else "") + f"; sets: {', '.join(known)}")
        chosen += [r for r in found if r not in chosen]
    return chosen


def _provenance(out_dir, row: Mapping, fmt: str) -> dict:
    src = StudyLayout(out_dir).embeddings / row["file"]
    return {**{k: row[k] for k in MANIFEST_COLUMNS},
            "export": {"format": fmt, "source": str(src), "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}}


def _write_parquet(path: Path, ids: list[str], emb: np.ndarray, prov: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table({"item_id": pa.array(ids, type=pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])})
    table = table.replace_schema_metadata({b"visrec": json.dumps(prov, default=str).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _write_elliot_vectors(folder: Path, emb: np.ndarray) -> None:
    """One ``<row>.npy`` per row in a fresh folder, moved onto ``folder`` when complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".visual_features."))
    try:
        for i, vec in enumerate(np.asarray(emb, dtype=np.float32)):
            np.save(tmp / f"{i}.npy", vec)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def export_embedding_set(out_dir: str | os.PathLike, which, dest: str | os.PathLike, format="all") -> dict:
    """Write one embedding set in the given formats (module docstring) under ``dest``.

    Args:
        out_dir: study output folder.
        which: the set: a manifest row (:func:`read_manifest`), a ``(model, strategy)`` pair, or a
            name as :func:`select_sets` reads it that names one set.
        dest: destination folder (created).
        format: one of :data:`FORMATS`, ``"all"``, or a list of them.

    Returns:
        ``{format: path}``: the Parquet file, or the format's folder for the others.

    Raises:
        ValueError: an unknown format, no such set or a name matching several sets, or a set
            saved without its item ids (rerun the notebook that wrote it).
    """
    formats = _formats(format)
    found = select_sets(out_dir, [which])
    if len(found) > 1:
        raise ValueError(f"{which!r} names {len(found)} embedding sets "
                         f"({', '.join(r['model'] + '/' + r['strategy'] for r in found)}); name one as <model>/<strategy>")
    row = found[0]
    ids = load_item_ids(out_dir, row)
    if ids is None:
        raise ValueError(f"embedding set {row['model']}/{row['strategy']} ({row['file']}) was saved without its item "
                         "ids, so its rows cannot be named; rerun the notebook that wrote it")
    emb = np.load(StudyLayout(out_dir).embeddings / row["file"])
    stem, dest = Path(row["file"]).stem, Path(dest)
    written = {}
    for fmt in formats:
        prov = _provenance(out_dir, row, fmt)
        if fmt == "parquet":
            path = dest / "parquet" / f"{stem}.parquet"
            _write_parquet(path, ids, emb, prov)
            write_json(path.with_suffix(".json"), prov, indent=2)
        else:
            path = dest / fmt / stem
            if fmt == "cornac":
                atomic_write(path / "features.npy", lambda tmp: np.save(tmp, emb.astype(np.float32, copy=False)))
                atomic_write(path / "item_ids.txt", lambda tmp: Path(tmp).write_text("".join(f"{i}\n" for i in ids),
                                                                                     encoding="utf-8"))
            elif fmt == "mmrec":
                atomic_write(path / "image_feat.npy", lambda tmp: np.save(tmp, emb.astype(np.float32, copy=False)))
                mapping = pd.DataFrame({"item_id": ids, "itemID": np.arange(len(ids))})
                atomic_write(path / "i_id_mapping.csv", lambda tmp: mapping.to_csv(tmp, sep="\t", index=False))
            else:
                _write_elliot_vectors(path / "visual_features", emb)
                mapping = pd.DataFrame({"itemId": np.arange(len(ids)), "item_id": ids})
                atomic_write(path / "item_mapping.tsv", lambda tmp: mapping.to_csv(tmp, sep="\t", index=False))
            write_json(path / "provenance.json", prov, indent=2)
        written[fmt] = path
    return written


def _study_split_params(out_dir, protocol: str | None = None) -> tuple[str, dict]:
    """The main protocol (unless ``protocol`` is given) and its :func:`make_split` keywords as the
    study's notebook 04 used them (``results/run.json`` parameters; notebook 04's defaults where absent)."""
    from ..catalogue.protocols import COMMON_PARAMS, study_params

    given = (read_json(StudyLayout(out_dir).result("run")) or {}).get("parameters", {})
    protocol = protocol or given.get("protocol", "leave_last_basket_out")
    names = {"availability": "availability", "one_of_a_kind": "one_of_a_kind", "seed": "seed", "cut": "temporal_cut"}
    kw = {k: given.get(p, COMMON_PARAMS[k]) for k, p in names.items()}
    return protocol, study_params(protocol, **kw)


def split_tables(cat, protocol: str = "leave_last_basket_out", **split_kwargs) -> dict:
    """The train, validation and test interactions of ``protocol`` on ``cat``.

    ``test``: the truth of every test point of the study's split (one row per held-out item, at
    the point's test time); ``validation``: the same protocol applied again to the split's
    training interactions (e.g. each user's last training basket); ``train``: what is left, no
    validation or test purchase in it. A nested split without a test point leaves
    ``validation`` empty and ``train`` the whole training part.

    Args:
        cat: the study catalogue (:func:`visrec_utils.catalogue.data.load_study_catalogue`).
        protocol, **split_kwargs: as :func:`visrec_utils.catalogue.protocols.make_split`.

    Returns:
        ``{"train", "validation", "test"}`` -> DataFrame with :data:`SPLIT_COLUMNS`
        (``item_idx``: the item's row in ``cat``, the row of every study set; ``user_idx``: the
        user's position among the sorted user ids of the three tables; ``timestamp``
        datetime64), and ``"split"``: the outer :class:`~visrec_utils.catalogue.splits.Split`.
    """
    from ..catalogue.protocols import make_split
    from ..core.skips import PartSkipped

    def truth_rows(split):
        lens = [len(t) for t in split.truth]
        return pd.DataFrame({"user_id": np.repeat(split.users, lens).astype(str),
                             "item_idx": np.concatenate(split.truth).astype(np.int64) if lens else np.empty(0, np.int64),
                             "timestamp": np.repeat(split.test_day, lens)})

    outer = make_split(cat, protocol, **split_kwargs)
    train = outer.train[list(cat.interactions.columns)]
    try:
        inner = make_split(replace(cat, interactions=train.reset_index(drop=True)), protocol, **split_kwargs)
        tables = {"train": inner.train, "validation": truth_rows(inner)}
    except PartSkipped:  # e.g. a temporal cut that leaves no test user in the training part
        tables = {"train": outer.train, "validation": truth_rows(outer).iloc[:0]}
    tables["test"] = truth_rows(outer)
    ids = cat.items["item_id"].astype(str).to_numpy()
    users = np.unique(np.concatenate([t["user_id"].astype(str).to_numpy() for t in tables.values()]))
    out = {}
    for name, t in tables.items():
        t = t.assign(user_id=t["user_id"].astype(str), item_id=ids[t["item_idx"].to_numpy(dtype=np.int64)],
                     user_idx=np.searchsorted(users, t["user_id"].astype(str).to_numpy()))
        out[name] = t[SPLIT_COLUMNS].sort_values(["timestamp", "user_id", "item_idx"], kind="stable").reset_index(drop=True)
    out["split"] = outer
    return out


def export_split(out_dir: str | os.PathLike, dest: str | os.PathLike, protocol: str | None = None,
                 **split_kwargs) -> Path:
    """Write the study's split (:func:`split_tables` of its main protocol) under ``<dest>/split``.

    Files: ``{train,validation,test}.parquet`` and ``.csv`` (:data:`SPLIT_COLUMNS`);
    ``items.csv`` (``item_idx, item_id``, the study catalogue's rows) and ``users.csv``
    (``user_idx, user_id``); for MMRec ``visrec.inter`` (tab-separated ``userID, itemID,
    timestamp`` in Unix seconds and ``x_label`` 0/1/2 for train/validation/test, the columns of
    MMRec's ``RecDataset.load_inter_graph``) with ``i_id_mapping.csv`` and ``u_id_mapping.csv``;
    for Elliot ``elliot/{train,validation,test}.tsv`` (no header: ``userId, itemId, rating`` = 1,
    ``timestamp``, the columns of Elliot's ``DataSetLoader`` with ``strategy: fixed``); and
    ``split.json`` (protocol, its keywords, the split in words, row counts).

    Args:
        out_dir: study output folder (``data/`` of notebook 01; ``results/run.json`` gives the
            protocol and its settings when present).
        dest: destination folder.
        protocol, **split_kwargs: override the study's protocol and ``make_split`` keywords.

    Returns:
        the ``<dest>/split`` folder.

    Raises:
        DataError: no prepared catalogue in ``out_dir``; ValueError: an unknown protocol.
    """
    from ..catalogue.data import load_study_catalogue

    protocol, kw = _study_split_params(out_dir, protocol)
    kw.update(split_kwargs)
    cat = load_study_catalogue(out_dir)
    tables = split_tables(cat, protocol, **kw)
    d = Path(dest) / "split"
    for name in ("train", "validation", "test"):
        t = tables[name]
        atomic_write(d / f"{name}.parquet", lambda tmp: t.to_parquet(tmp, index=False))
        atomic_write(d / f"{name}.csv", lambda tmp: t.to_csv(tmp, index=False))
    items = pd.DataFrame({"item_idx": np.arange(cat.n_items), "item_id": cat.items["item_id"].astype(str)})
    both = pd.concat([tables[n] for n in ("train", "validation", "test")])
    users = both[["user_idx", "user_id"]].drop_duplicates().sort_values("user_idx")
    atomic_write(d / "items.csv", lambda tmp: items.to_csv(tmp, index=False))
    atomic_write(d / "users.csv", lambda tmp: users.to_csv(tmp, index=False))
    inter = pd.concat([tables[n].assign(x_label=i) for i, n in enumerate(("train", "validation", "test"))])
    seconds = {n: tables[n]["timestamp"].to_numpy("datetime64[s]").astype(np.int64) for n in ("train", "validation", "test")}
    mmrec = pd.DataFrame({"userID": inter["user_idx"], "itemID": inter["item_idx"],
                          "timestamp": np.concatenate(list(seconds.values())), "x_label": inter["x_label"]})
    atomic_write(d / "visrec.inter", lambda tmp: mmrec.to_csv(tmp, sep="\t", index=False))
    atomic_write(d / "i_id_mapping.csv", lambda tmp: items.rename(columns={"item_idx": "itemID"})[["item_id", "itemID"]]
                 .to_csv(tmp, sep="\t", index=False))
    atomic_write(d / "u_id_mapping.csv", lambda tmp: users.rename(columns={"user_idx": "userID"})[["user_id", "userID"]]
                 .to_csv(tmp, sep="\t", index=False))
    for name in ("train", "validation", "test"):
        t = tables[name]
        rows = pd.DataFrame({"userId": t["user_idx"], "itemId": t["item_idx"], "rating": 1, "timestamp": seconds[name]})
        atomic_write(d / "elliot" / f"{name}.tsv", lambda tmp: rows.to_csv(tmp, sep="\t", index=False, header=False))
    write_json(d / "split.json", {"protocol": protocol, "parameters": kw, "describe": tables["split"].describe(),
                                  "rows": {n: len(tables[n]) for n in ("train", "validation", "test")},
                                  "n_items": cat.n_items, "n_users": len(users),
                                  # MMRec sizes its item table by the largest itemID in the .inter file
                                  "mmrec_item_num": int(mmrec["itemID"].max()) + 1 if len(mmrec) else 0}, indent=2)
    return d


def export_study(out_dir: str | os.PathLike, dest: str | os.PathLike, format="all", sets: Sequence | None = None,
                 split: bool = True) -> pd.DataFrame:
    """Export the named sets (all when None) in ``format`` and, unless ``split=False``, the split.

    Writes ``<dest>/exports.csv``: one row per (set, format) with ``model, strategy, format,
    path, n_items, dim`` (and one ``split`` row). A set whose item ids are not the study
    catalogue's rows gets a warning: its MMRec and Elliot indices are its own rows, not the
    split's ``item_idx``.

    Raises:
        ValueError: ``out_dir`` is not a folder, ``dest`` is ``out_dir`` itself, or as
            :func:`select_sets` and :func:`export_embedding_set`; DataError: the split without a
            prepared catalogue.
    """
    if not Path(out_dir).is_dir():
        raise ValueError(f"the study folder {out_dir} (--out) does not exist; name the folder a study wrote "
                         "(python -m visrec_utils study --out DIR)")
    if Path(dest).resolve() == Path(out_dir).resolve():
        raise ValueError(f"the destination {dest} (--to) is the study folder itself; name another folder, e.g. "
                         f"{Path(out_dir) / 'exports'}")
    formats = _formats(format)
    rows, written = select_sets(out_dir, sets), []
    study_ids = None
    if split:
        from ..catalogue.data import load_study_catalogue

        study_ids = load_study_catalogue(out_dir).items["item_id"].astype(str).tolist()
    for row in rows:
        paths = export_embedding_set(out_dir, row, dest, formats)
        if study_ids is not None and load_item_ids(out_dir, row) != study_ids and {"mmrec", "elliot"} & set(formats):
            log.warning("%s/%s: its rows are not the study catalogue's items, so its MMRec and Elliot item indices do "
                        "not match the exported split's item_idx", row["model"], row["strategy"])
        written += [{"model": row["model"], "strategy": row["strategy"], "format": f, "path": str(p),
                     "n_items": row["n_items"], "dim": row["dim"]} for f, p in paths.items()]
    if split:
        d = export_split(out_dir, dest)
        written.append({"model": "-", "strategy": "-", "format": "split", "path": str(d),
                        "n_items": len(study_ids), "dim": np.nan})
    table = pd.DataFrame(written, columns=["model", "strategy", "format", "path", "n_items", "dim"]).astype({"dim": "Int64"})
    atomic_write(Path(dest) / "exports.csv", lambda tmp: table.to_csv(tmp, index=False))
    return table
