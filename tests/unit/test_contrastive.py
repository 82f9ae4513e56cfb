"""ml/contrastive.py + ml/train.py: NT-Xent against the paper's formula, BYOL, checkpoints and exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.checkpoints import CheckpointError, read_checkpoint
from ml.contrastive import BYOL, SimCLR, byol_loss, nt_xent_loss
from ml.encoders import encoder_from_config, preset_config
from ml.sources import ArraySource
from ml.train import TrainConfig, train

pytestmark = pytest.mark.unit
TINY = {"width": 4, "stages": [1, 1], "proj_hidden": 16, "proj_dim": 8}


def naive_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """Chen et al. 2020, eq. 1, summed over all 2N anchors and divided by 2N, written with loops."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sim = lambda a, b: z[a] @ z[b] / (np.linalg.norm(z[a]) * np.linalg.norm(z[b]))
        denominator = sum(np.exp(sim(i, k) / tau) for k in range(n2) if k != i)
        total += -np.log(np.exp(sim(i, j) / tau) / denominator)
    return total / n2


@pytest.mark.parametrize("n, d, tau", [(2, 3, 0.5), (4, 5, 0.1), (7, 2, 1.0)])
def test_nt_xent_matches_naive_formula(n, d, tau):
    rng = np.random.default_rng(n * d)
    z1, z2 = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    got = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), tau).item()
    assert got == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_rewards_aligned_views():
    z = torch.randn(16, 8)
    assert nt_xent_loss(z, z + 0.01 * torch.randn(16, 8)) < nt_xent_loss(z, torch.randn(16, 8))


def test_byol_loss_is_two_minus_two_cosine():
    p, z = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert byol_loss(p, z).item() == pytest.approx((0.0 + 2.0) / 2)


def test_byol_target_follows_online_by_ema():
    enc = encoder_from_config(preset_config("small", image_size=32, **TINY), seed=0)
    byol = BYOL(enc, tau_base=0.5)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    before = byol.target.backbone.stem[0].weight.clone()
    byol.after_step(0, 10)   # at step 0 tau = tau_base
    expected = 0.5 * before + 0.5 * enc.backbone.stem[0].weight
    torch.testing.assert_close(byol.target.backbone.stem[0].weight, expected)
    assert all(not p.requires_grad for p in byol.target.parameters())


def blobs(n=24, size=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        w = 1.5 + 3 * rng.random()
        out[i] = np.exp(-(xx ** 2 + yy ** 2) / (2 * w * w)) * 10 + rng.normal(0, 0.2, (3, size, size))
    return out


def config(epochs=2, method="simclr") -> TrainConfig:
    return TrainConfig(method=method, epochs=epochs, batch_size=8, image_size=32, encoder=TINY, seed=11)


def states_equal(a: dict, b: dict) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_two_epoch_run_equals_crash_after_one_epoch_plus_resume(tmp_path, method):
    data = ArraySource(blobs())
    events = []
    full = train(data, config(2, method), tmp_path / "full.pt", on_step=events.append, device=torch.device("cpu"))
    assert full.epochs_done == 2 and full.steps_done == 6 and len(full.history) == 6
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6] and [e.epoch for e in events if e.epoch_end] == [1, 2]
    assert all(np.isfinite(e.loss) for e in events)

    class Crash(Exception):
        pass

    def crash_in_epoch_2(event):
        if event.epoch == 2:
            raise Crash  # the worker dies during epoch 2; the checkpoint of epoch 1 is on disk

    with pytest.raises(Crash):
        train(data, config(2, method), tmp_path / "resumed.pt", on_step=crash_in_epoch_2, device=torch.device("cpu"))
    assert read_checkpoint(tmp_path / "resumed.pt")["state"]["epoch"] == 1
    resumed = train(data, config(2, method), tmp_path / "resumed.pt", device=torch.device("cpu"))
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_done == 2
    a, b = read_checkpoint(tmp_path / "full.pt"), read_checkpoint(tmp_path / "resumed.pt")
    assert states_equal(a["model"], b["model"])                        # identical weights
    assert states_equal(a["state"]["optimizer"], b["state"]["optimizer"])  # identical Adam moments and steps
    assert states_equal(a["state"]["method"], b["state"]["method"])
    assert a["state"]["history"] == b["state"]["history"]
    assert a["train_config"] == b["train_config"] and a["train_config"]["method"] == method


def test_finished_checkpoint_is_not_trained_again_and_settings_must_match(tmp_path):
    data = ArraySource(blobs())
    train(data, config(1), tmp_path / "c.pt", device=torch.device("cpu"))
    before = (tmp_path / "c.pt").stat().st_mtime_ns
    again = train(data, config(1), tmp_path / "c.pt", device=torch.device("cpu"))
    assert again.resumed_from_epoch == 1 and again.steps_done == 3 and (tmp_path / "c.pt").stat().st_mtime_ns == before
    with pytest.raises(CheckpointError, match="different settings \\(batch_size\\)"):
        train(data, TrainConfig(**{**config(2).__dict__, "batch_size": 4}), tmp_path / "c.pt")


def test_config_is_saved_and_reapplied(tmp_path):
    train(ArraySource(blobs()), config(1, "byol"), tmp_path / "c.pt", device=torch.device("cpu"))
    saved = read_checkpoint(tmp_path / "c.pt")
    restored = TrainConfig.from_dict(saved["train_config"])
    assert restored == config(1, "byol")
    assert saved["encoder_config"]["width"] == 4 and saved["preprocess"]["image_size"] == 32
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "warp_drive": True})
    with pytest.raises(ValueError, match="method 'moco'"):
        TrainConfig(method="moco").validate()


def test_simclr_training_lowers_the_loss(tmp_path):
    result = train(ArraySource(blobs(48)), TrainConfig(epochs=4, batch_size=16, image_size=32, encoder=TINY, seed=0,
                                                      lr=5e-3), tmp_path / "c.pt", device=torch.device("cpu"))
    losses = [loss for _, loss in result.epoch_losses]
    assert losses[-1] < losses[0]


def test_simclr_wrapper_loss_is_finite():
    enc = encoder_from_config(preset_config("small", image_size=32, **TINY), seed=0)
    x = torch.randn(4, 3, 32, 32)
    assert torch.isfinite(SimCLR(enc).loss(x, x + 0.1))
