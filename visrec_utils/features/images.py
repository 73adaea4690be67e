"""Robust image decoding: every readable image becomes RGB; every unreadable one gets a reason.

Handled (each generated and asserted in ``tests/test_images.py``): zero-byte and truncated files,
files that are not images, CMYK, 16-bit, palette (with or without transparency), greyscale,
RGBA/LA (composited on white), EXIF-rotated photos (orientation applied), animated GIFs (first
frame), PNG/WebP/TIFF/BMP, very large images (JPEGs decoded at reduced size with Pillow's draft
mode, others shrunk after decoding) and decompression bombs (refused with a clear message).

Decoder noise: libtiff and other C decoders inside Pillow write their complaints straight to the
process's file descriptor 2 ("TIFFFillStrip: Read error on strip 0 ...", "Fax4Decode: Bad code
word ..."), and Pillow raises Python warnings ("Corrupt EXIF data"). :func:`load_image` captures
both for the duration of each decode (:class:`DecoderOutput`): when the decode fails, the
decoder's first complaint becomes part of the :class:`ImageError` reason; when it succeeds, the
output is dropped. So terminals and reports show visrec's list of unreadable files, not hundreds
of decoder lines.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings

import numpy as np

#: Images with more pixels than this are refused as possible decompression bombs; raise it with
#: the VISREC_MAX_PIXELS environment variable for trusted, very large files.
MAX_PIXELS = int(os.environ.get("VISREC_MAX_PIXELS", 89_478_485))


class ImageError(ValueError):
    """An image file cannot be read. ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"Cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class DecoderOutput:
    """Context manager: C-level stderr (fd 2) and Python warnings of the code inside, captured.

    fd 2 is pointed at a per-process scratch file with ``dup2`` on entry and restored on exit,
    so output of C libraries (libtiff, libjpeg, libpng, libwebp inside Pillow) goes there instead
    of the terminal or the notebook; Python warnings are recorded instead of shown. Safe in
    DataLoader worker processes (each process, forked or spawned, gets its own scratch file) and
    across threads (one capture at a time per process, so decodes in threads of one process run
    one after another; what another thread writes to fd 2 meanwhile is captured too). Cost: about
    5 us per use (a few system calls), against 0.75 ms to decode one 256x384 H&M JPEG on one
    core, i.e. under 1% (``benchmarks/decoder_capture.py``).

    Attributes (after exit):
        text: what was written to fd 2 (decoded as UTF-8 with replacement; the first 64 KiB).
        warnings: the messages of the Python warnings raised inside.
    """

    _lock = threading.Lock()
    _scratch: int | None = None  # fd of this process's scratch file
    _pid: int | None = None

    def __init__(self):
        self.text = ""
        self.warnings: list[str] = []

    @classmethod
    def _scratch_fd(cls) -> int:
        if cls._scratch is None or cls._pid != os.getpid():  # a forked child must not share the offset
            with tempfile.TemporaryFile(prefix="visrec-decoder-") as f:  # already unlinked; the dup keeps it
                cls._scratch, cls._pid = os.dup(f.fileno()), os.getpid()
        return cls._scratch

    def __enter__(self):
        self._lock.acquire()
        self._saved = None
        try:
            sys.stderr.flush()  # Python text written before the decode stays on the terminal
        except (AttributeError, ValueError, OSError):
            pass
        try:
            scratch = self._scratch_fd()
            saved = os.dup(2)
            os.dup2(scratch, 2)
            self._saved, self._fd = saved, scratch
        except OSError:  # no fd 2 (a closed stderr): nothing to capture
            pass
        self._warn = warnings.catch_warnings(record=True)
        self._records = self._warn.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        try:
            self._warn.__exit__(*exc)
            self.warnings = [str(w.message) for w in self._records]
            if self._saved is not None:
                os.dup2(self._saved, 2)
                os.close(self._saved)
                size = os.lseek(self._fd, 0, os.SEEK_CUR)
                if size:
                    self.text = os.pread(self._fd, min(size, 1 << 16), 0).decode("utf-8", "replace")
                    os.ftruncate(self._fd, 0)
                    os.lseek(self._fd, 0, os.SEEK_SET)
        finally:
            self._lock.release()
        return False

    def complaint(self, limit: int = 200) -> str:
        """The decoder's first error line (else its first line, else the first warning),
        whitespace collapsed and cut to ``limit`` characters; "" when it said nothing."""
        # Pillow hands libtiff its data under the made-up file name "tempfile.tif": not the user's file
        lines = [" ".join(ln.split()).removeprefix("tempfile.tif: ") for ln in self.text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "warning" not in ln.lower()]
        first = (errors or lines or [" ".join(w.split()) for w in self.warnings if w.strip()] or [""])[0].rstrip(" .")
        return first if len(first) <= limit else first[:limit - 3] + "..."


if hasattr(os, "register_at_fork"):  # a child forked while another thread held the lock must not wait forever
    os.register_at_fork(after_in_child=lambda: setattr(DecoderOutput, "_lock", threading.Lock()))


def _to_8bit(im):
    """16/32-bit integer and float greyscale modes -> 8-bit 'L'."""
    from PIL import Image

    a = np.asarray(im)
    if im.mode == "F":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    else:
        a = a.astype(np.float64) / (257.0 if a.max(initial=0) <= 65535 else 16843009.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _flatten_alpha(im, background=(255, 255, 255)):
    from PIL import Image

    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def _decode(path: str, source, min_side: int | None):
    """Open and fully decode ``source`` under the decompression-bomb guard (no conversions)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            im = Image.open(source)
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(path, f"decompression bomb guard: {w}x{h} = {w * h:,} pixels exceeds "
                                       f"{MAX_PIXELS:,}; if the file is trusted, raise VISREC_MAX_PIXELS")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            if min_side and im.format == "JPEG" and min(w, h) > 4 * min_side:
                im.draft("RGB", (w * 2 * min_side // min(w, h), h * 2 * min_side // min(w, h)))
            im.load()
        finally:
            Image.MAX_IMAGE_PIXELS = old
    return im


def load_image(path: str | os.PathLike, min_side: int | None = None):
    """Open any image as an RGB ``PIL.Image``.

    Args:
        path: image file, or an fsspec URL (``file://``, ``s3://``, ``gs://``, ``https://``; the
            protocol's fsspec package must be installed).
        min_side: the smallest shorter side the caller needs (e.g. the model's resize size).
            Images much larger than that are decoded (JPEG draft mode) or shrunk to about
            2 x ``min_side`` on the shorter side, which is faster and never changes a downstream
            resize by more than resampling noise. None keeps full size.

    Returns:
        ``PIL.Image.Image`` in mode RGB, orientation from EXIF applied, first frame of animations.

    Raises:
        ImageError: empty, truncated, corrupt or non-image file, or a decompression bomb; the
            ``reason`` says which and what to do.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = str(path)
    source = path
    try:
        if "://" in path:  # any fsspec URL (file://, s3://, gs://, https://, ...)
            import io

            import fsspec

            with fsspec.open(path, "rb") as f:
                source = io.BytesIO(f.read())
            size = len(source.getbuffer())
        else:
            size = os.path.getsize(path)
    except (OSError, ValueError) as e:
        raise ImageError(path, f"file not found or not accessible ({getattr(e, 'strerror', None) or e})") from e
    if size == 0:
        raise ImageError(path, "empty file (0 bytes); re-export or remove the image")
    with DecoderOutput() as noise:
        try:
            im = _decode(path, source, min_side)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(path, f"decompression bomb guard: {e}; if the file is trusted, "
                                   "raise VISREC_MAX_PIXELS") from e
        except UnidentifiedImageError as e:
            failure = (e, "not an image file Pillow can identify (wrong extension or another format)")
        except (OSError, SyntaxError, ValueError) as e:
            msg = str(e)
            kind = "truncated file" if "truncated" in msg.lower() else "corrupt image data"
            failure = (e, f"{kind} ({msg})")
        else:
            failure = None
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block must not lose the image
                pass
    if failure is not None:
        said = noise.complaint()
        reason = failure[1] + (f"; decoder said: {said}" if said else "")
        if not reason.startswith("not an image"):
            reason += "; re-export the image"
        raise ImageError(path, reason) from failure[0]
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _to_8bit(im)
    elif mode == "P" and "transparency" in im.info:
        im = _flatten_alpha(im)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = _flatten_alpha(im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    if min_side and min(im.size) > 4 * min_side:
        scale = 2 * min_side / min(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.BICUBIC)
    return im
