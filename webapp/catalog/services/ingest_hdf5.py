"""Reader: images and labels in one HDF5 file, as in Galaxy10 (SDSS and DECaLS).

    galaxy10.h5
      images   (N, H, W, 3) uint8        channel-last RGB (Galaxy10); or (N, C, H, W) float flux
      ans      (N,) int                   class labels -> metadata "<label_key>_class"
      ra, dec  (N,) float, degrees        optional
      id       (N,)                       optional source ids (else "<file stem>-<row>")
      ...      (N,) numbers or strings    any other 1-D dataset of length N -> metadata

Dataset names are options (``images_dataset``, ``labels_dataset``).  uint8 RGB
is stored as [0, 1] floats (image kind "rgb"); float arrays as flux.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from webapp.catalog.services.ingest_pixels import (IngestError, check_pixel_budget, finite_or_fix,
                                                   resize_bands, to_unit_float)
from webapp.catalog.services.ingest_tables import ID_CANDIDATES, python_value
from webapp.catalog.services.ingest_types import Candidate, IngestOptions, Plan

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MAX_CHANNELS = 16      # a leading/trailing axis this small is the band axis
BLOCK_ROWS = 256       # rows read per HDF5 access (sequential, chunk-friendly)


def plan_hdf5(path: Path, options: IngestOptions) -> Plan:
    import h5py

    path = _hdf5_file(Path(path))
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise IngestError(f"{path.name}: not a readable HDF5 file (corrupt or truncated: {exc})") from None
    try:
        return _plan(handle, path, options)
    except IngestError:
        handle.close()
        raise
    except (RuntimeError, KeyError, OSError, ValueError, TypeError) as exc:
        # A damaged file's metadata fails deep inside HDF5 with any of these (found by fuzzing,
        # e.g. "ring type mismatch occurred for cache entry"); the user needs only "corrupt".
        handle.close()
        raise IngestError(f"{path.name}: corrupt HDF5 structure ({exc.__class__.__name__}: {exc})") from None
    except BaseException:
        handle.close()
        raise


def _plan(handle, path: Path, options: IngestOptions) -> Plan:
    name = options.images_dataset
    if name not in handle or not hasattr(handle[name], "shape"):
        raise IngestError(f"{path.name}: no dataset {name!r} (datasets: {sorted(_datasets(handle))})")
    images = handle[name]
    if images.dtype.kind not in "uif":  # complex, compound, bool, strings: not pixel values
        raise IngestError(f"{path.name}: dataset {name!r} has dtype {images.dtype}; expected integer or "
                          "floating-point pixels")
    layout, n, n_bands, side = _layout(images.shape, path.name, name)
    check_pixel_budget(images.shape[1:], options.max_pixels)
    rgb = images.dtype.kind in "ui" and n_bands == 3
    bands = list(options.bands) or (["R", "G", "B"] if rgb else _attr_bands(handle, images, n_bands))
    if len(bands) != n_bands:
        raise IngestError(f"{path.name}: {name!r} has {n_bands} bands but {len(bands)} band names were given "
                          f"({', '.join(bands)})")
    columns = _columns(handle, n, exclude={name}, path=path)
    labels = columns.pop(options.labels_dataset, None)
    ids = _ids(columns, options, path, n)
    ra, dec = columns.pop("ra", None), columns.pop("dec", None)
    plan = Plan(bands=bands, image_kind="rgb" if rgb else "flux", input_side=side)
    plan.cleanup.append(handle.close)
    cache = _BlockCache(images)
    for i in range(n):
        metadata = {key: python_value(values[i]) for key, values in columns.items()}
        if labels is not None:
            metadata[f"{options.label_key}_class"] = python_value(labels[i])
        plan.candidates.append(Candidate(
            ids[i], f"{path.name}[{i}]", partial(_load, cache, i, layout, rgb, options),
            _coordinate(ra, i, 0, 360), _coordinate(dec, i, -90, 90), metadata))
    return plan


def _layout(shape: tuple, filename: str, name: str) -> tuple[str, int, int, int]:
    """('nhwc' | 'nchw' | 'nhw', N, bands, shorter side) from the dataset shape."""
    if len(shape) == 3:
        return "nhw", shape[0], 1, min(shape[1:])
    if len(shape) == 4 and shape[3] <= MAX_CHANNELS and min(shape[1], shape[2]) > shape[3]:
        return "nhwc", shape[0], shape[3], min(shape[1], shape[2])
    if len(shape) == 4 and shape[1] <= MAX_CHANNELS and min(shape[2], shape[3]) > shape[1]:
        return "nchw", shape[0], shape[1], min(shape[2], shape[3])
    raise IngestError(f"{filename}: {name!r} has shape {tuple(shape)}; expected (N, H, W, C) or (N, C, H, W) "
                      f"with at most {MAX_CHANNELS} bands, each image larger than its band count")


def _columns(handle, n: int, exclude: set, path: Path) -> dict[str, np.ndarray]:
    """Every 1-D dataset of length n (names relative to the file root)."""
    out = {}
    for key, ds in _datasets(handle).items():
        if key in exclude or len(ds.shape) != 1:
            continue
        if ds.shape[0] != n:
            if key in ("ans", "labels", "ra", "dec", "id"):
                raise IngestError(f"{path.name}: dataset {key!r} has {ds.shape[0]} entries but the images have {n}")
            continue
        out[key] = ds[()]
    return out


def _ids(columns: dict, options: IngestOptions, path: Path, n: int) -> list[str]:
    names = [options.id_column] if options.id_column else list(ID_CANDIDATES)
    for key in names:
        if key in columns:
            ids = [str(python_value(v)) for v in columns.pop(key)]
            if any(not i for i in ids):
                raise IngestError(f"{path.name}: empty ids in dataset {key!r}")
            return ids
    if options.id_column:
        raise IngestError(f"{path.name}: no 1-D dataset {options.id_column!r} of length {n} for ids")
    return [f"{path.stem}-{i:06d}" for i in range(n)]


class _BlockCache:
    """Reads BLOCK_ROWS rows at a time; a sequential pass touches each chunk once."""

    def __init__(self, ds):
        self.ds, self.start, self.block = ds, -1, None

    def get(self, i: int) -> np.ndarray:
        start = i - i % BLOCK_ROWS
        if start != self.start:
            try:
                self.block = self.ds[start:start + BLOCK_ROWS]
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
                self.start, self.block = -1, None
                raise IngestError(f"cannot read rows {start}-{start + BLOCK_ROWS - 1} (corrupt file? {exc})") from None
            self.start = start
        return self.block[i - start]


def _load(cache: _BlockCache, i: int, layout: str, rgb: bool, options: IngestOptions):
    raw = cache.get(i)
    arr = {"nhwc": lambda a: a.transpose(2, 0, 1), "nchw": lambda a: a, "nhw": lambda a: a[None]}[layout](raw)
    arr = to_unit_float(arr) if rgb else arr.astype(np.float32)
    arr = finite_or_fix(arr, options.nan_policy)
    return resize_bands(arr, options.size, options.crop_fraction, conserve_flux=not rgb), {}


def _coordinate(values, i: int, lo: float, hi: float) -> float | None:
    if values is None:
        return None
    value = float(values[i])
    return value if math.isfinite(value) and lo <= value <= hi else None


def _attr_bands(handle, images, n_bands: int) -> list[str]:
    raw = images.attrs.get("bands", handle.attrs.get("bands"))
    if isinstance(raw, bytes):
        raw = raw.decode()
    names = [b.strip() for b in raw.split(",")] if isinstance(raw, str) else []
    return names if len(names) == n_bands else [f"b{i}" for i in range(n_bands)]


def _datasets(handle) -> dict:
    found = {}

    def visit(key, obj):  # must return None: any other value stops h5py's traversal
        if hasattr(obj, "shape"):
            found[key] = obj
    handle.visititems(visit)
    return found


def _hdf5_file(path: Path) -> Path:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
        if len(files) != 1:
            raise IngestError(f"{path.name}/: expected exactly one HDF5 file, found {len(files)}")
        return files[0]
    if not path.is_file():
        raise IngestError(f"{path}: HDF5 file not found")
    return path
