"""Wall time of the whole study, per notebook and per stage, as a CSV (issue 17). Not a test.

    python benchmarks/study.py -- --quick                        # a quick slice into a fresh, empty cache
    python benchmarks/study.py --out study_output                # the whole study (what make study runs)
    python benchmarks/study.py --no-run --out /tmp/hm_run        # only read a finished run's records
    python benchmarks/study.py --no-run --out /tmp/hm_run --readme README.md   # and put the table in README

Runs ``python -m visrec_utils study --out OUT --cache-dir CACHE ARGS...`` (CACHE: a new empty
folder unless ``--cache-dir`` names one, so the run is cold; ARGS after ``--`` are passed on,
e.g. ``--quick``), with the terminal attached (its live progress line shows), then writes one
row per stage to ``--csv`` (default ``benchmarks/results/study_stages.csv``) from the run's own
records:

* per notebook (``part`` = ``notebook``): wall seconds and peak memory (RSS of the kernel and its
  workers) from ``results/run.json`` (:func:`visrec_utils.pipeline.runner.run_study`), ``reused``
  when the runner did not run it again;
* per model of notebook 02 (``extract <model>``): ``seconds`` and ``images_per_s`` of
  ``results/models.csv`` (``cache hit`` when read from the cache); the sets of one shared pass
  (column ``shared_pass``) are one row, ``extract <model>, <model>, ...``, its time counted once;
* per model and strategy of notebook 03 (``tune <strategy> <model>``): the sum of the
  ``*_seconds`` columns of ``results/finetune_cost.csv``;
* one ``study`` row: the run's total seconds and the highest notebook peak.

``share`` is a row's seconds over the study's total (none for a cache hit, whose seconds are the
run's that computed it) (over the sum of the notebooks' seconds when
some were reused: a rerun that reused them takes seconds, their rows keep their own run's time). :func:`markdown_table` renders the CSV as a
Markdown table and :func:`put_in_readme` writes it between :data:`MARKERS` in a README
(:func:`visrec_utils.reports.answer.replace_block`). Timings depend on the machine and on what
else runs on it: compare runs made back to back on the same machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visrec_utils.core.layout import StudyLayout  # noqa: E402
from visrec_utils.core.store import atomic_write, read_json  # noqa: E402
from visrec_utils.reports.answer import replace_block  # noqa: E402

DEFAULT_CSV = ROOT / "benchmarks" / "results" / "study_stages.csv"
#: The README block :func:`put_in_readme` replaces.
MARKERS = ("<!-- visrec:times:start -->", "<!-- visrec:times:end -->")
COLUMNS = ["notebook", "part", "seconds", "share", "rate", "rate_unit", "peak_rss_gib", "note"]


def run_study(out: Path, cache_dir: Path, args: list[str]) -> int:
    """Run the study CLI with the terminal attached; returns its exit status."""
    cmd = [sys.executable, "-m", "visrec_utils", "study", "--out", str(out), "--cache-dir", str(cache_dir), *args]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def stage_rows(out: str | Path) -> pd.DataFrame:
    """One row per notebook and stage of the run in ``out`` (see the module's docstring), in
    the notebooks' order, with :data:`COLUMNS`; ``share`` is of the run's ``total_seconds``.

    Raises:
        FileNotFoundError: ``out`` has no ``results/run.json`` (no finished study there).
    """
    layout = StudyLayout(out)
    run = read_json(layout.result("run"))
    if not isinstance(run, dict) or "notebooks" not in run:
        raise FileNotFoundError(f"{layout.result('run')}: no run record; run the study first (without --no-run)")
    reused = sum(bool(r.get("reused")) for r in run["notebooks"])
    computed = sum(r.get("seconds") or 0 for r in run["notebooks"])
    total = float(run.get("total_seconds") or computed)
    share_of = computed if reused else total  # a partly reused run: shares of the notebooks' own run times
    rows = []
    for r in run["notebooks"]:
        nb, peak = r["notebook"], r.get("peak_rss_mib")
        rows.append({"notebook": nb, "part": "notebook", "seconds": r.get("seconds"),
                     "peak_rss_gib": round(peak / 1024, 2) if peak is not None else None,
                     "note": "reused (earlier run's time)" if r.get("reused") else ""})
        if nb.startswith("02_") and layout.result("models").is_file():
            models = pd.read_csv(layout.result("models"), keep_default_na=False)
            passes = {}  # sets extracted in one shared pass: one row, its time counted once
            for m in models.itertuples():
                if getattr(m, "status", "ok") not in ("ok", "precomputed"):
                    continue
                shared = str(getattr(m, "shared_pass", "") or "")
                if shared and shared in passes:
                    passes[shared]["part"] += f", {m.model}"
                    continue
                rate = pd.to_numeric(getattr(m, "images_per_s", ""), errors="coerce")
                rows.append({"notebook": nb, "part": f"extract {m.model}",
                             "seconds": pd.to_numeric(getattr(m, "seconds", ""), errors="coerce"),
                             "rate": rate, "rate_unit": "img/s" if pd.notna(rate) else "",
                             "note": "cache hit" if str(getattr(m, "cache_hit", "")) == "True"
                             else ("one pass: " + shared if shared else "")})
                if shared:
                    passes[shared] = rows[-1]
        if nb.startswith("03_") and layout.result("finetune_cost").is_file():
            cost = pd.read_csv(layout.result("finetune_cost"), keep_default_na=False)
            seconds = [c for c in cost.columns if c.endswith("_seconds")]
            for _, c in cost.iterrows():
                rows.append({"notebook": nb, "part": f"tune {c['strategy']} {c['model']}",
                             "seconds": sum(float(pd.to_numeric(c[s], errors="coerce") or 0) for s in seconds),
                             "note": "cache hit (the time of the run that trained it)"
                             if str(c.get("cache_hit", "")) == "True" else ""})
    peaks = [r["peak_rss_gib"] for r in rows if r.get("peak_rss_gib") is not None]
    rows.append({"notebook": "study", "part": "total", "seconds": total, "peak_rss_gib": max(peaks) if peaks else None,
                 "note": f"{reused} of {len(run['notebooks'])} notebooks reused: shares are of the notebooks' "
                         f"{computed:.0f} s" if reused else ""})
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["seconds"] = pd.to_numeric(table["seconds"], errors="coerce").round(1)
    table["share"] = (table["seconds"] / share_of).round(4) if share_of else None
    hit = table["note"].fillna("").str.startswith("cache hit")  # an earlier run's time: no share of this one
    table.loc[hit, "share"] = None
    return table


def markdown_table(csv: str | Path) -> str:
    """The stage CSV (:func:`stage_rows`) as a Markdown table: notebook, part, wall time in
    seconds, share of the study in percent, rate with its unit, peak memory in GiB and the note."""
    t = pd.read_csv(csv, keep_default_na=False)

    def num(x, fmt):
        return "" if x == "" or pd.isna(pd.to_numeric(x, errors="coerce")) else format(float(x), fmt)

    lines = ["| notebook | part | wall time (s) | share | rate | peak memory (GiB) | note |",
             "|---|---|--:|--:|--:|--:|---|"]
    for r in t.itertuples():
        share = num(r.share, ".1%")
        rate = f"{num(r.rate, '.1f')} {r.rate_unit}".strip() if num(r.rate, ".1f") else ""
        lines.append(f"| {r.notebook} | {r.part} | {num(r.seconds, '.0f')} | {share} | {rate} | "
                     f"{num(r.peak_rss_gib, '.1f')} | {r.note} |")
    return "\n".join(lines) + "\n"


def put_in_readme(readme: str | Path, table: str) -> None:
    """Replace the block between :data:`MARKERS` in ``readme`` by ``table``.

    Raises:
        ValueError: the README lacks the markers (names them; add the two lines where the table goes).
    """
    readme = Path(readme)
    text = replace_block(readme.read_text(encoding="utf-8"), table, MARKERS)
    atomic_write(readme, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="study output folder (default: a new temporary folder)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: a new empty folder: a cold run)")
    p.add_argument("--csv", default=str(DEFAULT_CSV), help=f"the CSV to write (default {DEFAULT_CSV.relative_to(ROOT)})")
    p.add_argument("--no-run", action="store_true", help="only read the records of the finished run in --out")
    p.add_argument("--readme", default=None, help=f"also write the table into this README, between {MARKERS[0]} "
                                                  f"and {MARKERS[1]}")
    p.add_argument("study_args", nargs="*", help="after --: passed to python -m visrec_utils study (e.g. --quick)")
    a = p.parse_args(argv)
    if a.no_run and not a.out:
        p.error("--no-run needs --out (the finished run to read)")
    out = Path(a.out or tempfile.mkdtemp(prefix="visrec-study-"))
    if not a.no_run:
        cache = Path(a.cache_dir or tempfile.mkdtemp(prefix="visrec-cache-"))
        code = run_study(out, cache, a.study_args)
        if code:
            print(f"the study failed (exit status {code}); no timings written", file=sys.stderr)
            return code
    table = stage_rows(out)
    atomic_write(a.csv, lambda tmp: table.to_csv(tmp, index=False))
    text = markdown_table(a.csv)
    print(text)
    print(f"written {a.csv}")
    if a.readme:
        put_in_readme(a.readme, text)
        print(f"README block {MARKERS[0]} .. {MARKERS[1]} refreshed in {a.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
