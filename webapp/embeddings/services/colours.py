"""Colour layers for the latent map and sky view, contributed by any app.

The map page offers every layer that a provider returns for an EmbeddingSet:
survey and catalogue columns (this app), anomaly scores (anomalies app),
predictions and their uncertainty (labeling app).  A provider is
``provider(embedding_set) -> list[ColourLayer]`` and is registered from an
AppConfig.ready() with ``register_colour_provider``.  Values are aligned with the
EmbeddingSet's row order (its ids.npy); missing values are NaN (numeric) or
None (categorical).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class ColourLayer:
    key: str                      # stable id used in URLs, e.g. "anomaly", "pred:3", "meta:mag_r"
    label: str                    # shown in the colour menu, e.g. "Anomaly score (combined)"
    kind: str                     # "numeric" (colour bar) or "categorical" (legend)
    values: np.ndarray | list     # numeric: float array (NaN = missing); categorical: list of str | None
    group: str = "Catalogue"      # menu section: Catalogue, Anomalies, Predictions, ...
    unit: str = ""                # e.g. "mag"
    meta: dict = field(default_factory=dict)


ColourProvider = Callable[[object], list[ColourLayer]]
_PROVIDERS: list[ColourProvider] = []


def register_colour_provider(provider: ColourProvider) -> ColourProvider:
    """Register ``provider(embedding_set) -> list[ColourLayer]`` once (usable as a decorator)."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)
    return provider


def colour_providers() -> list[ColourProvider]:
    return list(_PROVIDERS)


def resolve_values(layer: ColourLayer):
    """The layer's values; a provider may pass a zero-argument callable to compute them only
    when someone colours by that layer (e.g. catalogue columns of a million galaxies)."""
    if callable(layer.values):
        layer.values = layer.values()
    return layer.values


# ----------------------------------------------------------------- catalogue layers (this app)

class _CatalogueTable:
    """Survey and metadata columns of an EmbeddingSet in row order, read once on first use."""

    def __init__(self, es):
        self.es = es
        self._survey = None

    def _rows(self):
        from webapp.embeddings.services.vectors import load_embedding_set
        return load_embedding_set(self.es)

    def survey_names(self) -> list:
        if self._survey is None:
            from webapp.embeddings.services.sky import sky_index  # survey per row, cached with positions
            names = dict(self.es.surveys.values_list("id", "name"))
            self._survey = [names.get(int(s)) for s in sky_index(self.es).survey]
        return self._survey

    def column(self, key: str, numeric: bool):
        """One metadata column in row order: float32 (numeric) or a list of shared strings.

        The database extracts the key (KeyTransform), so one pass holds one column, never every
        galaxy's metadata dict (10^7 dicts were ~5 GB in the map-tiles job)."""
        from django.db.models.fields.json import KeyTransform

        from webapp.catalog.models import Galaxy
        ids, _, index = self._rows()
        values = np.full(len(ids), np.nan, dtype=np.float32) if numeric else [None] * len(ids)
        shared: dict[str, str] = {}   # one string object per category, not one per galaxy
        surveys = list(self.es.surveys.values_list("id", flat=True))
        found = (Galaxy.objects.filter(survey_id__in=surveys).annotate(_value=KeyTransform(key, "metadata"))
                 .values_list("id", "_value").iterator(chunk_size=20_000))
        while chunk := list(itertools.islice(found, 20_000)):   # id -> row by searchsorted
            rows = index.rows([gid for gid, _ in chunk])
            for row, (_, value) in zip(rows.tolist(), chunk):
                if row < 0:
                    continue
                if numeric:
                    values[row] = _number(value)
                elif value not in (None, ""):
                    text = str(value)
                    values[row] = shared.setdefault(text, text)
        return values


def _number(value) -> float:
    if isinstance(value, bool) or value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def catalogue_layers(embedding_set) -> list[ColourLayer]:
    """Survey, then every catalogue metadata column (numeric: colour bar; text: legend)."""
    from webapp.catalog.services.browse import metadata_keys

    table = _CatalogueTable(embedding_set)
    layers = [ColourLayer("survey", "Survey", "categorical", table.survey_names, group="Catalogue")]
    kinds: dict[str, str] = {}
    for survey in embedding_set.surveys.all():
        for key, kind in metadata_keys(survey).items():
            kinds[key] = "text" if kinds.get(key, kind) != kind else kind
    for key, kind in sorted(kinds.items()):
        numeric = kind == "number"
        unit = "mag" if key.lower().startswith("mag") else ""
        layers.append(ColourLayer(f"meta:{key}", key + (" (mag)" if unit else ""),
                                  "numeric" if numeric else "categorical",
                                  lambda key=key, numeric=numeric: table.column(key, numeric),
                                  group="Catalogue", unit=unit))
    return layers
