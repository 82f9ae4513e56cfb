"""Active learning: accuracy against label count for each query strategy and random, 3 seeds.

    python benchmarks/active_learning_synthetic.py            # N=20,000 synthetic, 3 seeds
    python benchmarks/active_learning_synthetic.py --quick    # N=5,000, 1 seed, fewer strategies
    python benchmarks/active_learning_synthetic.py --round-timing   # one whole round at 20k and 100k galaxies
    python benchmarks/active_learning_synthetic.py --embeddings emb.npy --labels y.npy
                                                              # real embeddings (e.g. SDSS GZ1)

Synthetic embeddings: 6 classes with the Galaxy Zoo 1 shares of
shared/data/gz1_sdss/smallCSV_class.csv (70% ellipticals ... 0.8% artifacts), each class a
few Gaussian sub-clusters in a 16-d latent space mapped linearly to D=64 plus noise; the
clockwise and anticlockwise spirals sit close together (a hard pair), mergers overlap
ellipticals. The oracle answers with the true class. Accuracy and balanced accuracy are
measured on a held-out random 20% that is never queried.

Headline: labels each strategy needs to reach random's accuracy at 500 labels (project goal
on real SDSS: >= 50% fewer). Also measured: head retrain + predict time at N=100,000, D=128
(--timing-only runs just that). Writes benchmarks/results/active_learning_synthetic.json and
a PNG plot (PIL; matplotlib is not installed) next to it.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from common import RESULTS_DIR, machine_info, print_table, write_result  # noqa: F401  (sets sys.path)
from ml.active import labels_saved, needs_member_probs, simulate_active_learning
from ml.heads import HeadConfig, fit_classifier

GZ1_SHARES = (0.697, 0.062, 0.065, 0.150, 0.008, 0.017)   # 4645/414/436/998/56/115 of 6664
SUBCLUSTERS = (4, 3, 3, 3, 2, 2)                          # "looks" per class
STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "diverse", "coreset")
QUICK_STRATEGIES = ("random", "entropy", "bald", "diverse")


def synthetic_embeddings(n: int, d: int = 64, latent: int = 16, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 clustered embeddings and (n,) int64 classes with GZ1 class shares.

    Scales were tuned so a linear probe gets ~0.87 at 100 random labels, ~0.92 at 500 and
    ~0.95 with 16,000 (mid-way between trivially separable and hopeless)."""
    rng = np.random.default_rng(seed)
    k = len(GZ1_SHARES)
    class_centres = rng.normal(scale=0.7, size=(k, latent))
    class_centres[2] = class_centres[1] + rng.normal(scale=0.22, size=latent)  # cw ~ acw spirals
    class_centres[5] = class_centres[0] + rng.normal(scale=0.39, size=latent)  # mergers ~ ellipticals
    y = rng.choice(k, size=n, p=np.asarray(GZ1_SHARES) / sum(GZ1_SHARES))
    z = np.empty((n, latent))
    for c in range(k):
        subs = class_centres[c] + rng.normal(scale=0.44, size=(SUBCLUSTERS[c], latent))
        widths = rng.uniform(0.4, 0.9, SUBCLUSTERS[c])
        rows = np.flatnonzero(y == c)
        sub = rng.choice(SUBCLUSTERS[c], size=len(rows), p=rng.dirichlet(np.full(SUBCLUSTERS[c], 2.0)))
        z[rows] = subs[sub] + widths[sub, None] * rng.normal(size=(len(rows), latent))
    mix = rng.normal(size=(latent, d)) / np.sqrt(latent)
    x = z @ mix + 0.6 * rng.normal(size=(n, d))
    return x.astype(np.float32), y.astype(np.int64)


def run_curves(x, y, strategies, seeds, cfg: HeadConfig, initial, batch, budget, initial_strategy):
    """{strategy: [curve per seed]}, each curve [(n_labels, acc, bal_acc)]; prints progress lines.
    ``seeds``: a count (seeds 0..n-1) or a list of seeds."""
    curves: dict[str, list] = {}
    for seed in (range(seeds) if isinstance(seeds, int) else seeds):
        eval_idx = np.random.default_rng(1000 + seed).choice(len(x), len(x) // 5, replace=False)
        for strategy in strategies:
            t0 = time.perf_counter()
            curve = simulate_active_learning(
                x, y, strategy, seed, initial, batch, budget, dataclasses.replace(cfg, seed=seed),
                eval_idx, initial_strategy=initial_strategy)
            curves.setdefault(strategy, []).append(curve)
            print(f"seed {seed} {strategy:17s} acc@{curve[-1][0]} {curve[-1][1]:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return curves


def mean_curve(runs: list) -> np.ndarray:
    """(R, 3): label counts, mean accuracy, mean balanced accuracy over seeds."""
    arr = np.asarray(runs, dtype=np.float64)   # (S, R, 3)
    return arr.mean(axis=0)


def summarise(curves: dict, at_labels: int) -> list[dict]:
    """Per strategy: accuracy at the budget and labels saved against random, per seed (then
    averaged) and on the seed-mean curves. Random against itself shows the noise level: a
    noisy curve first touches its own value at 500 labels earlier than 500."""
    rows = []
    for strategy, runs in curves.items():
        saved = [labels_saved(c, b, at_labels) for c, b in zip(runs, curves["random"])]
        fractions = [s["fraction_saved"] for s in saved]
        mc = mean_curve(runs)
        at = mc[mc[:, 0] <= at_labels][-1]
        pooled = labels_saved([tuple(r) for r in mc], [tuple(r) for r in mean_curve(curves["random"])],
                              at_labels)   # on seed-mean curves: less noisy than per seed
        rows.append({"strategy": strategy, f"acc@{int(at[0])}": at[1], f"bal_acc@{int(at[0])}": at[2],
                     f"acc@{int(mc[-1, 0])}": mc[-1, 1],
                     "labels_to_random@%d" % at_labels: [s["labels_needed"] for s in saved],
                     "fraction_saved_mean": (float(np.mean(fractions)) if None not in fractions else None),
                     "seeds_reaching": sum(f is not None for f in fractions),
                     "fraction_saved_of_mean_curves": pooled["fraction_saved"]})
    return rows


COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34)]


def plot_png(curves: dict, path, title: str) -> None:
    """Two panels (accuracy, balanced accuracy vs labels), mean over seeds, drawn with PIL."""
    w, h, pad = 560, 420, 60
    img = Image.new("RGB", (2 * w, h + 40), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 8), title, fill="black")
    means = {s: mean_curve(r) for s, r in curves.items()}
    x_max = max(m[-1, 0] for m in means.values())
    for panel, (col, name) in enumerate([(1, "accuracy"), (2, "balanced accuracy")]):
        lo = min(m[:, col].min() for m in means.values())
        lo = np.floor(lo * 10) / 10
        ox = panel * w
        def to_px(nl, v):
            return (ox + pad + (w - 2 * pad) * nl / x_max, 30 + h - pad - (h - 2 * pad) * (v - lo) / (1 - lo))
        draw.rectangle([to_px(0, 1.0), to_px(x_max, lo)], outline="black")
        for t in np.linspace(lo, 1.0, 6):
            px = to_px(0, t)
            draw.text((px[0] - 34, px[1] - 6), f"{t:.2f}", fill="black")
        for t in np.linspace(0, x_max, 6):
            px = to_px(t, lo)
            draw.text((px[0] - 10, px[1] + 6), f"{t:.0f}", fill="black")
        draw.text((ox + w / 2 - 30, h + 20), "labels", fill="black")
        draw.text((ox + pad + 5, 35), name, fill="black")
        for i, (s, m) in enumerate(means.items()):
            colour = COLOURS[i % len(COLOURS)]
            draw.line([to_px(nl, v) for nl, v in zip(m[:, 0], m[:, col])], fill=colour, width=2)
            if panel == 0:
                draw.text((ox + w - pad - 120, 30 + h - pad - 14 * (len(means) - i) - 6), s, fill=colour)
    img.save(path)


def retrain_timing(n: int = 100_000, d: int = 128, k: int = 6, threads: int = 2) -> list[dict]:
    """Seconds to fit a head and predict for all n galaxies, for each head kind."""
    x, y = synthetic_embeddings(n, d=d, seed=7)
    rows = []
    for kind in ("logistic", "mlp_ensemble"):
        cfg = HeadConfig(kind=kind, threads=threads)
        for n_labels in (1_000, n):
            t0 = time.perf_counter()
            head = fit_classifier(x[:n_labels], y[:n_labels], k, cfg, x_val=x[-2000:], y_val=y[-2000:], x_all=x)
            t1 = time.perf_counter()
            head.predict_proba(x)
            t2 = time.perf_counter()
            head.member_probs(x)
            t3 = time.perf_counter()
            rows.append({"head": kind, "n_labels": n_labels, "n_predict": n, "d": d,
                         "fit_s": t1 - t0, "predict_all_s": t2 - t1, "member_probs_s": t3 - t2,
                         "total_s": t3 - t0, "threads": threads})
    return rows


def round_timing(n: int, n_labels: int = 1000, head: str = "mlp_ensemble", database_url: str | None = None) -> dict:
    """One labeling round end to end at n galaxies, as the cpu worker runs it: consensus,
    fit + temperature, predict all n with uncertainty, write the columnar prediction files (no per-galaxy rows),
    refill the queue. A scratch Django site (SQLite in a temp dir unless database_url)."""
    import os
    import tempfile
    scratch = tempfile.mkdtemp(prefix="round-timing-")
    os.environ.update({"DJANGO_SETTINGS_MODULE": "webapp.settings", "LATENTSKY_DATA_DIR": scratch,
                       "DATABASE_URL": database_url or f"sqlite:///{scratch}/db.sqlite3", "LOG_LEVEL": "WARNING"})
    import django
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from webapp.catalog.models import Galaxy, Survey
    from webapp.embeddings.models import EmbeddingSet, Encoder
    from webapp.embeddings.services.vectors import write_embedding_set
    from webapp.jobs.services import execute_job
    from webapp.labeling.models import Label, Task
    from webapp.labeling.services import queue, rounds, store

    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    x, y = synthetic_embeddings(n, d=128, seed=7)
    survey = Survey.objects.create(name=f"timing {n} {head}", slug=f"timing-{n}-{head}-{os.getpid()}", bands=["g", "r", "i"],
                                   status="ready", n_galaxies=n)
    Galaxy.objects.bulk_create([Galaxy(survey=survey, source_id=f"T{i}", ra=i * 1e-3, dec=0.0, image_index=i)
                                for i in range(n)], batch_size=5000)
    ids = np.array(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("pk", flat=True))
    es = EmbeddingSet.objects.create(encoder=Encoder.objects.create(name="timing", method="synthetic"))
    es.surveys.set([survey])
    write_embedding_set(es, ids, x)
    user = User.objects.create(username=f"timer-{n}-{head}")
    task = Task.objects.create(name=f"timing {n} {head}", classes=[{"name": str(k)} for k in range(6)],
                               embedding_set=es, head_config={"kind": head}, strategy="margin", batch_size=20)
    task.surveys.set([survey])
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = queue.next_items(task, user, 10)
    cold = time.perf_counter() - t0
    Label.objects.bulk_create([Label(task=task, galaxy_id=int(ids[i]), user=user, class_index=int(y[i]))
                               for i in range(n_labels)])
    rnd = rounds.start_round(task, user)
    t0 = time.perf_counter()
    execute_job(rnd.job_id, worker="timing")
    round_s = time.perf_counter() - t0
    rnd.refresh_from_db()
    t0 = time.perf_counter()
    nxt = queue.next_items(task, User.objects.create(username=f"timer2-{n}-{head}"), 10)
    next_s = time.perf_counter() - t0
    return {"n_galaxies": n, "n_labels": n_labels, "head": head, "database": "sqlite" if not database_url else "postgres",
            "setup_s": setup, "cold_start_refill_s": cold, "round_s": round_s, "round_status": rnd.status,
            "round_accuracy": rnd.metrics.get("accuracy"),
            "predictions": int(np.isfinite(np.asarray(store.load_predictions(rnd)["uncertainty"])).sum()),
            "next_items_s": next_s, "items": len(first) + len(nxt), "model_version": rnd.model_version}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--head", default="mlp_ensemble", choices=["logistic", "mlp_ensemble"])
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--at-labels", type=int, default=500, help="random's label count to match")
    ap.add_argument("--initial-strategy", default="random", choices=["random", "cold_start"])
    ap.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    ap.add_argument("--embeddings", default=None, help="real (N, D) float32 .npy instead of synthetic")
    ap.add_argument("--labels", default=None, help="(N,) int .npy matching --embeddings")
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--round-timing", action="store_true",
                    help="time one whole labeling round (Django, columnar files, queue refill)")
    ap.add_argument("--database-url", default=None, help="--round-timing on this database (default: scratch SQLite)")
    ap.add_argument("--name", default=None, help="result name (default from the mode)")
    args = ap.parse_args()
    torch.set_num_threads(1)    # shared 2-core machine: one thread per experiment
    t0 = time.perf_counter()
    if args.round_timing:
        rows = [round_timing(n, head=head, database_url=args.database_url)
                for n in ((20_000,) if args.quick else (20_000, 100_000)) for head in ("logistic", "mlp_ensemble")]
        print_table(rows, ["n_galaxies", "n_labels", "head", "database", "cold_start_refill_s", "round_s",
                           "predictions", "next_items_s", "round_accuracy"])
        write_result(args.name or ("active_learning_round_timing" + ("_quick" if args.quick else "")),
                     {"rounds": rows, "note": "first round in a fresh process includes torch's one-time imports"})
        return
    timing = retrain_timing(threads=2) if not args.quick else retrain_timing(20_000, threads=2)
    print_table(timing, ["head", "n_labels", "n_predict", "fit_s", "predict_all_s", "member_probs_s", "total_s"])
    if args.timing_only:
        write_result(args.name or "active_learning_timing", {"timing": timing})
        return
    if args.embeddings:
        x, y = np.load(args.embeddings).astype(np.float32), np.load(args.labels).astype(np.int64)
        data = {"source": args.embeddings, "n": len(x), "d": x.shape[1]}
    else:
        n = args.n or (5_000 if args.quick else 20_000)
        x, y = synthetic_embeddings(n)
        data = {"source": "synthetic_embeddings", "n": n, "d": x.shape[1], "shares": GZ1_SHARES,
                "subclusters": SUBCLUSTERS}
    strategies = tuple(args.strategies.split(",")) if args.strategies else (
        QUICK_STRATEGIES if args.quick else STRATEGIES)
    if args.head == "logistic":
        strategies = tuple(s for s in strategies if not needs_member_probs(s))  # BALD needs members
    seeds = args.seeds or (1 if args.quick else 3)
    cfg = HeadConfig(kind=args.head, threads=1)
    curves = run_curves(x, y, strategies, seeds, cfg, args.initial, args.batch, args.budget,
                        args.initial_strategy)
    rows = summarise(curves, args.at_labels)
    print_table(rows, list(rows[0].keys()))
    name = args.name or ("active_learning_synthetic_quick" if args.quick else "active_learning_synthetic")
    png = RESULTS_DIR / f"{name}.png"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot_png(curves, png, f"{name}: {args.head} head, mean of {seeds} seed(s), N={len(x)}")
    path = write_result(name, {
        "quick": args.quick, "data": data, "head_config": dataclasses.asdict(cfg),
        "loop": {"initial": args.initial, "batch": args.batch, "budget": args.budget,
                 "initial_strategy": args.initial_strategy, "eval_fraction": 0.2, "seeds": seeds},
        "summary": rows, "curves": curves, "timing": timing, "plot": png.name,
        "seconds": time.perf_counter() - t0})
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
