"""UMAP maps of galaxy embeddings: (N, D) embeddings -> (N, 2) map coordinates.

Small sets (N <= sample_threshold) are fitted whole. Large sets are fitted on a random
sample, then every row is placed in contiguous chunks (by a small MLP trained on the sample's
layout, ml/parametric.py, or by `reducer.transform`: UMAPConfig.placement), which
can run in other processes (a Celery group): save the `FittedProjection` with
`save_projection`, give each worker a `plan_chunks` range, call `transform_chunk`, and
assemble with `assemble_coords` (sample rows keep their fitted positions).

Map coordinates are normalised so the fitted layout spans [-extent, extent] on its longer
axis, centred on 0, with one isotropic scale (aspect ratio preserved). The transform is
kept in the FittedProjection and applied to every later chunk, so all chunks share one
frame; rows transformed later may fall slightly outside the range.

umap-learn notes (measured in DESIGN.md): ~30 s for 1e5 x 128 once numba has compiled;
the first call in a process pays ~30 s more. `seed` set -> reproducible but single
threaded (umap's rule); seed=None lets numba use every core.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Sequence

import numpy as np

from ml.atomic import atomic_open
from ml.progress import Progress


@dataclass
class UMAPConfig:
    n_neighbors: int = 15          # umap default: balances local detail against global structure
    min_dist: float = 0.1          # umap default: how tightly similar galaxies pack on the map
    metric: str = "cosine"         # same metric as similarity search, so map neighbours match search
    seed: int | None = 0           # reproducible maps; None = faster, multi-threaded, not reproducible
    n_epochs: int | None = None    # None = umap default (200 for large N, 500 for small); tests use ~30
    sample_threshold: int = 200_000  # above this N, fit on a sample and transform the rest
    sample_size: int = 100_000     # rows in that sample (~30 s fit at D=128)
    chunk_size: int = 50_000       # rows per transform chunk (one Celery task each)
    extent: float = 10.0           # normalised coordinates span [-extent, extent]
    low_memory: bool = True        # umap/pynndescent low-memory neighbour search (1e5+ rows)
    placement: str = "mlp"         # how rows outside the sample are placed: "mlp" (ml/parametric.py, trained
                                   # on the sample's layout) or "umap" (umap.transform); chosen by
                                   # benchmarks/map_placement.py on the tuning seed (see its docstring)
    mlp: dict = field(default_factory=dict)  # MLPConfig overrides for placement="mlp"


PLACEMENTS = ("mlp", "umap")


def config_from_dict(d: dict) -> UMAPConfig:
    known = {f.name for f in fields(UMAPConfig)}
    return UMAPConfig(**{k: v for k, v in d.items() if k in known})


@dataclass
class FittedProjection:
    """A fitted umap reducer plus the coordinate normalisation and the rows it was fit on."""
    reducer: object                  # umap.UMAP, fitted
    center: np.ndarray               # (2,) raw umap coordinates mapped to 0
    scale: float                     # multiply (raw - center) by this
    cfg: UMAPConfig
    sample_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (S,) rows fitted on
    sample_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (S, 2) their normalised coords
    mlp: object = None               # ml.parametric.PlacementMLP when cfg.placement == "mlp" and the fit was sampled

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """(M, 2) raw umap coordinates -> (M, 2) float32 map coordinates."""
        return ((np.asarray(raw, np.float64) - self.center) * self.scale).astype(np.float32)

    def transform_record(self) -> dict:
        """JSON-able description of the normalisation, to store beside the map."""
        return {"center": [float(c) for c in self.center], "scale": float(self.scale),
                "extent": self.cfg.extent, "formula": "map = (umap - center) * scale"}


def sample_rows(n: int, cfg: UMAPConfig) -> np.ndarray:
    """Rows the reducer is fitted on: all of them, or a seeded random sample (sorted)."""
    if n <= cfg.sample_threshold:
        return np.arange(n)
    rng = np.random.default_rng(0 if cfg.seed is None else cfg.seed)
    return np.sort(rng.choice(n, min(cfg.sample_size, n), replace=False))


def plan_chunks(n: int, cfg: UMAPConfig) -> list[tuple[int, int]]:
    """(start, stop) row ranges to transform after the fit; empty when the fit covers all rows."""
    if n <= cfg.sample_threshold:
        return []
    return [(s, min(n, s + cfg.chunk_size)) for s in range(0, n, cfg.chunk_size)]


class EpochReporter:
    """A file-like sink for the tqdm bar umap draws over its optimisation epochs.

    umap-learn has no progress callback, but it forwards ``tqdm_kwds`` to the tqdm that
    wraps its epoch loop; with ``bar_format="{n}/{total}"`` and this object as ``file``,
    each refresh writes "\r12/200", which we parse into on_epoch(done, total).
    """

    def __init__(self, on_epoch: Callable[[int, int], None]):
        self.on_epoch = on_epoch

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            done, sep, total = part.strip().partition("/")
            if sep and done.isdigit() and total.isdigit():
                self.on_epoch(int(done), int(total))
        return len(text)

    def flush(self) -> None:
        pass


def _make_reducer(cfg: UMAPConfig, n_fit: int, on_epoch: Callable[[int, int], None] | None = None):
    import umap  # deferred: importing umap pulls numba/pynndescent (seconds)

    tqdm_kwds = None
    if on_epoch is not None:
        tqdm_kwds = {"disable": False, "file": EpochReporter(on_epoch), "bar_format": "{n}/{total}",
                     "mininterval": 0.5, "ascii": True}
    return umap.UMAP(n_neighbors=min(cfg.n_neighbors, max(2, n_fit - 1)), min_dist=cfg.min_dist,
                     metric=cfg.metric, random_state=cfg.seed, n_epochs=cfg.n_epochs,
                     low_memory=cfg.low_memory, n_components=2, verbose=False, tqdm_kwds=tqdm_kwds,
                     n_jobs=1 if cfg.seed is not None else -1)  # umap forces 1 with a seed anyway


def _normaliser(raw: np.ndarray, extent: float) -> tuple[np.ndarray, float]:
    lo, hi = raw.min(axis=0), raw.max(axis=0)           # (2,), (2,)
    half = float(np.max(hi - lo)) / 2.0
    return (lo + hi) / 2.0, (extent / half if half > 0 else 1.0)


MIN_UMAP_ROWS = 5  # umap's spectral initialisation fails below this; tiny sets get a PCA layout


def _pca_layout(x: np.ndarray) -> np.ndarray:
    """(n, D) -> (n, 2) coordinates on the first two principal axes (zeros where undefined)."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # (min(n, D), D)
    out = np.zeros((len(x), 2), dtype=np.float64)
    k = min(2, vt.shape[0])
    out[:, :k] = centred @ vt[:k].T
    return out


def fit_projection(vectors: np.ndarray, cfg: UMAPConfig | None = None,
                   on_epoch: Callable[[int, int], None] | None = None) -> FittedProjection:
    """Fit umap on all rows or on the sample; returns the reducer with its normalisation.

    on_epoch(done, total) is called as umap's layout optimisation advances (the
    neighbour-graph phase before it reports nothing).
    """
    cfg = cfg or UMAPConfig()
    rows = sample_rows(len(vectors), cfg)
    x = np.asarray(vectors[rows] if len(rows) < len(vectors) else vectors, dtype=np.float32)
    if len(x) < MIN_UMAP_ROWS:
        reducer, raw = None, _pca_layout(x)
    else:
        reducer = _make_reducer(cfg, len(x), on_epoch)
        raw = reducer.fit_transform(x)                  # (S, 2)
        reducer.tqdm_kwds = {"disable": True}  # drop the reporter: it must not be pickled or reused by transform
    center, scale = _normaliser(raw, cfg.extent)
    fitted = FittedProjection(reducer, center, scale, cfg, rows.astype(np.int64))
    fitted.sample_coords = fitted.normalise(raw)
    if cfg.placement == "mlp" and len(rows) < len(vectors) and reducer is not None:
        from ml.parametric import MLPConfig, fit_mlp
        fitted.mlp = fit_mlp(x, fitted.sample_coords, MLPConfig(**cfg.mlp))
    return fitted


def transform_chunk(fitted: FittedProjection, vectors: np.ndarray) -> np.ndarray:
    """Place new rows on an existing map. (M, D) -> (M, 2) float32 normalised coordinates."""
    if fitted.mlp is not None:
        return fitted.mlp.predict(np.asarray(vectors, dtype=np.float32))
    return fitted.normalise(fitted.reducer.transform(np.asarray(vectors, dtype=np.float32)))


def assemble_coords(n: int, fitted: FittedProjection,
                    chunks: Sequence[tuple[tuple[int, int], np.ndarray]]) -> np.ndarray:
    """Join ((start, stop), coords) chunk results; sample rows keep their fitted coords. -> (n, 2)."""
    coords = np.full((n, 2), np.nan, dtype=np.float32)
    for (start, stop), part in chunks:
        coords[start:stop] = part
    coords[fitted.sample_rows] = fitted.sample_coords
    if np.isnan(coords).any():
        raise ValueError("some rows were not covered by any chunk")
    return coords


def fit_umap(vectors: np.ndarray, cfg: UMAPConfig | None = None,
             progress: Progress | None = None) -> tuple[FittedProjection, np.ndarray]:
    """Fit (on a sample when large) and place every row in this process. -> (fitted, (N, 2))."""
    cfg = cfg or UMAPConfig()
    n = len(vectors)
    chunks = plan_chunks(n, cfg)
    total = 1 + len(chunks)
    if progress:
        progress(0, total, f"fitting UMAP on {min(n, cfg.sample_size) if chunks else n} rows")
    fitted = fit_projection(vectors, cfg)
    if progress:
        progress(1, total, "UMAP fitted")
    parts = []
    for i, (start, stop) in enumerate(chunks):
        parts.append(((start, stop), transform_chunk(fitted, vectors[start:stop])))
        if progress:
            progress(2 + i, total, f"placed rows {start}-{stop}")
    return fitted, assemble_coords(n, fitted, parts)


def save_projection(fitted: FittedProjection, path: str | os.PathLike) -> None:
    """Pickle atomically (ml.atomic); the config travels as a plain dict."""
    payload = {"reducer": fitted.reducer, "center": fitted.center, "scale": fitted.scale,
               "config": asdict(fitted.cfg), "sample_rows": fitted.sample_rows,
               "sample_coords": fitted.sample_coords, "mlp": fitted.mlp}
    with atomic_open(path) as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_projection(path: str | os.PathLike) -> FittedProjection:
    """Only load files this application wrote: pickle runs code from the file."""
    with open(path, "rb") as fh:
        p = pickle.load(fh)
    return FittedProjection(p["reducer"], np.asarray(p["center"]), float(p["scale"]),
                            config_from_dict(p["config"]), p["sample_rows"], p["sample_coords"], p.get("mlp"))


def density_grid(coords: np.ndarray, bins: int | tuple[int, int] = 512,
                 extent: float | tuple[float, float, float, float] = 10.0) -> np.ndarray:
    """Counts of map points per pixel, for drawing 1e6 points as a density image first.

    coords (N, 2); extent = e for [-e, e]^2 or (xmin, xmax, ymin, ymax); bins = n or
    (nx, ny). Returns float32 counts[y, x] (row 0 = lowest y), the layout bokeh's
    `image` glyph expects with x=xmin, y=ymin, dw=xmax-xmin, dh=ymax-ymin. Points
    outside the extent are dropped.
    """
    if np.isscalar(extent):
        extent = (-float(extent), float(extent), -float(extent), float(extent))
    xmin, xmax, ymin, ymax = extent
    nx, ny = (bins, bins) if np.isscalar(bins) else bins
    counts, _, _ = np.histogram2d(coords[:, 0], coords[:, 1], bins=(nx, ny),
                                  range=((xmin, xmax), (ymin, ymax)))  # (nx, ny)
    return counts.T.astype(np.float32)  # (ny, nx)
