"""Two-survey galaxy simulator: one population, seen by an SDSS-like and a DES-like survey.

`simulate_population(cfg)` draws the truth catalogue ONCE (deterministic by cfg.seed):
every object has an id, sky position, class, rarity, photometry, shape and a `params`
"scene" (the list of light components plus an optional artifact) with everything the
renderer needs. `render_survey(population, spec, cfg)` draws those same scenes with a
survey's pixel scale, PSF and noise, so object i is the same galaxy in both surveys.

Images are (N, 3, 64, 64) float32 in nanomaggies per pixel (m_AB = 22.5 - 2.5 log10 f),
sky subtracted, bands g, r, i. Row i of every array/store is catalogue id i.
Scene construction (classes, rarities, colours) lives in ml.sim_scenes; pixels in
ml.sim_render.

Example:
    cfg = SimConfig(n=500, seed=1)
    res = simulate_surveys(cfg, out_dir="data/sim")      # streams to data/sim/<survey>.h5
    res.catalogue[0]["class"], res.stores["sdss_like"].checksum
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing as mp
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ml import sim_render, sim_scenes
from ml.imagestore import ImageStoreWriter
from ml.progress import Progress
from ml.vocab import BANDS, FLUX_UNIT


@dataclass(frozen=True)
class SurveySpec:
    """A survey's imaging: pixels, PSF and depth. Noise is derived from depth and sky."""
    name: str  # stable key; also seeds the survey's noise
    pixel_scale: float  # arcsec per pixel
    psf_fwhm: float  # arcsec, Moffat PSF (achromatic: one PSF for all bands)
    depth_5sigma: tuple[float, float, float]  # 5-sigma point-source AB mag limit per band
    sky_mag: tuple[float, float, float]  # sky brightness, AB mag per arcsec^2 per band
    psf_beta: float = 3.5  # Moffat wing index; ~3.5 matches ground-based seeing profiles
    stamp_size: int = 64  # pixels per side of every cutout
    saturation_nmgy: float = 60.0  # clip level for planted saturated stars (nmgy/pixel)
    spike_angle_deg: float = 0.0  # orientation of the spider's diffraction spikes
    bands: tuple[str, ...] = BANDS  # band order of the image arrays

    def noise_sigma(self) -> np.ndarray:
        """Sky noise per pixel, nanomaggies, per band: a 5-sigma point source at the
        depth has S/N 5 in an optimal PSF-weighted aperture (N_eff = 1 / sum psf^2)."""
        f5 = 10 ** ((22.5 - np.asarray(self.depth_5sigma)) / 2.5)
        return f5 / 5.0 / math.sqrt(_psf_neff(self.psf_fwhm, self.psf_beta, self.pixel_scale))

    def electrons_per_nmgy(self) -> np.ndarray:
        """Effective gain such that sky photon noise equals noise_sigma (Poisson term)."""
        sky = 10 ** ((22.5 - np.asarray(self.sky_mag)) / 2.5) * self.pixel_scale ** 2
        return sky / self.noise_sigma() ** 2


SDSS_LIKE = SurveySpec(
    name="sdss_like", pixel_scale=0.396, psf_fwhm=1.4,
    depth_5sigma=(23.1, 22.7, 22.2), sky_mag=(22.0, 20.9, 20.2),
    saturation_nmgy=60.0, spike_angle_deg=0.0)
DES_LIKE = SurveySpec(
    name="des_like", pixel_scale=0.263, psf_fwhm=0.95,
    depth_5sigma=(24.7, 24.4, 23.8), sky_mag=(22.0, 21.2, 20.5),
    saturation_nmgy=60.0, spike_angle_deg=45.0)
SURVEYS = {s.name: s for s in (SDSS_LIKE, DES_LIKE)}


@dataclass
class SimConfig:
    """What to simulate. Saved into every image store's attrs (dataclasses.asdict)."""
    n: int = 5000  # objects in the population
    seed: int = 0  # everything (population, structure, noise) follows from this
    rarity_fraction: float = 0.02  # share of objects carrying a planted rarity
    processes: int = 2  # render worker processes (results do not depend on it)
    class_fractions: dict = field(default_factory=lambda: {
        "elliptical": 0.40, "spiral": 0.35, "edge_on": 0.20, "merger": 0.05})  # exact counts
    rarity_weights: dict = field(default_factory=lambda: {
        "lens": 0.25, "ring": 0.25, "satellite_trail": 0.20, "cosmic_ray": 0.15,
        "saturated_star": 0.15})  # split of the rarities; lens/ring rarer in reality
    sky_centre_deg: tuple = (20.0, 0.0)  # (RA, Dec): Stripe 82, where SDSS and DES overlap
    sky_size_deg: float = 2.0  # side of the square patch
    mag_range: tuple = (14.0, 17.5)  # r-band AB; SDSS main-sample-like bright galaxies
    chunk_size: int = 50  # objects per worker task (progress granularity)
    start_method: str = "spawn"  # safe under threaded parents (torch, Celery); scripts
    # calling with processes > 1 need the usual `if __name__ == "__main__":` guard


@dataclass
class StoreInfo:
    path: str
    shape: tuple
    checksum: str  # sha256 of the float32 pixels, as ml.imagestore computes it


@dataclass
class SimResult:
    catalogue: list[dict]  # simulate_population output, row i <-> image i
    images: dict[str, np.ndarray] = field(default_factory=dict)  # survey -> (N,3,H,W)
    stores: dict[str, StoreInfo] = field(default_factory=dict)  # survey -> written store
    config: dict = field(default_factory=dict)


def simulate_population(cfg: SimConfig) -> list[dict]:
    """The truth catalogue: one dict per object (see ml.sim_scenes.make_object)."""
    return sim_scenes.make_population(cfg)


def render_survey(population: Sequence[dict], spec: SurveySpec, cfg: SimConfig,
                  progress: Progress | None = None, noise: bool = True) -> np.ndarray:
    """All objects seen by `spec`: (N, 3, H, W) float32 nanomaggies per pixel."""
    n = spec.stamp_size
    out = np.empty((len(population), 3, n, n), np.float32)
    with _mapper(cfg) as mapper:
        for start, block in _iter_chunks(population, spec, cfg, mapper, noise, progress,
                                         0, len(population)):
            out[start:start + len(block)] = block
    return out


def render_object(row: dict, spec: SurveySpec, noise: bool = True) -> np.ndarray:
    """One catalogue row in one survey, (3, H, W) float32 (noise=False: the model)."""
    return sim_render.render_scene(row, spec, noise=noise)


def simulate_surveys(cfg: SimConfig, specs: Sequence[SurveySpec] = (SDSS_LIKE, DES_LIKE),
                     out_dir: str | Path | None = None,
                     progress: Progress | None = None) -> SimResult:
    """Population + every survey. With out_dir, streams to <out_dir>/<survey>.h5
    (atomic ImageStoreWriter, nothing big kept in memory); otherwise returns arrays."""
    population = simulate_population(cfg)
    result = SimResult(catalogue=population, config=dataclasses.asdict(cfg))
    total = len(population) * len(specs)
    with _mapper(cfg) as mapper:
        for k, spec in enumerate(specs):
            chunks = _iter_chunks(population, spec, cfg, mapper, True, progress,
                                  k * len(population), total)
            if out_dir is None:
                arr = np.empty((len(population), 3, spec.stamp_size, spec.stamp_size), np.float32)
                for start, block in chunks:
                    arr[start:start + len(block)] = block
                result.images[spec.name] = arr
            else:
                result.stores[spec.name] = _write_store(Path(out_dir), spec, cfg, chunks)
    return result


def truth_table(population: Sequence[dict]) -> dict[str, np.ndarray]:
    """Flat truth columns (id, ra, dec, class, rarity, mags, shape) as numpy arrays."""
    keys = [k for k in population[0] if k != "params"] if population else []
    return {k: np.asarray([row[k] for row in population]) for k in keys}


def _write_store(out_dir: Path, spec: SurveySpec, cfg: SimConfig, chunks) -> StoreInfo:
    attrs = {"survey": json.dumps(dataclasses.asdict(spec)),
             "sim_config": json.dumps(dataclasses.asdict(cfg)), "unit": FLUX_UNIT,
             "pixel_scale_arcsec": spec.pixel_scale}
    path = out_dir / f"{spec.name}.h5"
    with ImageStoreWriter(path, spec.bands, spec.stamp_size, attrs=attrs) as writer:
        for _, block in chunks:
            writer.append(block)
    shape, checksum = writer.result
    return StoreInfo(str(path), shape, checksum)


def _iter_chunks(population, spec, cfg, mapper, noise, progress, done0, total
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """Render in chunks, in order; per-object seeds make the result process-independent."""
    starts = range(0, len(population), cfg.chunk_size)
    tasks = [(list(population[s:s + cfg.chunk_size]), spec, noise) for s in starts]
    done = done0
    for start, block in zip(starts, mapper(_render_rows, tasks)):
        done += len(block)
        if progress is not None:
            progress(done, total, f"rendering {spec.name}")
        yield start, block


def _render_rows(task) -> np.ndarray:
    rows, spec, noise = task
    return np.stack([sim_render.render_scene(r, spec, noise=noise) for r in rows])


@contextlib.contextmanager
def _mapper(cfg: SimConfig):
    """An ordered map: serial, or a process pool. Daemonic parents (e.g. Celery prefork
    children) may not fork pools, so they render serially."""
    if cfg.processes <= 1 or mp.current_process().daemon:
        yield map
        return
    ctx = mp.get_context(cfg.start_method)
    with ctx.Pool(cfg.processes, initializer=_one_thread) as pool:
        yield functools.partial(pool.imap, chunksize=1)


def _one_thread() -> None:
    """Workers are the parallelism; BLAS threads inside them would oversubscribe."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # optional (ships with scikit-learn)
        pass


@functools.lru_cache(maxsize=16)
def _psf_neff(fwhm: float, beta: float, pixel_scale: float) -> float:
    """Noise-equivalent number of pixels of the pixelated PSF, 1 / sum(p^2)."""
    import galsim
    img = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=63, ny=63, scale=pixel_scale).array
    return float(1.0 / np.sum((img / img.sum()) ** 2))
