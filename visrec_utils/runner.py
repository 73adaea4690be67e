"""Run the numbered notebooks headlessly with papermill and render them to HTML (nbconvert).

``run_study`` executes ``notebooks/01_*.ipynb`` .. ``05_*.ipynb`` in order. Each notebook gets
only the parameters its ``parameters`` cell declares; a parameter no notebook declares is an
error (papermill itself only warns). Outputs: ``<out>/reports/NN_name.ipynb`` (executed) and
``.html``, ``<out>/figures``, ``<out>/results`` and ``<out>/results/run.json`` (parameters,
library versions, git commit, wall time per notebook).
"""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = [
    "01_data_prep",
    "02_embedding_extraction",
    "03_fine_tuning",
    "04_recommendation_eval",
    "05_imagenet_vs_transfer",
]


class StudyError(RuntimeError):
    """A notebook failed; the message names the executed notebook that shows the error."""


def notebook_parameters(name: str) -> dict:
    """Parameters declared in a notebook's ``parameters`` cell (papermill.inspect_notebook)."""
    import papermill

    return papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))


def versions() -> dict:
    """Versions of Python and the libraries that change results, and the git commit."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine()}
    for pkg in ("torch", "torchvision", "timm", "openvino", "numpy", "pandas", "scipy", "numba", "implicit",
                "pillow", "umap-learn", "papermill", "ray", "faiss-cpu"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=NOTEBOOK_DIR.parent, capture_output=True,
            text=True, check=True).stdout.strip()
    except Exception:
        out["git_commit"] = None
    return out


#: Cells tagged so are shown without their code in the HTML reports (imports and set-up).
HIDE_INPUT_TAGS = {"remove_input"}


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


def run_notebook(name: str, params: dict, out_dir: Path, log_output: bool = False) -> dict:
    """Execute one notebook with the parameters it declares; return its timing record.

    Raises:
        StudyError: the notebook raised; the executed copy with the traceback is kept.
    """
    import papermill

    declared = notebook_parameters(name)
    mine = {k: v for k, v in params.items() if k in declared}
    reports = out_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    out_nb = reports / f"{name}.ipynb"
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(out_nb), parameters=mine,
                                   kernel_name="python3", progress_bar=False, log_output=log_output,
                                   cwd=str(NOTEBOOK_DIR))
    except papermill.PapermillExecutionError as e:
        to_html(out_nb)
        raise StudyError(f"notebook {name} failed: {e.ename}: {e.evalue}. The executed notebook with the "
                         f"traceback is {out_nb} (and .html).") from e
    seconds = time.perf_counter() - t0
    to_html(out_nb)
    return {"notebook": name, "seconds": round(seconds, 1), "parameters": mine}


def run_study(params: dict, out_dir: str | Path, notebooks=NOTEBOOKS, figures_to: str | Path | None = None,
              log_output: bool = False) -> dict:
    """Run the notebooks in order.

    Args:
        params: parameter values by name (e.g. ``data_dir, models, max_users, max_items, seed,
            cache_dir``); ``out_dir`` is added.
        out_dir: output folder.
        notebooks: which notebooks to run (default all, in order).
        figures_to: also copy ``<out>/figures/*.png`` there (the repository's ``figures/``).

    Returns:
        The run record written to ``<out>/results/run.json``.

    Raises:
        ValueError: a parameter that no notebook declares (lists the valid ones).
        StudyError: a notebook failed.
    """
    out_dir = Path(out_dir).resolve()
    params = {**params, "out_dir": str(out_dir)}
    declared = set()
    for nb in notebooks:
        declared |= set(notebook_parameters(nb))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown}; the notebooks declare {sorted(declared)}")
    if params.get("models"):
        from .models import expand_presets, get_spec

        params["models"] = expand_presets(params["models"])
        for name in params["models"]:  # unknown names fail now, not after notebook 01
            get_spec(name)
    record = {"parameters": params, "versions": versions(), "notebooks": [],
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    for nb in notebooks:
        print(f"[visrec] running {nb} ...", flush=True)
        rec = run_notebook(nb, params, out_dir, log_output=log_output)
        print(f"[visrec] {nb} done in {rec['seconds']:.0f} s", flush=True)
        record["notebooks"].append(rec)
        if nb == "02_embedding_extraction":
            _report_models(out_dir)
    record["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    (out_dir / "results" / "run.json").write_text(json.dumps(record, indent=2, default=str))
    from .report import write_index

    print(f"[visrec] report index: {write_index(out_dir)}", flush=True)
    synthetic = json.loads((out_dir / "data" / "catalogue.json").read_text()).get("synthetic", False) \
        if (out_dir / "data" / "catalogue.json").is_file() else False
    if figures_to and synthetic:
        print(f"[visrec] not copying figures to {figures_to}: this run used the SYNTHETIC demo catalogue", flush=True)
    elif figures_to:
        dest = Path(figures_to)
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted((out_dir / "figures").glob("*.png")):
            shutil.copy2(png, dest / png.name)
    return record


def _report_models(out_dir: Path) -> None:
    """Print skipped models after extraction; stop when no model produced embeddings.

    Raises:
        StudyError: no model has embeddings (every one was skipped), naming the reasons.
    """
    import pandas as pd

    path = out_dir / "results" / "models.csv"
    if not path.is_file():
        return
    table = pd.read_csv(path, keep_default_na=False)
    for r in table[table["status"] == "skipped"].itertuples():
        print(f"[visrec] skipped model {r.model}: {r.reason}", flush=True)
    if not table["status"].isin(["ok", "precomputed"]).any():
        raise StudyError(f"no model produced embeddings ({path}); see the reasons above. Offline, use "
                         "the registered models (python -m visrec_utils study --help).")


# The slice the regression baseline is computed on (tests/baselines/); change it only together
# with a refreshed baseline.
SLICE_PARAMS = {"max_users": 60, "max_items": 1500, "models": ["mobilenetv1_025_keras"], "seed": 0,
                "stage_models": ["mobilenetv1_025_keras"], "max_steps": 24, "contrastive_images": 200}
BASELINE_FILE = NOTEBOOK_DIR.parent / "tests" / "baselines" / "slice_metrics.csv"
BASELINE_ATOL = 2e-3
_KEY = ["model", "strategy", "recommender", "metric", "k"]


def compare_to_baseline(metrics, baseline, atol: float = BASELINE_ATOL):
    """Rows of ``metrics`` that differ from ``baseline`` (both tidy metrics tables).

    A row differs when it is missing on either side, its ``n_users`` differs, or ``value``,
    ``ci_low`` or ``ci_high`` differ by more than ``atol`` (absolute).

    Returns:
        DataFrame of differing rows with both sides' values (empty when equal).
    """
    import numpy as np

    m = metrics.merge(baseline, on=_KEY, how="outer", suffixes=("", "_baseline"), indicator=True)
    bad = m["_merge"] != "both"
    for c in ("value", "ci_low", "ci_high"):
        a, b = m[c].to_numpy(float), m[f"{c}_baseline"].to_numpy(float)
        bad |= ~(np.isclose(a, b, rtol=0, atol=atol) | (np.isnan(a) & np.isnan(b)))
    bad |= m["n_users"] != m["n_users_baseline"]
    return m[bad]


def refresh_baseline(out_dir: str | Path, cache_dir: str | Path | None = None, data_dir=None) -> Path:
    """Run the slice study and overwrite the stored regression baseline (explicit, never automatic)."""
    import pandas as pd

    params = dict(SLICE_PARAMS)
    if cache_dir:
        params["cache_dir"] = str(cache_dir)
    if data_dir:
        params["data_dir"] = str(data_dir)
    run_study(params, out_dir)
    metrics = pd.read_csv(Path(out_dir) / "results" / "metrics.csv")
    BASELINE_FILE.parent.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(BASELINE_FILE, index=False)
    return BASELINE_FILE
