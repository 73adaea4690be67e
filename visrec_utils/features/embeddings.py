"""Embeddings of a catalogue: content-keyed, chunked, resumable cache and the study's embedding sets.

The low-level extraction is :mod:`visrec_utils.features.extract`; this module decides what to extract,
caches it on disk and keeps the study's embedding sets (``<out>/embeddings/*.npy``, listed with the
model and strategy names as given in a manifest row ``<stem>.json`` beside each array; file names
are safe keys from :mod:`visrec_utils.core.naming`).

Cache: an entry is keyed by the model name, the weights hash, the preprocessing config and the
sha256 of every image's bytes, so it is invalidated when weights, preprocessing or image bytes
change and never otherwise (moving the files keeps it). Extraction writes the entry in chunks
(atomic renames); a run that is killed resumes from its last finished chunk and gives embeddings
identical to an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.backends import check_backend
from .extract import (FAST_PATH_ATOL, Extraction, ImageError, extract_embeddings,  # noqa: F401
                      imagenet_top1, resolve_compile)
from .models import LoadedModel
from ..core.naming import safe_name, safe_stem

CACHE_VERSION = "emb-v2"
MODEL_COLUMNS = ["model", "status", "reason", "arch", "family", "dim", "published_top1", "top1_source",
                 "measured_top1", "measured_top1_stderr", "n_imagenet", "weights", "weights_sha256",
                 "data_config", "cache_hit", "seconds", "images_per_s", "fast_path", "n_unreadable"]
CHUNK_IMAGES = 1024


def default_cache_dir() -> Path:
    """``$VISREC_CACHE`` or ``~/.cache/visrec``."""
    return Path(os.environ.get("VISREC_CACHE") or Path.home() / ".cache" / "visrec")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def image_set_sha256(item_ids: Sequence[str], paths: Sequence[str]) -> str:
    """Content hash of an image set: sha256 over (item_id, sha256 of the image bytes), in order."""
    h = hashlib.sha256()
    for iid, p in zip(item_ids, paths):
        try:
            digest = file_sha256(p)
        except OSError as e:  # unreadable files get a stable marker; extraction reports them
            digest = f"unreadable:{type(e).__name__}"
        h.update(f"{iid}|{digest}\n".encode())
    return h.hexdigest()


def cache_key(loaded: LoadedModel, image_set: str, variant: str = "") -> str:
    """Cache key of an embedding set: model name, weights hash, preprocessing, image set, and
    ``variant`` (what else was computed: e.g. the activations entering the last stage)."""
    payload = {
        "version": CACHE_VERSION,
        "model": loaded.spec.name,
        "weights_sha256": loaded.weights_sha256,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "image_set": image_set,
    }
    if variant:
        payload["variant"] = variant
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path`` (readable by all, never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save_npz(path: Path, **arrays) -> None:
    """``np.savez`` to ``path`` through a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def _chunk_path(parts: Path, start: int) -> Path:
    return parts / f"chunk_{start:09d}.npz"


def cached_embeddings(
    loaded: LoadedModel,
    item_ids: Sequence[str],
    paths: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    chunk_images: int = CHUNK_IMAGES,
    batch_size: int = 32,
    image_set: str | None = None,
    variant: str = "",
    backend: str = "local",
    ray_address: str | None = None,
    **extract_kwargs,
) -> tuple[np.ndarray, dict]:
    """Embeddings of the given images, computed once, then read from the content-keyed cache.

    Extraction writes ``<entry>.parts/chunk_<start>.npz`` files (atomic renames) every
    ``chunk_images`` images (rounded to whole batches, so batches are the same in a resumed and
    an uninterrupted run); when all chunks exist they are joined into ``<entry>.npz`` and the
    parts are removed. A killed run therefore resumes from its last finished chunk. The entry is
    ``<cache_dir>/embeddings/<safe model name>[-<safe variant>]-<key>.npz``
    (:func:`visrec_utils.core.naming.safe_name`: a checkpoint path in the model's name stays out of
    the path).

    Args:
        loaded: model from :func:`visrec_utils.features.models.load_model`.
        item_ids: ids in row order, ``(n_items,)``.
        paths: image paths aligned with ``item_ids``.
        cache_dir: cache folder (default :func:`default_cache_dir`).
        chunk_images: images per chunk file.
        batch_size: images per forward pass.
        image_set: :func:`image_set_sha256` of ``(item_ids, paths)`` when the caller already has
            it (hashing every image once per model is wasted I/O); computed when None.
        variant: names anything that changes the rows besides model and images (a ``module``,
            ``transform`` or ``seeds`` passed on); part of the cache key and file name.
        backend: ``"local"`` or ``"ray"`` (:func:`visrec_utils.scaleout.ray_extract`; pooled
            features only); both write the same chunks, so either resumes the other's run.
        ray_address: Ray cluster address for ``backend="ray"`` (default: ``$RAY_ADDRESS``, else
            a local Ray).
        **extract_kwargs: passed to :func:`visrec_utils.features.extract.extract_embeddings`.

    Returns:
        (embeddings ``(n_items, dim) float32`` with NaN rows for unreadable images, info dict:
        ``key, path, hit, seconds, extracted`` (images run through the model in this call),
        ``failed`` ({item_id: reason}), ``fast_path``).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if extract_kwargs.get("amp"):  # mixed-precision rows are not the float32 rows: their own entry
        variant = f"{variant}+amp" if variant else "amp"
    t0 = time.perf_counter()
    n = len(item_ids)
    key = cache_key(loaded, image_set or image_set_sha256(item_ids, paths), variant)
    stem = safe_name(loaded.spec.name) + (f"-{safe_name(variant)}" if variant else "")
    path = cache_dir / "embeddings" / f"{stem}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if z["item_ids"].tolist() == list(item_ids):
                failed = dict(zip(z["failed_ids"].tolist(), z["failed_reasons"].tolist())) if "failed_ids" in z.files else {}
                return z["embeddings"], {"key": key, "path": str(path), "hit": True, "extracted": 0,
                                         "seconds": time.perf_counter() - t0, "failed": failed, "fast_path": "cache"}
    chunk = max(1, round(chunk_images / batch_size)) * batch_size
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, n, chunk))
    todo = [s for s in starts if not _chunk_path(parts, s).is_file()]
    order = np.concatenate([np.arange(s, min(s + chunk, n)) for s in todo]) if todo else np.zeros(0, int)
    buffers: dict[int, dict] = {}

    def on_batch(pos: int, rows: np.ndarray, reasons: list):
        for j in range(len(rows)):
            g = int(order[pos + j])
            s = g - g % chunk
            buf = buffers.setdefault(s, {"rows": {}, "reasons": {}})
            buf["rows"][g] = rows[j]
            buf["reasons"][g] = reasons[j]
            if len(buf["rows"]) == min(s + chunk, n) - s:
                idx = sorted(buf["rows"])
                atomic_save_npz(_chunk_path(parts, s), embeddings=np.stack([buf["rows"][i] for i in idx]),
                                 reasons=np.array([buf["reasons"][i] for i in idx], dtype=str))
                del buffers[s]

    run = None
    if len(order):
        # decided on the whole set, so a resumed run takes the same path
        compile_mode = resolve_compile(extract_kwargs.pop("compile", "auto"), n)
        extract_kwargs.setdefault("runtime_cache", cache_dir)
        if check_backend(backend) == "ray":
            from .ray_extract import ray_extract

            plain = {k: v for k, v in extract_kwargs.items() if v is not None and k in ("module", "transform", "seeds")}
            if plain or extract_kwargs.get("logits") or extract_kwargs.get("amp"):
                raise ValueError(f"backend='ray' extracts float32 pooled features only, not {sorted(plain) or ['logits/amp']}; "
                                 "use backend='local' for this variant")
            run = ray_extract(loaded.spec.name, [paths[i] for i in order], dim=loaded.dim, batch_size=batch_size,
                              runtime=extract_kwargs.get("runtime", "auto"), runtime_cache=str(cache_dir),
                              address=ray_address, progress=extract_kwargs.get("progress", True), on_batch=on_batch)
        else:
            run = extract_embeddings(loaded, [paths[i] for i in order], batch_size=batch_size,
                                     compile=compile_mode, on_batch=on_batch, **extract_kwargs)
    embs, reasons = [], []
    for s in starts:
        with np.load(_chunk_path(parts, s), allow_pickle=False) as z:
            embs.append(z["embeddings"])
            reasons.extend(z["reasons"].tolist())
    emb = np.concatenate(embs) if embs else np.zeros((0, loaded.dim), np.float32)
    bad = [i for i, r in enumerate(reasons) if r]
    failed = {item_ids[i]: reasons[i] for i in bad}
    atomic_save_npz(path, embeddings=emb, item_ids=np.asarray(item_ids, dtype=str),
                     failed_ids=np.asarray(list(failed), dtype=str), failed_reasons=np.asarray(list(failed.values()), dtype=str))
    shutil.rmtree(parts, ignore_errors=True)
    return emb, {"key": key, "path": str(path), "hit": False, "extracted": int(len(order)),
                 "seconds": time.perf_counter() - t0, "failed": failed, "fast_path": run.path if run else "resumed chunks"}


#: Columns of an embedding set's manifest row (its ``<stem>.json`` beside ``<stem>.npy``).
MANIFEST_COLUMNS = ("model", "strategy", "file", "n_items", "dim")


def read_manifest(out_dir: str | os.PathLike) -> list[dict]:
    """The study's embedding sets, one row each, read from the ``<stem>.json`` written beside
    every ``<stem>.npy`` in ``<out_dir>/embeddings/``.

    Each set carries its own manifest row, so a notebook that adds sets (03's fine-tuned ones)
    never rewrites a file that an earlier notebook (02) wrote.

    Returns:
        one dict per set, sorted by file: ``model`` and ``strategy`` exactly as given, ``file``
        (the array's file name inside ``embeddings/``, a :func:`visrec_utils.core.naming.safe_stem`),
        ``n_items`` and ``dim``. An array written before these rows existed is read from its
        ``<model>__<strategy>.npy`` file name (``n_items``/``dim`` then None); an empty or
        missing folder gives ``[]``.

    Raises:
        ValueError: a row that is not valid JSON or lacks a column (the message names the file).
    """
    d = Path(out_dir) / "embeddings"
    rows = []
    for arr in sorted(d.glob("*.npy")) if d.is_dir() else []:
        if arr.name.startswith("."):  # a write in progress or a crashed one
            continue
        side = arr.with_suffix(".json")
        if not side.is_file():
            if "__" in arr.stem:  # an output folder from before the rows: names from the file name
                model, strategy = arr.stem.split("__", 1)
                rows.append({"model": model, "strategy": strategy, "file": arr.name, "n_items": None, "dim": None})
            continue
        try:
            row = json.loads(side.read_text(encoding="utf-8"))
            rows.append({k: row[k] for k in MANIFEST_COLUMNS})
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{side} is not a visrec embedding-set manifest row ({type(e).__name__}: {e}); "
                             "delete it with its .npy and rerun the notebook that wrote it") from e
    return rows


def save_embedding_set(out_dir: str | os.PathLike, model: str, strategy: str, emb: np.ndarray) -> Path:
    """Write one embedding set, ``(n_items, dim) float32``, with its manifest row.

    The array goes to ``<out_dir>/embeddings/<safe_stem(model, strategy)>.npy``
    (:func:`visrec_utils.core.naming.safe_stem`: any model or strategy name, with paths, spaces or
    unicode, gives a portable file name, distinct for distinct names); ``<stem>.json`` beside it
    keeps the names as given (:func:`read_manifest`). Both writes are atomic; the array is
    written first, so a row never names a missing or partial file.

    Returns:
        the path of the array.
    """
    d = Path(out_dir) / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    emb = np.asarray(emb, dtype=np.float32)
    path = d / f"{safe_stem(model, strategy)}.npy"
    _atomic_write(path, lambda tmp: np.save(tmp, emb))
    row = {"model": model, "strategy": strategy, "file": path.name, "n_items": int(emb.shape[0]),
           "dim": int(emb.shape[1]) if emb.ndim == 2 else None}
    _atomic_write(path.with_suffix(".json"),
                  lambda tmp: Path(tmp).write_text(json.dumps(row, indent=1, ensure_ascii=False), encoding="utf-8"))
    return path


def load_embedding_sets(out_dir: str | os.PathLike, models=None, strategies=None) -> dict:
    """Read the embedding sets of a study: ``{(model, strategy): (n_items, dim) float32}``.

    Names are the ones given to :func:`save_embedding_set` (read from the manifest rows, never
    parsed from file names).

    Args:
        models, strategies: keep only these (None = all found), in the given order.
    """
    d = Path(out_dir) / "embeddings"
    found = {(r["model"], r["strategy"]): d / r["file"] for r in read_manifest(out_dir)}
    keys = [k for k in found if (models is None or k[0] in models) and (strategies is None or k[1] in strategies)]
    model_order = list(models) if models is not None else sorted({k[0] for k in keys})
    keys.sort(key=lambda k: (model_order.index(k[0]), k[1] != "frozen", k[1]))
    return {k: np.load(found[k]) for k in keys}


def cached_imagenet_top1(loaded: LoadedModel, folder, limit: int | None = None, cache_dir=None,
                         **extract_kwargs) -> dict:
    """:func:`visrec_utils.features.extract.imagenet_top1`, cached by model, weights, preprocessing and
    the bytes of the labelled images (a rerun with nothing changed costs a hash of the folder).

    Returns:
        dict with ``top1`` (percent), ``n_images``, ``stderr`` and ``hit`` (bool).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    key = cache_key(loaded, image_set_sha256([f.name for f in files], [str(f) for f in files]) + f"|limit={limit}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / "top1" / f"{safe_name(loaded.spec.name)}-{key}.json"
    if path.is_file():
        return {**json.loads(path.read_text()), "hit": True}
    res = imagenet_top1(loaded, folder, limit=limit, **extract_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, path)
    return {**res, "hit": False}


def embed_catalogue(model_names, cat, out_dir, cache_dir=None, batch_size: int = 32,
                    imagenet_dir=None, imagenet_limit: int | None = None, progress: bool = True,
                    backend: str = "local", ray_address: str | None = None, device: str = "auto",
                    amp: bool = False):
    """Frozen embeddings of every catalogue image for each model, plus a top-1 check.

    For each model: load it (a model whose weights cannot be had is reported as skipped with
    the reason, and the others go on), measure top-1 on ``imagenet_dir`` when given, extract or
    reuse cached embeddings, and save them as the study's ``frozen`` set. Embeddings that come
    with the catalogue (``cat.precomputed``, e.g. UGallery's ResNet50) are saved as they are.
    Images that cannot be read are listed with their reason; their items are left out of the
    study (catalogue and every embedding set) and counted in the validation report.

    Args:
        model_names: registry or timm names, controls, checkpoints or preset names
            (:func:`visrec_utils.features.models.get_spec`, :data:`visrec_utils.features.models.PRESETS`).
        cat: the prepared :class:`visrec_utils.catalogue.data.Catalogue` (re-saved if items are dropped).
        out_dir: study output folder.
        cache_dir: embedding cache folder.
        imagenet_dir: labelled ImageNet folder for :func:`imagenet_top1`, or None to skip.
        backend: ``"local"`` or ``"ray"`` for the catalogue's embeddings (the top-1 check
            always runs locally); ray_address: the Ray cluster (default ``$RAY_ADDRESS``, else a
            local Ray).
        device, amp: where the local backend runs the model, and whether in mixed precision
            (:func:`visrec_utils.features.extract.extract_embeddings`).

    Returns:
        (models: one row per model with ``model, status, reason, arch, family, dim,
        published_top1, top1_source, measured_top1, measured_top1_stderr, n_imagenet, weights,
        weights_sha256, data_config, cache_hit, seconds, images_per_s, fast_path, n_unreadable``;
        unreadable: ``item_id, image_path, reason`` of the images left out)
    """
    from ..catalogue.data import drop_items, save_prepared
    from .models import ModelUnavailable, expand_presets, load_model

    model_names = expand_presets(model_names)

    rows, failed = [], {}
    ids = cat.items["item_id"].tolist()
    paths = cat.items["image_path"].tolist()
    has_images = cat.items["image_path"].notna().all() and len(ids) > 0
    image_set = image_set_sha256(ids, paths) if has_images and model_names else None  # once, for every model
    for name, emb in cat.precomputed.items():
        save_embedding_set(out_dir, name, "frozen", emb)
        rows.append({"model": name, "status": "precomputed", "reason": "embeddings shipped with the catalogue",
                     "dim": emb.shape[1], "published_top1": np.nan, "top1_source": "unknown checkpoint"})
    for name in model_names:
        if not has_images:
            rows.append({"model": name, "status": "skipped", "reason": "the catalogue has no images"})
            continue
        try:
            loaded = load_model(name)
        except ModelUnavailable as e:
            rows.append({"model": name, "status": "skipped", "reason": str(e)})
            continue
        spec = loaded.spec
        row = {"model": name, "status": "ok", "reason": "", "arch": spec.arch, "family": spec.family,
               "dim": loaded.dim, "published_top1": spec.published_top1, "top1_source": spec.top1_source,
               "weights": spec.weights, "weights_sha256": loaded.weights_sha256,
               "data_config": json.dumps({k: list(v) if isinstance(v, tuple) else v
                                          for k, v in loaded.data_config.items()})}
        if imagenet_dir and getattr(loaded.model, "num_classes", 0):  # controls without a classifier: no check
            chk = cached_imagenet_top1(loaded, imagenet_dir, limit=imagenet_limit, cache_dir=cache_dir,
                                       batch_size=batch_size, progress=progress, compile=False)
            row.update(measured_top1=chk["top1"], measured_top1_stderr=chk["stderr"], n_imagenet=chk["n_images"])
        emb, info = cached_embeddings(loaded, ids, paths, cache_dir=cache_dir, batch_size=batch_size,
                                      image_set=image_set, progress=progress, backend=backend,
                                      ray_address=ray_address, device=device, amp=amp)
        save_embedding_set(out_dir, name, "frozen", emb)
        failed.update(info["failed"])
        row.update(cache_hit=info["hit"], seconds=round(info["seconds"], 1), n_unreadable=len(info["failed"]),
                   images_per_s=np.nan if info["hit"] else round(len(ids) / max(info["seconds"], 1e-9), 1),
                   fast_path=info["fast_path"])
        rows.append(row)
    unreadable = pd.DataFrame({"item_id": list(failed), "reason": list(failed.values())})
    unreadable["image_path"] = unreadable["item_id"].map(dict(zip(ids, paths)))
    if failed:
        keep = ~cat.items["item_id"].isin(set(failed)).to_numpy()
        for r in read_manifest(out_dir):  # every frozen set aligned with this catalogue loses the same rows
            arr = np.load(Path(out_dir) / "embeddings" / r["file"]) if r["strategy"] == "frozen" else None
            if arr is not None and len(arr) == len(keep):
                save_embedding_set(out_dir, r["model"], r["strategy"], arr[keep])
        reduced = drop_items(cat, set(failed), check="unreadable images",
                             examples=[f"{r.image_path}: {r.reason}" for r in unreadable.itertuples()])
        save_prepared(reduced, out_dir)
    table = pd.DataFrame(rows).reindex(columns=MODEL_COLUMNS)
    (Path(out_dir) / "results").mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / "results" / "models.csv", index=False)
    unreadable.to_csv(Path(out_dir) / "results" / "unreadable_images.csv", index=False)
    return table, unreadable
