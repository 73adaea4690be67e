"""One pass over the images per preprocessing: every embedding set that can share a forward gets it.

A study asks for several embedding sets that are parts of the same computation: a model's final
pooled features, the pooled output of its earlier feature stages (the ``<model>@stage<i>`` layer
variants), the activations entering its last stage(s) that notebook 03's stage strategies train
on, and, with the same preprocessing, other networks altogether (``random_<model>``, another
model at the same input size). Run one by one, each is its own pass over the 17,033 H&M images:
decode, resize, forward. Here every set whose model has the same preprocessing (timm data config)
joins one pass: each image is decoded and transformed once, every network of the pass runs once
on it, and each network's forward yields every tap asked of it (timm's ``forward_intermediates``;
``extra_blocks=True`` reaches the input of any block, for the stage activations).

The rows of each set are stored under the cache key it has when extracted alone
(:func:`visrec_utils.features.embeddings.cache_key`: model name, weights, preprocessing, image set,
variant), so a set written by a shared pass is read by a later single extraction and the other
way round. The operations are those of the single forward (the same convolutions on the same
tensors, then the same pooling), so the rows agree with a single pass within the fast path's
tolerance (:data:`visrec_utils.features.runtime.FAST_PATH_ATOL`; measured on H&M: see
``benchmarks/extraction.py passes``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np

from .embedding_sets import data_config_json
from .models import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class Tap:
    """One embedding set computed inside a shared pass.

    Attributes:
        name: the set's name in logs (the model name; ``<model>:act<n>`` for stage activations).
        loaded: the model whose cache key the rows are stored under.
        variant: the cache variant (``""`` for pooled features, ``"act<n>"`` for activations).
        kind: ``"final"`` (pooled penultimate features), ``"stage"`` (average-pooled output of
            feature stage ``index``) or ``"act"`` (flattened input of block ``index``).
        index: feature-stage index (``stage``) or block index (``act``); -1 for ``final``.
        dim: row length.
        net: position of the network it taps in the pass (set by :func:`plan_passes`).
    """

    name: str
    loaded: LoadedModel
    variant: str
    kind: str
    index: int
    dim: int
    net: int = -1


@dataclass
class Pass:
    """Taps sharing one preprocessing: ``nets[i]`` is run once per image for its taps."""

    data_config: dict
    nets: list = field(default_factory=list)
    taps: list = field(default_factory=list)

    @property
    def dim(self) -> int:
        return sum(t.dim for t in self.taps)

    def describe(self) -> str:
        """e.g. ``tf_efficientnet_lite0 +5 sets, 2 networks`` (short: it heads a progress line)."""
        more = len(self.taps) - 1
        return self.taps[0].name + (f" +{more} set{'s' * (more > 1)}, {len(self.nets)} network"
                                    f"{'s' * (len(self.nets) > 1)}" if more else "")


def taps_of(loaded: LoadedModel) -> Tap:
    """The tap giving ``loaded``'s frozen embedding set: its final pooled features, or, for a
    ``<model>@stage<i>`` layer variant, the pooled output of stage ``i`` of the model it wraps."""
    spec = loaded.spec
    if spec.layer:
        return Tap(spec.name, loaded, "", "stage", int(spec.layer[len("stage"):]), loaded.dim)
    return Tap(spec.name, loaded, "", "final", -1, loaded.dim)


def activation_tap(loaded: LoadedModel, n_stages: int) -> Tap | None:
    """The tap of the activations entering the last ``n_stages`` blocks of ``loaded``'s model
    (what :func:`visrec_utils.tuning.stage_tuning.cached_activations` caches as variant
    ``act<n>``), ``(C*h*w,)`` per image; None for a model outside timm's EfficientNet/MobileNet
    family (no ``blocks``), or ``n_stages`` outside ``1 .. len(blocks) - 1``."""
    import torch

    m = loaded.model
    blocks = getattr(m, "blocks", None)
    if blocks is None or not hasattr(m, "conv_stem") or not 1 <= n_stages < len(blocks):
        return None
    cut = len(blocks) - n_stages
    with torch.no_grad():
        x = torch.zeros(1, *loaded.data_config["input_size"])
        shape = m.forward_intermediates(x, indices=[cut], extra_blocks=True, intermediates_only=True,
                                        stop_early=True)[0].shape
    return Tap(f"{loaded.spec.name}:act{n_stages}", loaded, f"act{n_stages}", "act", cut, int(np.prod(shape[1:])))


def _network(loaded: LoadedModel):
    """The timm network a tap runs: the model itself, or the one a layer variant wraps."""
    return loaded.model.m if loaded.spec.layer else loaded.model


def plan_passes(taps: list[Tap]) -> list[Pass]:
    """Group taps by preprocessing (:func:`visrec_utils.features.embedding_sets.data_config_json`),
    in first-seen order; inside a pass, taps of the same network (registry backbone, class and
    weights) share its forward (a layer variant taps its backbone's when the backbone is in the pass).

    Returns:
        the passes, each with ``nets`` (distinct networks) and ``taps`` (with ``net`` set).
    """
    from .models import state_dict_sha256

    passes: dict[str, Pass] = {}
    sha: dict[int, str] = {}
    for tap in taps:
        key = data_config_json(tap.loaded.data_config)
        p = passes.setdefault(key, Pass(tap.loaded.data_config))
        net = _network(tap.loaded)
        # the same network: the same registry backbone, class and weights (an object without weights: itself)
        digest = sha.setdefault(id(net), (tap.loaded.spec.backbone or tap.loaded.spec.name, type(net).__name__,
                                          state_dict_sha256(net) if hasattr(net, "state_dict") else id(net)))
        tap.net = next((i for i, other in enumerate(p.nets) if sha[id(other)] == digest), -1)
        if tap.net < 0:
            p.nets.append(net)
            tap.net = len(p.nets) - 1
        p.taps.append(tap)
    return list(passes.values())


def pass_module(p: Pass):
    """A ``torch.nn.Module``: images ``(B, 3, H, W)`` -> ``(B, p.dim)``, the taps' rows side by
    side in ``p.taps`` order. Each network runs once: with only a final tap through
    ``forward_head(forward_features(x), pre_logits=True)`` (as a single extraction), else through
    ``forward_intermediates`` (``extra_blocks=True`` when an activation tap asks for a block's
    input; stage ``i`` is then block ``stage_ends[i]``), stopping early when no final tap needs
    the head. Its ``tolerance(ref)`` gives the fast-path check a tolerance per column.

    Raises:
        ValueError: a network without ``forward_intermediates`` asked for a stage or activation tap.
    """
    import torch

    plan = []  # per network: (tap positions with kind and tensor index, indices to take, uses extra_blocks)
    for i, net in enumerate(p.nets):
        mine = [(pos, t) for pos, t in enumerate(p.taps) if t.net == i]
        inner = [t for _, t in mine if t.kind != "final"]
        if inner and not hasattr(net, "forward_intermediates"):
            raise ValueError(f"{type(net).__name__} has no forward_intermediates, so {inner[0].name} "
                             "cannot share its pass; extract it alone")
        blocks = any(t.kind == "act" for t in inner)
        where = [(pos, t.kind, net.stage_ends[t.index] if blocks and t.kind == "stage" else t.index) for pos, t in mine]
        plan.append((where, sorted({w for _, kind, w in where if kind != "final"}), blocks))
    n_taps = len(p.taps)
    ends = np.cumsum([t.dim for t in p.taps]).tolist()
    spans, kinds = list(zip([0, *ends[:-1]], ends)), [t.kind for t in p.taps]

    class PassModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nets = torch.nn.ModuleList(p.nets)
            self.plan = plan

        def tolerance(self, ref):
            """Per output column, what a fast runtime may differ from this module by
            (:func:`visrec_utils.features.runtime.fast_forward`): :data:`FAST_PATH_ATOL` for pooled
            features, as when each set is extracted alone, and for activations (values in the tens
            inside a network, where float32 rounding alone moves them by about 1e-4)
            :data:`FAST_PATH_ATOL` times their largest magnitude."""
            from .runtime import FAST_PATH_ATOL

            tol = torch.full((ref.shape[1],), FAST_PATH_ATOL, dtype=ref.dtype, device=ref.device)
            for (a, b), kind in zip(spans, kinds):
                if kind == "act":
                    tol[a:b] = FAST_PATH_ATOL * max(1.0, float(ref[:, a:b].abs().max()))
            return tol

        def forward(self, x):
            out = [None] * n_taps
            for net, (where, indices, blocks) in zip(self.nets, self.plan):
                final = any(kind == "final" for _, kind, _ in where)
                if not indices:
                    feats, got = net.forward_features(x), []
                else:
                    kw = {"extra_blocks": True} if blocks else {}
                    res = net.forward_intermediates(x, indices=indices, intermediates_only=not final,
                                                    stop_early=not final, **kw)
                    feats, got = res if final else (None, res)
                by_index = dict(zip(indices, got))
                for pos, kind, w in where:
                    if kind == "final":
                        out[pos] = net.forward_head(feats, pre_logits=True)
                    elif kind == "stage":
                        out[pos] = by_index[w].mean((2, 3))
                    else:
                        out[pos] = by_index[w].flatten(1)
            return torch.cat(out, 1)

    return PassModule().eval()


def pass_variant(p: Pass) -> str:
    """Names a pass in the store (its chunks' folder): the taps' own cache keys."""
    return json.dumps([(t.loaded.spec.name, t.loaded.weights_sha256, t.variant) for t in p.taps])


def cached_pass(p: Pass, item_ids, paths, image_set: str, cache_dir=None, batch_size: int = 32,
                chunk_images: int | None = None, progress: bool = True, **extract_kwargs) -> dict:
    """Every tap of ``p`` for the given images, read from the cache or computed in one pass.

    Each tap's rows are the store entry ``("embeddings", cache_key(tap.loaded, image_set,
    tap.variant))`` that :func:`visrec_utils.features.embeddings.cached_embeddings` reads and
    writes. Taps already cached are read; the others run together through :func:`pass_module`
    with the images decoded once, chunk by chunk (resumable: a killed pass restarts from its last
    finished chunk, whose folder is keyed by the missing taps' keys).

    Args:
        p: a pass from :func:`plan_passes`.
        item_ids, paths: the images, ``(n_items,)`` each, in row order.
        image_set: :func:`visrec_utils.features.embeddings.image_set_sha256` of ``(item_ids, paths)``.
        cache_dir: the store's folder (default :func:`visrec_utils.core.store.default_cache_dir`).
        **extract_kwargs: passed to :func:`visrec_utils.features.extract.extract_embeddings`
            (``device``, ``runtime``, ``num_workers``, ...).

    Returns:
        ``{tap.name: (rows (n_items, tap.dim) float32 with NaN rows for unreadable images, info)}``,
        info as :func:`~visrec_utils.features.embeddings.cached_embeddings`' plus ``shared_pass``
        (:meth:`Pass.describe` of the pass that computed it; "" for a cache hit).
    """
    import time

    from ..core.store import Store, content_key
    from .entries import CHUNK_IMAGES, cache_key, read_entry, run_in_chunks, write_entry
    from .extract import extract_embeddings, resolve_compile

    store = Store(cache_dir)
    t0 = time.perf_counter()
    out, todo = {}, []
    for t in p.taps:
        key = cache_key(t.loaded, image_set, t.variant)
        name = t.loaded.spec.name + (f"-{t.variant}" if t.variant else "")
        hit = read_entry(store, key, name, item_ids)
        info = {"key": key, "path": str(store.path("embeddings", key, ".npz", name)), "name": name}
        if hit is not None:
            out[t.name] = (hit[0], {**info, "hit": True, "extracted": 0, "seconds": time.perf_counter() - t0,
                                    "failed": hit[1], "fast_path": "cache", "shared_pass": ""})
        else:
            todo.append((t, info))
    if not todo:
        return out
    sub = plan_passes([Tap(t.name, t.loaded, t.variant, t.kind, t.index, t.dim) for t, _ in todo])[0]
    module = pass_module(sub)
    first = sub.taps[0].loaded
    n = len(item_ids)
    parts = store.chunks("embeddings", content_key(pass_variant(sub), image_set), "pass-" + first.spec.name)
    compile_mode = resolve_compile(extract_kwargs.pop("compile", "auto"), n)
    extract_kwargs.setdefault("runtime_cache", store.root)
    log.info("one pass over %d images for %s", n, sub.describe())

    def extract(order, on_batch):
        return extract_embeddings(first, [paths[i] for i in order], batch_size=batch_size, compile=compile_mode,
                                  on_batch=on_batch, module=module, dim=sub.dim, progress=progress,
                                  label=sub.describe(), module_key=pass_variant(sub), **extract_kwargs)

    ends = np.cumsum([t.dim for t, _ in todo])
    cols, reasons, run = run_in_chunks(parts, n, chunk_images or CHUNK_IMAGES, batch_size, extract, sub.describe(),
                                       columns=list(zip([0, *ends[:-1]], ends)))
    failed = {item_ids[i]: r for i, r in enumerate(reasons) if r}
    seconds = time.perf_counter() - t0
    for (t, info), emb in zip(todo, cols):
        emb = emb if emb is not None else np.zeros((0, t.dim), np.float32)
        write_entry(store, info["key"], info["name"], emb, item_ids, failed)
        out[t.name] = (emb, {**info, "hit": False, "extracted": int(run.n if run else 0), "seconds": seconds,
                             "failed": failed, "fast_path": run.path if run else "resumed chunks",
                             "shared_pass": sub.describe()})
    parts.discard()
    return out

