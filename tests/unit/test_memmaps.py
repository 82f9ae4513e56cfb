"""ml.memmaps.release: a streaming pass over a memory map does not stay in the process's RSS."""
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.format import open_memmap

from ml.memmaps import release

pytestmark = pytest.mark.unit


def rss_file_kb() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["RssFile"].split()[0])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssFile from /proc (Linux)")
def test_released_rows_leave_the_resident_set_and_read_back_unchanged(tmp_path):
    data = np.random.default_rng(0).normal(size=(64 * 1024, 256)).astype(np.float32)  # 64 MB
    np.save(tmp_path / "v.npy", data)
    view = np.load(tmp_path / "v.npy", mmap_mode="r")
    before = rss_file_kb()
    total = 0.0
    for start in range(0, len(view), 8192):
        total += float(np.asarray(view[start:start + 8192]).sum())
    touched = rss_file_kb() - before
    assert touched > 50_000                                   # the pass mapped ~64 MB
    assert release(view) and release(view, 0, 10)
    assert rss_file_kb() - before < touched / 4               # ...and they are gone again
    np.testing.assert_array_equal(view[1000:1010], data[1000:1010])   # read back from the page cache
    assert total == pytest.approx(float(data.sum()), rel=1e-4)


def test_written_rows_survive_release(tmp_path):
    out = open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float16, shape=(20_000, 64))
    block = np.arange(64, dtype=np.float16)
    for start in range(0, 20_000, 5000):
        out[start:start + 5000] = block
        release(out, start, start + 5000)
    out.flush()
    del out
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy")[::4999], np.tile(block, (5, 1)))


def test_plain_arrays_and_empty_ranges_are_left_alone():
    x = np.zeros((10, 3))
    assert not release(x) and not release(x[2:5])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssFile from /proc (Linux)")
def test_building_and_tuning_an_index_over_a_memmap_does_not_keep_the_file_resident(tmp_path):
    """At 10^7 the index job's RSS held 7.3 GB of the vector file: tuning's exact search read it all."""
    from ml.search import IndexConfig, SearchIndex

    data = np.random.default_rng(1).normal(size=(80_000, 128)).astype(np.float32)   # 41 MB
    np.save(tmp_path / "v.npy", data)
    del data
    view = np.load(tmp_path / "v.npy", mmap_mode="r")
    before = rss_file_kb()
    index = SearchIndex.build(view, IndexConfig(exact_below=1000, ivf_nlist=64, tune_queries=50, tune_k=10))
    grew_mb = (rss_file_kb() - before) / 1024
    assert index.ntotal == 80_000 and index.cfg.ivf_nprobe >= 1
    assert grew_mb < 10, f"{grew_mb:.1f} MB of the 41 MB file stayed resident"
