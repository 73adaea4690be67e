"""One way to report progress: the standard ``logging`` module under the ``visrec_utils`` logger.

Modules log with ``logging.getLogger(__name__)`` (never ``print``); :func:`configure` shows
those records as ``[visrec] message`` lines on standard output (the CLI and the notebooks call
it), and a user's own logging configuration can take them over instead.
"""
from __future__ import annotations

import logging
import sys

ROOT = "visrec_utils"


class _Stdout(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is at each record (a notebook's or a test's capture)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property always reads sys.stdout
        pass
_HANDLER_FLAG = "_visrec_handler"


def configure(level: int = logging.INFO, stream=None, prefix: str = "[visrec] ") -> logging.Logger:
    """Send ``visrec_utils`` records at ``level`` and above to ``stream`` (default: the current
    ``sys.stdout``) as ``<prefix><message>``; calling it again replaces the earlier handler.

    Returns:
        the ``visrec_utils`` logger.
    """
    logger = logging.getLogger(ROOT)
    for h in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream) if stream is not None else _Stdout()
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    setattr(handler, _HANDLER_FLAG, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` for a module of the app layer (pipeline, CLI): when nobody has
    configured the ``visrec_utils`` logger yet, :func:`configure` is called first, so progress
    lines show without any set-up; a configuration made before (yours, or ``configure(...)``) is kept."""
    if not logging.getLogger(ROOT).handlers:
        configure()
    return logging.getLogger(name)
