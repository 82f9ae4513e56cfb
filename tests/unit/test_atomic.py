"""ml.atomic: one crash-safe writer; checksums are the sha256 of the file's bytes."""
import hashlib

import numpy as np
import pytest

from ml.atomic import atomic_open, save_npy_atomic, save_npz_atomic, sha256_file, write_atomic

pytestmark = pytest.mark.unit


def test_npz_checksum_is_the_files_sha256_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "a.npz"                     # parents are created
    arrays = {"ids": np.arange(5, dtype=np.int64), "path": np.ones((2, 3), np.float32)}
    checksum = save_npz_atomic(path, **arrays)
    assert checksum == sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with np.load(path) as data:
        assert sorted(data.files) == ["ids", "path"]
        np.testing.assert_array_equal(data["path"], arrays["path"])
    assert not list(path.parent.glob("*.partial"))


def test_write_returns_sha256_of_the_bytes_and_npy_round_trips(tmp_path):
    assert write_atomic(tmp_path / "t.json", "{}") == hashlib.sha256(b"{}").hexdigest()
    assert (tmp_path / "t.json").read_text() == "{}"
    save_npy_atomic(tmp_path / "v.npy", np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), np.eye(3))


@pytest.mark.parametrize("durable", [True, False])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, durable):
    path = tmp_path / "out" / "model.pt"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, durable=durable) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
