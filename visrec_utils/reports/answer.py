"""The study's answer in a few sentences, generated from a finished run's result tables.

:func:`study_answer` reads ``<out>/results`` and ``<out>/data/catalogue.json`` and returns an
:class:`Answer`: the facts of the run (catalogue, dates, test customers, candidates), three to
five sentences that answer the study's questions in plain words, and a short glossary. The same
answer heads ``reports/index.html``, notebook 05 and the README's results section
(:func:`replace_block`); nothing in it is typed by hand.

The questions (del Rio et al. 2018, arXiv 1807.09870, asked on the user's catalogue):
1. Does the best ImageNet model beat the best non-visual baseline, and by how much? A paired
   per-customer comparison (:func:`visrec_utils.evaluation.stats.paired_comparison`).
2. Does ImageNet top-1 predict recommendation quality? The rank correlation across models with
   its 95% interval over customers (``results/correlation_intervals.csv``).
3. Does fine-tuning help, and which? The paired comparisons against frozen features
   (``results/finetune_vs_frozen.csv``), judged within the primary family (AUC, nDCG@20).
4. Where do images win? Purchases of items nobody had bought before (cold) against the rest.

When images do not help on the catalogue, the answer opens by saying so (:func:`_no_help`) and
the headline starts with it: no recommender from ImageNet features ranks next purchases
detectably better than random, or the best of them ranks them significantly worse than the best
non-visual baseline (popularity, item-kNN). Catalogues exist where images carry no taste signal
(the demo with ``taste="none"``, :mod:`visrec_utils.catalogue.demo`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.layout import StudyLayout
from ..core.store import read_json
from ..evaluation import stats
from . import labels

#: The glossary shown under the answer (terms in the order a reader meets them).
GLOSSARY = {
    "AUC": "the chance that a customer's next purchase is ranked above an item they did not buy; 0.5 is "
           "ranking at random, 1 is perfect.",
    "nDCG@20": "how high the next purchases sit in the top 20 (1 = all at the very top, 0 = none in the top 20).",
    "HitRate@20": "the share of customers with at least one of their next purchases in their top 20.",
    "95% interval": "the range that holds the true mean in 95 of 100 repeats of the test with other customers "
                    "(bootstrap over customers).",
    "no detectable difference": "the interval includes 0: this test cannot tell the two apart (not the same as "
                                "'equal').",
    "before correction": "the interval excludes 0, but with this many comparisons one this size can arise by "
                         "chance (Holm's correction); treat as a hint, not a finding.",
    "cold / warm": "a cold item had never been bought before the test; a warm one had.",
    "frozen / fine-tuned": "ImageNet features used as they are / retrained on this catalogue's purchases.",
}

MAIN_METRICS = (("auc", 0), ("ndcg", 20), ("hitrate", 20))


@dataclass
class Answer:
    """What :func:`study_answer` returns.

    Attributes:
        facts: ``{label: text}`` of the run (catalogue, purchases, test, run date).
        headline: the answer in one sentence (built from the sentences' verdicts).
        sentences: the answer, three to five plain sentences (fewer when the run lacks a part).
        glossary: ``{term: definition}`` (:data:`GLOSSARY`).
        synthetic: the catalogue is the generated demo (every page says so).
    """

    facts: dict = field(default_factory=dict)
    headline: str = ""
    sentences: list = field(default_factory=list)
    glossary: dict = field(default_factory=lambda: dict(GLOSSARY))
    synthetic: bool = False

    def markdown(self, heading: str = "", glossary: bool = True) -> str:
        """The answer as Markdown (facts as a bullet list, the headline in bold, the sentences, and
        with ``glossary`` the glossary in one small paragraph)."""
        lines = [heading, ""] if heading else []
        if self.synthetic:
            lines += ["**SYNTHETIC demo catalogue: these numbers say nothing about real data.**", ""]
        lines += [f"- **{k}:** {v}" for k, v in self.facts.items()] + [""]
        if self.headline:
            lines += [f"**{self.headline}**", ""]
        lines += [" ".join(self.sentences) if self.sentences else "No result to answer from yet.", ""]
        if glossary:
            lines += ["<sub>" + " · ".join(f"**{k}**: {v}" for k, v in self.glossary.items()) + "</sub>"]
        return "\n".join(lines).strip() + "\n"


def _n(x) -> str:
    return f"{int(x):,}"


def _per_100(share) -> str:
    """``0.0364`` -> ``"about 4 in 100 customers"``; below 1 in 100 -> ``"about 7 in 1,000 customers"``;
    below 1 in 2,000 -> ``"almost no customer"``; 0 -> ``"no customer"``."""
    if share <= 0:
        return "no customer"
    if share >= 0.01:
        return f"about {round(share * 100):.0f} in 100 customers"
    if share >= 0.0005:
        return f"about {round(share * 1000):.0f} in 1,000 customers"
    return "almost no customer"


def _value(metrics: pd.DataFrame, model, strategy, recommender, metric, k):
    r = metrics[(metrics["model"] == model) & (metrics["strategy"] == strategy) & (metrics["recommender"] == recommender)
                & (metrics["metric"] == metric) & (metrics["k"] == k)]
    return r.iloc[0] if len(r) else None


def _facts(layout: StudyLayout, metrics: pd.DataFrame | None) -> dict:
    cat = read_json(layout.data / "catalogue.json", {})
    run = read_json(layout.result("run"), {})
    summary = cat.get("summary", {})
    facts = {"Catalogue": str(cat.get("name", layout.root.name))}
    if summary:
        facts["Purchases"] = (f"{_n(summary.get('interactions', 0))} purchases by {_n(summary.get('users', 0))} "
                              f"customers of {_n(summary.get('items', 0))} items, {summary.get('first_day', '?')} "
                              f"to {summary.get('last_day', '?')}")
    if metrics is not None and len(metrics) and "n_users" in metrics:
        n_users = int(metrics["n_users"].max())
        test = (f"the last basket of {_n(n_users)} customers (those with an earlier basket and a new item in the "
                "last one) held out and predicted from their earlier ones")
        per_user = layout.result("per_user")
        if per_user.is_file():
            n_cand = pd.read_parquet(per_user, columns=["n_candidates"])["n_candidates"].median()
            test += f"; each ranking {_n(n_cand)} candidate items (median)"
        facts["Test"] = test
    if run.get("started"):
        params = run.get("parameters", {})
        sliced = any(params.get(k) for k in ("max_users", "max_items"))
        facts["Run"] = f"started {run['started']}" + (" on a slice of the catalogue" if sliced else "")
    return facts


def _versus_baseline(layout, metrics, main, seed, says: dict) -> list[str]:
    """Sentence 1: the best ImageNet model against the best baseline, by nDCG@20, paired per customer."""
    strategy, recommender = main
    kinds = {m: labels.kind_of(m) for m in metrics["model"].unique()}
    nd = metrics[(metrics["metric"] == "ndcg") & (metrics["k"] == 20)]
    models = nd[(nd["model"].map(kinds) == "ImageNet model") & (nd["strategy"] == strategy)
                & (nd["recommender"] == recommender)]
    bases = nd[nd["model"] == "-"]
    if models.empty or bases.empty:
        return []
    best = models.loc[models["value"].idxmax()]
    base = bases.loc[bases["value"].idxmax()]
    me, them = labels.config_label(best.model, best.strategy, best.recommender), labels.recommender_label(base.recommender)
    hit_m = _value(metrics, best.model, best.strategy, best.recommender, "hitrate", 20)
    hit_b = _value(metrics, "-", "-", base.recommender, "hitrate", 20)
    text = f"Ranked by nDCG@20, the best ImageNet model, {me}, reaches {labels.sig3(best.value)} against " \
           f"{labels.sig3(base.value)} for the best non-visual baseline ({them})"
    if hit_m is not None and hit_b is not None:
        reversed_ = (best.value - base.value) * (hit_m.value - hit_b.value) < 0  # the two measures disagree
        text += ("; by HitRate@20 the order is reversed: " if reversed_ else ": ") + \
            (f"for {_per_100(hit_m.value)} one of their next purchases was in its top 20, "
             f"against {_per_100(hit_b.value)} with {them}")
    verdict, sentence = _paired(layout, (best.model, best.strategy, best.recommender), ("-", "-", base.recommender),
                                seed)
    says["baseline"] = {"better": "beat", "worse": "fall behind", "better before correction": "may beat (not after "
                        "correction)", "worse before correction": "may fall behind (not after correction)"}.get(
        verdict, "do neither better nor worse than") + f" the best non-visual baseline ({them})" if verdict else ""
    return [text + (f". {sentence}." if sentence else ".")]


#: Kinds of embedding set whose recommenders count as "from ImageNet features" (labels.KINDS).
VISUAL_KINDS = ("ImageNet model", "layer variant")


def _cell(metrics, config, metric, k) -> str:
    """``"0.562 [0.550, 0.575]"`` of one configuration's metric, "" when the run lacks it."""
    r = _value(metrics, *config, metric, k)
    return "" if r is None else labels.with_interval(r.value, r.ci_low, r.ci_high)


def _side_by_side(metrics, config, reference, name: str) -> str:
    """``"AUC a [l, h] and nDCG@20 c [l, h], against b [l, h] and d [l, h] for <name>"`` on the
    primary metrics both rows have ("" when none)."""
    pairs = [(labels.metric_label(m, k), _cell(metrics, config, m, k), _cell(metrics, reference, m, k))
             for m, k in stats.PRIMARY]
    pairs = [p for p in pairs if p[1] and p[2]]
    if not pairs:
        return ""
    return (" and ".join(f"{label} {mine}" for label, mine, _ in pairs) + ", against "
            + " and ".join(theirs for _, _, theirs in pairs) + f" for {name}")


def _paired_table(layout, config, reference, seed) -> pd.DataFrame | None:
    """``config`` against ``reference`` on AUC and nDCG@20, paired per customer and
    Holm-corrected together (:func:`visrec_utils.evaluation.stats.paired_comparison`); None
    without ``per_user.parquet`` or when either configuration is not in it."""
    path = layout.result("per_user")
    if not path.is_file():
        return None
    pu = pd.read_parquet(path)
    keep = pu[stats.CONFIG].apply(tuple, axis=1).isin([tuple(config), tuple(reference)])
    cols = [c for c in ("auc", "ndcg@20") if c in pu]
    if not cols or pu.loc[keep, stats.CONFIG].drop_duplicates().shape[0] < 2:
        return None
    return stats.paired_comparison(pu[keep], tuple(reference), metrics=cols, seed=seed)


def _primary_verdicts(layout, config, reference, seed) -> dict:
    """``{(metric, k): verdict}`` of ``config`` against ``reference`` on the primary metrics
    (:func:`_paired_table`; {} when it has none)."""
    table = _paired_table(layout, config, reference, seed)
    if table is None:
        return {}
    return {(r.metric, int(r.k)): r.verdict for r in table[table["family"] == "primary"].itertuples()}


def _versus_random(layout, visual: list, seed) -> pd.DataFrame | None:
    """Primary paired rows of every visual configuration against random: the run's
    ``paired_vs_reference.csv`` when its reference is random, else computed from ``per_user``."""
    path = layout.result("paired_vs_reference")
    if path.is_file():
        table = pd.read_csv(path)
        if len(table) and "family" not in table:  # a run from before the primary/secondary families
            table = stats.holm(table)
        if len(table) and set(table["reference"]) == {"-/-/random"}:
            return table[(table["family"] == "primary") & table[stats.CONFIG].apply(tuple, axis=1).isin(visual)]
    path = layout.result("per_user")
    if not path.is_file():
        return None
    pu = pd.read_parquet(path)
    keep = pu[stats.CONFIG].apply(tuple, axis=1).isin([*visual, ("-", "-", "random")])
    cols = [c for c in ("auc", "ndcg@20") if c in pu]
    if not cols or not ((pu["model"] == "-") & (pu["recommender"] == "random")).any():
        return None
    table = stats.paired_comparison(pu[keep], ("-", "-", "random"), metrics=cols, seed=seed)
    return table[table["family"] == "primary"]


def _no_help(layout, metrics, seed, says: dict) -> list[str]:
    """Sentence 0, only when images do not help on this catalogue (said first and plainly).

    Images do not help when no recommender from ImageNet features (any model of
    :data:`VISUAL_KINDS`, strategy and recommender) is better than random on a primary metric
    (AUC, nDCG@20; paired per customer, Holm) or, failing that, when the best of them by nDCG@20
    is worse than the best non-visual baseline by nDCG@20 on a primary metric and better on
    none (paired, Holm over the two). Leaves ``says["no_help"]`` for the headline.
    """
    nd = metrics[(metrics["metric"] == "ndcg") & (metrics["k"] == 20)]
    vis = nd[nd["model"].map(labels.kind_of).isin(VISUAL_KINDS)]
    bases = nd[nd["model"] == "-"]
    if vis.empty or bases.empty:
        return []
    best = vis.loc[vis["value"].idxmax()]
    me = (best.model, best.strategy, best.recommender)
    label = labels.config_label(*me)
    vs_random = _versus_random(layout, list(vis[stats.CONFIG].apply(tuple, axis=1)), seed)
    if vs_random is not None and len(vs_random) and not (vs_random["verdict"] == "better").any():
        numbers = _side_by_side(metrics, me, ("-", "-", "random"), "random")
        says["no_help"] = "no recommender from ImageNet features ranks next purchases better than random"
        return [f"On this catalogue images do not help: no recommender from ImageNet features ranks next purchases "
                f"detectably better than random (paired over the same customers, after Holm's correction); the best, "
                f"{label}, reaches " + (f"{numbers}." if numbers else "no more than random.")]
    base = bases.loc[bases["value"].idxmax()]
    them = ("-", "-", base.recommender)
    verdicts = _primary_verdicts(layout, me, them, seed)
    if "worse" not in verdicts.values() or "better" in verdicts.values():
        return []
    name = labels.recommender_label(base.recommender)
    says["no_help"] = f"the best recommender from ImageNet features ranks next purchases worse than {name}"
    return [f"On this catalogue images do not help: the best recommender from ImageNet features ({label}) ranks next "
            f"purchases worse than {name}: {_side_by_side(metrics, me, them, name)} (worse after Holm's correction, "
            "paired over the same customers)."]


def _paired(layout, config, reference, seed) -> tuple[str, str]:
    """The verdict and one sentence: the per-customer paired difference on nDCG@20 (primary)."""
    table = _paired_table(layout, config, reference, seed)
    r = table[(table["metric"] == "ndcg") & (table["k"] == 20)] if table is not None else None
    if r is None or r.empty:
        return "", ""
    r = r.iloc[0]
    words = {"better": "better, after Holm's correction", "worse": "worse, after Holm's correction"}.get(
        r.verdict, r.verdict)  # "no detectable difference", "better/worse before correction" read as they are
    return r.verdict, (f"Paired over the same customers, the difference in nDCG@20 is "
                       f"{labels.with_interval(r.mean_diff, r.ci_low, r.ci_high, signed=True)}: {words}")


def _top1(layout, says: dict) -> list[str]:
    """Sentence 2: does ImageNet top-1 predict recommendation quality (Spearman with its interval)?"""
    path = layout.result("correlation_intervals")
    if not path.is_file():
        return []
    ci = pd.read_csv(path)
    rows = ci[(ci["coefficient"] == "spearman_rho") & ci["metric"].isin(["ndcg@20", "auc"])].set_index("metric")
    if rows.empty or rows["n_models"].max() < 3 or rows["estimate"].isna().all():
        models = int(rows["n_models"].max()) if len(rows) else 0
        return [f"With {models} ImageNet model{'s' * (models != 1)} there is no saying whether top-1 predicts "
                "recommendation quality (a correlation needs at least 3)."]
    parts, effects = [], []
    for metric in ("ndcg@20", "auc"):
        if metric not in rows.index or pd.isna(rows.loc[metric, "estimate"]):
            continue
        r, name = rows.loc[metric], labels.metric_label(metric)
        way = "higher" if r.ci_low > 0 else "lower" if r.ci_high < 0 else ""
        perm = r.get("perm_p", float("nan"))
        if way and perm < 0.05:  # the interval over customers and the permutation over models agree
            reading, effect = f"a higher top-1 went with a {way} {name}", f"a higher ImageNet top-1 goes with a {way} {name}"
        elif way:  # customers' noise excludes 0, but which few models were chosen does not
            reading, effect = (f"on these models a higher top-1 went with a {way} {name}, but the permutation p over "
                               f"{int(r.n_models)} models is {labels.sig3(perm)}: too few models to generalise"), ""
        else:
            reading, effect = "no relation shown", ""
        parts.append(f"with {name} rho = {labels.with_interval(r.estimate, r.ci_low, r.ci_high)} ({reading})")
        effects += [effect] if effect else []
    n = int(rows["n_models"].max())
    says["top1"] = "; ".join(effects) if effects else "a higher ImageNet top-1 is not shown to help"
    return [f"Across {n} ImageNet models, Spearman's rank correlation of published top-1 " + " and ".join(parts)
            + " (95% intervals over customers)."]


def _finetuning(layout, says: dict) -> list[str]:
    """Sentence 3: does fine-tuning help, and which strategy (primary family verdicts)?"""
    path = layout.result("finetune_vs_frozen")
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    if table.empty:
        return []
    if "family" not in table:  # a run from before the primary/secondary families: judge it now
        table = stats.holm(table)
    prim = table[table["family"] == "primary"]
    parts, best, idle = [], (0, ""), []
    for strategy, g in prim.groupby("strategy", sort=False):
        auc, nd = g[g["metric"] == "auc"], g[(g["metric"] == "ndcg") & (g["k"] == 20)]
        n = g["model"].nunique()
        helped = int((auc["verdict"] == "better").sum()), int((nd["verdict"] == "better").sum())
        hurt = int((auc["verdict"] == "worse").sum()), int((nd["verdict"] == "worse").sum())
        mean_auc = auc["mean_diff"].mean()
        name = labels.strategy_label(strategy)
        if not sum(helped) and not sum(hurt):  # said together: no change after correction
            idle.append(name)
            continue
        parts.append((mean_auc, f"{name} raised AUC for {helped[0]} of {n} embedding set{'s' * (n != 1)} "
                      f"(mean {labels.signed3(mean_auc)})" + (f", lowered it for {hurt[0]}" if hurt[0] else "")
                      + f", and nDCG@20 for {helped[1]}" + (f" (lowered for {hurt[1]})" if hurt[1] else "")))
        if sum(helped) > best[0]:  # "raises AUC" only when it did for every set; else how many
            raised = " and ".join(m if n_ == n else f"{m} for {n_} of {n} embedding sets"
                                  for m, n_ in zip(("AUC", "nDCG@20"), helped) if n_)
            kept = " and ".join(m for m, n_ in zip(("AUC", "nDCG@20"), helped) if not n_)
            best = (sum(helped), f"fine-tuning with {name} raises {raised}" + (f", not {kept}" if kept else ""))
    if not parts and not idle:
        return []
    parts.sort(key=lambda p: -p[0] if pd.notna(p[0]) else 0)
    texts = [p for _, p in parts]
    if idle:
        names = idle[0] if len(idle) == 1 else ", ".join(idle[:-1]) + " and " + idle[-1]
        texts.append(f"{names} changed neither AUC nor nDCG@20 detectably")
    says["finetune"] = best[1] if best[0] else "fine-tuning is not shown to help"
    return ["Against the same model's frozen features, after Holm's correction: " + "; ".join(texts) + "."]


def _cold(layout, metrics, main, says: dict) -> list[str]:
    """Sentence 4 (and a note on popularity below chance): where images win, cold against warm items."""
    out = []
    path = layout.result("metrics_cold_warm")
    strategy, recommender = main
    if path.is_file():
        cw = pd.read_csv(path)
        hit = cw[(cw["metric"] == "hitrate") & (cw["k"] == 20) & (cw["truth"] == "cold")]
        vis = hit[(hit["model"].map(labels.kind_of) == "ImageNet model") & (hit["recommender"] == recommender)
                  & (hit["strategy"] == strategy)]
        pop = hit[hit["model"] == "-"]
        if len(vis) and len(pop):
            best_v, best_p = vis.loc[vis["value"].idxmax()], pop.loc[pop["value"].idxmax()]
            wins = best_v.ci_low > best_p.ci_high
            if wins:
                says["cold"] = "win on items nobody had bought before"
            lead = "Images win where purchase history cannot help: on" if wins else "On"
            out.append(f"{lead} items nobody had bought before (cold, {_n(best_v.n_users)} customers), "
                       f"{labels.model_label(best_v.model)} put one in the top 20 for {_per_100(best_v.value)}, "
                       f"the best baseline ({labels.recommender_label(best_p.recommender)}) for "
                       f"{_per_100(best_p.value)}.")
    below = metrics[(metrics["model"] == "-") & (metrics["metric"] == "auc") & (metrics["ci_high"] < 0.5)]
    for last, reason in ((True, "every never-bought item last"), (False, "")):  # below chance: the whole interval
        group = below[below["recommender"].map(ranks_cold_last) == last]
        if len(group):
            names = " and ".join(f"{labels.recommender_label(r.recommender)} (AUC {labels.sig3(r.value)})"
                                 for r in group.itertuples())
            they = "they rank" if len(group) > 1 else "it ranks"
            out.append(f"{names[0].upper() + names[1:]} score{'s' * (len(group) == 1)} below chance"
                       + (f" because {they} {reason}." if reason else "."))
    return out


#: Baselines that cannot score an item nobody bought in training and rank it last: popularity
#: (a count of 0) and BPR-MF (no factors; :mod:`visrec_utils.evaluation.factorization`).
COLD_LAST = ("popularity", "bpr_mf")


def ranks_cold_last(recommender: str) -> bool:
    """Whether the baseline ``recommender`` ranks every never-bought item last (:data:`COLD_LAST`)."""
    return str(recommender).startswith(COLD_LAST)


def study_answer(out_dir, strategy: str | None = None, recommender: str | None = None) -> Answer:
    """The answer of a finished (or partly finished) run, from its result tables.

    Args:
        out_dir: the study's output folder.
        strategy, recommender: the configuration compared across models (default: notebook 05's
            parameters in ``results/run.json``, else ``frozen`` and ``visrank_max``).

    Returns:
        :class:`Answer`; parts whose tables the run did not write are left out (never an error).
    """
    layout = StudyLayout(out_dir)
    run = read_json(layout.result("run"), {})
    params = run.get("parameters", {}) if isinstance(run, dict) else {}
    main = (strategy or params.get("strategy") or "frozen", recommender or params.get("recommender") or "visrank_max")
    seed = int(params.get("seed") or 0)
    metrics = pd.read_csv(layout.result("metrics")) if layout.result("metrics").is_file() else None
    if metrics is not None:
        metrics["k"] = metrics["k"].fillna(0).astype(int)  # AUC and MRR have no cut-off
    cat = read_json(layout.data / "catalogue.json", {})
    answer = Answer(facts=_facts(layout, metrics), synthetic=bool(cat.get("synthetic")))
    if metrics is None or metrics.empty:
        return answer
    says: dict = {}
    answer.sentences = [*_no_help(layout, metrics, seed, says), *_versus_baseline(layout, metrics, main, seed, says),
                        *_top1(layout, says),
                        *_finetuning(layout, says), *_cold(layout, metrics, main, says)]
    answer.headline = headline(says)
    return answer


def headline(says: dict) -> str:
    """The answer in one sentence from the verdict fragments the sentences left in ``says``
    (keys ``no_help``, ``baseline``, ``cold``, ``top1``, ``finetune``); "" when none. With
    ``no_help`` the sentence opens "On this catalogue images do not help: ..." and the
    comparison with the baseline is not repeated."""
    images = [says[k] for k in ("baseline", "cold") if says.get(k)]
    first = f"Image recommendations from ImageNet features {' and '.join(images)}" if images else ""
    if says.get("no_help"):
        first = f"On this catalogue images do not help: {says['no_help']}" + (
            f" (they {says['cold']} only)" if says.get("cold") else "")
    rest = [says[k] for k in ("top1", "finetune") if says.get(k)]
    text = "; ".join(p for p in [first, *rest] if p)
    return (text[0].upper() + text[1:] + ".") if text else ""


#: The README's generated block lies between these two lines.
MARKERS = ("<!-- visrec:answer:start -->", "<!-- visrec:answer:end -->")


def replace_block(text: str, block: str, markers=MARKERS) -> str:
    """``text`` with everything between the two marker lines replaced by ``block``.

    Raises:
        ValueError: the markers are missing or out of order (names them).
    """
    start, end = (re.escape(m) for m in markers)
    pattern = re.compile(f"({start})(.*?)({end})", re.S)
    if not pattern.search(text):
        raise ValueError(f"the markers {markers[0]} and {markers[1]} (in this order) are not in the text")
    return pattern.sub(lambda m: f"{m.group(1)}\n{block.strip()}\n{m.group(3)}", text, count=1)
