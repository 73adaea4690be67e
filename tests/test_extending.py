"""Adding a fine-tuning strategy or an evaluation protocol is one registered object and its test.

``tests/toy_strategy.py`` and ``tests/toy_protocol.py`` are each the whole addition (one file, no
other file changed); registered here, they run through the study's stage layer on a slice of the
real H&M sample, next to the built-ins, with values checked against what they must equal.
"""
import numpy as np
import pytest

from toy_protocol import PROTOCOL
from toy_strategy import RandomRotation
from visrec_utils.catalogue import data, protocols
from visrec_utils.features import embedding_sets
from visrec_utils.pipeline import stages
from visrec_utils.tuning import strategies


@pytest.fixture
def toys():
    strategies.register_strategy(RandomRotation())
    protocols.register_protocol(PROTOCOL)
    yield
    strategies.unregister_strategy("random_rotation")
    protocols.unregister_protocol("every_other_user")


def test_a_toy_strategy_and_protocol_run_through_the_stages(toys, tmp_path, hm_dir):
    assert "random_rotation" in strategies.list_strategies(uses_purchases=False)
    assert "every_other_user" in protocols.list_protocols()
    out, cache = tmp_path / "study", tmp_path / "cache"
    stages.prepare(out, data_dir=hm_dir, max_users=60, max_items=400, figures=False)
    stages.extract(out, models=["mobilenetv1_025_keras"], cache_dir=cache, imagenet_dir="", umap_points=0)
    tuned = stages.tune(out, stage_models=[], strategies=["random_rotation"], cache_dir=cache, n_resamples=50)

    # a rotation keeps every cosine similarity: VisRank's metrics equal the frozen set's
    m = tuned.metrics.set_index(["strategy", "metric", "k"])["value"]
    np.testing.assert_allclose(m.loc["random_rotation"].sort_index(), m.loc["frozen"].sort_index(), atol=1e-6)
    rows = embedding_sets.read_manifest(out).set_index("strategy")
    assert bool(rows.loc["random_rotation", "uses_purchases"]) is False
    assert rows.loc["random_rotation", "weights_sha256"] == rows.loc["frozen", "weights_sha256"]
    assert "seed" in str(rows.loc["random_rotation", "strategy_params"])

    ev = stages.evaluate(out, protocol="every_other_user", other_protocols=[], sensitivity=[], cold_warm=False,
                         recommenders=["visrank_max"], baselines=["popularity"], n_resamples=50)
    full = protocols.make_split(data.load_study_catalogue(out), "leave_last_basket_out")
    assert set(ev.per_user["user_id"]) == set(full.users[::2])  # the protocol's users, nothing else
    assert set(ev.metrics["strategy"]) == {"frozen", "random_rotation", "-"}
    per_model = ev.metrics.set_index(["strategy", "recommender", "metric", "k"])["value"]
    np.testing.assert_allclose(per_model.loc["random_rotation"].sort_index(), per_model.loc["frozen"].sort_index(),
                               atol=1e-6)
