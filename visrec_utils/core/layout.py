"""The study's output folder: where each artefact lives, named once.

``<out>/data`` (the prepared catalogue, written by the ``prepare`` stage), ``<out>/embeddings``
(embedding sets and their manifest rows: ``extract`` writes the frozen ones, ``tune`` the
fine-tuned ones), ``<out>/results`` (tidy tables), ``<out>/figures`` (PNG), ``<out>/reports``
(executed notebooks, HTML, kernel logs). Every module that reads or writes a result names it
through :data:`RESULTS` and :class:`StudyLayout`, never as a literal path.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Result tables by name: ``name -> file inside <out>/results``.
RESULTS = {
    "run": "run.json",
    "models": "models.csv",
    "unreadable_images": "unreadable_images.csv",
    "learning_curves": "learning_curves.csv",
    "stage_learning_curves": "stage_learning_curves.csv",
    "finetune_cost": "finetune_cost.csv",
    "finetune_metrics": "finetune_metrics.csv",
    "finetune_vs_frozen": "finetune_vs_frozen.csv",
    "metrics": "metrics.csv",
    "metrics_parquet": "metrics.parquet",
    "per_user": "per_user.parquet",
    "paired_vs_reference": "paired_vs_reference.csv",
    "paired_vs_reference_parquet": "paired_vs_reference.parquet",
    "metrics_protocols": "metrics_protocols.csv",
    "metrics_protocols_parquet": "metrics_protocols.parquet",
    "paired_protocols": "paired_protocols.csv",
    "metrics_cold_warm": "metrics_cold_warm.csv",
    "metrics_popularity": "metrics_popularity.csv",
    "metrics_item_age": "metrics_item_age.csv",
    "metrics_availability": "metrics_availability.csv",
    "imagenet_vs_transfer": "imagenet_vs_transfer.csv",
    "correlations": "correlations.csv",
    "correlation_intervals": "correlation_intervals.csv",
    "correlation_by_family": "correlation_by_family.csv",
    "correlations_by_recommender": "correlations_by_recommender.csv",
    "models_bars": "models_bars.csv",
    "partial_correlations": "partial_correlations.csv",
    "leave_one_out": "leave_one_out.csv",
    "power": "power.csv",
    "ranking_agreement": "ranking_agreement.csv",
    "attribute_probe": "attribute_probe.csv",
    "probe_correlations": "probe_correlations.csv",
    "model_card": "model_card.csv",
    "scorecard": "scorecard.csv",
    "readings": "readings.json",
    "umap_coordinates": "umap_coordinates.parquet",
    "umap_thumbnails": "umap_thumbnails.parquet",
    "explanations": "explanations.csv",
    "skipped": "skipped.csv",
    "answer": "answer.md",
}


class StudyLayout:
    """Paths of one study output folder.

    Args:
        out_dir: the study's output folder (``--out`` / ``out_dir``); resolved to an absolute path.

    Example:
        >>> StudyLayout("/tmp/study").result("metrics")
        PosixPath('/tmp/study/results/metrics.csv')
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir).resolve()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def result(self, name: str) -> Path:
        """``<out>/results/<file>`` of a result named in :data:`RESULTS`.

        Raises:
            ValueError: an unknown name (the message lists the known ones).
        """
        try:
            return self.results / RESULTS[name]
        except KeyError:
            raise ValueError(f"unknown result {name!r}; known: {sorted(RESULTS)}") from None

    def figure(self, name: str) -> Path:
        """``<out>/figures/<name>.png``."""
        return self.figures / f"{name}.png"

    def make_dirs(self) -> "StudyLayout":
        """Create ``figures/`` and ``results/`` (the folders every stage writes into)."""
        self.figures.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        return self
