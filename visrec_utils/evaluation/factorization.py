"""Matrix factorisation from purchases: BPR-MF (a baseline) and VBPR (visual), fitted with Cornac.

**BPR-MF** (Rendle et al., UAI 2009) is Cornac's ``BPR`` (Cython, one thread when seeded, so
deterministic): score(u, i) = b_i + p_u . q_i. **VBPR** (He & McAuley, AAAI 2016) adds a visual
term over an item's image embedding f_i: score(u, i) = b_i + gamma_u . gamma_i + theta_u . (E^T f_i)
+ beta' . f_i. VBPR uses Cornac's ``VBPR`` model (initialisation, parameters, ``score``) on a
Cornac ``Dataset`` with the embeddings attached as an ``ImageModality``; only its training loop
is replaced (:func:`vbpr_loss`): Cornac 3.0.1's loop (and the newest in its repository, read
in 2026-12) adds ``feat_diff.mm(Bp)``, shape ``(batch, 1)``, to terms of shape ``(batch,)``, so
broadcasting sums the BPR loss over every pair of a batch (``batch x batch`` terms mixing one
triple's visual bias with another's preference) instead of each triple once, and a batch of 4,000
costs 16 million terms. The loop here optimises the paper's objective, one term per sampled
(u, i, j), with Cornac's hyper-parameters and regularisation (``lambda_w`` on the user and item
factors of the batch, ``lambda_b`` on b_i and ``lambda_b / 10`` on b_j, ``lambda_e`` on E and
beta'), Adam as Cornac, and negatives drawn uniformly from the training items (vectorised, not
Cornac's per-triple loop). ``tests/test_vbpr.py`` holds a check that fails once Cornac fixes the
shape, so the library's own loop can be used again.

**Training data**: ``split.train`` only (every purchase outside the test points; refused if it
holds a test purchase), one row per distinct (user, item) pair, in a canonical order (user id,
then item), so a fit does not depend on the order of the rows. Unlike popularity and item-kNN,
which use only purchases before each test point, a factorisation is fitted once per split:
under leave-last-basket-out its training data also holds other customers' earlier baskets that
fall after a test point in time (never a test purchase), as the fine-tuning strategies do.
Indices are mapped explicitly: Cornac's user and item indices (its ``uid_map`` / ``iid_map``)
are translated to visrec's user ids and item indices, never assumed equal.

**Cold items and unknown users.** An item absent from ``split.train`` has no factors. VBPR scores
it by its visual term alone, theta_u . (E^T f_i) + beta' . f_i (b_i = 0, gamma_i = 0: the paper's
cold-start case); BPR-MF cannot score it and gives it the lowest score the user gives any training
item (Cornac's ``rank`` does the same for items its model does not know), so cold items tie last.
A test user without training purchases has no factors either; both models then score with a zero
user vector (the item biases: b_i + beta' . f_i for VBPR, b_i for BPR-MF).

A user who bought every training item gives no triple (no negative to draw), and an empty
training part leaves every score 0 (ties, broken at random by the evaluator).

**Hyper-parameters** (not tuned on test data): BPR-MF uses Cornac's defaults (k=10, 100 epochs,
learning rate 0.001, lambda 0.01). VBPR uses Cornac's defaults k = k2 = 10, learning rate 0.005,
lambda_w = lambda_b = 0.01 and lambda_e = 0 (He & McAuley leave E and beta' unregularised), with
batches of 1,000 triples (Cornac: 100) and 10 epochs (Cornac: 50). The epochs were chosen on a
validation split of the H&M training part (leave-last-basket-out inside it: 676 customers'
last training baskets, the whole catalogue as candidates; no test point): AUC with
EfficientNet-Lite0 0.624 / 0.621 / 0.619 / 0.618 after 10 / 15 / 20 / 30 epochs (MobileNet-V1
0.25: 0.616 / 0.612 / 0.608 / 0.608; more epochs fit the training items' factors and rank the
cold items worse), batches of 256 or 500 within 0.002. Cost on the H&M sample (training part
24,804 pairs, 1,364 customers, 15,856 items), one thread, two busy cores: 1.7-2.9 s per fit
with 1,280-dimensional embeddings (1.0-1.2 s with 114 or 256), 36 s of CPU for the 24 fits of
the study's five protocols, plus about 3 s once per process for torch's optimiser import;
Cornac's own loop with its defaults takes 24 s per fit. The study's set-by-set evaluation
starts every VBPR fit ahead (:meth:`VBPR.fit_ahead`), one at a time in a thread of its own, so
they run beside the similarity rows and rankings instead of between them. Embeddings are
L2-normalised per item first, so every model's features have the same scale. BPR-MF fits in
0.4 s.

**Caching.** A fit depends only on the training pairs, the embedding bytes, the parameters and
the seed; fits are kept in memory under that content key (:data:`FIT_MEMO_SIZE` entries), so the splits
of one study that share training data (the main protocol, its cold/warm halves, its popularity
and age slices, its availability rules) fit each embedding set once. Between runs nothing is
refitted: the per-point evaluations are cached by the evaluation store
(:func:`visrec_utils.evaluation.experiment.evaluation_key`), and a cached evaluation needs no fit.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from ..catalogue.splits import Split, assert_no_test_purchases
from ..core.linalg import l2_normalize
from ..core.store import content_key
from .baselines import Recommender

#: Marks a Cornac ``VBPR`` trained by :func:`vbpr_loss` (VBPR's fit checks that Cornac still calls the hook).
TRAINED_BY = "visrec_utils.evaluation.factorization.vbpr_loss"
#: Fitted models kept in memory (each a few MB: factors, not the training data), least recently used
#: dropped (the H&M study fits 6 sets x 4 training parts, and BPR-MF 4 times).
FIT_MEMO_SIZE = 32
_FITS: OrderedDict = OrderedDict()
_EMB: dict = {}  # id(array) -> (array, digest)
_AHEAD: dict = {}  # fit key -> Future of a fit started by VBPR.fit_ahead, until fit() takes it
_AHEAD_LOCK = threading.Lock()
_AHEAD_POOL: ThreadPoolExecutor | None = None  # one thread: the fits started ahead run one at a time, in order


def check_no_test_purchases(split: Split) -> None:
    """Refuse a split whose ``train`` holds a test purchase: a (user, truth item) row at or after
    that test point's ``test_day``.

    Raises:
        ValueError: naming the first leaked purchases and what to train on instead.
    """
    memo = split.__dict__.setdefault("_memo", {})
    if memo.get("train_checked"):
        return
    assert_no_test_purchases(split.train, split)
    memo["train_checked"] = True


def _pairs(split: Split) -> tuple[pd.DataFrame, str]:
    """Distinct (user_id as str, item_idx) pairs of ``split.train``, sorted, and their content digest;
    memoised on the split."""
    memo = split.__dict__.setdefault("_memo", {})
    if "train_pairs" not in memo:
        tr = split.train[["user_id", "item_idx"]].astype({"user_id": str, "item_idx": np.int64})
        pairs = tr.drop_duplicates().sort_values(["user_id", "item_idx"], kind="stable").reset_index(drop=True)
        digest = content_key("\n".join(pairs["user_id"]).encode(), pairs["item_idx"].to_numpy().tobytes(),
                             int(split.n_items), length=32)
        memo["train_pairs"] = (pairs, digest)
    return memo["train_pairs"]


def _embedding_digest(emb: np.ndarray) -> str:
    hit = _EMB.get(id(emb))
    if hit is not None and hit[0] is emb:
        return hit[1]
    a = np.ascontiguousarray(emb)
    digest = hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:32]
    if len(_EMB) > 32:  # each entry holds its array
        _EMB.clear()
    _EMB[id(emb)] = (emb, digest)
    return digest


# the last Cornac dataset of each thread {(pairs digest, seed): (dataset, uid, item_of)}, shared by a split's sets
# (per thread: a fit adds its features to the dataset, and VBPR fits ahead in a thread of their own)
_DATASET = threading.local()


def _cornac_dataset(pairs: pd.DataFrame, digest: str, seed: int):
    """A Cornac ``Dataset`` of ``pairs`` and the maps back: ``(dataset, {user_id: row},
    (n_items_in_train,) int64 visrec item index of each Cornac item row)``; the last one is kept
    for the next fit on the same pairs (``digest``)."""
    from cornac.data import Dataset

    last = getattr(_DATASET, "last", None)
    if last is None or last[0] != (digest, seed):
        ds = Dataset.build(list(zip(pairs["user_id"], pairs["item_idx"].astype(str), np.ones(len(pairs)))), seed=seed)
        item_of = np.empty(ds.num_items, np.int64)
        for raw, row in ds.iid_map.items():
            item_of[row] = int(raw)
        last = _DATASET.last = ((digest, seed), (ds, dict(ds.uid_map), item_of))
    return last[1]


def _untrained(n_items: int, dim: int) -> tuple:
    """The fit of an empty training part: every score 0 (ties, broken at random by the evaluator)."""
    return np.zeros((1, dim), np.float32), np.zeros((n_items, dim), np.float32), np.zeros(n_items, np.float32), {}, None


def _strip(model):
    """Drop the training data Cornac keeps on a fitted model (the dataset and its feature copy)."""
    model.train_set = model.val_set = None
    return model


def _ahead_pool() -> ThreadPoolExecutor:
    global _AHEAD_POOL
    if _AHEAD_POOL is None:
        _AHEAD_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visrec-fit-ahead")
    return _AHEAD_POOL


def _take_ahead(key: str):
    """The fit started under ``key`` by :meth:`VBPR.fit_ahead` (waiting for it), or None when
    there is none or it was cancelled before it started."""
    with _AHEAD_LOCK:
        fut = _AHEAD.pop(key, None)
    if fut is None or fut.cancelled():
        return None
    return fut.result()


def _recall(key: str):
    """The memoised fit under ``key`` (now the most recently used), or None."""
    if key in _FITS:
        _FITS.move_to_end(key)
    return _FITS.get(key)


def _remember(key: str, value):
    _FITS[key] = value
    _FITS.move_to_end(key)
    while len(_FITS) > FIT_MEMO_SIZE:
        _FITS.popitem(last=False)
    return value


def vbpr_loss(params: dict, features, u, i, j, lambda_w: float, lambda_b: float, lambda_e: float):
    """VBPR's BPR objective on a batch of triples (user ``u`` prefers ``i`` to ``j``), one term per
    triple: ``-sum log sigmoid(x_uij) + regularisation``, with x_uij = score(u, i) - score(u, j).

    Args:
        params: torch tensors named as Cornac's ``VBPR`` attributes: ``beta_item (n_items,)``,
            ``gamma_user (n_users, k)``, ``gamma_item (n_items, k)``, ``theta_user (n_users, k2)``,
            ``emb_matrix (dim, k2)``, ``beta_prime (dim, 1)``.
        features: ``(n_items, dim) float32`` tensor; u, i, j: ``(batch,) int64`` tensors.
        lambda_w, lambda_b, lambda_e: Cornac's regularisation weights (module docstring).

    Returns:
        A scalar tensor.
    """
    import torch

    gu, tu = params["gamma_user"][u], params["theta_user"][u]
    gi, gj = params["gamma_item"][i], params["gamma_item"][j]
    bi, bj = params["beta_item"][i], params["beta_item"][j]
    visual = (features[i] - features[j]) @ torch.cat([params["emb_matrix"], params["beta_prime"]], 1)  # (batch, k2+1)
    x = bi - bj + (gu * (gi - gj)).sum(1) + (tu * visual[:, :-1]).sum(1) + visual[:, -1]  # (batch,)

    def sq(*ts):
        return sum(t.pow(2).sum() for t in ts) / 2

    reg = lambda_w * sq(gu, gi, gj, tu) + lambda_b * sq(bi) + lambda_b / 10 * sq(bj) \
        + lambda_e * sq(params["emb_matrix"], params["beta_prime"])
    return -torch.nn.functional.logsigmoid(x).sum() + reg


def _negatives(rng: np.random.Generator, users: np.ndarray, seen: np.ndarray, n_items: int) -> np.ndarray:
    """One uniform negative item per (user, positive) row, redrawn while the user bought it
    (``seen``: sorted ``user * n_items + item`` codes of the training pairs)."""
    neg = rng.integers(0, n_items, len(users))
    todo = np.arange(len(users))
    while todo.size:
        code = users[todo] * n_items + neg[todo]
        pos = np.minimum(np.searchsorted(seen, code), len(seen) - 1)
        todo = todo[seen[pos] == code]
        neg[todo] = rng.integers(0, n_items, todo.size)
    return neg


def _fit_vbpr(model, train_set, features: np.ndarray) -> None:
    """Train a Cornac ``VBPR`` in place by :func:`vbpr_loss` (its ``_fit_torch``, replaced)."""
    import torch

    names = ("beta_item", "gamma_user", "gamma_item", "theta_user", "emb_matrix", "beta_prime")
    params = {n: torch.tensor(np.asarray(getattr(model, n), np.float32), requires_grad=True) for n in names}
    opt = torch.optim.Adam(list(params.values()), lr=model.learning_rate)
    f = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    users, items = (np.asarray(a, np.int64) for a in train_set.uir_tuple[:2])
    n_items = train_set.num_items
    seen = np.unique(users * n_items + items)
    useful = np.bincount(users)[users] < n_items  # a user who bought every training item has no negative
    users, items = users[useful], items[useful]
    rng = np.random.default_rng(model.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: a second thread only adds waiting (2x slower on 2 busy cores)
    try:
        for _ in range(model.n_epochs):
            order, neg = rng.permutation(len(users)), _negatives(rng, users, seen, n_items)
            for start in range(0, len(order), model.batch_size):
                b = order[start:start + model.batch_size]
                u, i, j = (torch.from_numpy(a[b]) for a in (users, items, neg))
                loss = vbpr_loss(params, f, u, i, j, model.lambda_w, model.lambda_b, model.lambda_e)
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    for n in names:
        setattr(model, n, params[n].detach().numpy().copy())
    model.theta_item = features @ model.emb_matrix  # as Cornac keeps them for its score()
    model.visual_bias = (features @ model.beta_prime).ravel()
    model.trained_by = TRAINED_BY


def _name(obj, base: str) -> str:
    """``base`` with the defaults, else ``base`` and each non-default score parameter (``seed``
    and ``every_set`` left out: they do not make another model)."""
    changed = [f"{f.name}{getattr(obj, f.name):g}" for f in fields(obj)
               if f.init and f.name not in ("seed", "every_set") and getattr(obj, f.name) != f.default]
    return "_".join([base, *changed])


class _Factorisation(Recommender):
    """What BPR-MF and VBPR share: the user rows of a split's test points and the scoring product."""

    @property
    def cornac_model(self):
        """The fitted Cornac model (its ``uid_map``/``iid_map`` hold visrec's user ids and item
        indices as strings; its training data dropped), or None before ``fit`` or for an empty
        training part."""
        return self._model

    def _users_of(self, split: Split, uid: dict) -> np.ndarray:
        """Row of each test point's user in the user matrix; unknown users: the last (zero) row."""
        zero = len(uid)
        return np.fromiter((uid.get(str(u), zero) for u in split.users), np.int64, split.n_users)

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items) float32`` for test-point positions ``users`` (module
        docstring: cold items and unknown users)."""
        user_mat, item_mat, bias = self._fitted[:3]
        cached = getattr(self, "_item_t", None)
        if cached is None or cached[0] is not item_mat:  # the product with a contiguous (dim, n_items) copy
            cached = self._item_t = (item_mat, np.ascontiguousarray(item_mat.T))  # is 5x faster (same numbers)
        out = user_mat[self._rows[np.asarray(users, np.int64)]] @ cached[1]
        out += bias
        return np.asarray(out, np.float32)


@dataclass
class VBPR(_Factorisation):
    """VBPR (He & McAuley, AAAI 2016) with Cornac's model: collaborative and visual factors from
    ``split.train`` and one embedding set; cold items by their visual term (module docstring).

    Args:
        k, k2: collaborative and visual factors.
        n_epochs, batch_size, learning_rate: Adam over ``n_epochs`` passes of sampled triples.
        lambda_w, lambda_b, lambda_e: regularisation (Cornac's meaning, module docstring).
        seed: initialisation and sampling seed (the evaluation seed when created by name).
        every_set: False (default) runs only on the frozen sets of whole models (strategy
            ``frozen``, not a layer variant ``<model>@stage<i>``), one fit per set and training
            part; True runs on every embedding set.

    ``name``: ``vbpr`` with the defaults, else e.g. ``vbpr_k20`` (:func:`_name`).
    """

    k: int = 10
    k2: int = 10
    n_epochs: int = 10
    batch_size: int = 1000
    learning_rate: float = 0.005
    lambda_w: float = 0.01
    lambda_b: float = 0.01
    lambda_e: float = 0.0
    seed: int = 0
    every_set: bool = False
    revision: int = field(default=1, init=False)  # of the training code: part of the evaluation cache key
    content_based = True
    uses_similarity_rows = False
    _fitted: tuple = field(default=None, init=False, repr=False)
    _rows: np.ndarray = field(default=None, init=False, repr=False)
    _model: object = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return _name(self, "vbpr")

    def accepts(self, model: str, strategy: str) -> bool:
        """True for the frozen set of a whole model (or every set with ``every_set``)."""
        return self.every_set or (strategy == "frozen" and "@" not in str(model))

    def fit(self, split: Split, embeddings: np.ndarray | None = None, shared=None) -> "VBPR":
        """Fit on ``split.train`` and ``(n_items, dim)`` embeddings (``shared`` is ignored).

        Raises:
            ValueError: no embeddings (``vbpr`` listed as a baseline), a row count other than
                ``split.n_items``, or a training part that holds a test purchase.
            RuntimeError: a Cornac whose ``VBPR.fit`` no longer calls the training hook.
        """
        if embeddings is None:
            raise ValueError(f"{self.name} needs an embedding set (n_items, dim): list it under recommenders "
                             "(run once per embedding set), not under baselines")
        if len(embeddings) != split.n_items:
            raise ValueError(f"embeddings have {len(embeddings)} rows, the catalogue {split.n_items} items")
        key, job = self._fit_job(split, embeddings)
        fitted = _recall(key) or _remember(key, _take_ahead(key) or job())
        self._fitted, self._model = fitted, fitted[4]
        self._rows = self._users_of(split, fitted[3])
        return self

    def fit_ahead(self, split: Split, embeddings: np.ndarray):
        """Start this fit now in visrec's fit-ahead thread (one fit at a time, in the order asked),
        so it runs on a core the caller leaves idle; :meth:`fit` with the same split and
        embeddings then takes the result (waiting for it if needed), and raises what the fit
        raised. The fit is the one :meth:`fit` makes (same inputs, torch on one thread), so
        results are identical.

        Returns:
            the ``concurrent.futures.Future`` of the fit (cancel it to drop a fit not yet
            started), or None when the fit is already in memory or already started, or when
            the embeddings are missing or of another length (:meth:`fit` then raises its error).

        Raises:
            ValueError: the training part holds a test purchase (as :meth:`fit`).
        """
        if embeddings is None or len(embeddings) != split.n_items:
            return None
        key, job = self._fit_job(split, embeddings)
        with _AHEAD_LOCK:
            if key in _FITS or key in _AHEAD:
                return None
            fut = _AHEAD[key] = _ahead_pool().submit(job)
        return fut

    def _fit_job(self, split: Split, embeddings: np.ndarray):
        """What :meth:`fit` and :meth:`fit_ahead` share: the leak check (ValueError), then the
        fit's content key and the fit itself as a call, ``(key, job)``."""
        check_no_test_purchases(split)
        pairs, digest = _pairs(split)
        key = content_key("vbpr", repr(self), digest, _embedding_digest(embeddings), length=32)
        return key, lambda: self._fit(pairs, digest, l2_normalize(embeddings))

    def _fit(self, pairs: pd.DataFrame, digest: str, feats: np.ndarray) -> tuple:
        """``(user_mat (n_users + 1, k + k2), item_mat (n_items, k + k2), bias (n_items,), uid, model)``."""
        import cornac
        from cornac.data import ImageModality

        if pairs.empty:
            return _untrained(len(feats), self.k + self.k2)
        ds, uid, item_of = _cornac_dataset(pairs, digest, self.seed)
        # rows already in Cornac's item order (item_of, from its iid_map), so no id swap is needed
        ds.add_modalities(item_image=ImageModality(features=feats[item_of]).build())

        class _VBPR(cornac.models.VBPR):
            _fit_torch = _fit_vbpr

            def _init(self, n_users, n_items, features):
                # Cornac's draws, in its order (the shapes need only the feature count); its
                # precomputed theta_item and visual_bias are left out: _fit_vbpr sets them after
                # training, and the product waited on the BLAS of the next set's similarity rows
                # (0.6 s of 2.7 s per fit in notebook 04's profile)
                super()._init(n_users, n_items, features[:0])

        model = _VBPR(k=self.k, k2=self.k2, n_epochs=self.n_epochs, batch_size=self.batch_size,
                      learning_rate=self.learning_rate, lambda_w=self.lambda_w, lambda_b=self.lambda_b,
                      lambda_e=self.lambda_e, use_gpu=False, verbose=False, seed=self.seed)
        model.fit(ds)  # visrec's loop (_fit_vbpr) prints nothing, unlike Cornac's
        ds.item_image = None  # the dataset is kept for the next set's fit; its features are not
        if getattr(model, "trained_by", None) != TRAINED_BY:
            raise RuntimeError(f"cornac {cornac.__version__}'s VBPR.fit no longer calls _fit_torch, so visrec's "
                               "per-triple loss was not used; install cornac 3.0.x or adapt factorization.py")
        n_items = len(feats)
        gamma, bias = np.zeros((n_items, self.k), np.float32), np.zeros(n_items, np.float32)
        gamma[item_of], bias[item_of] = model.gamma_item, model.beta_item
        item_mat = np.hstack([gamma, feats @ model.emb_matrix]).astype(np.float32)
        bias = (bias + (feats @ model.beta_prime).ravel()).astype(np.float32)
        user_mat = np.vstack([np.hstack([model.gamma_user, model.theta_user]),
                              np.zeros((1, self.k + self.k2))]).astype(np.float32)
        return user_mat, item_mat, bias, uid, _strip(model)


@dataclass
class BPRMF(_Factorisation):
    """BPR matrix factorisation (Rendle et al., UAI 2009), Cornac's ``BPR``, fitted on
    ``split.train``; a non-visual baseline. Cold items tie at the user's lowest score.

    Args:
        k, max_iter, learning_rate, lambda_reg: Cornac's ``BPR`` parameters (its defaults).
        seed: initialisation and sampling seed (the evaluation seed when created by name).

    ``name``: ``bpr_mf`` with the defaults, else e.g. ``bpr_mf_k20``.
    """

    k: int = 10
    max_iter: int = 100
    learning_rate: float = 0.001
    lambda_reg: float = 0.01
    seed: int = 0
    content_based = False
    _fitted: tuple = field(default=None, init=False, repr=False)
    _rows: np.ndarray = field(default=None, init=False, repr=False)
    _model: object = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return _name(self, "bpr_mf")

    def fit(self, split: Split, embeddings=None) -> "BPRMF":
        """Fit on ``split.train`` (``embeddings`` is ignored).

        Raises:
            ValueError: a training part that holds a test purchase.
        """
        check_no_test_purchases(split)
        pairs, digest = _pairs(split)
        key = content_key("bpr_mf", repr(self), digest, length=32)
        fitted = _recall(key) or _remember(key, self._fit(pairs, digest, split.n_items))
        self._fitted, self._model = fitted, fitted[4]
        self._rows = self._users_of(split, fitted[3])
        return self

    def _fit(self, pairs: pd.DataFrame, digest: str, n_items: int) -> tuple:
        import cornac

        if pairs.empty:
            return (*_untrained(n_items, self.k), np.zeros(n_items, bool))
        ds, uid, item_of = _cornac_dataset(pairs, digest, self.seed)
        model = cornac.models.BPR(k=self.k, max_iter=self.max_iter, learning_rate=self.learning_rate,
                                  lambda_reg=self.lambda_reg, verbose=False, seed=self.seed)
        model.fit(ds)
        item_mat, bias = np.zeros((n_items, self.k), np.float32), np.zeros(n_items, np.float32)
        item_mat[item_of], bias[item_of] = model.i_factors, model.i_biases
        cold = np.ones(n_items, bool)
        cold[item_of] = False
        user_mat = np.vstack([model.u_factors, np.zeros((1, self.k))]).astype(np.float32)
        return user_mat, item_mat, bias, uid, _strip(model), cold

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items) float32``; items without factors get each row's lowest."""
        out = super().score(users)
        cold = self._fitted[5]
        if cold.any() and len(out):
            out[:, cold] = out[:, ~cold].min(1, keepdims=True)
        return out
