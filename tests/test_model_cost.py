"""The model card's columns: parameters, GFLOPs, pretraining, peak memory of a pass."""
import math
import time

import numpy as np
import pytest
import torch

from visrec_utils.core.memory import PeakRSS, rss_bytes
from visrec_utils.features import model_cost, models


class _Tiny(torch.nn.Module):
    """A 1x1 convolution 3 -> 4 (12 weights) then mean pooling; a classifier that embeddings skip."""

    def __init__(self, tag=""):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1, bias=False)
        self.classifier = torch.nn.Linear(4, 10)
        self.pretrained_cfg = {"tag": tag}

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, f, pre_logits: bool = False):
        f = f.mean((2, 3))
        return f if pre_logits else self.classifier(f)


def _loaded(model, family="Tiny", weights="test", top1=None):
    spec = models.ModelSpec("tiny", "tiny", top1, "test", weights, build=lambda: model, family=family)
    return models.LoadedModel(spec, model, {"input_size": (3, 8, 8)}, "0" * 64, 4)


def test_network_cost_by_hand():
    cost = model_cost.network_cost(_loaded(_Tiny()))
    # 4 outputs x 3 inputs x 64 positions multiply-accumulates = 768, 2 FLOPs each; the classifier never runs
    assert cost == {"n_params": 12, "gflops": round(2 * 768 / 1e9, 4)}


def test_network_cost_of_lite0_leaves_the_classifier_out():
    lite0 = models.load_model("tf_efficientnet_lite0")
    cost = model_cost.network_cost(lite0)
    assert cost["n_params"] == sum(p.numel() for p in lite0.model.parameters()) - (1280 * 1000 + 1000)
    # timm's tables: 0.39 GMACs at 224 px (2 FLOPs per MAC)
    assert cost["gflops"] == pytest.approx(0.77, abs=0.01)
    # the hand-made control: table look-ups and integer sums, no convolution or matrix product to count
    hand = model_cost.network_cost(models.load_model("handcrafted"))
    assert math.isnan(hand["gflops"]) and hand["n_params"] == 0


def test_pretraining_from_the_timm_tag_and_the_controls():
    assert model_cost.pretraining(_loaded(_Tiny("in22k_ft_in1k"))) == {
        "pretrain_data": "ImageNet-22k, fine-tuned on ImageNet-1k", "pretrain_objective": "supervised classification"}
    assert model_cost.pretraining(_loaded(_Tiny("laion2b_s34b"))) == {
        "pretrain_data": "LAION-2B image-text pairs", "pretrain_objective": "contrastive image-text (CLIP)"}
    assert model_cost.pretraining(_loaded(_Tiny("odd_tag"))) == {"pretrain_data": "timm tag 'odd_tag'",
                                                                 "pretrain_objective": "unknown"}
    assert model_cost.pretraining(_loaded(_Tiny(), top1=70.0))["pretrain_data"] == "ImageNet-1k"
    assert model_cost.pretraining(_loaded(_Tiny()))["pretrain_data"] == "unknown"
    assert model_cost.pretraining(models.load_model("random_mobilenetv1_025_keras")) == {
        "pretrain_data": "none", "pretrain_objective": "none (random weights)"}
    assert model_cost.pretraining(models.load_model("handcrafted"))["pretrain_objective"] == "none (hand-made features)"


@pytest.mark.skipif(rss_bytes() is None, reason="needs /proc/self/statm")
def test_peak_rss_sees_a_block_that_is_freed_before_the_end():
    with PeakRSS(interval=0.01) as peak:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, written
        time.sleep(0.1)  # at least one sample while it is held
        del a
    assert peak.added_gib >= 60 / 1024 and peak.gib >= peak.added_gib
    assert rss_bytes() < peak.peak
