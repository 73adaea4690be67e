"""Stage ``tune`` (notebook 03): fine-tuning strategies against frozen embeddings, each set
evaluated with VisRank-max under leave-last-basket-out and compared to its frozen set per user."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd

from ...catalogue import data, protocols
from ...core.layout import StudyLayout
from ...core.skips import SkipLog
from ...evaluation import experiment, stats
from ...features import embedding_sets, feature_files
from ...features.extract import resolve_device
from ...reports import analysis, plots
from ...tuning import finetune, stage_tuning, strategies as registry
from .stage_evaluate import short_paired

NOTEBOOK = "03_fine_tuning"

#: Optimiser steps of each stage strategy by default. ``partial_bpr`` (1.6 s a step on 2 cores,
#: forward and backward of about 450 activation rows through Lite0's last stage) reached a
#: validation loss of 0.7074 at step 200 on the H&M sample, below the 0.7092 of the earlier
#: study's 600-second run (stopped at step 162) and within 0.006 of its best over 400 steps
#: (0.7015 at step 280); ``proxy_metadata`` and ``contrastive`` still improved up to step 360.
STAGE_STEPS = {"partial_bpr": 200, "proxy_metadata": 400, "contrastive": 400}


def stage_steps(max_steps) -> dict:
    """``{stage strategy: optimiser steps}`` from ``max_steps``: one number for every stage
    strategy, or a mapping naming some of them (the others keep :data:`STAGE_STEPS`).

    Raises:
        ValueError: a name that is not a stage strategy, or a budget that is not a positive integer.
    """
    given = dict(max_steps) if isinstance(max_steps, Mapping) else {n: max_steps for n in STAGE_STEPS}
    unknown = sorted(set(given) - set(stage_tuning.STAGE_STRATEGIES))
    if unknown:
        raise ValueError(f"max_steps names {unknown}, which are not stage strategies; name some of "
                         f"{list(stage_tuning.STAGE_STRATEGIES)} or give one number for all")
    for name, steps in given.items():
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"max_steps for {name} must be a positive whole number of optimiser steps, not {steps!r}")
    return {**STAGE_STEPS, **given}


@dataclass
class Tuned:
    """What :func:`tune` returns (every table is also in ``<out>/results``).

    Attributes:
        cost: one row per (model, strategy): budget used, activation and training seconds, cache hit.
        metrics: tidy metrics of the frozen and fine-tuned sets (VisRank-max), with 95% intervals.
        vs_frozen: paired per-user differences of each fine-tuned set against its frozen set.
        history, stage_history: learning curves of ``bpr_projection`` and of the stage strategies.
        summary: Markdown answer to "which fine-tuning helps?".
    """

    cost: pd.DataFrame
    metrics: pd.DataFrame
    vs_frozen: pd.DataFrame
    history: pd.DataFrame
    stage_history: pd.DataFrame
    summary: str

    @property
    def shown_vs_frozen(self) -> pd.DataFrame:
        """The primary comparisons of :attr:`vs_frozen` (:func:`.stage_evaluate.short_paired`)."""
        return short_paired(self.vs_frozen)


def tune(out_dir, models=None, stage_models=("tf_efficientnet_lite0",),
         strategies=("bpr_projection", "partial_bpr", "proxy_metadata", "contrastive"), cache_dir=None,
         bpr_steps: int = 400, n_stages: int = 1, max_steps: int | Mapping = STAGE_STEPS,
         max_seconds: float | None = None,
         proxy_column: str = "product_type_name", contrastive_images: int = 2000, device: str = "auto",
         n_resamples: int = 1000, seed: int = 0, backend: str = "local", ray_address: str | None = None) -> Tuned:
    """Fine-tune, save the tuned embedding sets, evaluate them against the frozen ones.

    Args:
        out_dir: study output folder holding the ``prepare`` and ``extract`` stages' outputs.
        models: models for ``bpr_projection`` (None: every model with frozen embeddings; sets
            shipped with the catalogue are always included).
        stage_models: models whose last CNN stage(s) the stage strategies train.
        strategies: registered strategy names (:func:`visrec_utils.tuning.strategies.list_strategies`).
        cache_dir: the artefact store (default ``$VISREC_CACHE`` or ``~/.cache/visrec``).
        bpr_steps: optimiser steps of ``bpr_projection`` (batches of 512 triplets; early stopping
            on validation loss may end sooner; :class:`visrec_utils.tuning.finetune.BPRConfig`).
        n_stages, max_steps, max_seconds, proxy_column, contrastive_images: the stage strategies'
            budget (``max_steps`` optimiser steps, one number or ``{strategy: steps}``, default
            :data:`STAGE_STEPS`; ``max_seconds`` an opt-in wall-clock cap, None = off) and tasks
            (:class:`visrec_utils.tuning.stage_tuning.StageConfig`).
        device: auto (cuda, else mps, else cpu), cpu, cuda or mps.
        n_resamples, seed: bootstrap resamples of the 95% intervals; seed of everything random.
        backend, ray_address: evaluation backend (``local`` or ``ray``) and Ray cluster.

    Raises:
        ValueError: an unknown strategy (the message names the registered ones), or a bad
            ``max_steps`` (:func:`stage_steps`).
    """
    out = StudyLayout(out_dir).make_dirs()
    for name in strategies:
        registry.create_strategy(name)  # unknown names fail before any work
    steps = stage_steps(max_steps)
    dev = resolve_device(device)
    cfg = finetune.BPRConfig(max_steps=bpr_steps, seed=seed)
    stage_cfg = stage_tuning.StageConfig(n_stages=n_stages, max_seconds=max_seconds, seed=seed,
                                         proxy_column=proxy_column, contrastive_images=contrastive_images, device=dev)
    strategies = [registry.create_strategy(n, cfg=replace(stage_cfg, max_steps=steps[n])) if n in steps else n
                  for n in strategies]
    log = SkipLog(out.root, NOTEBOOK)
    cat = data.load_study_catalogue(out.root)
    split = protocols.leave_last_basket_out(cat)
    frozen = embedding_sets.load_embedding_sets(out.root, strategies=["frozen"])
    if models is not None:  # embeddings shipped with the catalogue are always included
        models = [feature_files.set_name(m) for m in models]  # a file: model's set is file:<name>
        frozen = {k: v for k, v in frozen.items() if k[0] in models or k[0] in cat.precomputed}
    tuned, provenance, history, stage_history, cost = registry.tune(
        frozen, cat, split, strategies, list(stage_models), store=cache_dir, bpr_cfg=cfg, stage_cfg=stage_cfg, log=log)
    manifest = embedding_sets.read_manifest(out.root)
    frozen_rows = manifest[manifest["strategy"] == "frozen"].set_index("model")
    for (model, strategy), emb in tuned.items():  # each set keeps its backbone's provenance
        base = frozen_rows.loc[model].to_dict() if model in frozen_rows.index else {}
        inherited = {k: base[k] for k in ("arch", "weights_sha256", "backbone", "layer", "pooling", "preprocessing",
                                          "image_set") if k in base}
        embedding_sets.save_embedding_set(out.root, model, strategy, emb, item_ids=cat.items["item_id"].tolist(),
                                      provenance={**inherited, **{k: v for k, v in provenance[(model, strategy)].items()
                                                                  if k != "strategy"}})
    history.to_csv(out.result("learning_curves"), index=False)
    stage_history.to_csv(out.result("stage_learning_curves"), index=False)
    cost.to_csv(out.result("finetune_cost"), index=False)
    with log.part("figure learning_curves"):
        plots.learning_curves(history, path=out.figure("learning_curves"))
    with log.part("figure stage_learning_curves"):
        plots.stage_curves(stage_history, path=out.figure("stage_learning_curves"))
    ft_metrics, paired_ft = experiment.empty_metrics(), pd.DataFrame(columns=stats.PAIRED_COLUMNS)
    with log.part("fine-tuning vs frozen"):
        sets = finetune.comparison_sets(frozen, tuned)
        ft_metrics, ft_per_user = experiment.run_experiment(split, sets, ["visrank_max"], [], seed=seed,
                                                            n_resamples=n_resamples, backend=backend,
                                                            ray_address=ray_address, cache_dir=cache_dir)
        paired_ft = stats.paired_vs_frozen(ft_per_user, n_resamples=n_resamples, seed=seed)
        with log.part("figure finetune_auc"):
            plots.grouped_bars(ft_metrics, "auc", 0, group="strategy", config=("model",), path=out.figure("finetune_auc"),
                               title="AUC by fine-tuning strategy (VisRank-max, 95% bootstrap CI)")
        with log.part("figure finetune_ndcg20"):
            plots.grouped_bars(ft_metrics, "ndcg", 20, group="strategy", config=("model",),
                               path=out.figure("finetune_ndcg20"),
                               title="nDCG@20 by fine-tuning strategy (VisRank-max, 95% bootstrap CI)")
    ft_metrics.to_csv(out.result("finetune_metrics"), index=False)
    paired_ft.to_csv(out.result("finetune_vs_frozen"), index=False)
    return Tuned(cost=cost, metrics=ft_metrics, vs_frozen=paired_ft, history=history,
                 stage_history=stage_history, summary=analysis.finetune_summary(paired_ft))
