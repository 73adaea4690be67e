"""Stage ``extract`` (notebook 02): frozen embeddings of every catalogue image, per model, with a
top-1 check on a labelled ImageNet sample, nearest-neighbour strips and a UMAP map."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...catalogue import data
from ...core.layout import StudyLayout
from ...core.skips import SkipLog
from ...features import embedding_sets, embeddings
from ...reports import gallery

NOTEBOOK = "02_embedding_extraction"


@dataclass
class Extracted:
    """What :func:`extract` returns.

    Attributes:
        models: one row per model (``results/models.csv``: status, reason, top-1 published and
            measured, dim, cache hit, seconds, images per second, runtime, unreadable images).
        unreadable: ``item_id, reason, image_path`` of the images left out.
        imagenet_dir: the labelled ImageNet folder used for the top-1 check ("" when skipped).
        n_items: catalogue items embedded.
    """

    models: pd.DataFrame
    unreadable: pd.DataFrame
    imagenet_dir: str
    n_items: int

    @property
    def shown_models(self) -> pd.DataFrame:
        """The model table's columns worth showing (those present)."""
        cols = [c for c in ["model", "status", "dim", "published_top1", "measured_top1", "measured_top1_stderr",
                            "cache_hit", "seconds", "images_per_s", "fast_path", "shared_pass", "n_unreadable", "reason"]
                if c in self.models]
        return self.models[cols]


def not_pictured(out_dir) -> set:
    """The models left out of pictures that compare ImageNet models: controls (family
    ``control`` in ``results/models.csv``) and layer variants (a ``layer`` in the embedding-set
    manifest)."""
    out = StudyLayout(out_dir)
    manifest = embedding_sets.read_manifest(out.root)
    found = set(embedding_sets.layer_variants(manifest))
    if out.result("models").is_file():
        models = pd.read_csv(out.result("models"), keep_default_na=False)
        if "family" in models:
            found |= set(models.loc[models["family"] == "control", "model"])
    return found


def default_imagenet_dir() -> str:
    """``../shared/data/imagenet_sample`` beside the repository (or the notebooks' folder's
    parent) when it exists, else "" (the top-1 check is skipped)."""
    for guess in (Path.cwd().parent.parent / "shared/data/imagenet_sample",
                  Path(__file__).resolve().parents[4] / "shared/data/imagenet_sample"):
        if guess.is_dir():
            return str(guess)
    return ""


def extract(out_dir, models=("offline", "controls", "layers"), cache_dir=None, batch_size: int = 32,
            imagenet_dir: str | None = None, imagenet_limit: int | None = None, backend: str = "local",
            ray_address: str | None = None, device: str = "auto", amp: bool = False, umap_points: int = 3000,
            umap_color: str = "product_group_name", stage_models=("tf_efficientnet_lite0",),
            n_stages: int = 1) -> Extracted:
    """Extract (or read from the cache) the frozen embedding sets of ``models`` for the prepared catalogue.

    Writes ``<out>/embeddings`` (one set per model, with its manifest row), ``results/models.csv``,
    ``results/unreadable_images.csv``, the figures ``neighbours.png`` and ``umap.png`` (its coordinates and
    hover photos in ``results/umap_coordinates.parquet`` and ``umap_thumbnails.parquet``); a part
    that cannot run on this input is skipped with one sentence (``results/skipped/02_*.csv``).

    Args:
        out_dir: study output folder holding the ``prepare`` stage's ``data/``.
        models: registry, timm, ``random_`` or ``@stage`` names, checkpoints, or presets.
        cache_dir: the artefact store (default ``$VISREC_CACHE`` or ``~/.cache/visrec``).
        batch_size: images per forward pass.
        imagenet_dir: labelled ImageNet folder for the top-1 check (None: :func:`default_imagenet_dir`;
            "" skips it); imagenet_limit: images used (None: all).
        backend, ray_address: ``"local"`` or ``"ray"`` and the Ray cluster.
        device, amp: where extraction runs (auto: cuda, else mps, else cpu) and mixed precision.
        umap_points, umap_color: items per UMAP map (0 skips it) and the item column colouring it.
        stage_models, n_stages: notebook 03's models whose last ``n_stages`` stages are fine-tuned:
            the activations entering those stages are computed in the same pass as the models'
            frozen features and cached for notebook 03 (``[]`` leaves them to notebook 03).

    Raises:
        DataError: no prepared data in ``out_dir`` (run the ``prepare`` stage first).
    """
    out = StudyLayout(out_dir).make_dirs()
    if imagenet_dir is None:
        imagenet_dir = default_imagenet_dir()
    cat = data.load_prepared(out.root)
    table, unreadable = embeddings.embed_catalogue(models, cat, out.root, cache_dir=cache_dir, batch_size=batch_size,
                                                   imagenet_dir=imagenet_dir or None, imagenet_limit=imagenet_limit,
                                                   backend=backend, ray_address=ray_address, device=device, amp=amp,
                                                   activations=[(m, n_stages) for m in stage_models or ()])
    log = SkipLog(out.root, NOTEBOOK)
    if not imagenet_dir:
        log.skip("ImageNet top-1 check", "imagenet_dir is empty (no labelled ImageNet sample given or found), so no "
                 "model's measured top-1 was computed")
    cat = data.load_study_catalogue(out.root)
    frozen_sets = embedding_sets.load_embedding_sets(out.root, strategies=["frozen"])
    skip = not_pictured(out.root)
    with log.part("nearest neighbours"):
        gallery.neighbour_strips(cat, gallery.picture_sets(frozen_sets, cat.n_items, exclude=skip),
                                 path=out.figure("neighbours"))
    with log.part("UMAP map"):
        gallery.umap_map(cat, gallery.main_sets(frozen_sets, exclude=skip), color=umap_color, max_points=umap_points,
                         path=out.figure("umap"), coordinates=out.result("umap_coordinates"),
                         thumbnails=out.result("umap_thumbnails"))
    return Extracted(models=table, unreadable=unreadable, imagenet_dir=imagenet_dir or "", n_items=cat.n_items)
