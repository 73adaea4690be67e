"""C decoders' stderr (libtiff) and Pillow's warnings become reasons, never terminal noise."""
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visrec_utils.features import models
from visrec_utils.features.extract import extract_embeddings
from visrec_utils.features.images import DecoderOutput, ImageError, load_image

NOISE = ("TIFF", "Fax4Decode", "LZWDecode", "Using code not yet in table", "Warning", "EXIF")


def _patch_tag(path, tag, value):
    """Overwrite a LONG tag's value in the first IFD of a little-endian TIFF written by Pillow."""
    b = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", b[4:8])[0]
    for i in range(struct.unpack("<H", b[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * i
        if struct.unpack("<H", b[e:e + 2])[0] == tag:
            assert struct.unpack("<H", b[e + 2:e + 4])[0] == 4  # LONG
            b[e + 8:e + 12] = struct.pack("<I", value)
    path.write_bytes(bytes(b))


def odd_tiffs(folder):
    """{file name: what libtiff says about it}; files that fail to decode, and one that decodes with noise."""
    rng = np.random.default_rng(0)
    bits = Image.fromarray((rng.random((64, 64)) > 0.5).astype(np.uint8) * 255).convert("1")
    rgb = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = {}
    for name, im, comp in [("strip_g4.tif", bits, "group4"), ("strip_lzw.tif", rgb, "tiff_lzw")]:
        im.save(folder / name, compression=comp)
        _patch_tag(folder / name, 279, 10**6)  # StripByteCounts beyond the end of the file
        out[name] = "TIFFFillStrip: Read error on strip 0"
    rgb.save(folder / "garbled_lzw.tif", compression="tiff_lzw")
    b = bytearray((folder / "garbled_lzw.tif").read_bytes())
    b[8:8 + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (folder / "garbled_lzw.tif").write_bytes(bytes(b))
    out["garbled_lzw.tif"] = "Using code not yet in table"
    bits.save(folder / "noisy_g4.tif", compression="group4")  # decodes, while libtiff complains
    b = bytearray((folder / "noisy_g4.tif").read_bytes())
    b[8:8 + 1100] = np.random.default_rng(1).integers(0, 256, 1100, dtype=np.uint8).tobytes()
    (folder / "noisy_g4.tif").write_bytes(bytes(b))
    out["noisy_g4.tif"] = None
    rgb.save(folder / "no_ifd.tif", compression="tiff_lzw")  # IFD cut off: Pillow warns "Corrupt EXIF data"
    (folder / "no_ifd.tif").write_bytes((folder / "no_ifd.tif").read_bytes()[:20])
    out["no_ifd.tif"] = "Corrupt EXIF data"
    return out


@pytest.fixture()
def tiffs(tmp_path):
    return tmp_path, odd_tiffs(tmp_path)


def test_these_files_make_pillow_write_to_fd2_without_visrec(tiffs):
    """The precondition: plain Pillow lets libtiff print to the process's stderr."""
    folder, cases = tiffs
    code = ("import sys\nfrom PIL import Image\nfor p in sys.argv[1:]:\n"
            "    try:\n        Image.open(p).load()\n    except Exception:\n        pass\n")
    err = subprocess.run([sys.executable, "-c", code, *[str(folder / n) for n in cases]],
                         capture_output=True, text=True).stderr
    assert "TIFFFillStrip: Read error on strip 0" in err and "Fax4Decode" in err and "Corrupt EXIF" in err


def test_load_image_turns_decoder_output_into_reasons(tiffs, capfd):
    folder, cases = tiffs
    for name, said in cases.items():
        if said is None:
            assert load_image(folder / name).size == (64, 64)  # decoded: its noise is dropped
            continue
        with pytest.raises(ImageError) as e:
            load_image(folder / name)
        assert f"decoder said: {said}" in e.value.reason, e.value.reason
    out, err = capfd.readouterr()
    assert not any(word in err for word in NOISE), err
    assert not any(word in out for word in NOISE), out
    # the reason is one trimmed line
    with pytest.raises(ImageError) as e:
        load_image(folder / "strip_lzw.tif")
    got = (folder / "strip_lzw.tif").stat().st_size - 8  # the strip starts at byte 8 and runs to the end
    assert e.value.reason == ("corrupt image data (decoder error -2); decoder said: TIFFFillStrip: Read error on "
                              f"strip 0; got {got} bytes, expected 1000000; re-export the image")


@pytest.mark.parametrize("workers", [0, 1])
def test_extraction_lists_reasons_and_prints_no_decoder_lines(tiffs, capfd, hm_dir, workers):
    folder, cases = tiffs
    paths = [str(p) for p in sorted(hm_dir.glob("images/*/*.jpg"))[:6]] + [str(folder / n) for n in cases]
    loaded = models.load_model("mobilenetv1_025_keras")
    res = extract_embeddings(loaded, paths, batch_size=4, num_workers=workers, progress=False, fast=False)
    _, err = capfd.readouterr()
    assert not any(word in err for word in NOISE), err
    expected = {6 + i: said for i, said in enumerate(cases.values()) if said}
    assert set(res.failed) == set(expected)
    for i, said in expected.items():
        assert said in res.failed[i]
    ok = [i for i in range(len(paths)) if i not in expected]
    assert np.isfinite(res.embeddings[ok]).all() and np.isnan(res.embeddings[list(expected)]).all()


def test_other_stderr_output_is_kept(tmp_path, capfd):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    sys.stderr.write("before the decode\n")  # buffered Python text is flushed before fd 2 moves
    load_image(tmp_path / "ok.png")
    with DecoderOutput() as noise:
        import os

        os.write(2, b"libfoo: Warning, odd tag\nlibfoo: broken stream\n")
    assert noise.complaint() == "libfoo: broken stream"  # the first error line, not the warning
    os.write(2, b"after the decode\n")
    err = capfd.readouterr().err
    assert "before the decode" in err and "after the decode" in err and "libfoo" not in err
