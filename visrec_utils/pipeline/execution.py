"""Executing one study notebook: papermill with the project's kernel, faults explained in one line.

:func:`run_notebook` runs ``notebooks/NN_name.ipynb`` with papermill on the project's own kernel
(:data:`KERNEL_NAME`, whatever the notebook's metadata says: nbstripout and jupytext round trips
drop ``metadata.kernelspec``, papermill issue 735), keeps the kernel's own stderr out of the
terminal (it goes to ``reports/logs/NN_name.kernel.log``: ipykernel's transport warnings,
libtiff's decoder chatter), watches the peak memory of the notebook's processes, and renders the
executed notebook to HTML, also when it failed part-way.

Whatever stops a notebook becomes one :class:`StudyError` line that names the notebook, the likely
cause in plain words and what to do: a cell's exception, a kernel that died (SIGKILL: usually the
out-of-memory killer; the peak memory seen is quoted), a cell timeout, Ctrl-C, a full disk, a
missing kernel. The partial notebook is kept (papermill saves it after every cell) and rendered.
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: The kernel every study notebook runs on (the project's environment), and its language.
KERNEL_NAME = "python3"
LANGUAGE = "python"
#: Cells tagged so are shown without their code in the HTML reports (imports and set-up).
HIDE_INPUT_TAGS = {"remove_input"}


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
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": LANGUAGE}
    nb.metadata.setdefault("language_info", {})["name"] = LANGUAGE
    return nb


def notebook_parameters(name: str, notebook_dir: str | os.PathLike | None = None) -> dict:
    """Parameters declared in a notebook's ``parameters`` cell, ``{name: {name, inferred_type_name,
    default, help}}`` (papermill.inspect_notebook on the notebook with the project's kernel, so a
    notebook without kernel metadata is read too)."""
    import tempfile

    import nbformat
    import papermill

    nb = project_notebook(Path(notebook_dir or NOTEBOOK_DIR) / f"{name}.ipynb")
    with tempfile.TemporaryDirectory(prefix="visrec-inspect-") as tmp:
        path = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, str(path))
        return papermill.inspect_notebook(str(path))


def to_html(ipynb: Path) -> Path:
    """Render an executed notebook to a self-contained HTML file next to it (figures embedded;
    the code of cells tagged :data:`HIDE_INPUT_TAGS` hidden, their output kept)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_input_tags = set(HIDE_INPUT_TAGS)
    cfg.HTMLExporter.preprocessors = ["nbconvert.preprocessors.TagRemovePreprocessor"]
    body, _ = HTMLExporter(config=cfg).from_filename(str(ipynb))
    html = ipynb.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


class MemoryWatch:
    """Peak resident memory (bytes) of this process's children (the kernel and its workers),
    sampled every ``interval`` seconds in a background thread (psutil)."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)


class _ExplainedFaults:
    """Logging filter: drops nbclient's and asyncio's own reports of the faults that
    :func:`explain` turns into one line (kernel death, cell timeout)."""

    MESSAGES = ("Kernel died while waiting for execute reply", "Timeout waiting for execute reply")

    def filter(self, record) -> bool:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

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


def _kernel_manager_class(log_path: Path, launched: list):
    """An AsyncKernelManager that sends the kernel's stdout/stderr to ``log_path`` and appends
    the kernel's process (``subprocess.Popen``) to ``launched`` (its exit status tells a kill)."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            log = open(log_path, "ab")  # noqa: SIM115 (closed when the kernel is cleaned up)
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
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
    kernel's stdout/stderr go to ``<out>/reports/logs/<name>.kernel.log``.

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
    import nbformat
    import papermill

    notebook_dir = Path(notebook_dir or NOTEBOOK_DIR)
    declared = notebook_parameters(name, notebook_dir)
    mine = {k: v for k, v in params.items() if k in declared}
    reports = Path(out_dir) / "reports"
    (reports / "logs").mkdir(parents=True, exist_ok=True)
    out_nb = reports / f"{name}.ipynb"
    for stale in (out_nb, out_nb.with_suffix(".html")):  # a failure must never show an older run's report
        stale.unlink(missing_ok=True)
    log = reports / "logs" / f"{name}.kernel.log"
    log.write_bytes(b"")
    launched: list = []
    _quiet_fault_logs()
    src = reports / "logs" / f"{name}.input.ipynb"  # the notebook with the project's kernel metadata
    t0 = time.perf_counter()
    watch = MemoryWatch()
    try:
        nbformat.write(project_notebook(notebook_dir / f"{name}.ipynb"), str(src))
        with watch:
            papermill.execute_notebook(str(src), str(out_nb), parameters=mine, kernel_name=KERNEL_NAME,
                                       language=LANGUAGE, progress_bar=False, log_output=log_output,
                                       cwd=str(notebook_dir), execution_timeout=timeout,
                                       kernel_manager_class=_kernel_manager_class(log, launched))
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
    seconds = time.perf_counter() - t0
    to_html(out_nb)
    return {"notebook": name, "seconds": round(seconds, 1), "parameters": mine,
            "peak_rss_mib": round(watch.peak / 2**20)}
