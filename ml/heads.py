"""Task heads on FROZEN galaxy embeddings: classifiers and regressors that retrain in seconds.

Input: embeddings X (N, D) float32 from ml/embed (D ~ 64-512); labels for a subset.

Classifiers (`fit_classifier` -> `Head`):
  logistic      sklearn multinomial logistic regression on standardised features.
                One model: `member_probs` is (1, N, K), so BALD is zero; use mlp_ensemble for BALD.
  mlp_ensemble  a deep ensemble (Lakshminarayanan et al. 2017) of small MLPs, trained
                TOGETHER as one batched network (weights (M, in, out), torch.baddbmm): one
                big matmul instead of M small ones, so 5 members cost little more than 1.
                Members differ by initialisation and by their own random mini-batches.
                With cfg.mc_samples > 0, `member_probs` also draws MC-dropout passes
                (Gal & Ghahramani 2016) per member, the BALD of Walmsley et al. 2020.
Training length is counted in optimizer STEPS, clipped to [min_steps, max_steps]: 100
labels get enough updates to fit, 100,000 labels do not take minutes (each step sees a
fresh batch, so a capped run still covers ~max_steps * batch_size rows per member).

Calibration: when a validation split is given, a temperature (ml/calibration) is fitted on
the member logits and applied in predict_proba and member_probs, and
predict_proba(X) == member_probs(X).mean(0) (without MC passes).

Regressors (`fit_regressor` -> `RegHead`, predict -> (mean, sigma) in target units):
  mlp_ensemble  members output a mean and a variance, trained with the Gaussian NLL; sigma^2 =
                mean member variance (aleatoric) + variance of member means (epistemic).
  logistic/linear  sklearn BayesianRidge: closed-form posterior predictive std.
  With a validation split, sigma is rescaled by s = RMS of the validation z-scores.

Saving: `state_dict()` is {"config": dict, "n_classes"/"task", "temperature", "arrays":
{name: np.ndarray}} (no pickle: np.savez + JSON can hold it); `Head.from_state` rebuilds.
Domain transfer (survey A -> B with a few B labels) builds on these heads: ml/adapt.py.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import BayesianRidge, LogisticRegression

from ml.calibration import apply_temperature, calibrated_log_probs, fit_temperature
from ml.progress import Progress


@dataclass
class HeadConfig:
    kind: str = "mlp_ensemble"     # "logistic" (linear, sklearn) | "mlp_ensemble" (torch deep ensemble)
    hidden: tuple[int, ...] = (128,)  # MLP hidden widths; one layer of 128 is plenty on SSL features
    n_members: int = 5             # ensemble size: 5 is the usual knee for uncertainty quality
    dropout: float = 0.1           # dropout on hidden layers (regularises; MC dropout when mc_samples > 0)
    mc_samples: int = 0            # >0: member_probs draws this many dropout passes per member
    epochs: int = 100              # nominal passes over the labels, converted to steps and clipped:
    min_steps: int = 200           #   small label sets still get enough updates to fit
    max_steps: int = 400           #   large ones stay at seconds (measured: ~2 s for N=1e5, D=128)
    batch_size: int = 256          # rows per member per step
    lr: float = 3e-3               # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 1e-4     # AdamW decoupled weight decay
    logistic_c: float = 1.0        # inverse L2 strength of the logistic head (sklearn's C)
    max_iter: int = 300            # lbfgs iterations of the logistic head
    class_weight: bool = False     # True: "balanced" (rare mergers weigh as much as ellipticals);
                                   #   off by default: it trades plain accuracy for balanced accuracy
    target_scaling: str = "standard"  # regression: "standard" (z-score y for training) | "none"
    seed: int = 0                  # initialisation, batches and MC-dropout masks
    threads: int = 0               # torch threads while fitting/predicting; 0 = leave unchanged
    predict_chunk: int = 16384     # rows per forward pass when predicting (bounds memory)


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily use n intra-op torch threads (n = 0: unchanged)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


STATS_SAMPLE = 200_000   # rows standardisation statistics are taken from: the mean and std of 2e5
                         # rows are within ~0.2 % of all rows', and 10^7 rows as float64 would be 10 GB


def stats_sample(x, limit: int = STATS_SAMPLE, seed: int = 0) -> np.ndarray:
    """x itself (as an array) up to ``limit`` rows, else a seeded sample of ``limit`` rows in
    row order.  x may be a memmap or any object indexable by a row array (TaskVectors)."""
    n = len(x)
    if n <= limit:
        return np.asarray(x)
    return np.asarray(x[np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))])


def feature_stats(x: np.ndarray, with_cov: bool = False) -> dict[str, np.ndarray]:
    """Per-dimension mean (D,) and scale (std, 1 where constant), float32; with_cov adds the
    Ledoit-Wolf covariance (D, D) that CORAL needs (~2 s at N=1e5, D=512, so only on demand)."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    stats = {"mean": x.mean(axis=0).astype(np.float32),
             "scale": np.where(std > 1e-12, std, 1.0).astype(np.float32)}
    if with_cov:   # shrinkage keeps C^-1/2 stable when D is large against the rows (few labels)
        stats["cov"] = LedoitWolf().fit(x[:50_000]).covariance_.astype(np.float32)
    return stats


def prepare(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Raw embeddings (N, D) -> aligned (if adapted to another survey) and standardised, float32."""
    x = np.asarray(x, dtype=np.float32)
    if "align_a" in arrays:
        x = x @ arrays["align_a"] + arrays["align_b"]
    return (x - arrays["mean"]) / arrays["scale"]


# ------------------------------------------------------------- batched ensemble network
def init_members(sizes: list[int], n_members: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Weights W{i} (M, in, out) and biases b{i} (M, 1, out), nn.Linear's uniform init."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / np.sqrt(n_in)
        params[f"W{i}"] = (torch.rand(n_members, n_in, n_out, generator=gen) * 2 - 1) * bound
        params[f"b{i}"] = (torch.rand(n_members, 1, n_out, generator=gen) * 2 - 1) * bound
    return params


def forward_members(params: dict[str, torch.Tensor], x: torch.Tensor, dropout: float = 0.0,
                    gen: torch.Generator | None = None) -> torch.Tensor:
    """x (M, B, D) per-member rows, or (B, D) shared by all members -> outputs (M, B, O).

    Dropout is applied to hidden activations when dropout > 0 (training, or MC passes).
    """
    n_layers = len(params) // 2
    m = params["W0"].shape[0]
    h = x if x.dim() == 3 else x.unsqueeze(0).expand(m, -1, -1)          # (M, B, D)
    for i in range(n_layers):
        h = torch.baddbmm(params[f"b{i}"], h, params[f"W{i}"])           # (M, B, out)
        if i < n_layers - 1:
            h = torch.relu(h)
            if dropout > 0:
                keep = torch.rand(h.shape, generator=gen) >= dropout
                h = h * keep / (1.0 - dropout)
    return h


def n_steps(n_rows: int, cfg: HeadConfig) -> int:
    """Optimizer steps for n labelled rows: epochs * batches per epoch, clipped."""
    per_epoch = int(np.ceil(n_rows / cfg.batch_size))
    return int(np.clip(cfg.epochs * per_epoch, cfg.min_steps, cfg.max_steps))


def train_members(params: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray,
                  sample_p: np.ndarray, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  cfg: HeadConfig, steps: int, lr: float, gen: torch.Generator,
                  progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """AdamW on all members at once. Each member draws its own batch of rows with
    probabilities sample_p (N,) (uniform, class-balanced or source/target mixing).
    loss_fn(out (M, B, O), y (M, B)) returns the SUM over members of their mean losses, so a
    member's gradient does not depend on M. Returns the trained params (detached)."""
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)
    p = torch.from_numpy(np.asarray(sample_p, dtype=np.float64))
    m = params["W0"].shape[0]
    batch = min(cfg.batch_size, len(x))
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    for step in range(steps):
        idx = torch.multinomial(p, m * batch, replacement=True, generator=gen).view(m, batch)
        out = forward_members(params, xt[idx], cfg.dropout, gen)           # (M, B, O)
        loss = loss_fn(out, yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % 50 == 0 or step == steps - 1):
            progress(step + 1, steps, f"training head, loss {loss.item() / m:.3f}")
    return {k: v.detach() for k, v in params.items()}


def predict_members(params: dict[str, torch.Tensor], x: np.ndarray, cfg: HeadConfig,
                    mc_samples: int = 0, seed: int = 0) -> np.ndarray:
    """Standardised rows (N, D) -> member outputs (M, N, O) float32, or with mc_samples > 0
    MC-dropout passes (M * S, N, O), member-major."""
    gen = torch.Generator().manual_seed(seed)
    passes = max(mc_samples, 1)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(x), cfg.predict_chunk):
            xc = torch.from_numpy(np.ascontiguousarray(x[start:start + cfg.predict_chunk]))
            outs = [forward_members(params, xc, cfg.dropout if mc_samples else 0.0, gen)
                    for _ in range(passes)]                                # S x (M, B, O)
            chunks.append(torch.stack(outs, dim=1).flatten(0, 1))         # (M * S, B, O)
    return torch.cat(chunks, dim=1).numpy()


def params_to_arrays(params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {f"net_{k}": v.numpy().copy() for k, v in params.items()}


def arrays_to_params(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k[4:]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()
            if k.startswith("net_")}


def class_balanced_p(y: np.ndarray, n_classes: int, balanced: bool,
                     row_weight: np.ndarray | None = None) -> np.ndarray:
    """Row sampling probabilities (N,): uniform, or each present class drawn equally often
    ('balanced' as resampling), times optional per-row weights (target up-weighting)."""
    w = np.ones(len(y)) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    if balanced:
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        w = w / counts[y]
    return w / w.sum()


# ------------------------------------------------------------- classifier
class Head:
    """A classifier on frozen embeddings: raw (N, D) embeddings -> (N, K) class probabilities."""

    def __init__(self, cfg: HeadConfig, n_classes: int, arrays: dict[str, np.ndarray],
                 temperature: float = 1.0):
        self.cfg, self.n_classes, self.arrays, self.temperature = cfg, n_classes, arrays, temperature

    def member_logits(self, x: np.ndarray, mc_samples: int = 0) -> np.ndarray:
        """Uncalibrated logits (M, N, K) float32 (M = 1 for logistic; M * S with MC passes)."""
        xs = prepare(self.arrays, x)
        if self.cfg.kind == "logistic":
            return (xs @ self.arrays["coef"].T + self.arrays["intercept"])[None]   # (1, N, K)
        with torch_threads(self.cfg.threads):
            return predict_members(arrays_to_params(self.arrays), xs, self.cfg, mc_samples,
                                   self.cfg.seed + 1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, K) float32 calibrated class probabilities (mean over ensemble members)."""
        return np.exp(calibrated_log_probs(self.member_logits(x), self.temperature)).astype(np.float32)

    def member_probs(self, x: np.ndarray) -> np.ndarray:
        """(M, N, K) float32 per-member (or per MC-dropout pass) calibrated probabilities, for BALD."""
        logits = self.member_logits(x, self.cfg.mc_samples)
        return apply_temperature(logits, self.temperature).astype(np.float32)

    def state_dict(self) -> dict:
        return {"task": "classification", "config": asdict(self.cfg), "n_classes": self.n_classes,
                "temperature": self.temperature, "arrays": dict(self.arrays)}

    @classmethod
    def from_state(cls, state: dict) -> "Head":
        cfg = _config_from_dict(state["config"])
        return cls(cfg, int(state["n_classes"]), {k: np.asarray(v) for k, v in state["arrays"].items()},
                   float(state["temperature"]))


def _config_from_dict(d: dict) -> HeadConfig:
    d = dict(d)
    d["hidden"] = tuple(d.get("hidden", ()))   # JSON turns tuples into lists
    return HeadConfig(**d)


def _logistic_arrays(xs: np.ndarray, y: np.ndarray, n_classes: int, cfg: HeadConfig,
                     row_weight: np.ndarray | None) -> dict[str, np.ndarray]:
    """Fit sklearn's multinomial logistic regression; return coef (K, D) and intercept (K,)
    for ALL K classes: classes missing from y get logit -inf (probability 0)."""
    present = np.unique(y)
    coef = np.zeros((n_classes, xs.shape[1]), dtype=np.float32)
    intercept = np.full(n_classes, -np.inf, dtype=np.float32)
    if len(present) == 1:             # a round with one class so far: predict it
        intercept[present[0]] = 0.0
        return {"coef": coef, "intercept": intercept}
    model = LogisticRegression(C=cfg.logistic_c, max_iter=cfg.max_iter,
                               class_weight="balanced" if cfg.class_weight else None)
    model.fit(xs, y, sample_weight=row_weight)
    if len(present) == 2:             # sklearn keeps one row: softmax([0, z]) == sigmoid(z)
        intercept[present[0]] = 0.0
        coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return {"coef": coef, "intercept": intercept}


def _ce_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over members of mean cross-entropy; out (M, B, K), y (M, B)."""
    m = out.shape[0]
    return torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()) * m


def fit_classifier_arrays(xs, y, n_classes, cfg, arrays, row_weight=None, init=None,
                          steps=None, lr=None, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Fit (or warm-start from `init` params) on standardised rows; returns arrays with weights.
    ml.adapt calls it with source and target rows mixed (row_weight) and a warm start."""
    y = np.asarray(y, dtype=np.int64)
    if cfg.kind == "logistic":
        return {**arrays, **_logistic_arrays(xs, y, n_classes, cfg, row_weight)}
    if cfg.kind != "mlp_ensemble":
        raise ValueError(f"unknown head kind {cfg.kind!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch_threads(cfg.threads):
        params = init or init_members([xs.shape[1], *cfg.hidden, n_classes], cfg.n_members, gen)
        p = class_balanced_p(y, n_classes, cfg.class_weight, row_weight)
        params = train_members(params, xs, y, p, _ce_loss, cfg, steps or n_steps(len(y), cfg),
                               lr or cfg.lr, gen, progress)
    return {**arrays, **params_to_arrays(params)}


def fit_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: HeadConfig | None = None,
                   x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                   x_all: np.ndarray | None = None, progress: Progress | None = None) -> Head:
    """Train a classification head on labelled embeddings x (N, D), y (N,) in [0, n_classes).

    x_val, y_val: a held-out labelled split; when given, a temperature is fitted on it.
    x_all: rows to take the standardisation statistics from (e.g. every galaxy of the
    survey, labelled or not): steadier than the few labelled rows of an early round.
    """
    cfg = cfg or HeadConfig()
    stats = feature_stats(x if x_all is None else stats_sample(x_all))
    arrays = fit_classifier_arrays(prepare(stats, x), y, n_classes, cfg, stats, progress=progress)
    head = Head(cfg, n_classes, arrays)
    if x_val is not None and y_val is not None and len(y_val):
        head.temperature = fit_temperature(head.member_logits(x_val), y_val)
    return head


# ------------------------------------------------------------- regressor
class RegHead:
    """A regressor on frozen embeddings (e.g. photometric redshift, Sersic index):
    raw (N, D) -> (mean, sigma), both (N,) float32 in the units of the training target."""

    def __init__(self, cfg: HeadConfig, arrays: dict[str, np.ndarray], sigma_scale: float = 1.0):
        self.cfg, self.arrays, self.sigma_scale = cfg, arrays, sigma_scale

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, a = prepare(self.arrays, x), self.arrays
        if self.cfg.kind == "mlp_ensemble":
            with torch_threads(self.cfg.threads):
                out = predict_members(arrays_to_params(a), xs, self.cfg)       # (M, N, 2)
            mu, var = out[..., 0], _softplus_var(out[..., 1])
            mean = mu.mean(axis=0)
            total_var = (var + mu ** 2).mean(axis=0) - mean ** 2   # mixture: aleatoric + epistemic
        else:  # BayesianRidge posterior predictive, as sklearn computes it
            mean = xs @ a["coef"] + a["intercept"]
            centred = xs - a["x_offset"]
            total_var = ((centred @ a["sigma"]) * centred).sum(axis=1) + 1.0 / a["alpha"]
        sigma = np.sqrt(np.maximum(total_var, 0.0)) * a["y_scale"] * self.sigma_scale
        return (mean * a["y_scale"] + a["y_mean"]).astype(np.float32), sigma.astype(np.float32)

    def state_dict(self) -> dict:
        return {"task": "regression", "config": asdict(self.cfg), "sigma_scale": self.sigma_scale,
                "arrays": dict(self.arrays)}

    @classmethod
    def from_state(cls, state: dict) -> "RegHead":
        return cls(_config_from_dict(state["config"]),
                   {k: np.asarray(v) for k, v in state["arrays"].items()}, float(state["sigma_scale"]))


def _softplus_var(raw):
    """Raw network output -> variance > 0 (floor 1e-3 in scaled units keeps the NLL finite)."""
    if isinstance(raw, torch.Tensor):
        return torch.nn.functional.softplus(raw) + 1e-3
    return np.logaddexp(0.0, raw) + 1e-3


def _gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over members of the mean Gaussian NLL; out (M, B, 2) = (mean, raw variance)."""
    mu, var = out[..., 0], _softplus_var(out[..., 1])
    return (0.5 * (torch.log(var) + (y - mu) ** 2 / var)).mean() * out.shape[0]


def fit_regressor(x: np.ndarray, y: np.ndarray, cfg: HeadConfig | None = None,
                  x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                  x_all: np.ndarray | None = None, progress: Progress | None = None) -> RegHead:
    """Train a regression head on x (N, D), y (N,) float. With a validation split, sigma is
    rescaled so validation z-scores have unit RMS (the MLE of a single variance factor)."""
    cfg = cfg or HeadConfig()
    y = np.asarray(y, dtype=np.float64)
    arrays = feature_stats(x if x_all is None else stats_sample(x_all))
    scaled = cfg.target_scaling == "standard"
    arrays["y_mean"] = np.float32(y.mean() if scaled else 0.0)
    arrays["y_scale"] = np.float32(y.std() if scaled and y.std() > 0 else 1.0)
    xs, ys = prepare(arrays, x), ((y - arrays["y_mean"]) / arrays["y_scale"]).astype(np.float32)
    if cfg.kind == "mlp_ensemble":
        gen = torch.Generator().manual_seed(cfg.seed)
        with torch_threads(cfg.threads):
            params = init_members([xs.shape[1], *cfg.hidden, 2], cfg.n_members, gen)
            params = train_members(params, xs, ys, np.full(len(ys), 1.0 / len(ys)), _gaussian_nll,
                                   cfg, n_steps(len(ys), cfg), cfg.lr, gen, progress)
        arrays.update(params_to_arrays(params))
    elif cfg.kind in ("logistic", "linear"):   # the linear family: Bayesian ridge regression
        model = BayesianRidge().fit(xs, ys)
        arrays.update(coef=model.coef_.astype(np.float32), intercept=np.float32(model.intercept_),
                      sigma=model.sigma_.astype(np.float32), alpha=np.float32(model.alpha_),
                      x_offset=model.X_offset_.astype(np.float32))
    else:
        raise ValueError(f"unknown head kind {cfg.kind!r}")
    head = RegHead(cfg, arrays)
    if x_val is not None and y_val is not None and len(y_val):
        mean, sigma = head.predict(x_val)
        head.sigma_scale = float(np.sqrt(np.mean(((np.asarray(y_val) - mean) / sigma) ** 2)))
    return head
