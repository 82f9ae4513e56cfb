"""Unsupervised anomaly scores on galaxy embeddings.

Scores (HIGHER = more anomalous, one float per galaxy row):
  iforest  isolation forest path length (sklearn), negated.
  knn      mean distance to the k nearest other galaxies (faiss; exact below 5e4 rows).
  lof      local outlier factor computed from the same faiss kNN graph (the sklearn formula,
           checked against sklearn's LocalOutlierFactor in the tests) so it scales to 1e6.
  gmm      negative log-likelihood under a Gaussian mixture fitted in a PCA space.
`combine_scores` rank-normalises each score to [0, 1] and averages (or maxes) them.

Which combination finds more: benchmarks/anomaly.py on SSL and PCA embeddings of simulated
surveys and real SDSS GZ1 (results: benchmarks/results/anomaly.json), and
benchmarks/anomaly_scores.py on toy embeddings with tight planted groups, where kNN, LOF and
GMM miss groups larger than k ("masking"; results: benchmarks/results/anomaly_scores.json).
"mean" is the default because it led on the realistic embeddings.

Learning what a person finds interesting from their feedback is ml/ranking.py.

Bounded memory (issue 14): `score_all` never holds a normalised copy of all N rows.  The
isolation forest and the mixture are fitted on a seeded sample (all rows when N <= the
sample size, which gives exactly the old scores) and every row is scored block by block;
the kNN graph comes from the same index kind as similarity search (exact, IVF, or above
IndexConfig.compressed_above the IVF-PQ index re-ranked from float16 rows), queried
`knn_block` rows at a time.

Above `knn_reference_max` rows the kNN and LOF neighbours come from a seeded reference sample
of that many rows (LOF's "novelty" form, as sklearn's LocalOutlierFactor(novelty=True): the
sample's own graph gives k-distances and densities, every row is scored against it).  The
whole-set graph costs O(N * N / nlist) with nlist capped, i.e. hours at 10^7 on 2 cores; against
a fixed sample it is O(N).  A sample at rate f sees each row's neighbourhood at radius of its
~k/f-th nearest galaxy: a smoother density estimate, and a tight group of fewer than k/f
members is no longer masked by its own members.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from ml.memmaps import release
from ml.progress import Progress
from ml.search import IndexConfig, SearchIndex, faiss_threads, prepare_vectors

METHODS = ("iforest", "knn", "lof", "gmm")


@dataclass
class AnomalyConfig:
    methods: tuple[str, ...] = METHODS  # which scores score_all computes
    metric: str = "cosine"         # vectors are L2-normalised first, the geometry of search and UMAP
    iforest_trees: int = 200       # more trees = steadier scores; 200 is past the knee
    iforest_max_samples: int = 256  # Liu et al. 2008: small sub-samples isolate anomalies best
    knn_k: int = 10                # neighbours averaged for the knn score
    lof_k: int = 20                # sklearn's LocalOutlierFactor default n_neighbors
    knn_exact_below: int = 50_000  # exact kNN graph below this N, IVF index (ml.search) above
    gmm_components: int = 10       # mixture components (galaxy "types")
    gmm_pca_dim: int = 16          # full covariances in 16-d stay well conditioned
    gmm_fit_max: int = 100_000     # rows sampled to fit the mixture; all rows are scored
    iforest_fit_max: int = 100_000  # rows sampled to fit the forest (each tree still draws iforest_max_samples)
    knn_block: int = 65_536        # rows queried / scored per step (bounds the working memory)
    knn_compressed_above: int = 1_000_000  # IVF-PQ + float16 re-rank from this N, as IndexConfig.compressed_above
    knn_reference_max: int = 1_000_000  # above this N, kNN/LOF neighbours come from a seeded sample of this
                                        # many rows (module doc): O(N) instead of O(N^2 / nlist)
    gmm_min_members: int = 20      # drop components owning fewer rows: a lone far outlier would
                                   # otherwise get its own tight component and look *dense*
    combine: str = "mean"          # for callers: combine_scores(score_all(...), cfg.combine); "mean" or
                                   # "max" (see the module doc and benchmarks/results/anomaly.json)
    seed: int = 0


def reference_rows(n: int, cfg: AnomalyConfig) -> np.ndarray | None:
    """Sorted rows of the seeded kNN reference sample, or None when every row is the reference."""
    if n <= cfg.knn_reference_max:
        return None
    return np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.knn_reference_max, replace=False))


def knn_graph(x: np.ndarray, k: int, metric: str, exact_below: int = 50_000, block: int = 65_536,
              index_cfg: IndexConfig | None = None, index: SearchIndex | None = None,
              progress: Progress | None = None, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest OTHER rows of every row. (N, D) -> distances (N, k) float32, ids (N, k).

    x may be a read-only memmap of raw vectors.  ``reference``: sorted rows of x to search
    among (see reference_rows); ids are then positions in ``reference``, and a reference row
    is not its own neighbour.  ``index``: a SearchIndex already built over x (or over the
    reference rows) in the same metric (the set's saved search index: no second build);
    otherwise one of the kind ml.search picks for its size (`index_cfg`, default IndexConfig
    with `exact_below`) is built.  Queried `block` rows at a time.  Distances follow ml.search
    (cosine distance, or Euclidean for "l2").  Uses every core.
    """
    n = len(x)
    m = n if reference is None else len(reference)
    k = min(k, m - 1)
    cfg = index_cfg or IndexConfig(metric=metric, exact_below=exact_below, query_threads=0, tune_k=k + 1)
    if index is not None and (index.ntotal != m or index.cfg.metric != metric):
        raise ValueError(f"the given index holds {index.ntotal} rows in metric {index.cfg.metric!r}; "
                         f"the reference is {m} rows in {metric!r}")
    dist_out = np.empty((n, k), dtype=np.float32)
    ids_out = np.empty((n, k), dtype=np.int64)
    with faiss_threads(0):  # a batch job: all cores, then back to the caller's setting
        if index is None:
            index = SearchIndex.build(x if reference is None else np.asarray(x[reference]), cfg)
        for start in range(0, n, block):
            stop = min(n, start + block)
            dist, ids = index.query(x[start:stop], k + 1)   # (B, k+1), usually self first
            release(x, start, stop)                          # streamed: not left in this job's RSS
            if progress:
                progress(stop, n, f"nearest neighbours of {stop:,} of {n:,} galaxies")
            rows = np.arange(start, stop)
            if reference is None:
                self_at = rows
            else:                                            # a row's position in the reference, or -1
                at = np.minimum(np.searchsorted(reference, rows), m - 1)
                self_at = np.where(reference[at] == rows, at, -1)
            is_self = ids == self_at[:, None]
            is_self[~is_self.any(axis=1), -1] = True        # self missing: drop the farthest
            keep = ~is_self
            dist_out[start:stop] = dist[keep].reshape(-1, k)
            ids_out[start:stop] = ids[keep].reshape(-1, k)
    return dist_out, ids_out


def knn_score(dist: np.ndarray, k: int) -> np.ndarray:
    """Mean distance to the k nearest neighbours. (N, >=k) -> (N,)."""
    return dist[:, :k].mean(axis=1)


def lof_score(dist: np.ndarray, ids: np.ndarray, k: int, reference: np.ndarray | None = None) -> np.ndarray:
    """Local outlier factor (Breunig et al. 2000) from a kNN graph; ~1 inliers, >1 outliers.

    Same formula as sklearn: reach(a, b) = max(k-dist(b), d(a, b)),
    lrd(a) = 1 / (mean reach(a, .) + 1e-10), lof(a) = mean lrd(neighbours) / lrd(a).
    ``reference``: the graph's ids are positions in these rows (knn_graph with a reference);
    the reference rows' own graph gives the k-distances and densities of the neighbours.
    """
    dist, ids = dist[:, :k], ids[:, :k]                    # (N, k)
    ref = slice(None) if reference is None else reference
    k_distance = dist[ref, -1]                              # (M,)
    reach = np.maximum(dist, k_distance[ids])               # (N, k)
    lrd = 1.0 / (reach.mean(axis=1) + 1e-10)                # (N,)
    return lrd[ref][ids].mean(axis=1) / lrd


def _blocks(x: np.ndarray, cfg: AnomalyConfig):
    """(start, prepared rows (B, D) float32) over x in cfg.knn_block steps."""
    for start in range(0, len(x), cfg.knn_block):
        yield start, prepare_vectors(x[start:start + cfg.knn_block], cfg.metric)


def _per_block(x: np.ndarray, cfg: AnomalyConfig, score) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float64)
    for start, rows in _blocks(x, cfg):
        out[start:start + len(rows)] = score(rows)
        release(x, start, start + len(rows))
    return out


def iforest_score(x: np.ndarray, cfg: AnomalyConfig) -> np.ndarray:
    """Fitted on a seeded sample of cfg.iforest_fit_max rows (every row when N is smaller),
    scored block by block. x raw or prepared (N, D), may be a memmap."""
    from sklearn.ensemble import IsolationForest

    n = len(x)
    fit_rows = (np.arange(n) if n <= cfg.iforest_fit_max
                else np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.iforest_fit_max, replace=False)))
    forest = IsolationForest(n_estimators=cfg.iforest_trees, random_state=cfg.seed,
                             max_samples=min(cfg.iforest_max_samples, len(fit_rows)))
    forest.fit(prepare_vectors(x[fit_rows], cfg.metric))
    return _per_block(x, cfg, lambda rows: -forest.score_samples(rows))


def gmm_score(x: np.ndarray, cfg: AnomalyConfig) -> np.ndarray:
    """Negative log-likelihood (nats, in PCA space) under a pruned Gaussian mixture, fitted on
    a sample of cfg.gmm_fit_max rows and scored block by block."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(cfg.seed)
    fit_rows = rng.choice(len(x), min(cfg.gmm_fit_max, len(x)), replace=False)
    pca = PCA(n_components=min(cfg.gmm_pca_dim, x.shape[1], len(fit_rows)), random_state=cfg.seed)
    order = np.argsort(fit_rows)                            # read the memmap in row order, fit in draw order
    fit_x = np.empty((len(fit_rows), x.shape[1]), dtype=np.float32)
    fit_x[order] = prepare_vectors(x[fit_rows[order]], cfg.metric)
    z_fit = pca.fit_transform(fit_x)                        # (F, P)
    gm = GaussianMixture(n_components=min(cfg.gmm_components, len(fit_rows)),
                         covariance_type="full", reg_covar=1e-4, random_state=cfg.seed)
    members = np.bincount(gm.fit(z_fit).predict(z_fit), minlength=gm.n_components)
    keep = members >= min(cfg.gmm_min_members, members.max())
    gm.weights_ = gm.weights_[keep] / gm.weights_[keep].sum()
    gm.means_, gm.covariances_ = gm.means_[keep], gm.covariances_[keep]
    gm.precisions_cholesky_ = gm.precisions_cholesky_[keep]
    gm.n_components = int(keep.sum())
    return _per_block(x, cfg, lambda rows: -gm.score_samples(pca.transform(rows)))


def score_all(vectors: np.ndarray, cfg: AnomalyConfig | None = None,
              progress: Progress | None = None, index: SearchIndex | None = None) -> dict[str, np.ndarray]:
    """Every score in cfg.methods, each (N,) float32 with HIGHER = more anomalous.

    vectors (N, D) raw, may be a read-only memmap: rows are normalised a block at a time.
    index: the vectors' saved SearchIndex (same metric), used for the kNN graph instead of
    building another (see knn_graph)."""
    cfg = cfg or AnomalyConfig()
    x = vectors                                            # (N, D), never copied whole
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown anomaly methods {sorted(unknown)}; choose from {METHODS}")
    total, done, out = len(cfg.methods), 0, {}
    graph = None
    reference = reference_rows(len(x), cfg)
    if reference is not None:
        index = None                                       # the saved index holds every row
    for name in cfg.methods:
        if progress:
            progress(done, total, f"anomaly score: {name}")
        if name in ("knn", "lof") and graph is None:
            k = max(cfg.knn_k, cfg.lof_k)
            index_cfg = IndexConfig(metric=cfg.metric, exact_below=cfg.knn_exact_below, query_threads=0,
                                    tune_k=k + 1, seed=cfg.seed,
                                    # a reference sample stays IVF-Flat: 0.5 GB at 10^6 x 128, no re-rank file
                                    compressed_above=cfg.knn_compressed_above if reference is None else 0)
            graph = knn_graph(x, k, cfg.metric, block=cfg.knn_block, index_cfg=index_cfg, index=index,
                              progress=(lambda d, t, m="": progress(done + d / max(t, 1), total, m))
                              if progress else None, reference=reference)
        if name == "iforest":
            out[name] = iforest_score(x, cfg)
        elif name == "knn":
            out[name] = knn_score(graph[0], cfg.knn_k)
        elif name == "lof":
            out[name] = lof_score(graph[0], graph[1], cfg.lof_k, reference)
        elif name == "gmm":
            out[name] = gmm_score(x, cfg)
        out[name] = np.asarray(out[name], dtype=np.float32)
        done += 1
    if progress:
        progress(total, total, "anomaly scores done")
    return out


def rank_normalise(score: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1]: lowest 0, highest 1, ties share their average rank."""
    score = np.asarray(score, dtype=np.float64)
    if len(score) < 2:
        return np.ones(len(score))
    return (rankdata(score, method="average") - 1.0) / (len(score) - 1.0)


def combine_scores(scores: dict[str, np.ndarray], how: str = "mean") -> np.ndarray:
    """One score from several: rank-normalise each to [0, 1], then combine per galaxy.

    Ranks make scores on different scales (path lengths, distances, nats) comparable and
    immune to one detector's extreme values. "mean" (default) rewards agreement between
    detectors, which beat "max" on realistic embeddings (benchmarks/results/anomaly.json);
    "max" surfaces anything any one detector puts at its top, so a detector blind to some
    kind of anomaly cannot bury it (toy planted groups: benchmarks/results/anomaly_scores.json).
    """
    if not scores:
        raise ValueError("no scores to combine")
    ranks = np.stack([rank_normalise(s) for s in scores.values()])  # (S, N)
    if how == "mean":
        return ranks.mean(axis=0)
    if how == "max":
        return ranks.max(axis=0)
    raise ValueError(f"unknown combine {how!r}; use 'mean' or 'max'")
