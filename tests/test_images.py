"""Every awkward image case, generated with Pillow, and what visrec makes of it."""
import io

import numpy as np
import pytest
from PIL import Image

from visrec_utils.features import images
from visrec_utils.features.images import ImageError, load_image


def _rgb(w=64, h=48):
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (200, 30, 30)  # left half red
    a[:, w // 2:] = (30, 30, 200)   # right half blue
    return Image.fromarray(a)


def test_plain_formats(tmp_path):
    for ext in ("png", "webp", "tiff", "bmp", "jpg"):
        p = tmp_path / f"x.{ext}"
        _rgb().save(p)
        im = load_image(p)
        assert im.mode == "RGB" and im.size == (64, 48)
        assert im.getpixel((5, 5))[0] > 150 and im.getpixel((60, 5))[2] > 150


def test_modes_become_rgb(tmp_path):
    base = _rgb()
    cases = {
        "cmyk.jpg": base.convert("CMYK"),
        "grey.png": base.convert("L"),
        "palette.png": base.convert("P"),
        "bilevel.png": base.convert("1"),
    }
    for name, im in cases.items():
        p = tmp_path / name
        im.save(p)
        out = load_image(p)
        assert out.mode == "RGB" and out.size == (64, 48), name
    # 16-bit greyscale: 65535 -> 255, 32896 -> 128
    a = np.full((10, 10), 65535, np.uint16)
    a[:, :5] = 32896
    im16 = Image.fromarray(a)
    assert im16.mode.startswith("I;16")
    im16.save(tmp_path / "g16.png")
    out = np.asarray(load_image(tmp_path / "g16.png"))
    assert out[0, 9].tolist() == [255, 255, 255] and out[0, 0].tolist() == [128, 128, 128]


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png").getpixel((1, 1)) == (255, 255, 255)
    la = Image.new("LA", (8, 8), (0, 255))  # opaque black
    la.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").getpixel((1, 1)) == (0, 0, 0)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 255, 0] + [0] * 765)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    assert load_image(tmp_path / "pal.png").getpixel((1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    im = _rgb(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == (48, 64)
    assert out.getpixel((24, 5))[0] > 150  # red (was left) is now on top


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, g, b = load_image(tmp_path / "anim.gif").getpixel((8, 8))
    assert r > 200 and g < 50 and b < 50


def test_large_jpeg_is_decoded_small(tmp_path):
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(tmp_path / "big.jpg", quality=80)
    out = load_image(tmp_path / "big.jpg", min_side=224)
    assert 448 <= min(out.size) < 1000 and abs(out.size[0] / out.size[1] - 4 / 3) < 0.02
    assert load_image(tmp_path / "big.jpg").size == (4000, 3000)  # full size when not asked


def test_unreadable_files_get_a_reason(tmp_path, monkeypatch):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not an image")
    buf = io.BytesIO()
    _rgb(256, 256).save(buf, "JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[:600])
    expect = {"empty.jpg": "empty file", "text.jpg": "not an image", "trunc.jpg": "truncated",
              "missing.jpg": "not found"}
    for name, reason in expect.items():
        with pytest.raises(ImageError, match=reason) as info:
            load_image(tmp_path / name)
        assert info.value.path.endswith(name)
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    Image.new("RGB", (300, 300)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="decompression bomb.*VISREC_MAX_PIXELS"):
        load_image(tmp_path / "bomb.png")
