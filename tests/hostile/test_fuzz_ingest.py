"""Fuzz the ingestion parsers: damaged JPEG, PNG, FITS, CSV and HDF5 inputs.

Every input must end in one of two ways, quickly and within bounded memory:
a valid array/table, or IngestError with a readable reason.  Any other exception,
a hang or a giant allocation is a bug.  Seeds are real, valid files; hypothesis
truncates them, flips bytes and rewrites header fields (huge declared sizes,
wrong dtypes, NaN pixels).
"""
from __future__ import annotations

import io
import resource
import struct
import time

import h5py
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, strategies as st
from PIL import Image

from tests.hostile.conftest import FUZZ_COUNTS
from webapp.catalog.services.ingest_fits import _data, image_hdus, open_fits
from webapp.catalog.services.ingest_hdf5 import plan_hdf5
from webapp.catalog.services.ingest_pixels import IngestError, decode_rgb
from webapp.catalog.services.ingest_tables import read_table
from webapp.catalog.services.ingest_types import IngestOptions

pytestmark = [pytest.mark.unit, pytest.mark.slow]

SECONDS_PER_INPUT = 5.0
MAX_RSS_GROWTH_MB = 800


def _seed_image(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _seed_fits() -> bytes:
    rng = np.random.default_rng(2)
    hdus = [fits.PrimaryHDU()]
    for band in "gri":
        hdu = fits.ImageHDU(rng.normal(size=(24, 24)).astype(np.float32), name=band)
        hdus.append(hdu)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


SEEDS = {"jpeg": _seed_image("JPEG"), "png": _seed_image("PNG"), "fits": _seed_fits()}

mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 255)), min_size=1, max_size=12)),
    st.tuples(st.just("header"), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8)),
)


def _mutate(data: bytes, how) -> bytes:
    kind, arg = how
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[: int(len(buf) * arg)])
    if kind == "flip":
        for pos, value in arg:
            buf[int(pos * len(buf))] = value
        return bytes(buf)
    for pos, value in arg:  # damage the first 400 bytes, where the headers live
        if pos < len(buf):
            buf[pos] = value
    return bytes(buf)


class Bounded:
    """Asserts that the body ran within the time and memory budget of one input."""

    def __init__(self, label: str):
        self.label = label

    def __enter__(self):
        FUZZ_COUNTS[self.label] += 1
        self.start = time.monotonic()
        self.rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.start
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss) / 1024
        assert elapsed < SECONDS_PER_INPUT, f"{self.label}: took {elapsed:.1f}s"
        assert grown_mb < MAX_RSS_GROWTH_MB, f"{self.label}: peak memory grew {grown_mb:.0f} MB"
        return False


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@given(how=mutation)
def test_damaged_jpeg_and_png_decode_or_fail_cleanly(tmp_path_factory, fmt, how):
    path = tmp_path_factory.mktemp("img") / f"x.{fmt}"
    path.write_bytes(_mutate(SEEDS[fmt], how))
    with Bounded(fmt):
        try:
            out = decode_rgb(path, size=32)
        except IngestError as exc:
            assert str(exc)
            return
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb's header)."""
    import zlib
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1))
def test_huge_declared_png_dimensions_are_refused_from_the_header(tmp_path_factory, width, height):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(_png_declaring(width, height))
    with Bounded("png-bomb"):
        try:
            out = decode_rgb(path, size=16, max_pixels=50_000_000)
        except IngestError as exc:
            if width * height > 50_000_000:
                assert "refusing" in str(exc) or "exceeds" in str(exc)
            return
    assert width * height <= 50_000_000 and out.shape == (3, 16, 16)


def _fits_hdus(path, options):
    hdul = open_fits(path)
    try:
        return [_data(hdu) for _, hdu in image_hdus(hdul, options)]
    finally:
        hdul.close()


@given(how=mutation)
def test_damaged_fits_reads_or_fails_cleanly(tmp_path_factory, how):
    path = tmp_path_factory.mktemp("fits") / "x.fits"
    path.write_bytes(_mutate(SEEDS["fits"], how))
    with Bounded("fits"):
        try:
            arrays = _fits_hdus(path, IngestOptions(survey="fuzz"))
        except IngestError as exc:
            assert str(exc)
            return
    assert all(a.dtype == np.float32 and a.ndim in (2, 3) for a in arrays)


@given(naxis1=st.integers(4_000, 2**31 - 1), naxis2=st.integers(4_000, 2**31 - 1),
       bitpix=st.sampled_from([8, 16, 32, 64, -32, -64]))
def test_fits_headers_declaring_huge_images_are_refused_before_reading(tmp_path_factory, naxis1, naxis2, bitpix):
    header = fits.Header([("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", 2),
                          ("NAXIS1", naxis1), ("NAXIS2", naxis2)])
    path = tmp_path_factory.mktemp("fitsbomb") / "bomb.fits"
    path.write_bytes(header.tostring().encode("ascii") + b"\x00" * 2880)  # header only, data missing
    with Bounded("fits-bomb"):
        with pytest.raises(IngestError):
            _fits_hdus(path, IngestOptions(survey="fuzz", max_pixels=10_000_000))


csv_cells = st.one_of(st.text(max_size=12), st.sampled_from(["nan", "NaN", "inf", "-inf", "", "1e309", "0x1F"]),
                      st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers().map(str))


@given(header=st.lists(st.text(min_size=0, max_size=8), min_size=0, max_size=6),
       rows=st.lists(st.lists(csv_cells, max_size=7), max_size=20),
       raw_tail=st.binary(max_size=40))
def test_hostile_csv_catalogues_parse_or_fail_cleanly(tmp_path_factory, header, rows, raw_tail):
    import csv
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "cat.csv"
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass") + raw_tail)
    with Bounded("csv"):
        try:
            table, errors = read_table(path)
        except IngestError as exc:
            assert str(exc)
            return
    assert len(table.rows) + len(errors) <= len(rows) + raw_tail.count(b"\n") + 1
    for row in table.rows:  # JSON-safe: NaN/inf never reach metadata
        for value in row.values():
            assert not (isinstance(value, float) and not np.isfinite(value))


def _seed_hdf5(path, images, labels=None):
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images)
        if labels is not None:
            handle.create_dataset("ans", data=labels)


hdf5_arrays = st.one_of(
    st.tuples(st.integers(1, 4), st.sampled_from([(3, 8, 8), (8, 8, 3), (8, 8), (1, 8), (5, 5, 5, 5)]),
              st.sampled_from(["uint8", "float32", "float64", "int16", "bool", "complex64"]),
              st.sampled_from(["ok", "nan", "inf"])),
)


@given(spec=hdf5_arrays, damage=st.one_of(st.none(), mutation))
def test_hostile_hdf5_files_plan_and_load_or_fail_cleanly(tmp_path_factory, spec, damage):
    n, shape, dtype, fill = spec
    rng = np.random.default_rng(3)
    images = (rng.random((n, *shape)) * 200).astype(dtype)
    if fill != "ok" and images.dtype.kind == "f":
        images.flat[0] = np.nan if fill == "nan" else np.inf
    path = tmp_path_factory.mktemp("h5") / "g.h5"
    _seed_hdf5(path, images, labels=np.arange(n))
    if damage is not None:
        path.write_bytes(_mutate(path.read_bytes(), damage))
    options = IngestOptions(survey="fuzz", size=8)
    with Bounded("hdf5"):
        try:
            plan = plan_hdf5(path, options)
        except IngestError as exc:
            assert str(exc)
            return
        try:
            for cand in plan.candidates:
                try:
                    image, _ = cand.load()
                except IngestError as exc:
                    assert str(exc)
                    continue
                assert image.ndim == 3 and image.dtype == np.float32
        finally:
            for close in plan.cleanup:
                close()
