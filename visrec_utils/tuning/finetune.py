"""Fine-tuning strategies on top of frozen ImageNet embeddings.

``frozen``: the pooled ImageNet features as they are (the reference).

``bpr_projection``: a learned linear map W of the frozen embeddings (initialised to the
identity, so training starts from the frozen ranking), trained with the BPR loss (Rendle et
al. 2009) on (user profile, bought item, not-bought item) triplets built from *training*
baskets only: for every training basket of a user after their first, the profile is the mean
of the L2-normalised embeddings of the items bought on earlier days, the positives are the
basket's new items, and a negative is drawn uniformly from items the user never bought in
training. The score is cos(W m_profile, W e_item), scaled by a fixed temperature. Test
baskets are never seen (they are not in ``split.train``). A validation set of users is split
off the training users for early stopping.

The budget is ``max_steps`` Adam steps on batches of ``batch_size`` triplets (drawn without
replacement, reshuffled after each pass), validated every ``eval_every`` steps, stopped early
after ``patience`` validations without improvement: the cost does not grow with the number of
purchases (only the one-off event table and the validation set do, the latter capped at
``max_val`` triplets).

The strategies themselves are registered objects (:mod:`visrec_utils.tuning.strategies`:
``create_strategy``, ``list_strategies``, ``register_strategy``).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..catalogue.splits import Split, assert_no_test_purchases  # noqa: F401 (re-exported: callers use finetune.X)
from ..core.linalg import l2_normalize
from ..core.skips import PartSkipped
from ..core.store import Store, content_key

logger = logging.getLogger(__name__)

EMBEDDING_STRATEGIES = ("frozen", "bpr_projection")
HISTORY_COLUMNS = ["step", "epoch", "train_loss", "val_loss", "val_acc", "seconds"]


def as_store(where) -> Store:
    """``where`` as a :class:`~visrec_utils.core.store.Store`: a store as it is, a folder
    (``str``/``PathLike``) as ``Store(folder)``, None as the default cache (``$VISREC_CACHE``
    or ``~/.cache/visrec``)."""
    return where if isinstance(where, Store) else Store(where)


@dataclass(frozen=True)
class BPRConfig:
    """Hyper-parameters of ``bpr_projection`` (defaults sized for a 2-core laptop).

    The budget is ``max_steps`` optimiser steps of ``batch_size`` triplets (not epochs, so the
    cost does not grow with the number of purchases); validation every ``eval_every`` steps on
    at most ``max_val`` triplets of the held-out users; early stopping after ``patience``
    validations without an improvement of 1e-4.
    """

    max_steps: int = 400
    batch_size: int = 512
    eval_every: int = 20
    lr: float = 3e-4
    temperature: float = 10.0
    val_fraction: float = 0.1
    max_val: int = 4096
    patience: int = 10
    max_profile: int = 50
    seed: int = 0


@dataclass
class Events:
    """Training events: profile means, positives and the items each user bought.

    Attributes:
        profile_items: per event, int64 item indices of the profile (most recent ``max_profile``).
        pos: ``(n_triplets,) int64`` positive items; ``event`` maps each to its event.
        event: ``(n_triplets,) int64`` event index of each positive.
        user: ``(n_events,) object`` user id of each event.
        bought: ``{user_id: np.ndarray}`` items bought in training, excluded from negatives.
    """

    profile_items: list
    pos: np.ndarray
    event: np.ndarray
    user: np.ndarray
    bought: dict


def training_events(train: pd.DataFrame, max_profile: int = 50) -> Events:
    """Build BPR events from training interactions (``user_id, item_idx, timestamp``).

    Only purchases present in ``train`` are used, so a split's test baskets never enter.
    """
    prof, pos, ev, users, bought = [], [], [], [], {}
    for u, g in train.sort_values("timestamp").groupby("user_id", sort=True):
        bought[u] = np.unique(g["item_idx"].to_numpy())
        seen: list[int] = []
        seen_set: set[int] = set()
        for _, b in g.groupby("timestamp", sort=True):
            items = np.unique(b["item_idx"].to_numpy())
            new = [i for i in items if i not in seen_set]
            if seen and new:
                prof.append(np.array(seen[-max_profile:], dtype=np.int64))
                pos.extend(new)
                ev.extend([len(prof) - 1] * len(new))
                users.append(u)
            for i in items:
                if i not in seen_set:
                    seen_set.add(i)
                    seen.append(int(i))
    return Events(prof, np.array(pos, dtype=np.int64), np.array(ev, dtype=np.int64),
                  np.array(users, dtype=object), bought)


def require_triplets(train: pd.DataFrame, max_profile: int = 50) -> Events:
    """The training events of :func:`training_events`, when there are enough to train on.

    Raises:
        PartSkipped: no training triplet (no user has a training basket after an earlier one),
            or all of them come from one user (one user is held out for validation, so at
            least two are needed).
    """
    ev = training_events(train, max_profile)
    if len(ev.pos) == 0:
        raise PartSkipped("no training triplets: no user has a training basket with a new item after an earlier "
                          "basket, and purchase-based fine-tuning learns from those")
    n_users = len(set(ev.user.tolist()))
    if n_users < 2:
        raise PartSkipped(f"the training triplets come from {n_users} user, and purchase-based fine-tuning needs "
                          "at least 2 (one is held out for validation)")
    return ev


def projection_inputs(frozen: dict, strategies, split: Split, cfg: BPRConfig = BPRConfig()) -> dict:
    """The frozen sets ``bpr_projection`` trains on: ``frozen`` itself, when the part can run.

    Raises:
        PartSkipped: ``bpr_projection`` is not in ``strategies``, ``frozen`` is empty, or the
            split's training part has too few triplets (:func:`require_triplets`).
    """
    if "bpr_projection" not in strategies:
        raise PartSkipped("bpr_projection is not in strategies")
    if not frozen:
        raise PartSkipped("no frozen embedding set to project (models selects none of this study's models)")
    require_triplets(split.train, cfg.max_profile)
    return frozen


def comparison_sets(frozen: dict, tuned: dict) -> dict:
    """Every fine-tuned set and the frozen set of each model that has one, ``{(model, strategy): emb}``.

    Raises:
        PartSkipped: no fine-tuned set (every strategy was left out or skipped).
    """
    if not tuned:
        raise PartSkipped("no fine-tuned embedding set to compare with the frozen features (every strategy "
                          "was left out of strategies or skipped above)")
    trained = {m for m, _ in tuned}
    return {**{k: v for k, v in frozen.items() if k[0] in trained}, **tuned}


def bought_keys(events: Events, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(per event: int64 user code * n_items, sorted int64 keys user_code * n_items + item)``
    of every training purchase, for :func:`sample_training_negatives`."""
    codes = {u: i for i, u in enumerate(events.bought)}
    keys = [np.asarray(items, dtype=np.int64) + codes[u] * np.int64(n_items) for u, items in events.bought.items()]
    event_code = np.array([codes[u] for u in events.user], dtype=np.int64) * np.int64(n_items)
    return event_code, np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)


def sample_training_negatives(events: Events, rng, n_items: int, triplets=None, keys=None) -> np.ndarray:
    """A negative item per triplet: uniform over ``0 .. n_items - 1``, redrawn (in triplet order,
    one ``rng.integers`` call per redraw) while the triplet's user bought it in training.

    Args:
        events: :func:`training_events`.
        rng: a ``numpy.random.Generator``.
        n_items: catalogue size.
        triplets: int64 indices into ``events.pos`` (default: all of them, in order).
        keys: :func:`bought_keys` of ``events`` (computed when None).

    Returns:
        ``(len(triplets),) int64`` items: the same draws as a loop over the triplets.
    """
    t = np.arange(len(events.pos)) if triplets is None else np.asarray(triplets)
    event_code, sorted_keys = bought_keys(events, n_items) if keys is None else keys
    neg = rng.integers(0, n_items, size=len(t))
    ucode = event_code[events.event[t]]

    def bought(k):  # membership in the sorted keys
        at = np.minimum(np.searchsorted(sorted_keys, k), len(sorted_keys) - 1)
        return sorted_keys[at] == k

    for j in np.flatnonzero(bought(ucode + neg)):  # the rare draws the user bought
        while bought(ucode[j] + neg[j]):
            neg[j] = rng.integers(0, n_items)
    return neg


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (None: as it is), restoring the previous count after.

    The linear projection's matrices are small: one thread avoids OpenMP's synchronisation,
    which costs ~80x on a shared 2-core machine (5 ms against 0.4 s per step, measured), and
    makes the result independent of the machine's core count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(before if n is None else max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_bpr_projection(embeddings: np.ndarray, split: Split, cfg: BPRConfig = BPRConfig(),
                         progress: bool = True):
    """Train the ``bpr_projection`` strategy for at most ``cfg.max_steps`` optimiser steps.

    Args:
        embeddings: frozen ``(n_items, dim) float32``.
        split: the split whose ``train`` interactions provide the triplets.
        cfg: hyper-parameters (:class:`BPRConfig`).
        progress: tqdm bar over steps.

    Returns:
        (projected embeddings ``(n_items, dim) float32`` with the best validated W, history
        DataFrame with one row per validation: ``step, epoch, train_loss, val_loss, val_acc,
        seconds``; ``epoch`` is ``step * batch_size / n_train`` (passes over the training
        triplets), ``val_acc`` the share of validation triplets with s_pos > s_neg, step 0 the
        identity/frozen start). The same inputs and ``cfg`` give identical results.

    Raises:
        PartSkipped: (a ``ValueError``) the training data yields too few triplets
            (:func:`require_triplets`).
    """
    with torch_threads(1):
        return _train_bpr_projection(embeddings, split, cfg, progress)


def _train_bpr_projection(embeddings, split, cfg, progress):
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    assert_no_test_purchases(split.train, split)
    ev = require_triplets(split.train, cfg.max_profile)
    keys = bought_keys(ev, split.n_items)
    base = l2_normalize(np.asarray(embeddings, dtype=np.float32))
    prof_mean = np.stack([base[p].mean(0) for p in ev.profile_items]).astype(np.float32)
    users = np.unique(ev.user)
    val_users = set(rng.choice(users, size=max(1, int(len(users) * cfg.val_fraction)), replace=False))
    is_val = np.array([u in val_users for u in ev.user])[ev.event]
    val_t = np.flatnonzero(is_val)
    val_neg = sample_training_negatives(ev, rng, split.n_items, keys=keys)[val_t][: cfg.max_val]
    val_t = val_t[: cfg.max_val]
    E, M = torch.from_numpy(base), torch.from_numpy(prof_mean)
    W = torch.nn.Parameter(torch.eye(base.shape[1]))
    opt = torch.optim.Adam([W], lr=cfg.lr)

    def diffs(t, neg):  # temperature * (s_pos - s_neg) of triplets t; the profile is projected once
        u = F.normalize(M[torch.from_numpy(ev.event[t])] @ W, dim=1)
        v = F.normalize(E[torch.from_numpy(np.concatenate([ev.pos[t], neg]))] @ W, dim=1)
        return cfg.temperature * (u * (v[: len(t)] - v[len(t):])).sum(1)

    def val_stats():
        with torch.no_grad():
            d = diffs(val_t, val_neg)
            return float(-F.logsigmoid(d).mean()), float((d > 0).float().mean())

    tr = np.flatnonzero(~is_val)
    vl, va = val_stats()
    history = [{"step": 0, "epoch": 0.0, "train_loss": np.nan, "val_loss": vl, "val_acc": va, "seconds": 0.0}]
    best, bad, losses, order, pos = (vl, W.detach().clone()), 0, [], np.zeros(0, np.int64), 0
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, desc="bpr_projection", unit="step", disable=not progress)
    for step in range(1, cfg.max_steps + 1):
        if pos + cfg.batch_size > len(order):  # a new pass: the rest of this one, then a fresh shuffle
            order, pos = np.concatenate([order[pos:], rng.permutation(tr)]), 0
        b, pos = order[pos:pos + cfg.batch_size], pos + cfg.batch_size
        loss = -F.logsigmoid(diffs(b, sample_training_negatives(ev, rng, split.n_items, b, keys))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.update(1)
        if step % cfg.eval_every and step < cfg.max_steps:
            continue
        vl, va = val_stats()
        history.append({"step": step, "epoch": step * cfg.batch_size / len(tr), "train_loss": float(np.mean(losses)),
                        "val_loss": vl, "val_acc": va, "seconds": time.perf_counter() - t0})
        losses = []
        if vl < best[0] - 1e-4:
            best, bad = (vl, W.detach().clone()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    bar.close()
    with torch.no_grad():
        projected = (E @ best[1]).numpy().astype(np.float32)
    return projected, pd.DataFrame(history, columns=HISTORY_COLUMNS)


def split_fingerprint(split: Split) -> str:
    """Content key (64 hex digits, :func:`~visrec_utils.core.store.content_key`) of the training
    interactions: user ids, item indices, timestamps (ns) and ``n_items``, values only, so it does
    not depend on pandas dtypes."""
    tr = split.train
    return content_key("\n".join(tr["user_id"].astype(str).tolist()).encode(),
                       tr["item_idx"].to_numpy(dtype=np.int64).tobytes(),
                       tr["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tobytes(),
                       int(split.n_items), length=64)


def apply_strategy(strategy: str, embeddings: np.ndarray, split: Split, cache_dir: "str | os.PathLike | Store | None",
                   cfg: BPRConfig = BPRConfig(), progress: bool = True):
    """Embeddings of one frozen-embedding strategy (``frozen`` or ``bpr_projection``), cached by
    (strategy, parameters, inputs).

    Args:
        strategy: ``frozen`` or ``bpr_projection`` (the stage strategies train CNN stages:
            :func:`visrec_utils.tuning.stage_tuning.run_stage_strategy`).
        embeddings: frozen ``(n_items, dim) float32``.
        split: training data source.
        cache_dir: a :class:`~visrec_utils.core.store.Store` or its folder (None: the default
            cache); the result is its entry of kind ``finetune``, named by the strategy, keyed by
            :func:`~visrec_utils.core.store.content_key` of (embeddings, training data, parameters).
        cfg: hyper-parameters for ``bpr_projection``.
        progress: tqdm bar over steps.

    Returns:
        (embeddings ``(n_items, dim) float32``, history DataFrame (empty for ``frozen``), info dict
        with ``hit``, ``seconds`` (this call) and, for ``bpr_projection``, ``path``)

    Raises:
        KeyError: a strategy other than ``frozen`` and ``bpr_projection`` (the message says where the others run).
        PartSkipped: too few training triplets (:func:`require_triplets`).
    """
    if strategy == "frozen":
        return embeddings, pd.DataFrame(), {"hit": True, "seconds": 0.0}
    if strategy != "bpr_projection":
        raise KeyError(f"apply_strategy trains frozen or bpr_projection, not {strategy!r}; choose from those two, "
                       "or run any registered strategy with visrec_utils.tuning.strategies.create_strategy(name).fit")
    store = as_store(cache_dir)
    key = content_key(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes(), split_fingerprint(split),
                      {"strategy": strategy, **asdict(cfg)})
    path = store.path("finetune", key, ".npz", name=strategy)
    t0 = time.perf_counter()
    z = store.get_arrays("finetune", key, name=strategy)
    if z is not None:
        hist = pd.DataFrame({c: z[f"h_{c}"] for c in HISTORY_COLUMNS})
        logger.debug("%s: cached result %s", strategy, path)
        return z["embeddings"], hist, {"hit": True, "seconds": time.perf_counter() - t0, "path": str(path)}
    emb, hist = train_bpr_projection(embeddings, split, cfg, progress=progress)
    store.put_arrays("finetune", key, name=strategy, embeddings=emb,
                     **{f"h_{c}": hist[c].to_numpy() for c in hist.columns})
    return emb, hist, {"hit": False, "seconds": time.perf_counter() - t0, "path": str(path)}
