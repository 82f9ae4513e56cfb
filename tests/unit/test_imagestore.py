"""Image store: round trip, checksums, atomic publish, input validation."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ml.imagestore import ImageStoreWriter, array_checksum, open_store

pytestmark = pytest.mark.unit

BANDS = ("g", "r", "i")


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def _write(path, images, batch: int = 4, **kw):
    with ImageStoreWriter(path, BANDS, images.shape[-1], **kw) as w:
        for s in range(0, len(images), batch):
            w.append(images[s:s + batch])
    return w.result


def test_round_trip_preserves_pixels_order_and_metadata(tmp_path):
    images = _images(11)
    shape, checksum = _write(tmp_path / "s.h5", images, attrs={"survey": "sdss_like"})
    assert shape == (11, 3, 8, 8)
    with open_store(tmp_path / "s.h5") as store:
        assert store.shape == (11, 3, 8, 8)
        assert len(store) == 11
        assert store.bands == BANDS
        assert store.attrs["survey"] == "sdss_like"
        np.testing.assert_array_equal(store.read(3), images[3])
        np.testing.assert_array_equal(store.read(-1), images[-1])
        np.testing.assert_array_equal(store.read_many([9, 2, 2, 0]), images[[9, 2, 2, 0]])
        np.testing.assert_array_equal(store.read_many(np.arange(11)), images)
        assert store.read_many([]).shape == (0, 3, 8, 8)
        with pytest.raises(IndexError):
            store.read(11)
        with pytest.raises(IndexError):
            store.read_many([0, 11])


def test_single_image_append_and_float64_is_stored_as_float32(tmp_path):
    img = np.full((3, 8, 8), 0.1, dtype=np.float64)
    with ImageStoreWriter(tmp_path / "one.h5", BANDS, 8) as w:
        w.append(img)
    with open_store(tmp_path / "one.h5") as store:
        out = store.read(0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img.astype(np.float32))


def test_checksum_is_sha256_of_float32_rows_and_stable(tmp_path):
    images = _images(300, seed=1)  # > one hashing block, so streaming is exercised
    _, written = _write(tmp_path / "a.h5", images, batch=64)
    _, again = _write(tmp_path / "b.h5", images, batch=7)  # batching must not matter
    expected = hashlib.sha256(images.astype("<f4").tobytes()).hexdigest()
    assert written == again == expected == array_checksum(images)
    with open_store(tmp_path / "a.h5") as store:
        assert store.checksum() == expected
    changed = images.copy()
    changed[299, 2, 7, 7] += 1e-3
    assert array_checksum(changed) != expected


def test_partial_file_is_never_visible_and_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "s.h5"
    w = ImageStoreWriter(path, BANDS, 8)
    w.append(_images(2))
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        open_store(path)
    assert (tmp_path / "s.h5.partial").exists()
    w.close()
    assert path.exists() and not (tmp_path / "s.h5.partial").exists()

    crashed = tmp_path / "crash.h5"
    with pytest.raises(RuntimeError):
        with ImageStoreWriter(crashed, BANDS, 8) as w2:
            w2.append(_images(2))
            raise RuntimeError("worker died")
    assert not crashed.exists()
    assert not (tmp_path / "crash.h5.partial").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_rejected(tmp_path, bad):
    images = _images(3)
    images[1, 0, 2, 2] = bad
    with ImageStoreWriter(tmp_path / "s.h5", BANDS, 8) as w:
        with pytest.raises(ValueError, match="non-finite.*row 1"):
            w.append(images)
        w.append(_images(1))  # the writer stays usable; nothing of the bad batch landed
    with open_store(tmp_path / "s.h5") as store:
        assert len(store) == 1


@pytest.mark.parametrize("shape", [(2, 3, 8, 9), (2, 4, 8, 8), (2, 3, 16, 16), (8, 8), (1, 2, 3, 8, 8)])
def test_shape_mismatch_is_rejected(tmp_path, shape):
    with ImageStoreWriter(tmp_path / "s.h5", BANDS, 8) as w:
        with pytest.raises(ValueError, match="shape"):
            w.append(np.zeros(shape, np.float32))
        assert len(w) == 0


def test_non_float_dtype_is_rejected(tmp_path):
    with ImageStoreWriter(tmp_path / "s.h5", BANDS, 8) as w:
        with pytest.raises(ValueError, match="dtype"):
            w.append(np.zeros((1, 3, 8, 8), np.uint8))


def test_many_readers_can_open_the_same_store(tmp_path):
    images = _images(5)
    _write(tmp_path / "s.h5", images)
    readers = [open_store(tmp_path / "s.h5") for _ in range(4)]
    try:
        for k, r in enumerate(readers):
            np.testing.assert_array_equal(r.read(k), images[k])
    finally:
        for r in readers:
            r.close()
