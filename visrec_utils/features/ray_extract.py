"""Extraction on Ray, and the ``ray`` backend as a whole.

``backend="ray"`` (notebook parameter ``backend``, CLI ``--backend ray``) runs the same study on
a Ray cluster; results equal the local backend's (tests/test_scaleout.py checks embeddings and
per-user metrics on an H&M slice).

* Extraction (this module): the images are cut into contiguous shards of about
  :data:`SHARD_IMAGES` (whole batches); each
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
* Evaluation (:mod:`visrec_utils.evaluation.ray_evaluate`): the test points are cut into
  shards; each shard is a Ray task that fits the
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
"""Images per extraction task (rounded up to whole batches): about 15 s of a 2-core node, so progress and the chunk cache
move at least that often, while a task's own start (forking its decode worker, the first batch
without overlap) stays near 1% of it."""

_WORKER: dict = {}  # in each Ray worker process: the last model loaded and the forwards chosen for it


def _extract_shard(model: str, weights_sha256: str | None, paths: list, batch_size: int, runtime: str,
                   runtime_cache: str | None, threads: int) -> tuple:
    """One Ray task: the local path over ``paths`` in this worker process, keeping the loaded
    model and its chosen forward for the next shard of the same weights. Returns ``((n, dim)
    float32 rows, [reason or "" per image], the forward path used)``.

    Raises:
        ValueError: the worker loads other weights for ``model`` than the driver did (a checkpoint
            file changed, or differs between nodes).
    """
    import torch

    from .extract import extract_embeddings
    from .models import load_model

    torch.set_num_threads(threads)
    if _WORKER.get("key") != (model, weights_sha256):  # one model at a time per worker: memory stays one model's
        _WORKER.clear()
        loaded = load_model(model)
        if weights_sha256 and loaded.weights_sha256 and loaded.weights_sha256 != weights_sha256:
            raise ValueError(f"model {model!r}: a Ray worker loaded weights {loaded.weights_sha256[:12]} but the driver "
                             f"has {weights_sha256[:12]}; give every node the same checkpoint file")
        _WORKER.update(key=(model, weights_sha256), loaded=loaded, forwards={})
    res = extract_embeddings(_WORKER["loaded"], paths, batch_size=batch_size, compile=False, progress=False,
                             runtime=runtime, runtime_cache=runtime_cache, forwards=_WORKER["forwards"])
    return res.embeddings, [res.failed.get(i, "") for i in range(len(paths))], res.path


def ray_extract(model: str, paths: Sequence[str], dim: int, batch_size: int = 32, num_tasks: int | None = None,
                runtime: str = "auto", runtime_cache: str | None = None, address: str | None = None,
                progress: bool = True,
                on_batch: Callable[[int, np.ndarray, list], None] | None = None,
                weights_sha256: str | None = None) -> Extraction:
    """Pooled features of ``paths`` as Ray tasks over contiguous shards, each running
    :func:`visrec_utils.features.extract.extract_embeddings` (what the local backend does in one
    process) on one node's CPUs or one GPU.

    Args:
        model: a name :func:`visrec_utils.features.models.load_model` resolves on every worker.
        paths: image files or fsspec URLs, in item order.
        dim: embedding size.
        batch_size: images per forward.
        num_tasks: the least number of shards (default: the cluster's GPUs, else its CPUs over
            the smallest node's); a task takes one GPU, or the smallest node's CPUs as threads, and
            Ray runs as many at once as the resources allow.
        runtime: the workers' runtime choice (``"auto"``, ``"openvino"``, ``"torch"``).
        runtime_cache: folder for converted models on each worker (as in the local path).
        address: Ray cluster address (default ``$RAY_ADDRESS``, else a local Ray).
        on_batch: ``on_batch(start, rows, reasons)`` for each finished shard, in input order (the
            cache writes chunks from it).
        weights_sha256: the driver's weights digest of ``model``; a worker that loads other weights
            fails the shard instead of caching its rows under the driver's key.

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
    # contiguous shards of whole batches: about SHARD_IMAGES, and at least one per slot
    per = min(SHARD_IMAGES, -(-n // slots)) if n else batch_size
    per = max(batch_size, -(-per // batch_size) * batch_size)
    task = ray.remote(_extract_shard).options(num_cpus=0 if gpus else threads, num_gpus=1 if gpus else 0,
                                              max_retries=2)
    starts = list(range(0, n, per))
    refs = [task.remote(model, weights_sha256, [str(p) for p in paths[a:a + per]], batch_size, runtime, runtime_cache,
                        threads) for a in starts]
    emb = np.full((n, dim), np.nan, dtype=np.float32)
    failed: dict[int, str] = {}
    path = ""
    bar = tqdm(total=n, desc=f"embeddings {model} (ray, {slots} x {threads} threads)", unit="img", disable=not progress)
    try:
        for i, a in enumerate(starts):  # in input order, as the local path gives its batches
            rows, reasons, path = ray.get(refs[i])
            refs[i] = None  # read: its object can leave the store
            k = len(rows)
            emb[a:a + k] = rows
            del rows
            failed.update({a + j: r for j, r in enumerate(reasons) if r})
            if on_batch is not None:
                on_batch(a, emb[a:a + k], reasons)
            bar.update(k)
    finally:  # an error or an interrupt: the shards not read are dropped, the read ones are in the cache
        for ref in refs:
            if ref is not None:
                try:
                    ray.cancel(ref)
                except Exception:  # Ray already gone: the error that brought us here is the one to see
                    pass
        bar.close()
    return Extraction(emb, failed, None, time.perf_counter() - t0,
                      f"ray ({len(starts)} shards, {slots} x {threads} threads; {path})")
