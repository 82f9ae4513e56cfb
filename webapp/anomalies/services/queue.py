"""The review queue: the next candidates a person has not judged yet, best first.

Order comes from the person's newest ready PersonalRanking ("personal"), or, before
one exists or when asked, from the score set's combined rank or one method's score.
Each candidate carries everything the review page shows, so the page can prefetch a
batch and switch to the next candidate without asking the server: images (composite and
bands), position and catalogue columns, anomaly percentiles, why it ranks high, and its
look-alikes.  Galaxy.truth is never read here.
"""
from __future__ import annotations


import numpy as np

from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.files import load_ranking, load_scores
from webapp.anomalies.services.neighbours import similar
from webapp.anomalies.services.ranking import current_ranking, explanation, pending_ranking
from webapp.anomalies.services.reviews import latest_verdicts, review_counts
from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import browse, static_thumbs

MAX_BATCH = 100        # candidates per request (grid mode asks for a page of them)
IMAGE_SIZE = 320       # px of the large composite
BAND_SIZE = 128        # px of each band image
SIMILAR_THUMB = 72     # px of look-alike thumbnails
SURVEY_FIELDS = ("slug", "name", "bands", "image_shape", "pixel_scale_arcsec", *static_thumbs.SURVEY_FIELDS)


class QueueError(ValueError):
    """Bad queue request (unknown ordering, bad numbers); the message says what was wrong."""


def rank_choices(score_set: ScoreSet) -> list[tuple[str, str]]:
    """(value, label) of the orderings a person can pick."""
    return ([("personal", "Learnt from my scores"), ("combined", "Combined anomaly rank")]
            + [(m, f"{m} score only") for m in score_set.methods])


def next_candidates(user, score_set: ScoreSet, n: int = 10, rank_by: str = "personal", exclude=(),
                    survey: Survey | None = None, n_similar: int = 8, first: int | None = None) -> dict:
    """The next n unreviewed candidates as JSON-able dicts, plus the state of the ranking.

    ``first``: a galaxy to put in front (the galaxy page's "review this"), reviewed or not."""
    if not 1 <= n <= MAX_BATCH:
        raise QueueError(f"n must be between 1 and {MAX_BATCH}")
    if rank_by not in {v for v, _ in rank_choices(score_set)}:
        raise QueueError(f"cannot rank by {rank_by!r}; choose from {[v for v, _ in rank_choices(score_set)]}")
    scores = load_scores(score_set)
    verdicts = latest_verdicts(user)
    skip = set(verdicts) | {int(g) for g in exclude}
    allowed = _in_survey(score_set, scores, survey.pk) if survey else None

    ranking = current_ranking(user, score_set) if rank_by == "personal" else None
    arrays = load_ranking(ranking) if ranking else None
    if arrays is not None:
        order, source = arrays["order"], "personal"
    else:
        order, source = scores.order("combined" if rank_by == "personal" else rank_by), (
            "combined" if rank_by == "personal" else rank_by)
    picked = _first_unreviewed(order, n, skip, allowed)
    if first is not None and first in scores.row_of and int(first) not in {int(g) for g in exclude}:
        where = _position(order, first)
        picked = [(first, where)] + [p for p in picked if p[0] != first][:n - 1]

    candidates = _candidate_dicts(score_set, scores, picked, arrays, n_similar)
    for item in candidates:
        verdict = verdicts.get(item["id"])
        item["verdict"] = verdict.as_dict() if verdict else None
    reviewed_here = int(scores.row_of.contains(np.fromiter(verdicts.keys(), np.int64, len(verdicts))).sum())
    pending = pending_ranking(user, score_set)
    return {
        "score_set": score_set.pk, "rank_by": rank_by, "source": source,
        "ranking": ranking_info(ranking),
        "pending_job": pending.job.as_dict() if pending else None,
        "counts": review_counts(user, score_set), "remaining": scores.ids.size - reviewed_here,
        "candidates": candidates,
    }


FIRST_CHUNK = 64       # ids of the order read by the first step of a walk; each further step doubles
MAX_CHUNK = 4096       # ... up to this many


def _chunks(order):
    """(start, ids as an array) over ``order`` in growing steps: finding the next few candidates
    reads about as many ids as it needs, not a fixed 4,096 (nor N) of them (issue 14)."""
    start, step = 0, FIRST_CHUNK
    while start < len(order):
        chunk = np.asarray(order[start:start + step])
        yield start, chunk
        start += len(chunk)
        step = min(step * 2, MAX_CHUNK)


def _first_unreviewed(order, n: int, skip: set, allowed) -> list[tuple[int, int]]:
    """[(galaxy id, position in order)] of the first n ids not skipped; walks the order in
    growing chunks so a 1e6-row order is never converted whole, and only the picked ids become
    Python ints.  ``allowed``: None, or a function giving the boolean mask of a chunk of ids
    that may be shown."""
    picked: list[tuple[int, int]] = []
    skip_ids = np.fromiter(skip, np.int64, len(skip))
    for start, chunk in _chunks(order):
        ok = np.ones(len(chunk), dtype=bool) if allowed is None else np.asarray(allowed(chunk), dtype=bool)
        if len(skip_ids):
            ok &= ~np.isin(chunk, skip_ids)
        for offset in np.flatnonzero(ok)[:n - len(picked)].tolist():
            picked.append((int(chunk[offset]), start + offset))
        if len(picked) == n:
            break
    return picked


def _in_survey(score_set, scores, survey_id: int):
    """Mask function "is this galaxy in that survey" by row: the set's cached survey-per-row
    column (embeddings.services.sky) and the id index; no set of the survey's galaxy ids."""
    from webapp.embeddings.services.sky import sky_index

    survey_of_row = sky_index(score_set.embedding_set).survey            # (N,) int64

    def allowed(ids: np.ndarray) -> np.ndarray:
        rows = scores.row_of.rows(ids)
        return (rows >= 0) & (survey_of_row[np.maximum(rows, 0)] == survey_id)
    return allowed


def _position(order, galaxy_id: int) -> int:
    """Where ``galaxy_id`` stands in ``order`` (len(order) when absent), by a chunked scan that
    stops at the hit: memory of one chunk, not an (N,) mask (still a read of up to N ids)."""
    for start, chunk in _chunks(order):
        hits = np.flatnonzero(chunk == galaxy_id)
        if len(hits):
            return start + int(hits[0])
    return len(order)


def ranking_info(ranking) -> dict | None:
    if ranking is None:
        return None
    return {"id": ranking.pk, "n_reviews": ranking.n_reviews, "seconds": ranking.seconds,
            "created_at": ranking.created_at.isoformat()}


def _candidate_dicts(score_set, scores, picked, arrays, n_similar) -> list[dict]:
    es = score_set.embedding_set
    looks = {g: similar(es, g, n_similar) if n_similar else ([], "") for g, _ in picked}
    whys = {g: explanation(arrays, pos) if arrays is not None else None for g, pos in picked}
    extra_ids = {s["id"] for found, _ in looks.values() for s in found}
    extra_ids |= {nb["id"] for why in whys.values() if why for nb in why["neighbours"]}
    galaxies = _galaxies({g for g, _ in picked} | extra_ids)
    out = []
    for galaxy_id, position in picked:
        galaxy = galaxies.get(galaxy_id)
        if galaxy is None:  # deleted since scoring; the next request simply skips it
            continue
        row = scores.row_of[galaxy_id]
        found, note = looks[galaxy_id]
        item = _galaxy_dict(galaxy)
        item.update({
            "anomaly": {"combined": round(float(scores.combined[row]), 4),
                        "ranks": {m: round(float(r[row]), 4) for m, r in scores.ranks.items()}},
            "rank": {"position": position + 1 if position < len(scores.ids) else None,
                     "value": (round(float(arrays["value"][position]), 5)
                               if arrays is not None and position < len(arrays["value"]) else None)},
            "why": _with_thumbs(whys[galaxy_id], galaxies),
            "similar": [_small(galaxies[s["id"]], s["distance"]) for s in found if s["id"] in galaxies],
            "similar_note": note,
        })
        out.append(item)
    return out


def _galaxies(ids) -> dict[int, Galaxy]:
    qs = (Galaxy.objects.filter(pk__in=list(ids)).select_related("survey")
          .only(*browse.GALAXY_FIELDS, *[f"survey__{f}" for f in SURVEY_FIELDS]))
    return {g.pk: g for g in qs}


def _galaxy_dict(galaxy: Galaxy) -> dict:
    return browse.galaxy_card(galaxy, thumbs={"image": IMAGE_SIZE, "thumb": SIMILAR_THUMB},
                              bands={"url": BAND_SIZE})


def _small(galaxy: Galaxy, distance: float, **extra) -> dict:
    return {"id": galaxy.pk, "source_id": galaxy.source_id, "distance": round(float(distance), 4),
            "url": f"/galaxies/{galaxy.pk}/", "thumb": browse.thumb_url(galaxy, galaxy.survey, size=SIMILAR_THUMB),
            **extra}


def _with_thumbs(why: dict | None, galaxies: dict) -> dict | None:
    if why is None:
        return None
    why = dict(why)
    why["neighbours"] = [_small(galaxies[nb["id"]], nb["distance"], interest=nb["interest"],
                                artifact=nb["artifact"]) for nb in why["neighbours"] if nb["id"] in galaxies]
    return why
