"""A full or unwritable data directory during ingest: a clear error, no half-written survey.

The data directory is a real 2 MiB tmpfs (needs root and mount, as on the build
machines and CI; skipped elsewhere), so the HDF5 writer hits a genuine ENOSPC.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import numpy as np
import pytest
from PIL import Image

from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services.ingest import build_options, ingest
from webapp.catalog.services.surveys import PublishError

pytestmark = [pytest.mark.faults, pytest.mark.django_db]


@pytest.fixture
def tiny_disk(tmp_path, settings):
    mount_point = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    settings.DATA_DIR = mount_point
    settings.DISK_HEADROOM_BYTES = 256 * 1024
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _cutouts(folder, n: int):
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["objid,label"]
    for i in range(n):
        Image.fromarray((rng.random((80, 80, 3)) * 255).astype(np.uint8)).save(folder / "images" / f"{i}.png")
        lines.append(f"{i},{i % 3}")
    (folder / "cat.csv").write_text("\n".join(lines) + "\n")


def _files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_ingest_on_a_full_disk_fails_clearly_and_leaves_nothing(tiny_disk, tmp_path):
    source = tmp_path / "cutouts"
    _cutouts(source, 200)   # 200 x 3 x 64 x 64 float32 = 9.8 MB > 2 MiB of disk
    fmt, options = build_options({"format": "folder", "survey": "Too big", "catalog": "cat.csv",
                                  "image_pattern": "images/{id}.png", "size": 64})
    with pytest.raises(PublishError, match="No space left on device; nothing was changed"):
        ingest(fmt, source, options)
    assert not Survey.objects.filter(name="Too big").exists()
    assert Galaxy.objects.count() == 0
    assert [f for f in _files_under(tiny_disk) if f.endswith((".h5", ".partial"))] == []


def test_a_full_disk_keeps_the_previous_version_of_a_survey(tiny_disk, tmp_path):
    small = tmp_path / "small"
    _cutouts(small, 5)
    fmt, options = build_options({"format": "folder", "survey": "Grows", "catalog": "cat.csv",
                                  "image_pattern": "images/{id}.png", "size": 32})
    first = ingest(fmt, small, options)
    assert first.ingested == 5
    before = Survey.objects.get(name="Grows")
    big = tmp_path / "big"
    _cutouts(big, 300)
    with pytest.raises(PublishError):
        ingest(fmt, big, options)
    after = Survey.objects.get(name="Grows")
    assert (after.n_galaxies, after.image_checksum, after.store_path) == \
        (before.n_galaxies, before.image_checksum, before.store_path)
    assert (tiny_disk / after.store_path).is_file()
    assert Galaxy.objects.filter(survey=after).count() == 5


def test_a_real_enospc_inside_hdf5_does_not_crash_the_process_later(tiny_disk, tmp_path):
    """The headroom check can lose a race with another writer; then HDF5 itself hits ENOSPC.
    The writer must abort without leaving HDF5 in a state that crashes the worker later."""
    import sys
    script = f"""
import numpy as np
from ml.imagestore import ImageStoreWriter
try:
    with ImageStoreWriter({str(tiny_disk / 'x.h5')!r}, bands="gri", size=64, min_free_bytes=0) as w:
        for _ in range(40):
            w.append(np.ones((8, 3, 64, 64), np.float32))
except OSError as exc:
    print("refused:", exc.errno)
with ImageStoreWriter({str(tmp_path / 'after.h5')!r}, bands="gri", size=8) as w:
    w.append(np.ones((2, 3, 8, 8), np.float32))
print("still alive")
"""
    from django.conf import settings as dj
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=dj.BASE_DIR, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: 28" in done.stdout and "still alive" in done.stdout
    assert not list(tiny_disk.glob("x.h5*"))


def test_ingest_into_a_read_only_data_directory_fails_clearly_and_leaves_nothing(tiny_disk, tmp_path):
    source = tmp_path / "cutouts"
    _cutouts(source, 5)
    done = subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
    fmt, options = build_options({"format": "folder", "survey": "Nowhere", "catalog": "cat.csv",
                                  "image_pattern": "images/{id}.png", "size": 32})
    with pytest.raises(PublishError) as refused:
        ingest(fmt, source, options)
    assert "read-only" in str(refused.value).lower() or "not writable" in str(refused.value).lower()
    assert not Survey.objects.filter(name="Nowhere").exists() and Galaxy.objects.count() == 0
    assert _files_under(tiny_disk) == []
