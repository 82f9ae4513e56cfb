"""Team view of one score set: what reviewers thought of the candidates several of them saw.

Verdicts stay per person (reviews.py); this reads everyone's current verdict on the galaxies
reviewed in the set and, for the most-reviewed ones, gives the number of reviewers, the mean
interest (0-5, over verdicts with an interest) and the share that flagged an artifact.
"""
from __future__ import annotations

from collections import defaultdict

from webapp.anomalies.models import Review, ScoreSet
from webapp.anomalies.services.reviews import verdicts_by_user
from webapp.catalog.models import Galaxy

TEAM_ROWS = 20
MAX_GALAXIES = 5000  # galaxies of the set's reviews read for the panel (the most reviewed come first)


def team_consensus(score_set: ScoreSet, limit: int = TEAM_ROWS, min_reviewers: int = 2) -> list[dict]:
    """[{galaxy_id, source_id, n_reviewers, mean_interest, artifact_share, interesting_share}] for
    galaxies with at least ``min_reviewers`` current verdicts, most reviewers first."""
    galaxy_ids = list(Review.objects.filter(score_set=score_set).values_list("galaxy_id", flat=True)
                      .distinct()[:MAX_GALAXIES])
    per_galaxy: dict[int, list] = defaultdict(list)
    for verdicts in verdicts_by_user(galaxy_ids=galaxy_ids).values():
        for galaxy_id, verdict in verdicts.items():
            per_galaxy[galaxy_id].append(verdict)
    ranked = sorted(((g, v) for g, v in per_galaxy.items() if len(v) >= min_reviewers),
                    key=lambda gv: (-len(gv[1]), gv[0]))[:limit]
    names = dict(Galaxy.objects.filter(pk__in=[g for g, _ in ranked]).values_list("pk", "source_id"))
    rows = []
    for galaxy_id, verdicts in ranked:
        interests = [v.interest for v in verdicts if v.interest is not None and not v.artifact]
        n = len(verdicts)
        rows.append({"galaxy_id": galaxy_id, "source_id": names.get(galaxy_id, str(galaxy_id)), "n_reviewers": n,
                     "mean_interest": sum(interests) / len(interests) if interests else None,
                     "artifact_share": sum(v.artifact for v in verdicts) / n,
                     "interesting_share": sum(v.is_interesting for v in verdicts) / n})
    return rows
