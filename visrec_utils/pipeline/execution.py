"""Executing one study notebook: papermill with the project's kernel, faults explained in one line.

:func:`run_notebook` runs ``notebooks/NN_name.ipynb`` with papermill on the project's own kernel
(:data:`KERNEL_NAME`, whatever the notebook's metadata says: nbstripout and jupytext round trips
drop ``metadata.kernelspec``, papermill issue 735), keeps the kernel's own stderr out of the
terminal (it goes to ``reports/logs/NN_name.kernel.log``; start-up noise, ``progress.NOISE``, is
dropped), shows the kernel's tqdm bars as one live line (``progress.ProgressLine``), watches the
peak memory of the notebook's processes, and renders the
executed notebook to HTML, also when it failed part-way (:func:`to_html`: a page without code
whose stderr is summarised in one line per cell, and a page with code for analysts).

Whatever stops a notebook becomes one :class:`StudyError` line that names the notebook, the likely
cause in plain words and what to do: a cell's exception, a kernel that died (SIGKILL: usually the
out-of-memory killer; the peak memory seen is quoted), a cell timeout, Ctrl-C, a full disk, a
missing kernel. The partial notebook is kept (papermill saves it after every cell) and rendered.
"""
from __future__ import annotations

import contextlib
import errno
import html
import os
import re
import signal
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode

from ..core.store import atomic_write
from .progress import (BATCH_ENV, PROGRESS_ENV, Poller, ProgressLine, drop_noise, drop_noise_outputs,  # noqa: F401 (re-exported)
                       progress_names)

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: The kernel every study notebook runs on (the project's environment), and its language.
KERNEL_NAME = "python3"
LANGUAGE = "python"


class StudyError(RuntimeError):
    """A notebook failed; the message names it, the likely cause and what to do."""


class StudyInterrupted(StudyError):
    """The user pressed Ctrl-C (SIGINT) while a notebook ran."""


def project_notebook(path: str | os.PathLike):
    """A notebook as visrec runs it: ``metadata.kernelspec`` and ``language_info`` set to the
    project's kernel (:data:`KERNEL_NAME`, Python) whatever the file says.

    Returns:
        nbformat.NotebookNode (version 4).
    """
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": LANGUAGE}
    nb.metadata.setdefault("language_info", {})["name"] = LANGUAGE
    return nb


def notebook_parameters(name: str, notebook_dir: str | os.PathLike | None = None) -> dict:
    """Parameters declared in a notebook's ``parameters`` cell, ``{name: {name, inferred_type_name,
    default, help}}`` (papermill.inspect_notebook on the notebook with the project's kernel, so a
    notebook without kernel metadata is read too)."""
    import tempfile

    import papermill

    nb = project_notebook(Path(notebook_dir or NOTEBOOK_DIR) / f"{name}.ipynb")
    with tempfile.TemporaryDirectory(prefix="visrec-inspect-") as tmp:
        path = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, str(path))
        return papermill.inspect_notebook(str(path))


#: MIME type of a Jupyter widget's output (tqdm's progress bars in a notebook).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


#: A widget whose text form is a container of controls (``VBox(children=(...``: the explorer of
#: notebook 06), which a page without a kernel cannot show; tqdm's bars read as their bar text.
CONTROLS = re.compile(r"^(VBox|HBox|Box|GridBox|Tab|Accordion)\(children=")
#: What the shared page shows in its place.
CONTROLS_NOTE = "Interactive controls here: open this notebook in JupyterLab (make lab) and run it to use them."

#: The prefix of visrec's own progress lines (:mod:`visrec_utils.core.log`).
PROGRESS_PREFIX = "[visrec] "


class StderrSummary(Preprocessor):
    """nbconvert preprocessor for the shared pages: each code cell's stderr stream outputs
    (library warnings, decoder chatter), its ``[visrec]`` progress lines (on stdout or stderr;
    :data:`PROGRESS_PREFIX`) and progress-bar widgets
    become one line, "N lines of progress and warnings (W warnings): see <log>", placed where
    the first of them was; stdout, results, figures and errors are kept as they are.

    A widget of controls (:data:`CONTROLS`: notebook 06's explorer), which a page without a kernel
    cannot run, becomes the one-line :data:`CONTROLS_NOTE`.

    The removed text is appended to ``resources["stderr_log"]`` (one block per cell, headed by
    the cell's execution count, as the page with code shows it) for the caller to write to the log file
    (:func:`to_html`). A line counts as a warning when it contains "warning" (any case).
    The notebook's saved widget state (``metadata.widgets``) is dropped with the widgets.
    """

    log_href = Unicode("", help="the log file the summary line links to, relative to the page").tag(config=True)

    def preprocess(self, nb, resources):
        resources.setdefault("stderr_log", [])
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.get("outputs"):
            return cell, resources
        kept, text, bars, at = [], [], 0, None
        for o in cell.outputs:
            if o.output_type == "stream" and o.get("name") == "stdout" and PROGRESS_PREFIX in o.get("text", ""):
                lines = o.get("text", "").splitlines(keepends=True)  # the [visrec] progress lines go to the log
                progress = [ln for ln in lines if ln.startswith(PROGRESS_PREFIX)]
                rest = [ln for ln in lines if not ln.startswith(PROGRESS_PREFIX)]
                if progress:
                    text.append("".join(progress))
                    at = len(kept) if at is None else at
                if rest:
                    kept.append(nbformat.v4.new_output("stream", name="stdout", text="".join(rest)))
                continue
            if o.output_type == "stream" and o.get("name") == "stderr":
                text.append(o.get("text", ""))
            elif (o.output_type in ("display_data", "execute_result") and WIDGET_MIME in o.get("data", {})
                  and CONTROLS.match(o["data"].get("text/plain", ""))):  # an interactive widget, not a progress bar
                kept.append(nbformat.v4.new_output("display_data", data={
                    "text/plain": CONTROLS_NOTE, "text/html": f'<p class="visrec-widget"><i>{html.escape(CONTROLS_NOTE)}</i></p>'}))
                continue
            elif o.output_type == "display_data" and WIDGET_MIME in o.get("data", {}):
                bars += 1
                text.append(f"[progress bar] {o['data'].get('text/plain', '')}\n")
            else:
                kept.append(o)
                continue
            at = len(kept) if at is None else at
        if at is None:
            cell.outputs = kept  # only the note in place of interactive controls, if any
            return cell, resources
        lines = [ln for ln in "".join(text).splitlines() if ln.strip() and not ln.startswith("[progress bar]")]
        n_warn = sum("warning" in ln.lower() for ln in lines)
        resources["stderr_log"].append(f"--- In [{cell.get('execution_count') or ' '}] ---\n"
                                       + "".join(text).rstrip("\n") + "\n")
        summary = summary_line(len(lines), n_warn, bars)
        href = html.escape(self.log_href, quote=True)
        link = f'<a href="{href}">{html.escape(self.log_href)}</a>' if self.log_href else "the with-code page"
        kept.insert(at, nbformat.v4.new_output(
            "display_data", data={"text/plain": f"{summary}: see {self.log_href or 'the with-code page'}",
                                  "text/html": f'<p class="visrec-stderr" style="color:#666;font-size:90%;margin:0">'
                                               f"{html.escape(summary)}: see {link}</p>"}))
        cell.outputs = kept
        return cell, resources


def summary_line(n_lines: int, n_warnings: int = 0, n_bars: int = 0) -> str:
    """The words of :class:`StderrSummary`'s line: ``summary_line(12, 3, 2)`` ->
    ``"12 lines of progress and warnings (3 warnings) and 2 progress bars"``."""
    def n(k, word):
        return f"{k} {word}{'' if k == 1 else 's'}"

    parts = []
    if n_lines or not n_bars:
        warnings = f" ({n(n_warnings, 'warning')})" if n_warnings else ""
        parts.append(f"{n(n_lines, 'line')} of progress and warnings{warnings}")
    if n_bars:
        parts.append(n(n_bars, "progress bar"))
    return " and ".join(parts)


def parameters_html(nb) -> str:
    """The values a notebook ran with, as a folded HTML table (parameter, value, meaning) under
    a one-line summary "Parameters of this run (N; M differ from the notebook's defaults)": the
    ``parameters`` cell's defaults, overridden by papermill's ``injected-parameters`` cell (those
    values in bold); the meaning is the default's ``# comment``. Values are the cells' Python
    literals. Empty when the notebook has no parameters cell."""
    import ast

    def literal(text: str):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError):
            return text

    rows: dict = {}  # name -> [value, comment, default]
    for tag in ("parameters", "injected-parameters"):
        for cell in nb.cells:
            if cell.cell_type != "code" or tag not in cell.metadata.get("tags", []):
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            lines = cell.source.splitlines()
            for node in tree.body:
                target = node.target if isinstance(node, ast.AnnAssign) else (
                    node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
                if not isinstance(target, ast.Name) or node.value is None:
                    continue
                value = " ".join((ast.get_source_segment(cell.source, node.value) or "").split())
                comment = lines[node.lineno - 1].partition("  #")[2].strip()
                row = rows.setdefault(target.id, [value, comment, value if tag == "parameters" else None])
                row[0], row[1] = value, comment or row[1]
    if not rows:
        return ""
    changed = {k for k, (v, _, d) in rows.items() if d is None or literal(v) != literal(d)}
    body = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>"
                   + (f"<b>{html.escape(v)}</b>" if k in changed else html.escape(v))
                   + f"</code></td><td>{html.escape(c)}</td></tr>" for k, (v, c, _) in rows.items())
    # tex2jax_ignore / mathjax_ignore: a "$VISREC_CACHE" in a comment is not LaTeX
    return (f'<details class="visrec-parameters tex2jax_ignore mathjax_ignore"><summary>Parameters of this run '
            f"({len(rows)}; {len(changed)} differ from the notebook's defaults, in bold)</summary><table><thead>"
            f"<tr><th>parameter</th><th>value</th><th>meaning</th></tr></thead><tbody>{body}</tbody></table></details>")


def _rebase_links(nb, prefix: str) -> None:
    """Prefix the relative ``../`` links in the notebook's HTML and Markdown outputs (a page one
    folder deeper, ``with_code/``, reaches the same files)."""
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            for mime in ("text/html", "text/markdown"):
                if isinstance(data.get(mime), str):
                    text = data[mime].replace('href="../', f'href="{prefix}../')
                    data[mime] = text.replace("](../", f"]({prefix}../")


def _export(nb, shared: bool, log_href: str = "") -> tuple[str, dict]:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=shared, exclude_input_prompt=shared, exclude_output_prompt=shared)
    resources = {}
    if shared:
        nb, resources = StderrSummary(log_href=log_href).preprocess(nb, resources)
    return exporter.from_notebook_node(nb, resources=resources)


def to_html(ipynb: Path) -> Path:
    """Render an executed notebook to two self-contained HTML pages (figures embedded) and a log.

    * ``reports/NN_name.html``, the page shared with people who do not read code: no code
      inputs, the parameters cells shown as a folded table of their values (:func:`parameters_html`),
      each cell's stderr and progress bars replaced by one line (:class:`StderrSummary`), and a
      link at the top to the page with code;
    * ``reports/with_code/NN_name.html``, for analysts: every cell's code and every output;
    * ``reports/logs/NN_name.stderr.log``: the stderr text the shared page leaves out (removed
      when there is none).

    Args:
        ipynb: the executed notebook ``<out>/reports/NN_name.ipynb``.

    Returns:
        The path of the shared page (``ipynb`` with ``.html``).
    """
    import copy

    ipynb = Path(ipynb)
    name, reports = ipynb.stem, ipynb.parent
    nb = nbformat.read(str(ipynb), as_version=4)
    if drop_noise_outputs(nb):  # start-up noise stays out of the executed notebook and both pages
        atomic_write(ipynb, lambda tmp: nbformat.write(nb, tmp))
    log_rel, code_rel = f"logs/{name}.stderr.log", f"with_code/{name}.html"

    analyst = copy.deepcopy(nb)
    _rebase_links(analyst, "../")
    analyst.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"*This page shows the code of each cell and everything it printed; the same notebook without its "
        f"code: [{name}.html](../{name}.html).*"))
    body, _ = _export(analyst, shared=False)
    atomic_write(reports / code_rel, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))

    shared = copy.deepcopy(nb)
    params = parameters_html(shared)
    first = next((i for i, c in enumerate(shared.cells) if c.cell_type == "code"
                  and {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))), None)
    shared.cells = [c for c in shared.cells
                    if not {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    if params and first is not None:
        shared.cells.insert(first, nbformat.v4.new_markdown_cell(params))
    shared.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"*The same notebook with its code: [{code_rel}]({code_rel}).*"))
    body, resources = _export(shared, shared=True, log_href=log_rel)
    log = reports / log_rel
    if resources.get("stderr_log"):
        text = f"# stderr and progress of {name}, one block per cell (left out of {name}.html)\n\n"
        text += "\n".join(resources["stderr_log"])
        atomic_write(log, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    else:
        log.unlink(missing_ok=True)
    page = ipynb.with_suffix(".html")
    atomic_write(page, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
    return page


class MemoryWatch(Poller):
    """Peak memory (bytes) of this process's children (the kernel and its workers), sampled every
    ``interval`` seconds in a background thread: the sum of their proportional set sizes (PSS,
    Linux ``/proc/<pid>/smaps_rollup``), so the pages a forked DataLoader worker shares with the
    kernel count once, not once per process as resident sizes (RSS) would; RSS (psutil) where
    PSS cannot be read.

    Reading ``smaps_rollup`` walks the process's page tables: 20 ms of kernel time for a 3.5 GiB
    kernel (measured during the H&M study), under the lock its own page faults need; read at
    every 0.2 s tick, the watch took 17% of a core from the study. So each tick first sums the
    RSS (``/proc/<pid>/statm``, microseconds), and reads PSS only when that sum is above the peak
    (PSS <= RSS per process, so otherwise the peak cannot move) and either ``pss_every`` seconds
    have passed since the last read or the RSS sum grew by more than 5% since it (a kernel
    growing towards being killed is still sampled at every tick).
    """

    def __init__(self, interval: float = 0.2, pss_every: float = 1.0):  # short: a kernel killed early
        super().__init__(interval, "visrec-memory")                      # still leaves a sample
        self.peak, self.pss_every = 0, pss_every
        self.pss_reads = 0
        self._last = None  # (monotonic time, RSS sum) of the last PSS read

    def tick(self) -> None:
        import psutil

        rss = {}
        for child in psutil.Process().children(recursive=True):
            try:
                rss[child.pid] = child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        rss_total, now = sum(rss.values()), time.monotonic()
        if rss_total <= self.peak:
            return
        if self._last is not None and now - self._last[0] < self.pss_every and rss_total <= 1.05 * self._last[1]:
            return
        self._last, self.pss_reads = (now, rss_total), self.pss_reads + 1
        total = 0
        for pid in rss:
            pss = proportional_set_size(pid)
            if pss is None:  # no smaps_rollup here, or the process just ended (a DataLoader worker):
                try:         # its RSS now, or nothing, never the RSS read before it ended
                    pss = psutil.Process(pid).memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            total += pss
        self.peak = max(self.peak, total)


def proportional_set_size(pid: int) -> int | None:
    """A process's PSS in bytes from ``/proc/<pid>/smaps_rollup`` (Linux 4.14+), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _ExplainedFaults:
    """Logging filter: drops nbclient's and asyncio's own reports of the faults that
    :func:`explain` turns into one line (kernel death, cell timeout)."""

    MESSAGES = ("Kernel died while waiting for execute reply", "Timeout waiting for execute reply")

    def filter(self, record) -> bool:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        if record.name.startswith("papermill") and isinstance(record.msg, str) and not record.args:
            record.msg = drop_noise(record.msg)  # --log-output: the kernel's streams, without start-up noise
            if not record.msg.strip():
                return False

        exc = record.exc_info[1] if record.exc_info else None
        exc = exc or (record.args.get("exception") if isinstance(record.args, dict) else None)
        if isinstance(exc, (DeadKernelError, CellTimeoutError)):
            return False
        if record.name == "asyncio" and "exception=DeadKernelError" in record.getMessage():
            return False
        return not record.getMessage().startswith(self.MESSAGES)


def _quiet_fault_logs() -> None:
    import logging

    for name in ("papermill", "asyncio", "traitlets"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExplainedFaults) for f in logger.filters):
            logger.addFilter(_ExplainedFaults())


def _kernel_manager_class(log_path: Path, launched: list, env: dict | None = None):
    """An AsyncKernelManager that sends the kernel's stdout/stderr to ``log_path``, sets
    :data:`BATCH_ENV` and ``env`` in the kernel's environment and appends the kernel's process
    (``subprocess.Popen``) to ``launched`` (its exit status tells a kill)."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            log = open(log_path, "ab")  # noqa: SIM115 (closed when the kernel is cleaned up)
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            kw["env"] = {**(kw.get("env") or os.environ), BATCH_ENV: "1", **(env or {})}  # notebook.done: no index
            try:
                await super().start_kernel(**kw)
            finally:
                log.close()  # the kernel holds its own copy of the descriptor
            launched.append(getattr(self.provisioner, "process", None))

    return LoggedKernelManager


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _signal_name(code) -> str | None:
    if isinstance(code, int) and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return None


def explain(exc: BaseException, name: str, out_nb: Path, peak_rss: int = 0, kernel_exit=None,
            timeout: float | None = None) -> StudyError:
    """The one-line :class:`StudyError` for whatever stopped notebook ``name``.

    Args:
        exc: what papermill/nbclient raised (PapermillExecutionError, DeadKernelError,
            CellTimeoutError, KeyboardInterrupt, NoSuchKernel, OSError ...).
        name: the notebook's name; out_nb: its executed copy (``.html`` beside it).
        peak_rss: peak memory of the notebook's processes in bytes (0: unknown).
        kernel_exit: the kernel process's exit status (negative: killed by that signal).
        timeout: the cell timeout in seconds that was in force.

    Returns:
        StudyError (:class:`StudyInterrupted` for Ctrl-C) whose message is one line.
    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    html = out_nb.with_suffix(".html")
    partial = f"The partial notebook is {html}." if html.is_file() else ""
    rerun = f"rerun the same command: it resumes at {name} (earlier notebooks are reused)."
    then_rerun = f"{rerun} {partial}".strip()  # the end of most lines below
    free_space = "Free space in the output folder and the cache folder (df -h), then "
    seen = ""
    if peak_rss:
        import psutil

        seen = f"; its processes peaked at {_gib(peak_rss)} of this machine's {_gib(psutil.virtual_memory().total)}"
    if isinstance(exc, KeyboardInterrupt):
        return StudyInterrupted(f"notebook {name} interrupted (Ctrl-C). {partial} R{rerun[1:]}".replace("  ", " "))
    if isinstance(exc, NoSuchKernel):
        return StudyError(f"notebook {name} could not start: no Jupyter kernel named {KERNEL_NAME!r} in this "
                          f"environment ({exc}). Install the project with its dependencies (pip install -e .), "
                          "which brings ipykernel, then rerun the same command.")
    if isinstance(exc, DeadKernelError):
        sig = _signal_name(kernel_exit)
        how = f"was killed ({sig})" if sig else "died"
        cause = ("out of memory is the usual reason (the system's out-of-memory killer)" if sig in (None, "SIGKILL")
                 else "something outside visrec stopped it")
        return StudyError(f"notebook {name} failed: its Python kernel {how}; {cause}{seen}. Free memory or run a "
                          f"smaller slice (--max-users/--max-items) or a smaller batch_size, then rerun the same "
                          f"command: it resumes at {name}. {partial}".strip())
    if isinstance(exc, CellTimeoutError):
        return StudyError(f"notebook {name} failed: a cell ran longer than the {timeout:g} s cell timeout "
                          f"(--cell-timeout). Raise or drop the timeout, or run a smaller slice; {then_rerun}")
    if isinstance(exc, papermill.PapermillExecutionError):
        if exc.ename == "MemoryError":
            return StudyError(f"notebook {name} failed: out of memory (MemoryError){seen}. Run a smaller slice "
                              f"(--max-users/--max-items) or a smaller batch_size; {then_rerun}")
        if "No space left on device" in str(exc.evalue) or f"Errno {errno.ENOSPC}]" in str(exc.evalue):
            return StudyError(f"notebook {name} failed: the disk is full ({exc.evalue}). {free_space}{then_rerun}")
        evalue = " ".join(str(exc.evalue).split())
        return StudyError(f"notebook {name} failed: {exc.ename}: {evalue}. The executed notebook with the "
                          f"traceback is {out_nb} (and .html). Fix the cause, then rerun the same command: it "
                          f"resumes at {name}.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StudyError(f"notebook {name} failed: the disk is full ({exc.strerror}: {exc.filename or ''}). "
                          f"{free_space}{rerun}")
    return StudyError(f"notebook {name} failed: {type(exc).__name__}: {' '.join(str(exc).split())}. {partial} "
                      f"R{rerun[1:]}".replace("  ", " "))


def run_notebook(name: str, params: dict, out_dir: Path, log_output: bool = False,
                 timeout: float | None = None, notebook_dir: str | os.PathLike | None = None) -> dict:
    """Execute one notebook with the parameters it declares; return its timing record.

    The notebook runs on :data:`KERNEL_NAME` with ``notebooks/`` as working directory; the
    executed copy is ``<out>/reports/<name>.ipynb`` (saved after every cell) and ``.html``; the
    kernel's stdout/stderr go to ``<out>/reports/logs/<name>.kernel.log`` (without start-up noise).
    Without ``log_output`` the kernel's tqdm bars show as one live line on a terminal's stderr
    (:class:`~visrec_utils.pipeline.progress.ProgressLine`, through ``logs/<name>.progress.json``).

    Args:
        name: notebook name without ``.ipynb``; params: parameter values (only those the
            notebook declares are passed); out_dir: the study output folder.
        log_output: stream the notebook's output to the terminal.
        timeout: seconds one cell may run (None: no limit).

    Returns:
        ``{"notebook", "seconds", "parameters", "peak_rss_mib"}``.

    Raises:
        StudyError: one line naming the notebook, the cause and what to do (:func:`explain`);
            the partial notebook is kept and rendered to HTML.
    """
    import papermill

    notebook_dir = Path(notebook_dir or NOTEBOOK_DIR)
    declared = notebook_parameters(name, notebook_dir)
    mine = {k: v for k, v in params.items() if k in declared}
    reports = Path(out_dir) / "reports"
    (reports / "logs").mkdir(parents=True, exist_ok=True)
    out_nb = reports / f"{name}.ipynb"
    stale_reports = (out_nb, out_nb.with_suffix(".html"), reports / "with_code" / f"{name}.html",
                     reports / "logs" / f"{name}.stderr.log")
    for stale in stale_reports:  # a failure must never show an older run's report
        stale.unlink(missing_ok=True)
    log = reports / "logs" / f"{name}.kernel.log"
    log.write_bytes(b"")
    launched: list = []
    _quiet_fault_logs()
    src = reports / "logs" / f"{name}.input.ipynb"  # the notebook with the project's kernel metadata
    progress = reports / "logs" / f"{name}.progress.json"
    progress.unlink(missing_ok=True)
    env = {} if log_output else {PROGRESS_ENV: str(progress)}
    line = ProgressLine(progress, name, progress_names(mine, declared))
    t0 = time.perf_counter()
    watch = MemoryWatch()
    try:
        nbformat.write(project_notebook(notebook_dir / f"{name}.ipynb"), str(src))
        with watch, (contextlib.nullcontext() if log_output else line):
            papermill.execute_notebook(str(src), str(out_nb), parameters=mine, kernel_name=KERNEL_NAME,
                                       language=LANGUAGE, progress_bar=False, log_output=log_output,
                                       cwd=str(notebook_dir), execution_timeout=timeout,
                                       kernel_manager_class=_kernel_manager_class(log, launched, env))
    except BaseException as e:  # noqa: BLE001 (Ctrl-C too: the partial notebook is rendered, then one line)
        if out_nb.is_file():
            try:
                to_html(out_nb)
            except Exception:  # noqa: BLE001 (a half-written notebook must not hide the cause)
                pass
        proc = launched[-1] if launched else None
        code = proc.poll() if proc is not None else None
        raise explain(e, name, out_nb, watch.peak, code, timeout) from e
    finally:
        src.unlink(missing_ok=True)
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        if drop_noise(text) != text:  # start-up noise (NOISE) left out of the kernel's log
            atomic_write(log, lambda tmp: Path(tmp).write_text(drop_noise(text), encoding="utf-8"))
    seconds = time.perf_counter() - t0
    to_html(out_nb)
    return {"notebook": name, "seconds": round(seconds, 1), "parameters": mine,
            "peak_rss_mib": round(watch.peak / 2**20)}
