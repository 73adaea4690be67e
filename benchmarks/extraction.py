"""Extraction speed and memory, printed as measured figures (issue 7). Not a test.

    python benchmarks/extraction.py speed            # (a) plain loop, (b) visrec, (c) model alone, per model
    python benchmarks/extraction.py rss --n 1000     # peak RSS of visrec's extraction of n images
    python benchmarks/extraction.py runtimes         # model alone under each runtime (Lite0)
    python benchmarks/extraction.py device           # on a GPU (cuda/mps): float32 and mixed precision
    python benchmarks/extraction.py passes --n 2000  # each set alone vs one shared pass (CSV)

(a) a plain timm loop: PIL decode and the model's eval transform in the loop, NCHW float32 eager
PyTorch, batch 32; (b) visrec end to end: ``embeddings.cached_embeddings`` into an empty cache
(decode in a DataLoader worker, the fastest equal runtime, chunked writes), once with the
runtime's converted model not yet cached and once with it cached; (c) the model alone on
random tensors with visrec's runtime. Targets on a 2-core machine: (b)/(a) >= 3 for
``tf_efficientnet_lite0``, (b)/(c) >= 0.9, embeddings of (b) equal to (a) within 1e-4.
The images are the first ``--n`` of the H&M sample (``$VISREC_DATA`` or ``../shared``).
"""
from __future__ import annotations

import argparse
import copy
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visrec_utils.catalogue import data, readers
from visrec_utils.features import embeddings, extract, models  # noqa: E402

OFFLINE = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv1_025_keras"]


def _paths(n: int) -> tuple[list[str], list[str]]:
    items = readers.load_hm(data.resolve_data_dir()).items.head(n)
    return items["item_id"].astype(str).tolist(), items["image_path"].astype(str).tolist()


def machine_gflops() -> float:
    """Measured float32 matmul rate of this machine (numpy BLAS, 4096^2 x 4096), GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((4096, 4096), dtype=np.float32)
    a @ a
    t0 = time.perf_counter()
    a @ a
    return 2 * 4096**3 / (time.perf_counter() - t0) / 1e9


def model_gflop(loaded) -> float:
    """Forward FLOPs of the pooled features for one image (torch's FlopCounterMode; a
    multiply-add counts 2), in GFLOP."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pooled = extract.PooledFeatures(loaded.model)
    x = torch.zeros(1, *loaded.data_config["input_size"])
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        pooled(x)
    return fc.get_total_flops() / 1e9


def plain_loop(loaded, paths: list[str], batch_size: int = 32) -> tuple[np.ndarray, float]:
    """(a): decode + transform + eager NCHW forward in one loop; (rows, images/s)."""
    import torch
    from PIL import Image

    tf = loaded.transform()
    model = loaded.model.eval()
    rows = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(paths), batch_size):
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[s:s + batch_size]])
            rows.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(rows), len(paths) / (time.perf_counter() - t0)


def model_only(loaded, runtime_cache: Path, batch_size: int = 32, seconds: float = 1.0,
               rounds: int = 3) -> tuple[float, str]:
    """(c): visrec's chosen runtime on random tensors; (images/s, runtime). The best of
    ``rounds`` rounds of at least ``seconds`` each: this shared machine's speed varies by
    10-30% between short runs, and the model's capacity is its best steady rate."""
    import torch

    split = extract.split_normalize(loaded.transform())
    normalize = split[1] if split else None
    shape = (batch_size, *loaded.data_config["input_size"])
    # what visrec's runtime is given: uint8 images when the transform splits (normalised inside)
    x = torch.randint(0, 256, shape, dtype=torch.uint8) if normalize else torch.randn(shape)
    pooled = extract.PooledFeatures(loaded.model)
    xml = extract.openvino_cache_path(loaded, x.shape, runtime_cache)
    # the runtime and pinned micro-batch visrec's extraction chooses
    forward, desc, cl = extract.choose_forward(pooled, x, False, "auto", xml, normalize, runtime_cache)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    best = 0.0
    with torch.inference_mode():
        forward(x)
        for _ in range(rounds):
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                forward(x)
                n += batch_size
            best = max(best, n / (time.perf_counter() - t0))
    return best, re.sub(r" \(max abs diff[^)]*\)", "", desc)


def bench_speed(names: list[str], n: int, n_plain: int) -> None:
    ids, paths = _paths(n)
    peak = machine_gflops()
    print(f"{len(paths)} H&M images; this machine's float32 matmul: {peak:.0f} GFLOP/s")
    for name in names:
        loaded = models.load_model(name)
        with tempfile.TemporaryDirectory() as cache:
            rows_a, ips_a = plain_loop(loaded, paths[:n_plain])
            t0 = time.perf_counter()
            emb_cold, info = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=cache, progress=False)
            ips_cold = len(paths) / (time.perf_counter() - t0)
            for f in Path(cache, "embeddings").glob("*.npz"):
                f.unlink()  # the converted model stays cached; the embeddings do not
            t0 = time.perf_counter()
            emb_b, _ = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=cache, progress=False)
            ips_b = len(paths) / (time.perf_counter() - t0)
            ips_c, runtime = model_only(loaded, Path(cache))
        diff = float(np.abs(emb_b[:n_plain] - rows_a).max())
        gflop = model_gflop(loaded)
        print(f"{name}: {gflop:.2f} GFLOP/image, runtime {runtime}")
        print(f"  (a) plain timm loop {ips_a:.1f} img/s ({n_plain} images); (b) visrec end to end {ips_b:.1f} img/s "
              f"({ips_cold:.1f} img/s when the converted model is not yet cached); (c) model alone {ips_c:.1f} img/s")
        print(f"  (b)/(a) = {ips_b / ips_a:.2f}x (target >= 3 for Lite0); (b)/(c) = {ips_b / ips_c:.2f} (target >= 0.9); "
              f"max |(b) - (a)| = {diff:.1e} (target <= 1e-4)")
        print(f"  model FLOP rate {gflop * ips_c:.0f} GFLOP/s = {gflop * ips_c / peak:.0%} of the matmul peak")


def bench_device(names: list[str], n: int, device: str, batch_size: int = 64) -> None:
    """(b) end to end and (c) model alone on ``device`` (a GPU: float32 with TF32 off, and
    mixed precision), with the largest difference from the CPU's float32 embeddings. The model
    runs in eager PyTorch here (as visrec does on a GPU); on the CPU this mode is only a smoke
    test of the path, since ``speed`` measures visrec's CPU runtime (OpenVINO)."""
    import torch

    device = extract.resolve_device(device)
    ids, paths = _paths(n)
    name_of = torch.cuda.get_device_name(0) if device == "cuda" else device
    print(f"{len(paths)} H&M images on {name_of}; batch {batch_size}; eager PyTorch"
          + ("" if device != "cpu" else " (CPU: a smoke test of the GPU path; see 'speed' for CPU figures)"))
    for name in names:
        loaded = models.load_model(name)
        with tempfile.TemporaryDirectory() as cache:
            ref, _ = embeddings.cached_embeddings(loaded, ids[:64], paths[:64], cache_dir=cache, progress=False,
                                                  device="cpu")
        for amp in (False, True):
            with tempfile.TemporaryDirectory() as cache:
                t0 = time.perf_counter()
                emb, _ = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=cache, progress=False,
                                                      device=device, amp=amp, batch_size=batch_size)
                ips_b = len(paths) / (time.perf_counter() - t0)
            pooled = extract.PooledFeatures(loaded.model).to(device)
            x = torch.randn(batch_size, *loaded.data_config["input_size"], device=device)
            ctx = torch.autocast(device, dtype=torch.float16 if device != "cpu" else torch.bfloat16, enabled=amp)
            with torch.inference_mode(), ctx:
                for _ in range(3):
                    pooled(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(20):
                    pooled(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                ips_c = 20 * batch_size / (time.perf_counter() - t0)
            pooled.to("cpu")
            a, b = emb[:64], ref
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            vs = "" if (device == "cpu" and not amp) else \
                f"; vs CPU float32: max abs diff {np.abs(a - b).max():.1e}, min cosine {cos.min():.4f}"
            print(f"{name} {'amp' if amp else 'float32'}: (b) end to end {ips_b:.0f} img/s; (c) model alone "
                  f"{ips_c:.0f} img/s; (b)/(c) {ips_b / ips_c:.2f}{vs}")


def bench_rss(name: str, n: int) -> None:
    """Peak RSS of extracting n images into an empty cache, in a fresh process."""
    code = (f"import sys, resource, tempfile; sys.path.insert(0, {str(ROOT)!r}); "
            "sys.argv=['x']; import benchmarks.extraction as b; from visrec_utils.features import embeddings, models; "
            f"ids, paths = b._paths({n}); m = models.load_model({name!r}); "
            "d = tempfile.mkdtemp(); embeddings.cached_embeddings(m, ids, paths, cache_dir=d, progress=False); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    dt = time.perf_counter() - t0
    main, worker = int(out[-2]) / 2**20, int(out[-1]) / 2**20
    print(f"{name}, {n} images: peak RSS {main:.2f} GiB (main process), {worker:.2f} GiB (decode worker); {dt:.0f} s")


def bench_runtimes(name: str) -> None:
    import torch

    loaded = models.load_model(name)
    pooled = extract.PooledFeatures(loaded.model)
    x = torch.randn(32, *loaded.data_config["input_size"])
    with torch.inference_mode():
        ref = pooled(x).numpy()
    paths = {"eager NCHW": pooled,
             "channels_last": lambda a: copy.deepcopy(pooled).to(memory_format=torch.channels_last)(
                 a.contiguous(memory_format=torch.channels_last))}
    try:
        paths["openvino (f32)"] = extract.openvino_forward(pooled, x)
    except ImportError as e:
        print(f"openvino: not installed ({e})")
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "m.onnx"
            torch.onnx.export(pooled, (x,), str(f), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False)
            sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        paths["onnxruntime"] = lambda a: torch.from_numpy(sess.run(None, {"x": a.numpy()})[0])
    except ImportError as e:
        print(f"onnxruntime: not installed ({e})")
    for desc, fn in paths.items():
        with torch.inference_mode():
            out = fn(x)
            t0 = time.perf_counter()
            for _ in range(4):
                fn(x)
            ips = 4 * 32 / (time.perf_counter() - t0)
        print(f"{name} {desc}: {ips:.1f} img/s, max abs diff vs eager {np.abs(np.asarray(out) - ref).max():.1e}")


PASS_SETS = ["tf_efficientnet_lite0", "random_tf_efficientnet_lite0", "tf_efficientnet_lite0@stage2",
             "tf_efficientnet_lite0@stage3", "tf_efficientnet_lite0@stage4"]


def bench_passes(names: list[str], n: int, csv: Path) -> None:
    """Notebook 02's sets that share a preprocessing (default: EfficientNet-Lite0, its random
    control, three layer variants) plus notebook 03's last-stage activations of the first,
    extracted (1) each alone, as before issue 17, and (2) in one shared pass
    (:mod:`visrec_utils.features.passes`), each into an empty cache with the converted models
    cached; writes one row per set and the totals to ``csv`` with the largest difference."""
    import pandas as pd

    from visrec_utils.features import passes
    from visrec_utils.tuning.stage_tuning import StagedModel

    ids, paths = _paths(n)
    image_set = embeddings.image_set_sha256(ids, paths)
    loaded = [models.load_model(m) for m in names]
    staged = StagedModel(loaded[0].model, 1, loaded[0].data_config["input_size"])
    taps = [passes.taps_of(m) for m in loaded] + [passes.activation_tap(loaded[0], 1)]
    rows, alone = [], {}
    with tempfile.TemporaryDirectory() as warm:  # converted models cached first, as in a rerun
        kw = {"cache_dir": warm, "image_set": image_set, "progress": False}
        for m in loaded:
            embeddings.cached_embeddings(m, ids[:64], paths[:64], **{**kw, "image_set": None})
        embeddings.cached_embeddings(loaded[0], ids[:64], paths[:64], cache_dir=warm, variant="act1",
                                     module=staged.frozen, dim=taps[-1].dim, progress=False)
        passes.cached_pass(passes.plan_passes(taps)[0], ids[:64], paths[:64],
                           embeddings.image_set_sha256(ids[:64], paths[:64]), cache_dir=warm, progress=False)
        for run in ("alone", "shared"):
            with tempfile.TemporaryDirectory() as cold:
                import shutil
                for sub in ("openvino", "micro_batch.json"):
                    src = Path(warm) / sub
                    (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(cold) / sub)
                t0 = time.perf_counter()
                if run == "alone":
                    for m in loaded:
                        t = time.perf_counter()
                        alone[m.spec.name] = embeddings.cached_embeddings(m, ids, paths, cache_dir=cold, **{
                            k: v for k, v in kw.items() if k != "cache_dir"})[0]
                        rows.append({"run": run, "set": m.spec.name, "seconds": time.perf_counter() - t})
                    t = time.perf_counter()
                    alone[taps[-1].name] = embeddings.cached_embeddings(
                        loaded[0], ids, paths, cache_dir=cold, image_set=image_set, variant="act1", module=staged.frozen,
                        dim=taps[-1].dim, progress=False)[0]
                    rows.append({"run": run, "set": taps[-1].name, "seconds": time.perf_counter() - t})
                else:
                    got = passes.cached_pass(passes.plan_passes(taps)[0], ids, paths, image_set, cache_dir=cold,
                                             progress=False)
                    diff = max(float(np.nanmax(np.abs(got[k][0] - alone[k]))) for k in alone)
                    rows.append({"run": run, "set": "all, one pass", "seconds": time.perf_counter() - t0,
                                 "max_abs_diff": diff})
                rows.append({"run": run, "set": "total", "seconds": time.perf_counter() - t0})
    table = pd.DataFrame(rows).assign(n_images=n, images_per_s=lambda d: (n / d["seconds"]).round(1))
    table["seconds"] = table["seconds"].round(1)
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    print(table.to_string(index=False))
    total = table[table["set"] == "total"].set_index("run")["seconds"]
    print(f"one shared pass: {total['alone'] / total['shared']:.2f}x faster than each set alone; written to {csv}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "rss", "runtimes", "device", "passes"])
    ap.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/extraction_passes.csv",
                    help="where 'passes' writes its table")
    ap.add_argument("--device", default="auto", help="device mode: auto (cuda, else mps, else cpu), cuda, mps, cpu")
    ap.add_argument("--models", nargs="+", default=OFFLINE)
    ap.add_argument("--n", type=int, default=2000, help="images for (b) and rss")
    ap.add_argument("--n-plain", type=int, default=320, help="images for the slow plain loop (a)")
    a = ap.parse_args(argv)
    if a.what == "speed":
        bench_speed(a.models, a.n, a.n_plain)
    elif a.what == "passes":
        bench_passes(PASS_SETS if a.models == OFFLINE else a.models, a.n, a.csv)
    elif a.what == "device":
        bench_device(a.models, a.n, a.device)
    elif a.what == "rss":
        for name in a.models:
            bench_rss(name, a.n)
    else:
        bench_runtimes(a.models[0])


if __name__ == "__main__":
    main()
