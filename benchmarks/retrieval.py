"""FAISS retrieval at catalogue scale, printed as measured figures (issue 7). Not a test.

    python benchmarks/retrieval.py                 # 1,000,000 items x 128 dims, 1,000 queries, top 50
    python benchmarks/retrieval.py --items 200000

Exact inner-product search (flat) is the reference; IVF (several nprobe) and HNSW report build
time, query time and recall@k against it. Items are clustered Gaussian vectors (like image
embeddings, they are not uniform), seeded.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visrec_utils.evaluation import retrieval  # noqa: E402


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        out[a:b] = centres[rng.integers(0, 1000, b - a)] + 0.7 * rng.standard_normal((b - a, d), dtype=np.float32)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--no-hnsw", action="store_true", help="skip HNSW (its build takes minutes at 10^6 items)")
    a = ap.parse_args(argv)
    x = _clustered(a.items, a.dim, 0)
    q = _clustered(a.queries, a.dim, 1)
    print(f"{a.items:,} items x {a.dim} dims, {a.queries:,} queries, top {a.k}")
    t0 = time.perf_counter()
    flat = retrieval.build_index(x, "flat")
    t1 = time.perf_counter()
    _, exact = retrieval.search(flat, q, a.k)
    t2 = time.perf_counter()
    print(f"  flat (exact): build {t1 - t0:.1f} s, search {1e3 * (t2 - t1) / a.queries:.2f} ms/query")
    del flat
    configs = [("ivf", {"nprobe": p}) for p in (8, 32, 128)] + ([] if a.no_hnsw else [("hnsw", {"ef_search": 256})])
    built = {}
    for kind, kw in configs:
        t0 = time.perf_counter()
        if kind not in built:
            built[kind] = retrieval.build_index(x, kind, **kw)
        index = built[kind]
        t_build = time.perf_counter() - t0
        if kind == "ivf":
            index.nprobe = kw["nprobe"]
        t1 = time.perf_counter()
        _, ids = retrieval.search(index, q, a.k)
        t_q = (time.perf_counter() - t1) / a.queries
        print(f"  {kind} {kw}: build {t_build:.1f} s{' (reused)' if t_build < 0.01 else ''}, "
              f"search {1e3 * t_q:.2f} ms/query, recall@{a.k} vs exact {retrieval.recall_at_k(ids, exact):.3f}")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
