"""Run the numbered notebooks headlessly with papermill and render them to HTML (nbconvert).

``run_study`` executes ``notebooks/01_*.ipynb`` .. ``06_*.ipynb`` in order. Each notebook gets
only the parameters its ``parameters`` cell declares; a parameter no notebook declares is an
error (papermill itself only warns). Outputs: ``<out>/reports/NN_name.ipynb`` (executed) and
``.html``, ``<out>/figures``, ``<out>/results`` and ``<out>/results/run.json`` (parameters,
library versions, git commit, wall time per notebook, and the keys that let a rerun skip the
notebooks whose inputs did not change).

What a person sees while it runs (without ``--log-output``): per notebook, one live tqdm line on
stderr, then the summary ``[visrec] NN_name done in X s (peak memory Y GiB)``. The line comes
from the kernel through a file, the simplest channel that works in papermill's batch runs: the
runner sets ``VISREC_PROGRESS_FILE`` in the kernel's environment; the notebook's
:func:`visrec_utils.pipeline.notebook.setup` then starts a thread in the kernel that writes the
kernel's live tqdm bars (description, count, total, unit, elapsed: the stage code keeps using
tqdm as anywhere) to ``reports/logs/NN_name.progress.json`` twice a second; the runner reads it
and draws the newest bar as one tqdm line, with which model or strategy it is (e.g. ``model
3/11``, from the parameters), items done, rate and time left
(:class:`visrec_utils.pipeline.progress.ProgressLine`). JupyterLab runs never set the variable,
so their bars show in the notebook as before. Start-up lines of Jupyter and Ray
(:data:`visrec_utils.pipeline.progress.NOISE`) are kept out of the terminal and the reports.
``reports/index.html`` is rewritten after every notebook, marked "in progress" until the last one,
so the first results can be opened while the rest runs.
"""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

from ..core.layout import StudyLayout
from ..core.log import get_logger
from ..core.store import content_key, file_sha256, read_json, write_json
from .execution import (NOTEBOOK_DIR, StudyError, StudyInterrupted,  # noqa: F401 (re-exported)
                        notebook_parameters, run_notebook, to_html)

_log = get_logger(__name__)

#: The notebooks in order, one per stage (:data:`visrec_utils.pipeline.stages.STAGES`).
NOTEBOOKS = [
    "01_data_prep",
    "02_embedding_extraction",
    "03_fine_tuning",
    "04_recommendation_eval",
    "05_imagenet_vs_transfer",
    "06_explorer",
]
#: The repository's own figures (shown by the README); refreshed from the H&M sample only.
REPO_FIGURES = NOTEBOOK_DIR.parent / "figures"


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


def _type_ok(value, declared: str) -> bool | None:
    """Whether ``value`` fits a parameter cell's annotation (``int``, ``Optional[list]``,
    ``Union[int, dict]``, ...);
    None for annotations this check does not know."""
    if declared.startswith("Optional[") and declared.endswith("]"):
        return True if value is None else _type_ok(value, declared[9:-1])
    if declared.startswith("Union[") and declared.endswith("]"):
        fits = [_type_ok(value, part.strip()) for part in declared[6:-1].split(",")]
        return True if True in fits else (None if None in fits else False)
    checks = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
              "list": lambda v: isinstance(v, (list, tuple)), "dict": lambda v: isinstance(v, dict)}
    return checks[declared](value) if declared in checks else None


def check_parameters(params: dict, notebooks=None) -> None:
    """Check parameter names and value types against the notebooks' ``parameters`` cells.

    Raises:
        ValueError: a name no notebook declares (lists the valid ones), or a value whose type
            differs from the cell's annotation (names the notebook, the type and the help text).
    """
    declared = {}
    for nb in NOTEBOOKS if notebooks is None else notebooks:
        for name, spec in notebook_parameters(nb).items():
            declared.setdefault(name, (nb, spec))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        import difflib

        hints = [f"{u} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(u, declared, 1)) else u
                 for u in unknown]
        raise ValueError(f"Unknown parameter(s) {', '.join(hints)}; the notebooks declare {sorted(declared)}")
    for name, value in params.items():
        nb, spec = declared[name]
        kind = str(spec.get("inferred_type_name") or "")
        if _type_ok(value, kind) is False:
            raise ValueError(f"parameter {name}={value!r} must be {kind} (notebook {nb}: {spec.get('help') or ''}; "
                             f"default {spec.get('default')})")


def _sha(*parts) -> str:
    return content_key(*parts, length=64)


def _code_digest() -> str:
    """Digest of the ``visrec_utils`` sources: a code change reruns every notebook."""
    return _sha(*(f.read_bytes() for f in sorted(Path(__file__).resolve().parents[1].rglob("*.py"))))


def notebook_digest(path: str | Path) -> str:
    """Digest of what a notebook does: each cell's type and source, in order. Outputs, execution
    counts and metadata are left out, so a notebook run by hand in JupyterLab and saved with its
    outputs keeps its key (its outputs on disk decide: :func:`_reusable`); an edited cell changes it."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return _sha([(c.cell_type, c.source) for c in nb.cells])


def _data_digest(data_dir) -> str:
    """Digest of a catalogue folder from each file's path, size and modification time (the
    images are many; their content is hashed by the embedding cache)."""
    if not data_dir or data_dir == "demo" or not Path(data_dir).is_dir():
        return _sha(str(data_dir))
    root = Path(data_dir)
    rows = sorted((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                  for f in root.rglob("*") if f.is_file())
    return _sha(str(root.resolve()), rows)


def stage_outputs(notebook: str, out_dir: Path) -> list[str]:
    """The files a notebook's stage wrote for later stages, relative to ``out_dir``, sorted: the
    stage's declared output patterns (:attr:`visrec_utils.pipeline.stages.Stage.outputs`) and,
    for ``extract`` and ``tune``, the embedding sets whose manifest rows say they wrote them
    (frozen, or fine-tuned), with their item lists. Declared, never inferred from file times.
    A notebook that is not one of the study's stages (a user's own, run with ``notebooks=``)
    declares none."""
    from ..core.store import read_json
    from .stages import STAGES

    stage = next((s for s in STAGES if s.notebook == notebook), None)
    if stage is None:
        return []
    found = {str(f.relative_to(out_dir)) for pattern in stage.outputs for f in out_dir.glob(pattern) if f.is_file()}
    if stage.embedding_sets:
        for row_file in sorted((out_dir / "embeddings").glob("*.json")):
            row = read_json(row_file)
            if not isinstance(row, dict) or (row.get("strategy") == "frozen") != (stage.embedding_sets == "frozen"):
                continue
            found.add(str(row_file.relative_to(out_dir)))
            for name in (row.get("file"), row.get("items")):
                if name and (out_dir / "embeddings" / name).is_file():
                    found.add(f"embeddings/{name}")
    return sorted(found)


#: Columns of result tables that record how a run went, not what it found (wall times, cache
#: hits, the runtime used); a rerun changes them, so they do not make later notebooks rerun.
VOLATILE_COLUMNS = {"seconds", "images_per_s", "cache_hit", "fast_path", "extract_images_per_s",
                    "extract_peak_rss_gib", "extract_added_rss_gib", "extract_pass"}


def _outputs_digest(out_dir: Path, files) -> str | None:
    """Content digest of a notebook's output files (CSV tables without
    :data:`VOLATILE_COLUMNS` and ``*_seconds`` columns); None when one is missing."""
    import pandas as pd

    parts = []
    for rel in sorted(files):
        f = out_dir / rel
        if not f.is_file():
            return None
        if f.suffix == ".csv":
            try:
                table = pd.read_csv(f, keep_default_na=False, dtype=str)
                volatile = [c for c in table.columns if c in VOLATILE_COLUMNS or str(c).endswith("_seconds")]
                digest = content_key(table.drop(columns=volatile).to_csv(index=False).encode(), length=64)
            except (ValueError, pd.errors.ParserError):  # not a table: its bytes
                digest = file_sha256(f)
        else:
            digest = file_sha256(f)
        parts.append((rel, digest))
    return _sha(parts)


def _reusable(previous: dict | None, key: str, out_dir: Path) -> bool:
    """The previous run of a notebook has the same key, its reports exist and its outputs are
    unchanged on disk."""
    if not previous or previous.get("key") != key or "outputs" not in previous:
        return False
    reports = StudyLayout(out_dir).reports / f"{previous['notebook']}"
    if not (reports.with_suffix(".ipynb").is_file() and reports.with_suffix(".html").is_file()):
        return False
    return _outputs_digest(out_dir, previous["outputs"]) == previous.get("outputs_digest")


def run_study(params: dict, out_dir: str | Path, notebooks=None, figures_to: str | Path | None = None,
              log_output: bool = False, reuse: bool = True, repo_figures: bool = False,
              cell_timeout: float | None = None) -> dict:
    """Run the notebooks in order, rerunning only those whose inputs changed.

    A notebook's key is a digest of its cells' sources (:func:`notebook_digest`), the parameters
    it receives, the ``visrec_utils`` sources, the catalogue folder (path, sizes, times) and the
    content of every earlier notebook's declared output files (:func:`stage_outputs`). With ``reuse``, a notebook whose key
    equals the one recorded in ``<out>/results/run.json``, whose reports exist and whose own
    outputs are unchanged on disk is not run again: changing one parameter of notebook 05 reruns
    only 05; changing one of notebook 02 reruns 02, then 03-05 only where 02's outputs changed.
    Within a notebook, the content-keyed caches (embeddings, fine-tuning, evaluations) skip
    work whose inputs did not change. A notebook run by hand (JupyterLab) into the same output
    folder that changed a notebook's outputs makes the next run rerun that notebook (its outputs
    differ from the recorded digest) and every later one whose inputs then differ.

    Args:
        params: parameter values by name (e.g. ``data_dir, models, max_users, max_items, seed,
            cache_dir``); ``out_dir`` is added.
        out_dir: output folder.
        notebooks: which notebooks to run (default :data:`NOTEBOOKS`, in order).
        figures_to: also copy ``<out>/figures/*.png`` into this folder (the caller named it).
        reuse: False reruns every notebook.
        repo_figures: refresh the repository's ``figures/`` (:data:`REPO_FIGURES`), but only
            when the catalogue is the H&M sample (:func:`is_reference_sample`): a user's own
            catalogue (its product photos) never lands in the repository this way.
        cell_timeout: seconds one notebook cell may run (None: no limit).

    Returns:
        The run record written to ``<out>/results/run.json``; each notebook's entry has
        ``reused`` (True: not run this time; ``seconds`` is then its earlier run's) and
        ``peak_rss_mib`` (peak memory of its kernel and workers).

    Raises:
        ValueError: a parameter that no notebook declares, or of the wrong type
            (:func:`check_parameters`), or a study that could compute nothing at all
            (:func:`visrec_utils.pipeline.preflight.check_study`); nothing has run then.
        StudyError: a notebook failed (one line: the notebook, the likely cause, what to do);
            ``run.json`` then marks it failed, so the next run reruns it and reuses the others.
    """
    notebooks = list(NOTEBOOKS if notebooks is None else notebooks)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output folder {out_dir} (--out / out_dir) is a file; name a folder (it is created)")
    params = {**params, "out_dir": str(out_dir)}
    check_parameters(params, notebooks)
    if "ks" in params and 20 not in params["ks"]:
        _log.warning(f"warning: ks={params['ks']} has no 20: the index's nDCG@20 column and notebook 05's "
              "@20 correlations and figures will be empty")
    if params.get("models"):
        from ..features.feature_files import check_file_models, is_file_model, resolve_file_model
        from ..features.models import expand_presets, get_spec

        # a file: model's path is made absolute (the notebooks run in notebooks/) and its file checked now
        params["models"] = [resolve_file_model(n) if is_file_model(n) else n for n in expand_presets(params["models"])]
        check_file_models(params["models"])
        for name in params["models"]:  # unknown names fail now, not after notebook 01
            if not is_file_model(name):
                get_spec(name)
    check_registry_names(params)
    if "01_data_prep" in notebooks:  # the study starts here: stop now if it could compute nothing at all
        from .preflight import check_study

        for line in check_study(params):
            _log.warning(f"warning: {line}")
    run_json = StudyLayout(out_dir).result("run")
    try:
        before = {r["notebook"]: r for r in json.loads(run_json.read_text())["notebooks"]} if reuse else {}
    except (OSError, ValueError, KeyError, TypeError):
        before = {}
    record = {"parameters": params, "versions": versions(), "notebooks": [],
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    # the git commit is left out: a commit that changes no code or notebook (docs) reruns nothing
    libraries = {k: v for k, v in record["versions"].items() if k != "git_commit"}
    base = _sha(_code_digest(), libraries, _data_digest(params.get("data_dir")))
    upstream = []
    t0 = time.perf_counter()
    for nb in notebooks:
        declared = notebook_parameters(nb)
        mine = {k: v for k, v in params.items() if k in declared}
        where = {k: v for k, v in mine.items() if k != "out_dir"}  # a moved output folder is still valid
        if any(str(m).startswith("file:") for m in where.get("models") or ()):  # imported features: their bytes count
            from ..features.feature_files import file_model_digests

            where["models_files"] = file_model_digests(where["models"])
        key = _sha(base, notebook_digest(NOTEBOOK_DIR / f"{nb}.ipynb"), where, upstream)
        if _reusable(before.get(nb), key, out_dir):
            rec = {**before[nb], "reused": True}
            _log.info(f"{nb}: inputs unchanged, reusing its run of {rec['seconds']:.0f} s")
        else:
            _log.info(f"running {nb} ...")
            try:
                rec = run_notebook(nb, params, out_dir, log_output=log_output, timeout=cell_timeout)
                if nb == "02_embedding_extraction":
                    _report_models(out_dir)
            except BaseException:  # its reports now show the failure: the next run must not reuse them
                later = [before[n] for n in notebooks[notebooks.index(nb) + 1:] if n in before]
                failed = {**record, "failed": nb, "notebooks": [*record["notebooks"], {"notebook": nb, "failed": True},
                                                                *later]}
                _write_json(run_json, failed)
                _write_index_quietly(out_dir, notebooks[notebooks.index(nb) + 1:])  # the page says it stopped there
                raise
            rec["outputs"] = stage_outputs(nb, out_dir)
            rec["outputs_digest"] = _outputs_digest(out_dir, rec["outputs"])
            rec.update(key=key, reused=False)
            _log.info(f"{nb} done in {rec['seconds']:.0f} s (peak memory {rec.get('peak_rss_mib', 0) / 1024:.1f} GiB)")
        upstream.append(rec["outputs_digest"])
        record["notebooks"].append(rec)
        if nb != notebooks[-1]:
            _write_progress(out_dir, record, before, notebooks[notebooks.index(nb) + 1:])
    record["total_seconds"] = round(time.perf_counter() - t0, 1)
    _write_json(run_json, record)
    from ..reports.index import write_index

    _log.info(f"report index: {write_index(out_dir)}")
    _copy_figures(out_dir, params.get("data_dir"), figures_to, repo_figures)
    return record


def _write_progress(out_dir: Path, record: dict, before: dict, pending: list) -> None:
    """After a notebook, with ``pending`` ones still to run: ``run.json`` so far (the pending
    notebooks' earlier entries kept, as after a failure, so an interrupted run resumes where it
    stopped) and ``reports/index.html`` marked in progress (:func:`visrec_utils.reports.index.write_index`).
    A page that cannot be written now is logged, never a reason to stop the study."""
    _write_json(StudyLayout(out_dir).result("run"),
                {**record, "notebooks": [*record["notebooks"], *(before[n] for n in pending if n in before)]})
    _write_index_quietly(out_dir, pending)


def _write_index_quietly(out_dir: Path, pending: list) -> None:
    """``reports/index.html`` with ``pending`` notebooks not run yet (marked in progress, or
    stopped when ``run.json`` names a failed one); an error is logged, never raised, so it cannot
    stop a study or hide the failure being reported."""
    from ..reports.index import write_index

    try:
        write_index(out_dir, pending=pending)
    except Exception as e:  # noqa: BLE001 (the final index is written at the end; its errors do stop)
        _log.warning(f"warning: the report index was not rewritten ({type(e).__name__}: {e})")


def _write_json(path: Path, obj) -> None:
    """Write JSON atomically (a kill or a full disk never leaves half a run.json)."""
    write_json(path, obj, indent=2)


def check_registry_names(params: dict) -> None:
    """Check the names given for every registry axis before any notebook runs: fine-tuning
    ``strategies``, ``protocol`` and ``other_protocols``, ``recommenders`` and ``baselines``
    (a misspelt name would otherwise fail only when its notebook is reached).

    Raises:
        ValueError: ``parameter <name>: <the registry's message>`` (the choices and a close match).
    """
    from ..catalogue.protocols import get_protocol
    from ..evaluation.recommenders import create_recommender

    checks = {"recommenders": create_recommender, "baselines": create_recommender,
              "other_protocols": get_protocol, "protocol": get_protocol}
    if params.get("strategies"):
        from ..tuning.strategies import create_strategy

        checks["strategies"] = create_strategy
    for param, check in checks.items():
        value = params.get(param)
        for name in ([value] if isinstance(value, str) else value or []):
            try:
                check(name)
            except (ValueError, KeyError) as e:
                raise ValueError(f"parameter {param}: {e.args[0] if e.args else e}") from None


def is_reference_sample(data_dir) -> bool:
    """True when ``data_dir`` is the H&M sample the repository's figures come from
    (``../shared/data/hm_sample`` beside the repository or the working directory)."""
    if not data_dir or str(data_dir) == "demo" or not Path(data_dir).is_dir():
        return False
    here = Path(data_dir).resolve()
    candidates = (NOTEBOOK_DIR.parent.parent / "shared/data/hm_sample", Path.cwd().parent / "shared/data/hm_sample")
    return any(c.is_dir() and c.resolve() == here for c in candidates)


def _copy_figures(out_dir: Path, data_dir, figures_to, repo_figures: bool) -> None:
    """Copy ``<out>/figures/*.png`` to ``figures_to`` (named by the caller) and, for the H&M
    sample only, to the repository's ``figures/`` (see :func:`run_study`)."""
    synthetic = bool((read_json(StudyLayout(out_dir).data / "catalogue.json") or {}).get("synthetic", False))
    targets = [Path(figures_to)] if figures_to else []
    if repo_figures and is_reference_sample(data_dir):
        targets.append(REPO_FIGURES)
    elif repo_figures:
        _log.info(f"the repository's figures/ are left as they are: they are refreshed from the H&M sample "
              f"only, and this run's catalogue is {data_dir}. Its figures (galleries and contact sheets show its "
              f"product photos) stay in {out_dir / 'figures'}; --figures-to DIR copies them where you name.")
    for dest in targets:
        if synthetic:
            _log.info(f"not copying figures to {dest}: this run used the SYNTHETIC demo catalogue")
            continue
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted(StudyLayout(out_dir).figures.glob("*.png")):
            shutil.copy2(png, dest / png.name)
    if REPO_FIGURES in targets and not synthetic:
        refresh_repo_answer(out_dir, figures=REPO_FIGURES)


def refresh_repo_answer(out_dir: Path, readme: Path | None = None, figures: Path | None = None) -> None:
    """After a whole (unsliced) study on the H&M sample: write its generated answer into the
    results block of ``readme`` (:func:`visrec_utils.reports.answer.replace_block`; default: the
    ``README.md`` beside ``figures``, the repository's for :data:`REPO_FIGURES`) and, when Chromium
    is installed, pictures of the index's top (``figures/index_top.png``) and of notebook 05's
    shared page (``figures/notebook_05_top.png``). A slice's numbers, or a run without results,
    never replace the whole study's."""
    from ..reports import answer, screenshot

    figures = Path(figures or REPO_FIGURES)
    readme = Path(readme or figures.parent / "README.md")  # the README beside those figures
    if not readme.is_file():
        _log.info(f"no README at {readme}: its results block is not refreshed")
        return
    params = (read_json(StudyLayout(out_dir).result("run")) or {}).get("parameters", {})
    if any(params.get(k) for k in ("max_users", "max_items")):
        _log.info("the README's results are left as they are: they come from a whole study, and this run is a slice")
        return
    found = answer.study_answer(out_dir)
    if not found.sentences:
        _log.info("the README's results are left as they are: this run has no recommendation result to answer from")
        return
    block = found.markdown(glossary=False)
    readme.write_text(answer.replace_block(readme.read_text(encoding="utf-8"), block), encoding="utf-8")
    _log.info(f"README results refreshed from {out_dir}")
    if screenshot.find_chromium():
        reports = StudyLayout(out_dir).reports
        screenshot.screenshot(reports / "index.html", figures / "index_top.png", height=1100)
        if (reports / "05_imagenet_vs_transfer.html").is_file():
            screenshot.screenshot(reports / "05_imagenet_vs_transfer.html", figures / "notebook_05_top.png", height=1300)


def _report_models(out_dir: Path) -> None:
    """Print skipped models after extraction; stop when no model produced embeddings.

    Raises:
        StudyError: no model has embeddings (every one was skipped), naming the reasons.
    """
    import pandas as pd

    path = StudyLayout(out_dir).result("models")
    if not path.is_file():
        return
    table = pd.read_csv(path, keep_default_na=False)
    for r in table[table["status"] == "skipped"].itertuples():
        _log.info(f"skipped model {r.model}: {r.reason}")
    if not table["status"].isin(["ok", "precomputed"]).any():
        raise StudyError(f"no model produced embeddings ({path}); see the reasons above. Offline, use "
                         "the registered models (python -m visrec_utils study --help).")


# The slice the regression baseline is computed on (tests/baselines/); change it only together
# with a refreshed baseline.
SLICE_PARAMS = {"max_users": 60, "max_items": 1500, "models": ["mobilenetv1_025_keras"], "seed": 0,
                "stage_models": ["mobilenetv1_025_keras"], "max_steps": 24, "contrastive_images": 200}
#: ``python -m visrec_utils study --quick``: a slice that runs in minutes, to try the study end to end
#: (notebooks/README.md gives the same values for a notebook's parameters cell). Explicit
#: ``--models``, ``--max-users``, ``--max-items`` and ``-p`` values override these.
QUICK_PARAMS = {"max_users": 100, "models": ["offline"], "imagenet_limit": 200, "max_steps": 20, "bpr_steps": 40, "contrastive_images": 200, "n_resamples": 200, "umap_points": 500,
                "other_protocols": ["temporal"], "sensitivity": ["catalogue", "first_seen"]}
BASELINE_FILE = NOTEBOOK_DIR.parent / "tests" / "baselines" / "slice_metrics.csv"
BASELINE_ATOL = 2e-3
_KEY = ["model", "strategy", "recommender", "metric", "k"]


def compare_to_baseline(metrics, baseline, atol: float = BASELINE_ATOL):
    """Rows of ``metrics`` that differ from ``baseline`` (both tidy metrics tables).

    A row differs when it is missing on either side, its ``n_users`` differs, or ``value``,
    ``ci_low`` or ``ci_high`` differ by more than ``atol * max(1, |baseline|)``: absolute for the
    metrics in [0, 1], relative for those measured on a larger scale (novelty, in bits, is about 5
    on H&M). The stage-tuned strategies train a backbone for some steps and so amplify the
    float-level differences between CPUs' kernels (AVX-512 or not); 2e-3 absolute on a 5-bit
    novelty is ten times stricter than on AUC and failed on another CPU with moves of 2.5e-3.

    Returns:
        DataFrame of differing rows with both sides' values (empty when equal).
    """
    import numpy as np

    m = metrics.merge(baseline, on=_KEY, how="outer", suffixes=("", "_baseline"), indicator=True)
    bad = m["_merge"] != "both"
    for c in ("value", "ci_low", "ci_high"):
        a, b = m[c].to_numpy(float), m[f"{c}_baseline"].to_numpy(float)
        tol = atol * np.maximum(1.0, np.abs(np.nan_to_num(b)))
        bad |= ~((np.abs(a - b) <= tol) | (np.isnan(a) & np.isnan(b)))
    bad |= m["n_users"] != m["n_users_baseline"]
    return m[bad]


def refresh_baseline(out_dir: str | Path, cache_dir: str | Path | None = None, data_dir=None) -> Path:
    """Run the slice study and overwrite the stored regression baseline (explicit, never automatic),
    with the library versions used beside it (``tests/baselines/slice_versions.json``)."""
    import pandas as pd

    params = dict(SLICE_PARAMS)
    if cache_dir:
        params["cache_dir"] = str(cache_dir)
    if data_dir:
        params["data_dir"] = str(data_dir)
    run_study(params, out_dir, reuse=False)
    metrics = pd.read_csv(StudyLayout(out_dir).result("metrics"))
    BASELINE_FILE.parent.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(BASELINE_FILE, index=False)
    # the library versions it was computed with: a later mismatch may come from the environment
    recorded = {k: v for k, v in versions().items() if k not in ("git_commit", "platform")}
    _write_json(BASELINE_FILE.with_name("slice_versions.json"), recorded)
    return BASELINE_FILE
