"""Safe file names for identifiers given by users: model names, strategy names, item ids.

A name as given (``resnet50=/data/my weights/w.pth``, ``tf_efficientnet_lite0@stage3``,
``modèle v2``) stays the identity in tables, manifests and reports; on disk it becomes an opaque,
portable key made by :func:`safe_name` (the idea of timm's ``safe_model_name``: keep what is safe,
replace the rest), with a short content hash whenever the mapping is lossy, so two different names
never share a file.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

#: Characters kept as they are. Everything else (path separators, ':', spaces, quotes, '=', '*',
#: non-ASCII letters after transliteration) is replaced by '_'.
SAFE_CHARS = "a-z0-9._@-"
#: Hex digits of sha256 appended when a name is not kept verbatim (40 bits).
HASH_CHARS = 10
#: Longest file stem made from one name (well under the 255 bytes file systems allow, so a
#: few names and a suffix still fit in one file name).
MAX_LEN = 80
#: Separator of the parts in :func:`safe_stem`; a name kept verbatim never contains it.
SEP = "__"

_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_CHARS}}}$")
_VERBATIM = re.compile(rf"[a-z0-9]([{SAFE_CHARS}]*[a-z0-9])?")
# device names Windows refuses as file stems, whatever the extension
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def name_hash(name: str, n: int = HASH_CHARS) -> str:
    """First ``n`` hex digits of the sha256 of ``name``'s UTF-8 bytes (stable across runs)."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _verbatim(name: str, max_len: int) -> bool:
    return (len(name) <= max_len and _VERBATIM.fullmatch(name) is not None and ".." not in name
            and SEP not in name and _HASHED.search(name) is None and name.split(".")[0] not in _RESERVED)


def safe_name(name: str, max_len: int = MAX_LEN) -> str:
    """A portable file stem for ``name``, distinct for distinct names.

    ``name`` is kept as it is when it is already safe: lower-case ASCII letters, digits and
    ``. _ @ -``, starting and ending with a letter or digit, without ``..`` or ``__``, at most
    ``max_len`` characters, not a Windows device name and not ending like a hashed name. Any
    other name is transliterated to ASCII, its unsafe runs replaced by ``_`` (runs of ``.`` and
    ``_`` collapsed, ends trimmed, cut to fit) and ``-<10 hex digits of its sha256>`` appended.
    Upper case is lossy too (case-insensitive file systems would merge ``A`` and ``a``): the
    letters are kept and the hash tells the names apart.

    The result never contains ``/``, ``\\``, ``:``, ``..``, ``__``, spaces or non-ASCII
    characters, never starts with ``.`` or ``-``, has at most ``max_len`` characters and is the
    same in every run and process.

    Args:
        name: any string (a model, strategy or item id as the user wrote it).
        max_len: longest result; at least 24.

    Returns:
        the file stem (add the extension yourself).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``max_len`` is below 24.
    """
    if not isinstance(name, str):
        raise TypeError(f"safe_name takes a string, not {type(name).__name__} ({name!r})")
    if max_len < 24:
        raise ValueError(f"max_len must be at least 24 (a readable part and the hash), not {max_len}")
    if _verbatim(name, max_len):
        return name
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    readable = re.sub(r"[^A-Za-z0-9@-]+", "_", ascii_.replace("..", "_"))  # '.' dropped: no '..' can survive
    readable = re.sub(r"_+", "_", readable).strip("_-@")
    readable = readable[:max_len - HASH_CHARS - 1].rstrip("_-@")
    return f"{readable}-{name_hash(name)}" if readable else f"x-{name_hash(name)}"


def safe_stem(*names: str, max_len: int = MAX_LEN) -> str:
    """:func:`safe_name` of each part joined by ``__`` (:data:`SEP`).

    No safe part contains ``__`` or starts or ends with ``_``, so the join is unambiguous:
    ``("a__b", "c")`` and ``("a", "b__c")`` get different stems.
    """
    return SEP.join(safe_name(n, max_len) for n in names)
