"""Running notebooks: the project's kernel whatever the metadata says, and every fault of the
execution machinery as one line that names the notebook, the cause and what to do (issue 14)."""
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from visrec_utils.pipeline import execution, runner

CLI_PARAMS = ('data_dir: "Optional[str]" = None\nmodels: list = []\nmax_users: "Optional[int]" = None\n'
              'max_items: "Optional[int]" = None\nseed: int = 0\nbackend: str = "local"\n'
              'ray_address: "Optional[str]" = None\nout_dir: str = "."\n')

OUT_ONLY = 'out_dir: str = "."\n'


def _notebook(folder, name, *cells, params=CLI_PARAMS, kernelspec=True):
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(folder / f"{name}.ipynb"))


@pytest.fixture
def notebook_dir(tmp_path, monkeypatch):
    """A notebooks folder of the test's own, used by the runner instead of the project's."""
    d = tmp_path / "notebooks"
    d.mkdir()
    monkeypatch.setattr(execution, "NOTEBOOK_DIR", d)
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", d)
    monkeypatch.setattr("visrec_utils.reports.index.write_index", lambda out, pending=(): out / "reports" / "index.html")
    return d


def test_notebooks_without_kernel_metadata_are_checked_and_run(tmp_path, notebook_dir, hm_dir):
    from visrec_utils.catalogue import data, readers

    for name in runner.NOTEBOOKS:  # as nbstripout / jupytext round trips leave them
        nb = nbformat.read(str(Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb"), 4)
        nb.metadata.pop("kernelspec", None)
        nb.metadata.pop("language_info", None)
        nbformat.write(nb, str(notebook_dir / f"{name}.ipynb"))
    import papermill

    with pytest.raises(ValueError, match="No kernel name found"):  # what papermill alone says
        papermill.inspect_notebook(str(notebook_dir / f"{runner.NOTEBOOKS[0]}.ipynb"))
    assert set(execution.notebook_parameters(runner.NOTEBOOKS[3])) >= {"protocol", "ks", "out_dir"}
    runner.check_parameters({"data_dir": str(hm_dir), "max_users": 20, "max_items": 60, "ks": [10, 20]})
    out = tmp_path / "out"
    runner.run_study({"data_dir": str(hm_dir), "max_users": 20, "max_items": 60}, out, notebooks=runner.NOTEBOOKS[:1])
    expected = data.slice_catalogue(readers.load_hm(hm_dir), 20, 60, 0)
    items = pd.read_parquet(out / "data" / "items.parquet")
    assert items["item_id"].tolist() == expected.items["item_id"].tolist() and len(items) == 60
    assert "Catalogue:" in (out / "reports" / f"{runner.NOTEBOOKS[0]}.html").read_text()


def test_a_killed_kernel_is_one_line_with_the_cause_and_the_study_resumes(tmp_path, notebook_dir, capsys, monkeypatch):
    from visrec_utils import __main__ as cli

    _notebook(notebook_dir, "01_ok", "print('step one done')")
    _notebook(notebook_dir, "02_dies", "print('before the kill')",
              "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "print('never')", params=OUT_ONLY)
    monkeypatch.setattr(runner, "NOTEBOOKS", ["01_ok", "02_dies"])
    pages = []  # (pending, the failed notebook run.json names) of every index written during the run
    monkeypatch.setattr("visrec_utils.reports.index.write_index", lambda out, pending=(): pages.append(
        (list(pending), json.loads((out / "results" / "run.json").read_text()).get("failed"))))
    argv = ["study", "--data", "demo", "--models", "mobilenetv1_025_keras", "--out", str(tmp_path / "o")]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(
        r"visrec: error: notebook 02_dies failed: its Python kernel was killed \(SIGKILL\); out of memory is the "
        r"usual reason \(the system's out-of-memory killer\); its processes peaked at \d+\.\d GiB of this machine's "
        r"\d+\.\d GiB\. Free memory or run a smaller slice \(--max-users/--max-items\) or a smaller batch_size, then "
        r"rerun the same command: it resumes at 02_dies\. The partial notebook is .*02_dies\.html\.", err.strip()), err
    out = tmp_path / "o"
    html = (out / "reports" / "02_dies.html").read_text()
    assert "before the kill" in html and "never</" not in html
    run = json.loads((out / "results" / "run.json").read_text())
    assert run["failed"] == "02_dies" and run["notebooks"][0]["notebook"] == "01_ok"
    assert run["notebooks"][0]["peak_rss_mib"] > 10  # an ipykernel holds tens of MiB
    # the index was rewritten after 01 (02 pending) and after the failure, when run.json named it
    assert pages == [(["02_dies"], None), ([], "02_dies")]
    # fixed, the same command resumes: 01 is reused, 02 runs
    _notebook(notebook_dir, "02_dies", "print('fine now')", params=OUT_ONLY)
    assert cli.main(argv) == 0
    run = json.loads((out / "results" / "run.json").read_text())
    assert [r["reused"] for r in run["notebooks"]] == [True, False] and "failed" not in run


@pytest.mark.parametrize("cell, kwargs, message", [
    ("import time\ntime.sleep(30)", {"cell_timeout": 2},
     r"notebook 01_fault failed: a cell ran longer than the 2 s cell timeout \(--cell-timeout\)\. Raise or drop the "
     r"timeout, or run a smaller slice; rerun the same command: it resumes at 01_fault \(earlier notebooks are "
     r"reused\)\. The partial notebook is .*01_fault\.html\."),
    ("import errno, os\nraise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'embeddings/x.npy')", {},
     r"notebook 01_fault failed: the disk is full \(\[Errno 28\] No space left on device: 'embeddings/x\.npy'\)\. "
     r"Free space in the output folder and the cache folder \(df -h\), then rerun the same command: it resumes at "
     r"01_fault .*\.html\."),
    ("raise MemoryError()", {},
     r"notebook 01_fault failed: out of memory \(MemoryError\); its processes peaked at \d+\.\d GiB of this "
     r"machine's \d+\.\d GiB\. Run a smaller slice .*resumes at 01_fault.*"),
    ("raise ValueError('bad\\nthing')", {},
     r"notebook 01_fault failed: ValueError: bad thing\. The executed notebook with the traceback is "
     r".*01_fault\.ipynb \(and \.html\)\. Fix the cause, then rerun the same command: it resumes at 01_fault\."),
])
def test_faults_become_one_line_naming_the_notebook(tmp_path, notebook_dir, cell, kwargs, message):
    _notebook(notebook_dir, "01_fault", "print('started')", cell, params=OUT_ONLY)
    with pytest.raises(runner.StudyError) as info:
        runner.run_study({}, tmp_path, notebooks=["01_fault"], **kwargs)
    assert "\n" not in str(info.value) and re.fullmatch(message, str(info.value)), str(info.value)
    assert "started" in (tmp_path / "reports" / "01_fault.html").read_text()
    assert json.loads((tmp_path / "results" / "run.json").read_text())["failed"] == "01_fault"


def test_ctrl_c_during_a_notebook_keeps_the_partial_notebook(tmp_path, notebook_dir, capsys, monkeypatch):
    from visrec_utils import __main__ as cli

    _notebook(notebook_dir, "01_ok", "print('first')")
    _notebook(notebook_dir, "02_stop", "print('before ctrl-c')",
              "import os, signal, time\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(30)", params=OUT_ONLY)
    monkeypatch.setattr(runner, "NOTEBOOKS", ["01_ok", "02_stop"])
    import signal  # a shell's background job inherits SIGINT ignored: Ctrl-C must reach this process here

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli.main(["study", "--data", "demo", "--models", "mobilenetv1_025_keras", "--out", str(tmp_path)])
    finally:
        signal.signal(signal.SIGINT, before)
    err = capsys.readouterr().err.strip()
    assert code == 130 and re.fullmatch(
        r"visrec: notebook 02_stop interrupted \(Ctrl-C\)\. The partial notebook is .*02_stop\.html\. Rerun the "
        r"same command: it resumes at 02_stop \(earlier notebooks are reused\)\.", err), err
    assert "before ctrl-c" in (tmp_path / "reports" / "02_stop.html").read_text()
    assert json.loads((tmp_path / "results" / "run.json").read_text())["failed"] == "02_stop"


def test_a_missing_kernel_says_how_to_install_it(tmp_path, notebook_dir, monkeypatch):
    _notebook(notebook_dir, "01_ok", "print('first')", params=OUT_ONLY)
    monkeypatch.setattr(execution, "KERNEL_NAME", "no_such_kernel_visrec")
    with pytest.raises(runner.StudyError, match=r"^notebook 01_ok could not start: no Jupyter kernel named "
                                                r"'no_such_kernel_visrec' in this environment .*pip install -e \.\)"):
        runner.run_study({}, tmp_path, notebooks=["01_ok"])


def test_repository_figures_come_from_the_hm_sample_only(tmp_path, monkeypatch, hm_dir, capsys):
    from PIL import Image

    out, repo_figs, shop = tmp_path / "out", tmp_path / "repo_figures", tmp_path / "my_shop"
    (out / "figures").mkdir(parents=True)
    shop.mkdir()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out / "figures" / "gallery.png")
    monkeypatch.setattr(runner, "REPO_FIGURES", repo_figs)
    assert runner.is_reference_sample(hm_dir) and not runner.is_reference_sample(shop)
    runner._copy_figures(out, str(shop), None, repo_figures=True)  # VISREC_DATA=/my/shop make study
    assert not repo_figs.exists()
    assert "the repository's figures/ are left as they are" in capsys.readouterr().out
    runner._copy_figures(out, str(shop), tmp_path / "named", repo_figures=True)  # an explicit folder: copied
    assert (tmp_path / "named" / "gallery.png").is_file() and not repo_figs.exists()
    runner._copy_figures(out, str(hm_dir), None, repo_figures=True)
    assert (repo_figs / "gallery.png").read_bytes() == (out / "figures" / "gallery.png").read_bytes()
    make = (runner.NOTEBOOK_DIR.parent / "Makefile").read_text()
    study = make.split("\nstudy:")[1].split("\n\n")[0]
    assert "--repo-figures" in study and "--figures-to" not in study


def test_cli_empty_value_is_the_empty_string_and_out_must_be_a_folder(tmp_path, monkeypatch, capsys):
    from visrec_utils import __main__ as cli

    seen = {}
    monkeypatch.setattr(runner, "run_study", lambda params, out, **kw: seen.update(params) or {"total_seconds": 0})
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path), "-p", "imagenet_dir", ""]) == 0
    assert seen["imagenet_dir"] == ""  # '' switches the top-1 check off; YAML alone would read it as null (the default)
    monkeypatch.undo()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["study", "--data", "demo", "--out", str(afile)]) == 2
    assert capsys.readouterr().err.strip() == (f"visrec: error: the output folder {afile} (--out / out_dir) is a file; "
                                               "name a folder (it is created)")


def test_a_batch_run_shows_the_kernels_bar_as_one_line_without_start_up_noise(tmp_path, notebook_dir, monkeypatch):
    seen = []

    class Recorded(execution.ProgressLine):
        def update(self):
            seen.append(super().update())
            return seen[-1]

    monkeypatch.setattr(execution, "ProgressLine", Recorded)
    _notebook(notebook_dir, "02_bars", "import sys, time\nfrom tqdm.auto import tqdm\n"
              "from visrec_utils.pipeline import notebook\nnotebook.setup(out_dir)\n"
              "bar = tqdm(total=5, desc='embeddings tf_efficientnet_lite0@stage2', unit='img')\n"
              "for _ in range(5):\n    time.sleep(0.5)\n    bar.update(1)\nbar.close()\n"
              "print('[IPKernelApp] WARNING | Kernel is running over TCP without ' + 'encryption. All', file=sys.stderr)\n"
              "print('a real warning', file=sys.stderr)",
              params='out_dir: str = "."\nmodels: list = ["tf_efficientnet_lite0", "tf_efficientnet_lite0@stage2"]\n')
    execution.run_notebook("02_bars", {"out_dir": str(tmp_path)}, tmp_path)
    assert "02 | embeddings tf_efficientnet_lite0@stage2 (model 2/2)" in seen
    logs = tmp_path / "reports" / "logs"
    assert not (logs / "02_bars.progress.json").exists()  # the channel's file goes with the run
    kernel_log = (logs / "02_bars.kernel.log").read_text()
    assert "without encryption" not in kernel_log
    stderr_log = (logs / "02_bars.stderr.log").read_text()
    assert "a real warning" in stderr_log and "without encryption" not in stderr_log
    for page in ("02_bars.ipynb", "02_bars.html", "with_code/02_bars.html"):
        assert "without encryption" not in (tmp_path / "reports" / page).read_text()
