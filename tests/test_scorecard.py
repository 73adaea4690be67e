"""The reproduction scorecard (reports/scorecard.py) on small hand-made result folders: every
verdict of every claim, reached by values whose verdict is known by hand."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from visrec_utils.evaluation import stats
from visrec_utils.reports import labels, scorecard

N = 200
SIZE = "the catalogue has 31,662 purchases by 1,364 customers of 17,033 items"


def _folder(out):
    for d in ("results", "data"):
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / "data" / "catalogue.json").write_text(json.dumps(
        {"name": "shop", "summary": {"users": 1364, "items": 17033, "interactions": 31662}}))
    return out


def _models(out, shifts: dict, top1: dict):
    """per_user.parquet of frozen VisRank (max) per model: AUC and nDCG@20 = a common base + the
    model's shift + noise that is +x for half the customers and -x for the other (so a pair's
    mean difference is exactly the difference of the shifts, and with equal shifts every
    difference is symmetric: Wilcoxon p = 1); imagenet_vs_transfer.csv with the models' top-1."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.7, N), rng.uniform(0.0, 0.1, N)
    frames = []
    for i, (model, (d_auc, d_nd)) in enumerate(shifts.items()):
        x = rng.permutation(np.linspace(0.001, 0.02, N // 2)) * (i + 1)
        noise = np.concatenate([x, -x])
        frames.append(pd.DataFrame({"user_id": np.arange(N), "model": model, "strategy": "frozen",
                                    "recommender": "visrank_max", "auc": base[0] + d_auc + noise,
                                    "ndcg@20": base[1] + d_nd + noise}))
    pd.concat(frames).to_parquet(out / "results" / "per_user.parquet", index=False)
    pd.DataFrame({"model": list(top1), "published_top1": list(top1.values())}).to_csv(
        out / "results" / "imagenet_vs_transfer.csv", index=False)


def _card(out):
    return scorecard.reproduction_scorecard(out).set_index("claim_id")


def test_a_higher_top1_model_that_ranks_worse_reproduces_claim_a_and_the_paper_example(tmp_path):
    out = _folder(tmp_path)
    _models(out, {"nasnetalarge": (-0.05, 0.0), "resnet50": (0.0, 0.0)}, {"nasnetalarge": 82.5, "resnet50": 76.1})
    card = _card(out)
    pu = pd.read_parquet(out / "results" / "per_user.parquet").set_index(["model", "user_id"])
    d = (pu.loc["nasnetalarge", "auc"] - pu.loc["resnet50", "auc"]).to_numpy()
    assert d.mean() == pytest.approx(-0.05) and (d < 0).all()
    p_auc = sps.wilcoxon(d, method="asymptotic").pvalue
    holm_p = multipletests([p_auc, 1.0], method="holm")[1][0]  # AUC and nDCG@20 of the one pair
    for claim in ("a", "a, example"):
        r = card.loc[claim]
        assert r.verdict == "reproduced" and r.reason == ""
        assert r.evidence.startswith(f"nasnetalarge (top-1 82.5) against resnet50 (76.1): AUC -0.0500 [")
        assert r.evidence.endswith(f", Holm p = {labels.sig3(holm_p)}; 1 of 2 comparisons (1 pair x 2 metrics) have "
                                   "the higher top-1 model significantly worse.")
        assert r.evidence_rows.endswith("nasnetalarge vs resnet50 (frozen/visrank_max) auc@0 worse; nasnetalarge vs "
                                        "resnet50 (frozen/visrank_max) ndcg@20 no detectable difference")


def test_a_ranking_that_follows_top1_refutes_claim_a_and_one_that_ties_establishes_nothing(tmp_path):
    out = _folder(tmp_path)
    shifts = {"vgg19": (0.1, 0.02), "resnet50": (0.05, 0.01), "mobilenetv2_100": (0.0, 0.0)}
    _models(out, shifts, {"vgg19": 80.0, "resnet50": 76.1, "mobilenetv2_100": 72.0})
    card = _card(out)
    assert card.loc["a", "verdict"] == "not reproduced"
    assert card.loc["a", "evidence"].startswith("Every higher-top-1 model is significantly better on both primary "
                                                "metrics (6 comparisons); the weakest: ")
    assert card.loc["a, example", "verdict"] == "not testable here"
    assert card.loc["a, example", "reason"].startswith("the run has no NASNet model: the paper's CNNs (model preset "
                                                       "'paper', e.g. nasnetalarge, resnet50) need their weights from "
                                                       "the model hub")
    _models(out, {"vgg19": (0.001, 0), "resnet50": (0, 0)}, {"vgg19": 72.4, "resnet50": 76.1})  # ~equal
    r = _card(out).loc["a"]
    assert r.verdict == "not established"
    assert r.evidence.startswith("Closest to an inversion: resnet50 (top-1 76.1) against vgg19 (72.4), AUC -0.00100 [")
    assert r.reason == ("no higher-top-1 model is significantly worse after Holm's correction, and 2 of 2 comparisons "
                        "do not tell the two models apart either way")


def test_claim_a_is_not_testable_with_one_imagenet_model_or_without_per_user_results(tmp_path):
    out = _folder(tmp_path)
    _models(out, {"resnet50": (0, 0), "resnet50@stage3": (0.1, 0.1), "handcrafted": (0.1, 0.1)},
            {"resnet50": 76.1, "resnet50@stage3": 76.1, "handcrafted": np.nan})
    card = _card(out)
    assert list(card["verdict"]) == ["not testable here"] * 4
    assert card.loc["a", "reason"] == ("needs two ImageNet models with different published top-1 and "
                                       "frozen/visrank_max results; this run has 1")
    (out / "results" / "per_user.parquet").unlink()
    card = _card(out)
    assert card.loc["a", "reason"] == card.loc["a, example", "reason"] == \
        "results/per_user.parquet is missing (the run has not written it yet)"
    assert card.loc["b", "reason"] == "results/finetune_vs_frozen.csv is missing (the run has not written it yet)"


def _finetune(out, rows):
    """finetune_vs_frozen.csv from ``(model, strategy, metric, mean_diff, ci_low, ci_high, wilcoxon_p)``,
    judged by stats.holm as the study does; returns the judged table."""
    table = pd.DataFrame([{"model": m, "strategy": s, "recommender": "visrank_max", "metric": metric,
                           "k": 0 if metric == "auc" else 20, "reference": f"{m}/frozen/visrank_max", "mean_diff": d,
                           "ci_low": lo, "ci_high": hi, "n_users": N, "n_nonzero": N, "wilcoxon_p": p}
                          for m, s, metric, d, lo, hi, p in rows])
    table = stats.holm(table)
    table.to_csv(out / "results" / "finetune_vs_frozen.csv", index=False)
    return table


def test_fine_tuning_that_helps_and_one_that_hurts_reproduce_b_and_c(tmp_path):
    out = _folder(tmp_path)
    rows = [("resnet50", "bpr_projection", "auc", 0.02, 0.01, 0.03, 1e-6),
            ("resnet50", "bpr_projection", "ndcg", 0.001, -0.002, 0.004, 0.5),
            ("resnet50", "contrastive", "auc", -0.03, -0.04, -0.02, 1e-5),
            ("resnet50", "contrastive", "ndcg", 0.0, -0.001, 0.001, 0.9),
            ("handcrafted", "bpr_projection", "auc", 0.09, 0.08, 0.1, 1e-12),  # a control: left out
            ("handcrafted", "bpr_projection", "ndcg", 0.0, -0.001, 0.001, 0.9)]
    _finetune(out, rows)
    pd.DataFrame([{"model": "resnet50", "strategy": "bpr_projection", "recommender": "visrank_max", "metric": "auc",
                   "k": np.nan, "value": 0.65, "ci_low": 0.64, "ci_high": 0.66}]).to_csv(
        out / "results" / "finetune_metrics.csv", index=False)
    holm_p = multipletests([r[-1] for r in rows], method="holm")[1]
    card = _card(out)
    assert card.loc["b", "verdict"] == "reproduced"
    assert card.loc["b", "evidence"] == (
        f"BPR projection on resnet50 against its frozen features: AUC +0.0200 [+0.0100, +0.0300], Holm p = "
        f"{labels.sig3(holm_p[0])} (fine-tuned AUC 0.650 [0.640, 0.660]); 1 of 2 fine-tuned sets of ImageNet "
        f"features improved, where {SIZE}.")
    assert card.loc["b", "evidence_rows"] == ("results/finetune_vs_frozen.csv (primary family): resnet50/bpr_projection/"
                                              "visrank_max auc@0 better; resnet50/bpr_projection/visrank_max ndcg@20 no "
                                              "detectable difference")
    assert card.loc["c", "verdict"] == "reproduced"
    assert card.loc["c", "evidence"] == (
        f"contrastive fine-tuning on resnet50 against its frozen features: AUC -0.0300 [-0.0400, -0.0200], Holm p = "
        f"{labels.sig3(holm_p[2])}; 1 of 4 primary comparisons are significantly worse.")


def test_fine_tuning_that_always_helps_refutes_c_and_one_that_never_does_refutes_b(tmp_path):
    out = _folder(tmp_path)
    _finetune(out, [("resnet50", "bpr_projection", "auc", 0.02, 0.01, 0.03, 1e-6),
                    ("resnet50", "bpr_projection", "ndcg", 0.002, 0.001, 0.003, 1e-4)])
    card = _card(out)
    assert (card.loc["b", "verdict"], card.loc["c", "verdict"]) == ("reproduced", "not reproduced")
    assert card.loc["c", "evidence"] == ("Every one of 1 fine-tuned sets of ImageNet features is significantly better "
                                         "on both primary metrics.")
    _finetune(out, [("resnet50", "bpr_projection", "auc", 0.001, -0.01, 0.012, 0.6),
                    ("resnet50", "bpr_projection", "ndcg", 0.0, -0.001, 0.001, 0.9)])
    card = _card(out)
    assert card.loc["b", "verdict"] == "not reproduced"
    assert card.loc["b", "evidence"] == (
        "No fine-tuned set of ImageNet features is better on a primary metric, not even before correction (1 sets); the "
        f"largest gain the intervals allow: BPR projection on resnet50, AUC +0.00100 [-0.0100, +0.0120], Holm p = "
        f"1.00; {SIZE}.")
    assert card.loc["c", "verdict"] == "not established"
    assert card.loc["c", "evidence"].startswith("Strategies with no significant gain on any primary metric: BPR "
                                                "projection (1 set(s)); the one whose interval allows the smallest "
                                                "gain: BPR projection on resnet50, nDCG@20 0 [-0.00100, +0.00100]")
    assert card.loc["c", "reason"].startswith("no fine-tuning is significantly worse than frozen features")


def test_a_hint_before_correction_establishes_neither_and_controls_alone_are_not_testable(tmp_path):
    out = _folder(tmp_path)
    _finetune(out, [("resnet50", "bpr_projection", "auc", 0.01, 0.001, 0.02, 0.03),
                    *[("resnet50", "bpr_projection", m, 0.0, -0.001, 0.001, 0.9) for m in ("ndcg",)],
                    *[(f"m{i}", "bpr_projection", "auc", 0.0, -0.01, 0.01, 0.9) for i in range(3)]])
    r = _card(out).loc["b"]
    assert r.verdict == "not established" and r.evidence.startswith(
        "Closest to a gain: BPR projection on resnet50, AUC +0.0100 [+0.00100, +0.0200], Holm p = 0.150")
    _finetune(out, [("handcrafted", "bpr_projection", "auc", 0.09, 0.08, 0.1, 1e-12)])
    card = _card(out)
    assert card.loc["b", "reason"] == card.loc["c", "reason"] == \
        "results/finetune_vs_frozen.csv has no primary comparison of fine-tuned ImageNet features"


def test_markdown_of_the_scorecard():
    table = pd.DataFrame([{"claim_id": "a", "claim": "Claim | one.", "paper": "abstract", "verdict": "reproduced",
                           "evidence": "AUC -0.05.", "evidence_rows": "x", "reason": ""},
                          {"claim_id": "b", "claim": "Claim two.", "paper": "abstract", "verdict": "not testable here",
                           "evidence": "", "evidence_rows": "", "reason": "no file"}])
    assert scorecard.scorecard_markdown(table) == (
        "| Claim of del Rio et al. 2018 | Verdict | Evidence |\n|---|---|---|\n"
        "| (a) Claim \\| one. | **reproduced** | AUC -0.05. |\n"
        "| (b) Claim two. | **not testable here** | Why: no file. |\n")
    with pytest.raises(ValueError, match="^a scorecard needs the columns claim_id, claim, paper, verdict, evidence, "
                                         "evidence_rows, reason \\(reproduction_scorecard\\); this one lacks reason$"):
        scorecard.scorecard_markdown(table.drop(columns="reason"))
