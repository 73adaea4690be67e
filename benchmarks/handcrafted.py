"""Speed of the ``handcrafted`` control's features (issue 17), as measured figures. Not a test.

    .venv/bin/python benchmarks/handcrafted.py                 # 256 H&M photos, 5 rounds
    .venv/bin/python benchmarks/handcrafted.py --csv out.csv

The photos go through the control's own preprocessing (224 px, [0, 1]); the features of a batch of
64 are computed three ways: the whole batch in one step (how they were computed before, with the
Laplacian as a one-channel ``conv2d``), the whole batch with the Laplacian by shifted planes, and in
blocks of :data:`visrec_utils.features.controls.HANDCRAFTED_BLOCK` images (what extraction uses).
Medians of the rounds in milliseconds per image, and whether each equals the first bit for bit.
Measured on this 2-core machine (benchmarks/results/handcrafted.csv): 4.16, 2.41 and 2.03 ms per
image, all equal (the first also computes the shifted planes it then overwrites; the code before
the change took 4.85 ms). The 84 s handcrafted pass over 17,033 photos of a cold study was this
arithmetic, not decoding (0.75 ms per photo).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _conv_laplacian_block(x):
    """The features as computed before issue 17's change: one step, Laplacian by conv2d."""
    import torch
    import torch.nn.functional as F

    from visrec_utils.features import controls

    f = controls._handcrafted_block(x)
    x = x.clamp(0, 1).float()
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    lap = F.conv2d(luma[:, None], torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]), padding=1)[:, 0, 1:-1, 1:-1]
    f[:, 108 + controls.SCALAR_FEATURES.index("sharpness")] = torch.log1p(lap.flatten(1).var(1) * 100)
    return f


def main(argv=None) -> int:
    import pandas as pd
    import timm
    import torch

    from visrec_utils.features import controls
    from visrec_utils.features.images import load_image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/hm_sample"))
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--csv", default=None, help="also write the figures as CSV here")
    a = p.parse_args(argv)
    files = sorted(Path(a.data).rglob("*.jpg"))[:a.n]
    if not files:
        p.error(f"no .jpg files under {a.data}; pass --data <folder of photos>")
    model = controls.build_handcrafted()
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    x = torch.stack([tf(load_image(str(f))) for f in files])
    ways = {"whole batch, conv2d Laplacian": _conv_laplacian_block,
            "whole batch, shifted planes": controls._handcrafted_block,
            f"blocks of {controls.HANDCRAFTED_BLOCK}": controls.handcrafted_features}
    rows, first = [], None
    for name, fn in ways.items():
        out = torch.cat([fn(x[i:i + a.batch]) for i in range(0, len(x), a.batch)])
        first = out if first is None else first
        times = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            for i in range(0, len(x), a.batch):
                fn(x[i:i + a.batch])
            times.append((time.perf_counter() - t0) / len(x) * 1e3)
        rows.append({"way": name, "ms_per_image": round(statistics.median(times), 3),
                     "equal_to_first": bool(torch.equal(out, first)), "images": len(x),
                     "threads": torch.get_num_threads()})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if a.csv:
        table.to_csv(a.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
