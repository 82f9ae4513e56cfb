"""How good is an embedding? kNN and linear-probe accuracy on labelled galaxies, against baselines.

Protocol (the usual one for self-supervised representations, e.g. Hayat et al. 2021):
  * the representation is frozen; labels are used only by the probes;
  * stratified k-fold cross-validation (default 5 folds, fixed seed) over the labelled rows;
  * kNN: k = 20 nearest neighbours by Euclidean distance (cosine for unit vectors), majority vote;
  * linear probe: standardised features + multinomial logistic regression with class weights
    inversely proportional to class frequency (so rare classes are not ignored);
  * reported: accuracy, balanced accuracy (mean per-class recall: ellipticals are ~70% of Galaxy
    Zoo, so a constant "elliptical" answer has 70% accuracy but only 33% balanced accuracy) and
    per-class recall.
Baselines: PCA on the (preprocessed) pixels with as many components as the embedding has
dimensions, fitted on the same unlabelled images the encoder trained on; and a randomly
initialised encoder of the same shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.augment import Preprocess, PreprocessConfig
from ml.metrics import balanced_accuracy


@dataclass
class EvalConfig:
    """Probe settings, stored next to every result."""
    k: int = 20  # neighbours of the kNN classifier
    folds: int = 5  # stratified cross-validation folds
    seed: int = 0  # fold assignment
    probe_c: float = 1.0  # inverse L2 strength of the logistic regression
    probe_max_iter: int = 2000  # lbfgs iterations (converges well before on standardised features)
    min_per_class: int = 5  # classes with fewer labelled galaxies are dropped (cannot be stratified)


def pixel_features(images: np.ndarray, preprocess: PreprocessConfig, batch: int = 1024) -> np.ndarray:
    """(N, C, H, W) raw pixels -> (N, C*S*S) float32, resized and normalised as the encoder sees them."""
    pre = Preprocess(preprocess)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.as_tensor(np.asarray(images[start:start + batch], dtype=np.float32))
            out.append(pre(x).reshape(len(x), -1).numpy())
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def pca_features(train_pixels: np.ndarray, pixels: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """PCA fitted on ``train_pixels`` (unlabelled), applied to ``pixels`` -> (N, dim)."""
    dim = min(dim, train_pixels.shape[0], train_pixels.shape[1])
    pca = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit(train_pixels)
    return pca.transform(pixels).astype(np.float32)


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: list) -> dict:
    return {str(name): float(np.mean(y_pred[y_true == c] == c)) for c, name in enumerate(classes)
            if np.any(y_true == c)}


def _scores(y: np.ndarray, pred: np.ndarray, classes: list) -> dict:
    return {"accuracy": float(np.mean(pred == y)), "balanced_accuracy": balanced_accuracy(y, pred),
            "per_class": _per_class(y, pred, classes)}


def probe(features: np.ndarray, y: np.ndarray, classes: list, config: EvalConfig = EvalConfig()) -> dict:
    """Cross-validated kNN and linear-probe scores of one representation (out-of-fold predictions)."""
    folds = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    knn_pred, lin_pred = np.empty_like(y), np.empty_like(y)
    for train, test in folds.split(features, y):
        k = min(config.k, len(train))
        knn = KNeighborsClassifier(n_neighbors=k).fit(features[train], y[train])
        knn_pred[test] = knn.predict(features[test])
        linear = make_pipeline(StandardScaler(), LogisticRegression(
            C=config.probe_c, max_iter=config.probe_max_iter, class_weight="balanced"))
        lin_pred[test] = linear.fit(features[train], y[train]).predict(features[test])
    return {"knn": _scores(y, knn_pred, classes), "linear": _scores(y, lin_pred, classes),
            "dim": int(features.shape[1])}


def usable_labels(y: np.ndarray, classes: list, config: EvalConfig) -> tuple[np.ndarray, np.ndarray, list]:
    """Rows with a label (>= 0) of a class with enough examples, relabelled 0..K-1.
    Returns (row mask, y of those rows, class names kept)."""
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y[y >= 0], minlength=len(classes))
    keep = [c for c in range(len(classes)) if counts[c] >= max(config.min_per_class, config.folds)]
    if len(keep) < 2:
        raise ValueError(f"need at least two classes with ≥ {max(config.min_per_class, config.folds)} labelled "
                         f"galaxies; counts are {dict(zip(classes, counts.tolist()))}")
    mask = np.isin(y, keep)
    remap = {c: i for i, c in enumerate(keep)}
    return mask, np.array([remap[c] for c in y[mask]], dtype=np.int64), [classes[c] for c in keep]


def compare(representations: dict, y: np.ndarray, classes: list, config: EvalConfig = EvalConfig()) -> dict:
    """Probe every representation ({name: (N, D)}) on the labelled rows of y (-1 = unlabelled).

    Returns {"classes", "n_labelled", "class_counts", "config", "results": {name: probe(...)}}.
    """
    mask, y_used, kept = usable_labels(y, classes, config)
    results = {name: probe(np.asarray(rep)[mask], y_used, kept, config) for name, rep in representations.items()}
    return {"classes": kept, "n_labelled": int(mask.sum()),
            "class_counts": {kept[c]: int(n) for c, n in enumerate(np.bincount(y_used, minlength=len(kept)))},
            "config": asdict(config), "results": results}


def summary_rows(report: dict) -> list[dict]:
    """One flat row per representation (for tables and bar charts)."""
    rows = []
    for name, res in report["results"].items():
        row = {"representation": name, "dim": res["dim"],
               "knn_acc": res["knn"]["accuracy"], "knn_bal_acc": res["knn"]["balanced_accuracy"],
               "linear_acc": res["linear"]["accuracy"], "linear_bal_acc": res["linear"]["balanced_accuracy"]}
        for cls, recall in res["linear"]["per_class"].items():
            row[f"linear_recall_{cls}"] = recall
        for cls, recall in res["knn"]["per_class"].items():
            row[f"knn_recall_{cls}"] = recall
        rows.append(row)
    return rows
