"""People's verdicts on anomaly candidates: append-only history, latest per user counts.

A verdict is an interest score 0-5 (as Astronomaly) or an "artifact" tag.  Every verdict
is a new Review row with user, time and value; nothing is updated or deleted.  An
``undo`` row retracts that user's most recent verdict on the galaxy that is not yet
retracted, so undo twice after scoring 3 then 5 leaves no verdict, and undo once
leaves the 3.  Verdicts belong to the galaxy, not to a score set: re-scoring a survey
keeps everyone's reviews.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction

from webapp.anomalies.models import Review, ScoreSet
from webapp.anomalies.services.files import load_scores

MAX_INTEREST = 5
INTERESTING_FROM = 4  # interest >= 4 counts as "interesting" (lists, exports, counts)
DEFAULT_RERANK_EVERY = 10  # re-rank after this many new verdicts (the N)


class ReviewError(ValueError):
    """Bad verdict (out of range, unknown galaxy); the message says what was wrong."""


class NothingToUndo(ReviewError):
    """The user has no verdict on this galaxy that is not already retracted."""


@dataclass(frozen=True)
class Verdict:
    interest: int | None    # 0-5, None for a bare artifact tag
    artifact: bool
    at: datetime
    review_id: int

    @property
    def label(self) -> str:
        return "artifact" if self.artifact else f"{self.interest}"

    @property
    def is_interesting(self) -> bool:
        return not self.artifact and self.interest is not None and self.interest >= INTERESTING_FROM

    def as_dict(self) -> dict:
        return {"interest": self.interest, "artifact": self.artifact, "at": self.at.isoformat(),
                "review_id": self.review_id, "label": self.label}


def parse_verdict(data: dict) -> tuple[int | None, bool]:
    """(interest, artifact) from {"interest": 0-5} or {"artifact": true}; ReviewError otherwise."""
    artifact = data.get("artifact", False)
    if not isinstance(artifact, bool):
        raise ReviewError("artifact must be true or false")
    interest = data.get("interest")
    if artifact:
        if interest is not None:
            raise ReviewError("send either an interest score or artifact: true, not both")
        return None, True
    if isinstance(interest, bool) or not isinstance(interest, int):
        raise ReviewError(f"interest must be a whole number from 0 to {MAX_INTEREST}")
    if not 0 <= interest <= MAX_INTEREST:
        raise ReviewError(f"interest must be from 0 to {MAX_INTEREST}, not {interest}")
    return interest, False


def check_galaxy_in_set(score_set: ScoreSet, galaxy_id) -> int:
    try:
        galaxy_id = int(galaxy_id)
    except (TypeError, ValueError):
        raise ReviewError("galaxy_id must be an integer") from None
    if galaxy_id not in load_scores(score_set).row_of:
        raise ReviewError(f"galaxy {galaxy_id} is not in score set {score_set.pk}")
    return galaxy_id


def record_verdict(user, score_set: ScoreSet, galaxy_id, interest: int | None, artifact: bool) -> Review:
    """Append one verdict row (validated)."""
    galaxy_id = check_galaxy_in_set(score_set, galaxy_id)
    kind = Review.Kind.ARTIFACT if artifact else Review.Kind.SCORE
    return Review.objects.create(user=user, galaxy_id=galaxy_id, score_set=score_set, kind=kind,
                                 interest=None if artifact else interest)


def undo_verdict(user, score_set: ScoreSet, galaxy_id) -> tuple[Review, Verdict | None]:
    """Append an undo row for the user's current verdict on the galaxy; returns it and what now counts."""
    galaxy_id = check_galaxy_in_set(score_set, galaxy_id)
    with transaction.atomic():
        lock_user(user)  # two undo clicks at once must not both retract the same verdict
        if galaxy_id not in latest_verdicts(user, [galaxy_id]):
            raise NothingToUndo(f"you have no verdict on galaxy {galaxy_id} to undo")
        row = Review.objects.create(user=user, galaxy_id=galaxy_id, score_set=score_set, kind=Review.Kind.UNDO)
    return row, latest_verdicts(user, [galaxy_id]).get(galaxy_id)


def latest_verdicts(user, galaxy_ids=None) -> dict[int, Verdict]:
    """{galaxy id: the verdict that counts} for one user (galaxies with none left out)."""
    rows = Review.objects.filter(user=user)
    if galaxy_ids is not None:
        rows = rows.filter(galaxy_id__in=list(galaxy_ids))
    return _replay(rows.order_by("created_at", "id").values_list("id", "galaxy_id", "kind", "interest", "created_at"))


def verdicts_by_user(galaxy_ids=None, user_ids=None) -> dict[int, dict[int, Verdict]]:
    """{user id: {galaxy id: verdict}} for everyone (or the given users)."""
    rows = Review.objects.all()
    if galaxy_ids is not None:
        rows = rows.filter(galaxy_id__in=list(galaxy_ids))
    if user_ids is not None:
        rows = rows.filter(user_id__in=list(user_ids))
    per_user: dict[int, list] = {}
    for user_id, *row in rows.order_by("created_at", "id").values_list(
            "user_id", "id", "galaxy_id", "kind", "interest", "created_at"):
        per_user.setdefault(user_id, []).append(row)
    return {u: _replay(r) for u, r in per_user.items()}


def _replay(rows) -> dict[int, Verdict]:
    """Apply rows (id, galaxy, kind, interest, time) in time order: verdicts push, undo pops."""
    stacks: dict[int, list[Verdict]] = {}
    for review_id, galaxy_id, kind, interest, at in rows:
        stack = stacks.setdefault(galaxy_id, [])
        if kind == Review.Kind.UNDO:
            if stack:
                stack.pop()
        else:
            stack.append(Verdict(interest, kind == Review.Kind.ARTIFACT, at, review_id))
    return {g: s[-1] for g, s in stacks.items() if s}


def history(user, galaxy_id) -> list[dict]:
    """Every row of the user's history on one galaxy, newest first (for the detail panel)."""
    return [{"kind": r.kind, "interest": r.interest, "at": r.created_at.isoformat()}
            for r in Review.objects.filter(user=user, galaxy_id=galaxy_id).order_by("-created_at", "-id")]


def review_counts(user, score_set: ScoreSet) -> dict:
    """How many galaxies of this set the user has a verdict on, and how many are interesting/artifacts."""
    latest = latest_verdicts(user)
    in_set = load_scores(score_set).row_of.contains(np.fromiter(latest.keys(), np.int64, len(latest)))
    verdicts = [v for v, here in zip(latest.values(), in_set) if here]
    return {"reviewed": len(verdicts), "interesting": sum(v.is_interesting for v in verdicts),
            "artifacts": sum(v.artifact for v in verdicts)}


def lock_user(user) -> None:
    """Serialise one person's decisions (no-op lock on SQLite, whose writes are serial anyway)."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
