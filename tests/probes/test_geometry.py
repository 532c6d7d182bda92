"""Principal components and direction cosines, checked against scikit-learn and by hand."""

import numpy as np
import pytest
import torch

from arithinterp.probes.geometry import direction_cosines, pca_projection


def test_pca_projection_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(50, 6, generator=gen) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    coords, explained = pca_projection(acts, k=2)
    ref = PCA(n_components=2, svd_solver="full").fit(acts.numpy().astype(np.float64))
    oracle = ref.transform(acts.numpy().astype(np.float64))
    for j in range(2):
        assert np.allclose(np.abs(coords[:, j]), np.abs(oracle[:, j]), atol=1e-8)
    assert np.allclose(explained, ref.explained_variance_ratio_)
    assert explained[0] > 0.6  # the first axis carries the largest scale
    with pytest.raises(ValueError, match="k must be in 1..6"):
        pca_projection(acts, k=7)
    with pytest.raises(ValueError, match="batch >= 2"):
        pca_projection(acts[:1])


def test_direction_cosines():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, -3.0]])
    cos = direction_cosines(a, torch.tensor(b))
    assert np.allclose(cos[:2], [[1.0, 0.0], [2 ** -0.5, -(2 ** -0.5)]])
    assert np.isnan(cos[2]).all()  # a zero direction has no angle
    with pytest.raises(ValueError, match="same d"):
        direction_cosines(a, np.ones((2, 3)))
