"""The progress channel of a batch run, kernel -> runner, and the start-up noise kept out of sight.

In a batch run (:func:`visrec_utils.pipeline.runner.run_study`) the notebook's
:func:`visrec_utils.pipeline.notebook.setup` starts a thread in the kernel that publishes the
kernel's live tqdm bars to a small JSON file (:func:`publish_progress`), and the runner shows that
file as one tqdm line in the terminal (:class:`ProgressLine`). :data:`NOISE` names the start-up
lines (Jupyter's, Ray's) that the runner keeps out of the terminal and the reports.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from ..core.store import write_json

#: Set in the environment of the kernels the batch runner starts: :func:`done` then leaves
#: ``reports/index.html`` to the runner, which rewrites it after every notebook.
BATCH_ENV = "VISREC_BATCH_RUN"
#: Set by the batch runner to the file the kernel publishes its progress to (:func:`setup`);
#: unset in JupyterLab, where the tqdm bars show in the notebook as usual.
PROGRESS_ENV = "VISREC_PROGRESS_FILE"


#: Start-up lines that say nothing about the study, matched at the start of a line: ipykernel's
#: transport warning, debugpy's frozen-modules note, Ray's C++ (spdlog) info and warning lines
#: (``[2026-01-02 03:04:05,678 I 123 456] core_worker.cc:...``, also as forwarded by Ray with a
#: ``(raylet)`` or ``(Worker pid=N)`` prefix) and Ray's own start-up lines. Errors are kept.
NOISE = re.compile("|".join([
    r"\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption\.",
    r"\d+\.\d+s - (Debugger warning: It seems that frozen modules are being used|make the debugger miss "
    r"breakpoints|to python to disable frozen modules|Note: Debugging will proceed)",
    r"(\([\w:. =-]+\) )?\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [IW] \d+ \d+\] [\w.-]+\.(cc|h):\d+: ",
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(INFO|WARNING) [\w.]+\.py:\d+ -- (Started a local Ray instance|"
    r"Connecting to existing Ray cluster|Connected to Ray cluster|Token authentication is enabled)",
]))


def drop_noise(text: str) -> str:
    """``text`` without its :data:`NOISE` lines (every other line kept, with its line end)."""
    return "".join(ln for ln in str(text).splitlines(keepends=True) if not NOISE.match(ln))


def drop_noise_outputs(nb) -> bool:
    """Remove :data:`NOISE` lines from every stderr stream output
    of a notebook (nbformat node, changed in place; an output left empty goes); True when something was removed."""
    changed = False
    for cell in nb.cells:
        outputs = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.get("name") == "stderr":
                clean = drop_noise(o.get("text", ""))
                changed |= clean != o.get("text", "")
                if not clean:
                    continue
                o["text"] = clean
            outputs.append(o)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return changed


def progress_snapshot() -> dict:
    """The live tqdm bars of this process (every bar that is not disabled or closed, notebook
    widgets too: they subclass ``tqdm.std.tqdm``), oldest first, as
    ``{"bars": [{"id", "desc", "n", "total", "unit", "unit_scale", "elapsed"}]}``; ``id`` numbers
    the bars in the order this function first saw them, ``elapsed`` is in seconds."""
    from tqdm.std import tqdm

    # no tqdm.get_lock(): a fork (a DataLoader worker) while this thread held it would inherit it
    # locked; a bar added during the copy raises RuntimeError, and the publisher tries again
    live = [b for b in list(tqdm._instances) if not getattr(b, "disable", True)]
    bars = []
    for bar in live:
        if "visrec_id" not in vars(bar):
            bar.visrec_id = next(_BAR_IDS)
        d = bar.format_dict
        bars.append({"id": bar.visrec_id, "desc": str(d.get("prefix") or ""), "n": d["n"], "total": d["total"],
                     "unit": d["unit"], "unit_scale": d["unit_scale"], "elapsed": round(d["elapsed"], 2)})
    return {"bars": sorted(bars, key=lambda b: b["id"])}


_BAR_IDS = iter(range(1, 2**62))
_PUBLISHING: dict = {}  # path -> thread, one per file and kernel


def publish_progress(path, interval: float = 0.5) -> threading.Thread:
    """Start a daemon thread that writes :func:`progress_snapshot` to ``path`` (JSON, atomically:
    :func:`visrec_utils.core.store.write_json`) every ``interval`` seconds when it changed; the
    stage code keeps drawing its tqdm bars as it does anywhere. Called by :func:`setup` when the
    runner set :data:`PROGRESS_ENV`; a second call for the same file returns the running thread."""
    path = str(path)
    if path in _PUBLISHING and _PUBLISHING[path].is_alive():
        return _PUBLISHING[path]

    def run():
        last = None
        while True:
            try:
                state = progress_snapshot()
                if state != last:
                    write_json(path, {**state, "time": time.time()}, indent=None)
                    last = state
            except Exception:  # noqa: BLE001 (progress must never stop a notebook)
                pass
            time.sleep(interval)

    thread = _PUBLISHING[path] = threading.Thread(target=run, name="visrec-progress", daemon=True)
    thread.start()
    return thread


def progress_names(params: dict, declared: dict) -> dict:
    """The names a notebook's bars may carry, by kind, for :func:`describe_progress`:
    ``{"model": [...], "strategy": [...]}`` from the ``models`` and ``strategies`` the notebook
    receives (``params``), else its parameters cell's defaults (``declared``:
    :func:`visrec_utils.pipeline.execution.notebook_parameters`); kinds it has neither of are left out."""
    import ast

    names = {}
    for kind, param in (("model", "models"), ("strategy", "strategies")):
        value = params.get(param)
        if value is None and param in declared:
            try:
                value = ast.literal_eval(str(declared[param].get("default")))
            except (ValueError, SyntaxError):
                value = None
        if isinstance(value, (list, tuple)) and value:
            names[kind] = [str(v) for v in value]
    return names


def describe_progress(state: dict, notebook: str, names: dict | None = None) -> tuple[str, dict] | None:
    """The line for a kernel's :func:`progress_snapshot`: the newest bar after the notebook's
    number (its name when it has none; the runner's line above names it in full), the bars
    around it (outer loops) and which model or strategy it is, e.g.
    ``("02 | embeddings tf_efficientnet_lite1 (model 2/4)", bar)``. The
    model and the strategy are, per kind, the longest of ``names`` (:func:`progress_names`) that the bar's
    description holds as a whole word (``tf_efficientnet_lite0`` is not in ``random_tf_efficientnet_lite0``).

    Returns:
        ``(description, bar)`` (``bar`` as in the snapshot), or None when no bar is live.
    """
    bars = (state or {}).get("bars") or []
    if not bars:
        return None
    bar = bars[-1]
    outer = [f"{b['desc']} {b['n']}/{b['total']}" if b.get("total") else b["desc"] for b in bars[:-1] if b["desc"]]
    parts = []
    for kind, values in (names or {}).items():  # per kind, the longest name the description holds
        hits = [(len(name), i) for i, name in enumerate(values)
                if re.search(rf"(?<![\w@]){re.escape(name)}(?![\w@])", bar["desc"])]
        if hits:
            parts.append(f"{kind} {max(hits)[1] + 1}/{len(values)}")
    part = f" ({', '.join(parts)})" if parts else ""
    number = re.match(r"\d+(?=_)", notebook)
    head = number.group(0) if number else notebook
    return " | ".join([head, *outer, f"{bar['desc']}{part}" if bar["desc"] or part else "working"]), bar


#: Columns kept for tqdm's count, rate and times after the description of the progress line.
STATS_WIDTH = 60


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (at least 20), ending in "…" when cut, so the progress
    line's count, rate and time left stay on a narrow terminal."""
    width = max(20, width)
    return text if len(text) <= width else text[:width - 1] + "…"


class Poller:
    """A daemon thread calling :meth:`tick` every ``interval`` seconds while the ``with`` block runs
    (and once more on exit); an exception in :meth:`tick` never reaches the caller."""

    def __init__(self, interval: float = 0.5, name: str = "visrec-poller"):
        self.interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        """One poll (subclasses)."""

    def _run(self):
        while True:
            try:
                self.tick()
            except Exception:  # noqa: BLE001 (watching must never stop the study)
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)


class ProgressLine(Poller):
    """The runner's end of the channel: a thread that reads the kernel's progress file every
    ``interval`` seconds and shows it as one tqdm line (:func:`describe_progress`; rate and time
    left are tqdm's, from the kernel's counts). A new bar in the kernel restarts the line with the
    kernel's elapsed time; the line is cleared when the notebook ends (the runner then prints its
    one-line summary). ``disable=None``: shown only when ``file`` is a terminal (tqdm's rule).
    """

    def __init__(self, path, notebook: str, names: dict | None = None, interval: float = 0.5,
                 file=None, disable: bool | None = None):
        super().__init__(interval, "visrec-progress-line")
        self.path, self.notebook, self.names = Path(path), notebook, names or {}
        self.file, self.disable = file, disable
        self.bar, self.shown, self.desc = None, None, None

    def update(self) -> str | None:
        """Read the file once and refresh the line; returns the whole description (None: no bar yet);
        the line shows it cut to the terminal's width (:func:`fit`)."""
        import shutil
        import sys

        from tqdm import tqdm

        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self.desc
        found = describe_progress(state, self.notebook, self.names)
        if found is None:
            return self.desc
        self.desc, kbar = found
        desc = fit(self.desc, shutil.get_terminal_size((120, 20)).columns - STATS_WIDTH)
        if self.bar is None:  # a terminal that reports no size (a bare pty): 120 x 20, not a hidden line
            known = min(shutil.get_terminal_size((0, 0))) > 0
            self.bar = tqdm(total=kbar["total"], desc=desc, unit=kbar["unit"], leave=False, dynamic_ncols=known,
                            ncols=None if known else 120, nrows=None if known else 20, file=self.file or sys.stderr,
                            disable=self.disable, unit_scale=kbar["unit_scale"])
        if self.shown != kbar["id"]:  # a new bar: restart the line where the kernel's bar is
            self.shown = kbar["id"]
            self.bar.reset(total=kbar["total"])
            self.bar.unit, self.bar.unit_scale = kbar["unit"], kbar["unit_scale"]
            self.bar.n = self.bar.last_print_n = kbar["n"]
            self.bar.start_t = self.bar.last_print_t = time.time() - float(kbar["elapsed"] or 0)
            self.bar.set_description_str(desc, refresh=False)
            self.bar.refresh()
        else:
            self.bar.set_description_str(desc, refresh=False)
            self.bar.update(kbar["n"] - self.bar.n)
        return self.desc

    def tick(self) -> None:
        self.update()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.bar is not None:
            self.bar.close()
        self.path.unlink(missing_ok=True)
