"""ml.idindex: id -> row by searchsorted on memory-mapped sorted ids, no dicts."""

import numpy as np
import pytest

from ml.idindex import MISSING, IdIndex

pytestmark = pytest.mark.unit


def test_rows_of_unsorted_ids_with_missing_ones_match_a_naive_lookup():
    rng = np.random.default_rng(0)
    ids = rng.choice(np.arange(10, 10**12, 7919, dtype=np.int64), size=5000, replace=False)   # unsorted, int64
    index = IdIndex.build(ids)
    query = np.concatenate([ids[rng.integers(0, 5000, 300)], [1, 2**40 + 3, -5, 10**13]])
    rng.shuffle(query)
    naive = {int(g): i for i, g in enumerate(ids)}                     # the reference, in the test only
    expected = np.array([naive.get(int(g), MISSING) for g in query], dtype=np.int64)
    got = index.rows(query)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(index.contains(query), expected >= 0)


def test_mapping_style_access_and_clear_errors():
    index = IdIndex.build(np.array([30, 10, 20], dtype=np.int64))
    assert (index[10], index[20], index[30]) == (1, 2, 0)
    assert 20 in index and 21 not in index and "x" not in index
    assert index.get(99) is None and index.get(99, -1) == -1
    with pytest.raises(KeyError):
        index[99]
    with pytest.raises(KeyError, match="galaxy 99 is not in set 7"):
        index.rows_strict([10, 99], what="set 7")
    with pytest.raises(TypeError):
        iter(index)                                                     # not a dict to walk
    assert len(index) == 3
    np.testing.assert_array_equal(IdIndex.build(np.zeros(0, np.int64)).rows([1, 2]), [-1, -1])


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="id 5 appears more than once"):
        IdIndex.build(np.array([5, 1, 5], dtype=np.int64))


def test_index_file_is_written_once_next_to_ids_and_memory_mapped(tmp_path):
    ids = np.array([2**33 + 5, 7, 2**31 + 1, 3], dtype=np.int64)      # past int32
    path = tmp_path / "ids.npy"
    np.save(path, ids)
    first = IdIndex.for_ids_file(path)
    sorted_path, order_path = IdIndex.paths(path)
    assert sorted_path.name == "ids.sorted.npy" and order_path.name == "ids.order.npy"
    assert sorted_path.exists() and order_path.exists()
    assert isinstance(first.sorted_ids, np.memmap) and isinstance(first.order, np.memmap)
    assert first.sorted_ids.dtype == np.int64 and first.order.dtype == np.int64
    stamp = sorted_path.stat().st_mtime_ns
    again = IdIndex.for_ids_file(path)                                  # reused, not rebuilt
    assert sorted_path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.rows([2**31 + 1, 2**33 + 5, 4]), [2, 0, -1])
    assert not list(tmp_path.glob("*.partial"))


ID_MODULES = ["webapp/embeddings/services/vectors.py", "webapp/anomalies/services/files.py",
              "webapp/labeling/services/store.py", "webapp/labeling/colours.py",
              "webapp/anomalies/services/queue.py", "webapp/anomalies/services/layers.py",
              "webapp/labeling/services/export.py", "ml/idindex.py"]


@pytest.mark.parametrize("path", ID_MODULES)
def test_no_module_builds_an_id_to_row_dict_any_more(path):
    """The per-process {galaxy id: row} dicts are gone from every module that had one."""
    from pathlib import Path
    import re

    source = (Path(__file__).resolve().parents[2] / path).read_text()
    assert not re.search(r"\{int\(\w+\): *\w+ for \w+, *\w+ in enumerate", source), path
    assert "row_of = {" not in source and "where = {" not in source and "position = {" not in source


def test_top_k_stream_matches_a_full_sort_in_small_blocks():
    from ml.topk import top_k_stream

    rng = np.random.default_rng(3)
    values = rng.normal(size=10_007).astype(np.float32)
    values[[5, 50, 500]] = np.nan
    rows = rng.permutation(10_007)[:6000]
    exclude = rng.random(6000) < 0.2
    got = top_k_stream(values, 37, rows=rows, exclude=exclude, block=256)
    v = values[rows].astype(np.float64)
    v[~np.isfinite(v) | exclude] = -np.inf
    expected = np.argsort(-v, kind="stable")[:37]
    np.testing.assert_array_equal(got, expected)
    assert len(top_k_stream(values, 0)) == 0 and len(top_k_stream(values[:3], 10)) == 3
