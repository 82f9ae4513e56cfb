"""Self-supervised objectives: SimCLR's NT-Xent (Chen et al. 2020) and BYOL (Grill et al. 2020).

Both see two augmented views of the same batch of galaxies. SimCLR pulls the two views
of a galaxy together and pushes all other galaxies in the batch away; BYOL predicts a
slowly moving (EMA) target network's projection of the other view and needs no negatives,
so it works with the small batches a single GPU or a CPU can afford.
The training loop lives in ml.train; this file holds the losses and methods.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ml.encoders import GalaxyEncoder, projection_mlp

METHODS = ("simclr", "byol")


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy, averaged over all 2B anchors.

    z1, z2: (B, P) projections of two views; row i of z1 and row i of z2 are the positive pair.
    For anchor i with positive j(i): l_i = -log exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ), s = cosine.
    """
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], 0).float(), dim=1)  # (2B, P)
    sim = z @ z.t() / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)  # (2B,)
    return F.cross_entropy(sim, positives)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, z) averaged over the batch; z is the target (no gradient)."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


class SimCLR(nn.Module):
    """NT-Xent on the projection head's outputs of both views."""

    def __init__(self, encoder: GalaxyEncoder, temperature: float = 0.2):
        super().__init__()
        self.encoder, self.temperature = encoder, temperature

    def loss(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(self.encoder.project(v1), self.encoder.project(v2), self.temperature)

    def after_step(self, step: int, total_steps: int) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


class BYOL(nn.Module):
    """Online encoder + predictor chase an exponential moving average (target) of the encoder.

    The EMA rate goes from ``tau_base`` to 1 on a cosine schedule, as in the paper.
    """

    def __init__(self, encoder: GalaxyEncoder, tau_base: float = 0.99, predictor_hidden: int = 256):
        super().__init__()
        self.encoder, self.tau_base = encoder, tau_base
        dim = encoder.config.proj_dim
        self.predictor = projection_mlp(dim, predictor_hidden, dim)
        self.target = copy.deepcopy(encoder)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def loss(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.predictor(self.encoder.project(v1)), self.predictor(self.encoder.project(v2))
        with torch.no_grad():
            self.target.train()  # target BN uses batch statistics like the online network
            z1, z2 = self.target.project(v1), self.target.project(v2)
        return 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        tau = 1 - (1 - self.tau_base) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2
        for online, target in zip(self.encoder.state_dict().values(), self.target.state_dict().values()):
            if online.dtype.is_floating_point:
                target.mul_(tau).add_(online, alpha=1 - tau)
            else:
                target.copy_(online)  # BN num_batches_tracked

    def extra_state(self) -> dict:
        return {"predictor": self.predictor.state_dict(), "target": self.target.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])


def build_method(name: str, encoder: GalaxyEncoder, temperature: float, tau_base: float) -> nn.Module:
    if name == "simclr":
        return SimCLR(encoder, temperature)
    if name == "byol":
        return BYOL(encoder, tau_base)
    raise ValueError(f"unknown method {name!r}; methods are {list(METHODS)}")
