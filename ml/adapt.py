"""Carry a task head from survey A to survey B with a few B labels (Dominguez Sanchez et al. 2019).

Two steps, both stored inside the returned Head so it takes RAW survey-B embeddings:
  align    an affine map of B's embeddings into A's frame, fitted on UNLABELLED rows (costs no
           labels): per-dimension standardisation, or CORAL (Sun et al. 2016: match covariances).
  retrain  "finetune": warm-start the source ensemble and train on target labels mixed with
           source rows; "refit": a fresh head on source + up-weighted target rows.
The heads themselves (fit, predict, save) are ml/heads.py; benchmarks/transfer.py measures this.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.calibration import fit_temperature
from ml.heads import Head, arrays_to_params, feature_stats, fit_classifier_arrays, prepare
from ml.progress import Progress


@dataclass
class AdaptConfig:
    method: str = "finetune"    # "finetune": warm-start the source MLP, train on target labels mixed
                                #   with source rows; "refit": fresh head on source + up-weighted
                                #   target (logistic always refits: warm starts are moot when convex)
    align: str = "standardise"  # "none" | "standardise" (per-survey mean/std) | "coral" (Sun et al.
                                #   2016: match full covariances); maps target embeddings into the
                                #   source frame, fitted on unlabelled target rows, so costs no labels
    target_weight: float = 0.0  # refit: weight of a target label vs a source label; 0 = auto, so
                                #   that all target labels together weigh as much as the source set
    source_mix: float = 0.5     # finetune: fraction of each batch drawn from source rows (when given),
                                #   which keeps the source boundary where target labels are sparse
    steps: int = 200            # finetune optimizer steps: a few hundred target labels fit in 200
    lr_factor: float = 0.3      # finetune learning rate = head lr * lr_factor: stay near the source


def alignment(source: dict[str, np.ndarray], target: dict[str, np.ndarray], kind: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """Affine map x_target @ A + b into the source frame, from feature_stats of both surveys.
    A (D, D) float32, b (D,) float32."""
    if kind == "standardise":
        ratio = source["scale"] / target["scale"]
        a = np.diag(ratio)
    elif kind == "coral":   # whiten with the target covariance, re-colour with the source one
        a = _sym_power(target["cov"], -0.5) @ _sym_power(source["cov"], 0.5)
    else:
        raise ValueError(f"unknown alignment {kind!r}")
    return a.astype(np.float32), (source["mean"] - target["mean"] @ a).astype(np.float32)


def _sym_power(c: np.ndarray, power: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh(np.asarray(c, dtype=np.float64))
    vals = np.maximum(vals, 1e-8 * vals.max())          # Ledoit-Wolf covs are PD; guard anyway
    return (vecs * vals ** power) @ vecs.T


def adapt_head(head: Head, x_target: np.ndarray, y_target: np.ndarray, cfg: AdaptConfig | None = None,
               x_source: np.ndarray | None = None, y_source: np.ndarray | None = None,
               x_target_all: np.ndarray | None = None, x_val: np.ndarray | None = None,
               y_val: np.ndarray | None = None, progress: Progress | None = None) -> Head:
    """Carry a head trained on survey A over to survey B with a few B labels (y_target).

    x_source/y_source: source-survey rows and their labels (optional; without labels the head
    learns from target labels only, starting from the source weights; x_source alone still
    gives the alignment statistics, and CORAL requires it). x_target_all: unlabelled survey-B rows for
    the alignment statistics (default x_target). x_val/y_val: target split for the temperature.
    The returned Head takes RAW survey-B embeddings (the alignment is stored inside it).
    """
    cfg = cfg or AdaptConfig()
    arrays = {k: v for k, v in head.arrays.items() if not k.startswith("align_")}
    if cfg.align != "none":
        coral = cfg.align == "coral"
        if x_source is None and coral:
            raise ValueError("CORAL needs the source survey's embeddings (x_source, labels optional)")
        source = feature_stats(x_source, coral) if x_source is not None else arrays
        target = feature_stats(x_target if x_target_all is None else x_target_all, coral)
        arrays["align_a"], arrays["align_b"] = alignment(source, target, cfg.align)
    x_fit, y_fit = prepare(arrays, x_target), np.asarray(y_target, dtype=np.int64)
    row_weight = None
    finetune = cfg.method == "finetune" and head.cfg.kind == "mlp_ensemble"
    if x_source is not None and y_source is not None:
        n_s, n_t = len(y_source), len(y_fit)
        src_frame = {k: arrays[k] for k in ("mean", "scale")}       # source rows need no alignment
        x_fit = np.concatenate([prepare(src_frame, x_source), x_fit])
        y_fit = np.concatenate([np.asarray(y_source, dtype=np.int64), y_fit])
        if finetune:
            w_s, w_t = cfg.source_mix / n_s, (1 - cfg.source_mix) / n_t
        else:
            w_s, w_t = 1.0, cfg.target_weight or n_s / n_t
        row_weight = np.concatenate([np.full(n_s, w_s), np.full(n_t, w_t)])
        row_weight *= len(row_weight) / row_weight.sum()            # mean 1: C keeps its meaning
    if finetune:
        arrays = fit_classifier_arrays(x_fit, y_fit, head.n_classes, head.cfg, arrays, row_weight,
                                       init=arrays_to_params(arrays), steps=cfg.steps,
                                       lr=head.cfg.lr * cfg.lr_factor, progress=progress)
    else:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("net_")}
        arrays = fit_classifier_arrays(x_fit, y_fit, head.n_classes, head.cfg, arrays, row_weight,
                                       progress=progress)
    adapted = Head(head.cfg, head.n_classes, arrays, head.temperature)
    if x_val is not None and y_val is not None and len(y_val):
        adapted.temperature = fit_temperature(adapted.member_logits(x_val), y_val)
    return adapted
