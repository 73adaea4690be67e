"""Small numeric helpers shared by the features, tuning and evaluation layers (numpy only)."""
from __future__ import annotations

import numpy as np


def l2_normalize(emb: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, ``(n, d) float32`` (zero rows stay zero)."""
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), eps)
