"""Pooled-feature extraction: images in, ``(n_images, dim) float32`` embeddings out.

An *embedding* is the pooled penultimate feature vector of an ImageNet model
(``forward_features`` then ``forward_head(pre_logits=True)``, the timm API).

Speed: the model runs through the fastest CPU runtime that keeps the embeddings equal: OpenVINO
(float32 inference precision; its converted model is cached on disk per checkpoint), else
``torch.compile`` for large image sets, else ``channels_last`` eager PyTorch. A fast path is used
only when its output on the first batch equals the plain NCHW forward within
:data:`FAST_PATH_ATOL` (else visrec falls back and says so). Measured on 2 cores for
``tf_efficientnet_lite0`` (``benchmarks/extraction.py``): OpenVINO 157 img/s, ONNX Runtime 120,
``torch.compile`` about 70, plain NCHW 29. On a GPU the model stays in PyTorch. Images are decoded by
:func:`visrec_utils.features.images.load_image` in a DataLoader worker, which sends ``uint8`` images: the
float conversion and normalisation run inside the OpenVINO graph, or on the device
(:func:`visrec_utils.features.runtime.split_normalize`; the runtimes live in :mod:`visrec_utils.features.runtime`).
An unreadable image does not stop extraction: its row is NaN and its reason is listed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .images import ImageError, load_image
from .models import LoadedModel
from .runtime import (CHECK_IMAGES, FAST_PATH_ATOL, MICRO_BATCHES, Normalize, fast_forward,  # noqa: F401
                      micro_batched, openvino_cache_path, choose_forward, micro_batch_key, normalized,
                      openvino_forward, pinned_micro_batch, split_normalize)

log = logging.getLogger(__name__)

COMPILE_MIN_IMAGES = 2000

__all__ = ["Extraction", "extract_embeddings", "imagenet_top1", "ImageError", "FAST_PATH_ATOL"]


def resolve_compile(compile: bool | str, n_images: int) -> bool:
    """``"auto"`` -> compile when there are at least :data:`COMPILE_MIN_IMAGES` images (the
    5-40 s compile then pays off); True/False pass through."""
    return n_images >= COMPILE_MIN_IMAGES if compile == "auto" else bool(compile)


@dataclass
class Extraction:
    """Result of :func:`extract_embeddings`.

    Attributes:
        embeddings: ``(n_images, dim) float32``; rows of unreadable images are NaN.
        failed: ``{position: reason}`` of the images that could not be read.
        logits: ``(n_images, n_classes) float32`` ImageNet logits when asked for, else None.
        seconds: wall time.
        path: the forward path used (e.g. ``channels_last+torch.compile``).
    """

    embeddings: np.ndarray
    failed: dict = field(default_factory=dict)
    logits: np.ndarray | None = None
    seconds: float = 0.0
    path: str = ""


class ImageDataset:
    """Map-style dataset: index -> (preprocessed ``(3, H, W)`` tensor, "" or failure reason).

    With ``dtype=torch.uint8`` the transform is :func:`split_normalize`'s first part and the
    float conversion happens in the consumer (4x less data between processes)."""

    def __init__(self, paths: Sequence[str], transform, input_size, seeds: Sequence[int] | None = None,
                 dtype=None):
        self.paths = list(paths)
        self.transform = transform
        self.input_size = tuple(input_size)
        self.min_side = int(max(input_size[1:]) * 1.15)
        self.seeds = None if seeds is None else list(seeds)
        self.dtype = dtype

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import torch

        try:
            if self.seeds is not None:  # random augmentations, reproducible per image
                torch.manual_seed(int(self.seeds[i]))
            return self.transform(load_image(self.paths[i], min_side=self.min_side)), ""
        except ImageError as e:
            return torch.zeros(self.input_size, dtype=self.dtype), e.reason
        except Exception as e:  # a transform failing on a decoded image: still this file's fault
            return torch.zeros(self.input_size, dtype=self.dtype), f"preprocessing failed ({type(e).__name__}: {e})"


def PooledFeatures(model):
    """Wrap a timm model: images ``(B, 3, H, W)`` -> pooled penultimate features ``(B, dim)``."""
    import torch

    class _Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.forward_head(self.m.forward_features(x), pre_logits=True)

    return _Pooled(model).eval()


def extract_embeddings(
    loaded: LoadedModel,
    paths: Sequence[str],
    batch_size: int = 32,
    num_workers: int | None = None,
    compile: bool | str = "auto",
    fast: bool = True,
    progress: bool = True,
    logits: bool = False,
    on_batch: Callable[[int, np.ndarray, list], None] | None = None,
    module=None,
    dim: int | None = None,
    transform=None,
    seeds: Sequence[int] | None = None,
    runtime: str = "auto",
    runtime_cache: str | Path | None = None,
    device: str = "auto",
    amp: bool = False,
    label: str | None = None,
    task: str = "embeddings",
    module_key: str = "",
    pin: bool = True,
    forwards: dict | None = None,
) -> Extraction:
    """Pooled penultimate features of ``paths`` under ``loaded``'s own preprocessing.

    Args:
        loaded: a model from :func:`visrec_utils.features.models.load_model`.
        paths: image files, in item order.
        batch_size: images per forward pass.
        num_workers: DataLoader decode workers (default 1; 0 decodes in the main process).
        compile: True, False or "auto" (compile when there are at least
            :data:`COMPILE_MIN_IMAGES` images, so the compile time, 5-40 s, pays off).
        fast: allow the OpenVINO, channels_last and compiled paths (used only when equal to the
            plain forward within 1e-4 on the first batch); a model whose ``fast_paths`` attribute
            is False (the ``handcrafted`` control) always runs plain.
        progress: show a tqdm bar.
        logits: also compute ImageNet logits from the model's classifier.
        on_batch: called after every batch as ``on_batch(start, rows, reasons)`` with the
            position of the batch's first image, its ``(b, dim)`` rows and failure reasons
            ("" when read); the cache uses it to write chunks as they finish.
        module: a ``torch.nn.Module`` mapping images ``(B, 3, H, W)`` to ``(B, dim)`` rows, used
            instead of the pooled features (e.g. the flattened activations entering a stage).
        dim: row size of ``module``'s output (required with ``module``).
        transform: preprocessing instead of the model's eval transform (e.g. augmentations).
        seeds: per image, a torch seed set before ``transform`` (reproducible augmentations).
        runtime: ``"auto"`` (OpenVINO when installed and equal, else PyTorch), ``"openvino"``
            or ``"torch"``.
        runtime_cache: folder for converted models (OpenVINO IR), keyed by checkpoint and
            input size; only the plain pooled features are cached (not ``module``).
        device: ``"auto"`` (:func:`resolve_device`: CUDA, else MPS, else CPU), ``"cpu"``,
            ``"cuda"`` or ``"mps"``. On a GPU the model runs in PyTorch (OpenVINO is CPU only)
            with TF32 off, so float32 embeddings match the CPU's within :data:`FAST_PATH_ATOL`.
        amp: mixed precision (``torch.autocast``: float16 on CUDA/MPS, bfloat16 on CPU), meant
            for GPUs. Embeddings then differ from float32 (the cache keys them apart,
            :func:`visrec_utils.features.embeddings.cached_embeddings`); on the CPU, bfloat16 keeps only 8
            mantissa bits: MobileNet-V1 0.25 rows had cosine 0.97-0.996 to float32 (64 H&M images), so a
            warning is logged there.
        label: what the progress bar and log lines call this extraction (default the model's name).
        task: the progress bar's first word(s), before ``label`` (:func:`imagenet_top1`: "ImageNet top-1").
        module_key: names what ``module`` computes, so its converted OpenVINO model is cached in
            ``runtime_cache`` too (:func:`openvino_cache_path`'s ``variant``); "" converts a
            ``module`` anew each call.
        pin: measure and pin OpenVINO's micro-batch when none is pinned yet
            (:func:`~visrec_utils.features.runtime.pinned_micro_batch`, about 4 s); False uses the
            pinned size or the smallest (:func:`imagenet_top1`: 1,000 images, where the best size
            saves less than the measuring costs).
        forwards: a dict that keeps the chosen forward (runtime, conversion, equality check) across
            calls in this process, keyed by model name, input shape, converted-model path, runtime,
            device, normalisation and ``pin``, and used again only for the same model (and
            ``module``) object; the Ray backend's worker processes pass one, so each converts and
            checks a model once (about 1 s per call otherwise). None chooses anew each call.

    Returns:
        :class:`Extraction`; unreadable images are NaN rows listed in ``failed``, never errors.
    """
    import contextlib

    import torch
    from tqdm.auto import tqdm

    n = len(paths)
    device = resolve_device(device)
    runtime = "torch" if (amp or device != "cpu") else runtime
    model = loaded.model.eval()
    fast = fast and getattr(model, "fast_paths", True)
    pooled = PooledFeatures(model) if module is None else module.eval()
    pooled.to(device)
    if amp and device == "cpu":
        log.warning("amp on the CPU uses bfloat16: embeddings move (MobileNet-V1 0.25 rows: cosine 0.97-0.996 to "
                    "float32); use it on GPUs")
    amp_ctx = (lambda: torch.autocast(device, dtype=torch.bfloat16 if device == "cpu" else torch.float16)) if amp \
        else contextlib.nullcontext
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    classifier = model.get_classifier() if logits else None
    workers = 1 if num_workers is None else num_workers
    compile = resolve_compile(compile, n)
    emb = np.full((n, loaded.dim if module is None else int(dim)), np.nan, dtype=np.float32)
    out_logits = np.full((n, model.num_classes), np.nan, dtype=np.float32) if logits else None
    failed: dict[int, str] = {}
    tf = transform or loaded.transform()
    split = split_normalize(tf) if seeds is None else None
    normalize = None
    if split is not None:  # uint8 from the decode worker, normalised in the runtime or on the device
        tf, normalize = split
    data = ImageDataset(paths, tf, loaded.data_config["input_size"], seeds, torch.uint8 if split else None)
    forward = pooled if module is None and reads_uint8(model, normalize) else normalized(pooled, normalize)
    channels_last, desc, chosen = False, "plain NCHW", not fast
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=device == "cuda")
    t0 = time.perf_counter()
    done = 0
    label = label or loaded.spec.name
    bar = tqdm(total=n, desc=f"{task} {label}", unit="img", disable=not progress)
    with torch.inference_mode(), contextlib.ExitStack() as restore:
        restore.callback(pooled.to, "cpu")  # the loaded model goes back to the CPU afterwards
        restore.callback(_set_tf32, *tf32)
        for x, reasons in loader:
            b = x.shape[0]
            ok = np.array([r == "" for r in reasons])
            for j in np.flatnonzero(~ok):
                failed[done + j] = reasons[j]
            if ok.any():
                xs = (x[torch.from_numpy(ok)] if not ok.all() else x).to(device, non_blocking=True)
                if not chosen:
                    xml = (openvino_cache_path(loaded, xs.shape, runtime_cache, module_key)
                           if module is None or module_key else None)
                    name = f"{loaded.spec.name}-{type(pooled).__name__}-{emb.shape[1]}-{xs.shape[-2]}x{xs.shape[-1]}"
                    norm = None if normalize is None else (tuple(normalize.mean.flatten().tolist()),
                                                           tuple(normalize.std.flatten().tolist()))
                    known = (name, str(xml), runtime, bool(compile), device, norm, pin)
                    kept = forwards.get(known) if forwards is not None and not amp else None
                    if kept is not None and kept[0] is model and kept[1] is module:  # the same objects, not a reused id
                        forward, desc, channels_last = kept[2:]
                    else:
                        forward, desc, channels_last = choose_forward(pooled, xs, bool(compile), runtime, xml,
                                                                      normalize, runtime_cache, name, pin=pin)
                        if forwards is not None and not amp:  # amp forwards are never read back (above)
                            forwards[known] = (model, module, forward, desc, channels_last)
                    if device != "cpu":
                        desc = f"{device} {desc}"
                    if amp:
                        xf = xs if normalize is None else normalize(xs)
                        with amp_ctx():
                            low = pooled(xf).float()
                        full = pooled(xf)
                        rel = float((low - full).norm() / full.norm())
                        desc += f" + autocast ({'bfloat16' if device == 'cpu' else 'float16'}; relative diff {rel:.1e})"
                    chosen = True
                    log.info("%s: using %s", label, desc)
                if channels_last:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                k = xs.shape[0]
                if compile and channels_last and k < batch_size:
                    # pad a short batch to the compiled shape instead of recompiling
                    xs = torch.cat([xs, xs.new_zeros((batch_size - k, *xs.shape[1:]))])
                with amp_ctx():
                    feats = forward(xs)[:k].float()
                emb[done:done + b][ok] = feats.cpu().numpy()
                if logits:
                    out_logits[done:done + b][ok] = classifier(feats).float().cpu().numpy()
            if on_batch is not None:
                on_batch(done, emb[done:done + b], list(reasons))
            done += b
            bar.update(b)
    bar.close()
    dt = time.perf_counter() - t0
    log.info("%s: %d images in %.1f s (%.1f img/s, %s), %d unreadable", label, n, dt,
             n / max(dt, 1e-9), desc, len(failed))
    return Extraction(emb, failed, out_logits, dt, desc)


def reads_uint8(model, normalize) -> bool:
    """True when ``model`` takes the decoded ``(B, 3, H, W) uint8`` images itself (its
    ``uint8_input`` attribute, e.g. the ``handcrafted`` control) and ``normalize`` would only
    scale them to [0, 1] (mean 0, std 1): the float conversion is then skipped, the model reading
    the same 8-bit values."""
    return (normalize is not None and bool(getattr(model, "uint8_input", False))
            and bool((normalize.mean == 0).all()) and bool((normalize.std == 1).all()))


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"mps"``, else ``"cpu"``; names are checked.

    Raises:
        ValueError: an unknown name, or a device this machine does not have.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU here; use device='auto' or 'cpu'")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but this machine has no Apple GPU; use device='auto' or 'cpu'")
    return device


def _set_tf32(matmul: bool, cudnn: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def imagenet_top1(loaded: LoadedModel, folder, limit: int | None = None, **extract_kwargs) -> dict:
    """Measured top-1 (percent) on a labelled ImageNet folder named ``<wnid>_<class>.JPEG``.

    The label of a file is the position of its wnid in the sorted list of the folder's wnids,
    the standard ILSVRC-2012 class index when the folder covers all 1,000 classes (as
    ``shared/data/imagenet_sample`` does).

    Returns:
        dict with ``top1`` (percent), ``n_images``, ``stderr`` (binomial, percent).

    Raises:
        ValueError: the folder does not hold 1,000 distinct wnids, or an image is unreadable.
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
    extract_kwargs.setdefault("task", "ImageNet top-1")  # the bar says what the pass is for
    extract_kwargs.setdefault("pin", False)  # 1,000 images: pinning (~4 s) would cost more than it saves
    res = extract_embeddings(loaded, [str(p) for p in files], logits=True, **extract_kwargs)
    if res.failed:
        i, why = next(iter(res.failed.items()))
        raise ValueError(f"{files[i]}: {why}")
    acc = float((res.logits.argmax(1) == labels).mean())
    return {"top1": 100 * acc, "n_images": int(len(files)),
            "stderr": 100 * float(np.sqrt(acc * (1 - acc) / len(files)))}
