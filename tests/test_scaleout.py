"""Scale-out: sharded evaluation equals one process; the Ray backend equals the local one.

The Ray tests start a local Ray with 2 CPUs; they are skipped only when Ray is not installed
(``pip install -e '.[ray]'``, which ``make test`` does).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data, protocols
from visrec_utils.features import embeddings, models
from visrec_utils.evaluation import experiment, metrics, recommenders
from visrec_utils.core import backends


@pytest.fixture(scope="module")
def hm_slice(hm_catalogue):
    cat = data.slice_catalogue(hm_catalogue, max_users=80, max_items=400, seed=3)
    return cat, protocols.leave_last_basket_out(cat)


def _sets(cat):
    rng = np.random.default_rng(0)  # a coarse embedding: many tied scores, so tie-breaking is exercised
    return {("coarse", "frozen"): rng.integers(0, 3, size=(len(cat.items), 4)).astype(np.float32)}


def test_shards_of_points_give_the_numbers_of_one_pass(hm_slice):
    cat, split = hm_slice
    emb = _sets(cat)[("coarse", "frozen")]
    names = ["visrank_max", "visrank_top3", "popularity", "itemknn", "random"]
    whole, whole_top = metrics.evaluate_many(recommenders.make_score_fns(split, emb, names), split, return_top=True)
    shards = backends.shard_points(split.n_users, 3)
    assert [len(s) for s in shards] == [len(a) for a in np.array_split(np.arange(split.n_users), 3)]
    for name in names:
        parts = [metrics.evaluate_many(recommenders.make_score_fns(split, emb, [name], points=p), split,
                                       points=p, chunk=7, return_top=True) for p in shards]
        pd.testing.assert_frame_equal(pd.concat([q[0][name] for q in parts], ignore_index=True), whole[name])
        np.testing.assert_array_equal(np.concatenate([q[1][name] for q in parts]), whole_top[name])
    # the coarse scores do tie: otherwise this test would not check tie-breaking
    rows = recommenders.make_score_fns(split, emb, ["visrank_max"])["visrank_max"](np.arange(5))
    assert all(len(np.unique(r)) < len(r) / 2 for r in rows)


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.check_backend("spark")


def test_a_local_ray_starts_without_its_token_notice_on_stderr():
    """Ray prints "Token authentication is enabled for this Ray cluster ..." when it starts a local
    cluster; in a study that line landed in every Ray notebook's report. Token authentication
    stays on; the notice is not shown."""
    pytest.importorskip("ray")
    code = "from visrec_utils.core import backends; backends.init_ray(num_cpus=1).shutdown(); print('started')"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and run.stdout.strip() == "started", run.stderr[-2000:]
    assert "Token authentication" not in run.stderr, run.stderr[-2000:]


def test_only_the_token_enabled_notice_is_dropped():
    import logging

    def record(msg):
        return logging.LogRecord("ray._private.authentication.authentication_token_setup", logging.WARNING, "", 0,
                                 msg, None, None)

    assert not backends._drop_token_enabled_notice(record(
        "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."))
    assert backends._drop_token_enabled_notice(record(  # the security warning still shows
        "Token authentication is disabled for this Ray cluster. Anyone with network access to the cluster ..."))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    backends.init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_evaluation_equals_local(hm_slice, local_ray):
    cat, split = hm_slice
    sets = _sets(cat)
    kw = dict(recommenders=["visrank_max", "hybrid_itemknn_visrank"], baselines=["popularity", "itemknn"],
              n_resamples=50, progress=False)
    m_local, pu_local = experiment.run_experiment(split, sets, **kw)
    m_ray, pu_ray = experiment.run_experiment(split, sets, backend="ray", **kw)
    pd.testing.assert_frame_equal(pu_ray, pu_local)
    pd.testing.assert_frame_equal(m_ray, m_local)


def test_ray_extraction_equals_local_and_shares_the_cache(hm_slice, local_ray, tmp_path, monkeypatch):
    from visrec_utils.features import ray_extract

    monkeypatch.setattr(ray_extract, "SHARD_IMAGES", 16)  # 40 images -> shards of one 32-image batch and 8
    cat, _ = hm_slice
    items = cat.items.head(40)
    ids = items["item_id"].astype(str).tolist()
    paths = items["image_path"].astype(str).tolist()
    paths[3] = "file://" + paths[3]  # an fsspec URL
    paths[5] = str(tmp_path / "missing.jpg")  # unreadable: a NaN row and a reason, on both backends
    loaded = models.load_model("mobilenetv1_025_keras")
    local, info_l = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=tmp_path / "a", progress=False,
                                                 chunk_images=16)
    ray_emb, info_r = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=tmp_path / "b", progress=False,
                                                   chunk_images=16, backend="ray")
    assert info_r["fast_path"].startswith("ray (2 shards, 1 x 2 threads; ") and not info_r["hit"]
    assert np.isnan(ray_emb[5]).all() and np.isnan(local[5]).all() and info_r["failed"] == info_l["failed"]
    ok = np.ones(len(ids), bool)
    ok[5] = False
    # the same decode (uint8), runtime, micro-batch and in-model normalisation as the local path: equal bit for bit
    np.testing.assert_array_equal(ray_emb[ok], local[ok])
    # the Ray run wrote the ordinary cache: a local call now hits it
    again, info = embeddings.cached_embeddings(loaded, ids, paths, cache_dir=tmp_path / "b", progress=False)
    assert info["hit"]
    np.testing.assert_array_equal(again, ray_emb)
