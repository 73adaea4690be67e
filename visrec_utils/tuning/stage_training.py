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
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..core.skips import PartSkipped


def _embed_all(head, acts: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(acts), batch):
            out.append(head(torch.from_numpy(np.nan_to_num(acts[s:s + batch])).to(device)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _train(params, step_loss, val_loss, cfg, n_train: int, desc: str, progress: bool):
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


def train_partial_bpr(staged, acts: np.ndarray, split, cfg, progress: bool = True):
    """``partial_bpr``: returns (embeddings ``(n_items, dim) float32``, history)."""
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


def train_proxy_metadata(staged, acts: np.ndarray, items: pd.DataFrame, cfg,
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
    """``contrastive``: SimCLR on cached augmented views; returns (embeddings, history)."""
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
        return nt_xent(proj(head(V1[idx].to(cfg.device))), proj(head(V2[idx].to(cfg.device))), cfg.tau)

    def val_loss():
        with torch.no_grad():
            return float(np.mean([float(loss_of(va[s:s + 128])) for s in range(0, len(va) - 1, 128)]))

    params = list(head.parameters()) + list(proj.parameters())
    hist = _train(params, lambda b, _rng: loss_of(tr[b]), val_loss, cfg, len(tr), "contrastive", progress)
    return _embed_all(head, acts, cfg.device), hist
