"""Benchmark data shared by the embedding, anomaly and active-learning benchmarks.

    from datasets import load_gz1, load_sim, gz1_embeddings, sim_embeddings, ssl_embeddings

    gz1 = load_gz1(size=64)              # None when ../shared/data/gz1_sdss is absent
    gz1.images (N, 3, 64, 64) float32 RGB in [0, 1]; gz1.classes (N,) GZ1 class 0–5; gz1.objids (N,) str
    gz1.task3 (N,) int: 0 elliptical, 1 spiral (GZ1 1+2), 2 edge-on, -1 otherwise (4 artifact, 5 merger)

    sim = load_sim(n=2000, seed=0)       # both simulated surveys of one population (ml.simulate)
    sim.images["sdss_like"], sim.images["des_like"] (N, 3, 64, 64) nanomaggies; sim.truth (dict of arrays:
    class, rarity, mag_r, ...); sim.task3 (N,) int (elliptical 0, spiral 1, edge_on 2, merger -1)

    vectors = gz1_embeddings(quick=False)            # (N, D) SSL embedding of load_gz1() rows
    per_survey = sim_embeddings(n=2000, seed=0)      # {"sdss_like": (N, D), "des_like": (N, D)},
                                                     # trained on sdss_like, one shared space

Everything is cached under var/bench/ (gitignored): decoded GZ1 pixels, simulated surveys
and trained encoders + embeddings, keyed by a hash of the data, the TrainConfig AND the source
code that produced them (ml/**/*.py for encoders, the simulator for simulations, the ingest
pixel decoder for GZ1 pixels), so a second benchmark reuses the first one's encoder instead of
training again, and a cached encoder from older code is never reused silently.

The tuning / reporting split (benchmark protocol, /work/shared/DESIGN.md) is defined here and
nowhere else:

    SIM_SEEDS["tuning"] == (0, 1, 2), SIM_SEEDS["reporting"] == (3, 4, 5)   # simulated populations
    gz1_split_mask(gz1, "tuning")   # GZ1 half A: bool (N,); "reporting" -> half B (disjoint)

Defaults and recipes are chosen by comparing runs on the tuning split only; the README quotes
the reporting split. GZ1 halves are stratified by class and assigned by a salted hash of the
objID, so they do not depend on row order. The SSL encoders never see labels: the GZ1 encoder
trains on the pixels of ALL GZ1 images (both halves), and probes, kNN, active-learning pools
and anomaly reviews of a split use only that split's galaxies.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml import vocab  # noqa: E402
from ml.augment import AugmentConfig  # noqa: E402
from ml.train import TrainConfig  # noqa: E402

CACHE = ROOT / "var" / "bench"
ML_DIR = ROOT / "ml"
GZ1_DIR = ROOT.parent / "shared" / "data" / "gz1_sdss"
GZ1_CROP = 0.4  # the galaxy fills about the central 40% of a 423 px GZ1 JPEG (as the ingest preset)

# Training recipes of the SSL embeddings the benchmarks use (see benchmarks/embed_quality.py
# for how they compare with baselines). quick=True: a few epochs for `make benchmarks`.
GZ1_RECIPE = TrainConfig(method="simclr", preset="small", image_size=32, crop_fraction=1.0, epochs=30,
                         batch_size=256, temperature=0.2, seed=0,
                         augment={**asdict(AugmentConfig()), "flux_scale_sigma": 0.03, "reddening_max_ebv": 0.02})
SIM_RECIPE = TrainConfig(method="simclr", preset="small", image_size=32, crop_fraction=0.75, epochs=30,
                         batch_size=256, temperature=0.2, seed=0)
QUICK_EPOCHS = 4

# ------------------------------------------------------------------ tuning / reporting split
SPLITS = ("tuning", "reporting")
SIM_SEEDS = {"tuning": (0, 1, 2), "reporting": (3, 4, 5)}   # ml.simulate seeds: one population each
SIM_N = 2000                                                # galaxies per simulated population
GZ1_HALVES = {"tuning": "A", "reporting": "B"}
GZ1_SPLIT_SALT = "latentsky-gz1-split-v1"                   # changing it re-draws the halves


def gz1_halves(objids: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """'A' or 'B' per row, stratified by GZ1 class: within each class, rows sorted by
    sha256(salt + objID) alternate A, B, A, B... (halves differ by at most one per class)."""
    out = np.empty(len(objids), dtype="<U1")
    for cls in np.unique(classes):
        rows = np.flatnonzero(classes == cls)
        order = sorted(rows, key=lambda i: hashlib.sha256(f"{GZ1_SPLIT_SALT}:{objids[i]}".encode()).hexdigest())
        for rank, i in enumerate(order):
            out[i] = "AB"[rank % 2]
    return out


def gz1_split_mask(gz1: "GZ1Data", split: str) -> np.ndarray:
    """(N,) bool: rows of ``gz1`` in the split's half (tuning: A, reporting: B)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return gz1_halves(gz1.objids, gz1.classes) == GZ1_HALVES[split]


def add_split_arguments(parser, quick_help: str) -> None:
    """--quick, --split and --sim-seeds, as every split-aware benchmark takes them."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--split", choices=SPLITS, default="reporting",
                        help="tuning: sim seeds 0-2 + GZ1 half A (writes *_tuning.json); reporting (default): "
                             "sim seeds 3-5 + GZ1 half B")
    parser.add_argument("--sim-seeds", default=None,
                        help="comma list: a subset of the split's simulation seeds (default: all of them)")


def sim_seeds_to_run(args, parser) -> list[int]:
    """The simulation seeds a run uses: --sim-seeds (checked to lie in the split), else all of the
    split's seeds (the first one only with --quick)."""
    split_seeds = SIM_SEEDS[args.split]
    seeds = [int(s) for s in args.sim_seeds.split(",")] if args.sim_seeds else list(split_seeds)
    if not set(seeds) <= set(split_seeds):
        parser.error(f"--sim-seeds must be among the {args.split} split's {split_seeds}")
    return seeds[:1] if args.quick and not args.sim_seeds else seeds


def split_info(split: str) -> dict:
    """What a result file records about its split."""
    return {"split": split, "sim_seeds": list(SIM_SEEDS[split]), "sim_n": SIM_N,
            "gz1_half": GZ1_HALVES[split], "gz1_split_salt": GZ1_SPLIT_SALT,
            "gz1_encoder": "trained without labels on the pixels of all GZ1 images (halves A and B); "
                           "probes, kNN, pools and reviews use only this split's half"}


# ------------------------------------------------------------------ source hashes (cache keys)

def source_hash(*patterns: str, base: Path | None = None) -> str:
    """sha256 over the relative paths and bytes of the files matching ``patterns`` (globs under
    ``base``, default ML_DIR), sorted: changes whenever that code changes."""
    base = ML_DIR if base is None else base
    files = sorted({p for pattern in patterns for p in base.glob(pattern) if p.is_file()})
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ml_source_hash() -> str:
    """Hash of every ml/**/*.py: part of the key of every cached encoder and embedding."""
    return source_hash("**/*.py")


def sim_source_hash() -> str:
    """Hash of the simulator (ml/simulate*.py, ml/sim_*.py, ml/vocab.py): part of the sim cache key."""
    return source_hash("simulate*.py", "sim_*.py", "vocab.py")


def decode_source_hash() -> str:
    """Hash of the ingest pixel decoder the GZ1 cache uses."""
    return source_hash("webapp/catalog/services/ingest_pixels.py", base=ROOT)


@dataclass
class GZ1Data:
    images: np.ndarray  # (N, 3, size, size) float32 RGB in [0, 1]
    classes: np.ndarray  # (N,) int64 Galaxy Zoo 1 leaf class, 0–5 (ml.vocab.GZ1_CLASSES)
    objids: np.ndarray  # (N,) SDSS objID strings

    @property
    def task3(self) -> np.ndarray:
        """0 elliptical, 1 spiral (GZ1 classes 1 and 2), 2 edge-on; -1 for artifacts and mergers."""
        return task3_from_gz1(self.classes)


@dataclass
class SimData:
    images: dict  # survey name ("sdss_like", "des_like") -> (N, 3, 64, 64) float32 nanomaggies/pixel
    truth: dict  # column -> (N,) array (class, rarity, mag_r, g_r, ...), from ml.simulate.truth_table

    @property
    def task3(self) -> np.ndarray:
        names = list(vocab.TASK3_CLASSES)
        return np.array([names.index(c) if c in names else -1 for c in self.truth["class"]], dtype=np.int64)


def task3_from_gz1(classes: np.ndarray) -> np.ndarray:
    lookup = {0: 0, 1: 1, 2: 1, 3: 2}
    return np.array([lookup.get(int(c), -1) for c in classes], dtype=np.int64)


def _say(message: str) -> None:
    print(f"[datasets] {message}", file=sys.stderr, flush=True)


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


# ------------------------------------------------------------------ real SDSS (Galaxy Zoo 1)

def load_gz1(size: int = 64, crop_fraction: float = GZ1_CROP, limit: int | None = None) -> GZ1Data | None:
    """The 6,664 GZ1 SDSS cutouts decoded like the gz1_sdss ingest preset; None if the data is absent."""
    table = GZ1_DIR / "smallCSV_class.csv"
    if not table.exists():
        return None
    cache = CACHE / f"gz1-{size}-{crop_fraction}-{decode_source_hash()}.npz"
    if not cache.exists():
        _decode_gz1(table, size, crop_fraction, cache)
    with np.load(cache) as data:
        out = GZ1Data(data["images"], data["classes"], data["objids"])
    if limit is not None:
        out = GZ1Data(out.images[:limit], out.classes[:limit], out.objids[:limit])
    return out


def _decode_gz1(table: Path, size: int, crop_fraction: float, cache: Path) -> None:
    from webapp.catalog.services.ingest_pixels import IngestError, decode_rgb  # PIL + numpy only

    rows = [line.strip().split(",") for line in table.read_text().splitlines()[1:] if line.strip()]
    images, classes, objids = [], [], []
    started = time.monotonic()
    for i, (objid, cls) in enumerate(rows):
        try:
            images.append(decode_rgb(GZ1_DIR / "images" / f"{objid}.jpeg", size, crop_fraction))
        except IngestError as exc:
            _say(f"skipping {objid}: {exc}")
            continue
        classes.append(int(cls))
        objids.append(objid)
        if (i + 1) % 1000 == 0:
            _say(f"decoded {i + 1:,} of {len(rows):,} GZ1 JPEGs ({time.monotonic() - started:.0f} s)")
    _save_npz(cache, images=np.stack(images).astype(np.float32), classes=np.array(classes, np.int64),
              objids=np.array(objids))


# ------------------------------------------------------------------ simulated surveys

def load_sim(n: int = SIM_N, seed: int = 0, processes: int = 2) -> SimData:
    """One simulated population seen by the SDSS-like and DES-like surveys (cached)."""
    from ml import simulate

    cache = CACHE / f"sim-{n}-{seed}-{sim_source_hash()}.npz"
    if not cache.exists():
        _say(f"simulating {n} galaxies in two surveys (about {n * 0.06 / processes:.0f} s)…")
        cfg = simulate.SimConfig(n=n, seed=seed, processes=processes)
        result = simulate.simulate_surveys(cfg)
        truth = simulate.truth_table(result.catalogue)
        _save_npz(cache, **{f"img_{k}": v for k, v in result.images.items()},
                  **{f"truth_{k}": v for k, v in truth.items()})
    with np.load(cache) as data:
        images = {k[4:]: data[k] for k in data.files if k.startswith("img_")}
        truth = {k[6:]: data[k] for k in data.files if k.startswith("truth_")}
    return SimData(images, truth)


# ------------------------------------------------------------------ SSL embeddings

def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def ssl_cache_key(name: str, train_images: np.ndarray, config: TrainConfig, image_kind: str, bands) -> str:
    """Key of a cached encoder: the name, config, image kind, bands, a sample of the training
    pixels, their count, and the hash of the ml/ source (so older code is never reused)."""
    return _digest(name, asdict(config), image_kind, list(bands), train_images[:: max(1, len(train_images) // 64)],
                   len(train_images), ml_source_hash())


def ssl_embeddings(name: str, train_images: np.ndarray, embed: dict, config: TrainConfig,
                   image_kind: str, bands=("g", "r", "i"), verbose: bool = True) -> dict:
    """Train an encoder on ``train_images`` with ``config`` (or reuse the cached one) and embed
    each array of ``embed`` ({key: (N, C, H, W)}) -> {key: (N, D) float32 unit vectors}.

    Cached in var/bench/ssl/<name>-<hash>.{pt,npz}; the hash covers the training pixels,
    the config, the ml/ source (ssl_cache_key) and the embedded pixels. Returns also "_meta": training seconds and epochs.
    """
    from ml.checkpoints import load_encoder
    from ml.embed import embed_array
    from ml.sources import ArraySource
    from ml.train import train

    key = ssl_cache_key(name, train_images, config, image_kind, bands)
    checkpoint = CACHE / "ssl" / f"{name}-{key}.pt"
    vectors_key = _digest(key, *[(k, v.shape, v[:: max(1, len(v) // 64)]) for k, v in sorted(embed.items())])
    vectors_path = CACHE / "ssl" / f"{name}-{key}-{vectors_key}.npz"
    if vectors_path.exists():
        with np.load(vectors_path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files if k != "_meta"}
            out["_meta"] = json.loads(str(data["_meta"]))
        return out
    meta = {"config": asdict(config), "checkpoint": str(checkpoint), "ml_source_hash": ml_source_hash()}
    started = time.monotonic()

    def report(event):
        if verbose and event.epoch_end:
            _say(f"{name}: epoch {event.epoch}/{event.epochs} loss {event.epoch_loss:.3f} "
                 f"({time.monotonic() - started:.0f} s)")

    result = train(ArraySource(train_images), config, checkpoint, image_kind=image_kind, bands=list(bands),
                   on_step=report)
    meta.update(train_seconds=result.seconds, epochs=result.epochs_done, n_train=len(train_images),
                final_loss=result.epoch_losses[-1][1] if result.epoch_losses else None)
    model, preprocess, _ = load_encoder(checkpoint)
    out = {k: embed_array(model, preprocess, v) for k, v in embed.items()}
    _save_npz(vectors_path, **out, _meta=np.array(json.dumps(meta)))
    out["_meta"] = meta
    return out


def recipe(base: TrainConfig, quick: bool = False, **overrides) -> TrainConfig:
    config = replace(base, **overrides)
    return replace(config, epochs=min(config.epochs, QUICK_EPOCHS)) if quick else config


def gz1_embeddings(quick: bool = False, size: int = 64, **overrides) -> np.ndarray | None:
    """SSL vectors for every load_gz1(size) row (trained on all of them: no labels are used)."""
    gz1 = load_gz1(size=size)
    if gz1 is None:
        return None
    config = recipe(GZ1_RECIPE, quick, **overrides)
    return ssl_embeddings("gz1", gz1.images, {"gz1": gz1.images}, config, "rgb", ("R", "G", "B"))["gz1"]


def sim_embeddings(n: int = SIM_N, seed: int = 0, quick: bool = False, **overrides) -> dict:
    """{survey: (N, D)} for both simulated surveys of population ``seed``, encoder trained on the
    SDSS-like images of that population only (no labels)."""
    sim = load_sim(n, seed)
    config = recipe(SIM_RECIPE, quick, **overrides)
    out = ssl_embeddings(f"sim{n}-{seed}", sim.images["sdss_like"], sim.images, config, "flux")
    return {k: v for k, v in out.items() if k != "_meta"}
