"""What the numbered notebooks need besides the stage call: set-up and showing saved figures.

The stage functions draw their figures into ``<out>/figures``; a notebook shows each one where
its section is (:func:`figure`) instead of at the end of the call cell (:func:`setup` and
:func:`done` keep matplotlib from showing them twice).
"""
from __future__ import annotations

from pathlib import Path

from ..core import log
from ..core.layout import StudyLayout


def setup(out_dir) -> StudyLayout:
    """Prepare a notebook run: ``[visrec]`` progress lines (:func:`visrec_utils.core.log.configure`),
    full-width table cells, and the output folder's ``figures/`` and ``results/``."""
    import pandas as pd

    log.configure()
    pd.set_option("display.max_colwidth", None)  # show reasons and advice in full
    return StudyLayout(out_dir).make_dirs()


def done() -> None:
    """Close the figures a stage drew (they are saved; :func:`figure` shows them in place)."""
    import matplotlib.pyplot as plt

    plt.close("all")


def figure(out_dir, name: str):
    """The saved figure ``<out>/figures/<name>.png`` for display, or a one-line note when the
    stage did not draw it (a skipped part: see the notebook's skipped parts)."""
    from IPython.display import Image, Markdown

    path = StudyLayout(out_dir).figure(name)
    return Image(filename=str(path)) if Path(path).is_file() else Markdown(f"*No figure `{name}.png`: not drawn in this run.*")


def figures(out_dir, pattern: str) -> list:
    """Every saved figure whose name matches ``pattern`` (a glob such as ``"imagenet_vs_*"``), sorted."""
    return [figure(out_dir, p.stem) for p in sorted(StudyLayout(out_dir).figures.glob(f"{pattern}.png"))]


def banner(out_dir) -> str:
    """The catalogue's one-line Markdown banner (its name, and SYNTHETIC DATA for the demo), from
    the study catalogue (:func:`visrec_utils.catalogue.data.load_study_catalogue`, :func:`visrec_utils.catalogue.data.banner`)."""
    from ..catalogue import data

    return data.banner(data.load_study_catalogue(out_dir))
