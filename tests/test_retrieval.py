"""FAISS retrieval against brute force and against VisRank's full scores."""
import numpy as np
import pytest

from visrec_utils.evaluation import recommenders, retrieval
from visrec_utils.catalogue.splits import Split

faiss = pytest.importorskip("faiss")


def _data(n=3000, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    return (centres[rng.integers(0, 30, n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def test_flat_index_equals_brute_force_cosine():
    x = _data()
    q = _data(50, seed=1)
    sims, ids = retrieval.search(retrieval.build_index(x, "flat"), q, 20)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    full = unit(q) @ unit(x).T
    want = np.argsort(-full, axis=1, kind="stable")[:, :20]
    np.testing.assert_allclose(sims, np.take_along_axis(full, want, 1), atol=1e-5)
    assert (ids == want).mean() > 0.99  # equal but for float ties


def test_visrank_max_topk_from_the_index_equals_the_full_scores():
    x = _data(800)
    rng = np.random.default_rng(2)
    profiles = [rng.choice(800, size=int(rng.integers(1, 8)), replace=False) for _ in range(40)]
    empty = None
    split = Split(users=np.arange(40).astype(str).astype(object), profiles=profiles, truth=[np.array([0])] * 40,
                  test_day=np.full(40, np.datetime64("2020-01-01", "ns")), train=empty, n_items=800, interactions=empty)
    scores = recommenders.VisRank("max").fit(split, x).score(np.arange(40))
    for u, p in enumerate(profiles):
        scores[u, p] = -np.inf
    want = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    got_s, got_i = retrieval.visrank_max_topk(retrieval.build_index(x, "flat"), x, profiles, 10)
    np.testing.assert_allclose(got_s, np.take_along_axis(scores, want, 1), atol=1e-5)
    assert retrieval.recall_at_k(got_i, want) > 0.99


def test_approximate_indexes_report_recall_and_ivf_is_exact_when_every_list_is_probed():
    x = _data()
    q = _data(100, seed=3)
    _, exact = retrieval.search(retrieval.build_index(x, "flat"), q, 10)
    _, full_probe = retrieval.search(retrieval.build_index(x, "ivf", nlist=16, nprobe=16), q, 10)
    assert retrieval.recall_at_k(full_probe, exact) > 0.99
    _, one_probe = retrieval.search(retrieval.build_index(x, "ivf", nlist=64, nprobe=1), q, 10)
    r1 = retrieval.recall_at_k(one_probe, exact)
    assert 0.2 < r1 < 1.0  # a real approximation, measured
    _, hnsw = retrieval.search(retrieval.build_index(x, "hnsw", ef_search=64), q, 10)
    assert retrieval.recall_at_k(hnsw, exact) > 0.9


def test_bad_input_is_named():
    x = _data(100)
    x[7] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        retrieval.build_index(x)
    with pytest.raises(ValueError, match="kind must be"):
        retrieval.build_index(_data(100), "lsh")
