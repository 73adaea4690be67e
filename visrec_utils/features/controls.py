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
  Laplacian of luma x 100) and luma entropy (bits / 8), from the 8-bit image resized to 224 px.
"""
from __future__ import annotations

import functools

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
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return h, s, maxc


def colour_tables():
    """Per 8-bit RGB colour ``(r << 16) | (g << 8) | b``: its HSV histogram bin and its luma level.

    Returns:
        ``(hsv_bin, luma_level)``, each ``(2**24,) uint8``: the bin of :data:`HIST_BINS`
        (flat index ``(h * 3 + s) * 3 + v``) and ``floor(255 * luma)`` with luma = 0.299 R +
        0.587 G + 0.114 B (ITU-R BT.601), both computed in float32 from the colour's channels
        ``k / 255``, exactly as a per-pixel computation on the decoded image does. Built in
        about 1 s (32 MiB); :func:`_lookup_tables` joins them and is the one kept per process, so
        a table lookup then replaces some 40 float operations per pixel.
    """
    import torch

    n = 1 << 24
    hsv_bin, luma_level = torch.empty(n, dtype=torch.uint8), torch.empty(n, dtype=torch.uint8)
    nh, ns, nv = HIST_BINS
    step = 1 << 20
    for s0 in range(0, n, step):
        code = torch.arange(s0, s0 + step, dtype=torch.int32)
        rgb = torch.stack([(code >> 16) & 255, (code >> 8) & 255, code & 255]).to(torch.float32).div(255)
        h, s, v = _rgb_to_hsv(rgb[None, :, None, :])
        idx = ((h * nh).long().clamp(max=nh - 1) * ns + (s * ns).long().clamp(max=ns - 1)) * nv \
            + (v * nv).long().clamp(max=nv - 1)
        hsv_bin[s0:s0 + step] = idx.flatten().to(torch.uint8)
        luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        luma_level[s0:s0 + step] = (luma * 255).long().clamp(0, 255).to(torch.uint8)
    return hsv_bin, luma_level


@functools.lru_cache(maxsize=1)
def _lookup_tables():
    """:func:`colour_tables` joined for one look-up per pixel, and the saturation of every
    (max, min) channel pair.

    Returns:
        ``(joint, saturation)``: ``joint`` ``(2**24,) int16``, ``hsv_bin * 256 + luma_level`` of
        each colour (so one look-up and one ``bincount`` give both histograms); ``saturation``
        ``(65536,) float64`` at ``(max << 8) | min``: ``(max - min) / max`` (0 when max is 0), the
        same float64 division the per-pixel formula makes. Built once per process (32.5 MiB).
    """
    import torch

    hsv_bin, luma_level = colour_tables()
    joint = (hsv_bin.to(torch.int16) << 8) | luma_level.to(torch.int16)
    hi, lo = torch.arange(256).repeat_interleave(256), torch.arange(256).repeat(256)
    sat = torch.where(hi > 0, (hi - lo).double() / hi.clamp_min(1).double(), 0.0)
    return joint, sat


def _std_mean(x_int, bound: int | None = None):
    """Sample standard deviation (n - 1) and mean of each row of an integer ``(B, n)`` tensor,
    from exact int64 sums, in float64: ``((B,), (B,))``. ``bound``: the largest ``|x|``, when
    known; with ``bound**2 < 2**31`` the squares are taken in the input's int32 and only the
    sums in int64 (the same values, without an int64 copy of ``x``)."""
    import torch

    n = x_int.shape[1]
    if bound is not None and bound * bound < 2 ** 31 and x_int.dtype == torch.int32:
        s1 = x_int.sum(1).to(torch.float64)  # torch sums integers in int64
        s2 = (x_int * x_int).sum(1).to(torch.float64)
    else:
        x = x_int.to(torch.int64)
        s1 = x.sum(1).to(torch.float64)
        s2 = (x * x).sum(1).to(torch.float64)
    var = (s2 - s1 * s1 / n) / max(n - 1, 1)
    return var.clamp_min(0).sqrt(), s1 / n


def handcrafted_features(x):
    """Hand-made features of a batch, ``(B, 3, H, W)`` RGB in [0, 1] (float) or 0-255
    (``uint8``) -> ``(B, 114) float32`` (108 histogram bins, then :data:`SCALAR_FEATURES`; see
    the module docstring).

    The features are those of the 8-bit image: float ``x`` is rounded to steps of 1/255 (images
    decoded from 8-bit files already lie on them, so a ``uint8`` batch ``u`` and ``u / 255`` give
    equal rows), histogram bins and luma levels come from one look-up in :func:`colour_tables`
    (joined by :func:`_lookup_tables`), saturation from a table of the (max, min) pairs, and the
    moments (means, standard deviations, the Laplacian's variance) from exact integer sums, on the
    CPU (the result goes back to ``x``'s device). Against the same formulas in float32 per pixel
    on H&M images: equal histograms, scalars within 7e-7 relative. Measured on H&M images, back
    to back against the per-table look-ups, per-pixel float64 saturation and int64 copies before
    (equal rows): 3.2 against 4.7 ms per 224-px image on one core, and the extraction of 3,408
    images 15.4 against 24.9 s.
    """
    import torch

    device, x = x.device, x.cpu()
    b = x.shape[0]
    if x.dtype == torch.uint8:
        u8 = x.to(torch.int32)
    else:
        u8 = x.clamp(0, 1).mul(255).round_().to(torch.int32)
    r, g, bl = u8[:, 0], u8[:, 1], u8[:, 2]
    joint, sat_table = _lookup_tables()
    nh = int(np.prod(HIST_BINS))
    code = ((r << 16) | (g << 8) | bl).flatten(1).long()
    offset = torch.arange(b).unsqueeze(1) * (nh * 256)
    both = torch.bincount((torch.take(joint, code).long() + offset).flatten(), minlength=b * nh * 256)
    both = both.view(b, nh, 256)
    hist = both.sum(2).double()
    hist = (hist / hist.sum(1, keepdim=True)).sqrt()
    maxc = torch.maximum(torch.maximum(r, g), bl).flatten(1)
    minc = torch.minimum(torch.minimum(r, g), bl).flatten(1)
    n = maxc.shape[1]
    brightness = maxc.sum(1).double() / (255 * n)
    sat = torch.take(sat_table, ((maxc << 8) | minc).long())
    rg_sd, rg_m = _std_mean((r - g).flatten(1), 255)  # units of 1/255
    yb_sd, yb_m = _std_mean((r + g - 2 * bl).flatten(1), 510)  # units of 1/510
    colourful = (rg_sd ** 2 / 255 ** 2 + yb_sd ** 2 / 510 ** 2).sqrt() \
        + 0.3 * (rg_m ** 2 / 255 ** 2 + yb_m ** 2 / 510 ** 2).sqrt()
    luma = 299 * r + 587 * g + 114 * bl  # units of 1/255000
    contrast, _ = _std_mean(luma.flatten(1))
    lap = (luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]) - 4 * luma[:, 1:-1, 1:-1]
    lap_sd, _ = _std_mean(lap.flatten(1))
    sharp = torch.log1p((lap_sd / 255000) ** 2 * 100)
    p = both.sum(1).double()
    p = p / p.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1) / 8.0
    scalars = torch.stack([brightness, sat.mean(1), colourful, contrast / 255000, sharp, entropy], 1)
    return torch.cat([hist, scalars], 1).float().to(device)


def build_handcrafted():
    """The ``handcrafted`` control as a model with timm's feature API (``forward_features``,
    ``forward_head``, ``pretrained_cfg``): inputs resized to 224 px, scaled to [0, 1]."""
    import torch

    class Handcrafted(torch.nn.Module):
        num_classes = 0
        num_features = int(np.prod(HIST_BINS)) + len(SCALAR_FEATURES)
        pretrained_cfg = {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 1.0,
                          "crop_mode": "center", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_classes": 0}

        #: No OpenVINO or torch.compile path (:func:`visrec_utils.features.extract.extract_embeddings`):
        #: the features are table look-ups and integer sums, which OpenVINO does not convert to
        #: equal values and which compiling (about 15 s) does not speed up.
        fast_paths = False
        #: Takes the decoded uint8 images (:func:`visrec_utils.features.extract.reads_uint8`):
        #: the same 8-bit values as the [0, 1] floats, without the conversion there and back.
        uint8_input = True

        def __init__(self):
            super().__init__()
            # part of the cache key; 2: the 8-bit features of colour_tables (1: float32 per pixel)
            self.register_buffer("version", torch.tensor([2]))

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
