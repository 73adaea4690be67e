"""The run's front page: ``<out>/reports/index.html``, one self-contained page to share.

It opens with the answer (:mod:`visrec_utils.reports.answer`: the catalogue, dates, test
customers and a few generated sentences with a glossary), then the key table grouped by kind
(ImageNet models by top-1, layer variants, controls, baselines) in words and at three
significant figures, the main figures with sentence captions (embedded, so the page can be
mailed with the reports folder), links to every notebook's shared HTML (and its with-code
variant), and, folded, the data checks, parameters, library versions, hardware and the wall time
of each notebook. :func:`write_index` is called by :func:`visrec_utils.pipeline.runner.run_study` after
every notebook (marked "in progress", with the notebooks still to run, until the last one) and
can be called again on any output folder, finished or not: what is not there yet is left out.

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
from ..evaluation import stats
from . import answer as answer_mod
from . import captions, hover_map, labels

#: The page's template, package data in ``visrec_utils/reports/templates/``.
TEMPLATE = "index.html.j2"

#: Figures shown on the page, in order, when the run wrote them (others stay in ``figures/``).
MAIN_FIGURES = ("models_ndcg20", "metric_bars_auc", "imagenet_vs_ndcg20", "measured_top1_vs_ndcg20", "finetune_auc",
                "layers_ndcg20", "slices_ndcg20", "model_pareto", "ranking_agreement", "gallery", "explanations", "neighbours",
                "umap", "data_overview")

#: The model card's columns on the page, with their headings (``results/model_card.csv`` has more).
CARD_SHOWN = {"model": "model", "published_top1": "published top-1 (%)", "measured_top1": "measured top-1 (%)",
              "params_m": "parameters (M)", "gflops": "GFLOPs", "input_size": "input (px)", "dim": "dimension",
              "pretrain_data": "pretraining data", "extract_images_per_s": "images/s",
              "extract_peak_rss_gib": "peak memory (GiB)"}


def scorecard_html(out_dir) -> Markup | None:
    """``results/scorecard.csv`` (claim, verdict, evidence) as an escaped HTML table, or None."""
    path = StudyLayout(out_dir).result("scorecard")
    if not path.is_file():
        return None
    card = pd.read_csv(path, keep_default_na=False)
    shown = card.reindex(columns=["claim", "verdict", "evidence", "reason"]).fillna("")
    shown["evidence"] = [e if not r else f"{e} {r}".strip() for e, r in zip(shown["evidence"], shown["reason"])]
    return Markup(shown.drop(columns="reason").to_html(index=False, escape=True))


def model_card_html(out_dir) -> Markup | None:
    """``results/model_card.csv`` as an escaped HTML table: :data:`CARD_SHOWN` and AUC and
    nDCG@20 with their 95% intervals, three significant figures (a column with no value in any
    row is left out); None when there is none."""
    path = StudyLayout(out_dir).result("model_card")
    if not path.is_file():
        return None
    card = pd.read_csv(path)
    if card.empty:
        return None
    shown = pd.DataFrame({head: card[col].map(lambda v: "" if pd.isna(v) else v if isinstance(v, str) else labels.sig3(v))
                          for col, head in CARD_SHOWN.items() if col in card and card[col].notna().any()})
    for lab, head in (("auc", "AUC [95% interval]"), ("ndcg@20", "nDCG@20 [95% interval]")):
        if lab in card:
            shown[head] = [labels.with_interval(v, lo, hi) if pd.notna(v) else ""
                           for v, lo, hi in zip(card[lab], card[f"{lab}_low"], card[f"{lab}_high"])]
    return Markup(shown.to_html(index=False, escape=True))

#: Columns of the key table (:func:`key_table`).
KEY_COLUMNS = ["group", "model", "configuration", "published top-1 (%)", "measured top-1 (%)", "AUC [95% interval]",
               "nDCG@20 [95% interval]", "HitRate@20", "AUC against the reference"]


def _metric(g: pd.DataFrame, metric: str, k: int) -> pd.Series | None:
    r = g[(g["metric"] == metric) & (g["k"].fillna(0).astype(int) == k)]
    return r.iloc[0] if len(r) else None


def _kinds(out_dir: Path, models: pd.DataFrame) -> dict:
    """``{model: kind}`` (:func:`visrec_utils.reports.labels.kind_of`): layer variants from the
    embedding-set manifest, controls from ``models.csv``'s family column."""
    from ..features.embedding_sets import layer_variants, read_manifest

    try:
        variants = layer_variants(read_manifest(out_dir))
    except (OSError, ValueError, KeyError):
        variants = {}
    names = models["model"].astype(str) if "model" in models else pd.Series(dtype=str)
    family = models["family"].astype(str) if "family" in models else pd.Series("", index=names.index)
    controls = set(names[family == "control"]) | {m for m in names if m.startswith("random_")}
    return {"variants": variants, "controls": controls}


#: Recommenders whose rows the key table shows under each model next to the main recommender's
#: (:func:`key_table`): VBPR, the visual collaborative-filtering model.
KEY_ALSO = ("vbpr",)


def key_table(out_dir: Path, strategy: str = "frozen", recommender: str = "visrank_max",
              also=KEY_ALSO) -> pd.DataFrame:
    """The page's key table: one row per model's frozen VisRank-max (and VBPR, ``also``: each
    model's row of it follows, labelled "<model>, VBPR") and per non-visual baseline.

    Rows are grouped (:data:`visrec_utils.reports.labels.KINDS`: ImageNet models by published
    top-1, highest first, then layer variants, controls, baselines) and labelled in words; values
    at three significant figures with their 95% intervals (``results/metrics.csv``), published
    and measured top-1 in percent (``results/models.csv``), and the AUC verdict against the
    reference with its reason (``results/paired_vs_reference.csv``, Holm within the primary
    family; :func:`visrec_utils.evaluation.stats.holm`).

    Returns:
        DataFrame with :data:`KEY_COLUMNS` (empty when the run has no ``metrics.csv`` rows).
    """
    layout = StudyLayout(out_dir)
    if not layout.result("metrics").is_file():
        return pd.DataFrame(columns=KEY_COLUMNS)
    m = pd.read_csv(layout.result("metrics"))
    models = pd.read_csv(layout.result("models")) if layout.result("models").is_file() else pd.DataFrame()
    kinds = _kinds(Path(out_dir), models)
    top1 = models.set_index("model") if "model" in models else pd.DataFrame()
    paired = pd.read_csv(layout.result("paired_vs_reference")) if layout.result("paired_vs_reference").is_file() \
        else pd.DataFrame()
    if len(paired) and "family" not in paired:  # a run from before the primary family: judged now
        paired = stats.holm(paired)
    shown_recs = [recommender, *[r for r in also if r != recommender]]
    sel = m[((m["strategy"] == strategy) & m["recommender"].isin(shown_recs)) | (m["model"] == "-")]
    rows = []
    for (model, strat, rec), g in sel.groupby(["model", "strategy", "recommender"], sort=False):
        auc, nd, hit = _metric(g, "auc", 0), _metric(g, "ndcg", 20), _metric(g, "hitrate", 20)
        row = {"group": labels.kind_of(model, kinds["variants"], kinds["controls"]), "model": model,
               "configuration": labels.config_label(model, strat, rec) if model == "-" else labels.model_label(model)
               + ("" if rec == recommender else f", {labels.recommender_label(rec)}"),
               "AUC [95% interval]": "" if auc is None else labels.with_interval(auc.value, auc.ci_low, auc.ci_high),
               "nDCG@20 [95% interval]": "" if nd is None else labels.with_interval(nd.value, nd.ci_low, nd.ci_high),
               "HitRate@20": "" if hit is None else labels.sig3(hit.value), "AUC against the reference": "",
               "_top1": float("nan"), "_rec": shown_recs.index(rec) if rec in shown_recs else 0}
        if model in top1.index and row["group"] != "layer variant":  # a variant's top-1 is its backbone's
            for col, name in (("published_top1", "published top-1 (%)"), ("measured_top1", "measured top-1 (%)")):
                row[name] = labels.sig3(top1.loc[model, col]) if col in top1 else ""
            row["_top1"] = top1.loc[model, "published_top1"] if "published_top1" in top1 else float("nan")
        if len(paired):
            v = paired[(paired["model"] == model) & (paired["strategy"] == strat) & (paired["recommender"] == rec)
                       & (paired["metric"] == "auc")]
            if len(v):
                v = v.iloc[0]
                row["AUC against the reference"] = f"{v.verdict} ({labels.signed3(v.mean_diff)})"
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:  # the main evaluation was skipped (see "Skipped parts")
        return pd.DataFrame(columns=KEY_COLUMNS)
    table["_kind"] = table["group"].map({k: i for i, k in enumerate(labels.KINDS)})
    table["_top1"] = pd.to_numeric(table["_top1"], errors="coerce")
    table = table.sort_values(["_kind", "_top1", "model", "_rec"], ascending=[True, False, True, True],
                              na_position="last", kind="stable")
    return table.reindex(columns=KEY_COLUMNS).fillna("").reset_index(drop=True)


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


def _groups(table: pd.DataFrame) -> list[dict]:
    """The key table as ``[{"name": group, "rows": [{column: text}]}]`` in :data:`labels.KINDS` order."""
    shown = [c for c in KEY_COLUMNS if c not in ("group", "model") and (table[c] != "").any()] if len(table) else []
    return [{"name": name, "columns": shown, "rows": g[shown].to_dict("records")}
            for name, g in table.groupby("group", sort=False)] if len(table) else []


def index_context(out_dir: str | Path, pending=()) -> dict:
    """What the index page shows, read from the run's outputs (see :func:`write_index`).

    The answer box comes first (:func:`visrec_utils.reports.answer.study_answer`), then the key
    table grouped by kind, the main figures with sentence captions
    (:func:`visrec_utils.reports.captions.caption`), the notebooks (shared HTML without code, and
    the with-code variant in ``reports/with_code/`` when there; the UMAP maps interactive:
    :func:`visrec_utils.reports.hover_map.hover_map_html`), skipped parts, and, folded, the
    data checks, parameters and versions. Tables are HTML already escaped by pandas (``Markup``);
    every other value is plain text that the template escapes. Writes ``results/skipped.csv``
    (:func:`skipped_parts`) and ``results/answer.md``.

    ``pending``: the notebooks of a study still running that have not run yet (names such as
    ``"03_fine_tuning"``): the page then says "Study in progress: D of T notebooks done" (D the
    notebooks of ``run.json`` not pending, T = D + len(pending)), and lists the pending ones as
    not run yet, without a link (a page from an earlier run may still be on disk). When
    ``run.json`` names a ``failed`` notebook (:func:`visrec_utils.pipeline.runner.run_study`), the
    page says instead that the study stopped there, and marks that notebook failed (its page
    shows the cells up to the error), whatever ran by hand after it.
    """
    out_dir = Path(out_dir)
    layout = StudyLayout(out_dir)
    reports = layout.reports
    run = read_json(layout.result("run"), {})
    cat = read_json(layout.data / "catalogue.json", {})
    runs = run.get("notebooks", [])
    pending = [str(n) for n in pending]
    timings = {r["notebook"]: (r.get("seconds"), r.get("reused", False)) for r in runs}
    failed = run.get("failed") if isinstance(run.get("failed"), str) else None
    notebooks = [{"href": nb.name, "name": nb.stem, "seconds": timings.get(nb.stem, (None, False))[0],
                  "reused": timings.get(nb.stem, (None, False))[1], "pending": False, "failed": nb.stem == failed,
                  "code_href": f"with_code/{nb.name}" if (reports / "with_code" / nb.name).is_file() else None}
                 for nb in sorted(reports.glob("[0-9][0-9]_*.html")) if nb.stem not in pending]
    notebooks += [{"href": None, "name": n, "seconds": None, "reused": False, "pending": True, "failed": False,
                   "code_href": None} for n in pending]
    n_done = sum(1 for r in runs if r.get("notebook") not in pending and not r.get("failed"))
    params = run.get("parameters") or {}
    main = (params.get("strategy") or "frozen", params.get("recommender") or "visrank_max")
    table = key_table(out_dir, *main)
    answer = answer_mod.study_answer(out_dir)
    atomic_write(layout.result("answer"), lambda tmp: Path(tmp).write_text(answer.markdown(), encoding="utf-8"))
    skipped = skipped_parts(out_dir)
    atomic_write(layout.result("skipped"), lambda tmp: skipped.to_csv(tmp, index=False))
    figures = layout.figures
    shown = [figures / f"{name}.png" for name in MAIN_FIGURES if (figures / f"{name}.png").is_file()]
    n_imagenet = int((table["group"] == "ImageNet model").sum()) if len(table) else 0
    data_rows = {k: v for k, v in cat.items() if isinstance(v, (int, float, str)) and k != "synthetic"}
    data_rows.update(cat.get("summary", {}))
    env = {**run.get("versions", {}), **{f"hardware: {k}": v for k, v in _hardware().items()}}
    return {
        "synthetic": bool(cat.get("synthetic")), "notebooks": notebooks,
        "in_progress": {"done": n_done, "total": n_done + len(pending)} if pending and not failed else None,
        "failed": failed,
        "answer": answer,
        "scorecard_table": scorecard_html(out_dir),
        "model_card_table": model_card_html(out_dir),
        "readings": [t for t in (read_json(layout.result("readings"), {}) or {}).values() if t],
        "total_seconds": run.get("total_seconds"), "started": str(run.get("started")),
        "reused": sum(bool(r.get("reused")) for r in runs), "n_notebooks": len(runs),
        "key_groups": _groups(table),
        "main_config": labels.config_label("", *main),
        "reference": labels.config_label(*stats.parse_config(params.get("reference") or "-/-/random")),
        "correlation_note": (f"This run has {n_imagenet} ImageNet model{'s' * (n_imagenet != 1)}: a correlation "
                             "between top-1 and recommendation quality needs at least 3, so it is not drawn."
                             if len(table) and n_imagenet < 3 else ""),
        "skipped_table": Markup(skipped.to_html(index=False, escape=True)) if len(skipped) else None,
        "figures": [{"data": base64.b64encode(p.read_bytes()).decode(), "caption": captions.caption(p.stem),
                     "file": p.name, "interactive": hover_map.hover_map_html(out_dir) if p.stem == "umap" else None}
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


def write_index(out_dir: str | Path, pending=()) -> Path:
    """Write ``<out>/reports/index.html`` from the run's outputs and return its path.

    Reads ``results/run.json`` (parameters, versions, timings), ``results/models.csv``,
    ``results/metrics.csv``, ``results/skipped/*.csv``, ``data/catalogue.json`` and
    ``figures/*.png``; parts that a run did not produce are left out, never an error. Writes
    ``results/skipped.csv`` (every notebook's skipped parts, :func:`skipped_parts`). The page is
    rendered from the template ``templates/index.html.j2`` (:func:`render_index`), written atomically.
    ``pending``: the notebooks still to run while a study runs; the page is then marked "in
    progress" (:func:`index_context`); the runner's last write has none.
    """
    out_dir = Path(out_dir)
    StudyLayout(out_dir).reports.mkdir(parents=True, exist_ok=True)
    page = render_index(index_context(out_dir, pending))
    path = StudyLayout(out_dir).reports / "index.html"
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path
