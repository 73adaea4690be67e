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
:func:`visrec_utils.images.load_image` in a DataLoader worker, which sends ``uint8`` images: the
float conversion and normalisation run inside the OpenVINO graph, or on the device
(:func:`split_normalize`). An unreadable image does not stop extraction: its row is NaN and its
reason is listed.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .images import ImageError, load_image
from .models import LoadedModel

log = logging.getLogger(__name__)

FAST_PATH_ATOL = 1e-4
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


class _Images:
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


class Normalize:
    """``(B, 3, H, W) uint8`` images -> float32 ``(x / 255 - mean) / std``, the operations of
    torchvision's ``to_tensor`` and ``Normalize`` in their order (so bitwise equal to them)."""

    def __init__(self, mean, std):
        import torch

        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x):
        import torch

        return x.to(torch.float32).div(255).sub_(self.mean.to(x.device)).div_(self.std.to(x.device))


def split_normalize(transform):
    """Split an eval transform ending in ``ToTensor``/``MaybeToTensor`` + ``Normalize`` into a
    uint8 part for the decode worker and the float normalisation for the consumer.

    Decoding workers then send ``(3, H, W) uint8`` (a quarter of float32's bytes) and skip the
    float conversion, which cost as much as the JPEG decode itself (0.61 vs 0.56 ms per
    256x384 H&M image on one core). The split is used only when it reproduces ``transform``
    bit for bit on a test image.

    Returns:
        ``(uint8_transform, normalize)`` where ``normalize`` is a :class:`Normalize` (any device)
        and ``normalize(stack(uint8 outputs))`` equals stacking ``transform``'s outputs; or None when the transform has
        another shape (augmentations, custom code).
    """
    import torch
    from PIL import Image
    from torchvision import transforms as T

    steps = getattr(transform, "transforms", None)
    if not steps or len(steps) < 2 or not isinstance(steps[-1], T.Normalize) \
            or type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor") or steps[-1].inplace:
        return None
    head = T.Compose([*steps[:-2], T.PILToTensor()])
    normalize = Normalize(steps[-1].mean, steps[-1].std)
    probe = Image.fromarray(np.random.default_rng(0).integers(0, 256, (301, 397, 3), dtype=np.uint8))
    try:
        ok = torch.equal(normalize(head(probe)[None])[0], transform(probe))
    except Exception:  # a step that does not take or return a PIL image
        ok = False
    return (head, normalize) if ok else None


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


def openvino_forward(pooled, example, cache_xml: Path | None = None, normalize=None):
    """``pooled`` converted to OpenVINO and compiled for the CPU in float32 (never bf16, which
    this runtime would otherwise pick on CPUs that have it); dynamic batch and image size.

    Args:
        pooled: a ``torch.nn.Module``; example: a float input batch for tracing.
        cache_xml: where the converted model is kept (``.xml`` + ``.bin``); read when present.
        normalize: a :class:`Normalize`; the compiled model then takes ``uint8`` images and
            normalises them inside the graph (OpenVINO's PrePostProcessor: convert to f32,
            subtract ``255 * mean``, divide by ``255 * std``), on the runtime's threads.

    Returns:
        ``forward(x: torch.Tensor (B, 3, H, W)) -> torch.Tensor (B, dim)``; ``x`` is uint8
        with ``normalize``, else float32.

    Raises:
        ImportError: openvino is not installed; any conversion error of the model.
    """
    import openvino as ov
    import torch

    core = ov.Core()
    if cache_xml is not None and cache_xml.is_file() and cache_xml.with_suffix(".bin").is_file():
        model = core.read_model(str(cache_xml))
    else:
        import warnings

        with warnings.catch_warnings():  # torch.jit.trace's deprecation notices, raised inside OpenVINO
            warnings.simplefilter("ignore", FutureWarning)
            model = ov.convert_model(pooled, example_input=example)
        if cache_xml is not None:
            cache_xml.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_xml.with_name(cache_xml.stem + ".tmp.xml")
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(cache_xml.with_suffix(".bin"))
            tmp.replace(cache_xml)  # the .xml last: present only when both are complete
    if normalize is not None:
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NCHW"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32) \
            .mean([255.0 * float(v) for v in normalize.mean.flatten()]) \
            .scale([255.0 * float(v) for v in normalize.std.flatten()])
        model = ppp.build()
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: torch.from_numpy(compiled(x.numpy())[0])


def _openvino_cache(loaded: LoadedModel, shape, folder) -> Path | None:
    """``<folder>/openvino/<model>-<weights sha>-<H>x<W>-<openvino version>.xml``, or None."""
    try:
        import openvino as ov
    except ImportError:
        return None
    if folder is None:
        return None
    version = ov.__version__.split("-")[0]
    sha = (loaded.weights_sha256 or "noweights")[:16]
    return Path(folder) / "openvino" / f"{loaded.spec.name}-{sha}-{shape[-2]}x{shape[-1]}-{version}.xml"


MICRO_BATCHES = (8, 16, 32)


def pinned_micro_batch(forward, shape, key: str, cache: Path | None, seconds: float = 0.9, dtype=None) -> int:
    """Images per runtime call, chosen once by a short warm-up and pinned on disk.

    OpenVINO on a CPU runs small batches faster (cache locality; measured on 2 cores:
    Lite0 184 img/s at 8 vs 168 at 32, MobileNet-V1 0.25 1,545 vs 1,321): each size in
    :data:`MICRO_BATCHES` runs for ``seconds`` in all on random input and the fastest is stored in
    ``<cache>/micro_batch.json`` under ``key`` (model, weights, input size, runtime, cores), so
    later runs reuse it without measuring again (three interleaved rounds, best of each).

    Args:
        forward: ``(B, 3, H, W) tensor -> (B, dim)``; shape: one input batch's shape; dtype: its
            dtype (``torch.uint8`` for forwards that normalise inside, else float32).
        cache: folder of the json file (None: measure, do not store).

    Returns:
        the chosen micro-batch size.
    """
    import torch

    store = Path(cache) / "micro_batch.json" if cache is not None else None
    known = json.loads(store.read_text()) if store is not None and store.is_file() else {}
    if key in known:
        return int(known[key])
    x = torch.randint(0, 256, (max(MICRO_BATCHES), *shape[1:]), dtype=dtype) if dtype == torch.uint8 \
        else torch.randn(max(MICRO_BATCHES), *shape[1:])
    rates = dict.fromkeys(MICRO_BATCHES, 0.0)
    with torch.inference_mode():
        for b in MICRO_BATCHES:
            forward(x[:b])
        for _ in range(3):  # interleaved rounds, best of each: one busy moment cannot decide it
            for b in MICRO_BATCHES:
                t0, n = time.perf_counter(), 0
                while time.perf_counter() - t0 < seconds / 3:
                    forward(x[:b])
                    n += b
                rates[b] = max(rates[b], n / (time.perf_counter() - t0))
    best = max(rates, key=rates.get)
    if store is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
        known[key] = best
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.replace(store)
    log.info("micro-batch for %s: %d (%s img/s)", key, best, {b: round(r, 1) for b, r in rates.items()})
    return best


def micro_batch_key(name: str) -> str:
    """The :func:`pinned_micro_batch` key of a converted model (its cache file's stem) on this
    machine: the best size depends on the core count."""
    return f"{name}-{os.cpu_count()}cpu"


def _micro(forward, m: int):
    """``forward`` applied to slices of ``m`` images, concatenated."""
    import torch

    return lambda x: forward(x) if len(x) <= m else torch.cat([forward(x[i:i + m]) for i in range(0, len(x), m)])


CHECK_IMAGES = 8


def _fast_forward(pooled, first_batch, compile_mode: bool, runtime: str = "auto", cache_xml: Path | None = None,
                  normalize: Normalize | None = None):
    """Return (forward callable, description, channels_last?) for the fastest path equal to plain NCHW.

    ``first_batch`` is what the forward will be given: uint8 images with ``normalize`` (which
    OpenVINO then runs inside its graph and PyTorch before the model), else float32. The check
    runs on its first :data:`CHECK_IMAGES` images (the whole batch when compiling, so the
    compiled shape is the batch's); candidates are built only when the faster ones failed."""
    import torch

    check = first_batch if compile_mode else first_batch[:CHECK_IMAGES]
    prep = normalize or (lambda x: x)
    with torch.inference_mode():
        ref = pooled(prep(check))
        float_batch = prep(first_batch)

    def channels_last():
        # a copy: Module.to() converts in place, and the plain reference must stay plain
        return copy.deepcopy(pooled).to(memory_format=torch.channels_last)

    def normalized(fn):
        return fn if normalize is None else (lambda x: fn(normalize(x)))

    def compiled():
        for knob in ("recompile_limit", "cache_size_limit"):  # one recompile per model
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
        # dynamic=False: the wrapper's forward is one code object for every model, and dynamo
        # would otherwise mark the input size dynamic on the second model (slow sympy codegen)
        return normalized(torch.compile(channels_last(), dynamic=False))

    candidates = []
    if runtime in ("auto", "openvino") and first_batch.device.type == "cpu":
        candidates.append(("openvino", lambda: openvino_forward(pooled, float_batch, cache_xml, normalize), False))
    if compile_mode:
        candidates.append(("channels_last+torch.compile", compiled, True))
    candidates.append(("channels_last", lambda: normalized(channels_last()), True))
    for desc, build, cl in candidates:
        try:
            fn = build()
        except Exception as e:  # not installed, or the model does not convert / compile
            quiet = desc == "openvino" and runtime == "auto"
            (log.info if quiet else log.warning)("%s unavailable (%s: %s); trying the next path",
                                                 desc, type(e).__name__, e)
            continue
        try:
            with torch.inference_mode():
                out = fn(check.contiguous(memory_format=torch.channels_last) if cl else check)
            diff = float((out - ref).abs().max())
        except Exception as e:  # compile failures surface on the first call
            log.warning("%s failed (%s: %s); trying the next path", desc, type(e).__name__, e)
            continue
        if diff <= FAST_PATH_ATOL:
            return fn, f"{desc} (max abs diff vs plain {diff:.1e})", cl
        log.warning("%s differs from plain forward by %.2e > %.0e; not used", desc, diff, FAST_PATH_ATOL)
    return normalized(pooled), "plain NCHW", False


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
) -> Extraction:
    """Pooled penultimate features of ``paths`` under ``loaded``'s own preprocessing.

    Args:
        loaded: a model from :func:`visrec_utils.models.load_model`.
        paths: image files, in item order.
        batch_size: images per forward pass.
        num_workers: DataLoader decode workers (default 1; 0 decodes in the main process).
        compile: True, False or "auto" (compile when there are at least
            :data:`COMPILE_MIN_IMAGES` images, so the compile time, 5-40 s, pays off).
        fast: allow the channels_last / compiled path (used only when equal to the plain
            forward within 1e-4 on the first batch).
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
            :func:`visrec_utils.embeddings.cached_embeddings`); on the CPU, bfloat16 keeps only 8
            mantissa bits: MobileNet-V1 0.25 rows had cosine 0.97-0.996 to float32 (64 H&M images), so a
            warning is logged there.

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
    data = _Images(paths, tf, loaded.data_config["input_size"], seeds, torch.uint8 if split else None)
    plain = pooled if normalize is None else (lambda x: pooled(normalize(x)))
    forward, channels_last, desc, chosen = plain, False, "plain NCHW", not fast
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=device == "cuda")
    t0 = time.perf_counter()
    done = 0
    bar = tqdm(total=n, desc=f"embeddings {loaded.spec.name}", unit="img", disable=not progress)
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
                    xml = _openvino_cache(loaded, xs.shape, runtime_cache) if module is None else None
                    forward, desc, channels_last = _fast_forward(pooled, xs, bool(compile), runtime, xml, normalize)
                    if desc.startswith("openvino"):
                        name = xml.stem if xml is not None else (
                            f"{loaded.spec.name}-{type(pooled).__name__}-{emb.shape[1]}-{xs.shape[-2]}x{xs.shape[-1]}")
                        name += "-u8" if normalize is not None else ""
                        m = pinned_micro_batch(forward, xs.shape, micro_batch_key(name), runtime_cache, dtype=xs.dtype)
                        forward, desc = _micro(forward, m), f"{desc}, micro-batch {m}"
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
                    log.info("%s: using %s", loaded.spec.name, desc)
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
    log.info("%s: %d images in %.1f s (%.1f img/s, %s), %d unreadable", loaded.spec.name, n, dt,
             n / max(dt, 1e-9), desc, len(failed))
    return Extraction(emb, failed, out_logits, dt, desc)


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
    res = extract_embeddings(loaded, [str(p) for p in files], logits=True, **extract_kwargs)
    if res.failed:
        i, why = next(iter(res.failed.items()))
        raise ValueError(f"{files[i]}: {why}")
    acc = float((res.logits.argmax(1) == labels).mean())
    return {"top1": 100 * acc, "n_images": int(len(files)),
            "stderr": 100 * float(np.sqrt(acc * (1 - acc) / len(files)))}
