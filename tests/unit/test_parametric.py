"""ml/parametric.py: the MLP places held-out rows where UMAP's own transform puts them."""
from __future__ import annotations

import numpy as np
import pytest

from ml.parametric import MLPConfig, fit_mlp
from ml.projection import UMAPConfig, fit_projection, load_projection, save_projection, transform_chunk

pytestmark = pytest.mark.unit


def clustered(n: int, dim: int = 16, clusters: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 4
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    x, labels = clustered(1500)
    cfg = UMAPConfig(sample_threshold=599, sample_size=600, n_epochs=40, placement="mlp",
                     mlp={"epochs": 60, "hidden": 64, "depth": 2, "batch_size": 128})
    return x, labels, fit_projection(x, cfg)


@pytest.mark.slow  # umap fit + transform: numba compilation dominates (as in test_projection.py)
def test_mlp_places_held_out_rows_near_umaps_own_placement(fitted):
    x, labels, fit = fitted
    assert fit.mlp is not None and len(fit.sample_rows) == 600
    held = np.setdiff1d(np.arange(len(x)), fit.sample_rows)
    by_mlp = transform_chunk(fit, x[held])                                   # (M, 2)
    by_umap = fit.normalise(fit.reducer.transform(x[held]))                  # (M, 2)
    extent = fit.cfg.extent * 2
    gap = np.linalg.norm(by_mlp - by_umap, axis=1)
    assert np.median(gap) < 0.05 * extent, np.median(gap)
    # each held-out galaxy lands in its own cluster: nearest sample centroid is its class
    centroids = np.stack([fit.sample_coords[labels[fit.sample_rows] == k].mean(0) for k in range(6)])
    nearest = np.argmin(((by_mlp[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels[held]).mean() > 0.97


@pytest.mark.slow
def test_placement_survives_save_and_load(fitted, tmp_path):
    x, _, fit = fitted
    save_projection(fit, tmp_path / "p.pkl")
    again = load_projection(tmp_path / "p.pkl")
    np.testing.assert_allclose(transform_chunk(again, x[:50]), transform_chunk(fit, x[:50]), atol=1e-5)


def test_fit_mlp_regresses_a_known_map():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = (unit[:, :2] * 7).astype(np.float32)        # a simple function of the direction
    mlp = fit_mlp(x[:2500], y[:2500], MLPConfig(epochs=40, hidden=64, depth=2, batch_size=256))
    err = np.abs(mlp.predict(x[2500:]) - y[2500:]).mean()
    assert err < 0.35, err


@pytest.mark.slow
def test_umap_placement_is_still_available():
    x, _ = clustered(600)
    fit = fit_projection(x, UMAPConfig(sample_threshold=299, sample_size=300, n_epochs=30, placement="umap"))
    assert fit.mlp is None
    assert transform_chunk(fit, x[:10]).shape == (10, 2)
