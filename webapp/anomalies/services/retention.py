"""Retention of computed anomaly files: the last K score sets per embedding set and the last
K personal rankings per person and score set (K = settings.KEEP_ROUNDS, default 5).

Older ones lose their rows and their directories under DATA_DIR/anomalies/.  Never pruned:
a score set or ranking still building, and the newest ready ones (what the pages serve).
People's reviews stay: they belong to the galaxy (Review.score_set becomes NULL).
Called at the end of every scoring and ranking job.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings

from webapp.anomalies.models import PersonalRanking, ScoreSet
from webapp.embeddings.models import ArtifactStatus

log = logging.getLogger(__name__)


def _keep(keep: int | None) -> int:
    return max(int(keep if keep is not None else settings.KEEP_ROUNDS), 1)


def remove_artifact_dir(relative: str, prefix: str) -> None:
    """Delete the artifact directory holding ``relative`` (only our own anomalies/<prefix>-* dirs)."""
    if not relative:
        return
    root = Path(settings.DATA_DIR)
    parts = Path(relative).parts
    if len(parts) < 2 or parts[0] != "anomalies" or not parts[1].startswith(prefix):
        return
    shutil.rmtree(root / parts[0] / parts[1], ignore_errors=True)


def prune_score_sets(embedding_set, keep: int | None = None) -> list[int]:
    """Delete ready score sets of ``embedding_set`` beyond the newest ``keep``; returns their ids."""
    keep = _keep(keep)
    ready = list(ScoreSet.objects.filter(embedding_set=embedding_set, status=ArtifactStatus.READY)
                 .order_by("-created_at", "-id").values_list("pk", "scores_path"))
    gone = []
    for pk, path in ready[keep:]:
        ranking_paths = list(PersonalRanking.objects.filter(score_set_id=pk).values_list("pk", "ranking_path"))
        ScoreSet.objects.filter(pk=pk).delete()            # rankings cascade; reviews keep (score_set NULL)
        remove_artifact_dir(path, f"scores{pk}-")
        for rpk, rpath in ranking_paths:
            remove_artifact_dir(rpath, f"rank{rpk}-")
        gone.append(pk)
    if gone:
        log.info("embedding set %s: pruned score sets %s (keeping %d)", embedding_set.pk, gone, keep)
    return gone


def prune_rankings(user, score_set, keep: int | None = None) -> list[int]:
    """Delete this person's ready rankings of ``score_set`` beyond the newest ``keep``."""
    keep = _keep(keep)
    ready = list(PersonalRanking.objects.filter(user=user, score_set=score_set, status=ArtifactStatus.READY)
                 .order_by("-created_at", "-id").values_list("pk", "ranking_path"))
    gone = []
    for pk, path in ready[keep:]:
        PersonalRanking.objects.filter(pk=pk).delete()
        remove_artifact_dir(path, f"rank{pk}-")
        gone.append(pk)
    return gone
