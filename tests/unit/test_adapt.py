"""ml/adapt.py: carrying a head from survey A to survey B (alignment, fine-tune or refit)."""
from __future__ import annotations

import numpy as np
import pytest

from ml.adapt import AdaptConfig, adapt_head, alignment
from ml.heads import Head, feature_stats, fit_classifier
from ml.metrics import accuracy
from tests.unit.test_heads import LOGISTIC, TINY, blobs

pytestmark = pytest.mark.unit


def test_coral_alignment_matches_source_covariance():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(4000, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 0.3]])
    tgt = rng.normal(size=(4000, 3)) * [2.0, 0.5, 1.0] + 3.0
    a, b = alignment(feature_stats(src, True), feature_stats(tgt, True), "coral")
    moved = tgt @ a + b
    np.testing.assert_allclose(np.cov(moved.T), np.cov(src.T), atol=0.05)
    np.testing.assert_allclose(moved.mean(0), src.mean(0), atol=0.05)


@pytest.mark.parametrize("method, align", [("finetune", "standardise"), ("refit", "standardise"),
                                           ("finetune", "coral")])
def test_adapt_head_recovers_a_shifted_survey_with_few_labels(method, align):
    xa, ya = blobs(800, seed=2)
    xb, yb = blobs(800, seed=3)
    rng = np.random.default_rng(0)
    shift = xa[ya == 1].mean(0) - xa[ya == 0].mean(0)          # B's offset moves class 0 onto A's class 1
    xb = xb * rng.uniform(0.5, 2.0, xb.shape[1]).astype(np.float32) + shift   # and other gains
    source = fit_classifier(xa, ya, 3, TINY)
    direct = accuracy(yb[100:], source.predict_proba(xb[100:]).argmax(1))
    adapted = adapt_head(source, xb[:30], yb[:30], AdaptConfig(method=method, align=align, steps=100),
                         x_source=xa, y_source=ya, x_target_all=xb)
    after = accuracy(yb[100:], adapted.predict_proba(xb[100:]).argmax(1))
    assert direct < 0.7 and after > 0.9
    assert "align_a" in Head.from_state(adapted.state_dict()).arrays


def test_coral_needs_source_rows():
    x, y = blobs(100)
    with pytest.raises(ValueError, match="CORAL"):
        adapt_head(fit_classifier(x, y, 3, LOGISTIC), x[:20], y[:20], AdaptConfig(align="coral"))
