"""Fine-tuning the last stage(s) of the CNN on cached activations (issue: which fine-tuning helps).

On a CPU, a pass through the whole CNN is the cost. The network is cut before its last
``n_stages`` stages (timm ``blocks``): the frozen part runs once per image and its output, the
activations entering the first trainable stage, is cached like an embedding (content-keyed,
chunked, resumable); an epoch then costs only the trainable part. BatchNorm statistics and
dropout stay in eval mode (weights train, running statistics do not), so the cached path gives
exactly the gradients of the full forward pass (tested).

Strategies (registered in :mod:`visrec_utils.tuning.strategies`; their losses and training loops are in
:mod:`visrec_utils.tuning.stage_training`, this module does the staging and caching):

* ``partial_bpr``: the last stage(s) trained with BPR (Rendle et al. 2009) on (user profile,
  bought item, not-bought item) triplets from training baskets only; the user is the mean of
  the (current) embeddings of their ``max_profile`` most recent profile items.
* ``proxy_metadata``: the last stage(s) plus a linear classifier trained with cross-entropy to
  predict an item metadata column (H&M: ``product_type_name``; the paper's artwork analogue was
  the artist); no purchases are used.
* ``contrastive``: SimCLR (Chen et al., ICML 2020): two augmented views of each image (random
  resized crop, flip, colour jitter, grayscale, applied *before* the frozen part and cached for
  ``contrastive_images`` images), the InfoNCE / NT-Xent loss through a 2-layer projection head
  that is dropped afterwards; no labels and no purchases.

Each trains for a budget of ``max_steps`` optimiser steps with validation every ``eval_every`` steps,
early stopping (``patience``) and the best state restored; embeddings are the fine-tuned pooled
features of every item. Results (embeddings, learning curve, trained weights) are entries of
kind ``finetune`` in the artefact store (:class:`visrec_utils.core.store.Store`), keyed by
strategy, parameters, weights and data.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped
from ..core.store import Store, content_key
from .stage_training import (  # nt_xent and proxy_classes re-exported: tests and callers use stage_tuning.X
    contrastive_val_size,
    nt_xent,
    proxy_classes,
    train_contrastive,
    train_partial_bpr,
    train_proxy_metadata,
)

logger = logging.getLogger(__name__)

STAGE_STRATEGIES = ("partial_bpr", "proxy_metadata", "contrastive")

#: Memory format of the trained head (part of the cache key). ``channels_last``: a partial_bpr
#: step (forward and backward of 448 activation rows through Lite0's last stage, 2 cores) took
#: 1.29 s against 1.63 s in NCHW (median of 6 steps, back to back); the head's outputs differ from
#: NCHW's by at most 4.6e-6 (values up to 3.1).
HEAD_LAYOUT = "channels_last"


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of the stage strategies (defaults sized for a 2-core laptop).

    The budget is ``max_steps`` optimiser steps (reproducible: the same on every machine);
    early stopping on the validation loss may end it sooner. ``max_seconds`` is an opt-in
    wall-clock cap (default None: off); when set it is part of the config (so of the cache key
    and the provenance) and a run it stops says so in its history (``stopped_by_clock``).
    """

    n_stages: int = 1
    max_steps: int = 400
    max_seconds: float | None = None
    eval_every: int = 40
    patience: int = 4
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-5
    temperature: float = 10.0
    tau: float = 0.2
    max_profile: int = 5
    val_fraction: float = 0.1
    max_val: int = 512
    proxy_column: str = "product_type_name"
    min_class_items: int = 5
    contrastive_images: int = 2000
    seed: int = 0
    device: str = "cpu"


class StagedModel:
    """A timm model cut before its last ``n_stages`` stages.

    Args:
        model: a timm model with ``conv_stem, bn1, blocks, conv_head, bn2`` (the EfficientNet /
            MobileNet family, which includes every offline model of visrec).
        n_stages: trailing stages of ``model.blocks`` to train (1 = the last stage).

    Attributes:
        frozen: ``(B, 3, H, W) -> (B, C*h*w)`` flattened activations entering the first trainable stage.
        head: ``(B, C*h*w) -> (B, dim)`` pooled features; its parameters are trainable and are a
            copy of the model's, so training one strategy never changes the model or the next
            strategy's starting point.
        act_shape: ``(C, h, w)`` for the model's input size.

    Raises:
        PartSkipped: (a ``ValueError``) a model outside that family, or ``n_stages`` not in
            ``1 .. len(blocks) - 1``.
    """

    def __init__(self, model, n_stages: int = 1, input_size=(3, 224, 224)):
        import copy

        import torch

        needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
        if not all(hasattr(model, a) for a in needed):
            raise PartSkipped(f"{type(model).__name__} has no {'/'.join(needed)}: stage fine-tuning supports timm's "
                             "EfficientNet/MobileNet family (every offline visrec model); use bpr_projection for others")
        if not 1 <= n_stages < len(model.blocks):
            raise PartSkipped(f"n_stages must be in 1..{len(model.blocks) - 1}, not {n_stages}")
        cut = len(model.blocks) - n_stages
        m = model.eval()
        for p in m.parameters():
            p.requires_grad_(False)

        class Frozen(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = torch.nn.Sequential(m.conv_stem, m.bn1, *m.blocks[:cut])

            def forward(self, x):
                return self.stem(x).flatten(1)

        with torch.no_grad():
            shape = tuple(Frozen().stem(torch.zeros(1, *input_size)).shape[1:])

        class Head(torch.nn.Module):  # a copy: training never changes the model (each strategy starts
            def __init__(self):        # from its ImageNet weights, whatever ran before it)
                super().__init__()
                self.stages = copy.deepcopy(torch.nn.Sequential(*m.blocks[cut:]))
                self.conv_head, self.bn2 = copy.deepcopy(m.conv_head), copy.deepcopy(m.bn2)
                self.to(memory_format=torch.channels_last)  # see HEAD_LAYOUT

            def forward(self, a):
                x = a.view(a.shape[0], *shape).contiguous(memory_format=torch.channels_last)
                return m.forward_head(self.bn2(self.conv_head(self.stages(x))), pre_logits=True)

        self.frozen = Frozen().eval()
        self.head = Head().eval()
        for p in self.head.parameters():
            p.requires_grad_(True)
        self.act_shape = shape
        self.n_stages = n_stages


def cached_activations(loaded, item_ids, paths, n_stages: int, cache_dir=None, image_set=None, views: int = 0,
                       seed: int = 0, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Activations entering the last ``n_stages`` stages, ``(n_images, C*h*w) float32``, cached.

    Args:
        views: 0 for the model's eval preprocessing; v >= 1 for the v-th SimCLR-augmented view
            (:func:`augment_transform`, seeded per image by ``seed``, ``v`` and position).

    Returns:
        (activations, info) as :func:`visrec_utils.features.embeddings.cached_embeddings`.
    """
    from ..features.embeddings import cached_embeddings

    staged = StagedModel(loaded.model, n_stages, loaded.data_config["input_size"])
    kw = {}
    variant = f"act{n_stages}"
    if views:
        kw = {"transform": augment_transform(loaded.data_config),
              "seeds": [hash_seed(seed, views, i) for i in range(len(paths))]}
        variant += f"-view{views}-seed{seed}"
    return cached_embeddings(loaded, item_ids, paths, cache_dir=cache_dir, image_set=image_set, variant=variant,
                             module=staged.frozen, dim=int(np.prod(staged.act_shape)), progress=progress, **kw)


def hash_seed(*parts) -> int:
    """A 31-bit seed from integers (stable across runs and processes).

    A seed, not a cache key: it stays the sha256 of ``json.dumps(parts)`` (not
    :func:`~visrec_utils.core.store.content_key`), so the augmented views never change.
    """
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:4], "little") & 0x7FFFFFFF


def augment_transform(data_config: dict):
    """SimCLR augmentations (Chen et al. 2020, without blur) ending in the model's normalisation."""
    from torchvision import transforms as T

    size = tuple(data_config["input_size"][1:])
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.3, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(data_config["mean"], data_config["std"]),
    ])


def stage_plan(strategies, stage_models, names=STAGE_STRATEGIES) -> list[str]:
    """The stage strategies to run, in ``strategies`` order.

    Args:
        strategies: strategy names.
        stage_models: the models whose stages are trained.
        names: the stage strategies (default the built-in ones; the registry's
            :func:`visrec_utils.tuning.strategies.tune` passes every registered one).

    Raises:
        PartSkipped: ``strategies`` has no stage strategy, or ``stage_models`` is empty.
    """
    todo = [s for s in strategies if s in names]
    if not todo:
        raise PartSkipped(f"strategies names none of the stage strategies {', '.join(names)}")
    if not len(stage_models):
        raise PartSkipped(f"stage_models is empty, so {', '.join(todo)} train no model")
    return todo


def require_frozen(model: str, frozen: dict) -> None:
    """Raises :class:`PartSkipped` when ``model`` has no frozen embedding set in this study."""
    if (model, "frozen") not in frozen:
        raise PartSkipped(f"{model} has no frozen embeddings in this study (add it to models)")


def require_stage_data(strategy: str, cat, split, cfg: StageConfig = StageConfig()) -> None:
    """Check that ``cat``/``split`` hold enough data for the stage strategy (cheap: no image is read).

    Raises:
        KeyError: unknown stage strategy, naming the valid ones.
        PartSkipped: too few training triplets for ``partial_bpr``
            (:func:`visrec_utils.tuning.finetune.require_triplets`), too few classes for
            ``proxy_metadata`` (:func:`proxy_classes`), too few images for ``contrastive``.
    """
    if strategy not in STAGE_STRATEGIES:
        raise KeyError(f"Unknown stage strategy {strategy!r}; choose from {list(STAGE_STRATEGIES)}")
    if strategy == "partial_bpr":
        from .finetune import require_triplets

        require_triplets(split.train, cfg.max_profile)
    elif strategy == "proxy_metadata":
        proxy_classes(cat.items, cfg)
    else:
        contrastive_val_size(min(cfg.contrastive_images, cat.n_items), cfg)


def unreadable_rows(acts: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """``(n_rows,) bool``: rows of ``acts`` with a non-finite value (unreadable images), checked
    ``chunk`` rows at a time so no full-size boolean copy is made."""
    return np.concatenate([~np.isfinite(acts[s:s + chunk]).all(1) for s in range(0, len(acts), chunk)]
                          or [np.zeros(0, bool)])


def save_weights(store: Store, key: str, name: str, head) -> Path:
    """Write ``head``'s trained weights (``torch.save`` of its ``state_dict``) as the store entry
    ``(finetune, key, .pt)`` atomically: a failed or killed write leaves no file.

    Returns:
        the ``.pt`` path.

    Raises:
        whatever ``torch.save`` raises (e.g. ``OSError`` on a full disk).
    """
    import torch

    state = head.state_dict()
    return store.put_file("finetune", key, ".pt", lambda tmp: torch.save(state, tmp), name=name)


def run_stage_strategy(strategy: str, loaded, cat, split, cfg: StageConfig = StageConfig(), cache_dir=None,
                       image_set: str | None = None, progress: bool = True):
    """Embeddings of one stage strategy for ``cat``'s items, cached by (strategy, parameters, inputs).

    Args:
        strategy: one of :data:`STAGE_STRATEGIES`.
        loaded: the :class:`~visrec_utils.features.models.LoadedModel` whose stages are trained.
        cat: the catalogue (``items`` with ``item_id``, ``image_path`` and, for
            ``proxy_metadata``, ``cfg.proxy_column``).
        split: training data source (``split.train`` only).
        cfg: hyper-parameters.
        cache_dir: a :class:`~visrec_utils.core.store.Store` or its folder (None: the default
            cache). Results are entries of kind ``finetune`` named ``<strategy>-<model>``: the
            ``.npz`` (embeddings, history, timings) and the ``.pt`` trained weights, keyed by
            :func:`~visrec_utils.core.store.content_key` of (strategy, parameters, model, weights,
            images, training data or labels); the activations are cached by
            :func:`cached_activations` under the store's folder.
        image_set: :func:`visrec_utils.features.embeddings.image_set_sha256` of the items' images,
            when known (computed otherwise).
        progress: tqdm bars.

    Returns:
        (embeddings ``(n_items, dim) float32``, history DataFrame, info dict with ``hit``,
        ``seconds`` (this call), ``activation_seconds``, ``train_seconds``, ``path``).

    Raises:
        KeyError: unknown strategy.
        PartSkipped: too little data for the strategy (checked before any activation is
            computed, :func:`require_stage_data`).
    """
    from ..features.embeddings import image_set_sha256
    from .finetune import as_store, split_fingerprint

    require_stage_data(strategy, cat, split, cfg)
    store = as_store(cache_dir)
    ids, paths = cat.items["item_id"].tolist(), cat.items["image_path"].tolist()
    image_set = image_set or image_set_sha256(ids, paths)
    labels = ""
    if strategy == "proxy_metadata":
        labels = content_key(cat.items.get(cfg.proxy_column, pd.Series(dtype=str)).astype(str).str.cat(sep="\n"),
                             length=64)
    key = content_key({
        "strategy": strategy, "cfg": asdict(cfg), "model": loaded.spec.name, "weights": loaded.weights_sha256,
        "images": image_set, "data": split_fingerprint(split) if strategy == "partial_bpr" else "", "labels": labels,
        "layout": HEAD_LAYOUT,
    })
    name = f"{strategy}-{loaded.spec.name}"
    path = store.path("finetune", key, ".npz", name=name)
    t0 = time.perf_counter()
    z = store.get_arrays("finetune", key, name=name)
    if z is not None:
        hist = pd.DataFrame({c[2:]: z[c] for c in z if c.startswith("h_")})
        logger.debug("%s of %s: cached result %s", strategy, loaded.spec.name, path)
        return z["embeddings"], hist, {"hit": True, "seconds": time.perf_counter() - t0, "path": str(path),
                                       "activation_seconds": float(z["activation_seconds"]),
                                       "train_seconds": float(z["train_seconds"])}
    acts, _ = cached_activations(loaded, ids, paths, cfg.n_stages, store.root, image_set, progress=progress)
    staged = StagedModel(loaded.model, cfg.n_stages, loaded.data_config["input_size"])
    if strategy == "contrastive":
        rng = np.random.default_rng(cfg.seed)
        sub = np.sort(rng.choice(len(ids), size=min(cfg.contrastive_images, len(ids)), replace=False))
        sub_ids, sub_paths = [ids[i] for i in sub], [paths[i] for i in sub]
        views = [cached_activations(loaded, sub_ids, sub_paths, cfg.n_stages, store.root, views=v, seed=cfg.seed,
                                    progress=progress)[0] for v in (1, 2)]
    t_act = time.perf_counter() - t0
    if strategy == "partial_bpr":
        emb, hist = train_partial_bpr(staged, acts, split, cfg, progress)
    elif strategy == "proxy_metadata":
        emb, hist = train_proxy_metadata(staged, acts, cat.items, cfg, progress)
    else:
        emb, hist = train_contrastive(staged, acts, views[0], views[1], cfg, progress)
    emb[unreadable_rows(acts)] = np.nan  # unreadable images stay unreadable
    t_train = time.perf_counter() - t0 - t_act
    save_weights(store, key, name, staged.head)  # the weights first: an .npz entry always has its .pt
    store.put_arrays("finetune", key, name=name, embeddings=emb, activation_seconds=np.float64(t_act),
                     train_seconds=np.float64(t_train), **{f"h_{c}": hist[c].to_numpy() for c in hist.columns})
    return emb, hist, {"hit": False, "seconds": time.perf_counter() - t0, "path": str(path),
                       "activation_seconds": t_act, "train_seconds": t_train}
