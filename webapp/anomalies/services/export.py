"""Reviewed candidates: filter them, list them, export them as CSV or VOTable (astropy).

Kinds come from people's own verdicts, never from simulated truth:
  interesting  interest >= 4        boring  interest <= 1
  unsure       interest 2-3          artifact  tagged artifact
Scope "mine" uses one person's verdicts; "all" averages everyone's latest verdicts
(a galaxy counts as an artifact when at least half of its reviewers tagged it so).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from webapp.anomalies.models import ScoreSet
from webapp.anomalies.services.files import load_scores
from webapp.anomalies.services.reviews import INTERESTING_FROM, latest_verdicts, verdicts_by_user
from webapp.catalog.models import Galaxy

KINDS = ("interesting", "unsure", "boring", "artifact")
SCOPES = ("mine", "all")


class ExportError(ValueError):
    """Bad filter values; the message says what was wrong."""


@dataclass
class ReviewFilter:
    scope: str = "mine"          # "mine" or "all"
    kind: str = ""               # one of KINDS, or "" for every reviewed galaxy
    min_interest: float | None = None
    max_interest: float | None = None
    method: str = ""             # only galaxies in the top `top` fraction of this method's score
    top: float = 0.01            # e.g. 0.01 = the method's top 1 %

    @classmethod
    def from_query(cls, query, score_set: ScoreSet, default_kind: str = "") -> "ReviewFilter":
        flt = cls(scope=query.get("scope") or "mine", kind=query.get("kind", default_kind) or "",
                  method=query.get("method") or "")
        if flt.scope not in SCOPES:
            raise ExportError(f"scope must be one of {list(SCOPES)}")
        if flt.kind and flt.kind not in KINDS:
            raise ExportError(f"kind must be one of {list(KINDS)}")
        if flt.method and flt.method not in ["combined", *score_set.methods]:
            raise ExportError(f"method must be one of {['combined', *score_set.methods]}")
        flt.min_interest = _number(query.get("min"), "min", 0, 5)
        flt.max_interest = _number(query.get("max"), "max", 0, 5)
        top = _number(query.get("top"), "top", 0.01, 100)
        if top is not None:
            flt.top = top / 100.0
        return flt


def _number(text, name: str, lo: float, hi: float) -> float | None:
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ExportError(f"{name} must be a number") from None
    if not lo <= value <= hi:
        raise ExportError(f"{name} must be between {lo:g} and {hi:g}")
    return value


def kind_of(interest: float | None, artifact: bool) -> str:
    if artifact:
        return "artifact"
    if interest is None:
        return ""
    return "interesting" if interest >= INTERESTING_FROM else "boring" if interest <= 1 else "unsure"


def reviewed_rows(score_set: ScoreSet, user, flt: ReviewFilter) -> list[dict]:
    """Reviewed galaxies of the set matching the filter, most interesting first."""
    scores = load_scores(score_set)
    summary = _summaries(user, flt.scope, scores.row_of)
    if flt.method:
        ranks = scores.combined if flt.method == "combined" else scores.ranks[flt.method]
        # rank_normalise puts the best at 1; the top fraction f is rank >= 1 - f
        summary = {g: s for g, s in summary.items() if ranks[scores.row_of[g]] >= 1.0 - flt.top - 1e-9}
    keep = {g: s for g, s in summary.items() if _matches(s, flt)}
    galaxies = {g.pk: g for g in Galaxy.objects.filter(pk__in=list(keep)).select_related("survey")
                .only("id", "source_id", "ra", "dec", "survey__slug", "survey__id")}
    rows = []
    for galaxy_id, s in keep.items():
        galaxy = galaxies.get(galaxy_id)
        if galaxy is None:
            continue
        row = scores.row_of[galaxy_id]
        rows.append({"galaxy_id": galaxy_id, "survey": galaxy.survey.slug, "source_id": galaxy.source_id,
                     "ra": galaxy.ra, "dec": galaxy.dec, **s,
                     "anomaly": round(float(scores.combined[row]), 5),
                     **{f"rank_{m}": round(float(r[row]), 5) for m, r in scores.ranks.items()},
                     "url": f"/galaxies/{galaxy_id}/"})
    rows.sort(key=lambda r: (r["kind"] != "interesting", -(r["interest"] if r["interest"] is not None else -1),
                             -r["anomaly"], r["galaxy_id"]))
    return rows


def _summaries(user, scope: str, row_of) -> dict[int, dict]:
    """{galaxy id: {"interest", "artifact", "n_reviewers", "kind", "reviewed_at"}} for galaxies of the set."""
    if scope == "mine":
        return {g: {"interest": v.interest, "artifact": v.artifact, "n_reviewers": 1,
                    "kind": kind_of(v.interest, v.artifact), "reviewed_at": v.at.isoformat()}
                for g, v in latest_verdicts(user).items() if g in row_of}
    per_galaxy: dict[int, list] = {}
    for verdicts in verdicts_by_user().values():
        for g, v in verdicts.items():
            if g in row_of:
                per_galaxy.setdefault(g, []).append(v)
    out = {}
    for g, vs in per_galaxy.items():
        scored = [v.interest for v in vs if not v.artifact and v.interest is not None]
        artifact = sum(v.artifact for v in vs) * 2 >= len(vs)
        interest = round(float(np.mean(scored)), 2) if scored else None
        out[g] = {"interest": interest, "artifact": artifact, "n_reviewers": len(vs),
                  "kind": kind_of(interest, artifact), "reviewed_at": max(v.at for v in vs).isoformat()}
    return out


def _matches(summary: dict, flt: ReviewFilter) -> bool:
    if flt.kind and summary["kind"] != flt.kind:
        return False
    interest = summary["interest"]
    if flt.min_interest is not None and (interest is None or interest < flt.min_interest):
        return False
    if flt.max_interest is not None and (interest is None or interest > flt.max_interest):
        return False
    return True


# ----------------------------------------------------------------- files

MAX_SCORE_ROWS = 100_000   # rows of score columns in one reply


def score_columns(score_set: ScoreSet, offset: int = 0, limit: int = 10_000) -> dict:
    """A slice of the set's score file as columns, in the embedding set's row order:
    galaxy_id, combined (rank blend in [0, 1]) and score_<method> / rank_<method> per method."""
    if not 1 <= limit <= MAX_SCORE_ROWS:
        raise ExportError(f"limit must be between 1 and {MAX_SCORE_ROWS}")
    scores = load_scores(score_set)
    total = int(scores.ids.size)
    window = slice(offset, min(offset + limit, total))
    cols = {"galaxy_id": scores.ids[window].astype(int).tolist(),
            "combined": np.round(scores.combined[window].astype(float), 6).tolist()}
    for method in scores.scores:
        cols[f"score_{method}"] = np.round(scores.scores[method][window].astype(float), 6).tolist()
        cols[f"rank_{method}"] = np.round(scores.ranks[method][window].astype(float), 6).tolist()
    n = len(cols["galaxy_id"])
    return {"score_set": score_set.pk, "total": total, "offset": offset, "count": n,
            "next_offset": offset + n if offset + n < total else None, "columns": cols}


def columns(score_set: ScoreSet) -> list[str]:
    return (["galaxy_id", "survey", "source_id", "ra", "dec", "interest", "artifact", "kind", "n_reviewers",
             "reviewed_at", "anomaly"] + [f"rank_{m}" for m in score_set.methods])


def to_csv(rows: list[dict], score_set: ScoreSet) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(score_set), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


DESCRIPTIONS = {
    "galaxy_id": ("Latent Sky galaxy id", None, "meta.id"),
    "survey": ("survey slug", None, "meta.dataset"),
    "source_id": ("survey catalogue id", None, "meta.id;meta.main"),
    "ra": ("right ascension (ICRS)", "deg", "pos.eq.ra;meta.main"),
    "dec": ("declination (ICRS)", "deg", "pos.eq.dec;meta.main"),
    "interest": ("interest 0-5 (mean over reviewers for scope=all)", None, "meta.code.qual"),
    "artifact": ("tagged as an artifact", None, "meta.code"),
    "kind": ("kind from people's verdicts", None, "meta.code.class"),
    "n_reviewers": ("people whose verdict counts", None, "meta.number"),
    "reviewed_at": ("time of the latest verdict (ISO 8601)", None, "time.epoch"),
    "anomaly": ("combined anomaly rank in [0, 1]", None, "stat.value"),
}


def to_votable(rows: list[dict], score_set: ScoreSet) -> bytes:
    """A VOTable 1.4 document (astropy.io.votable) with units and UCDs for RA/Dec."""
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn, Table

    table = Table()
    for name in columns(score_set):
        values = [row.get(name) for row in rows]
        mask = [v is None for v in values]
        if name in ("ra", "dec", "interest", "anomaly") or name.startswith("rank_"):
            data = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        elif name in ("galaxy_id", "n_reviewers"):
            data = np.array([0 if v is None else int(v) for v in values], dtype=np.int64)
        elif name == "artifact":
            data = np.array([bool(v) for v in values], dtype=bool)
        else:
            data = np.array(["" if v is None else str(v) for v in values], dtype=str)
            if not len(data):
                data = data.astype("U1")
        description, unit, ucd = DESCRIPTIONS.get(name, (f"percentile rank of {name[5:]} score", None, "stat.value"))
        table[name] = MaskedColumn(data, mask=mask, unit=unit, description=description, meta={"ucd": ucd})
    table.meta["description"] = (f"Latent Sky anomaly candidates from score set {score_set.pk} "
                                 f"(embedding set {score_set.embedding_set_id})")
    votable = from_table(table)
    for field in votable.get_first_table().fields:
        ucd = DESCRIPTIONS.get(field.name, (None, None, "stat.value"))[2]
        field.ucd = ucd
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()
