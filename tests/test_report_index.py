"""The run's front page (``reports/index.html``) rendered from its Jinja2 template, on a tiny fake output folder."""
import html
import json
import re

import pandas as pd
from markupsafe import escape
from PIL import Image

from visrec_utils.reports import captions, index


def _fake_run(out, with_metrics=True):
    (out / "results" / "skipped").mkdir(parents=True)
    (out / "reports").mkdir()
    (out / "figures").mkdir()
    (out / "data").mkdir()
    (out / "results" / "run.json").write_text(json.dumps({
        "total_seconds": 125.4, "started": "2026-01-02 <b>03:04</b>",
        "parameters": {"max_users": 20, "data_dir": "/data/<shop>"},
        "versions": {"python": "3.11", "torch": "2.5 <gpu>"},
        "notebooks": [{"notebook": "01_data_prep", "seconds": 12.3},
                      {"notebook": "02_embedding_extraction", "seconds": 40.0, "reused": True}]}))
    (out / "data" / "catalogue.json").write_text(json.dumps({
        "name": "shop <script>alert(1)</script>", "synthetic": True, "n_users": 20,
        "summary": {"n_items": 60}, "notes": ["3 rows dropped: <empty user id>"]}))
    for nb in ("01_data_prep", "02_embedding_extraction"):
        (out / "reports" / f"{nb}.html").write_text("<html></html>")
    (out / "reports" / "with_code").mkdir()
    (out / "reports" / "with_code" / "01_data_prep.html").write_text("<html></html>")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out / "figures" / "models_ndcg20.png")
    pd.DataFrame([{"notebook": "04_recommendation_eval", "part": "cold/warm", "reason": "too few <users>."}]).to_csv(
        out / "results" / "skipped" / "04_recommendation_eval.csv", index=False)
    if with_metrics:
        rows = []
        for model, strategy, rec in (("mobilenetv1_025_keras", "frozen", "visrank_max"), ("-", "-", "random")):
            rows.append({"model": model, "strategy": strategy, "recommender": rec, "metric": "auc", "k": None,
                         "value": 0.61234, "ci_low": 0.6, "ci_high": 0.62})
            rows.append({"model": model, "strategy": strategy, "recommender": rec, "metric": "ndcg", "k": 20,
                         "value": 0.1, "ci_low": 0.05, "ci_high": 0.15})
        pd.DataFrame(rows).to_csv(out / "results" / "metrics.csv", index=False)
        pd.DataFrame({"model": ["mobilenetv1_025_keras"], "published_top1": [50.6], "measured_top1": [48.0]}).to_csv(
            out / "results" / "models.csv", index=False)


def test_index_page_shows_the_run_and_escapes_values(tmp_path):
    _fake_run(tmp_path)
    page = index.write_index(tmp_path).read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    links = re.findall(r'(?:href|src)=["\']([^"\']+)["\']', page)
    assert [link for link in links if link.endswith(".html")] == ["01_data_prep.html", "with_code/01_data_prep.html",
                                                                   "02_embedding_extraction.html"]
    assert all(link.startswith("data:image/png;base64,") or (tmp_path / "reports" / link).is_file()
               for link in links if not link.endswith(".csv"))
    assert "(12 s)" in page and page.count("reused: inputs unchanged") == 1
    assert "This run took 125 s (1 of 2 notebooks reused, their earlier run times shown), started" in page
    # the answer box comes first: the facts and the generated sentences, before any table
    box = page.index('<section class="answer"')
    assert box < page.index("<h2>Key results</h2>") < page.index("<h2>Notebooks</h2>")
    assert "<dt>Catalogue</dt><dd>shop &lt;script&gt;alert(1)&lt;/script&gt;</dd>" in page
    assert "Ranked by nDCG@20, the best ImageNet model, MobileNet-V1 0.25, frozen, VisRank (max), reaches 0.100 against 0.100" in page
    assert "<dt>AUC</dt>" in page  # the glossary
    # the key table: grouped, labelled in words, three significant figures
    groups = re.findall(r'<tr class="group"><th colspan="\d+">([^<]+)</th>', page)
    assert groups == ["ImageNet models, highest top-1 first", "baselines (no images)"]
    assert "<td>MobileNet-V1 0.25</td>" in page and "<td>random</td>" in page and "<td>50.6</td>" in page
    assert "0.612 [0.600, 0.620]" in page and "0.100 [0.0500, 0.150]" in page and "baseline: random" not in page
    assert "<h2>Skipped parts</h2>" in page and "<td>too few &lt;users&gt;.</td>" in page
    assert "<td>too few <users>.</td>" in html.unescape(page)
    assert pd.read_csv(tmp_path / "results" / "skipped.csv")["part"].tolist() == ["cold/warm"]
    assert f"<figcaption>{escape(captions.caption('models_ndcg20'))} " in page
    assert "<figcaption>models_ndcg20.png</figcaption>" not in page
    assert "SYNTHETIC demo catalogue" in page and "the whole catalogue: they count rows" in page
    assert "<details><summary>Parameters</summary>" in page and "<details><summary>Versions and hardware</summary>" in page
    assert "hardware: cores" in page
    assert (tmp_path / "results" / "answer.md").read_text().startswith("**SYNTHETIC demo catalogue")
    # every value from the run is escaped: no markup from a file reaches the page
    for raw in ("<script>", "<b>03:04</b>", "<shop>", "<gpu>", "<empty user id>"):
        assert raw not in page
    for escaped in ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;b&gt;03:04&lt;/b&gt;", "&lt;empty user id&gt;",
                    "2.5 &lt;gpu&gt;"):
        assert escaped in page, escaped


def test_index_page_leaves_out_what_the_run_did_not_produce(tmp_path):
    _fake_run(tmp_path, with_metrics=False)
    (tmp_path / "results" / "run.json").unlink()
    page = index.write_index(tmp_path).read_text()
    assert "Key results" not in page and "This run took" not in page and "Parameters</summary>" not in page
    assert "No recommendation result yet" in page
    assert "Reproduction of del Rio" not in page and "Model card" not in page and "Beyond top-1" not in page
    assert "<h2>Skipped parts</h2>" in page and "01_data_prep.html" in page and "(12 s)" not in page
    empty = tmp_path / "empty"
    page = index.write_index(empty).read_text()
    assert "Versions and hardware</summary>" in page and "<h2>Notebooks</h2>" in page and "Skipped parts" not in page


def test_a_study_in_progress_is_marked_until_its_last_notebook(tmp_path):
    _fake_run(tmp_path, with_metrics=False)  # notebooks 01-02 done; an earlier run's 04 page still on disk
    (tmp_path / "reports" / "04_recommendation_eval.html").write_text("<html>an earlier run</html>")
    pending = ["03_fine_tuning", "04_recommendation_eval", "05_imagenet_vs_transfer"]
    page = index.write_index(tmp_path, pending=pending).read_text()
    assert ('<p class="in-progress">Study in progress: 2 of 5 notebooks done; this page is rewritten after each '
            "notebook (reload it to see more).</p>") in page
    assert page.index('class="in-progress"') < page.index('<section class="answer"')
    items = re.findall(r"<li>(.*?)</li>", page[page.index("<h2>Notebooks</h2>"):])
    assert items == ['<a href="01_data_prep.html">01_data_prep</a> (<a href="with_code/01_data_prep.html">with code</a>) '
                     "(12 s)", '<a href="02_embedding_extraction.html">02_embedding_extraction</a> (reused: inputs '
                     "unchanged since its run of 40 s)", "03_fine_tuning (not run yet)",
                     "04_recommendation_eval (not run yet)", "05_imagenet_vs_transfer (not run yet)"]
    assert "No recommendation result yet" in page and "models_ndcg20.png" in page  # what is there already shows
    final = index.write_index(tmp_path).read_text()  # the runner's last write: no banner
    assert "Study in progress" not in final and "not run yet" not in final and 'href="04_recommendation_eval.html"' in final


def test_a_failed_notebook_is_marked_and_the_page_no_longer_says_in_progress(tmp_path):
    _fake_run(tmp_path, with_metrics=False)
    run = json.loads((tmp_path / "results" / "run.json").read_text())
    run["failed"] = "03_fine_tuning"  # as runner.run_study records it
    run["notebooks"].append({"notebook": "03_fine_tuning", "failed": True})
    (tmp_path / "results" / "run.json").write_text(json.dumps(run))
    (tmp_path / "reports" / "03_fine_tuning.html").write_text("<html>the cells up to the error</html>")
    for pending in (["04_recommendation_eval"], []):  # the runner's write at the failure; a later hand-made one
        page = index.write_index(tmp_path, pending=pending).read_text()
        assert ('<p class="in-progress failed">Study stopped: 03_fine_tuning failed (its page shows the cells up to '
                "the error, and the terminal or reports/logs the cause).") in page
        assert "Study in progress" not in page
        items = re.findall(r"<li>(.*?)</li>", page[page.index("<h2>Notebooks</h2>"):])
        assert items[2] == '<a href="03_fine_tuning.html">03_fine_tuning</a> (failed)'
        assert items[3:] == ["04_recommendation_eval (not run yet)"] * len(pending)


def test_the_template_ships_as_package_data():
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    assert (repo / "visrec_utils" / "reports" / "templates" / index.TEMPLATE).is_file()
    data = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert f"templates/{index.TEMPLATE}" in data["visrec_utils.reports"] or "templates/*.j2" in data["visrec_utils.reports"]


def test_index_shows_the_scorecard_model_card_and_readings_escaped(tmp_path):
    from visrec_utils.reports import model_card

    _fake_run(tmp_path)
    pd.DataFrame([{"claim_id": "a", "claim": "Better top-1 <not always> better", "verdict": "reproduced",
                   "evidence": "A against B: AUC -0.0147", "reason": ""},
                  {"claim_id": "x", "claim": "NASNet vs ResNet", "verdict": "not testable here", "evidence": "",
                   "reason": "Why: no NASNet in the run."}]).to_csv(tmp_path / "results" / "scorecard.csv", index=False)
    models = pd.DataFrame({"model": ["mobilenetv1_025_keras"], "status": ["ok"], "published_top1": [50.6],
                           "n_params": [213072], "gflops": [0.0815], "input_size": [224], "dim": [256],
                           "pretrain_data": ["ImageNet-1k"], "extract_images_per_s": [519.234],
                           "extract_peak_rss_gib": [2.5]})
    metrics = pd.read_csv(tmp_path / "results" / "metrics.csv").fillna({"k": 0})
    model_card.model_card(models, metrics).to_csv(tmp_path / "results" / "model_card.csv", index=False)
    (tmp_path / "results" / "readings.json").write_text(json.dumps({"power_text": "With 4 models <p> ...",
                                                                    "card_text": ""}))
    page = index.write_index(tmp_path).read_text()
    assert page.index("Reproduction of del Rio") < page.index("Key results") < page.index("Model card")
    assert "Better top-1 &lt;not always&gt; better" in page and "Why: no NASNet in the run." in page
    row = re.search(r"<td>mobilenetv1_025_keras</td>(.*?)</tr>", page, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == ["50.6", "0.213", "0.0815", "224", "256", "ImageNet-1k", "519", "2.50", "0.612 [0.600, 0.620]",
                     "0.100 [0.0500, 0.150]"]  # no measured top-1 in any row: no column for it
    assert "<p>With 4 models &lt;p&gt; ...</p>" in page
