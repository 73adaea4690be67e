"""Fine-tuning strategies as registered objects: one registry, one verb (as timm's ``create_model``).

A :class:`Strategy` says what it trains on (``uses_purchases``: does training see purchase data?
``needs_backbone``: does it train CNN stages, so needs the loaded model, or only the frozen
embeddings?), what its parameters are (:meth:`Strategy.params`, recorded as provenance) and
how it fits, with one call signature for every strategy::

    emb, history, info = create_strategy("bpr_projection", max_steps=200).fit(
        model_name, frozen_embeddings, cat, split, store, loaded=None)

The built-ins wrap the study's code paths unchanged: ``frozen`` (the reference),
``bpr_projection`` (:func:`visrec_utils.tuning.finetune.apply_strategy` with a
:class:`~visrec_utils.tuning.finetune.BPRConfig`) and the stage strategies ``partial_bpr``,
``proxy_metadata``, ``contrastive`` (:func:`visrec_utils.tuning.stage_tuning.run_stage_strategy`
with a :class:`~visrec_utils.tuning.stage_tuning.StageConfig`). A new strategy is one
:func:`register_strategy` call; :func:`tune` (notebook 03's training loop) then runs it.
"""
from __future__ import annotations

import copy
import difflib
import logging
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass

import pandas as pd

from ..core.skips import PartSkipped
from .finetune import HISTORY_COLUMNS, BPRConfig, apply_strategy, as_store, require_triplets
from .stage_tuning import STAGE_STRATEGIES, StageConfig, require_frozen, require_stage_data, run_stage_strategy, stage_plan

__all__ = ["Strategy", "register_strategy", "unregister_strategy", "create_strategy", "list_strategies", "tune",
           "STAGE_HISTORY_COLUMNS", "COST_COLUMNS"]

logger = logging.getLogger(__name__)

#: Columns of ``tune``'s stage history (``results/stage_learning_curves.csv``) and cost table.
STAGE_HISTORY_COLUMNS = ["step", "train_loss", "val_loss", "seconds", "stopped_by_clock", "model", "strategy"]
COST_COLUMNS = ["model", "strategy", "budget", "activation_seconds", "train_seconds", "cache_hit"]


class Strategy:
    """A fine-tuning strategy: subclass it, set the class attributes, implement :meth:`fit`.

    Attributes:
        name: the registry name (also the ``strategy`` of the embedding sets it makes).
        uses_purchases: whether training sees purchase data (a purchase-free strategy may be
            evaluated on protocols whose test purchases lie inside the training period).
        needs_backbone: True when it trains CNN stages (``fit`` needs the loaded model); False
            when it works on the frozen embeddings only.
        trains: False for the ``frozen`` reference, which :func:`tune` does not run.
        single_threaded: True when ``fit`` runs torch on one thread and its result does not
            depend on anything another fit changes: :func:`tune` then fits the frozen sets side
            by side, one per core (:func:`fit_side_by_side`).
        config: a frozen dataclass of hyper-parameters, or None (no parameters).
    """

    name: str = ""
    uses_purchases: bool = False
    needs_backbone: bool = False
    trains: bool = True
    single_threaded: bool = False
    config = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params()})"

    def params(self) -> dict:
        """The hyper-parameters, ``{field: value}`` (empty without a config), for provenance."""
        return asdict(self.config) if self.config is not None else {}

    def with_params(self, cfg=None, **params) -> "Strategy":
        """A copy with the config ``cfg`` (default: the current one) and fields ``params`` replaced.

        Raises:
            TypeError: a parameter the config does not have, or parameters for a strategy
                without a config.
        """
        base = self.config if cfg is None else cfg
        if params:
            if base is None or not is_dataclass(base):
                raise TypeError(f"fine-tuning strategy {self.name!r} takes no parameters, got {sorted(params)}")
            unknown = sorted(set(params) - {f.name for f in fields(base)})
            if unknown:
                raise TypeError(f"fine-tuning strategy {self.name!r} has no parameters {unknown}; "
                                f"its parameters are {[f.name for f in fields(base)]}")
            base = base.__class__(**{**asdict(base), **params})
        new = copy.copy(self)
        new.config = base
        return new

    def check(self, cat, split) -> None:
        """Raise :class:`~visrec_utils.core.skips.PartSkipped` when ``cat``/``split`` hold too
        little data to train (cheap: called before any model is trained). Default: no check."""

    def budget(self, history: pd.DataFrame) -> str:
        """The training budget used, in words, for the cost table (e.g. ``"240 of 400 steps"``)."""
        return f"{len(history)} history rows"

    def fit(self, model_name: str, frozen_embeddings, cat, split, store, loaded=None, progress: bool = True):
        """Fine-tuned embeddings of ``model_name`` for ``cat``'s items.

        Args:
            model_name: the model (the name of its embedding sets).
            frozen_embeddings: its frozen ``(n_items, dim) float32`` embeddings (None when the
                study has none; stage strategies do not need them).
            cat: the catalogue.
            split: the split; training may read ``split.train`` only.
            store: a :class:`~visrec_utils.core.store.Store` (or its folder, or None for the
                default cache) for cached results.
            loaded: the loaded model, for strategies that ``needs_backbone`` (loaded by name when None).
            progress: progress bars.

        Returns:
            (embeddings ``(n_items, dim) float32``, history DataFrame, info dict with ``hit``,
            ``seconds``, ``activation_seconds``, ``train_seconds``).

        Raises:
            PartSkipped: too little data for this strategy.
        """
        raise NotImplementedError(f"{type(self).__name__}.fit")


class Frozen(Strategy):
    """``frozen``: the ImageNet embeddings as they are (the reference; nothing is trained)."""

    name, uses_purchases, needs_backbone, trains = "frozen", False, False, False

    def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
        return frozen_embeddings, pd.DataFrame(), {"hit": True, "seconds": 0.0, "activation_seconds": 0.0,
                                                   "train_seconds": 0.0}


class BPRProjection(Strategy):
    """``bpr_projection``: a linear map of the frozen embeddings trained with BPR on training
    baskets (:func:`visrec_utils.tuning.finetune.train_bpr_projection`)."""

    name, uses_purchases, needs_backbone = "bpr_projection", True, False
    single_threaded = True  # train_bpr_projection runs in torch_threads(1)

    def __init__(self, cfg: BPRConfig = BPRConfig()):
        self.config = cfg

    def check(self, cat, split) -> None:
        require_triplets(split.train, self.config.max_profile)

    def budget(self, history) -> str:
        return f"{int(history['step'].max())} of {self.config.max_steps} steps"

    def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
        emb, hist, info = apply_strategy(self.name, frozen_embeddings, split, as_store(store), self.config, progress)
        return emb, hist, {**info, "activation_seconds": 0.0, "train_seconds": info["seconds"]}


class StageStrategy(Strategy):
    """A stage strategy (``partial_bpr``, ``proxy_metadata``, ``contrastive``): the last CNN
    stage(s) trained on cached activations (:func:`visrec_utils.tuning.stage_tuning.run_stage_strategy`)."""

    needs_backbone = True

    def __init__(self, name: str, uses_purchases: bool, cfg: StageConfig = StageConfig()):
        if name not in STAGE_STRATEGIES:
            raise ValueError(f"{name!r} is not a stage strategy; choose from {list(STAGE_STRATEGIES)}")
        self.name, self.uses_purchases, self.config = name, uses_purchases, cfg

    def check(self, cat, split) -> None:
        require_stage_data(self.name, cat, split, self.config)

    def budget(self, history) -> str:
        return f"{int(history['step'].max())} of {self.config.max_steps} steps"

    def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
        if loaded is None:
            from ..features.models import load_model

            loaded = load_model(model_name)
        return run_stage_strategy(self.name, loaded, cat, split, self.config, as_store(store), progress=progress)


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(strategy):
    """Register a strategy: an instance, or a :class:`Strategy` subclass (instantiated without
    arguments; usable as a class decorator, returning the class).

    Raises:
        ValueError: a strategy of that name is already registered, or the name is empty.
        TypeError: not a :class:`Strategy`.
    """
    inst = strategy() if isinstance(strategy, type) else strategy
    if not isinstance(inst, Strategy):
        raise TypeError(f"register_strategy takes a Strategy (instance or subclass), not {type(inst).__name__}")
    if not inst.name:
        raise ValueError(f"{type(inst).__name__} has no name; set its class attribute name")
    if inst.name in _REGISTRY:
        raise ValueError(f"a fine-tuning strategy named {inst.name!r} is already registered "
                         f"({_REGISTRY[inst.name]!r}); unregister_strategy({inst.name!r}) first or choose another name")
    _REGISTRY[inst.name] = inst
    return strategy


def _unknown(name: str) -> ValueError:
    choices = list(_REGISTRY)
    close = difflib.get_close_matches(str(name), choices, n=1)
    if close:
        return ValueError(f"Unknown fine-tuning strategy {name!r}; did you mean {close[0]!r}? Choose from {choices}")
    return ValueError(f"Unknown fine-tuning strategy {name!r}; choose from {choices}")


def unregister_strategy(name: str) -> Strategy:
    """Remove a registered strategy and return it.

    Raises:
        ValueError: no strategy of that name (naming the choices).
    """
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY.pop(name)


def create_strategy(name: str, **params) -> Strategy:
    """The registered strategy ``name`` with ``params`` (config fields, or ``cfg=`` a whole config).

    Example:
        >>> create_strategy("bpr_projection", max_steps=200).params()["max_steps"]
        200

    Raises:
        ValueError: unknown name, naming the choices and the closest one, e.g.
            ``Unknown fine-tuning strategy 'bpr_projectoin'; did you mean 'bpr_projection'?
            Choose from ['frozen', 'bpr_projection', ...]``.
        TypeError: a parameter the strategy does not have.
    """
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name].with_params(**params)


def list_strategies(uses_purchases: bool | None = None, needs_backbone: bool | None = None) -> list[str]:
    """Names of the registered strategies, in registration order, optionally only those with the
    given ``uses_purchases`` / ``needs_backbone``."""
    return [n for n, s in _REGISTRY.items()
            if (uses_purchases is None or s.uses_purchases == uses_purchases)
            and (needs_backbone is None or s.needs_backbone == needs_backbone)]


for _builtin in (Frozen(), BPRProjection(), StageStrategy("partial_bpr", True),
                 StageStrategy("proxy_metadata", False), StageStrategy("contrastive", False)):
    register_strategy(_builtin)


def _resolve(strategies, configs) -> dict:
    """``{name: Strategy}`` of the requested strategies (names or instances); a named one takes
    the config among ``configs`` of its config's type."""
    out = {}
    for s in strategies:
        if isinstance(s, Strategy):
            out[s.name] = s
            continue
        inst = create_strategy(s)
        same_type = [c for c in configs if c is not None and type(c) is type(inst.config)]
        out[inst.name] = inst.with_params(cfg=same_type[0]) if same_type else inst
    return out


def tune(frozen: dict, cat, split, strategies, stage_models, store=None, bpr_cfg: BPRConfig = BPRConfig(),
         stage_cfg: StageConfig = StageConfig(), log=None, on_skip=None, load_model=None, progress: bool = True):
    """Notebook 03's training loop: every requested strategy for the models it applies to.

    First each frozen-embedding strategy (registration order; built-in: ``bpr_projection``) on
    every set of ``frozen``, one part named after the strategy; then the stage strategies (in
    ``strategies`` order) for each of ``stage_models``, in the parts ``"stage strategies"``,
    ``"stage strategies: <model>"`` and ``"<strategy>: <model>"``. A part that cannot run
    (:class:`~visrec_utils.core.skips.PartSkipped`) is recorded and the loop goes on. Nothing is
    saved as an embedding set here (the caller does).

    Args:
        frozen: ``{(model, "frozen"): (n_items, dim) float32}``.
        cat: the catalogue.
        split: the split (training reads ``split.train`` only).
        strategies: names (or :class:`Strategy` instances) to run; ``frozen`` is ignored.
        stage_models: model names whose CNN stages the stage strategies train.
        store: a :class:`~visrec_utils.core.store.Store`, its folder, or None (default cache).
        bpr_cfg, stage_cfg: the configs of the named strategies whose config has that type.
        log: a :class:`~visrec_utils.core.skips.SkipLog` recording skipped parts, or None.
        on_skip: ``on_skip(part, exception)`` called for each skipped part, or None.
        load_model: ``load_model(name) -> LoadedModel`` (default
            :func:`visrec_utils.features.models.load_model`).
        progress: progress bars.

    Returns:
        (tuned ``{(model, strategy): (n_items, dim) float32}``, provenance ``{(model, strategy):
        {"strategy", "strategy_params", "uses_purchases"}}``, history (``step, epoch, train_loss,
        val_loss, val_acc, seconds, model``), stage history (:data:`STAGE_HISTORY_COLUMNS`),
        cost (:data:`COST_COLUMNS`)).

    Raises:
        ValueError: an unknown strategy name (:func:`create_strategy`).
    """
    if load_model is None:
        from ..features.models import load_model
    store = as_store(store)
    requested = _resolve(strategies, (bpr_cfg, stage_cfg))
    names = [s.name if isinstance(s, Strategy) else s for s in strategies]
    everyone = {**{n: _REGISTRY[n] for n in _REGISTRY}, **requested}
    histories, stage_histories, cost, tuned, provenance = [], [], [], {}, {}

    @contextmanager
    def part(name):
        try:
            yield
        except PartSkipped as e:
            logger.debug("Skipped: %s. %s", name, e)
            if log is not None:
                log.skip(name, e)
            if on_skip is not None:
                on_skip(name, e)

    def record(model, strategy, emb, hist, info):
        tuned[(model, strategy.name)] = emb
        provenance[(model, strategy.name)] = {"strategy": strategy.name, "strategy_params": strategy.params(),
                                              "uses_purchases": strategy.uses_purchases}
        cost.append({"model": model, "strategy": strategy.name, "budget": strategy.budget(hist),
                     "activation_seconds": round(info["activation_seconds"], 1),
                     "train_seconds": round(info["train_seconds"], 1), "cache_hit": info["hit"]})

    for name in [n for n, s in everyone.items() if s.trains and not s.needs_backbone]:
        with part(name):
            if name not in requested:
                raise PartSkipped(f"{name} is not in strategies")
            if not frozen:
                raise PartSkipped("no frozen embedding set to project (models selects none of this study's models)")
            strategy = requested[name]
            strategy.check(cat, split)
            fitted = fit_side_by_side(strategy, list(frozen.items()), cat, split, store, progress)
            for ((model, _), _emb), (out, hist, info) in zip(frozen.items(), fitted, strict=True):
                record(model, strategy, out, hist, info)
                histories.append(hist.assign(model=model))
    with part("stage strategies"):
        stage_names = [n for n, s in everyone.items() if s.trains and s.needs_backbone]
        stage_list = stage_plan(names, stage_models, stage_names)
        for model in stage_models:
            with part(f"stage strategies: {model}"):
                require_frozen(model, frozen)
                loaded = load_model(model)
                for name in stage_list:
                    with part(f"{name}: {model}"):  # e.g. no metadata column for the proxy task: say so, go on
                        strategy = requested[name]
                        out, hist, info = strategy.fit(model, frozen[(model, "frozen")], cat, split, store,
                                                       loaded=loaded, progress=progress)
                        record(model, strategy, out, hist, info)
                        stage_histories.append(hist.assign(model=model, strategy=name))
    history = (pd.concat(histories, ignore_index=True) if histories
               else pd.DataFrame(columns=HISTORY_COLUMNS + ["model"]))
    stage_history = (pd.concat(stage_histories, ignore_index=True) if stage_histories
                     else pd.DataFrame(columns=STAGE_HISTORY_COLUMNS))
    return tuned, provenance, history, stage_history, pd.DataFrame(cost, columns=COST_COLUMNS)


def fit_side_by_side(strategy: Strategy, sets: list, cat, split, store, progress: bool = True, workers=None):
    """``strategy.fit`` on each ``((model, strategy), (n_items, dim) float32)`` of ``sets``, in
    order: a generator of ``(embeddings, history, info)``.

    A :attr:`Strategy.single_threaded` strategy's fits run side by side in ``workers`` threads
    (default: one per core), torch on one thread each (torch's kernels release the GIL), so
    each result is the one a fit alone gives; one progress bar counts finished sets. Others run
    one after the other with their own progress bars. Measured on 2 cores: the 11 H&M sets of
    ``bpr_projection`` (about 45 s each for the 1,280-d ones, torch's matrix products on one core)
    took 183 s one after the other and 112 s side by side (the cold study of 2026-12-01).

    Raises:
        whatever a fit raises (e.g. :class:`~visrec_utils.core.skips.PartSkipped`), when its
        turn comes.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(sets), workers or os.cpu_count() or 1) if strategy.single_threaded else 1
    if workers <= 1:
        for (model, _), emb in sets:
            yield strategy.fit(model, emb, cat, split, store, progress=progress)
        return
    import torch
    from tqdm.auto import tqdm

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # every fit's own torch_threads(1) then changes nothing for the others
    bar = tqdm(total=len(sets), desc=f"{strategy.name} ({workers} side by side)", unit="set", disable=not progress)
    try:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(strategy.fit, model, emb, cat, split, store, progress=False)
                       for (model, _), emb in sets]
            try:
                for i, f in enumerate(futures):
                    result = f.result()
                    bar.update(1)
                    if i == len(futures) - 1:  # every fit done: torch's threads back now, not when the
                        torch.set_num_threads(before)  # generator is closed (zip() never closes it)
                    yield result
            finally:  # a failed fit (or a consumer that stops) leaves no queued fit behind
                for f in futures:
                    f.cancel()
    finally:
        bar.close()
        torch.set_num_threads(before)
