"""Personalised ranking of anomaly candidates (after Lochner & Bassett 2021, Astronomaly).

`PersonalRanker` / `rank_with_feedback` rank unreviewed galaxies by their unsupervised
anomaly score (ml/anomaly.py) times what this person is predicted to find interesting,
learnt from their 0-5 interest scores and artifact tags; `simulate_review_session` +
`count_interesting` replay a review session with an oracle (benchmarks/anomaly*.py reuse
them; results in benchmarks/results/anomaly.json).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.anomaly import rank_normalise
from ml.progress import Progress
from ml.search import IndexConfig, SearchIndex, faiss_threads, prepare_vectors


@dataclass
class FeedbackConfig:
    metric: str = "cosine"         # geometry for "nearest scored galaxy" (as search and UMAP)
    regressor: str = "knn"         # predicts the person's score: "knn" kernel regression over the nearest
                                   # scored galaxies, or "forest" (Astronomaly's random forest). They find
                                   # about as many (benchmarks/results/anomaly.json, variant "forest") and
                                   # knn is several times faster per session, so knn is the default
    n_neighbours: int = 10         # nearest scored galaxies used by "knn" and shown as explanation
    bandwidth: float = 2.0         # "knn" kernel width, in neighbourhood scales (2 beat 1 and 0.5)
    prior_weight: float = 0.5      # "knn": pseudo-count of the neutral prior (one scored twin outweighs it)
    prior_std: float = 1.5         # "knn": spread of interest where nothing is known (0-5 scale)
    n_trees: int = 100             # "forest": trees (Astronomaly's default)
    max_features: float = 1.0      # "forest": features per split (sklearn default; 0.3 found half as many on a toy)
    alpha: float = 1.0             # "forest": trust fades as exp(-alpha d / neighbourhood); "astronomaly": its alpha
    explore: float = 0.25          # UCB kappa: rank by predicted interest + explore * its uncertainty; unexplored
                                   # regions are explored anyway (neutral prior x anomaly order). 0 and 0.25
                                   # show no clear winner (benchmarks/results/anomaly.json, "knn explore=0")
    formula: str = "boost"         # "boost" (can lift known-interesting regions) or "astronomaly" (only damps)
    neutral_score: float = 3.0     # interest assumed where nothing is known: factor 1 (Astronomaly's "/3")
    max_score: float = 5.0         # top of the person's interest scale
    min_factor: float = 0.1        # keeps anomaly order among predicted-boring galaxies (Astronomaly min_score)
    anomaly_power: float = 0.5     # ranking uses anomaly_rank ** this: < 1 lets feedback outweigh the anomaly
                                   # order (chosen in tuning runs of benchmarks/anomaly.py)
    boost_power: float = 1.0       # ... times interest_factor ** this: > 1 sharpens exploit vs explore
    artifact_score: float = 0.0    # interest learnt for artifact-tagged galaxies, whatever they were scored
    artifact_strength: float = 0.9  # ranking *= 1 - strength * artifact penalty (penalty in [0, 1])
    trust_k: int = 10              # neighbourhood scale = median distance to the trust_k-th nearest neighbour
    trust_sample: int = 500        # rows sampled to measure it (exact search: a few s at 1e6 x 128)
    predict_batch: int = 50_000    # rows per forest prediction batch (bounds the (trees, rows) array)
    seed: int = 0


@dataclass
class RankingExplanation:
    """Why each galaxy ranks where it does; arrays are per galaxy row."""
    neighbour_ids: np.ndarray        # (N, k) rows of the k nearest scored galaxies
    neighbour_scores: np.ndarray     # (N, k) their interest scores, 0-5
    neighbour_artifact: np.ndarray   # (N, k) bool, tagged artifact
    neighbour_distances: np.ndarray  # (N, k) distance (cosine distance for metric "cosine")
    predicted_score: np.ndarray      # (N,) predicted interest of the person, 0-5
    uncertainty: np.ndarray          # (N,) its uncertainty (same units)
    anomaly: np.ndarray              # (N,) rank-normalised unsupervised score, [0, 1]
    artifact_penalty: np.ndarray     # (N,) [0, 1]

    def for_galaxy(self, i: int, n_neighbours: int = 5) -> dict:
        """JSON-able explanation of row i, for the UI's 'why this ranks high'."""
        return {"anomaly": float(self.anomaly[i]),
                "predicted_score": float(self.predicted_score[i]),
                "uncertainty": float(self.uncertainty[i]),
                "artifact_penalty": float(self.artifact_penalty[i]),
                "neighbours": [{"id": int(j), "score": float(s), "artifact": bool(a),
                                "distance": float(d)} for j, s, a, d in list(zip(
                    self.neighbour_ids[i], self.neighbour_scores[i],
                    self.neighbour_artifact[i], self.neighbour_distances[i]))[:n_neighbours]]}


def _nearest(x: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N, k) and positions in `rows` (N, k) of each row's k nearest among x[rows]."""
    cfg = IndexConfig(metric=metric, exact_below=len(rows) + 1, query_threads=0)
    with faiss_threads(0):
        return SearchIndex.build(x[rows], cfg).query(x, k)


def neighbourhood_scale(x: np.ndarray, k: int, n_sample: int, metric: str, seed: int) -> float:
    """Median distance from sampled rows to their k-th nearest other row: the size of a
    typical neighbourhood, the distance over which a person's score says something."""
    rows = np.random.default_rng(seed).choice(len(x), min(n_sample, len(x)), replace=False)
    cfg = IndexConfig(metric=metric, exact_below=len(x) + 1, query_threads=0)
    with faiss_threads(0):
        dist, _ = SearchIndex.build(x, cfg).query(x[rows], min(k + 1, len(x)))  # (S, k+1), self first
    return float(np.median(dist[:, -1]))


def kernel_interest(near_d: np.ndarray, near_y: np.ndarray, h: float, cfg: FeedbackConfig
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-kernel regression of interest over the nearest scored galaxies, shrunk to a
    neutral prior: mean = (p m + sum w y) / (p + sum w), w = exp(-(d / h)^2); variance =
    (p s0^2 + sum w (y - mean)^2) / (p + sum w): large far from scored galaxies (little
    evidence) and where neighbours disagree. (N, k), (N, k) -> mean (N,), std (N,)."""
    w = np.exp(-(near_d.astype(np.float64) / h) ** 2)                  # (N, k)
    total = cfg.prior_weight + w.sum(axis=1)                             # (N,)
    mean = (cfg.prior_weight * cfg.neutral_score + (w * near_y).sum(axis=1)) / total
    var = (cfg.prior_weight * cfg.prior_std ** 2
           + (w * (near_y - mean[:, None]) ** 2).sum(axis=1)) / total
    return mean, np.sqrt(var)


def forest_interest(x: np.ndarray, ids: np.ndarray, target: np.ndarray, cfg: FeedbackConfig
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Random-forest prediction of interest for every row: mean and spread across trees."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=cfg.n_trees, max_features=cfg.max_features,
                                   random_state=cfg.seed, n_jobs=1).fit(x[ids], target)
    mean, std = np.empty(len(x)), np.empty(len(x))
    for s in range(0, len(x), cfg.predict_batch):
        per_tree = np.stack([t.predict(x[s:s + cfg.predict_batch]) for t in forest.estimators_])  # (T, B)
        mean[s:s + cfg.predict_batch], std[s:s + cfg.predict_batch] = per_tree.mean(0), per_tree.std(0)
    return mean, std


def interest_factor(u: np.ndarray, trust: np.ndarray, d1: np.ndarray,
                    cfg: FeedbackConfig) -> np.ndarray:
    """Multiplier on the [0, 1] anomaly score from the (optimistic) predicted interest u (0-5).

    "boost" (default): u_eff = trust u + (1 - trust) neutral, factor = (min_factor + u_eff) /
      (min_factor + neutral): 1 where nothing is known (raw anomaly order: explore), up to
      ~1.6 next to galaxies scored 5 (exploit), ~0.03 next to ones scored 0. The spirit of
      Astronomaly's "anomaly x predicted score / 3". `trust` is 1 for "knn" (its prediction
      already reverts to neutral far from scored galaxies) and decays with distance for "forest".
    "astronomaly": NeighbourScore of Lochner & Bassett 2021 (d1 = distance to the nearest
      scored galaxy): tanh(exp(alpha d1 / mean d1) - 1 + arctanh(min_factor + 0.85 u / max)),
      in (0, 1). It only damps: a region known to be interesting never outranks unexplored
      anomalies of equal score.
    """
    if cfg.formula == "astronomaly":
        f = cfg.min_factor + 0.85 * u / cfg.max_score
        return np.tanh(np.exp(cfg.alpha * d1 / max(d1.mean(), 1e-12)) - 1.0 + np.arctanh(f))
    if cfg.formula == "boost":
        u_eff = trust * u + (1.0 - trust) * cfg.neutral_score
        return (cfg.min_factor + u_eff) / (cfg.min_factor + cfg.neutral_score)
    raise ValueError(f"unknown formula {cfg.formula!r}; use 'boost' or 'astronomaly'")


class PersonalRanker:
    """Ranks unreviewed galaxies by anomaly score x what this person is predicted to find
    interesting (Lochner & Bassett 2021, Astronomaly; see `interest_factor`).

    The prediction u = mean + explore * uncertainty is optimistic (UCB), so regions the
    person has not seen yet keep being explored. Artifact tags add a look-alike penalty.
    Already-scored galaxies get -inf so they sort last. The embedding is normalised and the
    neighbourhood scale measured once, so re-ranking after each batch of reviews is cheap.
    """

    def __init__(self, vectors: np.ndarray, anomaly_score: np.ndarray,
                 cfg: FeedbackConfig | None = None, *, anomaly_is_rank: bool = False,
                 neighbourhood: float | None = None):
        """anomaly_is_rank: anomaly_score already holds percentile ranks in [0, 1] (a caller that
        ranks a bounded pool of a larger set passes the set-wide ranks of the pool's rows).
        neighbourhood: the neighbourhood scale measured elsewhere (e.g. over the whole set with
        its search index); default: measured on ``vectors``."""
        self.cfg = cfg or FeedbackConfig()
        self.x = prepare_vectors(vectors, self.cfg.metric)  # (N, D)
        self.anomaly = (np.asarray(anomaly_score, dtype=np.float64) if anomaly_is_rank
                        else rank_normalise(anomaly_score))  # (N,) in [0, 1]
        self.neighbourhood = (float(neighbourhood) if neighbourhood is not None else
                              neighbourhood_scale(self.x, self.cfg.trust_k, self.cfg.trust_sample,
                                                  self.cfg.metric, self.cfg.seed))

    def rank(self, scored_ids, user_scores, artifact=None) -> tuple[np.ndarray, RankingExplanation]:
        """scored_ids (M,) rows, user_scores (M,) 0-5, artifact (M,) bool -> ((N,), explanation).

        A row scored twice keeps its last score (the person changed their mind)."""
        cfg, n = self.cfg, len(self.x)
        ids = np.asarray(scored_ids, dtype=np.int64).reshape(-1)
        scores = np.asarray(user_scores, dtype=np.float64).reshape(-1)
        art = np.zeros(len(ids), bool) if artifact is None else np.asarray(artifact, bool).reshape(-1)
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
        ids, scores, art = ids[last], scores[last], art[last]
        if len(ids) == 0:
            empty = np.zeros((n, 0))
            return self.anomaly.copy(), RankingExplanation(
                empty.astype(np.int64), empty, empty.astype(bool), empty, np.full(n, cfg.neutral_score),
                np.full(n, np.nan), self.anomaly, np.zeros(n))
        target = np.where(art, np.minimum(scores, cfg.artifact_score), scores)
        near_d, near_j = _nearest(self.x, ids, min(cfg.n_neighbours, len(ids)), cfg.metric)
        d1 = near_d[:, 0].astype(np.float64)
        if cfg.regressor == "knn":
            mean, spread = kernel_interest(near_d, target[near_j], cfg.bandwidth * self.neighbourhood, cfg)
            trust = np.ones(n)
        elif cfg.regressor == "forest":
            mean, spread = forest_interest(self.x, ids, target, cfg)
            trust = np.exp(-cfg.alpha * d1 / max(self.neighbourhood, 1e-12))
        else:
            raise ValueError(f"unknown regressor {cfg.regressor!r}; use 'knn' or 'forest'")
        u = np.clip(mean + cfg.explore * spread, 0.0, cfg.max_score)
        ranking = self.anomaly ** cfg.anomaly_power * interest_factor(u, trust, d1, cfg) ** cfg.boost_power
        penalty = self._artifact_penalty(ids, art, near_d, near_j, d1)
        ranking = ranking * (1.0 - cfg.artifact_strength * penalty)
        ranking[ids] = -np.inf
        return ranking, RankingExplanation(ids[near_j], scores[near_j], art[near_j], near_d,
                                           mean, spread, self.anomaly, penalty)

    def _artifact_penalty(self, ids, art, near_d, near_j, d1) -> np.ndarray:
        """Distance-weighted artifact vote among the nearest scored galaxies, gated by closeness
        to a tagged artifact relative to the neighbourhood scale. (N,) in [0, 1]."""
        if not art.any():
            return np.zeros(len(self.x))
        w = 1.0 / (near_d.astype(np.float64) + 1e-6)              # (N, k)
        vote = (w * art[near_j]).sum(axis=1) / w.sum(axis=1)      # (N,)
        d_art = _nearest(self.x, ids[art], 1, self.cfg.metric)[0][:, 0]
        return vote * np.exp(-d_art / max(self.neighbourhood, 1e-12))


def rank_with_feedback(vectors, anomaly_score, scored_ids, user_scores, artifact=None,
                       cfg: FeedbackConfig | None = None) -> tuple[np.ndarray, RankingExplanation]:
    """One-shot PersonalRanker(vectors, anomaly_score, cfg).rank(...); see PersonalRanker."""
    return PersonalRanker(vectors, anomaly_score, cfg).rank(scored_ids, user_scores, artifact)


def simulate_review_session(vectors, anomaly_score, oracle_fn: Callable, n_reviews: int = 200,
                            retrain_every: int = 10, cfg: FeedbackConfig | None = None,
                            progress: Progress | None = None) -> list[int]:
    """Replay a person reviewing the ranked queue; re-rank after every `retrain_every` reviews.

    oracle_fn(row) -> interest 0-5, or (interest, is_artifact). Returns rows in review order.
    retrain_every >= n_reviews (or cfg-free ranking) reproduces ranking by the raw score.
    """
    ranker = PersonalRanker(vectors, anomaly_score, cfg)
    n_reviews = min(n_reviews, len(ranker.x))
    reviewed, scores, flags = [], [], []
    while len(reviewed) < n_reviews:
        ranking, _ = ranker.rank(reviewed, scores, flags)
        for row in np.argsort(-ranking, kind="stable")[:min(retrain_every, n_reviews - len(reviewed))]:
            answer = oracle_fn(int(row))
            score, is_artifact = answer if isinstance(answer, tuple) else (answer, False)
            reviewed.append(int(row))
            scores.append(float(score))
            flags.append(bool(is_artifact))
        if progress:
            progress(len(reviewed), n_reviews, "simulated reviews")
    return reviewed


def count_interesting(ordered_ids, is_interesting, cutoffs=(50, 100, 200)) -> dict[int, int]:
    """How many interesting rows are among the first c of `ordered_ids`, for each cutoff c.

    is_interesting: (N,) bool array indexed by row, or a callable row -> bool."""
    ordered = np.asarray(ordered_ids, dtype=np.int64)
    flags = (np.array([bool(is_interesting(int(i))) for i in ordered]) if callable(is_interesting)
             else np.asarray(is_interesting, bool)[ordered])
    return {int(c): int(flags[:c].sum()) for c in cutoffs}
