"""The progress channel of a batch run (issue 17): the kernel publishes its tqdm bars to a file,
the runner shows them as one tqdm line; Jupyter's and Ray's start-up lines are dropped."""
import io
import json

import nbformat
import pytest
from tqdm.std import tqdm

from visrec_utils.pipeline import progress

MODELS = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "random_tf_efficientnet_lite0",
          "tf_efficientnet_lite0@stage2"]


def _state(*bars):
    return {"bars": [{"id": i, "desc": d, "n": n, "total": t, "unit": "img", "unit_scale": False, "elapsed": e}
                     for i, (d, n, t, e) in enumerate(bars, 1)]}


def test_the_line_names_the_notebook_the_outer_bars_and_which_model_it_is():
    names = {"model": MODELS, "strategy": ["bpr_projection", "partial_bpr"]}
    desc, bar = progress.describe_progress(_state(("embeddings tf_efficientnet_lite0", 700, 17033, 5.0)),
                                           "02_embedding_extraction", names)
    assert desc == "02 | embeddings tf_efficientnet_lite0 (model 1/4)"
    assert (bar["n"], bar["total"]) == (700, 17033)
    # the longest whole name: neither lite0 inside random_... nor inside ...@stage2
    for shown, part in (("random_tf_efficientnet_lite0", "model 3/4"), ("tf_efficientnet_lite0@stage2", "model 4/4"),
                        ("partial_bpr (validations)", "strategy 2/2"),
                        ("bpr_projection tf_efficientnet_lite1", "model 2/4, strategy 1/2")):
        assert progress.describe_progress(_state((shown, 0, 10, 0.0)), "nb", names)[0] == f"nb | {shown} ({part})"
    nested = _state(("evaluate temporal", 3, 9, 40.0), ("embeddings other_model", 5, 50, 1.0))
    assert progress.describe_progress(nested, "04_recommendation_eval", names)[0] == (
        "04 | evaluate temporal 3/9 | embeddings other_model")
    assert progress.describe_progress({"bars": []}, "nb", names) is None


def test_progress_names_come_from_the_parameters_or_the_notebooks_defaults():
    declared = {"strategies": {"default": "['bpr_projection', 'contrastive']"}, "models": {"default": "None"}}
    assert progress.progress_names({"models": MODELS[:2]}, declared) == {
        "model": MODELS[:2], "strategy": ["bpr_projection", "contrastive"]}
    assert progress.progress_names({}, {"out_dir": {"default": "'.'"}}) == {}


def test_the_runner_line_follows_the_kernels_file(tmp_path):
    path = tmp_path / "02.progress.json"
    out = io.StringIO()
    line = progress.ProgressLine(path, "02_embedding_extraction", {"model": MODELS}, file=out, disable=False)
    assert line.update() is None  # no file yet: nothing shown
    path.write_text(json.dumps(_state(("embeddings tf_efficientnet_lite1", 8000, 17033, 100.0))))
    assert line.update() == "02 | embeddings tf_efficientnet_lite1 (model 2/4)"
    assert (line.bar.n, line.bar.total, line.bar.unit) == (8000, 17033, "img")
    assert "8000/17033" in out.getvalue() and "80.00img/s" in out.getvalue()  # the kernel's 8000 in 100 s
    path.write_text(json.dumps(_state(("embeddings tf_efficientnet_lite1", 9000, 17033, 110.0))))
    line.update()
    assert line.bar.n == 9000
    path.write_text(json.dumps(_state(("bpr", 1, 2, 0.0), ("embeddings random_tf_efficientnet_lite0", 40, 1000, 2.0))))
    assert line.update().endswith("| embeddings random_tf_efficientnet_lite0 (model 3/4)")
    assert (line.bar.n, line.bar.total) == (40, 1000)  # a new bar restarts the line at the kernel's count
    with line:  # leaving clears the line and removes the file
        pass
    assert not path.exists() and out.getvalue().endswith("\r")  # cleared: the summary line comes next


def test_the_kernel_publishes_its_live_bars(tmp_path):
    quiet = tqdm(total=5, desc="hidden", disable=True)
    bar = tqdm(total=30, desc="embeddings published_model", unit="img", file=io.StringIO())
    bar.update(12)
    mine = [b for b in progress.progress_snapshot()["bars"] if b["desc"] in ("hidden", "embeddings published_model")]
    assert [(b["desc"], b["n"], b["total"], b["unit"]) for b in mine] == [("embeddings published_model", 12, 30, "img")]
    path = tmp_path / "p.json"
    thread = progress.publish_progress(path, interval=0.05)
    assert progress.publish_progress(path) is thread  # one publisher per file
    for _ in range(200):
        if path.is_file() and any(b["desc"] == "embeddings published_model" for b in json.loads(path.read_text())["bars"]):
            break
        thread.join(0.05)
    published = [b for b in json.loads(path.read_text())["bars"] if b["desc"] == "embeddings published_model"]
    assert [(b["n"], b["total"]) for b in published] == [(12, 30)]
    bar.close()
    quiet.close()


NOISY = ("[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication (including code "
         "and outputs) is sent in plain text and is susceptible to eavesdropping.\n"
         "0.00s - Debugger warning: It seems that frozen modules are being used, which may\n"
         "[2026-11-30 19:00:00,123 I 4242 4242] core_worker_process.cc:254: Constructing CoreWorkerProcess.\n"
         "(raylet) [2026-11-30 19:00:01,456 W 4250 4250] memory_monitor.cc:199: Got negative used memory\n"
         "2026-11-30 19:27:19,375\tINFO worker.py:2038 -- Started a local Ray instance.\n"
         "[2026-11-30 19:00:02,000 E 4242 4242] core_worker.cc:900: a Ray error is kept\n"
         "[IPKernelApp] ERROR | Exception in message handler:\n"
         "tf_efficientnet_lite0: 1000 images in 15.6 s\n")


def test_start_up_noise_is_dropped_and_everything_else_kept():
    assert progress.drop_noise(NOISY) == ("[2026-11-30 19:00:02,000 E 4242 4242] core_worker.cc:900: a Ray error is kept\n"
                                         "[IPKernelApp] ERROR | Exception in message handler:\n"
                                         "tf_efficientnet_lite0: 1000 images in 15.6 s\n")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=NOISY.split("0.00s")[0]),
                    nbformat.v4.new_output("stream", name="stderr", text=NOISY),
                    nbformat.v4.new_output("stream", name="stdout", text=NOISY)]
    nb.cells = [cell]
    assert progress.drop_noise_outputs(nb) is True
    assert [(o.name, o.text) for o in cell.outputs] == [("stderr", progress.drop_noise(NOISY)), ("stdout", NOISY)]
    assert progress.drop_noise_outputs(nb) is False


# --- benchmarks/study.py: the per-stage CSV, its Markdown table and the README block -------

def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study.py"
    spec = importlib.util.spec_from_file_location("bench_study", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_stage_table_of_a_whole_study_and_its_readme_block(tmp_path):
    bench = _bench()
    results = tmp_path / "out" / "results"
    results.mkdir(parents=True)
    # the records of the whole H&M study before issue 17 (2 cores): run.json, models.csv, finetune_cost.csv
    (results / "run.json").write_text(json.dumps({"total_seconds": 6626.6, "notebooks": [
        {"notebook": "01_data_prep", "seconds": 5.6, "peak_rss_mib": 325},
        {"notebook": "02_embedding_extraction", "seconds": 2258.7, "peak_rss_mib": 7486},
        {"notebook": "03_fine_tuning", "seconds": 3528.1, "peak_rss_mib": 14159},
        {"notebook": "04_recommendation_eval", "seconds": 810.6, "peak_rss_mib": 4182}]}))
    (results / "models.csv").write_text("model,status,cache_hit,seconds,images_per_s\n"
                                        "tf_efficientnet_lite0,ok,False,117.6,144.9\n"
                                        "mobilenetv1_025_keras,ok,True,0.4,\nbroken,skipped,False,,\n")
    (results / "finetune_cost.csv").write_text("model,strategy,budget,activation_seconds,train_seconds,cache_hit\n"
                                               "handcrafted,bpr_projection,13 of 15 epochs,0.0,61.9,False\n"
                                               "tf_efficientnet_lite0,contrastive,10 of 10,12.5,300.0,False\n")
    csv = tmp_path / "stages.csv"
    bench.stage_rows(tmp_path / "out").to_csv(csv, index=False)
    table = bench.markdown_table(csv)
    assert table == (
        "| notebook | part | wall time (s) | share | rate | peak memory (GiB) | note |\n"
        "|---|---|--:|--:|--:|--:|---|\n"
        "| 01_data_prep | notebook | 6 | 0.1% |  | 0.3 |  |\n"
        "| 02_embedding_extraction | notebook | 2259 | 34.1% |  | 7.3 |  |\n"
        "| 02_embedding_extraction | extract tf_efficientnet_lite0 | 118 | 1.8% | 144.9 img/s |  |  |\n"
        "| 02_embedding_extraction | extract mobilenetv1_025_keras | 0 |  |  |  | cache hit |\n"  # no share
        "| 03_fine_tuning | notebook | 3528 | 53.2% |  | 13.8 |  |\n"
        "| 03_fine_tuning | tune bpr_projection handcrafted | 62 | 0.9% |  |  |  |\n"
        "| 03_fine_tuning | tune contrastive tf_efficientnet_lite0 | 312 | 4.7% |  |  |  |\n"
        "| 04_recommendation_eval | notebook | 811 | 12.2% |  | 4.1 |  |\n"
        "| study | total | 6627 | 100.0% |  | 13.8 |  |\n")
    run = json.loads((results / "run.json").read_text())  # a rerun that reused 04 took 30 s in all
    run["notebooks"][3]["reused"], run["total_seconds"] = True, 30.0
    (results / "run.json").write_text(json.dumps(run))
    rows = bench.stage_rows(tmp_path / "out").set_index("part")
    assert rows.loc["total", "note"] == "1 of 4 notebooks reused: shares are of the notebooks' 6603 s"
    assert rows.loc["total", "share"] == 0.0045 and rows[rows["notebook"].str.startswith("04")]["share"].tolist() == [0.1228]
    readme = tmp_path / "README.md"
    readme.write_text("# visrec\n\nTimes:\n<!-- visrec:times:start -->\nold table\n<!-- visrec:times:end -->\nafter\n")
    bench.put_in_readme(readme, table)
    assert readme.read_text() == ("# visrec\n\nTimes:\n<!-- visrec:times:start -->\n" + table
                                  + "<!-- visrec:times:end -->\nafter\n")
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError) as info:
        bench.put_in_readme(readme, table)
    assert str(info.value) == ("the markers <!-- visrec:times:start --> and <!-- visrec:times:end --> (in this order) "
                               "are not in the text")


def test_the_sets_of_one_shared_pass_are_one_stage_row(tmp_path):
    bench = _bench()
    results = tmp_path / "out" / "results"
    results.mkdir(parents=True)
    (results / "run.json").write_text(json.dumps({"total_seconds": 400.0, "notebooks": [
        {"notebook": "02_embedding_extraction", "seconds": 400.0, "peak_rss_mib": 2048}]}))
    one = "tf_efficientnet_lite0 +2 sets, 2 networks"
    q = f"\"{one}\""  # quoted, as pandas writes it
    (results / "models.csv").write_text(
        "model,status,cache_hit,seconds,images_per_s,shared_pass\n"
        f"tf_efficientnet_lite0,ok,False,240.0,71.0,{q}\nmobilenetv1_025_keras,ok,False,40.0,425.8,\n"
        f"random_tf_efficientnet_lite0,ok,False,240.0,71.0,{q}\ntf_efficientnet_lite0@stage2,ok,False,240.0,71.0,{q}\n")
    rows = bench.stage_rows(tmp_path / "out")
    extract = rows[rows["part"].str.startswith("extract")]
    assert extract["part"].tolist() == [
        "extract tf_efficientnet_lite0, random_tf_efficientnet_lite0, tf_efficientnet_lite0@stage2",
        "extract mobilenetv1_025_keras"]
    assert extract["seconds"].tolist() == [240.0, 40.0] and extract["share"].tolist() == [0.6, 0.1]
    assert extract["note"].tolist() == [f"one pass: {one}", ""]


def test_a_long_description_is_cut_so_the_rate_and_time_left_stay_on_the_line():
    desc = "02 | embeddings tf_efficientnet_lite0 +5 sets, 2 networks (model 1/11)"
    assert progress.fit(desc, 200) == desc
    assert progress.fit(desc, 30) == "02 | embeddings tf_efficientn…" and len(progress.fit(desc, 30)) == 30
    assert progress.fit(desc, 5) == "02 | embeddings tf_…"  # never below 20 characters


def test_the_memory_watch_counts_pages_a_forked_worker_shares_once():
    """A forked child (a DataLoader worker) shares its parent's pages: RSS counts them in both,
    PSS splits them, so the study's peak memory is not doubled by its workers."""
    import multiprocessing as mp
    import os

    import numpy as np
    import psutil

    from visrec_utils.pipeline.execution import proportional_set_size

    if proportional_set_size(os.getpid()) is None:
        pytest.skip("no /proc/<pid>/smaps_rollup on this system (PSS is Linux-only); RSS is used there")
    big = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    ctx = mp.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=lambda: (ready.set(), done.wait(30)))
    child.start()
    try:
        assert ready.wait(30)
        pids = [os.getpid(), child.pid]
        rss = sum(psutil.Process(p).memory_info().rss for p in pids)
        pss = sum(proportional_set_size(p) for p in pids)
        assert rss - pss > 0.9 * big.nbytes  # the shared 64 MiB (and more) counted once, not twice
    finally:
        done.set()
        child.join(30)


def test_the_memory_watch_reads_pss_only_when_the_peak_can_move(monkeypatch):
    """PSS <= RSS, so while the children's RSS sum is not above the peak no PSS is read; above it,
    at most one read per pss_every seconds unless the RSS sum grew by more than 5%."""
    import psutil

    from visrec_utils.pipeline import execution

    rss = {"total": 0}
    kernel = type("Kernel", (), {"pid": 4242, "memory_info": lambda self: type("M", (), {"rss": rss["total"]})()})()
    monkeypatch.setattr(psutil.Process, "children", lambda self, recursive=False: [kernel])
    reads = []
    monkeypatch.setattr(execution, "proportional_set_size", lambda pid: reads.append(pid) or 100)
    watch = execution.MemoryWatch(pss_every=3600)
    rss["total"] = 150
    watch.tick()                       # first sample: read, peak = PSS = 100
    assert (watch.peak, reads) == (100, [4242])
    watch.tick()                       # RSS 150 above the peak, but read < 1 h ago and grown by 0%
    rss["total"] = 157                 # +4.7%: still not read
    watch.tick()
    assert len(reads) == 1
    rss["total"] = 158                 # +5.3% since the last read: read
    watch.tick()
    assert len(reads) == 2 and watch.pss_reads == 2
    rss["total"], watch.pss_every = 90, 0  # RSS below the peak: PSS cannot be above it, never read
    watch.tick()
    assert len(reads) == 2 and watch.peak == 100


def test_the_memory_watch_never_counts_a_worker_that_ended_at_its_last_rss(monkeypatch):
    """A DataLoader worker that ends between the RSS and the PSS reads is not counted (its RSS,
    read before, holds every page it shared with the kernel)."""
    import psutil

    from visrec_utils.pipeline import execution

    kernel = type("P", (), {"pid": 1, "memory_info": lambda self: type("M", (), {"rss": 300})()})()
    worker = type("P", (), {"pid": 2, "memory_info": lambda self: type("M", (), {"rss": 280})()})()
    monkeypatch.setattr(psutil.Process, "children", lambda self, recursive=False: [kernel, worker])
    monkeypatch.setattr(execution, "proportional_set_size", lambda pid: 200 if pid == 1 else None)

    original = psutil.Process

    def process(pid=None):
        if pid == 2:
            raise psutil.NoSuchProcess(pid)
        return original(pid)

    monkeypatch.setattr(psutil, "Process", process)
    watch = execution.MemoryWatch()
    watch.tick()
    assert watch.peak == 200  # the kernel's PSS alone, not 200 + 280


def test_the_terminal_picture_replays_carriage_returns_as_a_terminal_does():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "terminal_screenshot.py"
    spec = importlib.util.spec_from_file_location("bench_terminal", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    capture = ("Script started on 2026-11-30 [COMMAND=...]\n$ make study\r\n[visrec] running 02 ...\r\n"
               "\r02 | embeddings  10%| 1/10\r02 | embeddings  20%| 2/10\x1b[A\r02 | emb\r\n[visrec] 02 done\r\n")
    assert mod.screen_lines(capture) == ["$ make study", "[visrec] running 02 ...", "02 | embeddings  20%| 2/10",
                                         "[visrec] 02 done"]
