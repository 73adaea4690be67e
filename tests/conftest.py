"""Shared fixtures: the real H&M and ImageNet samples beside the repository (read-only)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
HM_DIR = SHARED / "hm_sample"
IMAGENET_DIR = SHARED / "imagenet_sample"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test writes its caches under a session temp folder, never in ~/.cache or shared/."""
    cache = tmp_path_factory.mktemp("visrec_cache")
    old = os.environ.get("VISREC_CACHE")
    os.environ["VISREC_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("VISREC_CACHE", None)
    else:
        os.environ["VISREC_CACHE"] = old


@pytest.fixture(scope="session")
def hm_dir():
    if not HM_DIR.is_dir():
        pytest.skip(f"real H&M sample not found at {HM_DIR}")
    return HM_DIR


@pytest.fixture(scope="session")
def imagenet_dir():
    if not IMAGENET_DIR.is_dir():
        pytest.skip(f"ImageNet sample not found at {IMAGENET_DIR}")
    return IMAGENET_DIR


@pytest.fixture(scope="session")
def hm_catalogue(hm_dir):
    from visrec_utils.catalogue import data

    return data.load_hm(hm_dir)
