"""What the numbered notebooks need besides the stage call: set-up, saved figures, short tables.

The stage functions draw their figures into ``<out>/figures``; a notebook shows each one where
its section is (:func:`figure`) instead of at the end of the call cell (:func:`setup` and
:func:`done` keep matplotlib from showing them twice). :func:`table` shows the top rows of a
long result table in words a reader without the code follows, with the file holding every row.
:func:`done` also refreshes ``<out>/reports/index.html``, so a notebook run by hand in
JupyterLab updates the index like a batch run does.

In a batch run, :func:`setup` starts the kernel's end of the progress channel
(:mod:`visrec_utils.pipeline.progress`).
"""
from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

import numpy as np

from ..core import log
from ..core.layout import StudyLayout
from ..reports import labels as _labels
from .progress import BATCH_ENV, PROGRESS_ENV, publish_progress  # noqa: F401 (BATCH_ENV: callers read it here)

def setup(out_dir) -> StudyLayout:
    """Prepare a notebook run: ``[visrec]`` progress lines (:func:`visrec_utils.core.log.configure`),
    full-width table cells, and the output folder's ``figures/`` and ``results/``."""
    import pandas as pd

    log.configure()
    pd.set_option("display.max_colwidth", None)  # show reasons and advice in full
    if os.environ.get(PROGRESS_ENV):  # a batch run: the runner shows the kernel's bars in the terminal
        publish_progress(os.environ[PROGRESS_ENV])
    return StudyLayout(out_dir).make_dirs()


def done(out_dir=None) -> None:
    """Close the figures a stage drew (they are saved; :func:`figure` shows them in place) and,
    given the output folder, rewrite ``<out>/reports/index.html`` from what is on disk now
    (:func:`visrec_utils.reports.index.write_index`): a notebook run by hand refreshes the index.
    In a batch run (:data:`BATCH_ENV` set in the kernel's environment) the index is left to the
    runner, which rewrites it after every notebook."""
    import matplotlib.pyplot as plt

    plt.close("all")
    if out_dir is not None and not os.environ.get(BATCH_ENV):
        from ..reports.index import write_index

        write_index(out_dir)


def answer(out_dir):
    """The study's answer box as Markdown for display (:func:`visrec_utils.reports.answer.study_answer`):
    the run's facts, the one-sentence answer, the sentences and the glossary, generated from the
    result tables on disk (the same box heads ``reports/index.html`` and the README)."""
    from IPython.display import Markdown

    from ..reports.answer import study_answer

    return Markdown(study_answer(out_dir).markdown())


def figures_or_note(out_dir, patterns, note: str = "") -> list:
    """The saved figures matching each glob in ``patterns`` (:func:`figures`), or, when ``note``
    is set (e.g. the compare stage's ``figures_note``: too few ImageNet models for a scatter plot
    to mean anything), that sentence in their place."""
    from IPython.display import Markdown

    if note:
        return [Markdown(note)]
    return [f for pattern in ([patterns] if isinstance(patterns, str) else patterns) for f in figures(out_dir, pattern)]


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


#: Columns :func:`table` sorts by when ``sort_by`` is None: the first one present (largest first).
MAIN_COLUMNS = ("value", "mean_diff", "estimate", "ndcg@20", "auc", "mrr", "recall@20")
#: Columns :func:`table` reads as configuration names (``labels=True``).
CONFIG_COLUMNS = ("model", "strategy", "recommender")
_NUMBER = re.compile(r"^\s*(-?\d+\.\d*(?:e-?\d+)?)\s*$")  # "0.3388" (a float written as text)
_INTERVAL = re.compile(r"^\s*(-?[\d.]+(?:e-?\d+)?)\s*\[\s*(-?[\d.]+(?:e-?\d+)?),\s*(-?[\d.]+(?:e-?\d+)?)\s*\]\s*$")


def _number(x) -> float:
    """A cell as a number for sorting: numbers as they are, ``"0.562 [0.551, 0.573]"`` as 0.562,
    anything else NaN."""
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)):
        return float(x)
    m = _INTERVAL.match(str(x)) or _NUMBER.match(str(x))
    return float(m.group(1)) if m else math.nan


def _cell(x, max_chars: int, signed: bool = False) -> str:
    """One shown cell: floats at three significant figures, ``"v [lo, hi]"`` strings likewise,
    long or multi-line text cut to its first line and ``max_chars`` with "…"."""
    if x is None or isinstance(x, (bool, np.bool_)):
        return "" if x is None else str(x)
    if isinstance(x, numbers.Integral):
        return str(x)
    if isinstance(x, numbers.Real):
        return _labels.signed3(x) if signed else _labels.sig3(x)
    text = str(x)
    m = _INTERVAL.match(text)
    if m:
        return _labels.with_interval(*(float(g) for g in m.groups()), signed=signed)
    if _NUMBER.match(text):
        return _labels.signed3(float(text)) if signed else _labels.sig3(float(text))
    first = text.strip().split("\n", 1)[0]
    if first != text.strip() or len(first) > max_chars:
        first = first[:max_chars].rstrip() + "…"
    return first


class Table:
    """What :func:`table` returns: the shown rows (``frame``, every cell text) and the note
    under them; shown as HTML in a notebook and its report, as text elsewhere.

    Attributes:
        frame: the shown rows, formatted (strings), columns in display order.
        note: e.g. ``"showing 10 of 55 rows, sorted by mean_diff; all rows: results/paired_vs_reference.csv"``.
        csv: the file with every row, relative to the study output folder ("" when none).
        n_rows: rows in the full table.
    """

    def __init__(self, frame, note: str, csv: str, n_rows: int):
        self.frame, self.note, self.csv, self.n_rows = frame, note, csv, n_rows

    def _repr_html_(self) -> str:
        import html

        note = html.escape(self.note)
        if self.csv:  # the reports live in <out>/reports: the file is one folder up
            href = html.escape(f"../{self.csv}", quote=True)
            note = note.replace(html.escape(self.csv), f'<a href="{href}">{html.escape(self.csv)}</a>')
        return (self.frame.to_html(index=False, escape=True, na_rep="")
                + f'<p class="visrec-table-note" style="color:#555;font-size:90%"><em>{note}</em></p>')

    def __repr__(self) -> str:
        return f"{self.frame.to_string(index=False)}\n{self.note}"


def table(frame, sort_by=None, top: int | None = 10, csv: str | None = None, labels: bool = True,
          per: str | None = None, max_chars: int = 60) -> Table:
    """A long result table shortened for a reader: the top rows by the main metric, numbers at
    three significant figures, configurations in words, long text cut, and a note saying what is
    shown and where every row is.

    Args:
        frame: any DataFrame; a named index (e.g. :func:`visrec_utils.evaluation.experiment.format_table`'s
            model/strategy/recommender) becomes columns.
        sort_by: the column to sort by, largest first; None: the first of :data:`MAIN_COLUMNS`
            present (none: the table's own order); False: the table's own order. Cells such as
            ``"0.562 [0.551, 0.573]"`` sort by their first number.
        top: rows shown (per group with ``per``); None shows every row.
        csv: the file holding every row, relative to the study output folder (e.g.
            ``"results/paired_vs_reference.csv"``); the note links it (``../`` from ``reports/``).
        labels: replace ``model``/``strategy``/``recommender`` by one ``configuration`` column in
            words (:func:`visrec_utils.reports.labels.config_label`); a table with ``model`` only
            keeps a ``model`` column of :func:`~visrec_utils.reports.labels.model_label`.
        per: show the ``top`` rows within each value of this column (e.g. ``"protocol"``), groups
            in their order of first appearance.
        max_chars: text cells are cut to their first line and this many characters ("…").

    Returns:
        :class:`Table` (``frame``, ``note``). A column ``X`` with ``X_low``/``X_high`` (or
        ``value``/``mean_diff``/``estimate`` with ``ci_low``/``ci_high``) is shown as one
        ``"v [lo, hi]"`` column; ``mean_diff`` with a sign.

    Raises:
        KeyError: ``sort_by`` or ``per`` names a column the table does not have (the message
            lists the columns).
    """
    import pandas as pd

    d = frame.reset_index() if any(n is not None for n in frame.index.names) else frame.reset_index(drop=True)
    n = len(d)
    for col in (sort_by or None, per):
        if col is not None and col not in d:
            raise KeyError(f"table(): no column {col!r}; the table has {list(d.columns)}")
    if sort_by is None:
        sort_by = next((c for c in MAIN_COLUMNS if c in d and d[c].map(_number).notna().any()), None)
    if sort_by:
        d = d.assign(_key=d[sort_by].map(_number)).sort_values("_key", ascending=False, kind="stable",
                                                                 na_position="last").drop(columns="_key")
    if top is not None:
        d = d.groupby(per, sort=False, group_keys=False).head(top) if per else d.head(top)
    if per:  # groups in the table's own order, rows within each by the sort
        groups = frame[per] if per in frame else frame.reset_index()[per]
        order = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        d = d.iloc[sorted(range(len(d)), key=lambda i: order[d[per].iloc[i]])]
    for main in ("value", "mean_diff", "estimate"):  # the interval of a value is its ci columns
        if main in d and "ci_low" in d and "ci_high" in d:
            d = d.rename(columns={"ci_low": f"{main}_low", "ci_high": f"{main}_high"})
            break
    shown = pd.DataFrame(index=range(len(d)))
    configuration = labels and "model" in d and ("strategy" in d or "recommender" in d)
    for c in d.columns:
        if configuration and c in CONFIG_COLUMNS:
            if "configuration" not in shown:  # in the place of the first of them
                shown["configuration"] = [_labels.config_label(m, s, r) for m, s, r in zip(
                    d["model"], d["strategy"] if "strategy" in d else ["-"] * len(d),
                    d["recommender"] if "recommender" in d else [""] * len(d))]
            continue
        if str(c).endswith(("_low", "_high")) and str(c).rsplit("_", 1)[0] in d:
            continue
        signed = c == "mean_diff"
        if labels and c == "model":
            shown[c] = [_labels.model_label(m) for m in d[c]]
        elif f"{c}_low" in d and f"{c}_high" in d:
            shown[c] = [_labels.with_interval(v, lo, hi, signed=signed)
                        for v, lo, hi in zip(d[c], d[f"{c}_low"], d[f"{c}_high"])]
        else:
            shown[c] = [_cell(x, max_chars, signed) for x in d[c]]
    csv = str(csv or "")
    if len(d) < n:
        what = f"showing {len(d)} of {n} rows"
    else:
        what = "no rows" if not n else "1 row" if n == 1 else f"all {n} rows"
    if per and top is not None and len(d) < n:
        what += f" (top {top} per {per})"
    where = (f"; all rows: {csv}" if len(d) < n else f"; file: {csv}") if csv else ""
    note = what + (f", sorted by {_labels.column_label(sort_by) if labels else sort_by}" if sort_by else "") + where
    if labels:  # headings in words: "mean difference [95% interval]", "nDCG@20", "Holm p"
        shown.columns = [_labels.column_label(c) for c in shown.columns]
    return Table(shown, note, csv, n)
