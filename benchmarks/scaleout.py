"""Local vs Ray on this machine, printed as measured figures (issue 7). Not a test.

    python benchmarks/scaleout.py --n 1000     # extraction of n H&M images, then one evaluation

Writes ``benchmarks/results/scaleout.csv`` (``--csv``): per part and backend the seconds, the
rate and Ray's overhead against the local backend (``ray seconds / local seconds - 1``; target for
extraction on one node: at most 15%).

Both backends run here (a local Ray with this machine's CPUs), so the figure is Ray's overhead on
one node, not a cluster speed-up; on a cluster the actors and shards spread over the nodes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visrec_utils.catalogue import data, protocols, readers
from visrec_utils.features import embeddings, models
from visrec_utils.evaluation import experiment
from visrec_utils.core import backends  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default="tf_efficientnet_lite0")
    ap.add_argument("--csv", type=Path, default=Path(__file__).resolve().parent / "results" / "scaleout.csv")
    a = ap.parse_args(argv)
    cat = readers.load_hm(data.resolve_data_dir())
    items = cat.items.head(a.n)
    ids, paths = items["item_id"].astype(str).tolist(), items["image_path"].astype(str).tolist()
    loaded = models.load_model(a.model)
    t0 = time.perf_counter()
    backends.init_ray()
    t_init = time.perf_counter() - t0
    times, embs = {}, {}
    for backend in ("local", "ray"):
        with tempfile.TemporaryDirectory() as d:
            embeddings.cached_embeddings(loaded, ids[:64], paths[:64], cache_dir=d, progress=False, backend=backend)
            t0 = time.perf_counter()  # converted model cached, Ray actors' code shipped: steady state
            embs[backend], _ = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=Path(d) / "x",
                                                            progress=False, backend=backend)
            times[backend] = time.perf_counter() - t0
    diff = float(np.nanmax(np.abs(embs["ray"] - embs["local"])))
    rows = [{"part": f"extraction of {a.n} images, {a.model}", "backend": b, "seconds": round(times[b], 2),
             "rate": round(a.n / times[b], 1), "rate_unit": "img/s", "max_abs_diff": diff} for b in ("local", "ray")]
    print(f"extraction of {a.n} images, {a.model} (Ray started in {t_init:.1f} s): local {a.n / times['local']:.1f} img/s, "
          f"ray {a.n / times['ray']:.1f} img/s (overhead {times['ray'] / times['local'] - 1:+.1%}); max abs diff {diff:.1e}")
    sub = data.slice_catalogue(cat, max_users=400, seed=0)
    split = protocols.leave_last_basket_out(sub)
    emb = np.random.default_rng(0).normal(size=(len(sub.items), 256)).astype(np.float32)
    res = {}
    for backend in ("local", "ray"):
        t0 = time.perf_counter()
        res[backend] = experiment.run_experiment(split, {("x", "frozen"): emb}, ["visrank_max"], ["popularity", "itemknn"],
                                                 n_resamples=200, progress=False, backend=backend, cache_dir=False)
        times[backend] = time.perf_counter() - t0
    same = res["local"][1].equals(res["ray"][1])
    rows += [{"part": f"evaluation of {split.n_users} test points x {split.n_items} items", "backend": b,
              "seconds": round(times[b], 2), "identical": same} for b in ("local", "ray")]
    import pandas as pd

    table = pd.DataFrame(rows)
    table["overhead_vs_local"] = (table["seconds"] / table.groupby("part")["seconds"].transform("first") - 1).round(3)
    a.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.csv, index=False)
    print(f"evaluation of {split.n_users} test points x {split.n_items} items (VisRank-max + 2 baselines): "
          f"local {times['local']:.1f} s, ray {times['ray']:.1f} s; per-user metrics identical: {same}; written to {a.csv}")


if __name__ == "__main__":
    main()
