"""Entries of the embedding cache: their keys, their resumable chunked computation, their files.

An entry (kind ``embeddings`` of :class:`visrec_utils.core.store.Store`) holds the rows of one
embedding set for one image set: ``embeddings`` ``(n_images, dim) float32``, ``item_ids`` and the
unreadable images' ids and reasons. :func:`cache_key` names it by model, weights, preprocessing,
image bytes and variant, whoever computes it: a single extraction
(:func:`visrec_utils.features.embeddings.cached_embeddings`) or a shared pass
(:mod:`visrec_utils.features.passes`), which therefore read each other's entries.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.store import Store, content_key, file_sha256
from .models import LoadedModel

log = logging.getLogger(__name__)

CACHE_VERSION = "emb-v2"
CHUNK_IMAGES = 1024


def image_set_sha256(item_ids: Sequence[str], paths: Sequence[str]) -> str:
    """Content hash of an image set: sha256 over (item_id, sha256 of the image bytes), in order."""
    h = hashlib.sha256()
    for iid, p in zip(item_ids, paths):
        try:
            digest = file_sha256(p)
        except OSError as e:  # unreadable files get a stable marker; extraction reports them
            digest = f"unreadable:{type(e).__name__}"
        h.update(f"{iid}|{digest}\n".encode())
    return h.hexdigest()


def cache_key(loaded: LoadedModel, image_set: str, variant: str = "") -> str:
    """Cache key of an embedding set: :func:`visrec_utils.core.store.content_key` of the model
    name, weights hash, preprocessing, image set, and ``variant`` (what else was computed: e.g.
    the activations entering the last stage).

    Returns:
        24 lower-case hex digits.
    """
    payload = {
        "version": CACHE_VERSION,
        "model": loaded.spec.name,
        "weights_sha256": loaded.weights_sha256,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "image_set": image_set,
    }
    if variant:
        payload["variant"] = variant
    return content_key(payload)


class ChunkRun:
    """What :func:`run_in_chunks` ran: ``n`` images extracted in this call, the forward ``path``."""

    def __init__(self, n: int, path: str):
        self.n, self.path = n, path


def run_in_chunks(parts, n: int, chunk_images: int, batch_size: int, extract, what: str = "", columns=None):
    """Rows of ``n`` images computed chunk by chunk into ``parts`` (a
    :class:`visrec_utils.core.store.Chunks`), skipping chunks already written: the resumable core
    of :func:`cached_embeddings` and of a shared pass (:mod:`visrec_utils.features.passes`).

    Chunks are ``chunk_images`` images rounded to whole batches (so batches are the same in a
    resumed and an uninterrupted run); each is written atomically as soon as its rows are done.

    Args:
        extract: ``extract(order, on_batch) -> result with .path``, computing the rows of the
            images at positions ``order`` (an int array) and calling ``on_batch(pos, rows,
            reasons)`` after each batch (``pos`` indexes ``order``).
        what: name in the resume log line.
        columns: ``[(start, stop), ...]`` column ranges: the rows come back as one array per range
            (each ``(n, stop - start)``), so a shared pass's sets never exist twice in memory.

    Returns:
        (rows ``(n, dim) float32`` or None when ``n == 0`` (a list of such arrays with
        ``columns``), reasons (``n`` str, "" when read), :class:`ChunkRun` or None when every
        chunk was already written)
    """
    chunk = max(1, round(chunk_images / batch_size)) * batch_size
    starts = list(range(0, n, chunk))
    todo = parts.missing(starts)
    if len(todo) < len(starts):
        log.info("%s: resuming extraction, %d of %d chunks already written", what, len(starts) - len(todo), len(starts))
    order = np.concatenate([np.arange(s, min(s + chunk, n)) for s in todo]) if todo else np.zeros(0, int)
    buffers: dict[int, dict] = {}

    def on_batch(pos: int, rows: np.ndarray, reasons: list):
        for j in range(len(rows)):
            g = int(order[pos + j])
            s = g - g % chunk
            buf = buffers.setdefault(s, {"rows": {}, "reasons": {}})
            buf["rows"][g] = rows[j]
            buf["reasons"][g] = reasons[j]
            if len(buf["rows"]) == min(s + chunk, n) - s:
                idx = sorted(buf["rows"])
                parts.put(s, embeddings=np.stack([buf["rows"][i] for i in idx]),
                          reasons=np.array([buf["reasons"][i] for i in idx], dtype=str))
                del buffers[s]

    run = ChunkRun(len(order), extract(order, on_batch).path) if len(order) else None
    embs, reasons = [], []
    for s in starts:
        z = parts.load(s)
        rows = z["embeddings"]
        embs.append(rows if columns is None else [rows[:, a:b].copy() for a, b in columns])
        reasons.extend(z["reasons"].tolist())
    if columns is not None:  # one array per column range, built chunk by chunk (no copy of the whole)
        return [np.concatenate([e[i] for e in embs]) if embs else None for i in range(len(columns))], reasons, run
    return (np.concatenate(embs) if embs else None), reasons, run


def read_entry(store: Store, key: str, name: str, item_ids) -> tuple[np.ndarray, dict] | None:
    """A cached embedding entry's ``(rows, {item_id: reason} of unreadable images)``, or None when
    it is missing or was made for other item ids."""
    hit = store.get_arrays("embeddings", key, name)
    if hit is None or hit["item_ids"].tolist() != list(item_ids):
        return None
    failed = dict(zip(hit["failed_ids"].tolist(), hit["failed_reasons"].tolist())) if "failed_ids" in hit else {}
    return hit["embeddings"], failed


def write_entry(store: Store, key: str, name: str, emb: np.ndarray, item_ids, failed: dict) -> Path:
    """Write an embedding entry (rows, item ids, unreadable ids and reasons) read by :func:`read_entry`."""
    return store.put_arrays("embeddings", key, name=name, embeddings=emb, item_ids=np.asarray(item_ids, dtype=str),
                            failed_ids=np.asarray(list(failed), dtype=str),
                            failed_reasons=np.asarray(list(failed.values()), dtype=str))
