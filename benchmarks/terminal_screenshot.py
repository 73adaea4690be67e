"""A picture of the terminal during a study run, from a ``script`` capture (issue 17). Not a test.

    script -q -c "stty cols 150; python benchmarks/study.py --out OUT" terminal.txt
    python benchmarks/terminal_screenshot.py terminal.txt --at 0.4 --png figures/terminal_run.png

``--at`` is where the picture is taken, as a share of the capture (0.4: 40% of its bytes, which
is during notebook 02 for a cold H&M study). The capture is replayed as a terminal would show it:
a carriage return goes back to the start of the line, so a live progress line shows its last
state. The screen (its last ``--rows`` lines) is written as an HTML page and photographed by
headless Chromium (:func:`visrec_utils.reports.screenshot.screenshot`).
"""
from __future__ import annotations

import argparse
import html
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: ANSI escape sequences (colours, cursor moves): a screenshot shows plain text.
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")


def screen_lines(capture: str) -> list[str]:
    """The lines a terminal shows after printing ``capture``: ``\\r`` returns to the start of the
    line (the next text overwrites it), ``\\n`` ends it; the ``script`` header line is left out."""
    lines, current, col = [], "", 0
    for part in re.split(r"(\r\n|\n|\r)", ANSI.sub("", capture)):
        if part in ("\r\n", "\n"):
            lines.append(current)
            current, col = "", 0
        elif part == "\r":
            col = 0
        else:
            current = current[:col] + part + current[col + len(part):]
            col += len(part)
    if current:
        lines.append(current)
    return [line for line in lines if not line.startswith("Script started on")]


def main(argv=None) -> None:
    from visrec_utils.reports.screenshot import screenshot

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path, help="a `script` capture of the run")
    ap.add_argument("--at", type=float, default=1.0, help="share of the capture shown (0-1]")
    ap.add_argument("--rows", type=int, default=14, help="terminal rows shown")
    ap.add_argument("--png", type=Path, required=True)
    a = ap.parse_args(argv)
    if not 0 < a.at <= 1:
        raise SystemExit(f"--at must be in (0, 1], not {a.at}")
    raw = a.capture.read_bytes()
    text = raw[: int(len(raw) * a.at)].decode("utf-8", errors="replace")
    text = text[: max(text.rfind("\r"), text.rfind("\n"), 0)] or text  # a line's last whole state, not half a redraw
    shown = screen_lines(text)[-a.rows:]
    page = ("<!doctype html><meta charset='utf-8'><body style='margin:0;background:#1e1e1e'>"
            "<pre style='margin:0;padding:14px;color:#e6e6e6;font:14px/1.35 DejaVu Sans Mono,monospace'>"
            + html.escape("\n".join(shown)) + "</pre>")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "terminal.html"
        path.write_text(page, encoding="utf-8")
        a.png.parent.mkdir(parents=True, exist_ok=True)
        screenshot(path, a.png, width=1280, height=int(60 + 20 * len(shown)))
    print(f"{a.png}: {len(shown)} lines at {a.at:.0%} of {a.capture}")


if __name__ == "__main__":
    main()
