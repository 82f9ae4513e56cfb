"""A parametric map placement: a small MLP that regresses a fitted UMAP's coordinates from the vectors.

Large maps are fitted on a sample (ml/projection.py); every other row is then placed by a
transform.  umap's own ``transform`` searches the sample's neighbour graph and optimises each
new point (accurate, but ~minutes per 10^6 rows on 2 cores); this MLP is trained once on the
sample's (vector, coordinate) pairs and then places rows with two matrix products per layer
(CPU or GPU, ~1 s per 10^5 rows on CPU).  Which one a map uses is UMAPConfig.placement.

Inputs are L2-normalised (the map's metric is cosine) and standardised with the sample's
mean/std; targets are the normalised map coordinates divided by the extent (about [-1, 1]).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class MLPConfig:
    hidden: int = 256          # units per hidden layer: enough for 10^5 samples at D=128, fast on CPU
    depth: int = 3             # hidden layers
    epochs: int = 40           # passes over the sample (about 4,000 steps at 10^5 rows)
    min_steps: int = 1_500     # small samples get more passes, so they are fitted as well (tests, 10^3 rows)
    batch_size: int = 1024     # rows per step
    lr: float = 2e-3           # AdamW, cosine-decayed to 0
    weight_decay: float = 1e-5
    seed: int = 0
    device: str = "auto"       # "auto" = cuda when available, else cpu


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _net(d_in: int, cfg: MLPConfig):
    import torch.nn as nn

    layers, width = [], d_in
    for _ in range(cfg.depth):
        layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
        width = cfg.hidden
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def _device(cfg: MLPConfig):
    import torch
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


@dataclass
class PlacementMLP:
    """Weights (numpy, so the pickle needs no torch device) plus the input/target scaling."""
    state: dict                # parameter name -> np.ndarray
    mean: np.ndarray           # (D,) of the L2-normalised sample
    std: np.ndarray            # (D,)
    scale: float               # targets were coords / scale
    d_in: int
    cfg: dict                  # MLPConfig as a dict (saved with the map)
    final_loss: float = float("nan")

    def predict(self, vectors: np.ndarray, batch: int = 65_536) -> np.ndarray:
        """(M, D) -> (M, 2) float32 map coordinates."""
        import torch

        cfg = MLPConfig(**self.cfg)
        net = _net(self.d_in, cfg)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.state.items()})
        device = _device(cfg)
        net.to(device).eval()
        out = np.empty((len(vectors), 2), dtype=np.float32)
        with torch.no_grad():
            for a in range(0, len(vectors), batch):
                x = (_normalise_rows(vectors[a:a + batch]) - self.mean) / self.std      # (B, D)
                out[a:a + batch] = net(torch.from_numpy(x).to(device)).cpu().numpy() * self.scale
        return out


def fit_mlp(vectors: np.ndarray, coords: np.ndarray, cfg: MLPConfig | None = None,
            on_epoch: Callable[[int, int], None] | None = None) -> PlacementMLP:
    """Train on (S, D) vectors -> (S, 2) map coordinates (the sample's fitted UMAP layout)."""
    import torch

    cfg = cfg or MLPConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x = _normalise_rows(vectors)                                   # (S, D)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = (x - mean) / std
    scale = float(np.abs(coords).max()) or 1.0
    y = np.asarray(coords, dtype=np.float32) / scale                # (S, 2) in [-1, 1]
    device = _device(cfg)
    net = _net(x.shape[1], cfg).to(device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(x) / cfg.batch_size)))
    epochs = max(cfg.epochs, int(np.ceil(cfg.min_steps / steps_per_epoch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_value = float("nan")
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x))).to(device)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            loss = torch.nn.functional.smooth_l1_loss(net(xt[idx]), yt[idx], beta=0.01)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        loss_value = total / len(x)
        if on_epoch:
            on_epoch(epoch + 1, epochs)
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    return PlacementMLP(state, mean.astype(np.float32), std.astype(np.float32), scale, x.shape[1], asdict(cfg), loss_value)
