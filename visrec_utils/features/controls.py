"""Controls for the ImageNet question: the same architecture with random weights, and
hand-made visual features.

If ImageNet training matters for recommendation, an ImageNet model must beat its own
architecture with random weights; if deep features matter at all, they must beat simple
"attractiveness" features (the hand-made features of Messina, Dominguez, Parra et al.,
"Content-based artwork recommendation", UMUAI 2019). Both are registry models
(:mod:`visrec_utils.features.models`), so they run through the same extraction, cache, evaluation and
figures; their family is ``"control"`` and notebook 05 keeps them out of the top-1 correlation.

* ``random_<model>``: ``<model>``'s architecture with timm's own initialisation (seed 0) and
  BatchNorm running statistics reset; the published top-1 is chance, 0.1%.
* ``<model>@stage<i>`` (not a control, but built the same way): the pooled output of an
  earlier feature stage of ``<model>``, for the layer table.
* ``handcrafted``: per image, a 12x3x3 HSV colour histogram (square-rooted, so cosine
  similarity is the Hellinger affinity), brightness (mean V), saturation (mean S), colourfulness
  (Hasler & Suesstrunk, 2003), RMS contrast (std of luma), sharpness (log of 1 + variance of the
  Laplacian of luma x 100) and luma entropy (bits / 8), from the image resized to 224 px.
"""
from __future__ import annotations

import numpy as np

RANDOM_PREFIX = "random_"
LAYER_SEP = "@stage"
HIST_BINS = (12, 3, 3)
SCALAR_FEATURES = ("brightness", "saturation", "colourfulness", "contrast", "sharpness", "entropy")


def randomize_(model, seed: int = 0):
    """Re-initialise ``model`` in place with timm's initialisation for its family (seed ``seed``)
    and reset every BatchNorm's running statistics; returns the model in eval mode."""
    import torch

    torch.manual_seed(seed)
    try:
        from timm.models._efficientnet_builder import efficientnet_init_weights

        if hasattr(model, "blocks") and hasattr(model, "conv_stem"):
            efficientnet_init_weights(model)
        else:
            raise ImportError
    except ImportError:
        for m in model.modules():
            if hasattr(m, "reset_parameters") and m is not model:
                m.reset_parameters()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return model.eval()


def _rgb_to_hsv(x):
    """``(B, 3, H, W)`` RGB in [0, 1] -> H, S, V each ``(B, H, W)`` in [0, 1]."""
    import torch

    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return h, s, maxc


def handcrafted_features(x):
    """Hand-made features of a batch, ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 114) float32``
    (108 histogram bins, then :data:`SCALAR_FEATURES`; see the module docstring)."""
    import torch
    import torch.nn.functional as F

    x = x.clamp(0, 1).float()
    b = x.shape[0]
    h, s, v = _rgb_to_hsv(x)
    nh, ns, nv = HIST_BINS
    idx = ((h * nh).long().clamp(max=nh - 1) * ns + (s * ns).long().clamp(max=ns - 1)) * nv \
        + (v * nv).long().clamp(max=nv - 1)
    hist = torch.zeros(b, nh * ns * nv).scatter_add_(1, idx.flatten(1), torch.ones_like(idx.flatten(1), dtype=torch.float))
    hist = (hist / hist.sum(1, keepdim=True)).sqrt()
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    rg, yb = r - g, 0.5 * (r + g) - bl
    colourful = (rg.flatten(1).std(1) ** 2 + yb.flatten(1).std(1) ** 2).sqrt() \
        + 0.3 * (rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2).sqrt()
    luma = 0.299 * r + 0.587 * g + 0.114 * bl
    lap = F.conv2d(luma[:, None], torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]), padding=1)[:, 0, 1:-1, 1:-1]
    sharp = torch.log1p(lap.flatten(1).var(1) * 100)
    q = (luma * 255).long().clamp(0, 255).flatten(1)
    p = torch.zeros(b, 256).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float))
    p = p / p.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1) / 8.0
    scalars = torch.stack([v.flatten(1).mean(1), s.flatten(1).mean(1), colourful, luma.flatten(1).std(1), sharp, entropy], 1)
    return torch.cat([hist, scalars], 1)


def build_handcrafted():
    """The ``handcrafted`` control as a model with timm's feature API (``forward_features``,
    ``forward_head``, ``pretrained_cfg``): inputs resized to 224 px, scaled to [0, 1]."""
    import torch

    class Handcrafted(torch.nn.Module):
        num_classes = 0
        num_features = int(np.prod(HIST_BINS)) + len(SCALAR_FEATURES)
        pretrained_cfg = {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 1.0,
                          "crop_mode": "center", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_classes": 0}

        def __init__(self):
            super().__init__()
            self.register_buffer("version", torch.tensor([1]))  # part of the cache key

        def forward_features(self, x):
            return handcrafted_features(x)

        def forward_head(self, f, pre_logits: bool = True):
            return f

        def get_classifier(self):
            return None

    return Handcrafted().eval()


def build_layer_features(model, index: int):
    """``model`` answering with the globally average-pooled output of feature stage ``index``
    (timm ``feature_info`` / ``forward_intermediates``) instead of its final pooled features,
    for the "which layer transfers best" table. No classifier; preprocessing is the model's.

    Raises:
        ValueError: ``index`` outside the model's feature stages.
    """
    import torch

    n = len(model.feature_info)
    if not 0 <= index < n:
        raise ValueError(f"stage index {index} outside 0..{n - 1} for this model "
                         f"(channels per stage: {[f['num_chs'] for f in model.feature_info]})")

    class LayerFeatures(torch.nn.Module):
        num_classes = 0

        def __init__(self):
            super().__init__()
            self.m = model
            self.num_features = int(model.feature_info[index]["num_chs"])
            self.pretrained_cfg = model.pretrained_cfg
            self.register_buffer("stage_index", torch.tensor([index]))  # part of the cache key

        def forward_features(self, x):
            out = self.m.forward_intermediates(x, indices=[index], intermediates_only=True, stop_early=True)[0]
            return out.mean((2, 3))

        def forward_head(self, f, pre_logits: bool = True):
            return f

        def get_classifier(self):
            return None

    return LayerFeatures().eval()
