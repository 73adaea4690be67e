"""The study's stages: one function each, one notebook each, one registry.

=========  ==========================  =============================================================
stage      notebook                    writes (under the study output folder)
=========  ==========================  =============================================================
prepare    01_data_prep                ``data/`` (the validated, sliced catalogue)
extract    02_embedding_extraction     frozen embedding sets in ``embeddings/``, ``results/models.csv``
tune       03_fine_tuning              fine-tuned embedding sets, learning curves, fine-tuning metrics
evaluate   04_recommendation_eval      ``results/metrics.csv``, per-user values, protocols, paired tests
compare    05_imagenet_vs_transfer     top-1 vs recommendation quality: correlations and intervals
explore    06_explorer                 why VisRank recommends an item: sample users explained, the explorer
=========  ==========================  =============================================================

Each stage function takes the study output folder and its parameters (the names of its
notebook's ``parameters`` cell), reads what earlier stages wrote, writes through the artefact
store and :class:`visrec_utils.core.layout.StudyLayout`, and returns a dataclass of tidy frames
that the notebook displays. The notebooks and ``python -m visrec_utils study`` call the same
functions. :data:`STAGES` also declares what each stage writes, which the runner uses to decide
whether a stage's earlier run can be reused (content digests, never file times).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ...core.layout import RESULTS

__all__ = ["STAGES", "Stage", "get_stage", "prepare", "extract", "tune", "evaluate", "compare", "explore",
           "Prepared", "Extracted", "Tuned", "Evaluated", "Compared", "Explored"]


@dataclass(frozen=True)
class Stage:
    """One stage of the study.

    Attributes:
        name: the stage's verb (``prepare`` ... ``compare``).
        notebook: the notebook that calls it (``notebooks/<notebook>.ipynb``).
        outputs: glob patterns, relative to the output folder, of the files later stages read.
        embedding_sets: which embedding sets the stage writes: ``"frozen"``, ``"tuned"`` or "".
    """

    name: str
    notebook: str
    outputs: tuple = ()
    embedding_sets: str = ""

    @property
    def run(self):
        """The stage function (imported on first use: declaring the stages imports no torch)."""
        return getattr(importlib.import_module(f"{__name__}.stage_{self.name}"), self.name)


def _results(*names: str) -> tuple:
    return tuple(f"results/{RESULTS[n]}" for n in names)


STAGES = (
    Stage("prepare", "01_data_prep", ("data/*", "results/skipped/01_data_prep.csv")),
    Stage("extract", "02_embedding_extraction",
          ("results/skipped/02_embedding_extraction.csv",) + _results("models", "unreadable_images"), "frozen"),
    Stage("tune", "03_fine_tuning",
          ("results/skipped/03_fine_tuning.csv",) + _results("learning_curves", "stage_learning_curves", "finetune_cost",
                                                            "finetune_metrics", "finetune_vs_frozen"), "tuned"),
    Stage("evaluate", "04_recommendation_eval",
          ("results/skipped/04_recommendation_eval.csv",) + _results(
              "metrics", "metrics_parquet", "per_user", "paired_vs_reference", "paired_vs_reference_parquet",
              "metrics_protocols", "metrics_protocols_parquet", "paired_protocols", "metrics_cold_warm",
              "metrics_availability", "metrics_popularity", "metrics_item_age")),
    Stage("compare", "05_imagenet_vs_transfer",
          ("results/skipped/05_imagenet_vs_transfer.csv", "results/layers_*.csv") + _results(
              "imagenet_vs_transfer", "correlations", "correlation_intervals", "correlation_by_family",
              "models_bars", "model_card", "scorecard")),
    Stage("explore", "06_explorer", ("results/skipped/06_explorer.csv",) + _results("explanations")),
)


def get_stage(name: str) -> Stage:
    """The stage called ``name`` or run by the notebook ``name``.

    Raises:
        ValueError: neither (the message lists the stages and notebooks).
    """
    for s in STAGES:
        if name in (s.name, s.notebook):
            return s
    raise ValueError(f"unknown stage {name!r}; stages: {[s.name for s in STAGES]}, "
                     f"notebooks: {[s.notebook for s in STAGES]}")


_RESULT_TYPES = {"Prepared": "prepare", "Extracted": "extract", "Tuned": "tune", "Evaluated": "evaluate",
                 "Compared": "compare", "Explored": "explore"}


def __getattr__(name: str):
    """``stages.prepare`` ... ``stages.explore`` and their result classes, imported on first use."""
    module = name if name in _RESULT_TYPES.values() else _RESULT_TYPES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.stage_{module}"), name)
