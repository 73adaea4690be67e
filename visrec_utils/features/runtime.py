"""Inference runtimes for extraction: OpenVINO (float32, converted model cached on disk),
``torch.compile`` and ``channels_last`` PyTorch, each used only when it equals the plain forward
within :data:`FAST_PATH_ATOL`; the uint8 transfer (:func:`split_normalize`) and pinned
micro-batches. :mod:`visrec_utils.features.extract` runs them; this module holds no image I/O.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..core.store import Store, atomic_write, content_key, read_json, write_json
from .models import LoadedModel

log = logging.getLogger(__name__)

#: Largest absolute difference from the plain NCHW float32 forward that a fast path may have.
#: A module may give each output column its own tolerance (a ``tolerance(ref) -> (dim,)`` method,
#: e.g. a shared pass's activations, :func:`visrec_utils.features.passes.pass_module`).
FAST_PATH_ATOL = 1e-4


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
        ``(uint8_transform, normalize)`` where ``normalize`` is a :class:`Normalize` (any
        device) and ``normalize(stack(uint8 outputs))`` equals stacking ``transform``'s outputs;
        or None when the transform has another shape (augmentations, custom code).
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
            model = _convert(pooled, example)
        if cache_xml is not None:
            save_ir(model, Path(cache_xml))
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


def _convert(pooled, example):
    """``ov.convert_model(pooled, example_input=example)``, traced without ``torch.jit.trace``'s
    check (a second and third forward that compare the trace with eager mode: 1.4 s of 4.6 s per
    Lite0 conversion; every converted forward is compared with the plain one anyway,
    :func:`fast_forward`). The same graph and weights: the IR differs only in node names and
    gives bit-identical outputs (measured on Lite0). Where this OpenVINO's decoder takes no
    ``trace_kwargs``, the plain conversion."""
    import openvino as ov

    try:
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder
        from openvino.tools.ovc.moc_frontend.pytorch_frontend_utils import prepare_torch_inputs

        decoder = TorchScriptPythonDecoder(pooled, example_input=prepare_torch_inputs(example), shared_memory=True,
                                           trace_kwargs={"check_trace": False})
    except (ImportError, TypeError):
        return ov.convert_model(pooled, example_input=example)
    return ov.convert_model(decoder)


def save_ir(model, xml: Path) -> None:
    """Save an OpenVINO model as ``xml`` + its ``.bin`` (float32 weights), each written atomically
    (:func:`visrec_utils.core.store.atomic_write`) and the ``.xml`` last, so a reader that finds
    the ``.xml`` finds both files complete; a killed or failed save leaves no partial entry."""
    import openvino as ov

    def write(tmp_xml: str) -> None:
        tmp_bin = Path(tmp_xml).with_suffix(".bin")  # where OpenVINO puts the weights of tmp_xml
        try:
            ov.save_model(model, tmp_xml, compress_to_fp16=False)
            atomic_write(xml.with_suffix(".bin"), lambda tmp: os.replace(tmp_bin, tmp))
        finally:
            if tmp_bin.exists():
                tmp_bin.unlink()

    atomic_write(xml, write)


def openvino_cache_path(loaded: LoadedModel, shape, folder, variant: str = "") -> Path | None:
    """Where the converted model of ``loaded`` for ``shape``'s input size is kept: the store
    entry ``Store(folder)``'s ``("openvino", key)``, i.e.
    ``<folder>/openvino/<safe model name>-<key>.xml`` (+ ``.bin``), ``key`` the
    :func:`visrec_utils.core.store.content_key` of the model name, weights sha256, input
    ``(H, W)``, OpenVINO version and ``variant`` when given (what the converted module computes
    besides the pooled features, e.g. a shared pass's taps); None when OpenVINO is not installed
    or ``folder`` is None."""
    try:
        import openvino as ov
    except ImportError:
        return None
    if folder is None:
        return None
    payload = {"model": loaded.spec.name, "weights_sha256": loaded.weights_sha256 or "noweights",
               "input": [int(shape[-2]), int(shape[-1])], "openvino": ov.__version__.split("-")[0]}
    if variant:
        payload["variant"] = variant
    key = content_key(payload)
    return Store(folder).path("openvino", key, ".xml", name=loaded.spec.name)


MICRO_BATCHES = (8, 16, 32)


def _pinned(store: Path | None) -> dict:
    """The pinned sizes in ``store`` ({} when there is none, or it is not a JSON object)."""
    known = read_json(store, {}) if store is not None else {}
    return known if isinstance(known, dict) else {}


def pinned_micro_batch(forward, shape, key: str, cache: Path | None, seconds: float = 0.9, dtype=None,
                       measure: bool = True) -> int:
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
        measure: False returns the pinned size, else the smallest of :data:`MICRO_BATCHES`,
            without measuring or storing anything.

    Returns:
        the chosen micro-batch size.
    """
    import torch

    store = Path(cache) / "micro_batch.json" if cache is not None else None
    known = _pinned(store)
    if key in known:
        return int(known[key])
    if not measure:
        return MICRO_BATCHES[0]
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
    if store is not None:  # read again just before writing: another process may have pinned its own keys
        known = {**_pinned(store), key: best}
        write_json(store, dict(sorted(known.items())))
    log.info("micro-batch for %s: %d (%s img/s)", key, best, {b: round(r, 1) for b, r in rates.items()})
    return best


def micro_batch_key(name: str, uint8: bool = False) -> str:
    """The :func:`pinned_micro_batch` key of a converted model (its cache file's stem) on this
    machine: the best size depends on the core count, and on whether the model takes uint8
    images (normalising inside)."""
    return f"{name}{'-u8' if uint8 else ''}-{os.cpu_count()}cpu"


def micro_batched(forward, m: int):
    """``forward`` applied to slices of ``m`` images along the batch axis, concatenated (the same
    rows as one call, ``(B, ...) -> (B, dim)``, in calls of at most ``m`` images)."""
    import torch

    return lambda x: forward(x) if len(x) <= m else torch.cat([forward(x[i:i + m]) for i in range(0, len(x), m)])


CHECK_IMAGES = 8


def normalized(fn, normalize: Normalize | None):
    """``fn`` preceded by ``normalize`` (uint8 images in), or ``fn`` itself when None."""
    return fn if normalize is None else (lambda x: fn(normalize(x)))


def fast_forward(pooled, first_batch, compile_mode: bool, runtime: str = "auto", cache_xml: Path | None = None,
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

    def channels_last():
        # a copy: Module.to() converts in place, and the plain reference must stay plain
        return copy.deepcopy(pooled).to(memory_format=torch.channels_last)

    def compiled():
        for knob in ("recompile_limit", "cache_size_limit"):  # one recompile per model
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
        # dynamic=False: the wrapper's forward is one code object for every model, and dynamo
        # would otherwise mark the input size dynamic on the second model (slow sympy codegen)
        return normalized(torch.compile(channels_last(), dynamic=False), normalize)

    candidates = []
    if runtime in ("auto", "openvino") and first_batch.device.type == "cpu":
        # the float batch only traces the conversion (skipped when the converted model is cached)
        candidates.append(("openvino", lambda: openvino_forward(pooled, prep(first_batch), cache_xml, normalize),
                           False))
    if compile_mode:
        candidates.append(("channels_last+torch.compile", compiled, True))
    candidates.append(("channels_last", lambda: normalized(channels_last(), normalize), True))
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
            tolerance = pooled.tolerance(ref) if hasattr(pooled, "tolerance") else FAST_PATH_ATOL
            close = bool(((out - ref).abs() <= tolerance).all())
        except Exception as e:  # compile failures surface on the first call
            log.warning("%s failed (%s: %s); trying the next path", desc, type(e).__name__, e)
            continue
        if close:
            return fn, f"{desc} (max abs diff vs plain {diff:.1e})", cl
        log.warning("%s differs from plain forward by %.2e, more than its tolerance (%.0e); not used", desc, diff,
                    FAST_PATH_ATOL)
    return normalized(pooled, normalize), "plain NCHW", False


def choose_forward(pooled, first_batch, compile_mode: bool, runtime: str = "auto", cache_xml: Path | None = None,
                   normalize: Normalize | None = None, runtime_cache: Path | None = None, name: str = "",
                   pin: bool = True):
    """:func:`fast_forward`, then, for OpenVINO, its micro-batch pinned by
    :func:`pinned_micro_batch` (keyed by ``cache_xml``'s stem, else ``name``). With ``pin=False``
    nothing is measured: the size pinned earlier, else the smallest of :data:`MICRO_BATCHES`
    (measuring takes about 4 s and gains at most about 10% of the throughput, so it pays off
    from about 4,000 images at 100 images/s).

    Returns:
        (forward callable, description, channels_last?)
    """
    forward, desc, cl = fast_forward(pooled, first_batch, compile_mode, runtime, cache_xml, normalize)
    if desc.startswith("openvino"):
        key = micro_batch_key(cache_xml.stem if cache_xml is not None else name, uint8=normalize is not None)
        m = pinned_micro_batch(forward, first_batch.shape, key, runtime_cache, dtype=first_batch.dtype, measure=pin)
        forward, desc = micro_batched(forward, m), f"{desc}, micro-batch {m}"
    return forward, desc, cl
