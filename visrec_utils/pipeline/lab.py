"""``make lab``: JupyterLab on the project's environment, the command line written once.

``python -m visrec_utils lab --port N`` (what ``make lab PORT=N`` runs) installs the kernelspec
``visrec`` (display name "visrec (.venv)") into the running environment (``--sys-prefix``: no
file outside it), then starts JupyterLab with :func:`lab_command`: no browser (the URL with its
token is printed; open it yourself, or forward the port from a remote machine), the given port
and no other (a port in use is an error, not a silent move), rooted at the repository so that
``notebooks/`` and ``study_output/`` are both reachable, and ``--allow-root`` when run as root
(containers). The notebooks keep kernelspec ``python3``: in this environment that is the same
interpreter as ``visrec``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: The kernelspec ``make lab`` installs into the environment, and its display name.
KERNEL_NAME = "visrec"
KERNEL_DISPLAY_NAME = "visrec (.venv)"
DEFAULT_PORT = 8888


def lab_command(port: int = DEFAULT_PORT, root: str | os.PathLike = ".", python: str | None = None) -> list[str]:
    """The command line that starts JupyterLab for this project.

    Args:
        port: the port to listen on (only that one: ``--ServerApp.port_retries=0``).
        root: the folder the file browser starts at (resolved to an absolute path; the
            repository root, so ``notebooks/`` and ``study_output/`` are both in it).
        python: the interpreter (default: the running one, i.e. the project's ``.venv``).

    Returns:
        argv list, e.g. ``[".venv/bin/python", "-m", "jupyterlab", "--no-browser", "--port=8888", ...]``;
        ``--allow-root`` is added when the effective user id is 0.

    Raises:
        ValueError: ``port`` outside 1-65535, or ``root`` not a folder.
    """
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError(f"lab --port {port}: a port is a number from 1 to 65535 (default {DEFAULT_PORT})")
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"lab --root {root}: not a folder; give the repository root (default: the current folder)")
    cmd = [python or sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def install_kernel(prefix: str | None = None) -> str:
    """Install (or refresh) the kernelspec :data:`KERNEL_NAME` for this interpreter into the
    environment's ``share/jupyter/kernels`` (``prefix``: default ``sys.prefix``, i.e.
    ``--sys-prefix``); returns the kernelspec's folder."""
    from ipykernel.kernelspec import install

    return install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=prefix or sys.prefix)


def run_lab(port: int = DEFAULT_PORT, root: str | os.PathLike = ".") -> None:
    """Install the kernelspec and replace this process by JupyterLab (:func:`lab_command`), so
    Ctrl-C and signals reach the server directly. Does not return.

    Raises:
        ValueError: a bad port or root (:func:`lab_command`), or JupyterLab not installed (the
            message says how to install it).
    """
    import importlib.util

    cmd = lab_command(port, root)
    if importlib.util.find_spec("jupyterlab") is None:
        raise ValueError("JupyterLab is not installed in this environment: pip install -e '.[lab]' "
                         "(make lab does it), then rerun")
    install_kernel()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
