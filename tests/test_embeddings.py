"""Extraction and its content-keyed cache, on real catalogue images copied to a temp folder."""
import shutil

import numpy as np
import pytest

from visrec_utils import embeddings, models


@pytest.fixture(scope="module")
def mobilenet():
    return models.load_model("mobilenetv1_025_keras")


@pytest.fixture()
def images(tmp_path, hm_catalogue):
    items = hm_catalogue.items.iloc[:12]
    paths = []
    for src in items["image_path"]:
        dst = tmp_path / "img" / src.split("/")[-1]
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(src, dst)
        paths.append(str(dst))
    return items["item_id"].tolist(), paths


def test_fast_path_equals_plain_forward(mobilenet, images):
    _, paths = images
    plain = embeddings.extract_embeddings(mobilenet, paths, batch_size=5, fast=False, compile=False, progress=False)
    fast = embeddings.extract_embeddings(mobilenet, paths, batch_size=5, fast=True, compile=False, progress=False)
    assert plain.shape == (12, 256) and plain.dtype == np.float32
    assert np.abs(plain - fast).max() < embeddings.FAST_PATH_ATOL
    # batching does not change the result
    one = embeddings.extract_embeddings(mobilenet, paths, batch_size=12, fast=False, compile=False, progress=False)
    assert np.abs(plain - one).max() < 1e-5


def test_cache_hits_and_invalidates_on_image_bytes(mobilenet, images, tmp_path):
    ids, paths = images
    cache = tmp_path / "cache"
    a, info_a = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    b, info_b = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    assert not info_a["hit"] and info_b["hit"] and info_a["key"] == info_b["key"]
    np.testing.assert_array_equal(a, b)
    shutil.copy(paths[1], paths[0])  # image 0 now has other bytes
    c, info_c = embeddings.cached_embeddings(mobilenet, ids, paths, cache_dir=cache, progress=False)
    assert not info_c["hit"] and info_c["key"] != info_a["key"]
    np.testing.assert_allclose(c[0], c[1], atol=1e-5)
    np.testing.assert_array_equal(c[2:], a[2:])


def test_unreadable_image_names_the_file(mobilenet, images):
    _, paths = images
    with open(paths[3], "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(embeddings.ImageError, match=paths[3].split("/")[-1]):
        embeddings.extract_embeddings(mobilenet, paths, num_workers=0, progress=False)
