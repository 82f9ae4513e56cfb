"""Exports: labels, consensus and predictions as CSV, FITS binary table, VOTable or JSON.

Two tables per task (astropy.table.Table, written by astropy's own writers):
  catalogue  one row per task galaxy: RA/Dec, consensus (votes, vote fractions, entropy),
             the serving model's prediction with its uncertainty, model version and round.
  labels     every Label row as it was recorded (append-only history, undo rows included),
             with a flag for the rows that currently count.
Missing numbers are NaN (FITS has no null float), missing strings are "".
"""
from __future__ import annotations

import io
import re

import numpy as np
from astropy.table import Table

from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, Task
from webapp.labeling.services.consensus import build_consensus
from webapp.labeling.services.labels import LABEL_FIELDS, current_answers, task_answers
from webapp.labeling.services.store import predictions_for, serving_round, task_rows

FORMATS = {  # name: (astropy writer, content type, file extension)
    "csv": ("ascii.csv", "text/csv; charset=utf-8", "csv"),
    "fits": ("fits", "application/fits", "fits"),
    "votable": ("votable", "application/x-votable+xml", "vot"),
}
TABLES = ("catalogue", "labels")


def column_name(name: str) -> str:
    """'edge-on' -> 'edge_on' (FITS/VOTable-safe)."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "class"


def class_columns(names: list[str]) -> list[str]:
    """Column-safe class names, unique ('edge-on' and 'edge on' -> 'edge_on', 'edge_on_2')."""
    out: list[str] = []
    for name in names:
        base = candidate = column_name(name)
        k = 2
        while candidate in out:
            candidate, k = f"{base}_{k}", k + 1
        out.append(candidate)
    return out


def _galaxy_info(galaxy_ids: np.ndarray) -> dict[str, np.ndarray]:
    info = {g: (slug, sid, ra, dec) for g, slug, sid, ra, dec in Galaxy.objects.filter(pk__in=galaxy_ids.tolist())
            .values_list("pk", "survey__slug", "source_id", "ra", "dec")}
    rows = [info.get(int(g), ("", "", None, None)) for g in galaxy_ids]
    return {"survey": np.array([r[0] for r in rows], dtype=str),
            "source_id": np.array([r[1] for r in rows], dtype=str),
            "ra": np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
            "dec": np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64)}


def catalogue_table(task: Task, galaxy_ids: np.ndarray | None = None) -> Table:
    """One row per task galaxy (or per given galaxy), in embedding order."""
    rows = task_rows(task)
    gids = rows.galaxy_ids if galaxy_ids is None else np.asarray(galaxy_ids, dtype=np.int64)
    table = Table()
    table["galaxy_id"] = gids
    for key, values in _galaxy_info(gids).items():
        table[key] = values
    table["ra"].unit, table["dec"].unit = "deg", "deg"
    _add_consensus(table, task, gids)
    _add_predictions(table, task, gids)
    table.meta.update({"TASK": task.name, "TASKKIND": task.kind})
    return table


def _add_consensus(table: Table, task: Task, gids: np.ndarray) -> None:
    cons = build_consensus(task)
    at = np.array([cons.row(int(g)) if len(cons) else None for g in gids], dtype=object)
    has = np.array([a is not None for a in at], dtype=bool)
    idx = np.array([a if a is not None else 0 for a in at], dtype=np.int64)
    table["n_votes"] = np.where(has, cons.n_votes[idx] if len(cons) else 0, 0)
    table["n_unsure"] = np.where(has, cons.n_unsure[idx] if len(cons) else 0, 0)
    if task.is_classification:
        names = task.class_names
        lab = cons.label[idx] if len(cons) else np.zeros(len(gids), dtype=np.int64)
        table["consensus"] = np.array([names[i] if h else "" for i, h in zip(lab, has)], dtype=str)
        table["consensus_index"] = np.where(has, lab, -1)
        for k, col in enumerate(class_columns(names)):
            frac = cons.fractions[idx, k] if len(cons) else np.zeros(len(gids))
            table[f"frac_{col}"] = np.where(has, frac, np.nan)
        table["vote_entropy"] = np.where(has, cons.entropy[idx] if len(cons) else 0.0, np.nan)
    else:
        table["label_mean"] = np.where(has, cons.label[idx] if len(cons) else 0.0, np.nan)
        table["label_std"] = np.where(has, cons.spread[idx] if len(cons) else 0.0, np.nan)
        if task.unit:
            table["label_mean"].unit = table["label_std"].unit = task.unit


def _add_predictions(table: Table, task: Task, gids: np.ndarray) -> None:
    rnd = serving_round(task)
    n = len(gids)
    data = predictions_for(rnd, gids) if rnd and rnd.predictions_path else None   # rows by id index
    ok = np.isfinite(data["uncertainty"]) if data is not None else np.zeros(n, dtype=bool)
    if task.is_classification:
        names = task.class_names
        probs = np.full((n, len(names)), np.nan)
        if data is not None:
            probs[ok] = data["probs"][ok]
        pred = np.where(ok, np.nan_to_num(probs, nan=-1).argmax(1), -1)
        table["pred_class"] = np.array([names[p] if p >= 0 else "" for p in pred], dtype=str)
        table["pred_index"] = pred
        for k, col in enumerate(class_columns(names)):
            table[f"p_{col}"] = probs[:, k]
        unc = np.full(n, np.nan)
        if data is not None:
            unc[ok] = data["uncertainty"][ok]
        table["pred_entropy"] = unc
    else:
        mean, sigma = np.full(n, np.nan), np.full(n, np.nan)
        if data is not None:
            mean[ok], sigma[ok] = data["mean"][ok], data["sigma"][ok]
        table["pred_mean"], table["pred_sigma"] = mean, sigma
        if task.unit:
            table["pred_mean"].unit = table["pred_sigma"].unit = task.unit
    table["model_version"] = np.array([rnd.model_version if (rnd and o) else "" for o in ok], dtype=str)
    table["round"] = np.where(ok, rnd.number if rnd else 0, 0)


def labels_table(task: Task) -> Table:
    """Every label row (oldest first) with the person, answer and whether it counts now."""
    values = list(Label.objects.filter(task=task).order_by("id").values_list(*LABEL_FIELDS))
    live = {a.label_id for a in current_answers(values).values()}
    extra = dict(Label.objects.filter(task=task).values_list("id", "created_at"))
    users = dict(Label.objects.filter(task=task).values_list("id", "user__username"))
    gids = np.array([v[1] for v in values], dtype=np.int64)
    info = _galaxy_info(gids) if len(gids) else {k: np.array([], dtype=float if k in ("ra", "dec") else str)
                                                   for k in ("survey", "source_id", "ra", "dec")}
    names = task.class_names
    table = Table()
    table["label_id"] = np.array([v[0] for v in values], dtype=np.int64)
    table["galaxy_id"] = gids
    for key in ("survey", "source_id", "ra", "dec"):
        table[key] = info[key]
    table["user"] = np.array([users[v[0]] for v in values], dtype=str)
    table["kind"] = np.array([v[3] for v in values], dtype=str)
    table["class"] = np.array([names[v[4]] if v[4] is not None and v[4] < len(names) else "" for v in values], dtype=str)
    table["class_index"] = np.array([-1 if v[4] is None else v[4] for v in values], dtype=np.int64)
    table["value"] = np.array([np.nan if v[5] is None else v[5] for v in values], dtype=np.float64)
    table["undoes"] = np.array([-1 if v[6] is None else v[6] for v in values], dtype=np.int64)
    table["counts"] = np.array([v[0] in live for v in values], dtype=bool)
    table["created_at"] = np.array([extra[v[0]].isoformat() for v in values], dtype=str)
    table.meta.update({"TASK": task.name})
    return table


def render_table(table: Table, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    table = _ascii_safe(table) if fmt == "fits" else table
    if fmt == "csv":   # astropy's text writers want a text stream
        text = io.StringIO()
        table.write(text, format=FORMATS[fmt][0], overwrite=True)
        return text.getvalue().encode("utf-8")
    buffer = io.BytesIO()
    table.write(buffer, format=FORMATS[fmt][0], overwrite=True)
    return buffer.getvalue()


def _ascii_safe(table: Table) -> Table:
    """FITS strings are ASCII: replace other characters (e.g. in user names) with '?'."""
    out = table.copy()
    for name in out.colnames:
        if out[name].dtype.kind == "U":
            out[name] = np.array([s.encode("ascii", "replace").decode() for s in out[name]], dtype=str)
    out.meta = {k: (v.encode("ascii", "replace").decode() if isinstance(v, str) else v) for k, v in out.meta.items()}
    return out


def table_rows(table: Table, start: int = 0, stop: int | None = None) -> list[dict]:
    """JSON-ready dicts (NaN -> None) for rows [start, stop)."""
    part = table[start:stop]
    out = []
    for row in part:
        record = {}
        for name in part.colnames:
            v = row[name]
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, float) and not np.isfinite(v):
                v = None
            record[name] = v
        out.append(record)
    return out


def answers_for_galaxy(task: Task, galaxy_id: int) -> dict:
    """{"votes": {class: n}, "fractions": {...}, "n": n} for the galaxy detail panel."""
    answers = task_answers(task, [galaxy_id])
    votes = [a for a in answers.values() if a.kind == Label.Kind.VALUE]
    if task.is_classification:
        counts = {name: 0 for name in task.class_names}
        for a in votes:
            counts[task.class_names[a.class_index]] += 1
        return {"n": len(votes), "votes": counts,
                "fractions": {k: (v / len(votes) if votes else None) for k, v in counts.items()}}
    values = [a.value for a in votes]
    return {"n": len(values), "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None}
