"""Stage ``explore`` (notebook 06): why VisRank recommends what it does, for any test user.

Builds the evaluation's split (the same protocol, availability and seed as notebook 04), offers
every embedding set that may be evaluated under it to the explorer
(:class:`visrec_utils.reports.explorer.Explorer`, drawn in JupyterLab by
:func:`visrec_utils.reports.explorer_widget.explorer_widget`), and writes the explanation of a few
sample test users: ``results/explanations.csv`` and ``figures/explanations.png`` (in the index).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...catalogue import data
from ...core.layout import StudyLayout
from ...core.skips import PartSkipped, SkipLog
from ...evaluation import experiment
from ...features import embedding_sets
from ...reports import explorer as explorer_mod
from ...reports import gallery
from .stage_evaluate import main_split, purchase_flags
from .stage_extract import not_pictured

NOTEBOOK = "06_explorer"


@dataclass
class Explored:
    """What :func:`explore` returns.

    Attributes:
        explanations: :func:`visrec_utils.reports.explorer.explain`'s rows for the sample users
            (``results/explanations.csv``; empty when that part was skipped).
        explorer: the :class:`~visrec_utils.reports.explorer.Explorer` over every test user and
            leak-free embedding set.
    """

    explanations: pd.DataFrame
    explorer: explorer_mod.Explorer


def explore(out_dir, protocol: str = "leave_last_basket_out", availability: str = "auto", one_of_a_kind: bool = False,
            temporal_cut=0.8, n_negatives: int = 0, seed: int = 0, explorer_users: int = 3,
            explorer_k: int = 10) -> Explored:
    """The explorer of a study's recommendations and the explanation of ``explorer_users`` sample users.

    Args:
        out_dir: study output folder holding notebooks 01-03's outputs.
        protocol, availability, one_of_a_kind, temporal_cut, n_negatives, seed: the evaluation's
            split, as notebook 04 builds it (:func:`visrec_utils.catalogue.protocols.make_split`,
            sampled negatives when ``n_negatives`` > 0); ``seed`` also draws the sample users.
        explorer_users: sample test users explained in the report (0 skips the figure).
        explorer_k: recommendations explained per user.

    Returns:
        :class:`Explored`.

    Raises:
        DataError: no prepared data in ``out_dir``; ValueError: an unknown protocol or
            availability rule, or no embedding set (the explorer needs one).
    """
    out = StudyLayout(out_dir).make_dirs()
    log = SkipLog(out.root, NOTEBOOK)
    cat = data.load_study_catalogue(out.root)
    split, _ = main_split(cat, protocol, availability, one_of_a_kind, temporal_cut, n_negatives, seed)
    manifest = embedding_sets.read_manifest(out.root)
    uses_purchases = purchase_flags(manifest)
    files = {(r.model, r.strategy): out.embeddings / r.file for r in manifest.itertuples()}
    files = experiment.leak_free_sets(files, protocol, uses_purchases)
    skip = not_pictured(out.root)
    # frozen ImageNet models first (the sets the report pictures), then the rest in manifest order
    files = dict(sorted(files.items(), key=lambda kv: (kv[0][1] != "frozen", kv[0][0] in skip)))
    explorer = explorer_mod.Explorer(cat, split, files)
    table = pd.DataFrame(columns=explorer_mod.EXPLANATION_COLUMNS)
    with log.part("explanations of sample users"):
        pictured = list(gallery.picture_sets({k: None for k in files}, cat.n_items, limit=2, exclude=skip))
        points = explorer_mod.sample_points(split, explorer_users, seed) if explorer_users > 0 else []
        if not len(points):
            raise PartSkipped("explorer_users is 0 or the split has no test user, so no sample user is explained")
        table = pd.concat([explorer.explain(p, (model, "frozen"), "visrank_max", explorer_k)
                           for p in points for model in pictured], ignore_index=True)
        gallery.explanation_gallery(cat, split, table, path=out.figure("explanations"))
    table.to_csv(out.result("explanations"), index=False)
    return Explored(explanations=table, explorer=explorer)
