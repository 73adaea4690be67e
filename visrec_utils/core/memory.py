"""Peak resident memory of this process over a block of work (the model card's extraction memory).

:class:`PeakRSS` samples this process's resident set size from ``/proc/self/statm`` (a few
microseconds a read) in a daemon thread while its block runs. It needs no reset of the kernel's
high-water mark (``/proc/self/clear_refs``), so other readers of ``ru_maxrss`` are not disturbed.
Worker processes (a DataLoader's decoders) are not counted: the whole study's peak, workers
included, is the runner's memory watch (``visrec_utils.pipeline.execution.MemoryWatch``).
"""
from __future__ import annotations

import math
import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size of this process in bytes (``/proc/self/statm``), or None where ``/proc``
    does not exist (macOS, Windows)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


class PeakRSS:
    """``with PeakRSS() as peak: work()`` -> ``peak.gib`` (highest RSS seen, GiB) and
    ``peak.added_gib`` (that minus the RSS on entry: what the block needed on top of what the
    process already held). Sampled every ``interval`` seconds and once more on exit; NaN where
    :func:`rss_bytes` cannot read the RSS.

    Args:
        interval: seconds between samples (default 0.1: a peak held for less may be missed).
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.start = self.peak = None
        self._stop = threading.Event()
        self._thread = None

    def _sample(self) -> None:
        now = rss_bytes()
        if now is not None:
            self.peak = now if self.peak is None else max(self.peak, now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakRSS":
        self.start = rss_bytes()
        self._sample()
        if self.start is not None:
            self._thread = threading.Thread(target=self._run, name="visrec-peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def gib(self) -> float:
        return self.peak / 2**30 if self.peak is not None else math.nan

    @property
    def added_gib(self) -> float:
        return (self.peak - self.start) / 2**30 if self.peak is not None and self.start is not None else math.nan
