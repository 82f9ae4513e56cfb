"""services/encoding.py: the cross-team embed_images / load_encoder_model interface."""
from __future__ import annotations

import numpy as np
import pytest

from tests.catalog.factories import galaxy_images
from tests.embeddings.encoder_factories import make_encoder
from webapp.embeddings.models import ArtifactStatus
from webapp.embeddings.services import encoding

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_embed_images_returns_unit_vectors_and_is_deterministic():
    images = galaxy_images(10, 3, 16)
    encoder = make_encoder(images=images)
    first = encoding.embed_images(encoder, images)
    second = encoding.embed_images(encoder, images[::-1].copy())[::-1]
    assert first.shape == (10, 8) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, second, atol=1e-6)   # row i depends on image i only


def test_load_encoder_model_is_cached_per_checkpoint():
    encoder = make_encoder()
    assert encoding.load_encoder_model(encoder) is encoding.load_encoder_model(encoder)
    assert encoding.load_encoder_model(encoder).dim == 8


def test_embed_images_rejects_wrong_bands_and_nan():
    encoder = make_encoder()
    with pytest.raises(ValueError, match="2 bands but the encoder was trained on 3"):
        encoding.embed_images(encoder, np.zeros((2, 2, 16, 16), np.float32))
    bad = np.zeros((1, 3, 16, 16), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encoding.embed_images(encoder, bad)


def test_unready_encoder_is_refused():
    encoder = make_encoder()
    encoder.status = ArtifactStatus.BUILDING
    with pytest.raises(encoding.EncoderUnavailable, match="not ready"):
        encoding.embed_images(encoder, galaxy_images(1, 3, 16))
