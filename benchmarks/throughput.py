"""How fast do encoders train and embed, and how much memory do they take?

    python benchmarks/throughput.py            # small + large encoder at 64 px, CPU (+ CUDA when present)
    python benchmarks/throughput.py --quick    # fewer steps

Training = one SimCLR step on two augmented views (augmentation included), reported as
galaxies/s (each galaxy is seen twice) and image views/s. Embedding = preprocessing + forward
pass, in ml.embed's batches. Peak memory: resident set size (CPU, VmHWM reset before each
measurement) or torch.cuda.max_memory_allocated (GPU). On a shared machine wall-clock numbers
depend on other load, so CPU seconds per image and the load average are recorded too.
Writes benchmarks/results/throughput.json.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from common import print_table, write_result  # also puts the repo root on sys.path
from ml.augment import Augmenter, AugmentConfig, fit_preprocess
from ml.contrastive import SimCLR
from ml.embed import autocast_for, embed_batches
from ml.encoders import count_parameters, encoder_from_config, preset_config

SIZE = 64  # stored cutout side and network input, pixels
GPU_EMBED_GOAL = 20_000  # images/s with the large encoder at 64 px (issue 3)


def fake_survey(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3, 64, 64) float32 noisy galaxy-like blobs in nanomaggies (content does not affect speed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    widths = rng.uniform(2, 8, n)[:, None, None]
    blobs = 20 * np.exp(-(xx ** 2 + yy ** 2)[None] / (2 * widths ** 2))
    return (blobs[:, None] * np.array([0.6, 1.0, 1.3])[None, :, None, None]
            + rng.normal(0, 0.3, (n, 3, SIZE, SIZE))).astype(np.float32)


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass


def peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_train(preset: str, device: torch.device, batch: int, steps: int, images: np.ndarray) -> dict:
    pre = fit_preprocess(images[:256], "flux", ["g", "r", "i"], SIZE, crop_fraction=1.0)
    model = encoder_from_config(preset_config(preset, image_size=SIZE), seed=0).to(device)
    model = model.to(memory_format=torch.channels_last)
    method = SimCLR(model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    augment = Augmenter(pre, AugmentConfig())
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.from_numpy(images[:batch]).to(device)

    def step():
        v1 = augment(x, gen).contiguous(memory_format=torch.channels_last)
        v2 = augment(x, gen).contiguous(memory_format=torch.channels_last)
        with autocast_for(device):
            loss = method.loss(v1, v2)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up (oneDNN / cuDNN kernel selection)
    _sync(device)
    _reset_peak(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    galaxies = steps * batch
    return {"galaxies_per_s": galaxies / wall, "views_per_s": 2 * galaxies / wall,
            "cpu_ms_per_galaxy": 1e3 * cpu / galaxies, "peak_mb": _peak(device), "batch": batch, "steps": steps,
            "parameters": count_parameters(model)}


def measure_embed(preset: str, device: torch.device, batch: int, images: np.ndarray) -> dict:
    pre = fit_preprocess(images[:256], "flux", ["g", "r", "i"], SIZE, crop_fraction=1.0)
    model = encoder_from_config(preset_config(preset, image_size=SIZE), seed=0)
    warm = images[:batch]
    embed_batches(model, pre, iter([warm]), len(warm), device=device)
    _sync(device)
    _reset_peak(device)
    wall, cpu = time.perf_counter(), time.process_time()
    batches = (images[i:i + batch] for i in range(0, len(images), batch))
    embed_batches(model, pre, batches, len(images), device=device)
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images_per_s": len(images) / wall, "cpu_ms_per_image": 1e3 * cpu / len(images),
            "peak_mb": _peak(device), "batch": batch, "images": len(images)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()


def _peak(device) -> float:
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else peak_rss_mb()


def plan(quick: bool, device: torch.device) -> list[dict]:
    if device.type == "cuda":
        return [{"preset": "small", "train_batch": 512, "train_steps": 20, "embed_batch": 4096, "embed_n": 200_000},
                {"preset": "large", "train_batch": 256, "train_steps": 20, "embed_batch": 2048, "embed_n": 200_000}]
    return [{"preset": "small", "train_batch": 256, "train_steps": 3 if quick else 8, "embed_batch": 512,
             "embed_n": 1024 if quick else 4096},
            {"preset": "large", "train_batch": 32, "train_steps": 2 if quick else 4, "embed_batch": 128,
             "embed_n": 128 if quick else 512}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (for make benchmarks)")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows, load_before = [], os.getloadavg()
    for device in devices:
        for item in plan(args.quick, device):
            n = max(item["embed_n"], item["train_batch"])
            images = fake_survey(min(n, 8192))
            if n > len(images):
                images = np.concatenate([images] * (n // len(images) + 1))[:n]
            train = measure_train(item["preset"], device, item["train_batch"], item["train_steps"], images)
            embed = measure_embed(item["preset"], device, item["embed_batch"], images[:item["embed_n"]])
            rows.append({"device": device.type, "preset": item["preset"], "size_px": SIZE,
                         "params": train["parameters"], "train_gal/s": train["galaxies_per_s"],
                         "train_views/s": train["views_per_s"], "train_cpu_ms/gal": train["cpu_ms_per_galaxy"],
                         "train_peak_MB": train["peak_mb"], "embed_img/s": embed["images_per_s"],
                         "embed_cpu_ms/img": embed["cpu_ms_per_image"], "embed_peak_MB": embed["peak_mb"],
                         "train": train, "embed": embed})
    headers = ["device", "preset", "size_px", "params", "train_gal/s", "train_views/s", "train_cpu_ms/gal",
               "train_peak_MB", "embed_img/s", "embed_cpu_ms/img", "embed_peak_MB"]
    print_table(rows, headers)
    gpu = [r for r in rows if r["device"] == "cuda"]
    gpu_note = ("GPU not measured: no CUDA device on this machine (the CUDA path — mixed precision, "
                "channels_last, pinned-memory prefetch — exists and runs when a GPU is present)") if not gpu else \
        f"large encoder embeds {next(r['embed_img/s'] for r in gpu if r['preset'] == 'large'):.0f} img/s " \
        f"(goal {GPU_EMBED_GOAL})"
    print(gpu_note)
    path = write_result("throughput", {
        "quick": args.quick, "rows": [{k: v for k, v in r.items() if k not in ("train", "embed")} | {
            "train_detail": r["train"], "embed_detail": r["embed"]} for r in rows],
        "gpu_measured": bool(gpu), "gpu_note": gpu_note, "gpu_embed_goal_images_per_s": GPU_EMBED_GOAL,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "torch_threads": torch.get_num_threads(),
        "augment": asdict(AugmentConfig())})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
