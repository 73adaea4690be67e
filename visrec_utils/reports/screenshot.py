"""Pages as a browser shows them: headless Chromium screenshots and rendered DOMs of the reports.

Used by the report tests (the index's answer box, notebook pages without code) and by
``make study`` on the H&M sample to refresh the README's picture of the index
(``figures/index_top.png``). Chromium is Debian's ``chromium`` package (``make test`` installs
it when run as root); nothing here downloads a browser.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags of a headless, offline, reproducible run (no GPU, no network services, no first-run UI).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def find_chromium() -> str | None:
    """Path of the ``chromium`` (or ``chromium-browser``) executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium; make test installs it "
                                "when run as root)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], check=True,
                              capture_output=True, timeout=timeout)


def _url(page: Path, fragment: str) -> str:
    return page.as_uri() + (f"#{fragment}" if fragment else "")


def _budget(budget_ms: int | None) -> list[str]:
    return [f"--virtual-time-budget={int(budget_ms)}"] if budget_ms else []


def screenshot(page: str | Path, png: str | Path, width: int = 1200, height: int = 1600,
               timeout: float = 120, fragment: str = "", budget_ms: int | None = None) -> Path:
    """Render ``page`` (an HTML file) in headless Chromium and save the top ``width`` x ``height``
    CSS pixels as ``png``. ``fragment``: opened as ``page#fragment`` (e.g. the index's
    ``item=<id>`` link); ``budget_ms``: virtual milliseconds the page's scripts and timers get
    before the picture is taken (Chromium's ``--virtual-time-budget``).

    Raises:
        FileNotFoundError: Chromium is not installed, or ``page`` does not exist.
        subprocess.CalledProcessError, subprocess.TimeoutExpired: Chromium failed or hung.
    """
    page, png = Path(page).resolve(), Path(png).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"no page to screenshot at {page}")
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--window-size={width},{height}", f"--screenshot={png}", *_budget(budget_ms), _url(page, fragment)], timeout)
    return png


def rendered_dom(page: str | Path, timeout: float = 120, fragment: str = "", budget_ms: int | None = None) -> str:
    """The DOM of ``page`` after Chromium loaded it (``--dump-dom``), as HTML text; ``fragment`` and
    ``budget_ms`` as for :func:`screenshot`.

    Raises:
        FileNotFoundError: Chromium is not installed, or ``page`` does not exist.
    """
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"no page to render at {page}")
    return _run(["--dump-dom", *_budget(budget_ms), _url(page, fragment)], timeout).stdout.decode("utf-8", "replace")
