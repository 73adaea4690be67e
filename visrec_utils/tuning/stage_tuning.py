"""Fine-tuning the last stage(s) of the CNN on cached activations (issue: which fine-tuning helps).

On a CPU, a pass through the whole CNN is the cost. The network is cut before its last
``n_stages`` stages (timm ``blocks``): the frozen part runs once per image and its output, the
activations entering the first trainable stage, is cached like an embedding (content-keyed,
chunked, resumable); an epoch then costs only the trainable part. BatchNorm statistics and
dropout stay in eval mode (weights train, running statistics do not), so the cached path gives
exactly the gradients of the full forward pass (tested).

Strategies (registered in :mod:`visrec_utils.tuning.strategies`):

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

Each trains for a budget of ``max_steps`` steps (capped by ``seconds``) with validation every ``eval_every`` steps,
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

logger = logging.getLogger(__name__)

STAGE_STRATEGIES = ("partial_bpr", "proxy_metadata", "contrastive")


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of the stage strategies (defaults sized for a 2-core laptop).

    The budget is ``max_steps`` optimiser steps (reproducible), capped by ``seconds`` of wall
    clock as a safety net (a run stopped by the clock says so in its history).
    """

    n_stages: int = 1
    max_steps: int = 400
    seconds: float = 600.0
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

            def forward(self, a):
                x = self.bn2(self.conv_head(self.stages(a.view(a.shape[0], *shape))))
                return m.forward_head(x, pre_logits=True)

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


def _embed_all(head, acts: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(acts), batch):
            out.append(head(torch.from_numpy(np.nan_to_num(acts[s:s + batch])).to(device)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _train(params, step_loss, val_loss, cfg: StageConfig, n_train: int, desc: str, progress: bool):
    """Shared loop: shuffled batches of ``n_train`` examples for ``max_steps`` steps (or until
    ``seconds``); validation every ``eval_every`` steps; early stopping on the validation loss;
    the best parameters are copied back. Returns the history (one row per validation)."""
    import torch
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_loss, best_state, bad, step = val_loss(), [p.detach().clone() for p in params], 0, 0
    history = [{"step": 0, "train_loss": np.nan, "val_loss": best_loss, "seconds": 0.0, "stopped_by_clock": False}]
    losses, t0 = [], time.perf_counter()
    bar = tqdm(total=-(-cfg.max_steps // cfg.eval_every), desc=f"{desc} (validations)", disable=not progress)
    stop = False
    while not stop:
        order = rng.permutation(n_train)
        for s in range(0, n_train - cfg.batch_size + 1 if n_train >= cfg.batch_size else 1, cfg.batch_size):
            loss = step_loss(order[s:s + cfg.batch_size], rng)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            elapsed = time.perf_counter() - t0
            out_of_time, last = elapsed > cfg.seconds, step >= cfg.max_steps
            if step % cfg.eval_every == 0 or out_of_time or last:
                vl = val_loss()
                history.append({"step": step, "train_loss": float(np.mean(losses)), "val_loss": vl, "seconds": elapsed,
                                "stopped_by_clock": out_of_time and not last})
                losses = []
                bar.update(1)
                if vl < best_loss - 1e-4:
                    best_loss, best_state, bad = vl, [p.detach().clone() for p in params], 0
                else:
                    bad += 1
                stop = bad >= cfg.patience or out_of_time or last
                if stop:
                    break
    bar.close()
    with torch.no_grad():
        for p, b in zip(params, best_state):
            p.copy_(b)
    return pd.DataFrame(history)


def train_partial_bpr(staged: StagedModel, acts: np.ndarray, split, cfg: StageConfig, progress: bool = True):
    """``partial_bpr``: returns (embeddings ``(n_items, dim) float32``, history)."""
    import torch
    import torch.nn.functional as F

    from .finetune import sample_training_negatives, assert_no_test_purchases, require_triplets

    assert_no_test_purchases(split.train, split)
    ev = require_triplets(split.train, cfg.max_profile)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    users = np.unique(ev.user)
    val_users = set(rng.choice(users, size=max(1, int(len(users) * cfg.val_fraction)), replace=False))
    is_val = np.array([u in val_users for u in ev.user])[ev.event]
    neg = sample_training_negatives(ev, rng, split.n_items)
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)[: cfg.max_val]
    A = torch.from_numpy(np.nan_to_num(acts))
    head = staged.head.to(cfg.device)

    def loss_of(t_idx):
        prof = [ev.profile_items[e] for e in ev.event[t_idx]]
        items, inv = np.unique(np.concatenate([ev.pos[t_idx], neg[t_idx], *prof]), return_inverse=True)
        emb = F.normalize(head(A[items].to(cfg.device)), dim=1)
        k = len(t_idx)
        pos_e, neg_e = emb[inv[:k]], emb[inv[k:2 * k]]
        cuts = np.cumsum([len(p) for p in prof])[:-1]
        user = torch.stack([emb[torch.from_numpy(i)].mean(0) for i in np.split(inv[2 * k:], cuts)])
        user = F.normalize(user, dim=1)
        diff = cfg.temperature * ((user * pos_e).sum(1) - (user * neg_e).sum(1))
        return -F.logsigmoid(diff).mean()

    def val_loss():
        with torch.no_grad():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va), 128)]))

    hist = _train(list(head.parameters()), lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "partial_bpr", progress)
    return _embed_all(head, acts, cfg.device), hist


def train_proxy_metadata(staged: StagedModel, acts: np.ndarray, items: pd.DataFrame, cfg: StageConfig,
                         progress: bool = True):
    """``proxy_metadata``: returns (embeddings ``(n_items, dim) float32``, history).

    Raises:
        PartSkipped: (a ``ValueError``) see :func:`proxy_classes`.
    """
    import torch
    import torch.nn.functional as F

    col = cfg.proxy_column
    classes = proxy_classes(items, cfg)
    labelled = np.flatnonzero(items[col].isin(classes).to_numpy())
    y_all = pd.Categorical(items[col], categories=classes).codes.astype(np.int64)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(labelled)
    n_val = max(1, int(len(perm) * cfg.val_fraction))
    va, tr = perm[:n_val][: cfg.max_val], perm[n_val:]
    head = staged.head.to(cfg.device)
    clf = torch.nn.Linear(head(torch.zeros(1, int(np.prod(staged.act_shape)))).shape[1], len(classes)).to(cfg.device)
    A, Y = torch.from_numpy(np.nan_to_num(acts)), torch.from_numpy(y_all)

    def loss_of(idx):
        return F.cross_entropy(clf(head(A[idx].to(cfg.device))), Y[idx].to(cfg.device))

    def val_loss():
        with torch.no_grad():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va), 128)]))

    params = list(head.parameters()) + list(clf.parameters())
    hist = _train(params, lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "proxy_metadata", progress)
    return _embed_all(head, acts, cfg.device), hist.assign(n_classes=len(classes), n_labelled=len(labelled))


def proxy_classes(items: pd.DataFrame, cfg: StageConfig) -> list:
    """The classes of ``cfg.proxy_column`` that ``proxy_metadata`` predicts (those with at least
    ``min_class_items`` items), most frequent first, tied counts in name order.

    Raises:
        PartSkipped: the items table lacks the column, or it has fewer than 2 such classes.
    """
    col = cfg.proxy_column
    if col not in items:
        raise PartSkipped(f"items have no {col!r} column for the proxy task; set proxy_column to one of "
                          f"{[c for c in items.columns if items[c].dtype == object and c not in ('item_id', 'image_path')]}")
    counts = items[col].value_counts()
    counts = counts[counts >= cfg.min_class_items]
    # most frequent first, ties by name: the label codes (and so the trained head) must not depend on
    # the order pandas gives tied counts (it changed in pandas 3)
    classes = sorted(counts.index.tolist(), key=lambda c: (-int(counts[c]), str(c)))
    if len(classes) < 2:
        raise PartSkipped(f"{col!r} has {len(classes)} classes with >= {cfg.min_class_items} items; the proxy task needs 2")
    return classes


def _contrastive_split(n_images: int, cfg: StageConfig) -> int:
    """Validation size of ``contrastive`` for ``n_images`` usable images.

    Raises:
        PartSkipped: fewer than 2 images would be left to train on.
    """
    n_val = max(cfg.batch_size // 2, int(n_images * cfg.val_fraction))
    if n_images - n_val < 2:
        raise PartSkipped(f"contrastive holds out {n_val} images for validation and needs 2 more to train on; "
                          f"this catalogue has {n_images} usable images")
    return n_val


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


def nt_xent(z1, z2, tau: float):
    """NT-Xent / InfoNCE loss of SimCLR (Chen et al. 2020, eq. 1) for paired views ``(B, d)``:
    each view's positive is its pair; the other 2B - 2 views in the batch are negatives."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def train_contrastive(staged: StagedModel, acts: np.ndarray, view1: np.ndarray, view2: np.ndarray,
                      cfg: StageConfig, progress: bool = True):
    """``contrastive``: SimCLR on cached augmented views; returns (embeddings, history)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ok = np.flatnonzero(np.isfinite(view1).all(1) & np.isfinite(view2).all(1))
    perm = rng.permutation(ok)
    n_val = _contrastive_split(len(perm), cfg)
    va, tr = perm[:n_val][: cfg.max_val], perm[n_val:]
    head = staged.head.to(cfg.device)
    dim = head(torch.zeros(1, int(np.prod(staged.act_shape)))).shape[1]
    proj = torch.nn.Sequential(torch.nn.Linear(dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)).to(cfg.device)
    V1, V2 = torch.from_numpy(view1), torch.from_numpy(view2)

    def loss_of(idx):
        return nt_xent(proj(head(V1[idx].to(cfg.device))), proj(head(V2[idx].to(cfg.device))), cfg.tau)

    def val_loss():
        with torch.no_grad():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va) - 1, 128)]))

    params = list(head.parameters()) + list(proj.parameters())
    hist = _train(params, lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "contrastive", progress)
    return _embed_all(head, acts, cfg.device), hist


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
        _contrastive_split(min(cfg.contrastive_images, cat.n_items), cfg)


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
    emb[~np.isfinite(acts).all(1)] = np.nan  # unreadable images stay unreadable
    t_train = time.perf_counter() - t0 - t_act
    save_weights(store, key, name, staged.head)  # the weights first: an .npz entry always has its .pt
    store.put_arrays("finetune", key, name=name, embeddings=emb, activation_seconds=np.float64(t_act),
                     train_seconds=np.float64(t_train), **{f"h_{c}": hist[c].to_numpy() for c in hist.columns})
    return emb, hist, {"hit": False, "seconds": time.perf_counter() - t0, "path": str(path),
                       "activation_seconds": t_act, "train_seconds": t_train}
