"""Galaxy Zoo style consensus: vote fractions per galaxy, and agreement between people.

Per galaxy (classification): the number of VALUE answers per class, their fractions
(Galaxy Zoo's raw vote fractions), the vote entropy (0 = unanimous) and the consensus
class (most votes; ties go to the earliest vote).  UNSURE answers are counted apart.
Per galaxy (regression): mean, standard deviation and number of values.
Per task: Fleiss' kappa over galaxies with two or more votes, and Cohen's kappa for
the pair of people who labelled the most galaxies in common.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ml.metrics import cohen_kappa, fleiss_kappa, vote_entropy
from webapp.labeling.models import Label, Task
from webapp.labeling.services.labels import Answer, task_answers


@dataclass
class Consensus:
    """Arrays over the galaxies with at least one VALUE answer, sorted by galaxy id."""
    galaxy_ids: np.ndarray        # (G,) int64
    n_votes: np.ndarray           # (G,) int64 VALUE answers
    n_unsure: np.ndarray          # (G,) int64
    counts: np.ndarray | None     # classification: (G, K) votes per class
    fractions: np.ndarray | None  # classification: (G, K) vote fractions
    entropy: np.ndarray | None    # classification: (G,) nats
    label: np.ndarray             # (G,) consensus class (int) or mean value (float)
    spread: np.ndarray | None     # regression: (G,) std of the values (0 with one vote)

    def __len__(self):
        return len(self.galaxy_ids)

    def row(self, galaxy_id: int) -> int | None:
        i = int(np.searchsorted(self.galaxy_ids, galaxy_id))
        return i if i < len(self.galaxy_ids) and self.galaxy_ids[i] == galaxy_id else None


def build_consensus(task: Task, answers: dict[tuple[int, int], Answer] | None = None) -> Consensus:
    answers = task_answers(task) if answers is None else answers
    values: dict[int, list[Answer]] = defaultdict(list)
    unsure: dict[int, int] = defaultdict(int)
    for a in answers.values():
        if a.kind == Label.Kind.VALUE:
            values[a.galaxy_id].append(a)
        elif a.kind == Label.Kind.UNSURE:
            unsure[a.galaxy_id] += 1
    gids = np.array(sorted(values), dtype=np.int64)
    n_votes = np.array([len(values[g]) for g in gids], dtype=np.int64)
    n_unsure = np.array([unsure.get(int(g), 0) for g in gids], dtype=np.int64)
    if task.is_classification:
        k = len(task.classes)
        counts = np.zeros((len(gids), k), dtype=np.int64)
        label = np.zeros(len(gids), dtype=np.int64)
        for i, g in enumerate(gids):
            votes = sorted(values[int(g)], key=lambda a: a.label_id)
            for a in votes:
                counts[i, a.class_index] += 1
            top = counts[i].max()
            label[i] = next(a.class_index for a in votes if counts[i, a.class_index] == top)
        with np.errstate(invalid="ignore", divide="ignore"):
            fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        return Consensus(gids, n_votes, n_unsure, counts, fractions, vote_entropy(fractions), label, None)
    means = np.array([np.mean([a.value for a in values[int(g)]]) for g in gids], dtype=np.float64)
    spread = np.array([np.std([a.value for a in values[int(g)]]) for g in gids], dtype=np.float64)
    return Consensus(gids, n_votes, n_unsure, None, None, None, means, spread)


def agreement(task: Task, answers: dict[tuple[int, int], Answer] | None = None) -> dict:
    """{"fleiss_kappa", "n_galaxies_multi", "cohen_kappa", "cohen_pair", "n_labellers"}."""
    answers = task_answers(task) if answers is None else answers
    out = {"fleiss_kappa": None, "n_galaxies_multi": 0, "cohen_kappa": None, "cohen_pair": None,
           "n_common": 0, "n_labellers": len({u for (_, u), a in answers.items() if a.kind == Label.Kind.VALUE})}
    if not task.is_classification:
        return out
    cons = build_consensus(task, answers)
    if len(cons):
        multi = cons.n_votes >= 2
        out["n_galaxies_multi"] = int(multi.sum())
        if multi.any():
            out["fleiss_kappa"] = _finite(fleiss_kappa(cons.counts[multi]))
    by_user: dict[int, dict[int, int]] = defaultdict(dict)
    for (g, u), a in answers.items():
        if a.kind == Label.Kind.VALUE:
            by_user[u][g] = a.class_index
    best = None
    for u, v in combinations(sorted(by_user), 2):
        common = sorted(set(by_user[u]) & set(by_user[v]))
        if len(common) >= 2 and (best is None or len(common) > best[2]):
            best = (u, v, len(common), common)
    if best:
        u, v, n, common = best
        a = np.array([by_user[u][g] for g in common])
        b = np.array([by_user[v][g] for g in common])
        out.update(cohen_kappa=_finite(cohen_kappa(a, b)) if len(set(a) | set(b)) > 1 else 1.0,
                   cohen_pair=_usernames(u, v), n_common=n)
    return out


def _finite(x):
    return float(x) if x is not None and np.isfinite(x) else None


def _usernames(*user_ids) -> list[str]:
    from django.contrib.auth import get_user_model
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    return [names.get(u, str(u)) for u in user_ids]


TEAM_ROWS = 20  # galaxies shown in the task page's team consensus panel


def team_consensus(task: Task, limit: int = TEAM_ROWS, answers: dict | None = None) -> list[dict]:
    """The galaxies most people answered (two or more), with the team's consensus: per galaxy
    the votes, the consensus class and the share of votes that agree with it (classification),
    or the mean and spread (regression).  Each person's own labels stay theirs; this only reads."""
    from webapp.catalog.models import Galaxy
    cons = build_consensus(task, answers)
    multi = np.flatnonzero(cons.n_votes >= 2) if len(cons) else np.array([], dtype=np.int64)
    if not len(multi):
        return []
    if task.is_classification:
        share = cons.counts[multi].max(1) / cons.n_votes[multi]
        order = multi[np.lexsort((share, -cons.n_votes[multi]))]  # most votes first, then least agreement
    else:
        order = multi[np.argsort(-cons.n_votes[multi], kind="stable")]
    order = order[:limit]
    names = dict(Galaxy.objects.filter(pk__in=cons.galaxy_ids[order].tolist()).values_list("pk", "source_id"))
    rows = []
    for i in order:
        gid = int(cons.galaxy_ids[i])
        row = {"galaxy_id": gid, "source_id": names.get(gid, str(gid)), "n_votes": int(cons.n_votes[i]),
               "n_unsure": int(cons.n_unsure[i])}
        if task.is_classification:
            label = int(cons.label[i])
            row.update(consensus=task.class_names[label], agreement=float(cons.fractions[i, label]))
        else:
            row.update(mean=float(cons.label[i]), spread=float(cons.spread[i]))
        rows.append(row)
    return rows
