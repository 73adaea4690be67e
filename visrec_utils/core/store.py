"""The artefact store: one content key, atomic writes, and one folder per kind of artefact.

Every cache of the study goes through :class:`Store` (extracted embeddings, ImageNet top-1
checks, evaluations, fine-tuned embeddings and weights, converted OpenVINO models, pinned
micro-batches), and every file the study writes for a later step goes through
:func:`atomic_write`. A key is :func:`content_key` of what the artefact depends on (canonical
JSON, sha256): the same inputs give the same key on any machine, a changed input a new key.

Layout: ``<root>/<kind>/<name>-<key><suffix>``, where ``name`` is a readable prefix (a model
name made safe by :func:`visrec_utils.core.naming.safe_name`) that is never parsed back: what an
entry is comes from its key's inputs, recorded by the caller (e.g. the embedding-set manifest).

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a reader
never sees half an entry and a killed run leaves no partial one; :meth:`Store.chunks` gives a
resumable, chunked put for long computations (embedding extraction).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from .naming import safe_name

__all__ = ["Store", "content_key", "atomic_write", "write_json", "read_json", "default_cache_dir", "file_sha256"]


def default_cache_dir() -> Path:
    """``$VISREC_CACHE`` or ``~/.cache/visrec``."""
    return Path(os.environ.get("VISREC_CACHE") or Path.home() / ".cache" / "visrec")


def _canonical(part: Any) -> bytes:
    if isinstance(part, bytes):
        return part
    return json.dumps(part, sort_keys=True, default=str, ensure_ascii=False).encode()


def content_key(*parts: Any, length: int = 24) -> str:
    """Content key of ``parts``: hex sha256 over each part's canonical JSON (sorted keys;
    tuples as lists; other objects by ``str``) or raw bytes, in order.

    Args:
        *parts: JSON-able values or bytes.
        length: hex digits kept (24 = 96 bits; 64 for the full digest).

    Returns:
        ``length`` lower-case hex digits.
    """
    h = hashlib.sha256()
    for p in parts:
        b = _canonical(p)
        h.update(len(b).to_bytes(8, "little"))  # (a, b) and (ab,) differ
        h.update(b)
    return h.hexdigest()[:length]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``.

    The temporary file is in ``path``'s folder (created when missing), so the rename is atomic:
    a reader sees the old file or the whole new one, never half of it, and a killed or failed
    write (full disk) leaves ``path`` as it was. The file is made readable by all (0644).

    Raises:
        whatever ``write`` raises (the temporary file is removed first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as UTF-8 JSON atomically (:func:`atomic_write`); objects JSON does not know
    are written with ``str``."""
    text = json.dumps(obj, indent=indent, default=str, ensure_ascii=False)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


class Store:
    """A content-keyed folder of artefacts, one sub-folder per kind.

    Args:
        root: the folder (default :func:`default_cache_dir`: ``$VISREC_CACHE`` or
            ``~/.cache/visrec``); created on the first write.

    Example:
        >>> store = Store("/tmp/cache")
        >>> key = content_key({"model": "resnet50", "images": "ab12"})
        >>> store.put_arrays("embeddings", key, name="resnet50", embeddings=emb)  # doctest: +SKIP
        >>> store.get_arrays("embeddings", key, name="resnet50")["embeddings"]  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, kind: str, key: str, suffix: str = "", name: str = "") -> Path:
        """Where the entry ``(kind, key)`` lives: ``<root>/<kind>/[<safe name>-]<key><suffix>``."""
        stem = f"{safe_name(name)}-{key}" if name else key
        return self.root / kind / f"{stem}{suffix}"

    # JSON ---------------------------------------------------------------------------------
    def put_json(self, kind: str, key: str, obj: Any, name: str = "") -> Path:
        """Store a JSON-able object atomically; returns its path."""
        return write_json(self.path(kind, key, ".json", name), obj)

    def get_json(self, kind: str, key: str, name: str = "") -> Any:
        """The stored object, or None when absent."""
        return read_json(self.path(kind, key, ".json", name))

    # arrays -------------------------------------------------------------------------------
    def put_arrays(self, kind: str, key: str, name: str = "", **arrays) -> Path:
        """Store named numpy arrays as one ``.npz`` (no pickles), atomically; returns its path."""
        import numpy as np

        return atomic_write(self.path(kind, key, ".npz", name), lambda tmp: np.savez(tmp, **arrays))

    def get_arrays(self, kind: str, key: str, name: str = "") -> dict | None:
        """``{name: array}`` of a stored ``.npz``, or None when absent."""
        import numpy as np

        p = self.path(kind, key, ".npz", name)
        if not p.is_file():
            return None
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # tables -------------------------------------------------------------------------------
    def put_table(self, kind: str, key: str, table, name: str = "") -> Path:
        """Store a DataFrame as parquet (index dropped), atomically; returns its path."""
        return atomic_write(self.path(kind, key, ".parquet", name), lambda tmp: table.to_parquet(tmp, index=False))

    def get_table(self, kind: str, key: str, name: str = ""):
        """The stored DataFrame, or None when absent."""
        import pandas as pd

        p = self.path(kind, key, ".parquet", name)
        return pd.read_parquet(p) if p.is_file() else None

    # other files --------------------------------------------------------------------------
    def put_file(self, kind: str, key: str, suffix: str, write: Callable[[str], None], name: str = "") -> Path:
        """Store a file written by ``write(tmp_path)`` (e.g. ``torch.save``), atomically."""
        return atomic_write(self.path(kind, key, suffix, name), write)

    def has(self, kind: str, key: str, suffix: str, name: str = "") -> bool:
        """Whether the entry exists (complete: entries appear only by an atomic rename)."""
        return self.path(kind, key, suffix, name).is_file()

    def chunks(self, kind: str, key: str, name: str = "") -> "Chunks":
        """A resumable, chunked put of the entry ``(kind, key)``: see :class:`Chunks`."""
        return Chunks(self.path(kind, key, ".parts", name))


class Chunks:
    """Parts of one long computation, each written atomically as ``chunk_<start>.npz``.

    A run that is killed keeps its finished chunks; the next run computes only the missing ones
    (:meth:`missing`) and, once all are there, joins them (:meth:`load`) and removes the folder
    (:meth:`discard`) after the caller has stored the joined entry.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, start: int) -> Path:
        return self.folder / f"chunk_{start:09d}.npz"

    def missing(self, starts) -> list[int]:
        """The chunk starts (row offsets) not yet written."""
        return [s for s in starts if not self._path(s).is_file()]

    def put(self, start: int, **arrays) -> None:
        """Write the chunk beginning at row ``start`` atomically."""
        import numpy as np

        atomic_write(self._path(start), lambda tmp: np.savez(tmp, **arrays))

    def load(self, start: int) -> dict:
        """``{name: array}`` of one written chunk."""
        import numpy as np

        with np.load(self._path(start), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def discard(self) -> None:
        """Remove the parts (after the joined entry is stored)."""
        shutil.rmtree(self.folder, ignore_errors=True)
