"""Training of the stage strategies on cached activations: losses and training loops.

The staging and caching (:class:`~visrec_utils.tuning.stage_tuning.StageConfig`,
:class:`~visrec_utils.tuning.stage_tuning.StagedModel`, the cached activations and
:func:`~visrec_utils.tuning.stage_tuning.run_stage_strategy`) live in
:mod:`visrec_utils.tuning.stage_tuning`, which imports this module (never the other way round).
Here:

* ``partial_bpr`` (:func:`train_partial_bpr`): BPR (Rendle et al. 2009) on (user profile, bought
  item, not-bought item) triplets from training baskets only.
* ``proxy_metadata`` (:func:`train_proxy_metadata`): cross-entropy on an item metadata column
  (:func:`proxy_classes`).
* ``contrastive`` (:func:`train_contrastive`): SimCLR's NT-Xent loss (:func:`nt_xent`) on two
  cached augmented views.

Every trainer takes ``staged`` (a ``StagedModel``: ``head`` is trained in place, ``act_shape`` its
input shape), the activations ``acts`` ``(n_items, C*h*w) float32`` (NaN rows for unreadable
images) and ``cfg`` (a ``StageConfig``), and returns (embeddings ``(n_items, dim) float32``, history
DataFrame with one row per validation: ``step, train_loss, val_loss, seconds, stopped_by_clock``).
The budget is ``cfg.max_steps`` optimiser steps (:func:`_train`); the loops run with
:data:`TRAIN_THREADS` torch threads, the activations are read in place (no copy) and the final
embedding pass is batched without autograd.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped


#: torch threads of the training loops (None: torch's default, every core). On a quiet 2-core
#: machine a partial_bpr step (forward and backward of 448 activation rows through Lite0's last
#: stage) took 1.60 s with 2 threads against 2.81 s with 1; on a 2-core machine shared with other
#: jobs 1 thread was faster (OpenMP's synchronisation), so a shared machine may set it to 1.
TRAIN_THREADS: int | None = None


def _embed_all(head, acts: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    """``head`` over every row of ``acts`` (NaN rows as zeros) in batches of ``batch``, without
    autograd: ``(n_items, dim) float32``, written into one preallocated array."""
    import torch

    out = None
    with torch.inference_mode():
        for s in range(0, len(acts), batch):
            e = head(torch.from_numpy(np.nan_to_num(acts[s:s + batch])).to(device)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(acts), e.shape[1]), dtype=np.float32)
            out[s:s + len(e)] = e
    return out if out is not None else np.zeros((0, 0), np.float32)


def _rows(A, idx, device: str):
    """Rows ``idx`` of the activations tensor ``A``, NaN (unreadable images) as zeros, on ``device``."""
    import torch

    return torch.nan_to_num(A[torch.as_tensor(idx)]).to(device)


def _train(params, step_loss, val_loss, cfg, n_train: int, desc: str, progress: bool):
    """Shared loop: shuffled batches of ``n_train`` examples for exactly ``cfg.max_steps`` steps
    unless early stopping (``patience`` validations without an improvement of 1e-4) ends it
    sooner; validation every ``eval_every`` steps and after the last; the best parameters are
    copied back. ``cfg.max_seconds`` (default None: off) is an opt-in wall-clock cap, the only
    rule that depends on the machine; a run it stops says so (``stopped_by_clock``). Returns the
    history (one row per validation)."""
    import torch
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_loss, best_state, bad, step = val_loss(), [p.detach().clone() for p in params], 0, 0
    history = [{"step": 0, "train_loss": np.nan, "val_loss": best_loss, "seconds": 0.0, "stopped_by_clock": False}]
    losses, t0 = [], time.perf_counter()
    clock = cfg.max_seconds if cfg.max_seconds is not None else float("inf")
    bar = tqdm(total=cfg.max_steps, desc=desc, unit="step", disable=not progress)
    stop = False
    while not stop:
        order = rng.permutation(n_train)
        for s in range(0, n_train - cfg.batch_size + 1 if n_train >= cfg.batch_size else 1, cfg.batch_size):
            loss = step_loss(order[s:s + cfg.batch_size], rng)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            elapsed = time.perf_counter() - t0
            out_of_time, last = elapsed > clock, step >= cfg.max_steps
            if step % cfg.eval_every == 0 or out_of_time or last:
                vl = val_loss()
                history.append({"step": step, "train_loss": float(np.mean(losses)), "val_loss": vl,
                                "seconds": time.perf_counter() - t0, "stopped_by_clock": out_of_time and not last})
                losses = []
                bar.set_postfix(val_loss=f"{vl:.4f}")
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


def train_partial_bpr(staged, acts: np.ndarray, split, cfg, progress: bool = True):
    """``partial_bpr``: returns (embeddings ``(n_items, dim) float32``, history).

    Each step runs the head once over the distinct items of the batch (positives, negatives and
    profile items); a validation runs it once over the distinct items of the (at most
    ``max_val``) validation triplets, without autograd.
    """
    from .finetune import torch_threads

    with torch_threads(TRAIN_THREADS):
        return _train_partial_bpr(staged, acts, split, cfg, progress)


def _train_partial_bpr(staged, acts, split, cfg, progress):
    import torch
    import torch.nn.functional as F

    from .finetune import assert_no_test_purchases, require_triplets, sample_training_negatives

    assert_no_test_purchases(split.train, split)
    ev = require_triplets(split.train, cfg.max_profile)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    users = np.unique(ev.user)
    val_users = set(rng.choice(users, size=max(1, int(len(users) * cfg.val_fraction)), replace=False))
    is_val = np.array([u in val_users for u in ev.user])[ev.event]
    neg = sample_training_negatives(ev, rng, split.n_items)
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)[: cfg.max_val]
    A = torch.from_numpy(acts)
    head = staged.head.to(cfg.device)

    def loss_of(t_idx, embed):
        prof = [ev.profile_items[e] for e in ev.event[t_idx]]
        items, inv = np.unique(np.concatenate([ev.pos[t_idx], neg[t_idx], *prof]), return_inverse=True)
        emb = F.normalize(embed(items), dim=1)
        k = len(t_idx)
        pos_e, neg_e = emb[inv[:k]], emb[inv[k:2 * k]]
        seg = torch.from_numpy(np.repeat(np.arange(k), [len(p) for p in prof])).to(emb.device)
        user = torch.zeros(k, emb.shape[1], dtype=emb.dtype, device=emb.device).index_add_(0, seg, emb[inv[2 * k:]])
        user = F.normalize(user / torch.bincount(seg, minlength=k).unsqueeze(1).to(emb.dtype), dim=1)
        diff = cfg.temperature * ((user * pos_e).sum(1) - (user * neg_e).sum(1))
        return -F.logsigmoid(diff).mean()

    def val_loss():
        with torch.inference_mode():
            return float(loss_of(va, lambda items: torch.cat([head(_rows(A, items[s:s + 256], cfg.device))
                                                              for s in range(0, len(items), 256)])))

    hist = _train(list(head.parameters()), lambda b, _rng: loss_of(tr[b], lambda it: head(_rows(A, it, cfg.device))),
                  val_loss, cfg, len(tr), "partial_bpr", progress)
    return _embed_all(head, acts, cfg.device), hist


def train_proxy_metadata(staged, acts: np.ndarray, items: pd.DataFrame, cfg,
                         progress: bool = True):
    """``proxy_metadata``: returns (embeddings ``(n_items, dim) float32``, history).

    Raises:
        PartSkipped: (a ``ValueError``) see :func:`proxy_classes`.
    """
    from .finetune import torch_threads

    with torch_threads(TRAIN_THREADS):
        return _train_proxy_metadata(staged, acts, items, cfg, progress)


def _train_proxy_metadata(staged, acts, items, cfg, progress):
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
    A, Y = torch.from_numpy(acts), torch.from_numpy(y_all)

    def loss_of(idx):
        return F.cross_entropy(clf(head(_rows(A, idx, cfg.device))), Y[idx].to(cfg.device))

    def val_loss():
        with torch.inference_mode():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va), 128)]))

    params = list(head.parameters()) + list(clf.parameters())
    hist = _train(params, lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "proxy_metadata", progress)
    return _embed_all(head, acts, cfg.device), hist.assign(n_classes=len(classes), n_labelled=len(labelled))


def proxy_classes(items: pd.DataFrame, cfg) -> list:
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


def contrastive_val_size(n_images: int, cfg) -> int:
    """Validation size of ``contrastive`` for ``n_images`` usable images.

    Raises:
        PartSkipped: fewer than 2 images would be left to train on.
    """
    n_val = max(cfg.batch_size // 2, int(n_images * cfg.val_fraction))
    if n_images - n_val < 2:
        raise PartSkipped(f"contrastive holds out {n_val} images for validation and needs 2 more to train on; "
                          f"this catalogue has {n_images} usable images")
    return n_val


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


def train_contrastive(staged, acts: np.ndarray, view1: np.ndarray, view2: np.ndarray,
                      cfg, progress: bool = True):
    """``contrastive``: SimCLR on cached augmented views; returns (embeddings, history).

    Both views of a batch go through the head in one forward (BatchNorm is in eval mode, so
    each row's output does not depend on the others).
    """
    from .finetune import torch_threads

    with torch_threads(TRAIN_THREADS):
        return _train_contrastive(staged, acts, view1, view2, cfg, progress)


def _train_contrastive(staged, acts, view1, view2, cfg, progress):
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ok = np.flatnonzero(np.isfinite(view1).all(1) & np.isfinite(view2).all(1))
    perm = rng.permutation(ok)
    n_val = contrastive_val_size(len(perm), cfg)
    va, tr = perm[:n_val][: cfg.max_val], perm[n_val:]
    head = staged.head.to(cfg.device)
    dim = head(torch.zeros(1, int(np.prod(staged.act_shape)))).shape[1]
    proj = torch.nn.Sequential(torch.nn.Linear(dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)).to(cfg.device)
    V1, V2 = torch.from_numpy(view1), torch.from_numpy(view2)

    def loss_of(idx):
        z = proj(head(torch.cat([V1[idx], V2[idx]]).to(cfg.device)))
        return nt_xent(z[: len(idx)], z[len(idx):], cfg.tau)

    def val_loss():
        with torch.inference_mode():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va) - 1, 128)]))

    params = list(head.parameters()) + list(proj.parameters())
    hist = _train(params, lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "contrastive", progress)
    return _embed_all(head, acts, cfg.device), hist
