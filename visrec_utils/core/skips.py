"""Parts of the study that cannot run on this input: skipped with one sentence, never failed.

A parameter list left empty (``-p strategies '[]'``), an optional part switched off
(``cold_warm=False``) or a catalogue too small for a part (a UMAP map of 10 items, fine-tuning
without training triplets) skips that part: package functions raise :class:`PartSkipped` with one
sentence saying why, and a notebook's :class:`SkipLog` shows the sentence and records it in
``results/skipped/<notebook>.csv`` (each notebook owns its file, so a rerun of one notebook
replaces only its rows and never disturbs another notebook's reuse key).
:func:`visrec_utils.reports.index.write_index` gathers them into the index page.

The lowest layer of the package: it imports nothing of visrec, so catalogue, features, tuning and
evaluation modules can raise :class:`PartSkipped`.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd


#: Columns of ``results/skipped.csv`` (and of each notebook's ``results/skipped/<notebook>.csv``).
SKIP_COLUMNS = ["notebook", "part", "reason"]


class PartSkipped(ValueError):
    """A part of the study cannot run on this input; the message is one sentence saying why.

    A ``ValueError``, so callers that already catch bad input keep working; a notebook's
    :meth:`SkipLog.part` turns it into a recorded skip and the study goes on.
    """


class SkipLog:
    """The skipped parts of one notebook run: shown in the notebook, kept in a tidy table.

    Creating it (at the notebook's first cell that can skip) clears the notebook's earlier rows:
    ``<out>/results/skipped/<notebook>.csv`` is rewritten with the :data:`SKIP_COLUMNS` header only.

    Args:
        out_dir: the study's output folder.
        notebook: the notebook's name, e.g. ``"04_recommendation_eval"``.
    """

    def __init__(self, out_dir, notebook: str):
        self.notebook = notebook
        self.path = Path(out_dir) / "results" / "skipped" / f"{notebook}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self._write()

    def _write(self) -> None:
        pd.DataFrame(self.rows, columns=SKIP_COLUMNS).to_csv(self.path, index=False)

    def skip(self, part: str, reason) -> str:
        """Record that ``part`` was skipped because of ``reason`` (one sentence; an exception's
        message is used as is), display the sentence as Markdown when run in a notebook, and
        return it (``"**Skipped: <part>.** <reason>"``)."""
        reason = str(reason).strip()
        reason = reason if reason.endswith((".", "!", "?")) else reason + "."
        self.rows.append({"notebook": self.notebook, "part": part, "reason": reason})
        self._write()
        text = f"**Skipped: {part}.** {reason}"
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display

            if get_ipython() is not None:
                display(Markdown(text))
                return text
        except ImportError:  # pragma: no cover (IPython is a dependency of the notebooks)
            pass
        print(text)
        return text

    @contextmanager
    def part(self, part: str):
        """Run the ``with`` body as one part: a :class:`PartSkipped` raised inside ends the body,
        is recorded by :meth:`skip` and does not propagate (other errors do)."""
        try:
            yield self
        except PartSkipped as e:
            self.skip(part, e)


def skipped_parts(out_dir) -> pd.DataFrame:
    """Every notebook's skipped parts, ``(n_skipped, 3)`` with :data:`SKIP_COLUMNS`, in notebook order."""
    files = sorted((Path(out_dir) / "results" / "skipped").glob("*.csv"))
    tables = [pd.read_csv(f, keep_default_na=False, dtype=str) for f in files]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True)[SKIP_COLUMNS] if tables else pd.DataFrame(columns=SKIP_COLUMNS)
