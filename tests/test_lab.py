"""Reports for people who do not read code, and ``make lab`` (issue 16).

The shared HTML pages hide code and fold stderr into one line per cell with a log beside them,
long tables are shortened with a note naming the full file, ``make lab`` starts a JupyterLab that
serves the notebooks and the output folder, a notebook run by hand is reconciled by the next
batch run, and ``--quick`` is a named parameter preset.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from visrec_utils.pipeline import execution, lab, notebook, runner

REPO = Path(__file__).resolve().parent.parent


# --- the shared page and the page with code -------------------------------------------------

def _executed_notebook(path: Path) -> None:
    """A small executed notebook built by hand (no kernel): parameters, papermill's injected
    parameters, and a cell whose outputs are stdout, stderr, a progress bar and an HTML table."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"w1": {"secret": "widget_state"}}}}
    params = nbformat.v4.new_code_cell('out_dir: str = "../study_output"  # study output folder\n'
                                       'n_resamples: int = 1000  # bootstrap resamples\n')
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('# Parameters\nout_dir = "/tmp/study"\nn_resamples = 1000\n')
    injected.metadata["tags"] = ["injected-parameters"]
    work = nbformat.v4.new_code_cell("result = secret_code_marker(out_dir)\nresult", execution_count=3)
    work.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="[visrec] micro-batch for lite0: 8\n17033 catalogue items\n"),
        nbformat.v4.new_output("stream", name="stderr", text="[visrec] embedding tf_efficientnet_lite0\n"),
        nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "w1", "version_major": 2, "version_minor": 0},
            "text/plain": "embeddings:   0%|          | 0/1000"}),
        nbformat.v4.new_output("stream", name="stderr",
                               text="/x/umap_.py:1952: UserWarning: n_jobs value 1 overridden\n  warn(\n"),
        nbformat.v4.new_output("execute_result", execution_count=3, data={
            "text/html": '<table><tr><td>0.562</td></tr></table><a href="../results/metrics.csv">all rows</a>',
            "text/plain": "0.562"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# 04 Demo"), params, injected, work]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_shared_page_has_no_code_and_one_line_per_cell_of_stderr(tmp_path):
    reports = tmp_path / "reports"
    _executed_notebook(reports / "04_demo.ipynb")
    page = execution.to_html(reports / "04_demo.ipynb")
    assert page == reports / "04_demo.html"
    shared = page.read_text()
    with_code = (reports / "with_code" / "04_demo.html").read_text()
    log = (reports / "logs" / "04_demo.stderr.log").read_text()
    # no code on the shared page; its results are there
    assert "secret_code_marker" not in shared and "n_resamples: int" not in shared
    assert "17033 catalogue items" in shared and "<td>0.562</td>" in shared
    # stderr and the progress bar: one line linking the log, which holds the full text
    assert "[visrec] embedding" not in shared and "UserWarning" not in shared and "widget_state" not in shared
    assert "micro-batch" not in shared  # visrec's progress lines on stdout go to the log too; other stdout stays
    assert ("4 lines of progress and warnings (1 warning) and 1 progress bar: see "
            '<a href="logs/04_demo.stderr.log">logs/04_demo.stderr.log</a>') in shared
    assert shared.count('class="visrec-stderr"') == 1
    assert "[visrec] embedding tf_efficientnet_lite0\n" in log and "UserWarning: n_jobs value 1 overridden" in log
    assert "--- In [3] ---\n[visrec] micro-batch for lite0: 8\n[visrec] embedding" in log
    # the parameters as a table of values: the injected one (changed from the default) in bold
    assert "Parameters of this run (2; 1 differ from the notebook&#x27;s defaults, in bold)" in shared or \
        "Parameters of this run (2; 1 differ from the notebook's defaults, in bold)" in shared
    assert '<td><code><b>"/tmp/study"</b></code></td><td>study output folder</td>' in shared.replace("&quot;", '"')
    assert "<td><code>1000</code></td><td>bootstrap resamples</td>" in shared
    # each page links the other; the page one folder deeper reaches the same result files
    assert 'href="with_code/04_demo.html"' in shared and 'href="../04_demo.html"' in with_code
    assert 'href="../results/metrics.csv"' in shared and 'href="../../results/metrics.csv"' in with_code
    # the page with code keeps everything
    assert "secret_code_marker" in with_code and "[visrec] embedding" in with_code and "UserWarning" in with_code


def test_a_notebook_without_stderr_gets_no_log_and_a_stale_one_is_removed(tmp_path):
    reports = tmp_path / "reports"
    _executed_notebook(reports / "04_demo.ipynb")
    nb = nbformat.read(str(reports / "04_demo.ipynb"), 4)
    nb.cells[-1].outputs = [o for o in nb.cells[-1].outputs if o.get("name") == "stdout" or o.output_type == "execute_result"]
    nb.cells[-1].outputs[0]["text"] = "17033 catalogue items\n"  # no progress line either
    nbformat.write(nb, str(reports / "04_demo.ipynb"))
    (reports / "logs").mkdir()
    (reports / "logs" / "04_demo.stderr.log").write_text("from an older run")
    shared = execution.to_html(reports / "04_demo.ipynb").read_text()
    assert "progress and warnings" not in shared and "17033 catalogue items" in shared
    assert not (reports / "logs" / "04_demo.stderr.log").exists()


def test_summary_line_words():
    assert execution.summary_line(12, 3, 2) == "12 lines of progress and warnings (3 warnings) and 2 progress bars"
    assert execution.summary_line(1) == "1 line of progress and warnings"
    assert execution.summary_line(0, 0, 1) == "1 progress bar"


# --- long tables --------------------------------------------------------------------------

def _paired_frame(n=55):
    values = [0.5 + i / 1000 for i in range(n)]
    return pd.DataFrame({
        "model": [f"m{i:02d}" for i in range(n)], "strategy": "frozen", "recommender": "visrank_max",
        "metric": "ndcg", "k": 20, "mean_diff": values, "ci_low": [v - 0.01 for v in values],
        "ci_high": [v + 0.01 for v in values], "n_users": 879,
        "top1_source": ["line one of the source\n" + "\n".join(f"line {j}" for j in range(8))] * n})


def test_table_shows_the_top_rows_in_words_with_a_note():
    t = notebook.table(_paired_frame(), csv="results/paired_vs_reference.csv")
    assert t.note == ("showing 10 of 55 rows, sorted by mean difference [95% interval]; all rows: "
                      "results/paired_vs_reference.csv")
    assert list(t.frame.columns) == ["configuration", "metric", "k", "mean difference [95% interval]", "customers",
                                     "source of the published top-1"]
    t.frame.columns = ["configuration", "metric", "k", "mean_diff", "n_users", "top1_source"]
    assert t.frame["configuration"].tolist() == [f"m{i}, frozen, VisRank (max)" for i in range(54, 44, -1)]
    assert t.frame["mean_diff"].tolist()[:2] == ["+0.554 [+0.544, +0.564]", "+0.553 [+0.543, +0.563]"]
    assert set(t.frame["top1_source"]) == {"line one of the source…"}
    assert t.frame["n_users"].tolist() == ["879"] * 10
    html = t._repr_html_()
    assert '<a href="../results/paired_vs_reference.csv">results/paired_vs_reference.csv</a>' in html
    assert html.count("<tr") == 11  # the header and ten rows
    assert repr(t).endswith("\nshowing 10 of 55 rows, sorted by mean difference [95% interval]; all rows: "
                            "results/paired_vs_reference.csv")


def test_table_options():
    frame = _paired_frame(12).assign(protocol=["a"] * 6 + ["b"] * 6)
    t = notebook.table(frame, top=2, per="protocol", labels=False)
    assert t.frame["model"].tolist() == ["m05", "m04", "m11", "m10"]  # groups in their order, best first within
    assert t.note == "showing 4 of 12 rows (top 2 per protocol), sorted by mean_diff"
    t = notebook.table(frame.drop(columns=["strategy", "recommender"]), sort_by=False, top=None, csv="results/x.csv")
    assert t.frame["model"].tolist()[:2] == ["m00", "m01"] and t.note == "all 12 rows; file: results/x.csv"
    with pytest.raises(KeyError, match=r"table\(\): no column 'auc'; the table has \['model'"):
        notebook.table(frame, sort_by="auc")


def test_figures_or_note(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("imagenet_vs_auc", "imagenet_vs_ndcg20", "other"):
        (tmp_path / "figures" / f"{name}.png").write_bytes(b"png")
    shown = notebook.figures_or_note(tmp_path, ["imagenet_vs_*"])
    assert [Path(f.filename).name for f in shown] == ["imagenet_vs_auc.png", "imagenet_vs_ndcg20.png"]
    [note] = notebook.figures_or_note(tmp_path, ["imagenet_vs_*"], "Only two ImageNet models: no scatter plot.")
    assert note.data == "Only two ImageNet models: no scatter plot."


# --- a notebook run by hand, then the batch runner ----------------------------------------

def _fake_study(monkeypatch, calls):
    def fake_run(nb, params, out_dir, log_output=False, **kw):  # writes reports and an output, like a notebook
        calls.append(nb)
        (out_dir / "reports").mkdir(parents=True, exist_ok=True)
        for ext in (".ipynb", ".html"):
            (out_dir / "reports" / f"{nb}{ext}").write_text("report")
        (out_dir / "results" / "skipped").mkdir(parents=True, exist_ok=True)
        (out_dir / "results" / "skipped" / f"{nb}.csv").write_text("notebook,part,reason\n")
        return {"notebook": nb, "seconds": 1.0, "parameters": {}}

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    monkeypatch.setattr(runner, "_report_models", lambda out: None)


def test_a_hand_run_that_changed_outputs_is_rerun_by_the_next_study(tmp_path, monkeypatch):
    calls = []
    _fake_study(monkeypatch, calls)
    nbs = runner.NOTEBOOKS[:4]
    runner.run_study({"data_dir": "demo"}, tmp_path, notebooks=nbs)
    assert calls == nbs
    index = tmp_path / "reports" / "index.html"
    assert index.is_file()
    # notebook 02 run by hand (JupyterLab): its output changes; done(out_dir) refreshes the index
    index.unlink()
    (tmp_path / "results" / "skipped" / f"{nbs[1]}.csv").write_text("notebook,part,reason\n02,umap,by hand\n")
    with monkeypatch.context() as batch:  # in the runner's kernels the index is left to the runner
        batch.setenv(execution.BATCH_ENV, "1")
        notebook.done(tmp_path)
        assert not index.exists()
    notebook.done(tmp_path)
    assert "by hand" in index.read_text()
    calls.clear()
    runner.run_study({"data_dir": "demo"}, tmp_path, notebooks=nbs)
    assert calls == [nbs[1]]  # 02 reruns; its outputs are the batch run's again, so 03 and 04 are reused
    # 02 and 03 run by hand: both rerun, 01 and 04 are reused (03's outputs after its rerun are as before)
    for nb in nbs[1:3]:
        (tmp_path / "results" / "skipped" / f"{nb}.csv").write_text("notebook,part,reason\nx,y,by hand\n")
    calls.clear()
    record = runner.run_study({"data_dir": "demo"}, tmp_path, notebooks=nbs)
    assert calls == nbs[1:3] and [r["reused"] for r in record["notebooks"]] == [True, False, False, True]


def test_a_notebook_saved_with_its_outputs_keeps_its_key(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", notebooks)
    monkeypatch.setattr(execution, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", notebooks)
    calls = []
    _fake_study(monkeypatch, calls)
    out, nbs = tmp_path / "out", runner.NOTEBOOKS[:3]
    runner.run_study({"data_dir": "demo"}, out, notebooks=nbs)
    # JupyterLab saved 02 with outputs and execution counts: same cells, nothing to rerun
    path = notebooks / f"{nbs[1]}.ipynb"
    nb = nbformat.read(str(path), 4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran by hand\n")]
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, str(path))
    calls.clear()
    runner.run_study({"data_dir": "demo"}, out, notebooks=nbs)
    assert calls == []
    # an edited cell is a different notebook: it reruns
    nb.cells[0].source += "\nEdited."
    nbformat.write(nb, str(path))
    runner.run_study({"data_dir": "demo"}, out, notebooks=nbs)
    assert calls == [nbs[1]]


# --- --quick ----------------------------------------------------------------------------

def test_quick_preset_is_passed_and_explicit_values_override_it(tmp_path, monkeypatch):
    from visrec_utils import __main__ as cli

    seen = {}
    monkeypatch.setattr(runner, "run_study", lambda params, out, **kw: seen.update(params) or {"total_seconds": 0})
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path), "--quick"]) == 0
    assert {k: seen[k] for k in runner.QUICK_PARAMS} == runner.QUICK_PARAMS
    assert seen["max_users"] == 100 and seen["models"] == ["offline"] and seen["max_items"] is None
    seen.clear()
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path), "--quick", "--max-users", "50",
                     "--models", "mobilenetv1_025_keras", "-p", "n_resamples", "100", "-p", "umap_points", "0"]) == 0
    assert seen["max_users"] == 50 and seen["models"] == ["mobilenetv1_025_keras"]
    assert seen["n_resamples"] == 100 and seen["umap_points"] == 0 and seen["bpr_steps"] == 40
    seen.clear()
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path)]) == 0  # without it: the full study
    assert seen["max_users"] is None and "bpr_steps" not in seen and seen["models"] == list(cli.DEFAULT_MODELS)
    runner.check_parameters(runner.QUICK_PARAMS)  # every name is a notebook parameter of the right type


# --- make lab ---------------------------------------------------------------------------

def test_make_lab_runs_the_lab_command_on_the_given_port():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test too
    dry = subprocess.run(["make", "-n", "--no-print-directory", "lab", "PORT=8899"], cwd=REPO, capture_output=True,
                         text=True, check=True, env=env)
    assert dry.stdout.strip().splitlines()[-1] == ".venv/bin/python -m visrec_utils lab --port 8899"
    cmd = lab.lab_command(8899, REPO)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert {"--no-browser", "--port=8899", f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0"} <= set(cmd)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    with pytest.raises(ValueError, match="lab --port 0: a port is a number from 1 to 65535"):
        lab.lab_command(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return json.loads(body) if body else None


def test_make_lab_serves_the_notebooks_and_the_output_folder(tmp_path):
    """Starts the server exactly as ``make lab`` does (``python -m visrec_utils lab --port N`` from
    a repository-like root), as the current user (root here: that proves ``--allow-root``)."""
    pytest.importorskip("jupyterlab")
    root = tmp_path / "repo"
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "study_output" / "reports").mkdir(parents=True)
    port, token = _free_port(), "visrec-test-token"
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = open(tmp_path / "lab.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "visrec_utils", "lab", "--port", str(port)], cwd=root, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer in 180 s: " + (tmp_path / "lab.log").read_text()
                time.sleep(1)
        top = {c["name"]: c["type"] for c in _get(f"{base}/api/contents", token)["content"]}
        assert top == {"notebooks": "directory", "study_output": "directory"}
        listed = {c["name"] for c in _get(f"{base}/api/contents/notebooks", token)["content"]}
        assert {f"{nb}.ipynb" for nb in runner.NOTEBOOKS} <= listed
        specs = _get(f"{base}/api/kernelspecs", token)["kernelspecs"]
        assert specs[lab.KERNEL_NAME]["spec"]["display_name"] == "visrec (.venv)"
        # the notebooks' kernelspec python3: "python", which jupyter_client runs as the server's interpreter
        assert specs["python3"]["spec"]["argv"][0] in ("python", sys.executable)
        _get(f"{base}/api/shutdown", token, method="POST")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "lab.log").read_text()
    assert "Running as root is not recommended. Use --allow-root to bypass." not in text
    assert "Shutting down" in text or "shutdown" in text.lower()
