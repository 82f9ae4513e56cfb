"""How long does simulating + rendering N galaxies in both surveys take?

    python benchmarks/simulate.py            # N = 5000, 2 processes
    python benchmarks/simulate.py --quick    # N = 500
    python benchmarks/simulate.py --examples /tmp/sim_examples.png   # contact sheet only

Writes benchmarks/results/simulate.json (seconds per phase, objects/s, load average).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from common import print_table, write_result  # also puts the repo root on sys.path
from ml import sim_scenes
from ml.simulate import (DES_LIKE, SDSS_LIKE, SimConfig, render_object, render_survey,
                         simulate_population)
from ml.vocab import CLASSES, ELLIPTICAL, LENS, RARITIES, RING, SPIRAL

SPECS = (SDSS_LIKE, DES_LIKE)


def run(n: int, processes: int, seed: int) -> dict:
    cfg = SimConfig(n=n, seed=seed, processes=processes)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    population = simulate_population(cfg)
    t_pop = time.perf_counter() - t0
    rows, total = [], t_pop
    for spec in SPECS:
        t0 = time.perf_counter()
        images = render_survey(population, spec, cfg)
        dt = time.perf_counter() - t0
        total += dt
        assert np.isfinite(images).all()
        rows.append({"phase": f"render {spec.name}", "seconds": dt, "objects/s": n / dt,
                     "ms/stamp/core": 1e3 * dt * processes / n})
    rows.insert(0, {"phase": "population", "seconds": t_pop, "objects/s": n / t_pop,
                    "ms/stamp/core": ""})
    rows.append({"phase": "total (both surveys)", "seconds": total, "objects/s": n / total,
                 "ms/stamp/core": ""})
    print_table(rows, ["phase", "seconds", "objects/s", "ms/stamp/core"])
    return {"config": dataclasses.asdict(cfg), "surveys": [dataclasses.asdict(s) for s in SPECS],
            "rows": rows, "total_seconds": total, "goal_seconds": 180.0,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def contact_sheet(path: Path, seed: int = 3, per_row: int = 4, zoom: int = 2) -> Path:
    """One row per class and rarity; per row `per_row` examples in SDSS-like, then DES-like."""
    from PIL import Image, ImageDraw

    cfg = SimConfig(seed=seed)
    kinds = [(c, "none") for c in CLASSES] + [
        (ELLIPTICAL if r == LENS else SPIRAL if r == RING else None, r)
        for r in RARITIES if r != "none"]
    size, label_w = SDSS_LIKE.stamp_size * zoom, 130
    sheet = Image.new("RGB", (label_w + 2 * per_row * (size + 2) + 8, len(kinds) * (size + 2) + 20))
    draw = ImageDraw.Draw(sheet)
    for k, spec in enumerate(SPECS):
        draw.text((label_w + k * (per_row * (size + 2) + 8), 4), spec.name, fill=(255, 255, 0))
    for r, (cls, rarity) in enumerate(kinds):
        draw.text((4, 20 + r * (size + 2) + size // 2), f"{cls or 'any'}\n{rarity}", fill="white")
        for j in range(per_row):
            obj_cls = cls or CLASSES[j % len(CLASSES)]
            row = sim_scenes.make_object(cfg, 1000 * r + j, obj_cls, rarity)
            for k, spec in enumerate(SPECS):
                rgb = lupton(render_object(row, spec))
                tile = Image.fromarray(rgb).resize((size, size), Image.NEAREST)
                x = label_w + k * (per_row * (size + 2) + 8) + j * (size + 2)
                sheet.paste(tile, (x, 20 + r * (size + 2)))
    sheet.save(path)
    return path


def lupton(stamp: np.ndarray) -> np.ndarray:
    """(3, H, W) g,r,i nanomaggies -> (H, W, 3) uint8 with i->R, r->G, g->B, asinh stretch.

    Flip vertically so +y (row index) points up, as on the sky."""
    from astropy.visualization import make_lupton_rgb
    g, r, i = (stamp[b][::-1] for b in range(3))
    return make_lupton_rgb(1.0 * i, 1.2 * r, 1.8 * g, minimum=-0.02, stretch=0.4, Q=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 500")
    ap.add_argument("-n", type=int, default=None, help="objects (default 5000)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=Path, default=None,
                    help="only write a PNG contact sheet of every class and rarity here")
    args = ap.parse_args()
    if args.examples:
        print(contact_sheet(args.examples))
        return
    n = args.n or (500 if args.quick else 5000)
    payload = run(n, args.processes, args.seed)
    payload["quick"] = bool(args.quick)
    print(write_result("simulate", payload))


if __name__ == "__main__":
    main()
