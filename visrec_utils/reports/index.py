"""The run's front page: ``<out>/reports/index.html``, one self-contained page to share.

It links every executed notebook's HTML and shows the key table (model, top-1, AUC and nDCG@20
with 95% intervals), the main figures (embedded, so the page can be mailed with the reports
folder), the run's parameters, the data figures, library versions, hardware and the wall time of
each notebook. :func:`write_index` is called by :func:`visrec_utils.pipeline.runner.run_study` and can be
called again on any finished output folder.

The parts that notebooks skipped (:mod:`visrec_utils.core.skips`) are gathered by :func:`write_index`
into ``results/skipped.csv`` and a "Skipped parts" section.
"""
from __future__ import annotations

import base64
import html
import json
import os
import platform
from pathlib import Path

import pandas as pd

from ..core.skips import skipped_parts

#: Figures shown on the page, in order, when the run wrote them (others stay in ``figures/``).
MAIN_FIGURES = ("imagenet_vs_ndcg20", "measured_top1_vs_ndcg20", "models_ndcg20", "finetune_auc", "layers_ndcg20",
                "gallery", "neighbours", "umap", "data_overview")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}th{background:#f4f4f4}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.synthetic{background:#fee;border:2px solid #c00;
padding:.5rem 1rem;font-weight:bold}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}
"""


def _fmt(v, lo, hi) -> str:
    return "" if pd.isna(v) else f"{v:.4f}" + ("" if pd.isna(lo) else f" [{lo:.4f}, {hi:.4f}]")


def key_table(out_dir: Path) -> pd.DataFrame:
    """Model, published and measured top-1, AUC and nDCG@20 with intervals, for the frozen
    VisRank-max of every model and every baseline (from ``results/metrics.csv``)."""
    res = out_dir / "results"
    if not (res / "metrics.csv").is_file():
        return pd.DataFrame()
    m = pd.read_csv(res / "metrics.csv")
    sel = m[((m["strategy"] == "frozen") & (m["recommender"] == "visrank_max")) | (m["model"] == "-")]
    rows = []
    for (model, rec), g in sel.groupby(["model", "recommender"], sort=False):
        auc = g[(g["metric"] == "auc")]
        nd = g[(g["metric"] == "ndcg") & (g["k"] == 20)]
        rows.append({"model": model if model != "-" else f"baseline: {rec}",
                     "AUC [95% CI]": _fmt(*auc[["value", "ci_low", "ci_high"]].iloc[0]) if len(auc) else "",
                     "nDCG@20 [95% CI]": _fmt(*nd[["value", "ci_low", "ci_high"]].iloc[0]) if len(nd) else ""})
    table = pd.DataFrame(rows, columns=["model", "AUC [95% CI]", "nDCG@20 [95% CI]"])
    if table.empty:  # the main evaluation was skipped (see "Skipped parts")
        return table
    if (res / "models.csv").is_file():
        models = pd.read_csv(res / "models.csv")[["model", "published_top1", "measured_top1"]]
        table = table.merge(models.rename(columns={"published_top1": "published top-1",
                                                   "measured_top1": "measured top-1"}), on="model", how="left")
        table = table[["model", "published top-1", "measured top-1", "AUC [95% CI]", "nDCG@20 [95% CI]"]]
    return table


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _hardware() -> dict:
    mem = ""
    try:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    # platform and processor are already in run.json's versions (runner.versions)
    return {"machine": platform.machine(), "cores": os.cpu_count(), "memory": mem, "gpu": gpu}


def write_index(out_dir: str | Path) -> Path:
    """Write ``<out>/reports/index.html`` from the run's outputs and return its path.

    Reads ``results/run.json`` (parameters, versions, timings), ``results/models.csv``,
    ``results/metrics.csv``, ``results/skipped/*.csv``, ``data/catalogue.json`` and
    ``figures/*.png``; parts that a run did not produce are left out, never an error. Writes
    ``results/skipped.csv`` (every notebook's skipped parts, :func:`skipped_parts`).
    """
    out_dir = Path(out_dir)
    reports = out_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    run = json.loads((out_dir / "results" / "run.json").read_text()) if (out_dir / "results" / "run.json").is_file() else {}
    cat = json.loads((out_dir / "data" / "catalogue.json").read_text()) if (out_dir / "data" / "catalogue.json").is_file() else {}
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>visrec study report</title>",
             f"<style>{_CSS}</style></head><body>", "<h1>visrec: do better ImageNet models give better image "
             "recommendations?</h1>"]
    if cat.get("synthetic"):
        parts.append("<p class='synthetic'>SYNTHETIC demo catalogue: these numbers say nothing about real data.</p>")
    timings = {r["notebook"]: (r.get("seconds"), r.get("reused", False)) for r in run.get("notebooks", [])}
    parts.append("<h2>Notebooks</h2><ul>")
    for nb in sorted(reports.glob("[0-9][0-9]_*.html")):
        t, reused = timings.get(nb.stem, (None, False))
        when = "" if t is None else f" (reused: inputs unchanged since its run of {t:.0f} s)" if reused \
            else f" ({t:.0f} s)"
        parts.append(f"<li><a href='{html.escape(nb.name)}'>{html.escape(nb.stem)}</a>{when}</li>")
    parts.append("</ul>")
    if "total_seconds" in run:
        reused = sum(bool(r.get("reused")) for r in run.get("notebooks", []))
        note = f" ({reused} of {len(run.get('notebooks', []))} notebooks reused, their earlier run times shown)" \
            if reused else ""
        parts.append(f"<p>This run took {run['total_seconds']:.0f} s{note}, started "
                     f"{html.escape(str(run.get('started')))}.</p>")
    table = key_table(out_dir)
    if len(table):
        parts += ["<h2>Key results</h2>", "<p>VisRank-max on frozen embeddings and the non-visual baselines, "
                  "under the main protocol; means over test users with 95% bootstrap intervals.</p>",
                  table.to_html(index=False, na_rep="", escape=True)]
    skipped = skipped_parts(out_dir)
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    skipped.to_csv(out_dir / "results" / "skipped.csv", index=False)
    if len(skipped):
        parts += ["<h2>Skipped parts</h2>", "<p>Parts that could not run on this input (a parameter left empty, an "
                  "optional part switched off, or too little data for it); the rest of the study ran.</p>",
                  skipped.to_html(index=False, escape=True)]
    figures = out_dir / "figures"
    shown = [figures / f"{name}.png" for name in MAIN_FIGURES if (figures / f"{name}.png").is_file()]
    if shown:
        parts.append("<h2>Main figures</h2>")
        parts += [f"<figure>{_img(p)}<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in shown]
    data_rows = {k: v for k, v in cat.items() if isinstance(v, (int, float, str)) and k != "synthetic"}
    data_rows.update(cat.get("summary", {}))
    if data_rows:
        parts += ["<h2>Data</h2>", pd.Series(data_rows, name="value").astype(str).to_frame().to_html(escape=True)]
        sliced = any((run.get("parameters") or {}).get(k) for k in ("max_users", "max_items"))
        if cat.get("notes"):
            parts.append("<p>Checks when the catalogue was read" + (
                " (the whole catalogue: they count rows before the slice summarised above)" if sliced else "") + ":</p>")
        parts += [f"<p>{html.escape(str(n))}</p>" for n in cat.get("notes", [])]
    if run.get("parameters"):
        params = {k: json.dumps(v) for k, v in run["parameters"].items()}
        parts += ["<h2>Parameters</h2>", pd.Series(params, name="value").to_frame().to_html(escape=True)]
    env = {**{k: v for k, v in run.get("versions", {}).items()}, **{f"hardware: {k}": v for k, v in _hardware().items()}}
    parts += ["<h2>Versions and hardware</h2>", pd.Series(env, name="value").astype(str).to_frame().to_html(escape=True)]
    parts.append("</body></html>")
    path = reports / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
