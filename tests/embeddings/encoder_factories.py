"""Ready Encoder rows with a real (untrained or tiny) checkpoint in DATA_DIR, for tests."""
from __future__ import annotations

import numpy as np
from django.conf import settings

from ml.augment import fit_preprocess
from ml.checkpoints import export_encoder
from ml.encoders import encoder_from_config, preset_config
from webapp.embeddings.models import ArtifactStatus, Encoder

TINY = {"width": 4, "stages": (1, 1), "proj_hidden": 16, "proj_dim": 8}


def make_encoder(survey=None, images: np.ndarray | None = None, name: str = "tiny", image_kind: str = "flux",
                 bands=("g", "r", "i"), image_size: int = 32, seed: int = 0, **fields) -> Encoder:
    """An exported (untrained, seeded) tiny encoder whose normalisation is fitted on ``images``."""
    if images is None:
        images = np.random.default_rng(seed).normal(0, 1, (32, len(bands), 16, 16)).astype(np.float32)
    pre = fit_preprocess(images, image_kind, list(bands), image_size)
    config = preset_config("small", in_channels=len(bands), image_size=image_size, **TINY)
    model = encoder_from_config(config, seed=seed)
    encoder = Encoder.objects.create(name=name, method="simclr", config={"preset": "tiny"}, **fields)
    relative = f"encoders/{encoder.pk}/encoder.pt"
    export_encoder(model, pre, settings.DATA_DIR / relative)
    encoder.checkpoint_path = relative
    encoder.status = ArtifactStatus.READY
    encoder.save(update_fields=["checkpoint_path", "status"])
    if survey is not None:
        encoder.surveys.add(survey)
    return encoder
