"""Recording labels (append-only, with undo) and reading back what counts.

Semantics: every action is a new Label row.  An UNDO row names the row it retracts
(``undoes``).  For each (galaxy, user) the newest row that is neither an UNDO nor
undone is that person's current answer: VALUE (a class or a number), UNSURE or SKIP.
Only VALUE answers train models and make vote fractions; UNSURE and SKIP keep the
galaxy out of that person's queue.  Concurrent labellers only ever INSERT, so no
label can be lost to a read-modify-write race.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, OuterRef

from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label, QueueItem, Task
from webapp.middleware import DATABASE_OUTAGE_ERRORS

ANSWER_KINDS = (Label.Kind.VALUE, Label.Kind.UNSURE)   # a person has answered the question


class LabelError(ValueError):
    """Bad label input; the message is shown to the person."""


@dataclass(frozen=True)
class Answer:
    """One person's current answer for one galaxy."""
    label_id: int
    galaxy_id: int
    user_id: int
    kind: str
    class_index: int | None
    value: float | None


def current_answers(rows) -> dict[tuple[int, int], Answer]:
    """{(galaxy_id, user_id): Answer} from label rows
    (id, galaxy_id, user_id, kind, class_index, value, undoes_id) in ANY order."""
    rows = sorted(rows, key=lambda r: r[0])
    undone = {r[6] for r in rows if r[3] == Label.Kind.UNDO and r[6] is not None}
    latest: dict[tuple[int, int], Answer] = {}
    for label_id, galaxy_id, user_id, kind, class_index, value, _ in rows:
        if kind == Label.Kind.UNDO or label_id in undone:
            continue
        latest[(galaxy_id, user_id)] = Answer(label_id, galaxy_id, user_id, kind, class_index, value)
    return latest


LABEL_FIELDS = ("id", "galaxy_id", "user_id", "kind", "class_index", "value", "undoes_id")


def task_answers(task: Task, galaxy_ids=None, user=None) -> dict[tuple[int, int], Answer]:
    """Current answers in a task, optionally only for some galaxies or one user."""
    qs = Label.objects.filter(task=task)
    if galaxy_ids is not None:
        qs = qs.filter(galaxy_id__in=list(galaxy_ids))
    if user is not None:
        qs = qs.filter(user=user)
    return current_answers(qs.values_list(*LABEL_FIELDS))


def answer_counts(task: Task, user) -> dict[str, int]:
    """{kind: how many} of one person's current answers in a task (kinds with none left out):
    current_answers()'s rule counted by the database, so a reply reads a row per kind, not the
    person's whole history.  A label counts when it is not an UNDO, no UNDO retracts it, and no
    newer label of the person on the galaxy does either."""
    undone = Label.objects.filter(undoes=OuterRef("pk"))
    newer = (Label.objects.filter(task=task, user=user, galaxy_id=OuterRef("galaxy_id"), id__gt=OuterRef("id"))
             .exclude(kind=Label.Kind.UNDO).exclude(Exists(undone)))
    current = (Label.objects.filter(task=task, user=user).exclude(kind=Label.Kind.UNDO)
               .exclude(Exists(undone)).exclude(Exists(newer)))
    return dict(current.order_by().values("kind").annotate(n=Count("id")).values_list("kind", "n"))


def validate_answer(task: Task, kind: str, class_index, value) -> tuple[int | None, float | None]:
    """Check a label against the task; returns the (class_index, value) to store."""
    if kind not in (Label.Kind.VALUE, Label.Kind.UNSURE, Label.Kind.SKIP):
        raise LabelError(f"kind must be value, unsure or skip, not {kind!r}")
    if kind == Label.Kind.UNSURE and not task.allow_unsure:
        raise LabelError("this task has no 'unsure' answer")
    if kind != Label.Kind.VALUE:
        return None, None
    if task.is_classification:
        try:
            index = int(class_index)
        except (TypeError, ValueError):
            raise LabelError("class_index must be an integer") from None
        if not 0 <= index < len(task.classes):
            raise LabelError(f"class_index {index} is out of range: this task has {len(task.classes)} classes")
        return index, None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"value must be a number ({task.target_name or 'target'})") from None
    if not math.isfinite(number):
        raise LabelError("value must be a finite number")
    if task.value_min is not None and number < task.value_min:
        raise LabelError(f"value {number:g} is below the task's minimum {task.value_min:g} {task.unit}".strip())
    if task.value_max is not None and number > task.value_max:
        raise LabelError(f"value {number:g} is above the task's maximum {task.value_max:g} {task.unit}".strip())
    return None, number


def task_galaxy(task: Task, galaxy_id) -> Galaxy:
    """The galaxy, which must belong to one of the task's surveys."""
    found = task_galaxy_ids(task, [galaxy_id])[0]
    if isinstance(found, LabelError):
        raise found
    return Galaxy(pk=found)


def task_galaxy_ids(task: Task, galaxy_ids) -> list[int | LabelError]:
    """Per given id, in order: the galaxy's id when it belongs to one of the task's surveys, else
    the LabelError saying why not.  Two queries however many ids."""
    parsed = []
    for given in galaxy_ids:
        try:
            parsed.append(int(given))
        except (TypeError, ValueError):
            parsed.append(None)
    survey_of = dict(Galaxy.objects.filter(pk__in={g for g in parsed if g is not None})
                     .values_list("id", "survey_id"))
    allowed = set(task.surveys.values_list("pk", flat=True))
    out: list[int | LabelError] = []
    for given, pk in zip(galaxy_ids, parsed):
        if pk not in survey_of:
            out.append(LabelError(f"no galaxy {given!r}"))
        elif survey_of[pk] not in allowed:
            out.append(LabelError(f"galaxy {pk} is not in a survey of task {task.name!r}"))
        else:
            out.append(pk)
    return out


def record_label(task: Task, galaxy_id, user, kind: str = Label.Kind.VALUE, class_index=None,
                 value=None, source: str = "") -> Label:
    """Append a person's answer and update its queue item (``source``: where an imported
    label came from, see services/label_import.py; blank for answers given in the app).

    Starting an automatic round is the caller's decision (rounds.maybe_start_auto_round),
    so that this module never calls back into rounds."""
    class_index, value = validate_answer(task, kind, class_index, value)
    galaxy = task_galaxy(task, galaxy_id)
    with transaction.atomic():
        label = Label.objects.create(task=task, galaxy=galaxy, user=user, kind=kind,
                                     class_index=class_index, value=value, source=source)
    _after_answer(task, [galaxy.pk])
    return label


MAX_BULK = 5000   # rows in one bulk request (the JSON body cap allows about this many)


class BulkLabelError(LabelError):
    """Some rows of a bulk request were refused; nothing was stored.  ``errors`` lists
    ``{"row", "galaxy_id", "error"}`` for each refused row (row counts from 0)."""

    def __init__(self, errors: list[dict], n_rows: int):
        first = "; ".join(f"row {e['row']}: {e['error']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"{len(errors)} of {n_rows} labels were refused and none was stored: {first}{more}")
        self.errors = errors


def class_index_of(task: Task, name) -> int:
    """The index of a class named ``name`` (case-insensitive) in a classification task."""
    names = [n.lower() for n in task.class_names]
    try:
        return names.index(str(name).strip().lower())
    except ValueError:
        raise LabelError(f"unknown class {name!r}; the task's classes are {', '.join(task.class_names)}") from None


def record_labels(task: Task, user, rows: list[dict], source: str = "") -> list[Label]:
    """Record many answers at once (e.g. an expert's labels), all or nothing.

    Each row is ``{"galaxy_id", "kind" (value/unsure, default value), "class_index" or "class"
    (a class name), "value"}``, checked like one label; a refused row raises BulkLabelError
    naming every refused row, and nothing is stored.  A galaxy named twice gets both rows, in
    order, so the later one counts, as two single labels would.  ``source``: stored on every
    label (the caller passes that source's system user, label_import.source_user).

    A fixed number of queries whatever the row count: the galaxies are looked up together,
    the labels inserted by one bulk_create, the queue items refreshed by refresh_queue_items."""
    if len(rows) > MAX_BULK:
        raise LabelError(f"at most {MAX_BULK} labels per request (got {len(rows)})")
    galaxies = task_galaxy_ids(task, [row.get("galaxy_id") for row in rows])
    errors, labels = [], []
    for i, (row, galaxy) in enumerate(zip(rows, galaxies)):
        try:
            kind = row.get("kind") or Label.Kind.VALUE
            class_index, value = validate_answer(task, kind, _bulk_class_index(task, row), row.get("value"))
            if isinstance(galaxy, LabelError):
                raise galaxy
        except LabelError as exc:
            errors.append({"row": i, "galaxy_id": row.get("galaxy_id"), "error": str(exc)})
            continue
        labels.append(Label(task=task, galaxy_id=galaxy, user=user, kind=kind, class_index=class_index,
                            value=value, source=source))
    if errors:
        raise BulkLabelError(errors, len(rows))
    with transaction.atomic():
        Label.objects.bulk_create(labels)   # ids in row order (RETURNING on PostgreSQL and SQLite)
    _after_answer(task, [label.galaxy_id for label in labels])
    return labels


def _bulk_class_index(task: Task, row: dict):
    """A bulk row's class index, from "class_index" or a class name in "class" (both must agree)."""
    class_index = row.get("class_index")
    if row.get("class") is None:
        return class_index
    if not task.is_classification:
        raise LabelError("class is for classification tasks; give value")
    named = class_index_of(task, row["class"])
    if class_index is not None and int(class_index) != named:
        raise LabelError(f"class {row['class']!r} is not class_index {class_index}")
    return named


def _after_answer(task: Task, galaxy_ids: list[int]) -> None:
    """Queue bookkeeping once the label (or undo) is committed.

    Best effort against a database outage: the label is already stored, so the reply must
    say so rather than "not stored, retry" (a retry would add a second label). A queue item
    left leased is served again when its lease expires.
    """
    try:
        refresh_queue_items(task, galaxy_ids)
    except DATABASE_OUTAGE_ERRORS as exc:
        logging.getLogger(__name__).warning("label stored, bookkeeping skipped (database outage): %s", exc)


@dataclass(frozen=True)
class Undo:
    """A stored UNDO row and the answer it retracted."""
    undo_id: int
    undone: Answer


def undo_last(task: Task, user, galaxy_id=None) -> Undo | None:
    """Retract the person's most recent answer in the task (or on one galaxy); None if
    there is nothing left to undo.

    The retracted answer is returned as read before the UNDO was inserted, so a reply never
    reads it back: if the database drops after the commit, the caller still answers "undone"
    instead of "not stored, retry" (a retry would retract one answer too many).
    """
    rows = Label.objects.filter(task=task, user=user)
    if galaxy_id is not None:
        rows = rows.filter(galaxy_id=galaxy_id)
    values = list(rows.values_list(*LABEL_FIELDS))
    live = current_answers(values)
    if not live:
        return None
    target = max(live.values(), key=lambda a: a.label_id)
    undo = Label.objects.create(task=task, galaxy_id=target.galaxy_id, user=user, kind=Label.Kind.UNDO,
                                undoes_id=target.label_id)
    _after_answer(task, [target.galaxy_id])
    return Undo(undo_id=undo.pk, undone=target)


def refresh_queue_item(task: Task, galaxy_id: int) -> None:
    """Mark the galaxy's queue item done once enough people answered (or not done after an undo)."""
    refresh_queue_items(task, [galaxy_id])


def refresh_queue_items(task: Task, galaxy_ids) -> None:
    """refresh_queue_item() for many galaxies: one read of their labels and at most two UPDATEs."""
    galaxy_ids = set(galaxy_ids)
    if not galaxy_ids:
        return
    voters: dict[int, int] = {}
    for answer in task_answers(task, galaxy_ids).values():
        if answer.kind in ANSWER_KINDS:
            voters[answer.galaxy_id] = voters.get(answer.galaxy_id, 0) + 1
    done = {g for g in galaxy_ids if voters.get(g, 0) >= task.votes_per_galaxy}
    for ids, is_done in ((done, True), (galaxy_ids - done, False)):
        if ids:
            QueueItem.objects.filter(task=task, galaxy_id__in=ids).update(done=is_done, leased_by=None,
                                                                          leased_until=None)
