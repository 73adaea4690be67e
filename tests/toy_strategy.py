"""A toy fine-tuning strategy, the whole of what adding one takes (tests/test_extending.py).

``random_rotation``: the frozen embeddings times a seeded random orthogonal matrix. It trains
nothing and sees no purchase, and cosine similarities are unchanged by a rotation, so VisRank's
metrics on it must equal the frozen set's: a real check that the study carries a new strategy
end to end.
"""
import numpy as np
import pandas as pd

from visrec_utils.tuning.strategies import Strategy


class RandomRotation(Strategy):
    name, uses_purchases, needs_backbone = "random_rotation", False, False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def params(self) -> dict:
        return {"seed": self.seed}

    def budget(self, history) -> str:
        return "no training"

    def fit(self, model_name, frozen_embeddings, cat, split, store, loaded=None, progress=True):
        dim = frozen_embeddings.shape[1]
        q, _ = np.linalg.qr(np.random.default_rng(self.seed).standard_normal((dim, dim)))
        emb = (frozen_embeddings.astype(np.float64) @ q).astype(np.float32)
        return emb, pd.DataFrame(), {"hit": False, "seconds": 0.0, "activation_seconds": 0.0, "train_seconds": 0.0}
