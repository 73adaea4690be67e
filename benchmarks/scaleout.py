"""Local vs Ray on this machine, printed as measured figures (issue 7). Not a test.

    python benchmarks/scaleout.py --n 1000     # extraction of n H&M images, then one evaluation
    python benchmarks/scaleout.py --n 3000 --n-small 1000   # and each backend's fixed start-up and per-image
                                                           # time, projected to the whole catalogue
    python benchmarks/scaleout.py --n 17033 --repeats 2     # the whole H&M catalogue, twice per backend

Writes ``benchmarks/results/scaleout.csv`` (``--csv``): per part and backend the seconds, the
rate and Ray's overhead against the local backend (``ray seconds / local seconds - 1``; target for
extraction on one node: at most 15%). Each backend extracts ``--repeats`` times per size, the
backends alternating (local first, then Ray first), after a warm-up of 64 images that converts
the model; the medians are reported, as this machine's speed moves by 10-25% between minutes.

Both backends run here (a local Ray with this machine's CPUs), so the figure is Ray's overhead on
one node, not a cluster speed-up; on a cluster the extraction and evaluation shards spread over
the nodes.
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


def fixed_and_per_image(small: dict, large: dict, n_small: int, n_large: int, n_catalogue: int, model: str) -> list:
    """Each backend's seconds as ``fixed + n / rate`` from two sizes (a line through two points),
    and the time projected to the whole catalogue: the rows ``start-up (fixed per extraction)``,
    ``per image`` (rate) and ``projected: all <n> catalogue images``, each with Ray's overhead."""
    rows = []
    for b in ("local", "ray"):
        per_image = (large[b] - small[b]) / (n_large - n_small)
        fixed = large[b] - n_large * per_image
        rows += [{"part": f"start-up (fixed per extraction), {model}", "backend": b, "seconds": round(fixed, 2)},
                 {"part": f"per image ({n_small} and {n_large} images), {model}", "backend": b,
                  "seconds": round(per_image, 5), "rate": round(1 / per_image, 1), "rate_unit": "img/s"},
                 {"part": f"projected: all {n_catalogue} catalogue images, {model}", "backend": b,
                  "seconds": round(fixed + n_catalogue * per_image, 1)}]
    by = {(r["part"], r["backend"]): r["seconds"] for r in rows}
    print("; ".join(f"{p.split(',')[0]}: local {by[(p, 'local')]}, ray {by[(p, 'ray')]}"
                    for p in dict.fromkeys(r["part"] for r in rows)))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-small", type=int, default=0,
                    help="also extract this many images per backend, to split each backend's time into a fixed "
                         "start-up and a per-image part (two sizes), and project the overhead to the whole catalogue")
    ap.add_argument("--model", default="tf_efficientnet_lite0")
    ap.add_argument("--repeats", type=int, default=2,
                    help="extractions per backend and size, in alternating order; the median is reported")
    ap.add_argument("--csv", type=Path, default=Path(__file__).resolve().parent / "results" / "scaleout.csv")
    a = ap.parse_args(argv)
    cat = readers.load_hm(data.resolve_data_dir())
    items = cat.items.head(a.n)
    ids, paths = items["item_id"].astype(str).tolist(), items["image_path"].astype(str).tolist()
    loaded = models.load_model(a.model)
    t0 = time.perf_counter()
    backends.init_ray()
    t_init = time.perf_counter() - t0
    embs = {}
    runs: dict = {"local": [], "ray": []}
    runs_small: dict = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as d:
        for backend in ("local", "ray"):
            # one runtime cache per backend: the warm-up makes the converted model and its micro-batch,
            # as a study's second run finds them (the embeddings themselves are never cached here)
            embeddings.cached_embeddings(loaded, ids[:64], paths[:64], cache_dir=Path(d) / backend / "w",
                                         progress=False, backend=backend, runtime_cache=Path(d) / backend)
        for r in range(a.repeats):  # alternating order, so a slower minute of the machine hits both
            for backend in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                kw = dict(progress=False, backend=backend, runtime_cache=Path(d) / backend)
                if a.n_small:
                    t0 = time.perf_counter()
                    embeddings.cached_embeddings(loaded, ids[:a.n_small], paths[:a.n_small],
                                                 cache_dir=Path(d) / backend / f"s{r}", **kw)
                    runs_small[backend].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                embs[backend], _ = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=Path(d) / backend / f"x{r}",
                                                                **kw)
                runs[backend].append(time.perf_counter() - t0)
                print(f"repeat {r + 1}/{a.repeats}, {backend}: {runs[backend][-1]:.1f} s for {a.n} images", flush=True)
    times = {b: float(np.median(v)) for b, v in runs.items()}
    small = {b: float(np.median(v)) for b, v in runs_small.items() if v}
    diff = float(np.nanmax(np.abs(embs["ray"] - embs["local"])))
    rows = [{"part": f"extraction of {a.n} images, {a.model}", "backend": b, "seconds": round(times[b], 2),
             "rate": round(a.n / times[b], 1), "rate_unit": "img/s", "max_abs_diff": diff} for b in ("local", "ray")]
    print(f"extraction of {a.n} images, {a.model} (Ray started in {t_init:.1f} s): local {a.n / times['local']:.1f} img/s, "
          f"ray {a.n / times['ray']:.1f} img/s (overhead {times['ray'] / times['local'] - 1:+.1%}); max abs diff {diff:.1e}")
    if a.n_small:
        rows += fixed_and_per_image(small, times, a.n_small, a.n, len(cat.items), a.model)
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
