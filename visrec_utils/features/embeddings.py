"""Embeddings of a catalogue: content-keyed, chunked, resumable cache, and the frozen sets of a study.

The low-level extraction is :mod:`visrec_utils.features.extract`; this module decides what to extract,
caches it in the artefact store (:class:`visrec_utils.core.store.Store`, kind ``embeddings``) and
writes the study's frozen embedding sets with their provenance
(:mod:`visrec_utils.features.embedding_sets`: the sets and their manifest).

Cache: an entry is keyed (:func:`cache_key`) by the model name, the weights hash, the
preprocessing config and the sha256 of every image's bytes, so it is invalidated when weights,
preprocessing or image bytes change and never otherwise (moving the files keeps it). Extraction
writes the entry in chunks (:meth:`visrec_utils.core.store.Store.chunks`, atomic renames); a run
that is killed resumes from its last finished chunk and gives embeddings identical to an
uninterrupted run.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.backends import check_backend
from ..core.layout import StudyLayout
from ..core.memory import PeakRSS
from ..core.store import Store, atomic_write, content_key, default_cache_dir, file_sha256, write_json  # noqa: F401
from .entries import (CACHE_VERSION, CHUNK_IMAGES, ChunkRun, cache_key, image_set_sha256,  # noqa: F401
                      read_entry, run_in_chunks, write_entry)
from .embedding_sets import (PROVENANCE_COLUMNS, data_config_json, load_item_ids, model_provenance,
                             read_manifest, save_embedding_set)
from .extract import (FAST_PATH_ATOL, Extraction, ImageError, extract_embeddings,  # noqa: F401
                      imagenet_top1, resolve_compile)
from .models import LoadedModel

log = logging.getLogger(__name__)

#: How the pass that computed a set went (:func:`extraction_cost`), kept with the set's cache
#: entry so a later run that reads the set from the cache still reports them.
COST_COLUMNS = ["extract_images_per_s", "extract_peak_rss_gib", "extract_added_rss_gib", "extract_pass"]

MODEL_COLUMNS = ["model", "status", "reason", "arch", "family", "dim", "published_top1", "top1_source",
                 "measured_top1", "measured_top1_stderr", "n_imagenet", "weights", "weights_sha256",
                 "data_config", "cache_hit", "seconds", "images_per_s", "fast_path", "n_unreadable", "shared_pass",
                 "n_params", "gflops", "input_size", "pretrain_data", "pretrain_objective",
                 *COST_COLUMNS]


def extraction_cost(store: Store, info: dict, rate: float, peak: PeakRSS | None) -> dict:
    """``extract_images_per_s``, ``extract_peak_rss_gib``, ``extract_added_rss_gib`` and
    ``extract_pass`` of the pass that computed the set of ``info`` (``cached_embeddings`` /
    ``passes.cached_pass`` info with its cache ``key`` and ``hit``): measured now (``rate``,
    ``peak``: this process's RSS during the pass, :class:`visrec_utils.core.memory.PeakRSS`)
    and stored beside the entry (kind ``extraction_cost``), or read back from there on a cache
    hit; NaN where never measured (an entry from before the record, a Ray or mixed-precision run
    without a memory reading)."""
    name = info.get("name", "")
    if "key" not in info:  # no cache entry to keep the cost with
        return {c: np.nan if c != "extract_pass" else "" for c in COST_COLUMNS}
    if info["hit"]:
        known = store.get_json("extraction_cost", info["key"], name=name) or {}
        return {c: known.get(c, np.nan if c != "extract_pass" else "") for c in COST_COLUMNS}
    cost = {"extract_images_per_s": rate, "extract_pass": info.get("shared_pass", ""),
            "extract_peak_rss_gib": round(peak.gib, 2) if peak is not None else np.nan,
            "extract_added_rss_gib": round(peak.added_gib, 2) if peak is not None else np.nan}
    store.put_json("extraction_cost", info["key"], {k: (None if v != v else v) for k, v in cost.items()}, name=name)
    return cost


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

    The entry is ``Store(cache_dir)``'s ``("embeddings", key)`` with ``key`` =
    :func:`cache_key`: ``<cache_dir>/embeddings/<safe model name[-variant]>-<key>.npz``
    (:func:`visrec_utils.core.naming.safe_name`: a checkpoint path in the model's name stays out
    of the path). Extraction writes its parts through
    :meth:`visrec_utils.core.store.Store.chunks` (``<entry>.parts/chunk_<start>.npz``, atomic
    renames) every ``chunk_images`` images (rounded to whole batches, so batches are the same in
    a resumed and an uninterrupted run); when all chunks exist they are joined into the entry
    and the parts are removed. A killed run therefore resumes from its last finished chunk.

    Args:
        loaded: model from :func:`visrec_utils.features.models.load_model`.
        item_ids: ids in row order, ``(n_items,)``.
        paths: image paths aligned with ``item_ids``.
        cache_dir: store root (default :func:`visrec_utils.core.store.default_cache_dir`).
        chunk_images: images per chunk file.
        batch_size: images per forward pass.
        image_set: :func:`image_set_sha256` of ``(item_ids, paths)`` when the caller already has
            it (hashing every image once per model is wasted I/O); computed when None.
        variant: names anything that changes the rows besides model and images (a ``module``,
            ``transform`` or ``seeds`` passed on); part of the cache key and file name.
        backend: ``"local"`` or ``"ray"`` (:func:`visrec_utils.features.ray_extract.ray_extract`;
            pooled features only); both write the same chunks, so either resumes the other's run.
        ray_address: Ray cluster address for ``backend="ray"`` (default: ``$RAY_ADDRESS``, else
            a local Ray).
        **extract_kwargs: passed to :func:`visrec_utils.features.extract.extract_embeddings`.

    Returns:
        (embeddings ``(n_items, dim) float32`` with NaN rows for unreadable images, info dict:
        ``key, name, path, hit, seconds, extracted`` (images run through the model in this call),
        ``failed`` ({item_id: reason}), ``fast_path``).

    Raises:
        ValueError: ``backend="ray"`` with a variant it cannot compute (module, transform,
            seeds, logits, amp).
    """
    store = Store(cache_dir)
    if extract_kwargs.get("amp"):  # mixed-precision rows are not the float32 rows: their own entry
        variant = f"{variant}+amp" if variant else "amp"
    t0 = time.perf_counter()
    n = len(item_ids)
    key = cache_key(loaded, image_set or image_set_sha256(item_ids, paths), variant)
    name = loaded.spec.name + (f"-{variant}" if variant else "")
    path = store.path("embeddings", key, ".npz", name)
    hit = read_entry(store, key, name, item_ids)
    if hit is not None:
        log.info("%s: embeddings of %d images read from the cache (%s)", loaded.spec.name, n, path.name)
        return hit[0], {"key": key, "name": name, "path": str(path), "hit": True, "extracted": 0,
                        "seconds": time.perf_counter() - t0, "failed": hit[1], "fast_path": "cache"}
    parts = store.chunks("embeddings", key, name)

    def extract(order, on_batch):
        # decided on the whole set, so a resumed run takes the same path
        compile_mode = resolve_compile(extract_kwargs.pop("compile", "auto"), n)
        extract_kwargs.setdefault("runtime_cache", store.root)
        if check_backend(backend) == "ray":
            from .ray_extract import ray_extract

            plain = {k: v for k, v in extract_kwargs.items() if v is not None and k in ("module", "transform", "seeds")}
            if plain or extract_kwargs.get("logits") or extract_kwargs.get("amp"):
                raise ValueError(f"backend='ray' extracts float32 pooled features only, not {sorted(plain) or ['logits/amp']}; "
                                 "use backend='local' for this variant")
            return ray_extract(loaded.spec.name, [paths[i] for i in order], dim=loaded.dim, batch_size=batch_size,
                               runtime=extract_kwargs.get("runtime", "auto"),
                               runtime_cache=None if extract_kwargs["runtime_cache"] is None
                               else str(extract_kwargs["runtime_cache"]), weights_sha256=loaded.weights_sha256,
                               address=ray_address, progress=extract_kwargs.get("progress", True), on_batch=on_batch)
        return extract_embeddings(loaded, [paths[i] for i in order], batch_size=batch_size,
                                  compile=compile_mode, on_batch=on_batch, **extract_kwargs)

    emb, reasons, run = run_in_chunks(parts, n, chunk_images, batch_size, extract, loaded.spec.name)
    if emb is None:
        emb = np.zeros((0, loaded.dim), np.float32)
    failed = {item_ids[i]: r for i, r in enumerate(reasons) if r}
    write_entry(store, key, name, emb, item_ids, failed)
    parts.discard()
    return emb, {"key": key, "name": name, "path": str(path), "hit": False, "extracted": int(run.n if run else 0),
                 "seconds": time.perf_counter() - t0, "failed": failed, "fast_path": run.path if run else "resumed chunks"}


def cached_imagenet_top1(loaded: LoadedModel, folder, limit: int | None = None, cache_dir=None,
                         **extract_kwargs) -> dict:
    """:func:`visrec_utils.features.extract.imagenet_top1`, cached in the store (kind ``top1``) by
    model, weights, preprocessing, the bytes of the labelled images and ``limit`` (a rerun with
    nothing changed costs a hash of the folder).

    Returns:
        dict with ``top1`` (percent), ``n_images``, ``stderr`` and ``hit`` (bool).

    Raises:
        ValueError: as :func:`visrec_utils.features.extract.imagenet_top1`.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    key = cache_key(loaded, image_set_sha256([f.name for f in files], [str(f) for f in files]) + f"|limit={limit}")
    store = Store(cache_dir)
    known = store.get_json("top1", key, name=loaded.spec.name)
    if known is not None:
        return {**known, "hit": True}
    res = imagenet_top1(loaded, folder, limit=limit, **extract_kwargs)
    store.put_json("top1", key, res, name=loaded.spec.name)
    return {**res, "hit": False}


def embed_catalogue(model_names, cat, out_dir, cache_dir=None, batch_size: int = 32,
                    imagenet_dir=None, imagenet_limit: int | None = None, progress: bool = True,
                    backend: str = "local", ray_address: str | None = None, device: str = "auto",
                    amp: bool = False, activations=()):
    """Frozen embeddings of every catalogue image for each model, plus a top-1 check.

    For each model: load it (a model whose weights cannot be had is reported as skipped with
    the reason, and the others go on), measure top-1 on ``imagenet_dir`` when given, extract or
    reuse cached embeddings, and save them as the study's ``frozen`` set with its provenance
    (:func:`model_provenance`, the image set, the item ids). Embeddings that come with the
    catalogue (``cat.precomputed``, e.g. UGallery's ResNet50) are saved as they are, and so are
    features computed elsewhere, named ``file:/path/features.parquet[?top1=..]``
    (:mod:`visrec_utils.features.feature_files`; catalogue items the file lacks are left out like
    unreadable images).
    Images that cannot be read are listed in ``results/unreadable_images.csv`` and every frozen
    set aligned with ``cat`` is saved again without their rows; ``<out>/data`` stays as notebook
    01 wrote it (later steps read :func:`visrec_utils.catalogue.data.load_study_catalogue`).

    Args:
        model_names: registry or timm names, controls, checkpoints or preset names
            (:func:`visrec_utils.features.models.get_spec`, :data:`visrec_utils.features.models.PRESETS`),
            or ``file:`` models (features computed elsewhere).
        cat: the prepared :class:`visrec_utils.catalogue.data.Catalogue` (not modified).
        out_dir: study output folder.
        cache_dir: store root for the embedding and top-1 caches.
        imagenet_dir: labelled ImageNet folder for :func:`imagenet_top1`, or None to skip.
        backend: ``"local"`` or ``"ray"`` for the catalogue's embeddings (the top-1 check
            always runs locally); ray_address: the Ray cluster (default ``$RAY_ADDRESS``, else a
            local Ray).
        device, amp: where the local backend runs the model, and whether in mixed precision
            (:func:`visrec_utils.features.extract.extract_embeddings`).
        activations: ``(model, n_stages)`` pairs: the activations entering the last ``n_stages``
            blocks of these models (notebook 03's stage strategies) are computed in the same pass
            and cached for :func:`visrec_utils.tuning.stage_tuning.cached_activations`; a model
            not among ``model_names`` or outside timm's EfficientNet/MobileNet family is left out.

    Passes: on the local backend in float32, the sets of models with the same preprocessing share
    one pass over the images (:mod:`visrec_utils.features.passes`): each image is decoded once,
    each network runs once, and a layer variant and the activations are taps of their backbone's
    forward; rows equal a single extraction's bit for bit (tested) and go to the same cache
    entries. ``seconds`` and ``images_per_s`` of models sharing a pass are the pass's, named in
    ``shared_pass`` ("" for a set alone in its pass, extracted by :func:`cached_embeddings`). Ray and
    mixed precision extract each model alone.

    Returns:
        (models: one row per model with ``model, status, reason, arch, family, dim,
        published_top1, top1_source, measured_top1, measured_top1_stderr, n_imagenet, weights,
        weights_sha256, data_config, cache_hit, seconds, images_per_s, fast_path, n_unreadable,
        shared_pass, n_params, gflops, input_size`` (px), ``pretrain_data, pretrain_objective``
        (:mod:`visrec_utils.features.model_cost`) and :data:`COST_COLUMNS` (the images/s and this
        process's peak RSS, and that above its RSS before, of the pass that computed the set,
        also on a cache hit: :func:`extraction_cost`);
        unreadable: ``item_id, reason, image_path`` of the images left out)
    """
    from . import model_cost, passes
    from .feature_files import import_file_models, is_file_model
    from .models import ModelUnavailable, expand_presets, load_model

    model_names = expand_presets(model_names)
    files, model_names = [n for n in model_names if is_file_model(n)], [n for n in model_names if not is_file_model(n)]

    rows, failed = [], {}
    ids = cat.items["item_id"].tolist()
    paths = cat.items["image_path"].tolist()
    has_images = cat.items["image_path"].notna().all() and len(ids) > 0
    image_set = image_set_sha256(ids, paths) if has_images and model_names else None  # once, for every model
    for name, emb in cat.precomputed.items():
        save_embedding_set(out_dir, name, "frozen", emb, item_ids=ids)
        rows.append({"model": name, "status": "precomputed", "reason": "embeddings shipped with the catalogue",
                     "dim": emb.shape[1], "published_top1": np.nan, "top1_source": "unknown checkpoint"})
    for got in import_file_models(files, ids):  # features computed elsewhere: saved like the shipped ones
        save_embedding_set(out_dir, got.model.name, "frozen", got.embeddings, item_ids=ids, provenance=got.provenance)
        failed.update(got.missing)
        rows.append(got.model_row)
    loaded_models, taps = {}, []
    for name in model_names:
        if not has_images:
            rows.append({"model": name, "status": "skipped", "reason": "the catalogue has no images"})
            continue
        try:
            loaded = load_model(name)
        except ModelUnavailable as e:
            log.warning("%s skipped: %s", name, e)
            rows.append({"model": name, "status": "skipped", "reason": str(e)})
            continue
        spec = loaded.spec
        row = {"model": name, "status": "ok", "reason": "", "arch": spec.arch, "family": spec.family,
               "dim": loaded.dim, "published_top1": spec.published_top1, "top1_source": spec.top1_source,
               "weights": spec.weights, "weights_sha256": loaded.weights_sha256,
               "data_config": data_config_json(loaded.data_config)}
        if imagenet_dir and getattr(loaded.model, "num_classes", 0):  # controls without a classifier: no check
            chk = cached_imagenet_top1(loaded, imagenet_dir, limit=imagenet_limit, cache_dir=cache_dir,
                                       batch_size=batch_size, progress=progress, compile=False)
            row.update(measured_top1=chk["top1"], measured_top1_stderr=chk["stderr"], n_imagenet=chk["n_images"])
        row.update(**model_cost.network_cost(loaded), **model_cost.pretraining(loaded),
                   input_size=int(loaded.data_config["input_size"][-1]) if "input_size" in loaded.data_config else np.nan)
        rows.append(row)
        loaded_models[name] = loaded
        taps.append(passes.taps_of(loaded))
    for model, n_stages in activations:
        tap = passes.activation_tap(loaded_models[model], int(n_stages)) if model in loaded_models else None
        if tap is not None:
            taps.append(tap)
    shared = backend == "local" and not amp
    plan = passes.plan_passes(taps) if shared else [passes.Pass(t.loaded.data_config, [], [t]) for t in taps]
    by_name = {r["model"]: r for r in rows}
    for p in plan:
        with PeakRSS() as peak:
            if shared and (len(p.taps) > 1 or p.taps[0].kind == "act"):
                got = passes.cached_pass(p, ids, paths, image_set, cache_dir=cache_dir, batch_size=batch_size,
                                         progress=progress, device=device)
            else:
                t = p.taps[0]
                got = {t.name: cached_embeddings(t.loaded, ids, paths, cache_dir=cache_dir, batch_size=batch_size,
                                                 image_set=image_set, progress=progress, backend=backend,
                                                 ray_address=ray_address, device=device, amp=amp)}
        for t in p.taps:
            emb, info = got[t.name]
            failed.update(info["failed"])
            if t.kind == "act":  # cached for notebook 03, not an embedding set of the study
                continue
            save_embedding_set(out_dir, t.name, "frozen", emb, item_ids=ids,
                               provenance={**model_provenance(t.loaded), "image_set": image_set})
            rate = np.nan if info["hit"] else round(len(ids) / max(info["seconds"], 1e-9), 1)
            by_name[t.name].update(
                cache_hit=info["hit"], seconds=round(info["seconds"], 1), n_unreadable=len(info["failed"]),
                images_per_s=rate, fast_path=info["fast_path"], shared_pass=info.get("shared_pass", ""),
                **extraction_cost(Store(cache_dir), info, rate, peak if backend == "local" else None))
        for t in p.taps:  # this pass's networks are no longer needed
            loaded_models.pop(t.name, None)
    unreadable = pd.DataFrame({"item_id": list(failed), "reason": list(failed.values())})
    unreadable["image_path"] = unreadable["item_id"].map(dict(zip(ids, paths)))
    if failed:
        log.warning("%d unreadable image(s): their items are left out of the study", len(failed))
        keep = ~cat.items["item_id"].isin(set(failed)).to_numpy()
        kept_ids = [i for i, k in zip(ids, keep) if k]
        for r in read_manifest(out_dir).to_dict("records"):  # every frozen set of this catalogue loses the same rows
            if r["strategy"] != "frozen" or r["n_items"] != len(keep):
                continue
            if r["items"] and load_item_ids(out_dir, r) != ids:  # the ids say it is another catalogue's
                continue
            arr = np.load(StudyLayout(out_dir).embeddings / r["file"])
            save_embedding_set(out_dir, r["model"], r["strategy"], arr[keep], item_ids=kept_ids,
                               provenance={k: r[k] for k in PROVENANCE_COLUMNS})
    table = pd.DataFrame(rows).reindex(columns=MODEL_COLUMNS)
    layout = StudyLayout(out_dir)
    atomic_write(layout.result("models"), lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(layout.result("unreadable_images"), lambda tmp: unreadable.to_csv(tmp, index=False))
    return table, unreadable
