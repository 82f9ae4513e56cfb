"""Bounded candidate pools: the k largest values of a long column in one streaming pass.

``top_k_stream(column, k, rows=None)`` reads ``column`` (e.g. a memory-mapped (N,) float32
uncertainty file) in blocks of ``block`` entries, keeps each block's k best with
``np.argpartition`` and merges them with the running best, so memory is O(k + block)
whatever N is.  NaN and -inf never win.  Returns positions (into ``rows`` when given,
else into ``column``), best first; ties keep the earlier position (stable).
"""
from __future__ import annotations

import numpy as np

BLOCK = 1 << 18     # entries read per step


def top_k_stream(column: np.ndarray, k: int, rows: np.ndarray | None = None, exclude: np.ndarray | None = None,
                 block: int = BLOCK) -> np.ndarray:
    """Positions of the k largest ``column[rows]`` (or ``column``), best first, as int64.

    exclude: boolean mask over the positions that must not be returned (already taken)."""
    n = len(rows) if rows is not None else len(column)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    best_pos = np.zeros(0, dtype=np.int64)
    best_val = np.zeros(0, dtype=np.float64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        chunk = column[rows[start:stop]] if rows is not None else column[start:stop]
        values = np.asarray(chunk, dtype=np.float64).copy()                 # (B,)
        values[~np.isfinite(values)] = -np.inf
        if exclude is not None:
            values[exclude[start:stop]] = -np.inf
        keep = np.flatnonzero(values > -np.inf)
        if len(keep) > k:
            keep = keep[np.argpartition(-values[keep], k - 1)[:k]]
        pos = np.concatenate([best_pos, start + keep])
        val = np.concatenate([best_val, values[keep]])
        if len(pos) > k:
            part = np.argpartition(-val, k - 1)[:k]
            pos, val = pos[part], val[part]
        best_pos, best_val = pos, val
    order = np.lexsort((best_pos, -best_val))                              # best first, then earlier
    return best_pos[order].astype(np.int64)
