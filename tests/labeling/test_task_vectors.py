"""TaskVectors: a round reads the task's rows from the memory map on demand (no N x D copy)."""
import numpy as np
import pytest

from ml.heads import stats_sample
from webapp.labeling.services.store import TaskVectors

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("index", [2, slice(1, 3), np.array([3, 0, 2]), np.array([True, False, True, True]),
                                   (2, 0), (np.array([3, 0]), 1), (slice(0, 2), slice(1, 3))])
def test_indexing_matches_the_copied_array(index):
    vectors = np.arange(50, dtype=np.float32).reshape(10, 5)
    rows = np.array([1, 3, 4, 8])
    view = TaskVectors(vectors, rows)
    assert view.shape == (4, 5) and len(view) == 4
    np.testing.assert_array_equal(view[index], vectors[rows][index])
    np.testing.assert_array_equal(np.asarray(view), vectors[rows])


def test_statistics_come_from_a_bounded_sample_in_row_order():
    x = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    assert stats_sample(x, limit=2000) is x or np.shares_memory(stats_sample(x, limit=2000), x)
    sample = stats_sample(TaskVectors(x, np.arange(1000)), limit=100)
    assert sample.shape == (100, 3)
    rows = [int(np.flatnonzero((x == r).all(axis=1))[0]) for r in sample]
    assert rows == sorted(rows) and len(set(rows)) == 100
    np.testing.assert_allclose(sample.mean(axis=0), x.mean(axis=0), atol=0.3)
