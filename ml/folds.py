"""K-fold splits for small label sets: plain and stratified (every class in every fold).

A labeling round with 40 labels and a 10% class must not put all four of that class in one
fold: stratified folds deal each class's rows round-robin over the folds, so each fold's
class shares match the whole set as closely as the counts allow.
"""
from __future__ import annotations

import numpy as np


def kfold(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k (or n, if fewer) disjoint index arrays covering range(n), rows shuffled by seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [f for f in np.array_split(order, min(k, n)) if len(f)]


def stratified_kfold(y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k (or len(y), if fewer) disjoint sorted index arrays covering range(len(y)); each class's
    rows are shuffled and dealt round-robin, continuing where the previous class stopped, so
    fold sizes differ by at most one."""
    y = np.asarray(y)
    k = min(k, len(y))
    if k == 0:
        return []
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[order] = np.arange(len(y)) % k
    return [np.flatnonzero(fold_of == f) for f in range(k)]
