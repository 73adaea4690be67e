"""Reproduction scorecard: each claim of del Rio et al. 2018 judged from a finished run's tables.

del Rio, Messina, Dominguez & Parra 2018, "Do Better ImageNet Models Transfer Better... for Image
Recommendation?" (arXiv 1807.09870) conclude, on an artwork store's purchases, that (a) a model
with a higher ImageNet accuracy does not always give better recommendations (their example: NASNet
against ResNet), (b) fine-tuning can help even when the catalogue is small, and (c) not every way
of fine-tuning helps. :func:`reproduction_scorecard` gives each claim one verdict of
:data:`VERDICTS` with the numbers and the result rows it rests on; :func:`scorecard_markdown`
shows it to a reader.

Verdict rules (primary metrics AUC and nDCG@20, :data:`visrec_utils.evaluation.stats.PRIMARY`;
"significantly" means after Holm's correction at 5% within the comparisons of that claim, the
verdicts of :func:`visrec_utils.evaluation.stats.holm`):

* (a) Models are the ImageNet models of the run (:func:`visrec_utils.reports.labels.kind_of`:
  no layer variants, no controls) with a published top-1 (``results/imagenet_vs_transfer.csv``),
  each with frozen features and the run's recommender (``results/run.json``, else VisRank max).
  Every pair with different top-1 is compared per customer (``results/per_user.parquet``,
  :func:`~visrec_utils.evaluation.stats.paired_comparison`, the higher top-1 minus the lower),
  all pairs and both metrics Holm-corrected together. **reproduced**: some higher-top-1 model is
  significantly worse on a primary metric. **not reproduced**: every higher-top-1 model is
  significantly better on both primary metrics (the ranking follows top-1 everywhere). **not
  established**: neither (no significant inversion, but not every pair told apart).
  **not testable here**: fewer than two such models. Row (a, example) applies the same rule to
  the paper's own example, NASNet against ResNet, when both are in the run.
* (b) From ``results/finetune_vs_frozen.csv`` (each fine-tuned embedding set against the same
  model's frozen features, primary family, Holm as the run wrote it), ImageNet features only
  (ImageNet models and layer variants; controls left out). **reproduced**: some fine-tuned set is
  significantly better on a primary metric and significantly worse on none. **not reproduced**:
  no fine-tuned set is better on any primary metric, not even before correction. **not
  established**: otherwise (only hints before correction, or a gain on one metric with a loss on
  the other). The catalogue's size (``data/catalogue.json``) says how little data it was.
* (c) Same rows. **reproduced**: some fine-tuned set is significantly worse on a primary metric.
  **not reproduced**: every fine-tuned set is significantly better on both primary metrics.
  **not established**: otherwise; the evidence names the strategies without any significant gain,
  which this test cannot tell from gains too small to detect.

A missing result file does not raise: the claim's row says "not testable here" and its reason
names the file, so a partly finished run still gets a scorecard.
"""
from __future__ import annotations

import itertools
import logging

import pandas as pd

from ..core.layout import StudyLayout
from ..core.store import read_json
from ..evaluation import stats
from . import labels

log = logging.getLogger(__name__)

VERDICTS = ("reproduced", "not reproduced", "not established", "not testable here")
COLUMNS = ["claim_id", "claim", "paper", "verdict", "evidence", "evidence_rows", "reason"]

#: The paper's claims in this study's words: ``(claim_id, claim, where in the paper)``.
CLAIMS = (
    ("a", "A model with a higher ImageNet top-1 does not always give better recommendations.",
     "abstract, question a) and its answer"),
    ("a, example", "NASNet (higher ImageNet top-1) does not recommend better than ResNet.",
     "abstract, the example given for question a)"),
    ("b", "Fine-tuning can help even with little data.", "abstract, question b) and its answer"),
    ("c", "Not every fine-tuning helps.", "abstract, question c) and its answer"),
)
#: Name prefixes of the paper's example pair (timm names; the ``paper`` model preset).
PAPER_EXAMPLE = ("nasnet", "resnet")
_PRIMARY_COLS = {"auc": ("auc", 0), "ndcg@20": ("ndcg", 20)}


def _row(claim_id: str, verdict: str, evidence: str = "", evidence_rows: str = "", reason: str = "") -> dict:
    _, claim, paper = next(c for c in CLAIMS if c[0] == claim_id)
    return dict(zip(COLUMNS, (claim_id, claim, paper, verdict, evidence, evidence_rows, reason)))


def _missing(layout: StudyLayout, *names: str) -> str:
    """"" when every result exists, else the reason naming the missing files."""
    gone = [f"results/{layout.result(n).name}" for n in names if not layout.result(n).is_file()]
    return f"{' and '.join(gone)} {'is' if len(gone) == 1 else 'are'} missing (the run has not written it yet)" \
        if gone else ""


def _diff(r) -> str:
    """``"AUC -0.0147 [-0.0250, -0.00450], Holm p = 0.0031"`` of one paired row."""
    return (f"{labels.metric_label(r.metric, r.k)} {labels.with_interval(r.mean_diff, r.ci_low, r.ci_high, True)}, "
            f"Holm p = {labels.sig3(r.p_holm)}")


def _model_pairs(per_user: pd.DataFrame, top1: pd.Series, recommender: str, seed: int) -> pd.DataFrame:
    """Every pair of ``top1``'s models with different top-1, paired per customer (higher minus
    lower, frozen features, ``recommender``), Holm-corrected together on the primary metrics.

    Returns:
        :data:`~visrec_utils.evaluation.stats.PAIRED_COLUMNS` rows plus ``lower`` (the reference
        model) and ``top1``/``top1_lower``.
    """
    cols = [c for c in _PRIMARY_COLS if c in per_user]
    per_user = per_user[(per_user["strategy"] == "frozen") & (per_user["recommender"] == recommender)]
    parts = []
    for lo, hi in itertools.permutations(top1.index, 2):
        if top1[hi] <= top1[lo]:
            continue
        pu = per_user[per_user["model"].isin([hi, lo])]
        t = stats.paired_comparison(pu, (lo, "frozen", recommender), metrics=cols, seed=seed)
        parts.append(t.assign(lower=lo, top1=top1[hi], top1_lower=top1[lo]))
    return stats.holm(pd.concat(parts, ignore_index=True)) if parts else pd.DataFrame()


def _judge_pairs(claim_id: str, pairs: pd.DataFrame, recommender: str) -> dict:
    prim = pairs[pairs["family"] == "primary"]
    where = "results/per_user.parquet (paired, higher top-1 minus lower; top-1 from results/imagenet_vs_transfer.csv)"
    rows = "; ".join(f"{r.model} vs {r.lower} (frozen/{recommender}) {r.metric}@{r.k} {r.verdict}"
                     for r in prim.itertuples())
    name = lambda r: (f"{labels.model_label(r.model)} (top-1 {labels.sig3(r.top1)}) against "  # noqa: E731
                      f"{labels.model_label(r.lower)} ({labels.sig3(r.top1_lower)})")
    n_pairs = len(prim.groupby(["model", "lower"]))
    inv = prim[prim["verdict"] == "worse"].sort_values("p_holm")
    if len(inv):
        r = inv.iloc[0]
        return _row(claim_id, "reproduced", f"{name(r)}: {_diff(r)}; {len(inv)} of {len(prim)} comparisons "
                    f"({n_pairs} pair{'s' * (n_pairs != 1)} x {prim['metric'].nunique()} metrics) have the higher "
                    "top-1 model significantly worse.", f"{where}: {rows}")
    if (prim["verdict"] == "better").all():
        r = prim.sort_values("p_holm", ascending=False).iloc[0]
        return _row(claim_id, "not reproduced", f"Every higher-top-1 model is significantly better on both primary "
                    f"metrics ({len(prim)} comparisons); the weakest: {name(r)}, {_diff(r)}.", f"{where}: {rows}")
    hints = prim[prim["verdict"] == "worse before correction"]
    r = (hints if len(hints) else prim).sort_values("mean_diff").iloc[0]  # most negative difference
    return _row(claim_id, "not established", f"Closest to an inversion: {name(r)}, {_diff(r)}.", f"{where}: {rows}",
                f"no higher-top-1 model is significantly worse after Holm's correction, and "
                f"{int((prim['verdict'] != 'better').sum())} of {len(prim)} comparisons do not tell the two models "
                f"apart either way" + (f" ({len(hints)} worse before correction only)" if len(hints) else ""))


def _claim_a(layout: StudyLayout, recommender: str, seed: int) -> list[dict]:
    gone = _missing(layout, "per_user", "imagenet_vs_transfer")
    if gone:
        return [_row("a", "not testable here", reason=gone), _row("a, example", "not testable here", reason=gone)]
    table = pd.read_csv(layout.result("imagenet_vs_transfer"))
    table = table[(table["model"].map(labels.kind_of) == "ImageNet model") & table["published_top1"].notna()]
    top1 = table.set_index("model")["published_top1"].astype(float)
    pu = pd.read_parquet(layout.result("per_user"))
    if not any(c in pu for c in _PRIMARY_COLS):
        why = "results/per_user.parquet has neither an auc nor an ndcg@20 column"
        return [_row("a", "not testable here", reason=why), _row("a, example", "not testable here", reason=why)]
    have = set(pu.loc[(pu["strategy"] == "frozen") & (pu["recommender"] == recommender), "model"])
    top1 = top1[top1.index.isin(have)]
    out = []
    if len(top1) < 2 or top1.nunique() < 2:
        out.append(_row("a", "not testable here", reason=f"needs two ImageNet models with different published top-1 "
                        f"and frozen/{recommender} results; this run has {len(top1)}"))
    else:
        out.append(_judge_pairs("a", _model_pairs(pu, top1, recommender, seed), recommender))
    found = [next((m for m in top1.index if m.lower().startswith(p)), None) for p in PAPER_EXAMPLE]
    if None in found:
        lacking = "neither a NASNet nor a ResNet" if found == [None, None] else \
            f"no {'NASNet' if found[0] is None else 'ResNet'}"
        models = pd.read_csv(layout.result("models")) if layout.result("models").is_file() else pd.DataFrame()
        said = [f"{r.model}: {r.reason}" for r in models.itertuples()
                if str(r.model).lower().startswith(PAPER_EXAMPLE) and getattr(r, "status", "ok") != "ok"]
        out.append(_row("a, example", "not testable here", reason=(
            f"the run has {lacking} model: the paper's CNNs (model preset 'paper', e.g. nasnetalarge, resnet50) "
            "need their weights from the model hub, which this machine cannot reach offline"
            + (f" ({'; '.join(said)})" if said else ""))))
    else:
        pairs = _model_pairs(pu, top1[found], recommender, seed)
        out.append(_judge_pairs("a, example", pairs, recommender) if len(pairs) else _row(
            "a, example", "not testable here", reason="NASNet and ResNet have the same published top-1 in this run"))
    return out


def _size(layout: StudyLayout) -> str:
    s = read_json(layout.data / "catalogue.json", {}).get("summary", {})
    if not s:
        return "the catalogue's size is unknown (data/catalogue.json has no summary)"
    return (f"the catalogue has {int(s.get('interactions', 0)):,} purchases by {int(s.get('users', 0)):,} customers "
            f"of {int(s.get('items', 0)):,} items")


def _finetuned(layout: StudyLayout):
    """Primary rows of ``finetune_vs_frozen.csv`` for ImageNet features, grouped per fine-tuned set."""
    table = pd.read_csv(layout.result("finetune_vs_frozen"))
    if "family" not in table:  # a run from before the primary/secondary families
        table = stats.holm(table)
    table = table[(table["family"] == "primary") & (table["model"].map(labels.kind_of) != "control")]
    return table, table.groupby(["model", "strategy", "recommender"], sort=False)["verdict"].agg(set)


def _ft_rows(rows: pd.DataFrame) -> str:
    return "results/finetune_vs_frozen.csv (primary family): " + "; ".join(
        f"{r.model}/{r.strategy}/{r.recommender} {r.metric}@{r.k} {r.verdict}" for r in rows.itertuples())


def _ft_name(r) -> str:
    return f"{labels.strategy_label(r.strategy)} on {labels.model_label(r.model)}"


def _ft_value(layout: StudyLayout, r) -> str:
    """``" (AUC 0.635 [0.62, 0.65] fine-tuned)"`` from ``finetune_metrics.csv``; "" without it."""
    if not layout.result("finetune_metrics").is_file():
        return ""
    fm = pd.read_csv(layout.result("finetune_metrics"))
    fm = fm[(fm["model"] == r.model) & (fm["strategy"] == r.strategy) & (fm["recommender"] == r.recommender)
            & (fm["metric"] == r.metric) & (fm["k"].fillna(0).astype(int) == int(r.k))]
    if fm.empty:
        return ""
    v = fm.iloc[0]
    return f" (fine-tuned {labels.metric_label(r.metric, r.k)} {labels.with_interval(v.value, v.ci_low, v.ci_high)})"


def _claim_b(layout: StudyLayout, table: pd.DataFrame, sets: pd.Series) -> dict:
    size = _size(layout)
    helped = [k for k, v in sets.items() if "better" in v and "worse" not in v]
    rows = table[table[["model", "strategy", "recommender"]].apply(tuple, axis=1).isin(helped)]
    if helped:
        r = rows[rows["verdict"] == "better"].sort_values("p_holm").iloc[0]
        return _row("b", "reproduced", f"{_ft_name(r)} against its frozen features: {_diff(r)}{_ft_value(layout, r)}; "
                    f"{len(helped)} of {len(sets)} fine-tuned sets of ImageNet features improved, where {size}.",
                    _ft_rows(rows))
    if not table["verdict"].isin(["better", "better before correction"]).any():
        r = table.sort_values("ci_high", ascending=False).iloc[0]
        return _row("b", "not reproduced", f"No fine-tuned set of ImageNet features is better on a primary metric, not "
                    f"even before correction ({len(sets)} sets); the largest gain the intervals allow: {_ft_name(r)}, "
                    f"{_diff(r)}; {size}.", _ft_rows(table))
    r = table.sort_values("wilcoxon_p").iloc[0]
    return _row("b", "not established", f"Closest to a gain: {_ft_name(r)}, {_diff(r)}; {size}.", _ft_rows(table),
                "no fine-tuned set is significantly better (after Holm's correction) without being significantly "
                "worse on the other primary metric")


def _claim_c(table: pd.DataFrame, sets: pd.Series) -> dict:
    hurt = table[table["verdict"] == "worse"].sort_values("p_holm")
    if len(hurt):
        r = hurt.iloc[0]
        return _row("c", "reproduced", f"{_ft_name(r)} against its frozen features: {_diff(r)}; {len(hurt)} of "
                    f"{len(table)} primary comparisons are significantly worse.", _ft_rows(hurt))
    if all(v == {"better"} for v in sets) and (table.groupby(["model", "strategy"]).size() == 2).all():
        return _row("c", "not reproduced", f"Every one of {len(sets)} fine-tuned sets of ImageNet features is "
                    "significantly better on both primary metrics.", _ft_rows(table))
    idle = [s for s, g in table.groupby("strategy", sort=False) if not (g["verdict"] == "better").any()]
    said = "; ".join(f"{labels.strategy_label(s)} ({len(table[table['strategy'] == s].groupby('model'))} set(s))"
                     for s in idle) or "none"
    rows = table[table["strategy"].isin(idle)] if idle else table
    r = rows.sort_values("ci_high").iloc[0]
    return _row("c", "not established", f"Strategies with no significant gain on any primary metric: {said}; the one "
                f"whose interval allows the smallest gain: {_ft_name(r)}, {_diff(r)}.", _ft_rows(rows),
                "no fine-tuning is significantly worse than frozen features after Holm's correction; 'no detectable "
                "gain' cannot be told apart from a gain too small for this many customers")


def reproduction_scorecard(out_dir, recommender: str | None = None, seed: int | None = None) -> pd.DataFrame:
    """The paper's claims, each with a verdict, from a finished (or partly finished) run.

    Args:
        out_dir: the study's output folder (reads ``results/*`` and ``data/catalogue.json``).
        recommender: the recommender of claim (a)'s model comparison (default: the run's
            ``recommender`` parameter in ``results/run.json``, else ``visrank_max``).
        seed: bootstrap seed of the paired intervals (default: the run's ``seed``, else 0).

    Returns:
        One row per claim of :data:`CLAIMS`, columns :data:`COLUMNS`; ``verdict`` in
        :data:`VERDICTS` by the rules of this module's docstring; ``evidence`` one sentence with
        the numbers (95% intervals, Holm p); ``evidence_rows`` the result file and rows;
        ``reason`` why a claim is not testable or not established ("" otherwise).
    """
    layout = StudyLayout(out_dir)
    params = read_json(layout.result("run"), {}).get("parameters", {}) or {}
    recommender = recommender or params.get("recommender") or "visrank_max"
    seed = int(seed if seed is not None else params.get("seed") or 0)
    rows = _claim_a(layout, recommender, seed)
    gone = _missing(layout, "finetune_vs_frozen")
    table, sets = _finetuned(layout) if not gone else (None, None)
    if gone or table.empty:
        why = gone or "results/finetune_vs_frozen.csv has no primary comparison of fine-tuned ImageNet features"
        rows += [_row("b", "not testable here", reason=why), _row("c", "not testable here", reason=why)]
    else:
        rows += [_claim_b(layout, table, sets), _claim_c(table, sets)]
    log.info("reproduction scorecard of %s: %s", layout.root, ", ".join(f"{r['claim_id']} {r['verdict']}" for r in rows))
    return pd.DataFrame(rows, columns=COLUMNS)


def scorecard_markdown(table: pd.DataFrame) -> str:
    """The scorecard as a compact Markdown table (claim, verdict in bold, evidence and reason).

    Raises:
        ValueError: ``table`` lacks a column of :data:`COLUMNS` (named).
    """
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"a scorecard needs the columns {', '.join(COLUMNS)} (reproduction_scorecard); "
                         f"this one lacks {', '.join(missing)}")
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| Claim of del Rio et al. 2018 | Verdict | Evidence |", "|---|---|---|"]
    for r in table.itertuples():
        said = " ".join(t for t in (r.evidence, f"Why: {r.reason}." if r.reason else "") if t)
        lines.append(f"| ({r.claim_id}) {cell(r.claim)} | **{r.verdict}** | {cell(said)} |")
    return "\n".join(lines) + "\n"
