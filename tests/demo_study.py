"""A small study output folder for the explorer and the hover map: the demo catalogue prepared by
notebook 01's stage, and two frozen embedding sets made from the items' drawn hue and shape (no
model runs), saved as notebook 02 saves its sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: The two sets' model names (labelled as ImageNet models in the reports) and their noise.
MODELS = {"tf_efficientnet_lite0": 0.1, "mobilenetv1_025_keras": 0.4}


def demo_study(out: Path) -> Path:
    """Prepare the demo catalogue (150 users, 400 items) in ``out`` and save :data:`MODELS`' sets:
    ``(400, 6) float32`` = (cos, sin of the hue angle, one-hot shape) + Gaussian noise (seeded)."""
    from visrec_utils.catalogue import data
    from visrec_utils.features import embedding_sets
    from visrec_utils.pipeline import stages

    stages.prepare(out, data_dir="demo", figures=False)
    items = data.load_prepared(out).items
    hue = items["hue"].astype(float).to_numpy()
    onehot = np.stack([(items["shape"] == s).to_numpy(float) for s in sorted(set(items["shape"]))], axis=1)
    rng = np.random.default_rng(0)
    for model, noise in MODELS.items():
        emb = np.hstack([np.cos(2 * np.pi * hue)[:, None], np.sin(2 * np.pi * hue)[:, None], onehot])
        emb = emb + noise * rng.standard_normal(emb.shape)
        embedding_sets.save_embedding_set(out, model, "frozen", emb.astype(np.float32), items["item_id"].astype(str).tolist())
    return out
