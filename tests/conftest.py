"""Shared fixtures and the test tiers.

Data: the real H&M and ImageNet samples in ``../shared/data`` beside the repository (read-only;
``$VISREC_SHARED`` names another folder that holds ``data/``). A test that needs them asks for
the ``hm_dir`` or ``imagenet_dir`` fixture (or one built on them, ``hm_catalogue``); when the data
is missing it is skipped, and with ``CI=true`` it fails instead, naming the missing path
(:func:`shared_data`), so that a CI run without the data cannot pass by skipping.

Tiers: ``pytest -m "not slow"`` (or ``-m fast``) is the daily tier; ``pytest -m slow`` runs the
studies. Tests marked ``@pytest.mark.slow`` in their file, every test of :data:`SLOW_MODULES` and
every test on a local Ray cluster (:data:`SLOW_FIXTURES`) are slow; every other test is marked ``fast``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VISREC_SHARED") or REPO.parent / "shared") / "data"
HM_DIR = SHARED / "hm_sample"
IMAGENET_DIR = SHARED / "imagenet_sample"

#: Test modules that run whole notebook studies or train real models (minutes each): all slow.
SLOW_MODULES = {"test_notebooks", "test_execution", "test_small_catalogues", "test_stage_tuning"}
#: Fixtures that make a test slow wherever it is (a local Ray cluster starts for them).
SLOW_FIXTURES = {"local_ray"}


def in_ci() -> bool:
    """Whether this is a CI run (``$CI`` is ``true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def shared_data(path: Path, what: str) -> Path:
    """``path`` when it is a folder; otherwise skip the test, or fail it under ``CI=true``.

    Args:
        path: a folder under :data:`SHARED`.
        what: what it holds, for the message (e.g. "real H&M sample").
    """
    if path.is_dir():
        return path
    if in_ci():
        pytest.fail(f"{what} not found at {path}: CI (CI=true) expects the read-only data folder ../shared/data "
                    f"beside the repository ({SHARED}); a missing one is an error in CI, not a skip", pytrace=False)
    pytest.skip(f"{what} not found at {path}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the slow tier by module name and fixture (see the module docstring), the rest ``fast``;
    runs before ``-m`` selects, so both markers select."""
    for item in items:
        module = item.path.stem if getattr(item, "path", None) else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)


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
    return shared_data(HM_DIR, "real H&M sample")


@pytest.fixture(scope="session")
def imagenet_dir():
    return shared_data(IMAGENET_DIR, "ImageNet sample")


@pytest.fixture(scope="session")
def hm_catalogue(hm_dir):
    from visrec_utils.catalogue import readers

    return readers.load_hm(hm_dir)
