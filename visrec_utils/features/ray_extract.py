"""Extraction as Ray Data batch inference (the ``ray`` backend of extraction).

``backend="ray"`` (notebook parameter ``backend``, CLI ``--backend ray``) runs the same study on
a Ray cluster; results equal the local backend's (tests/test_scaleout.py checks embeddings and
per-user metrics on an H&M slice).

* Extraction: a Ray Data pipeline over ``{pos, path}`` rows (local paths or any fsspec URL): a
  decode stage (tasks of half a CPU, ``uint8`` images as the local path's DataLoader worker
  makes them), then ``map_batches`` with an actor pool, one model replica per actor (GPUs when
  the cluster has them) running the local path's runtime, micro-batch and in-model
  normalisation; output in input order, written through the same content-keyed chunk cache as
  the local path (so a run resumes whichever backend wrote the chunks). Decoding in its own
  stage overlaps it with the forwards, as locally (measured overhead against the local backend
  on one 2-core node: ``benchmarks/scaleout.py``).
* Evaluation: the test points are cut into shards; each shard is a Ray task that fits the
  recommenders and computes per-point metrics. Tie-breaking draws per test point, so shards
  give the same numbers as one process.

``ray.init(address=...)`` connects to an existing cluster (``address="auto"`` or
``"ray://host:10001"``, or ``$RAY_ADDRESS``); with none, a local Ray starts.
Ray is an optional extra: ``pip install -e .[ray]``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..core.backends import init_ray
from .extract import Extraction


def _decode(batch: dict, transform, input_size, dtype_name: str) -> dict:
    """Ray Data stage before the actors: ``{pos, path}`` rows -> ``{pos, image, reason}``, images
    decoded by the local path's :class:`~visrec_utils.features.extract.ImageDataset` (``uint8``
    when the model's transform splits, so the float work runs inside the converted model)."""
    import torch

    from .extract import ImageDataset

    data = ImageDataset([str(p) for p in batch["path"]], transform, input_size,
                        dtype=getattr(torch, dtype_name) if dtype_name else None)
    xs, reasons = zip(*(data[i] for i in range(len(data))))
    return {"pos": np.asarray(batch["pos"]), "image": torch.stack(xs).numpy(), "reason": np.array(reasons, dtype=object)}


class _EmbedActor:
    """One model replica: a batch of decoded ``{pos, image, reason}`` rows -> ``{pos, embedding, reason}``."""

    def __init__(self, model: str, runtime: str, threads: int, runtime_cache: str | None, normalize):
        import torch

        from .extract import PooledFeatures, resolve_device
        from .models import load_model

        torch.set_num_threads(threads)
        self.loaded = load_model(model)
        self.pooled = PooledFeatures(self.loaded.model)
        self.normalize = normalize
        self.runtime = runtime
        self.runtime_cache = runtime_cache
        self.forward = None
        self.device = resolve_device("auto")  # the local path's rule: CUDA, else MPS, else CPU
        self.pooled.to(self.device)

    def __call__(self, batch: dict) -> dict:
        import torch

        from .runtime import choose_forward, normalized, openvino_cache_path

        x = torch.from_numpy(np.ascontiguousarray(batch["image"])).to(self.device)
        reasons = [str(r) for r in batch["reason"]]
        with torch.inference_mode():
            if self.forward is None:  # the local path's choice: the same runtime, micro-batch and normalisation
                xml = openvino_cache_path(self.loaded, x.shape, self.runtime_cache) if self.device == "cpu" else None
                if self.device == "cpu":
                    self.forward, _, self.channels_last = choose_forward(
                        self.pooled, x, False, self.runtime, xml, self.normalize, self.runtime_cache,
                        f"{self.loaded.spec.name}-ray")
                else:
                    self.forward, self.channels_last = normalized(self.pooled, self.normalize), False
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            emb = self.forward(x).float().cpu().numpy()
        emb[np.array([r != "" for r in reasons], dtype=bool)] = np.nan
        return {"pos": np.asarray(batch["pos"]), "embedding": emb, "reason": np.array(reasons, dtype=object)}


def ray_extract(model: str, paths: Sequence[str], dim: int, batch_size: int = 32, num_actors: int | None = None,
                runtime: str = "auto", runtime_cache: str | None = None, address: str | None = None,
                progress: bool = True,
                on_batch: Callable[[int, np.ndarray, list], None] | None = None) -> Extraction:
    """Pooled features of ``paths`` as Ray Data batch inference (what
    :func:`visrec_utils.features.extract.extract_embeddings` does in one process).

    Args:
        model: a name :func:`visrec_utils.features.models.load_model` resolves on every worker.
        paths: image files or fsspec URLs, in item order.
        dim: embedding size.
        batch_size: images per actor call.
        num_actors: model replicas (default: one per 2 cluster CPUs, or one per GPU).
        runtime: passed to the actors' runtime choice (``"auto"``, ``"openvino"``, ``"torch"``).
        runtime_cache: folder for converted models on each worker (as in the local path).
        address: Ray cluster address (default ``$RAY_ADDRESS``, else a local Ray).
        on_batch: ``on_batch(start, rows, reasons)`` for each contiguous run of finished rows,
            in input order (the cache writes chunks from it).

    Returns:
        :class:`visrec_utils.features.extract.Extraction` (``(n, dim) float32``, NaN rows for unreadable
        images listed in ``failed``).
    """
    import time

    from tqdm.auto import tqdm

    ray = init_ray(address)
    import ray.data

    t0 = time.perf_counter()
    n = len(paths)
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    cpus = int(res.get("CPU", 1))
    actors = num_actors or (gpus if gpus else max(1, cpus // 2))
    threads = max(1, cpus // actors) if not gpus else 1
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    from .extract import split_normalize
    from .models import load_model

    loaded = load_model(model)
    split = split_normalize(loaded.transform())
    transform, normalize = split if split is not None else (loaded.transform(), None)
    ds = ray.data.from_items([{"pos": i, "path": str(p)} for i, p in enumerate(paths)],
                             override_num_blocks=max(1, min(n // batch_size, 4 * actors)) if n else 1)
    # decoding is its own stage (half a CPU per actor), so it overlaps the forwards as the local
    # path's DataLoader worker does; the actors take uint8 images and normalise inside the model
    decode_cpus = 0.5
    decoded = ds.map_batches(_decode, fn_kwargs={"transform": transform, "input_size": loaded.data_config["input_size"],
                                                 "dtype_name": "uint8" if split is not None else ""},
                             batch_size=batch_size, num_cpus=decode_cpus, batch_format="numpy")
    out = decoded.map_batches(_EmbedActor, fn_constructor_kwargs={"model": model, "runtime": runtime, "threads": threads,
                                                                  "runtime_cache": runtime_cache, "normalize": normalize},
                              batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                              num_cpus=0 if gpus else max(decode_cpus, threads - decode_cpus),
                              num_gpus=1 if gpus else 0, batch_format="numpy")
    emb = np.full((n, dim), np.nan, dtype=np.float32)
    failed: dict[int, str] = {}
    bar = tqdm(total=n, desc=f"embeddings {model} (ray, {actors} actors)", unit="img", disable=not progress)
    for b in out.iter_batches(batch_size=None, batch_format="numpy"):
        pos = b["pos"].astype(np.int64)
        order = np.argsort(pos, kind="stable")
        pos, rows, reasons = pos[order], b["embedding"][order], [str(r) for r in b["reason"][order]]
        emb[pos] = rows
        failed.update({int(p): r for p, r in zip(pos, reasons) if r})
        if on_batch is not None:  # contiguous runs, so the chunk cache sees what the local path gives it
            cuts = np.flatnonzero(np.diff(pos) != 1) + 1
            for run in np.split(np.arange(len(pos)), cuts):
                on_batch(int(pos[run[0]]), rows[run], [reasons[j] for j in run])
        bar.update(len(pos))
    bar.close()
    return Extraction(emb, failed, None, time.perf_counter() - t0, f"ray ({actors} actors x {threads} threads)")
