"""Small generated ingestion inputs (written into tmp_path; nothing binary is committed)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: int = 40, colour=(200, 30, 30), centre=None, fmt: str | None = None) -> Path:
    """A size x size image of ``colour``; ``centre`` paints the central half another colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = colour
    if centre is not None:
        q = size // 4
        arr[q:size - q, q:size - q] = centre
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def jpeg_folder(root: Path, ids, colour=(200, 30, 30), header=("objid", "ra", "dec", "mag_r"),
                subdir: str = "images", ext: str = "jpeg") -> Path:
    """root/catalog.csv + root/<subdir>/<id>.<ext>, one row and one image per id."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sid in enumerate(ids):
        write_image(root / subdir / f"{sid}.{ext}", colour=colour)
        rows.append([sid, 150.0 + i * 0.01, 2.0 - i * 0.01, round(18.0 + 0.1 * i, 2)][:len(header)])
    write_csv(root / "catalog.csv", list(header), rows)
    return root


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A ~60-byte PNG whose header declares width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:max(1, int(len(data) * keep))])
    return path


def wcs_header(ra: float, dec: float, size: int, scale_arcsec: float = 0.263):
    """A TAN WCS header whose image centre ((size-1)/2, 0-based) is at (ra, dec) degrees."""
    from astropy.io import fits

    header = fits.Header()
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                   "CRPIX1": (size - 1) / 2 + 1, "CRPIX2": (size - 1) / 2 + 1,
                   "CDELT1": -scale_arcsec / 3600, "CDELT2": scale_arcsec / 3600,
                   "CUNIT1": "deg", "CUNIT2": "deg"})
    return header


def blob(size: int, flux: float = 100.0, seed: int = 0) -> np.ndarray:
    """(size, size) float32 Gaussian galaxy of total ``flux`` plus a little noise."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    g = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 8) ** 2))
    return (flux * g / g.sum() + np.random.default_rng(seed).normal(0, 1e-3, (size, size))).astype(np.float32)


def write_mef(path: Path, bands=("g", "r", "i"), size: int = 32, ra=None, dec=None, planes=None,
              extra_header=None) -> Path:
    """A multi-extension FITS cutout: empty primary + one image HDU per band (EXTNAME = band)."""
    from astropy.io import fits

    header = wcs_header(ra, dec, size) if ra is not None else fits.Header()
    for key, value in (extra_header or {}).items():
        header[key] = value
    hdus = [fits.PrimaryHDU()]
    for b, band in enumerate(bands):
        data = planes[b] if planes is not None else blob(size, 100.0 * (b + 1), seed=b)
        hdu = fits.ImageHDU(data=data, header=header.copy())
        hdu.header["EXTNAME"] = band     # set in the header: the name= argument upper-cases it
        hdus.append(hdu)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_band_file(path: Path, data: np.ndarray, ra=None, dec=None) -> Path:
    from astropy.io import fits

    header = wcs_header(ra, dec, data.shape[-1]) if ra is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
    return path
