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
