"""Frozen pooled-feature extraction with a content-addressed on-disk cache.

An *embedding* here is the pooled penultimate feature vector of an ImageNet model
(``forward_features`` then ``forward_head(pre_logits=True)``, the timm API), one row per
image, ``(n_items, dim) float32``.

Speed: the model runs in ``channels_last`` memory format under ``torch.inference_mode``, and
optionally through ``torch.compile``; a fast path is used only when its output on the first
batch equals the plain NCHW forward within ``FAST_PATH_ATOL`` (else visrec falls back and
says so). Images are decoded in a DataLoader worker so decoding overlaps compute.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .models import LoadedModel

log = logging.getLogger(__name__)

CACHE_VERSION = "emb-v1"
FAST_PATH_ATOL = 1e-4
COMPILE_MIN_IMAGES = 2000


def default_cache_dir() -> Path:
    """``$VISREC_CACHE`` or ``~/.cache/visrec``."""
    return Path(os.environ.get("VISREC_CACHE") or Path.home() / ".cache" / "visrec")


class ImageError(ValueError):
    """An image file cannot be read; the message names the file."""


class _Images:
    """Map-style dataset: path -> preprocessed ``(3, H, W) float32`` tensor."""

    def __init__(self, paths: Sequence[str], transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as im:
                return self.transform(im.convert("RGB"))
        except Exception as e:
            raise ImageError(f"Cannot read image {self.paths[i]}: {type(e).__name__}: {e}") from e


class PooledFeatures:
    """Callable wrapper: images ``(B, 3, H, W)`` -> pooled features ``(B, dim)``."""

    def __new__(cls, model):
        import torch

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.forward_head(self.m.forward_features(x), pre_logits=True)

        return _M(model).eval()


def _loader(paths, transform, batch_size, num_workers):
    import torch

    return torch.utils.data.DataLoader(
        _Images(paths, transform), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, persistent_workers=False,
    )


def _fast_forward(pooled, first_batch, compile_mode: bool):
    """Return (forward callable, description) for the fastest path equal to plain NCHW."""
    import torch

    with torch.inference_mode():
        ref = pooled(first_batch)
    # a copy: Module.to() converts in place, and the plain reference must stay plain
    pooled_cl = copy.deepcopy(pooled).to(memory_format=torch.channels_last)
    candidates = []
    if compile_mode:
        try:
            # dynamic=False: the wrapper's forward is one code object for every model, and dynamo
            # would otherwise mark the input size dynamic on the second model (slow sympy codegen)
            for knob in ("recompile_limit", "cache_size_limit"):  # one recompile per model
                if hasattr(torch._dynamo.config, knob):
                    setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
            compiled = torch.compile(pooled_cl, dynamic=False)
            candidates.append(("channels_last+torch.compile", compiled))
        except Exception as e:  # pragma: no cover - depends on the toolchain
            log.warning("torch.compile unavailable (%s); using eager", e)
    candidates.append(("channels_last", pooled_cl))
    for desc, fn in candidates:
        try:
            with torch.inference_mode():
                out = fn(first_batch.contiguous(memory_format=torch.channels_last))
            diff = float((out - ref).abs().max())
        except Exception as e:  # compile failures surface on first call
            log.warning("%s failed (%s: %s); trying the next path", desc, type(e).__name__, e)
            continue
        if diff <= FAST_PATH_ATOL:
            return fn, f"{desc} (max abs diff vs plain {diff:.1e})", True
        log.warning("%s differs from plain forward by %.2e > %.0e; not used", desc, diff, FAST_PATH_ATOL)
    return pooled, "plain NCHW", False


def extract_embeddings(
    loaded: LoadedModel,
    paths: Sequence[str],
    batch_size: int = 32,
    num_workers: int | None = None,
    compile: bool | str = "auto",
    fast: bool = True,
    progress: bool = True,
    logits: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pooled penultimate features of ``paths`` under ``loaded``'s own preprocessing.

    Args:
        loaded: a model from :func:`visrec_utils.models.load_model`.
        paths: image files, in item order.
        batch_size: images per forward pass.
        num_workers: DataLoader decode workers (default 1: on a 2-core laptop one worker hides
            JPEG decoding behind the model; 0 decodes in the main process).
        compile: True, False or "auto" (compile when there are at least
            ``COMPILE_MIN_IMAGES`` images, so the compile time (5-40 s) pays off).
        fast: allow the channels_last / compiled path (used only when equal to plain forward
            within 1e-4 on the first batch).
        progress: show a tqdm bar.
        logits: also return ImageNet logits ``(n, 1000)`` from the model's classifier.

    Returns:
        ``(n_images, dim) float32`` embeddings (and ``(n_images, n_classes) float32`` logits).

    Raises:
        ImageError: an image cannot be decoded (the message names the file).
    """
    import torch
    from tqdm.auto import tqdm

    n = len(paths)
    model = loaded.model.eval()
    pooled = PooledFeatures(model)
    classifier = model.get_classifier() if logits else None
    workers = 1 if num_workers is None else num_workers
    if compile == "auto":
        compile = n >= COMPILE_MIN_IMAGES
    emb = np.empty((n, loaded.dim), dtype=np.float32)
    out_logits = np.empty((n, model.num_classes), dtype=np.float32) if logits else None
    forward, channels_last, desc = pooled, False, "plain NCHW"
    t0 = time.perf_counter()
    done = 0
    bar = tqdm(total=n, desc=f"embeddings {loaded.spec.name}", unit="img", disable=not progress)
    with torch.inference_mode():
        for bi, x in enumerate(_loader(paths, loaded.transform(), batch_size, workers)):
            if bi == 0 and fast:
                forward, desc, channels_last = _fast_forward(pooled, x, bool(compile))
                log.info("%s: using %s", loaded.spec.name, desc)
            b = x.shape[0]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if b < batch_size and bi > 0 and compile:
                # pad the last batch to the compiled shape instead of recompiling
                pad = x.new_zeros((batch_size - b, *x.shape[1:]))
                feats = forward(torch.cat([x, pad]))[:b]
            else:
                feats = forward(x)
            emb[done:done + b] = feats.float().numpy()
            if logits:
                out_logits[done:done + b] = classifier(feats).float().numpy()
            done += b
            bar.update(b)
    bar.close()
    dt = time.perf_counter() - t0
    log.info("%s: %d images in %.1f s (%.1f img/s, %s)", loaded.spec.name, n, dt, n / max(dt, 1e-9), desc)
    extract_embeddings.last_run = {"model": loaded.spec.name, "n": n, "seconds": dt, "path": desc}
    return (emb, out_logits) if logits else emb


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
        h.update(f"{iid}|{file_sha256(p)}\n".encode())
    return h.hexdigest()


def cache_key(loaded: LoadedModel, image_set: str) -> str:
    """Cache key of an embedding set: model name, weights hash, preprocessing, image set."""
    payload = {
        "version": CACHE_VERSION,
        "model": loaded.spec.name,
        "weights_sha256": loaded.weights_sha256,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "image_set": image_set,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _atomic_save_npz(path: Path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached_embeddings(
    loaded: LoadedModel,
    item_ids: Sequence[str],
    paths: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    **extract_kwargs,
) -> tuple[np.ndarray, dict]:
    """Embeddings of the given images, computed once and then read from a content-keyed cache.

    The key covers the model name, the weights hash, the preprocessing config and the sha256 of
    every image's bytes, so a changed weight file, preprocessing or image invalidates the entry
    and nothing else does. Writes are atomic (temporary file + rename).

    Args:
        loaded: model from :func:`visrec_utils.models.load_model`.
        item_ids: ids in row order, ``(n_items,)``.
        paths: image paths aligned with ``item_ids``.
        cache_dir: cache folder (default :func:`default_cache_dir`).
        **extract_kwargs: passed to :func:`extract_embeddings`.

    Returns:
        (embeddings ``(n_items, dim) float32``, info dict with ``key``, ``path``, ``hit``,
        ``seconds``, ``fast_path``).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    key = cache_key(loaded, image_set_sha256(item_ids, paths))
    path = cache_dir / "embeddings" / f"{loaded.spec.name}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            emb = z["embeddings"]
            cached_ids = z["item_ids"]
        if list(cached_ids) == list(item_ids):
            return emb, {"key": key, "path": str(path), "hit": True,
                         "seconds": time.perf_counter() - t0, "fast_path": "cache"}
    emb = extract_embeddings(loaded, paths, **extract_kwargs)
    _atomic_save_npz(path, embeddings=emb, item_ids=np.asarray(item_ids, dtype=str))
    run = getattr(extract_embeddings, "last_run", {})
    return emb, {"key": key, "path": str(path), "hit": False,
                 "seconds": time.perf_counter() - t0, "fast_path": run.get("path", "")}


def imagenet_top1(
    loaded: LoadedModel, folder: str | os.PathLike, limit: int | None = None, **extract_kwargs
) -> dict:
    """Measured top-1 (percent) on a labelled ImageNet folder named ``<wnid>_<class>.JPEG``.

    The label of a file is the position of its wnid in the sorted list of the folder's wnids,
    which is the standard ILSVRC-2012 class index when the folder covers all 1,000 classes
    (as ``shared/data/imagenet_sample`` does).

    Returns:
        dict with ``top1`` (percent), ``n_images``, ``stderr`` (binomial, percent).

    Raises:
        ValueError: when the folder does not hold 1,000 distinct wnids.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    wnids = sorted({p.name.split("_")[0] for p in files})
    if len(wnids) != 1000:
        raise ValueError(f"{folder}: expected images of 1,000 ImageNet classes named <wnid>_<name>.JPEG, found {len(wnids)} wnids")
    index = {w: i for i, w in enumerate(wnids)}
    if limit:
        files = files[:limit]
    labels = np.array([index[p.name.split("_")[0]] for p in files])
    _, logit = extract_embeddings(loaded, [str(p) for p in files], logits=True, **extract_kwargs)
    correct = logit.argmax(1) == labels
    acc = float(correct.mean())
    return {"top1": 100 * acc, "n_images": int(len(files)),
            "stderr": 100 * float(np.sqrt(acc * (1 - acc) / len(files)))}


def save_embedding_set(out_dir: str | os.PathLike, model: str, strategy: str, emb: np.ndarray) -> Path:
    """Write ``<out_dir>/embeddings/<model>__<strategy>.npy`` (atomic), ``(n_items, dim) float32``."""
    d = Path(out_dir) / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{model}__{strategy}.npy"
    tmp = d / f".{model}__{strategy}.tmp.npy"
    np.save(tmp, np.asarray(emb, dtype=np.float32))
    os.replace(tmp, path)
    return path


def load_embedding_sets(out_dir: str | os.PathLike, models=None, strategies=None) -> dict:
    """Read the embedding sets of a study: ``{(model, strategy): (n_items, dim) float32}``.

    Args:
        models, strategies: keep only these (None = all found), in the given order.
    """
    found = {}
    for p in sorted((Path(out_dir) / "embeddings").glob("*__*.npy")):
        model, strategy = p.stem.split("__", 1)
        found[(model, strategy)] = p
    keys = [k for k in found if (models is None or k[0] in models) and (strategies is None or k[1] in strategies)]
    model_order = list(models) if models is not None else sorted({k[0] for k in keys})
    keys.sort(key=lambda k: (model_order.index(k[0]), k[1] != "frozen", k[1]))
    return {k: np.load(found[k]) for k in keys}


def embed_catalogue(model_names, items, out_dir, cache_dir=None, batch_size: int = 32,
                    imagenet_dir=None, imagenet_limit: int | None = None, progress: bool = True):
    """Frozen embeddings of every catalogue image for each model, plus a top-1 check.

    For each model: load it (a model whose weights cannot be had is reported as skipped with
    the reason, and the others go on), measure top-1 on ``imagenet_dir`` when given, extract or
    reuse cached embeddings, and save them as the ``frozen`` set of the study.

    Args:
        model_names: registry or timm names.
        items: catalogue items table (``item_id``, ``image_path``), in item order.
        out_dir: study output folder.
        cache_dir: embedding cache folder.
        imagenet_dir: labelled ImageNet folder for :func:`imagenet_top1`, or None to skip.

    Returns:
        DataFrame, one row per model: ``model, status, reason, arch, family, dim,
        published_top1, top1_source, measured_top1, measured_top1_stderr, n_imagenet, weights,
        weights_sha256, data_config, cache_hit, seconds, images_per_s, fast_path``.
    """
    from .models import ModelUnavailable, load_model

    rows = []
    ids, paths = items["item_id"].tolist(), items["image_path"].tolist()
    for name in model_names:
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
        if imagenet_dir:
            chk = imagenet_top1(loaded, imagenet_dir, limit=imagenet_limit, batch_size=batch_size,
                                progress=progress, compile=False)
            row.update(measured_top1=chk["top1"], measured_top1_stderr=chk["stderr"], n_imagenet=chk["n_images"])
        emb, info = cached_embeddings(loaded, ids, paths, cache_dir=cache_dir, batch_size=batch_size,
                                      progress=progress)
        save_embedding_set(out_dir, name, "frozen", emb)
        row.update(cache_hit=info["hit"], seconds=round(info["seconds"], 1),
                   images_per_s=round(len(ids) / max(info["seconds"], 1e-9), 1), fast_path=info["fast_path"])
        rows.append(row)
    table = pd.DataFrame(rows)
    (Path(out_dir) / "results").mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / "results" / "models.csv", index=False)
    return table
