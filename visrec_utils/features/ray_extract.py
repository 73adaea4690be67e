"""Extraction and evaluation on Ray (the ``ray`` backend).

``backend="ray"`` (notebook parameter ``backend``, CLI ``--backend ray``) runs the same study on
a Ray cluster; results equal the local backend's (tests/test_scaleout.py checks embeddings and
per-user metrics on an H&M slice).

* Extraction: the images are cut into contiguous shards (at most :data:`SHARD_IMAGES`); each
  shard is a Ray task that runs the local path itself
  (:func:`~visrec_utils.features.extract.extract_embeddings`: decoding in a DataLoader worker,
  the same runtime, micro-batch and in-model normalisation) on a node's CPUs (or one GPU). A
  worker process keeps the model it loaded and the forward it chose (conversion, equality check)
  for the next shard and the next extraction of that model, so Ray adds no per-run model start:
  Ray Data's actor pool, used before, started a fresh actor process per extraction (imports,
  model load and runtime check: about 9 s against the local path's 1 s, measured with 64 H&M
  images). Shards come back in input order through the same content-keyed chunk cache as the
  local path (so a run resumes whichever backend wrote the chunks). Measured overhead against the
  local backend on one 2-core node: ``benchmarks/scaleout.py``.
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

SHARD_IMAGES = 2048
"""Most images per extraction task: about 15 s of a 2-core node, so progress and the chunk cache
move at least that often, while a task's own start (forking its decode worker, the first batch
without overlap) stays near 1% of it."""

_WORKER: dict = {}  # in each Ray worker process: the last model loaded and the forwards chosen for it


def _extract_shard(model: str, paths: list, batch_size: int, runtime: str, runtime_cache: str | None,
                   threads: int) -> tuple:
    """One Ray task: the local path over ``paths`` in this worker process, keeping the loaded
    model and its chosen forward for the next shard. Returns ``((n, dim) float32 rows,
    [reason or "" per image], the forward path used)``."""
    import torch

    from .extract import extract_embeddings
    from .models import load_model

    torch.set_num_threads(threads)
    if _WORKER.get("model") != model:  # one model at a time per worker: memory stays one model's
        _WORKER.clear()
        _WORKER.update(model=model, loaded=load_model(model), forwards={})
    res = extract_embeddings(_WORKER["loaded"], paths, batch_size=batch_size, compile=False, progress=False,
                             runtime=runtime, runtime_cache=runtime_cache, forwards=_WORKER["forwards"])
    return res.embeddings, [res.failed.get(i, "") for i in range(len(paths))], res.path


def ray_extract(model: str, paths: Sequence[str], dim: int, batch_size: int = 32, num_tasks: int | None = None,
                runtime: str = "auto", runtime_cache: str | None = None, address: str | None = None,
                progress: bool = True,
                on_batch: Callable[[int, np.ndarray, list], None] | None = None) -> Extraction:
    """Pooled features of ``paths`` as Ray tasks over contiguous shards, each running
    :func:`visrec_utils.features.extract.extract_embeddings` (what the local backend does in one
    process) on one node's CPUs or one GPU.

    Args:
        model: a name :func:`visrec_utils.features.models.load_model` resolves on every worker.
        paths: image files or fsspec URLs, in item order.
        dim: embedding size.
        batch_size: images per forward.
        num_tasks: shards running at once (default: one per GPU, else one per node, each with the
            CPUs of the smallest node as threads).
        runtime: the workers' runtime choice (``"auto"``, ``"openvino"``, ``"torch"``).
        runtime_cache: folder for converted models on each worker (as in the local path).
        address: Ray cluster address (default ``$RAY_ADDRESS``, else a local Ray).
        on_batch: ``on_batch(start, rows, reasons)`` for each finished shard, in input order (the
            cache writes chunks from it).

    Returns:
        :class:`visrec_utils.features.extract.Extraction` (``(n, dim) float32``, NaN rows for unreadable
        images listed in ``failed``).

    Raises:
        ray.exceptions.RayTaskError: a shard raised (a worker process that dies is retried twice;
            an unreadable image does not fail a shard: its row is NaN and its reason listed).
    """
    import time

    from tqdm.auto import tqdm

    ray = init_ray(address)
    t0 = time.perf_counter()
    n = len(paths)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    node_cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    threads = 1 if gpus else max(1, min((c for c in node_cpus if c), default=1))  # a task fits on any node
    slots = num_tasks or (gpus if gpus else max(1, sum(c // threads for c in node_cpus)))
    # contiguous shards of whole batches: at most SHARD_IMAGES, and at least one per slot
    per = min(SHARD_IMAGES, -(-n // slots)) if n else batch_size
    per = max(batch_size, -(-per // batch_size) * batch_size)
    task = ray.remote(_extract_shard).options(num_cpus=0 if gpus else threads, num_gpus=1 if gpus else 0,
                                              max_retries=2)
    refs = [(a, task.remote(model, [str(p) for p in paths[a:a + per]], batch_size, runtime, runtime_cache, threads))
            for a in range(0, n, per)]
    emb = np.full((n, dim), np.nan, dtype=np.float32)
    failed: dict[int, str] = {}
    path = ""
    bar = tqdm(total=n, desc=f"embeddings {model} (ray, {slots} x {threads} threads)", unit="img", disable=not progress)
    try:
        for a, ref in refs:  # in input order, as the local path gives its batches
            rows, reasons, path = ray.get(ref)
            emb[a:a + len(rows)] = rows
            failed.update({a + j: r for j, r in enumerate(reasons) if r})
            if on_batch is not None:
                on_batch(a, rows, reasons)
            bar.update(len(rows))
    finally:  # an error or an interrupt: the queued shards are dropped, the finished ones are in the cache
        for _, ref in refs:
            ray.cancel(ref)
        bar.close()
    return Extraction(emb, failed, None, time.perf_counter() - t0,
                      f"ray ({len(refs)} shards, {slots} x {threads} threads; {path})")
