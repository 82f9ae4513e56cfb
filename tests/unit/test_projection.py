"""ml/projection.py: UMAP maps of embeddings, sample + chunked transform, density grid.

UMAP's numba functions compile on first use in a process (~10-30 s), so the UMAP tests
are marked slow; the planning/normalisation/density tests are instant.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ml.projection import (EpochReporter, FittedProjection, UMAPConfig, assemble_coords, density_grid,
                           fit_projection,
                           fit_umap, load_projection, plan_chunks, sample_rows,
                           save_projection, transform_chunk)

pytestmark = pytest.mark.unit

TINY = UMAPConfig(n_neighbors=10, n_epochs=30, seed=0)


def two_blobs(n: int = 300, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 vectors from two well-separated blobs, and their 0/1 labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    centres = np.stack([np.full(d, 4.0), np.full(d, -4.0)])
    centres[1, ::2] = 4.0  # different directions too, so cosine separates them
    x = centres[labels] + rng.normal(size=(n, d))
    return x.astype(np.float32), labels


def separated(coords: np.ndarray, labels: np.ndarray) -> bool:
    """Every point is nearer its own blob's map centroid than the other blob's."""
    c0, c1 = coords[labels == 0].mean(0), coords[labels == 1].mean(0)
    d0 = np.linalg.norm(coords - c0, axis=1)
    d1 = np.linalg.norm(coords - c1, axis=1)
    return bool(np.all((d0 < d1) == (labels == 0)))


def test_plan_chunks_cover_all_rows_once():
    cfg = UMAPConfig(sample_threshold=100, chunk_size=70)
    chunks = plan_chunks(250, cfg)
    assert chunks == [(0, 70), (70, 140), (140, 210), (210, 250)]
    assert plan_chunks(100, cfg) == []  # at/below threshold the fit covers everything


def test_sample_rows_seeded_sorted_unique():
    cfg = UMAPConfig(sample_threshold=100, sample_size=40, seed=3)
    rows = sample_rows(1000, cfg)
    assert len(rows) == 40 and len(np.unique(rows)) == 40 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, sample_rows(1000, cfg))
    np.testing.assert_array_equal(sample_rows(50, cfg), np.arange(50))


def test_normalise_and_assemble_keep_sample_coords():
    fitted = FittedProjection(reducer=None, center=np.array([1.0, 2.0]), scale=0.5,
                              cfg=UMAPConfig(), sample_rows=np.array([1, 3]),
                              sample_coords=np.array([[9, 9], [8, 8]], np.float32))
    np.testing.assert_allclose(fitted.normalise(np.array([[3.0, 2.0]])), [[1.0, 0.0]])
    parts = [((0, 2), np.zeros((2, 2), np.float32)), ((2, 4), np.ones((2, 2), np.float32))]
    coords = assemble_coords(4, fitted, parts)
    np.testing.assert_array_equal(coords, [[0, 0], [9, 9], [1, 1], [8, 8]])
    with pytest.raises(ValueError):
        assemble_coords(5, fitted, parts)  # row 4 never placed


def test_density_grid_counts_and_orientation():
    coords = np.array([[-9.5, -9.5], [-9.5, -9.5], [9.5, -9.5], [0.5, 9.5], [50.0, 0.0]])
    grid = density_grid(coords, bins=4, extent=10.0)
    assert grid.shape == (4, 4) and grid.dtype == np.float32
    assert grid[0, 0] == 2          # row = y bin (lowest y first), column = x bin
    assert grid[0, 3] == 1          # high x, low y
    assert grid[3, 2] == 1          # x just above 0, high y
    assert grid.sum() == 4          # the point outside the extent is dropped
    assert density_grid(coords, bins=(8, 2), extent=(-10, 10, -10, 10)).shape == (2, 8)


@pytest.mark.slow
def test_fit_separates_two_blobs_and_normalises_range():
    x, labels = two_blobs()
    calls = []
    fitted, coords = fit_umap(x, TINY, progress=lambda *a: calls.append(a))
    assert coords.shape == (300, 2) and coords.dtype == np.float32
    assert separated(coords, labels)
    # normalised: centred, longer axis spans exactly [-extent, extent]
    span = coords.max(0) - coords.min(0)
    np.testing.assert_allclose(span.max(), 2 * TINY.extent, rtol=1e-5)
    np.testing.assert_allclose((coords.max(0) + coords.min(0)) / 2, 0.0, atol=1e-4)
    assert calls[-1][0] == calls[-1][1]  # progress reaches done == total
    assert fitted.transform_record()["scale"] == pytest.approx(fitted.scale)


@pytest.mark.slow
def test_sample_then_chunked_transform_path(tmp_path):
    x, labels = two_blobs()
    cfg = dataclasses.replace(TINY, sample_threshold=100, sample_size=120, chunk_size=70)
    fitted, coords = fit_umap(x, cfg)
    assert len(fitted.sample_rows) == 120
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert separated(coords, labels)
    np.testing.assert_array_equal(coords[fitted.sample_rows], fitted.sample_coords)

    # the distributed path: save, load in "another process", transform chunks, assemble
    path = tmp_path / "umap.pkl"
    save_projection(fitted, path)
    loaded = load_projection(path)
    assert loaded.cfg == cfg
    parts = [((a, b), transform_chunk(loaded, x[a:b])) for a, b in plan_chunks(len(x), cfg)]
    again = assemble_coords(len(x), loaded, parts)
    np.testing.assert_allclose(again, coords, atol=1e-4)


@pytest.mark.slow
def test_fit_reports_epoch_progress_and_pickles_without_the_reporter(tmp_path):
    x, _ = two_blobs(200)
    seen = []
    fitted = fit_projection(x, dataclasses.replace(TINY, n_epochs=40), on_epoch=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (40, 40) and all(t == 40 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    save_projection(fitted, tmp_path / "p.pkl")  # would fail on the reporter's closure
    assert load_projection(tmp_path / "p.pkl").reducer.tqdm_kwds == {"disable": True}


def test_epoch_reporter_parses_tqdm_refreshes():
    seen = []
    reporter = EpochReporter(lambda d, t: seen.append((d, t)))
    reporter.write("\r0/200")
    reporter.write("\r12/200\r13/200")
    reporter.write("\n")
    reporter.write("Epochs completed: 50%")
    assert seen == [(0, 200), (12, 200), (13, 200)]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_tiny_sets_get_a_finite_pca_layout_instead_of_failing(n):
    x = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    fitted, coords = fit_umap(x, TINY)
    assert coords.shape == (n, 2) and np.isfinite(coords).all() and fitted.reducer is None
    if n > 1:
        assert np.abs(coords).max() == pytest.approx(10.0, rel=1e-4)  # normalised like a umap map
