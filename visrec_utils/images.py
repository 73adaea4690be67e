"""Robust image decoding: every readable image becomes RGB; every unreadable one gets a reason.

Handled (each generated and asserted in ``tests/test_images.py``): zero-byte and truncated files,
files that are not images, CMYK, 16-bit, palette (with or without transparency), greyscale,
RGBA/LA (composited on white), EXIF-rotated photos (orientation applied), animated GIFs (first
frame), PNG/WebP/TIFF/BMP, very large images (JPEGs decoded at reduced size with Pillow's draft
mode, others shrunk after decoding) and decompression bombs (refused with a clear message).
"""
from __future__ import annotations

import os
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
    try:
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
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"decompression bomb guard: {e}; if the file is trusted, raise VISREC_MAX_PIXELS") from e
    except UnidentifiedImageError as e:
        raise ImageError(path, "not an image file Pillow can identify (wrong extension or another format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        kind = "truncated file" if "truncated" in msg.lower() else "corrupt image data"
        raise ImageError(path, f"{kind} ({msg}); re-export the image") from e
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not lose the image
        pass
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
