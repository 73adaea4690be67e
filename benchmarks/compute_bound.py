"""The study's compute bound: its floating-point work over this machine's fp32 matmul rate (issue 17).

    python benchmarks/compute_bound.py --out study_output          # a finished study's folder
    python benchmarks/compute_bound.py --out study_output --csv benchmarks/results/compute_bound.csv

Not a test. For a finished study it counts the FLOPs of the work the study cannot avoid and
divides them by the float32 matrix-multiply rate measured here
(:func:`benchmarks.extraction.machine_gflops`: numpy BLAS, 4096^2 x 4096, all cores). A
multiply-add counts 2 (torch's ``FlopCounterMode``). Counted:

* ``extract``: one forward per network and catalogue image (a shared pass taps every layer
  variant and the stage activations of a network from its one forward), plus the ImageNet top-1
  check (``n_imagenet`` images per model with a classifier); FLOPs per image by
  :func:`benchmarks.extraction.model_gflop` (convolutions and matmuls; the hand-made control's
  elementwise work counts 0, so the bound is optimistic for it);
* ``tune``: for each stage strategy, forward + backward (3x the forward, the usual estimate) of
  the trained stage over the rows of every step actually taken (``results/stage_learning_curves.csv``)
  plus one forward per item for the final embeddings; ``bpr_projection`` is a linear map, 6 FLOPs
  per weight and row (3 rows per triplet: the profile mean, the bought and the not-bought item)
  for every step taken (``results/learning_curves.csv``), plus the final projection of every item;
* ``evaluate``: the similarity rows of every embedding set, computed once for every split that
  uses the set (``evaluation/set_major.py``): at most one row per item, ``2 * n_items^2 * dim``.

The bound is a floor no implementation reaches (depthwise convolutions and image decoding run
far below the matmul rate); the ratio of the measured wall time to it says how far the study is
from the machine's arithmetic limit.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def extraction_gflop(out: Path) -> pd.DataFrame:
    """One row per network forward of notebook 02: ``stage, what, gflop`` (total over images)."""
    from benchmarks.extraction import model_gflop
    from visrec_utils.features import embedding_sets, models

    table = pd.read_csv(out / "results/models.csv", keep_default_na=False)
    n_items = len(pd.read_parquet(out / "data/items.parquet")) if (out / "data/items.parquet").is_file() else None
    manifest = embedding_sets.read_manifest(out)
    frozen = manifest[manifest["strategy"] == "frozen"]
    n_items = n_items or int(frozen["n_items"].max())
    rows = []
    for r in table[table["status"] == "ok"].itertuples():
        spec = models.get_spec(r.model)
        if spec.layer:  # tapped from its backbone's forward
            continue
        per_image = model_gflop(models.load_model(r.model))
        n_check = int(float(r.n_imagenet)) if str(r.n_imagenet) not in ("", "nan") else 0
        rows.append({"stage": "extract", "what": r.model, "gflop": per_image * (n_items + n_check)})
    return pd.DataFrame(rows)


def tuning_gflop(out: Path) -> pd.DataFrame:
    """Rows for notebook 03's training: stage strategies from their learning curves, BPR projections."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from visrec_utils.features import models
    from visrec_utils.tuning import stage_tuning

    rows = []
    curves = out / "results/stage_learning_curves.csv"
    cost = pd.read_csv(out / "results/finetune_cost.csv") if (out / "results/finetune_cost.csv").is_file() else None
    n_items = int(pd.read_parquet(out / "data/items.parquet").shape[0])
    cfg = stage_tuning.StageConfig()
    if curves.is_file():
        hist = pd.read_csv(curves)
        for (model, strategy), h in hist.groupby(["model", "strategy"]):
            loaded = models.load_model(model)
            staged = stage_tuning.StagedModel(loaded.model, cfg.n_stages, loaded.data_config["input_size"])
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                staged.head(torch.zeros(1, int(np.prod(staged.act_shape))))
            per_row = fc.get_total_flops() / 1e9
            steps = int(h["step"].max())
            rows_per_step = {"partial_bpr": cfg.batch_size * (cfg.max_profile + 2), "proxy_metadata": cfg.batch_size,
                             "contrastive": 2 * cfg.batch_size}.get(strategy, cfg.batch_size)
            rows.append({"stage": "tune", "what": f"{strategy} {model}",
                         "gflop": per_row * (3 * steps * rows_per_step + n_items)})
    if cost is not None:
        from visrec_utils.features import embedding_sets
        from visrec_utils.tuning import finetune

        lc = pd.read_csv(out / "results/learning_curves.csv") if (out / "results/learning_curves.csv").is_file() else None
        manifest = embedding_sets.read_manifest(out)
        dims = manifest[manifest["strategy"] == "frozen"].set_index("model")["dim"].to_dict()
        batch = finetune.BPRConfig().batch_size
        for r in cost[cost["strategy"] == "bpr_projection"].itertuples():
            steps = int(lc[lc["model"] == r.model]["step"].max()) if lc is not None and "model" in lc else 0
            d = int(dims.get(r.model, 0))
            rows.append({"stage": "tune", "what": f"bpr_projection {r.model}",
                         "gflop": (6 * d * d * 3 * batch * steps + 2 * d * d * n_items) / 1e9})
    return pd.DataFrame(rows)


def evaluation_gflop(out: Path) -> pd.DataFrame:
    """Similarity rows of notebook 04, once per embedding set for every split that uses it: at
    most ``2 * n_items^2 * dim`` per set."""
    from visrec_utils.features import embedding_sets

    manifest = embedding_sets.read_manifest(out)
    return pd.DataFrame([{"stage": "evaluate", "what": f"{r.model} {r.strategy}",
                          "gflop": 2 * int(r.n_items) ** 2 * int(r.dim) / 1e9} for r in manifest.itertuples()])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="a finished study's output folder")
    ap.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/compute_bound.csv")
    ap.add_argument("--wall", type=float, default=None,
                    help="the study's measured wall seconds (default: results/run.json's total)")
    ap.add_argument("--rate", type=float, default=None,
                    help="fp32 matmul GFLOP/s measured before on a quiet machine (default: measured now, best of 3; "
                         "a busy machine measures a lower rate and so a looser bound)")
    a = ap.parse_args(argv)
    from benchmarks.extraction import machine_gflops

    rate = a.rate or max(machine_gflops() for _ in range(3))
    table = pd.concat([extraction_gflop(a.out), tuning_gflop(a.out), evaluation_gflop(a.out)], ignore_index=True)
    table["bound_seconds"] = table["gflop"] / rate
    per_stage = table.groupby("stage", sort=False)[["gflop", "bound_seconds"]].sum().reset_index()
    total = {"stage": "study", "what": "total", "gflop": table["gflop"].sum(), "bound_seconds": table["bound_seconds"].sum()}
    wall = a.wall
    run = a.out / "results/run.json"
    if wall is None and run.is_file():  # the notebooks' wall times as the runner recorded them
        wall = sum(nb.get("seconds", 0.0) for nb in json.loads(run.read_text()).get("notebooks", [])) or None
    out = pd.concat([table, per_stage.assign(what="stage total"), pd.DataFrame([total])], ignore_index=True)
    out["matmul_gflop_per_s"] = round(rate, 1)
    out["wall_seconds"] = np.where(out["stage"] == "study", wall if wall else np.nan, np.nan)
    out = out.round({"gflop": 1, "bound_seconds": 1})
    a.csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(a.csv, index=False)
    print(out.to_string(index=False))
    line = f"fp32 matmul {rate:.0f} GFLOP/s; the study's {total['gflop'] / 1e3:.1f} TFLOP bound it at {total['bound_seconds']:.0f} s"
    if wall:
        line += f"; measured {wall:.0f} s, {wall / total['bound_seconds']:.1f}x the bound"
    print(line)


if __name__ == "__main__":
    main()
