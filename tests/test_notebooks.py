"""Every notebook runs under papermill on a small slice of the real data; regression baseline.

The baseline (``tests/baselines/slice_metrics.csv``) is refreshed only by the explicit command
``make baseline`` (= ``python -m visrec_utils refresh-baseline``); see tests/baselines/README.md.
"""
import json

import numpy as np

import nbformat
import pandas as pd
import pytest

from visrec_utils.evaluation import stats
from visrec_utils.pipeline import runner

PER_USER_METRICS = {("auc", 0), ("mrr", 0), ("map", 0)} | {
    (m, k) for m in ("precision", "recall", "f1", "ndcg", "ap", "hitrate", "novelty") for k in (10, 20, 50)}
EXPECTED_METRICS = PER_USER_METRICS | {("coverage", k) for k in (10, 20, 50)}
PROTOCOLS = {"leave_last_basket_out", "temporal", "replay_last", "replay_all", "random_holdout"}


@pytest.fixture(scope="module")
def slice_run(tmp_path_factory, hm_dir, imagenet_dir):
    out = tmp_path_factory.mktemp("slice_study")
    params = {**runner.SLICE_PARAMS, "data_dir": str(hm_dir), "imagenet_limit": 200}
    record = runner.run_study(params, out)
    return out, record


@pytest.mark.slow
def test_every_notebook_ran_and_rendered(slice_run):
    out, record = slice_run
    assert [r["notebook"] for r in record["notebooks"]] == runner.NOTEBOOKS
    for name in runner.NOTEBOOKS:
        assert (out / "reports" / f"{name}.ipynb").is_file()
        html = (out / "reports" / f"{name}.html").read_text()
        assert "data:image/png;base64" in html or name == "02_embedding_extraction"
    for fig in ("contact_sheet", "data_overview", "learning_curves", "metric_bars_ndcg20", "metric_bars_auc", "gallery"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
    # one ImageNet model: no single-dot scatter plots, one sentence instead (results/skipped.csv, the index)
    assert not list((out / "figures").glob("imagenet_vs_*.png"))
    skipped = pd.read_csv(out / "results" / "skipped.csv")
    assert "correlation figures" in set(skipped.loc[skipped["notebook"] == "05_imagenet_vs_transfer", "part"])
    run = json.loads((out / "results" / "run.json").read_text())
    assert run["versions"]["torch"] and run["parameters"]["max_users"] == 60


@pytest.mark.slow
def test_index_page_links_resolve_and_renders_in_chromium(slice_run, tmp_path):
    import re

    from PIL import Image

    from visrec_utils.reports import screenshot

    out, _ = slice_run
    index = out / "reports" / "index.html"
    page = index.read_text()
    links = re.findall(r'(?:href|src)=["\']([^"\']+)["\']', page)
    shared = [link for link in links if link.endswith(".html") and not link.startswith("with_code/")]
    assert len(shared) == len(runner.NOTEBOOKS)
    assert sum(link.startswith("with_code/") for link in links) == len(runner.NOTEBOOKS)
    for link in links:
        assert link.startswith(("data:image/png;base64,", "http")) or (index.parent / link).is_file(), f"broken link {link}"
    assert "MobileNet-V1 0.25" in page and "[95% interval]" in page and "popularity, last 30 days" in page
    if screenshot.find_chromium() is None:
        pytest.skip("chromium not installed (make test installs Debian's chromium when run as root)")
    # the answer box, as the browser lays it out: first on the page, with the facts and the sentences
    dom = screenshot.rendered_dom(index)
    box = dom[dom.index('<section class="answer"'):dom.index("</section>")]
    assert dom.index('<section class="answer"') < dom.index("Key results")
    for fact in ("Catalogue", "Purchases", "Test", "Run"):
        assert f"<dt>{fact}</dt>" in box
    assert "Ranked by nDCG@20, the best ImageNet model, MobileNet-V1 0.25, frozen, VisRank (max), reaches" in box
    shot = screenshot.screenshot(index, tmp_path / "index.png", width=1200, height=1600)
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert px.shape == (1600, 1200, 3)
    grey = px.mean(axis=2)
    assert grey.std() > 20 and (grey < 128).mean() > 0.01  # text, tables and figures, not a blank page
    top = px[:500]  # the box's pale blue (#f6f9fe) fills much of the first screen
    assert (np.abs(top - np.array([246, 249, 254])).max(axis=2) <= 2).mean() > 0.2
    # the shared notebook pages show no code input; the with-code variant does
    code_input = re.compile(r'class="[^"]*\b(jp-InputArea-editor|highlight hl-ipython3)\b')  # a code cell's input
    for nb in runner.NOTEBOOKS:
        dom = screenshot.rendered_dom(out / "reports" / f"{nb}.html")
        assert not code_input.search(dom) and "from visrec_utils" not in dom, nb
    with_code = (out / "reports" / "with_code" / "02_embedding_extraction.html").read_text()
    assert code_input.search(with_code) and "stages.extract(" in re.sub(r"<[^>]+>", "", with_code)  # code as text


@pytest.mark.slow
def test_metrics_table_has_the_expected_rows(slice_run):
    out, _ = slice_run
    m = pd.read_csv(out / "results" / "metrics.csv")
    assert list(m.columns) == ["model", "strategy", "recommender", "metric", "k", "value", "ci_low", "ci_high",
                               "n_users", "protocol", "availability", "leaky"]
    configs = {tuple(r) for r in m[["model", "strategy", "recommender"]].drop_duplicates().to_numpy()}
    model = runner.SLICE_PARAMS["models"][0]
    baselines = {("-", "-", b) for b in ("random", "popularity", "popularity_30d", "itemknn", "bpr_mf")}
    strategies = ("frozen", "bpr_projection", "partial_bpr", "proxy_metadata", "contrastive")
    assert configs == {(model, s, r) for s in strategies
                       for r in ("visrank_max", "visrank_mean", "visrank_top3", "hybrid_itemknn_visrank")} | baselines \
        | {(model, "frozen", "vbpr")}  # VBPR: frozen sets of whole models only
    for _, g in m.groupby(["model", "strategy", "recommender"]):
        assert set(map(tuple, g[["metric", "k"]].to_numpy())) == EXPECTED_METRICS
    with_ci = m[m["metric"] != "coverage"]  # coverage: one number per configuration, no interval
    assert (with_ci["ci_low"] <= with_ci["value"] + 1e-12).all() and (with_ci["value"] <= with_ci["ci_high"] + 1e-12).all()
    assert m.loc[m["metric"] == "coverage", "ci_low"].isna().all()
    assert m["n_users"].nunique() == 1 and m["n_users"].iloc[0] > 25
    auc = m[(m["metric"] == "auc")].set_index(["strategy", "recommender"])["value"]
    assert auc[("frozen", "visrank_max")] > auc[("-", "random")] + 0.05
    models = pd.read_csv(out / "results" / "models.csv")
    assert models.loc[0, "measured_top1"] > 40 and models.loc[0, "n_imagenet"] == 200
    paired = pd.read_csv(out / "results" / "paired_vs_reference.csv")
    assert set(paired["reference"]) == {"-/-/random"} and len(paired) == (len(configs) - 1) * len(PER_USER_METRICS)
    assert (paired["p_holm"] >= paired["wilcoxon_p"] - 1e-12).all()
    assert set(paired["verdict"]) <= set(stats.VERDICTS) and set(paired["family"]) <= {"primary", "secondary"}
    # never "no detectable difference" next to an interval that excludes zero
    excludes = (paired["ci_low"] > 0) | (paired["ci_high"] < 0)
    assert not (excludes & (paired["verdict"] == "no detectable difference")).any()


@pytest.mark.slow
def test_fine_tuning_table_figures_and_generated_summary(slice_run):
    out, _ = slice_run
    paired = pd.read_csv(out / "results" / "finetune_vs_frozen.csv")
    tuned = {"bpr_projection", "partial_bpr", "proxy_metadata", "contrastive"}
    assert set(paired["strategy"]) == tuned
    assert paired["reference"].str.endswith("/frozen/visrank_max").all()
    assert (paired["p_holm"] >= paired["wilcoxon_p"] - 1e-12).all()
    html = (out / "reports" / "03_fine_tuning.html").read_text()
    auc = paired[paired["metric"] == "auc"].set_index("strategy")
    for strategy in tuned:  # the generated summary quotes each strategy's AUC difference
        assert f"<code>{strategy}</code>" in html and f"{auc.loc[strategy, 'mean_diff']:+.4f}" in html
    cost = pd.read_csv(out / "results" / "finetune_cost.csv").set_index("strategy")
    assert (cost.loc[list(tuned), "train_seconds"] > 0).all()
    curves = pd.read_csv(out / "results" / "stage_learning_curves.csv")
    assert set(curves["strategy"]) == tuned - {"bpr_projection"} and curves["step"].max() <= 24
    for fig in ("stage_learning_curves", "finetune_auc", "finetune_ndcg20"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000


@pytest.mark.slow
def test_every_protocol_breakdown_and_sensitivity_table_is_written(slice_run):
    out, _ = slice_run
    by_p = pd.read_csv(out / "results" / "metrics_protocols.csv")
    assert set(by_p["protocol"]) == PROTOCOLS
    assert by_p.groupby("protocol")["leaky"].first().to_dict()["random_holdout"]
    assert not by_p.loc[by_p["protocol"] != "random_holdout", "leaky"].any()
    # sets trained on purchases saw leave-last-basket-out training data: never evaluated under other protocols
    others = set(by_p.loc[by_p["protocol"] != "leave_last_basket_out", "strategy"])
    assert others == {"frozen", "proxy_metadata", "contrastive", "-"}
    paired = pd.read_csv(out / "results" / "paired_protocols.csv")
    assert set(paired["protocol"]) == PROTOCOLS
    cw = pd.read_csv(out / "results" / "metrics_cold_warm.csv")
    assert set(cw["truth"]) == {"cold", "warm"}
    sens = pd.read_csv(out / "results" / "metrics_availability.csv")
    assert sens["availability"].str.contains("LEAKY").any() and sens["availability"].str.contains("whole").any()
    assert (out / "figures" / "protocols_auc.png").stat().st_size > 5000


@pytest.mark.slow
def test_slice_metrics_match_the_stored_baseline(slice_run):
    out, _ = slice_run
    metrics = pd.read_csv(out / "results" / "metrics.csv")
    baseline = pd.read_csv(runner.BASELINE_FILE)
    diff = runner.compare_to_baseline(metrics, baseline)
    recorded = json.loads(runner.BASELINE_FILE.with_name("slice_versions.json").read_text())
    now = json.loads((out / "results" / "run.json").read_text())["versions"]
    moved = {k: (v, now.get(k)) for k, v in recorded.items() if now.get(k) != v}
    assert diff.empty, (
        f"{len(diff)} metric row(s) differ from {runner.BASELINE_FILE} by more than "
        f"{runner.BASELINE_ATOL} x max(1, |baseline|):\n{diff.to_string()}\n"
        f"Libraries that differ from the baseline's (recorded, now): {moved or 'none'}.\n"
        "If the change is intended, refresh the baseline with 'make baseline' and commit it.")


def test_baseline_comparison_reports_changed_rows():
    baseline = pd.read_csv(runner.BASELINE_FILE)
    assert runner.compare_to_baseline(baseline, baseline).empty
    changed = baseline.copy()
    changed.loc[3, "value"] += 0.01
    diff = runner.compare_to_baseline(changed, baseline)
    assert len(diff) == 1 and diff.iloc[0]["metric"] == baseline.loc[3, "metric"]
    assert len(runner.compare_to_baseline(baseline.iloc[1:], baseline)) == 1
    # the tolerance is absolute up to 1 and relative above: novelty (bits, ~5) may move 2.5e-3
    # between CPUs, an AUC may not
    nov = baseline.index[baseline["metric"].eq("novelty")][0]
    auc = baseline.index[baseline["metric"].eq("auc")][0]
    moved = baseline.copy()
    moved.loc[nov, ["value", "ci_high"]] += 0.004
    assert runner.compare_to_baseline(moved, baseline).empty
    moved.loc[nov, "value"] += 0.02
    moved.loc[auc, "value"] += 0.0025
    diff = runner.compare_to_baseline(moved, baseline)
    assert sorted(diff["metric"]) == ["auc", "novelty"]


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_notebooks_are_thin_parameterised_and_stored_without_outputs(name):
    nb = nbformat.read(runner.NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "out_dir" in runner.notebook_parameters(name)
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None
            assert "def " not in c.source and "class " not in c.source  # logic lives in visrec_utils


def test_unknown_parameter_or_model_fails_before_any_notebook(tmp_path):
    with pytest.raises(ValueError, match="Unknown parameter.*max_user"):
        runner.run_study({"max_user": 5}, tmp_path)
    with pytest.raises(KeyError, match="mobilenetv1_025_keras"):
        runner.run_study({"models": ["mobilenet_v1"]}, tmp_path)
    assert not (tmp_path / "reports").exists()


def test_a_study_without_any_usable_model_stops_with_the_reasons(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    pd.DataFrame({"model": ["resnet18"], "status": ["skipped"], "reason": ["hub unreachable"]}).to_csv(
        tmp_path / "results" / "models.csv", index=False)
    with pytest.raises(runner.StudyError, match="no model produced embeddings"):
        runner._report_models(tmp_path)
    assert "skipped model resnet18: hub unreachable" in capsys.readouterr().out


def test_cli_reports_a_missing_dataset(tmp_path, monkeypatch, capsys):
    from visrec_utils.__main__ import main

    assert main(["study", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"visrec: error: --data / data_dir: {(tmp_path / 'nope').resolve()} does not exist; name the "
                          "catalogue folder.") and "transactions_train.csv" in err


def test_cli_passes_any_notebook_parameter_as_yaml(tmp_path, monkeypatch):
    from visrec_utils import __main__ as cli

    seen = {}
    monkeypatch.setattr(runner, "run_study", lambda params, out, **kw: seen.update(params, **kw) or {"total_seconds": 0})
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path), "-p", "reference", "-/-/popularity",
                     "-p", "ks", "[10, 20]", "--param", "keep_flagged", "true", "--rerun",
                     "-p", "temporal_cut", "2020-06-01"]) == 0
    assert seen["reference"] == "-/-/popularity" and seen["ks"] == [10, 20] and seen["keep_flagged"] is True
    assert seen["temporal_cut"] == "2020-06-01"  # a date, as the notebook takes it (YAML would make it a date)
    assert seen["reuse"] is False


def test_parameters_are_checked_against_the_cells_annotations(tmp_path, capsys):
    from visrec_utils import __main__ as cli

    runner.check_parameters({"ks": [5, 10], "max_users": None, "temporal_cut": 1, "keep_flagged": False})
    runner.check_parameters({"max_steps": 20})  # Union[int, dict]: either fits
    runner.check_parameters({"max_steps": {"partial_bpr": 100}})
    with pytest.raises(ValueError, match=r"max_steps='many' must be Union\[int, dict\]"):
        runner.check_parameters({"max_steps": "many"})
    with pytest.raises(ValueError, match=r"keep_flagged='maybe' must be bool \(notebook 05_imagenet_vs_transfer"):
        runner.check_parameters({"keep_flagged": "maybe"})
    with pytest.raises(ValueError, match="n_resamples='abc' must be int"):
        runner.run_study({"n_resamples": "abc"}, tmp_path)  # before any notebook runs
    assert not (tmp_path / "reports").exists()
    with pytest.raises(ValueError, match="keep_fla \\(did you mean keep_flagged\\?\\)"):
        runner.check_parameters({"keep_fla": True})
    assert cli.main(["study", "--data", "demo", "--out", str(tmp_path), "-p", "ks", "[5,"]) == 2
    assert "-p ks: '[5,' is not a YAML value" in capsys.readouterr().err


def test_a_failed_notebook_is_not_reused_by_the_next_run(tmp_path, monkeypatch):
    calls = []

    def fake_run(nb, params, out_dir, log_output=False, **kw):  # writes reports and an output, like a notebook
        calls.append(nb)
        (out_dir / "reports").mkdir(parents=True, exist_ok=True)
        for ext in (".ipynb", ".html"):
            (out_dir / "reports" / f"{nb}{ext}").write_text("report")
        (out_dir / "results").mkdir(exist_ok=True)
        (out_dir / "results" / f"{nb}.csv").write_text("a\n1\n")
        if nb == runner.NOTEBOOKS[1] and params.get("umap_points") == 1:
            raise runner.StudyError("notebook failed")
        return {"notebook": nb, "seconds": 1.0, "parameters": {}}

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    monkeypatch.setattr(runner, "_report_models", lambda out: None)
    monkeypatch.setattr("visrec_utils.reports.index.write_index", lambda out, pending=(): out)
    nbs = runner.NOTEBOOKS[:3]
    runner.run_study({"data_dir": "demo"}, tmp_path, notebooks=nbs)
    with pytest.raises(runner.StudyError):
        runner.run_study({"data_dir": "demo", "umap_points": 1}, tmp_path, notebooks=nbs)
    assert json.loads((tmp_path / "results" / "run.json").read_text())["failed"] == nbs[1]
    calls.clear()
    runner.run_study({"data_dir": "demo"}, tmp_path, notebooks=nbs)
    assert calls == [nbs[1]]  # 01 reused; the failed 02 runs again; 03 reused (02's outputs are as before)


def test_output_digest_ignores_run_bookkeeping_columns(tmp_path):
    (tmp_path / "results").mkdir()
    table = tmp_path / "results" / "models.csv"
    table.write_text("model,dim,seconds,cache_hit,train_seconds\nm,256,12.5,False,3.1\n")
    first = runner._outputs_digest(tmp_path, ["results/models.csv"])
    table.write_text("model,dim,seconds,cache_hit,train_seconds\nm,256,0.1,True,0.0\n")  # a warm rerun
    assert runner._outputs_digest(tmp_path, ["results/models.csv"]) == first
    table.write_text("model,dim,seconds,cache_hit,train_seconds\nm,512,0.1,True,0.0\n")  # a finding changed
    assert runner._outputs_digest(tmp_path, ["results/models.csv"]) != first
    assert runner._outputs_digest(tmp_path, ["results/missing.csv"]) is None


# --- every layout through every notebook -------------------------------------------------

@pytest.fixture(scope="module")
def generic_run(tmp_path_factory):
    from catalogues import write_generic

    folder = tmp_path_factory.mktemp("generic_catalogue")
    write_generic(folder)
    out = tmp_path_factory.mktemp("generic_study")
    runner.run_study({"data_dir": str(folder), "models": ["mobilenetv1_025_keras"], "imagenet_dir": ""}, out)
    return out


@pytest.mark.slow
def test_generic_catalogue_with_bad_images_completes(generic_run):
    from catalogues import BAD_IMAGES

    out = generic_run
    bad = pd.read_csv(out / "results" / "unreadable_images.csv")
    expected = {name.split(".")[0]: why for name, why in BAD_IMAGES.items()}
    assert set(bad["item_id"]) == set(expected)  # one reported reason per bad file
    for row in bad.itertuples():
        assert expected[row.item_id] in row.reason
    from visrec_utils.catalogue.data import load_study_catalogue
    from visrec_utils.features.embedding_sets import load_embedding_sets

    prepared = pd.read_parquet(out / "data" / "items.parquet")  # notebook 01's output, never rewritten later
    assert set(expected) <= set(prepared["item_id"])
    cat = load_study_catalogue(out)  # what notebooks 03-05 read: without the unreadable images' items
    report = cat.report.set_index("check")
    assert report.loc["unreadable images", "count"] == 3
    assert report.loc["duplicate rows (same user, item, timestamp)", "count"] == 2
    items = cat.items
    assert not set(expected) & set(items["item_id"])
    emb = load_embedding_sets(out)[("mobilenetv1_025_keras", "frozen")]
    assert emb.shape == (len(items), 256) and np.isfinite(emb).all()
    m = pd.read_csv(out / "results" / "metrics.csv")
    assert {"frozen", "bpr_projection"} <= set(m["strategy"]) and m["value"].notna().all()
    html = (out / "reports" / "02_embedding_extraction.html").read_text()
    assert "bad_trunc" in html and "truncated" in html


@pytest.mark.slow
def test_ugallery_catalogue_runs_on_its_embeddings(tmp_path_factory):
    from catalogues import write_ugallery

    folder = tmp_path_factory.mktemp("ugallery")
    write_ugallery(folder)
    out = tmp_path_factory.mktemp("ugallery_study")
    runner.run_study({"data_dir": str(folder), "models": ["mobilenetv1_025_keras"], "imagenet_dir": ""}, out)
    models = pd.read_csv(out / "results" / "models.csv").set_index("model")
    assert models.loc["ugallery_resnet50", "status"] == "precomputed"
    assert models.loc["mobilenetv1_025_keras", "status"] == "skipped"
    assert "no images" in models.loc["mobilenetv1_025_keras", "reason"]
    m = pd.read_csv(out / "results" / "metrics.csv")
    auc = m[(m["metric"] == "auc")].set_index(["model", "strategy", "recommender"])["value"]
    # the test catalogue's buyers stick to one artist cluster: the embeddings must beat random
    assert auc[("ugallery_resnet50", "frozen", "visrank_max")] > auc[("-", "-", "random")] + 0.1
    assert "skipped mobilenetv1_025_keras" in (out / "reports" / "05_imagenet_vs_transfer.html").read_text()


@pytest.mark.slow
def test_demo_catalogue_runs_and_every_report_says_synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_study")
    figs = out / "repo_figures"
    runner.run_study({"data_dir": "demo", "models": ["mobilenetv1_025_keras"], "imagenet_dir": ""}, out,
                     figures_to=figs)
    assert not figs.exists()  # synthetic figures never replace a repository's real ones
    for name in runner.NOTEBOOKS:
        assert "SYNTHETIC DATA" in (out / "reports" / f"{name}.html").read_text(), name
    m = pd.read_csv(out / "results" / "metrics.csv")
    auc = m[(m["metric"] == "auc")].set_index(["model", "strategy", "recommender"])["value"]
    assert auc[("mobilenetv1_025_keras", "frozen", "visrank_max")] > auc[("-", "-", "random")]


@pytest.mark.slow
def test_a_rerun_skips_notebooks_whose_inputs_did_not_change(slice_run, tmp_path):
    import shutil

    out, record = slice_run
    copy = tmp_path / "moved"
    shutil.copytree(out, copy)  # a moved output folder stays valid
    params = {k: v for k, v in record["parameters"].items() if k != "out_dir"}

    def ran(rec):
        return [r["notebook"][:2] for r in rec["notebooks"] if not r["reused"]]

    assert ran(runner.run_study(params, copy)) == []
    # one parameter of notebook 05: only 05 runs
    again = runner.run_study({**params, "keep_flagged": True}, copy)
    assert ran(again) == ["05"]
    assert [r["seconds"] for r in again["notebooks"][:4]] == [r["seconds"] for r in record["notebooks"][:4]]
    # an output changed on disk: its notebook runs again; unchanged downstream inputs keep the rest
    with open(copy / "results" / "correlations.csv", "a") as f:
        f.write("edited by hand\n")
    assert ran(runner.run_study({**params, "keep_flagged": True}, copy)) == ["05"]
    assert "edited by hand" not in (copy / "results" / "correlations.csv").read_text()
    assert (copy / "reports" / "index.html").read_text().count("reused: inputs unchanged") == 5  # 01-04 and 06
    first = {k: params[k] for k in runner.notebook_parameters(runner.NOTEBOOKS[0]) if k in params}
    assert ran(runner.run_study(first, copy, notebooks=runner.NOTEBOOKS[:1], reuse=False)) == ["01"]


@pytest.mark.parametrize("stage", [s.name for s in __import__("visrec_utils.pipeline.stages", fromlist=["STAGES"]).STAGES])
def test_each_notebook_is_its_parameters_one_stage_call_and_display_cells(stage):
    import inspect

    from visrec_utils.pipeline import stages

    s = stages.get_stage(stage)
    nb = nbformat.read(runner.NOTEBOOK_DIR / f"{s.notebook}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert code.count(f"stages.{s.name}(") == 1  # one call, the notebook's own stage
    assert not [o.name for o in stages.STAGES if o.name != s.name and f"stages.{o.name}(" in code]
    # every notebook parameter is a parameter of the stage function: the CLI and the notebook run the same call
    assert set(runner.notebook_parameters(s.notebook)) <= set(inspect.signature(s.run).parameters)


def test_unknown_registry_names_fail_before_any_notebook(tmp_path):
    with pytest.raises(ValueError, match=r"^parameter strategies: Unknown fine-tuning strategy 'bpr_projectin'; "
                                         r"did you mean 'bpr_projection'\?"):
        runner.run_study({"strategies": ["bpr_projectin"]}, tmp_path)
    with pytest.raises(ValueError, match=r"^parameter baselines: unknown recommender 'popularty'; choose from .*"
                                         r"\(did you mean 'popularity'\?\)"):
        runner.run_study({"baselines": ["random", "popularty"]}, tmp_path)
    with pytest.raises(ValueError, match=r"^parameter other_protocols: unknown protocol 'replay_al'"):
        runner.run_study({"other_protocols": ["replay_al"]}, tmp_path)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "data").exists()
