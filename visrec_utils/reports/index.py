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
import json
import os
import platform
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from ..core.layout import StudyLayout
from ..core.skips import skipped_parts
from ..core.store import atomic_write, read_json

#: The page's template, package data in ``visrec_utils/reports/templates/``.
TEMPLATE = "index.html.j2"

#: Figures shown on the page, in order, when the run wrote them (others stay in ``figures/``).
MAIN_FIGURES = ("imagenet_vs_ndcg20", "measured_top1_vs_ndcg20", "models_ndcg20", "finetune_auc", "layers_ndcg20",
                "gallery", "neighbours", "umap", "data_overview")



def _fmt(v, lo, hi) -> str:
    return "" if pd.isna(v) else f"{v:.4f}" + ("" if pd.isna(lo) else f" [{lo:.4f}, {hi:.4f}]")


def key_table(out_dir: Path) -> pd.DataFrame:
    """Model, published and measured top-1, AUC and nDCG@20 with intervals, for the frozen
    VisRank-max of every model and every baseline (from ``results/metrics.csv``)."""
    layout = StudyLayout(out_dir)
    if not layout.result("metrics").is_file():
        return pd.DataFrame()
    m = pd.read_csv(layout.result("metrics"))
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
    if layout.result("models").is_file():
        models = pd.read_csv(layout.result("models"))[["model", "published_top1", "measured_top1"]]
        table = table.merge(models.rename(columns={"published_top1": "published top-1",
                                                   "measured_top1": "measured top-1"}), on="model", how="left")
        table = table[["model", "published top-1", "measured top-1", "AUC [95% CI]", "nDCG@20 [95% CI]"]]
    return table


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


def _table(values: dict, name: str = "value") -> Markup:
    """A one-column table of ``values`` as pandas writes it (cells escaped by pandas)."""
    return Markup(pd.Series(values, name=name).astype(str).to_frame().to_html(escape=True))


def index_context(out_dir: str | Path) -> dict:
    """What the index page shows, read from the run's outputs (see :func:`write_index`).

    Tables are HTML already escaped by pandas (``Markup``); every other value is plain text that
    the template escapes. Writes ``results/skipped.csv`` (:func:`skipped_parts`).
    """
    out_dir = Path(out_dir)
    layout = StudyLayout(out_dir)
    reports = layout.reports
    run = read_json(layout.result("run"), {})
    cat = read_json(layout.data / "catalogue.json", {})
    runs = run.get("notebooks", [])
    timings = {r["notebook"]: (r.get("seconds"), r.get("reused", False)) for r in runs}
    notebooks = [{"href": nb.name, "name": nb.stem, "seconds": timings.get(nb.stem, (None, False))[0],
                  "reused": timings.get(nb.stem, (None, False))[1]}
                 for nb in sorted(reports.glob("[0-9][0-9]_*.html"))]
    table = key_table(out_dir)
    skipped = skipped_parts(out_dir)
    atomic_write(layout.result("skipped"), lambda tmp: skipped.to_csv(tmp, index=False))
    figures = layout.figures
    shown = [figures / f"{name}.png" for name in MAIN_FIGURES if (figures / f"{name}.png").is_file()]
    data_rows = {k: v for k, v in cat.items() if isinstance(v, (int, float, str)) and k != "synthetic"}
    data_rows.update(cat.get("summary", {}))
    params = run.get("parameters") or {}
    env = {**run.get("versions", {}), **{f"hardware: {k}": v for k, v in _hardware().items()}}
    return {
        "synthetic": bool(cat.get("synthetic")), "notebooks": notebooks,
        "total_seconds": run.get("total_seconds"), "started": str(run.get("started")),
        "reused": sum(bool(r.get("reused")) for r in runs), "n_notebooks": len(runs),
        "key_table": Markup(table.to_html(index=False, na_rep="", escape=True)) if len(table) else None,
        "skipped_table": Markup(skipped.to_html(index=False, escape=True)) if len(skipped) else None,
        "figures": [{"data": base64.b64encode(p.read_bytes()).decode(), "alt": p.stem, "caption": p.name}
                    for p in shown],
        "data_table": _table(data_rows) if data_rows else None,
        "notes": [str(n) for n in cat.get("notes", [])],
        "sliced": any(params.get(k) for k in ("max_users", "max_items")),
        "parameters_table": _table({k: json.dumps(v) for k, v in params.items()}) if params else None,
        "versions_table": _table(env),
    }


def render_index(context: dict) -> str:
    """The page's HTML from :func:`index_context`'s dict, through the package template
    ``visrec_utils/reports/templates/index.html.j2`` (Jinja2, autoescape on)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("visrec_utils.reports", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE).render(**context)


def write_index(out_dir: str | Path) -> Path:
    """Write ``<out>/reports/index.html`` from the run's outputs and return its path.

    Reads ``results/run.json`` (parameters, versions, timings), ``results/models.csv``,
    ``results/metrics.csv``, ``results/skipped/*.csv``, ``data/catalogue.json`` and
    ``figures/*.png``; parts that a run did not produce are left out, never an error. Writes
    ``results/skipped.csv`` (every notebook's skipped parts, :func:`skipped_parts`). The page is
    rendered from the template ``templates/index.html.j2`` (:func:`render_index`), written atomically.
    """
    out_dir = Path(out_dir)
    StudyLayout(out_dir).reports.mkdir(parents=True, exist_ok=True)
    page = render_index(index_context(out_dir))
    path = StudyLayout(out_dir).reports / "index.html"
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path
