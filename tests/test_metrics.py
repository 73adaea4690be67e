"""Metrics against hand-computed values and reference implementations."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.evaluation import metrics
from visrec_utils.evaluation.metrics import bootstrap_ci, user_metrics

NEG = -np.inf


def test_single_truth_distinct_scores_by_hand():
    # candidates ranked: item 3 (0.9), item 1 (0.8), item 0 (0.5), item 4 (0.1); item 2 not a candidate
    scores = np.array([0.5, 0.8, NEG, 0.9, 0.1])
    m = user_metrics(scores, np.array([1]), ks=(1, 2, 10))
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["auc"] == pytest.approx(2 / 3)  # above items 0 and 4, below item 3
    assert m["precision@1"] == 0 and m["recall@1"] == 0 and m["ndcg@1"] == 0
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["recall@2"] == 1
    assert m["ndcg@2"] == pytest.approx(1 / np.log2(3))  # hit at rank 2, ideal DCG = 1
    # k larger than the 4 candidates: k stays the denominator of precision
    assert m["precision@10"] == pytest.approx(1 / 10)
    assert m["recall@10"] == 1


def test_several_truth_items_by_hand():
    # ranking: 0 (0.9) 1 (0.7) 2 (0.6) 3 (0.4) 4 (0.2); truth = items 1 and 3
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.2])
    m = user_metrics(scores, np.array([3, 1]), ks=(1, 3, 4))
    assert m["mrr"] == pytest.approx(1 / 2)
    # pairs (truth, non-truth): item1 beats 2,4 not 0 -> 2/3; item3 beats 4 only -> 1/3
    assert m["auc"] == pytest.approx(3 / 6)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(1 / 2)
    idcg3 = 1 + 1 / np.log2(3)  # min(|truth|, k) = 2 ideal hits
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3)) / idcg3)
    assert m["ndcg@4"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / idcg3)
    idcg1 = 1.0  # min(2, 1) = 1 ideal hit
    assert m["ndcg@1"] == pytest.approx(0 / idcg1)


def test_ties_count_half_in_auc():
    scores = np.array([1.0, 1.0, 0.0])
    m = user_metrics(scores, np.array([0]), ks=(1,))
    assert m["auc"] == pytest.approx((0.5 + 1) / 2)
    scores = np.full(6, 0.3)
    assert user_metrics(scores, np.array([2, 4]), ks=(1,))["auc"] == pytest.approx(0.5)


def test_ties_are_broken_at_random_not_in_truths_favour():
    # all 4 candidates tied: the truth's rank is uniform on 1..4, so E[1/rank] = (1+1/2+1/3+1/4)/4
    rng = np.random.default_rng(1)
    scores = np.zeros(4)
    rr = [user_metrics(scores, np.array([0]), ks=(1,), rng=rng)["mrr"] for _ in range(4000)]
    assert np.mean(rr) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=0.02)
    # two truth items tied with each other never share a rank: recall@2 = 1 when only they are tied on top
    scores = np.array([5.0, 5.0, 1.0, 0.0])
    m = user_metrics(scores, np.array([0, 1]), ks=(2,), rng=rng)
    assert m["recall@2"] == 1 and m["ndcg@2"] == pytest.approx(1.0)


def test_auc_matches_sklearn_on_random_cases_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = rng.integers(5, 60)
        scores = rng.integers(0, 6, size=n).astype(float)  # many ties
        noncand = rng.random(n) < 0.2
        m = rng.integers(1, max(2, n // 3))
        truth = rng.choice(np.flatnonzero(~noncand), size=min(m, (~noncand).sum() - 1), replace=False)
        s = scores.copy()
        s[noncand] = NEG
        y = np.zeros(n, bool)
        y[truth] = True
        cand = ~noncand
        ref = roc_auc_score(y[cand], scores[cand])
        assert user_metrics(s, truth, ks=(5,))["auc"] == pytest.approx(ref, abs=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one truth"):
        user_metrics(np.zeros(3), np.array([], dtype=int))
    with pytest.raises(ValueError, match="candidate"):
        user_metrics(np.array([0.1, NEG]), np.array([1]))


def test_bootstrap_interval_matches_normal_theory():
    rng = np.random.default_rng(0)
    v = rng.normal(0.3, 0.1, size=2000)
    mean, lo, hi = bootstrap_ci(v, n_resamples=2000, seed=0)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    assert mean == pytest.approx(v.mean())
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert lo < mean < hi
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25, 0.25)


def test_summarize_is_tidy():
    pu = pd.DataFrame({"user_id": ["a", "b"], "n_truth": [1, 1], "n_candidates": [9, 9],
                       "auc": [0.5, 1.0], "ndcg@10": [0.0, 1.0]})
    s = metrics.summarize(pu, {"model": "m"}, n_resamples=200)
    assert list(s.columns) == ["model", "metric", "k", "value", "ci_low", "ci_high", "n_users"]
    assert s.set_index("metric").loc["auc", "value"] == pytest.approx(0.75)
    assert s.set_index("metric").loc["ndcg", "k"] == 10


def test_ap_f1_map_hitrate_by_hand():
    # ranking: 0 (0.9) 1 (0.7) 2 (0.6) 3 (0.4) 4 (0.2); truth = items 1 and 3 at ranks 2 and 4
    m = user_metrics(np.array([0.9, 0.7, 0.6, 0.4, 0.2]), np.array([1, 3]), ks=(1, 2, 4))
    assert m["hitrate@1"] == 0 and m["hitrate@2"] == 1
    assert m["f1@2"] == pytest.approx(2 * (1 / 2) * (1 / 2) / (1 / 2 + 1 / 2))
    assert m["f1@1"] == 0
    assert m["ap@2"] == pytest.approx((1 / 2) / 2)          # one hit at rank 2, min(|truth|, 2) = 2
    assert m["ap@4"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["ap@1"] == 0
    assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_ranking_metrics_match_ranx_on_random_cases_with_ties():
    """ranx (a well-kept IR evaluation library) on the same rankings: agreement to 1e-9.

    Ties are broken by visrec's seeded order; ranx is given that order as strictly decreasing
    scores, so both libraries rank identically and only the metric formulas are compared.
    """
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(0)
    qrels, run, ours = {}, {}, {}
    ks = (1, 5, 10, 20)
    for q in range(40):
        n = int(rng.integers(8, 40))
        scores = rng.integers(0, 5, size=n).astype(float)  # heavy ties
        scores[rng.random(n) < 0.15] = NEG                  # non-candidates
        cand = np.flatnonzero(np.isfinite(scores))
        truth = rng.choice(cand, size=int(rng.integers(1, min(5, len(cand)))), replace=False)
        m = user_metrics(scores, truth, ks=ks, rng=np.random.default_rng(q))
        # reconstruct the tie-broken order visrec used: same draws, all candidates ranked
        ranks_truth = _visrec_truth_ranks(scores, truth, q)
        order = _order_consistent_with(scores, cand, truth, ranks_truth)
        qid = f"q{q:03d}"  # lexicographic = insertion order (ranx sorts query ids)
        qrels[qid] = {f"d{i}": 1 for i in truth}
        run[qid] = {f"d{i}": float(len(order) - r) for r, i in enumerate(order)}
        ours[qid] = m
    names = [f"{name}@{k}" for k in ks for name in ("precision", "recall", "f1", "ndcg", "hit_rate")] + ["mrr", "map"]
    ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), names, return_mean=False, make_comparable=True)
    for name in names:
        key = name.replace("hit_rate", "hitrate")
        ours_vals = np.array([ours[qid][key] for qid in sorted(qrels)])
        assert np.allclose(ours_vals, np.asarray(ref[name]), atol=1e-9, rtol=0), name


def _visrec_truth_ranks(scores, truth, seed):
    from visrec_utils.evaluation.metrics import _block_ranks

    ranks = _block_ranks(scores.astype(float)[None, :], [np.asarray(truth)], np.random.default_rng(seed))[0][0]
    return ranks[np.isfinite(ranks)].astype(int)


def _order_consistent_with(scores, cand, truth, truth_ranks):
    """A full candidate order by score with the truth items at exactly ``truth_ranks``."""
    others = [i for i in cand if i not in set(truth)]
    others.sort(key=lambda i: -scores[i])
    order = [None] * len(cand)
    truth_sorted = sorted(truth, key=lambda i: -scores[i])
    # assign truth items to their ranks (ascending ranks go to descending scores)
    for r, i in zip(sorted(truth_ranks), truth_sorted):
        order[r - 1] = i
    it = iter(others)
    order = [o if o is not None else next(it) for o in order]
    s = [scores[i] for i in order]
    assert all(a >= b for a, b in zip(s, s[1:])), "ranks inconsistent with scores"
    return order


def test_block_metrics_equal_one_user_at_a_time():
    """The vectorised block path and the one-user path agree (same tie-breaking draws)."""
    rng = np.random.default_rng(5)
    n_users, n_items = 25, 60
    scores = rng.integers(0, 8, size=(n_users, n_items)).astype(float)  # many ties
    scores[rng.random(scores.shape) < 0.2] = NEG
    truth = []
    for r in range(n_users):
        cand = np.flatnonzero(np.isfinite(scores[r]))
        truth.append(rng.choice(cand, size=int(rng.integers(1, 7)), replace=False))
    block = metrics.block_metrics(scores, truth, ks=(1, 5, 20), rngs=np.random.default_rng(9))
    one_rng = np.random.default_rng(9)
    for r in range(n_users):
        single = user_metrics(scores[r], truth[r], ks=(1, 5, 20), rng=one_rng)
        for name, v in single.items():
            assert block[name][r] == pytest.approx(v, abs=1e-12), (r, name)


def test_coverage_and_novelty_by_hand():
    top = np.array([[0, 1], [1, 2], [1, -1]])  # the last user had one candidate
    assert metrics.coverage(top, 10, k=1) == pytest.approx(2 / 10)  # items 0, 1
    assert metrics.coverage(top, 10, k=2) == pytest.approx(3 / 10)
    train = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_idx": [0, 1, 0, 0]})
    info = metrics.self_information(train, 3)
    # p(i) = (buyers + 1) / (3 users + 1): item 0 bought by 3 users, item 1 by 1, item 2 by none
    np.testing.assert_allclose(info, -np.log2([4 / 4, 2 / 4, 1 / 4]))


def test_metrics_match_cornac_ranking_eval():
    """Cornac's ranking evaluation on the same scores, users and candidates gives the same values.

    Cornac ranks the items seen in training minus each user's training items; visrec is given
    exactly that candidate set. Scores are distinct (Cornac does not break ties at random).
    """
    cornac = pytest.importorskip("cornac")
    from cornac.eval_methods import ranking_eval
    from cornac.metrics import AUC, NDCG, Precision, Recall

    rng = np.random.default_rng(3)
    n_users, n_items, ks = 30, 80, (5, 10)
    train = [(f"u{u}", f"i{i}", 1.0) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)]
    train_set = cornac.data.Dataset.from_uir(train, seed=0)
    test = [(f"u{u}", f"i{i}", 1.0) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)
            if (f"u{u}", f"i{i}", 1.0) not in train]
    test_set = cornac.data.Dataset.build(test, fmt="UIR", global_uid_map=train_set.uid_map,
                                         global_iid_map=train_set.iid_map, exclude_unknowns=True)
    scores = rng.random((train_set.num_users, train_set.num_items))

    class Fixed(cornac.models.Recommender):
        def __init__(self):
            super().__init__(name="fixed", trainable=False)

        def score(self, user_idx, item_idx=None):
            return scores[user_idx] if item_idx is None else scores[user_idx, item_idx]

    model = Fixed()
    model.fit(train_set)
    cm = [AUC()] + [m(k=k) for k in ks for m in (NDCG, Precision, Recall)]
    _, per_user = ranking_eval(model, cm, train_set, test_set, exclude_unknowns=True)
    train_csr, test_csr = train_set.csr_matrix, test_set.csr_matrix
    for u in per_user[0]:
        s = scores[u].copy()
        s[train_csr[u].indices] = NEG  # the user's training items are not candidates
        ours = user_metrics(s, test_csr[u].indices, ks=ks)
        names = ["auc"] + [f"{m}@{k}" for k in ks for m in ("ndcg", "precision", "recall")]
        for name, res in zip(names, per_user):
            assert ours[name] == pytest.approx(res[u], abs=1e-9), (u, name)


def test_candidate_mask_equals_minus_inf_scores_and_names_the_bad_row():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 6, size=(9, 30)).astype(np.float32)  # many ties
    truth = [rng.choice(30, size=int(rng.integers(1, 4)), replace=False) for _ in range(9)]
    mask = rng.random((9, 30)) > 0.3
    for r, t in enumerate(truth):
        mask[r, t] = True
    masked = np.where(mask, scores, -np.inf)
    a = metrics.block_metrics(scores, truth, ks=(3, 10), mask=mask, rngs=np.random.default_rng(1))
    b = metrics.block_metrics(masked, truth, ks=(3, 10), rngs=np.random.default_rng(1))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["n_candidates"], mask.sum(1))
    mask[5, truth[5][0]] = False
    with pytest.raises(ValueError, match="block row 5"):
        metrics.block_metrics(scores, truth, mask=mask)


def test_bootstrap_interval_is_scipy_bootstrap_to_the_last_bit():
    from scipy import stats as sst

    rng = np.random.default_rng(3)
    for n, seed in ((2, 0), (37, 1), (879, 0), (1219, 2)):
        v = rng.random(n)
        v[0] = np.nan  # dropped first, as before
        w = v[np.isfinite(v)]
        if np.all(w == w[0]):
            continue
        ref = sst.bootstrap((w,), np.mean, n_resamples=500, confidence_level=0.95, method="percentile",
                            vectorized=True, random_state=np.random.default_rng(seed))
        got = bootstrap_ci(v, n_resamples=500, seed=seed)
        assert got == (float(w.mean()), float(ref.confidence_interval.low), float(ref.confidence_interval.high))
    with pytest.raises(ValueError, match="n_resamples must be a positive integer, not 0"):
        bootstrap_ci(np.array([0.1, 0.2]), n_resamples=0)


def test_resample_means_are_numpys_mean_of_the_gathered_draws_to_the_last_bit():
    from visrec_utils.evaluation.metrics import _resample_indices, resample_means

    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 8, 9, 127, 128, 129, 136, 257, 879, 1219, 4099, 8192, 9000):
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, size=n)  # magnitudes apart: order matters
        idx = _resample_indices(n, 200, 1)
        np.testing.assert_array_equal(resample_means(v, idx), np.mean(v[idx], axis=-1))


def test_bootstrap_cis_of_many_columns_equal_bootstrap_ci_of_each():
    from visrec_utils.evaluation.metrics import bootstrap_cis

    rng = np.random.default_rng(6)
    cols = [rng.random(300), np.full(300, 0.5), np.array([0.2]), np.array([]), (rng.random(300) < 0.05) * 1.0,
            np.where(rng.random(250) < 0.2, np.nan, rng.random(250))]
    got = bootstrap_cis(cols, n_resamples=400, seed=3)
    for j, c in enumerate(cols):
        v = c[np.isfinite(c)]
        if v.size >= 2 and not np.all(v == v[0]):  # the per-column path, written out
            from scipy import stats as sst

            theta = np.mean(v[np.random.default_rng(3).integers(0, v.size, (400, v.size))], axis=-1)
            alpha = (1 - 0.95) / 2
            want = (v.mean(), *sst.quantile(theta, np.array([alpha, 1 - alpha]), axis=-1))
        else:
            want = bootstrap_ci(c, n_resamples=400, seed=3)
        np.testing.assert_array_equal(got[j], np.array(want, dtype=float))


def _torch_top_k(scores, k, mask):
    """The lists ``top_k`` made before its compiled pass: ``torch.topk`` of a masked copy."""
    import torch

    vals, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(np.where(mask, scores, -np.inf))),
                           min(k, scores.shape[1]), dim=1, sorted=True)
    top = idx.numpy().astype(np.int64)
    top[~np.isfinite(vals.numpy())] = -1
    return top


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_equals_torch_topk_of_the_masked_scores_with_ties_nan_and_few_candidates(dtype):
    """Rows with distinct best scores come from the compiled pass, the rest (ties in or at the cut,
    NaN, fewer than k candidates) from torch.topk: together the same lists as torch.topk alone."""
    rng = np.random.default_rng(0)
    for trial in range(24):
        b, n, k = 40, int(rng.integers(1, 300)), int(rng.integers(1, 60))
        s = rng.standard_normal((b, n)).astype(dtype)
        if trial % 3 == 0:
            s = np.round(s, 1)  # many ties
        s[rng.random((b, n)) < 0.02] = -np.inf
        s[5, 3 % n] = np.nan
        s[6], s[7, :min(n, 3)] = 0.0, -0.0  # a row of ties; -0.0 ties with 0.0
        mask = rng.random((b, n)) < 0.8
        mask[8], mask[9, 2:] = False, False  # no candidate; at most two
        np.testing.assert_array_equal(metrics.top_k(s, k, mask=mask), _torch_top_k(s, k, mask))
        np.testing.assert_array_equal(metrics.top_k(s, k), _torch_top_k(s, k, np.ones((b, n), bool)))
    assert metrics.top_k(np.array([[0.1, 0.9, 0.5]], dtype), 2).tolist() == [[1, 2]]
    assert metrics.top_k(np.array([[0.1, 0.9, 0.5]], dtype), 2, mask=np.array([[True, False, True]])).tolist() \
        == [[2, 0]]
