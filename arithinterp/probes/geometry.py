"""The geometry of activations and probe directions: principal components and cosines.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from torch import Tensor


def pca_projection(acts: Float[Tensor, "batch d"] | Float[np.ndarray, "batch d"], k: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The activations' top-k principal components: (coords [batch, k] of the centred
    activations, explained-variance ratio [k]). Deterministic (full SVD), each component's
    sign fixed so its largest-|loading| dimension is positive."""
    x = np.asarray(acts.detach().cpu() if isinstance(acts, Tensor) else acts, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"activations must be [batch >= 2, d], got shape {x.shape}")
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be in 1..{min(x.shape)} for activations of shape {x.shape}, "
                         f"got {k}")
    centred = x - x.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]
    total = float((sv ** 2).sum())
    explained = (sv[:k] ** 2) / total if total > 0 else np.zeros(k)
    return centred @ vt.T, explained


def direction_cosines(a: Float[Tensor, "m da"] | Float[np.ndarray, "m da"],
                      b: Float[Tensor, "n db"] | Float[np.ndarray, "n db"]) -> np.ndarray:
    """Cosine similarity [m, n] between the rows of `a` and of `b` (e.g. a probe's class
    directions against each other, or against the unembedding rows of the digits); a zero
    row gives NaN."""
    x, y = (np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)
            for v in (a, b))
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"directions must be [m, d] and [n, d] with the same d, got "
                         f"{x.shape} and {y.shape}")
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x @ y.T) / np.outer(nx, ny)
