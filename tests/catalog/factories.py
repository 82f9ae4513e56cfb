"""Small surveys for catalogue tests: a real image store in DATA_DIR plus Survey/Galaxy rows."""
from __future__ import annotations

import numpy as np
from django.conf import settings

from ml.imagestore import ImageStoreWriter
from webapp.catalog.models import Galaxy, Survey

LABELS = ("elliptical", "spiral", "edge-on", "merger")


def galaxy_images(n: int, bands: int, size: int = 16, seed: int = 0, kind: str = "flux") -> np.ndarray:
    """(n, bands, size, size) float32: a noisy Gaussian blob per galaxy (flux) or values in [0, 1] (rgb)."""
    rng = np.random.default_rng(seed)
    if kind == "rgb":
        return rng.random((n, bands, size, size), dtype=np.float32)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    images = np.empty((n, bands, size, size), dtype=np.float32)
    for i in range(n):
        width = 1.5 + 2.5 * rng.random()
        blob = np.exp(-(xx ** 2 + yy ** 2) / (2 * width ** 2))
        for b in range(bands):
            images[i, b] = (10 + 5 * i % 7) * (1 + 0.3 * b) * blob + rng.normal(0, 0.2, (size, size))
    return images


def make_survey(name: str = "Test survey", slug: str = "test", n: int = 12, bands=("g", "r", "i"),
                size: int = 16, image_kind: str = "flux", seed: int = 0, metadata=None, truth=None,
                status: str = Survey.Status.READY, **fields) -> Survey:
    """A published survey of n galaxies with store at DATA_DIR/surveys/<slug>.h5.

    metadata(i) / truth(i) give each galaxy's dicts; defaults are a label, a
    magnitude that decreases with i and a "secret" truth.
    """
    images = galaxy_images(n, len(bands), size, seed, image_kind)
    rel = f"surveys/{slug}.h5"
    with ImageStoreWriter(settings.DATA_DIR / rel, bands=bands, size=size) as writer:
        writer.append(images)
    shape, checksum = writer.result
    survey = Survey.objects.create(
        name=name, slug=slug, bands=list(bands), image_kind=image_kind, status=status,
        pixel_scale_arcsec=0.396, psf_fwhm_arcsec=1.4, provenance="test factory",
        store_path=rel, image_shape=list(shape), image_checksum=checksum, n_galaxies=n, **fields)
    meta = metadata or (lambda i: {"label": LABELS[i % len(LABELS)], "mag_r": round(20.0 - 0.25 * i, 2)})
    secret = truth or (lambda i: {"true_class": f"TRUTH-SECRET-{i}"})
    Galaxy.objects.bulk_create([
        Galaxy(survey=survey, source_id=f"OBJ{i:05d}", ra=150.0 + 0.01 * i, dec=2.0 - 0.01 * i,
               image_index=i, metadata=meta(i), truth=secret(i)) for i in range(n)])
    return survey
