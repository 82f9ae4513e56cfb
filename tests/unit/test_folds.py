"""ml/folds.py: plain and stratified K-fold splits."""
import numpy as np
import pytest

from ml.folds import kfold, stratified_kfold

pytestmark = pytest.mark.unit


def test_stratified_folds_partition_the_rows_and_spread_every_class():
    y = np.array([0] * 36 + [1] * 10 + [2] * 4)
    folds = stratified_kfold(y, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(50))
    assert [len(f) for f in folds] == [10] * 5
    assert [int((y[f] == 1).sum()) for f in folds] == [2] * 5            # the 10 of class 1: two per fold
    assert sorted(int((y[f] == 2).sum()) for f in folds) == [0, 1, 1, 1, 1]


def test_fewer_rows_than_folds_gives_one_row_per_fold():
    assert [len(f) for f in stratified_kfold(np.array([0, 1, 1]), 5)] == [1, 1, 1]
    assert [len(f) for f in kfold(3, 5)] == [1, 1, 1]
    assert stratified_kfold(np.array([], dtype=int), 5) == []
