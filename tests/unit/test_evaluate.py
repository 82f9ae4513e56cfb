"""ml/evaluate.py: kNN (k=20) and linear probes, balanced accuracy per class, PCA baseline."""
from __future__ import annotations

import numpy as np
import pytest

from ml.augment import PreprocessConfig
from ml.evaluate import EvalConfig, compare, pca_features, pixel_features, probe, summary_rows, usable_labels

pytestmark = pytest.mark.unit


def blobs(n=300, d=8, k=3, sep=4.0, seed=0, weights=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=weights)
    centres = np.random.default_rng(99).normal(size=(k, d)) * sep
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_separable_classes_score_high_and_noise_scores_chance():
    x, y = blobs()
    good = probe(x, y, ["a", "b", "c"])
    noise = probe(np.random.default_rng(1).normal(size=x.shape).astype(np.float32), y, ["a", "b", "c"])
    assert good["knn"]["balanced_accuracy"] > 0.95 and good["linear"]["balanced_accuracy"] > 0.95
    assert noise["linear"]["balanced_accuracy"] < 0.5 and noise["knn"]["balanced_accuracy"] < 0.5
    assert set(good["linear"]["per_class"]) == {"a", "b", "c"}


def test_balanced_accuracy_exposes_majority_guessing():
    x, y = blobs(n=400, sep=0.0, weights=[0.8, 0.1, 0.1])
    result = probe(x, y, ["elliptical", "spiral", "edge_on"], EvalConfig(k=20))
    knn = result["knn"]
    assert knn["accuracy"] > 0.7                      # mostly "elliptical"...
    assert knn["balanced_accuracy"] < 0.45            # ...which balanced accuracy sees through
    assert knn["per_class"]["elliptical"] > 0.9 and knn["per_class"]["spiral"] < 0.2


def test_compare_drops_unlabelled_and_tiny_classes_and_flattens():
    x, y = blobs(n=200)
    y = y.copy()
    y[:20] = -1
    y[20:23] = 3                                       # a class with only 3 examples
    report = compare({"ssl": x, "noise": np.random.default_rng(0).normal(size=x.shape)}, y, ["a", "b", "c", "rare"])
    assert report["classes"] == ["a", "b", "c"] and report["n_labelled"] == 177
    rows = summary_rows(report)
    assert [r["representation"] for r in rows] == ["ssl", "noise"]
    assert rows[0]["linear_bal_acc"] > rows[1]["linear_bal_acc"]
    assert "linear_recall_a" in rows[0] and "knn_recall_c" in rows[0]
    with pytest.raises(ValueError, match="at least two classes"):
        usable_labels(np.zeros(50, int), ["a", "b"], EvalConfig())


def test_pca_and_pixel_features_shapes():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(40, 3, 24, 24)).astype(np.float32)
    pix = pixel_features(imgs, PreprocessConfig(image_size=32, crop_fraction=1.0))
    assert pix.shape == (40, 3 * 32 * 32)
    feats = pca_features(pix, pix, 16)
    assert feats.shape == (40, 16)
    assert np.all(np.diff(feats.var(0)) <= 1e-3)   # components ordered by variance
