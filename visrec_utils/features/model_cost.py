"""What an embedding set costs and where its weights come from, for the model card (issue 18).

* :func:`network_cost`: parameters and GFLOPs of the forward that gives an embedding set, counted
  by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` on one image at the model's input
  size. FLOPs follow PyTorch's convention, 2 per multiply-accumulate of the convolutions and matrix
  products (timm's tables give GMACs, half of it: ``tf_efficientnet_lite0`` 0.77 GFLOPs here, 0.38
  GMACs there); element-wise operations are not counted, so the hand-made control counts 0.
* :func:`pretraining`: the data and objective of the weights, from the timm pretrained tag
  (``in1k``, ``in22k_ft_in1k``, ``laion2b`` ...) or the registry's description of the weights.
"""
from __future__ import annotations

import math

from .models import LoadedModel

#: Substrings of a timm pretrained tag -> (data, objective), first match wins. Tags are documented
#: in timm's model cards (``<arch>.<tag>``); an unknown tag is reported as is.
PRETRAIN_TAGS = (
    ("in22k_ft_in1k", ("ImageNet-22k, fine-tuned on ImageNet-1k", "supervised classification")),
    ("in21k_ft_in1k", ("ImageNet-21k, fine-tuned on ImageNet-1k", "supervised classification")),
    ("in12k_ft_in1k", ("ImageNet-12k, fine-tuned on ImageNet-1k", "supervised classification")),
    ("laion2b", ("LAION-2B image-text pairs", "contrastive image-text (CLIP)")),
    ("openai", ("OpenAI WIT image-text pairs", "contrastive image-text (CLIP)")),
    ("lvd142m", ("LVD-142M", "self-supervised (DINOv2)")),
    ("fcmae", ("ImageNet-1k", "self-supervised masked autoencoding")),
    ("in22k", ("ImageNet-22k", "supervised classification")),
    ("in21k", ("ImageNet-21k", "supervised classification")),
    ("in1k", ("ImageNet-1k", "supervised classification")),
)


def network_cost(loaded: LoadedModel) -> dict:
    """Parameters and GFLOPs of the forward that gives ``loaded``'s embedding (pooled features,
    or a layer variant's earlier stage), on one image of its ``data_config["input_size"]``.

    Returns:
        ``{"n_params": int, "gflops": float}``: the parameters of the modules that run (the
        ImageNet classifier, unused by an embedding, is not counted; nor are the later stages a
        layer variant skips), and the forward's FLOPs / 1e9 (NaN when nothing is counted, as for
        the hand-made control, which has no convolution or matrix product); both NaN for a model
        that is not a ``torch.nn.Module`` with an input size.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = loaded.model
    if not isinstance(model, torch.nn.Module) or "input_size" not in loaded.data_config:
        return {"n_params": math.nan, "gflops": math.nan}  # e.g. a stand-in model in a test
    ran = set()
    hooks = [m.register_forward_hook(lambda mod, _i, _o: ran.add(mod)) for m in model.modules()
             if next(m.parameters(recurse=False), None) is not None]
    try:
        x = torch.zeros(1, *loaded.data_config["input_size"])
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model.forward_head(model.forward_features(x), pre_logits=True)
    finally:
        for h in hooks:
            h.remove()
    flops = counter.get_total_flops()
    return {"n_params": int(sum(p.numel() for m in ran for p in m.parameters(recurse=False))),
            "gflops": round(flops / 1e9, 4) if flops else math.nan}


def pretraining(loaded: LoadedModel) -> dict:
    """``{"pretrain_data", "pretrain_objective"}`` of ``loaded``'s weights: from the timm
    pretrained tag when the model has one (:data:`PRETRAIN_TAGS`), "none" for the random and
    hand-made controls, ImageNet-1k supervised for a checkpoint with a published ImageNet-1k top-1
    and no tag (the offline Keras MobileNet), else "unknown"."""
    spec = loaded.spec
    tag = str((getattr(loaded.model, "pretrained_cfg", None) or {}).get("tag") or "")
    if spec.family == "control":
        kind = "random weights" if spec.weights.startswith("random") else "hand-made features"
        return {"pretrain_data": "none", "pretrain_objective": f"none ({kind})"}
    for key, (data, objective) in PRETRAIN_TAGS:
        if key in tag:
            return {"pretrain_data": data, "pretrain_objective": objective}
    if tag:
        return {"pretrain_data": f"timm tag '{tag}'", "pretrain_objective": "unknown"}
    if spec.published_top1 is not None:
        return {"pretrain_data": "ImageNet-1k", "pretrain_objective": "supervised classification"}
    return {"pretrain_data": "unknown", "pretrain_objective": "unknown"}
