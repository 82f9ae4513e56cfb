"""Keyset pages of a survey's galaxies: every page costs what page 1 costs.

A page is addressed by a **cursor** (``?cursor=...`` in the URL): the sort value and id of the
row just before it (or just after it, for "previous"), so the query is ``WHERE (key, id) > (v, i)
ORDER BY key, id LIMIT per`` on the (survey, key, id) index, never ``OFFSET``.  Rows whose sort
value is missing come last, in id order; they form a second segment the cursor can point into,
so ordering by an indexed column never needs ``NULLS LAST`` (which an ascending index cannot serve
backwards).  Ties on the sort value are broken by id, so pages neither repeat nor skip rows.

Page numbers stay for the first ``OFFSET_LIMIT`` rows (``?page=N``, cheap there); deeper pages
are reached through the cursor links, which carry the page number along for display.

Counts: exact on SQLite and for small results; on PostgreSQL a result the planner estimates
above ``EXACT_COUNT_LIMIT`` rows is counted by the planner's estimate (``EXPLAIN``) and shown as
"about N", except the unfiltered survey whose size ``Survey.n_galaxies`` already holds.

Sorting by an indexed column (catalogue order, source_id, ra, dec, mag) is O(page) at any
depth; sorting by an arbitrary metadata key has no index, so the database still reads every
matching row once per page (no OFFSET, but O(N)).
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F, Q
from django.db.models.expressions import OrderBy
from django.db.models.fields.json import KeyTransform

OFFSET_LIMIT = 10_000         # ?page=N allowed while (N - 1) * per stays within this many rows
EXACT_COUNT_LIMIT = 50_000    # PostgreSQL: count exactly when the planner expects fewer rows
# Galaxy columns a page can sort and filter on (browse.py's keys), and their kinds.
COLUMNS = {"source_id": "text", "ra": "number", "dec": "number", "image_index": "number", "mag": "number"}
NULLABLE_COLUMNS = {"ra", "dec", "mag"}
UNIQUE_COLUMNS = {"image_index", "source_id"}   # unique within a survey: no tie-break needed


class PageError(ValueError):
    """A page or cursor that cannot be served; the message says why."""


@dataclass
class KeysetPage:
    """One page, shaped like django.core.paginator.Page where templates read it."""
    object_list: list
    number: int
    per_page: int
    count: int
    count_is_estimate: bool
    next_cursor: str = ""
    prev_cursor: str = ""
    paginator: "KeysetPage" = field(init=False, repr=False)

    def __post_init__(self):
        self.paginator = self   # page.paginator.count / num_pages, as with Django's Page

    @property
    def num_pages(self) -> int:
        return max(1, math.ceil(self.count / self.per_page)) if self.count else 1

    def has_next(self) -> bool:
        return bool(self.next_cursor)

    def has_previous(self) -> bool:
        return bool(self.prev_cursor) or self.number > 1

    def start_index(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.object_list else 0

    def end_index(self) -> int:
        return self.start_index() + len(self.object_list) - 1 if self.object_list else 0

    def __iter__(self):
        return iter(self.object_list)

    def __len__(self):
        return len(self.object_list)


# ----------------------------------------------------------------- the order

@dataclass(frozen=True)
class SortOrder:
    key: str            # "" = catalogue order (image_index)
    descending: bool

    @property
    def column(self) -> str:
        return self.key or "image_index"

    @property
    def is_metadata(self) -> bool:
        return self.column not in COLUMNS

    @property
    def path(self) -> str:
        return f"metadata__{self.column}" if self.is_metadata else self.column

    @property
    def expr(self):
        return KeyTransform(self.column, "metadata") if self.is_metadata else F(self.column)

    @property
    def unique(self) -> bool:
        return self.column in UNIQUE_COLUMNS

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key

    def present(self) -> Q | None:
        """Rows that have a sort value (segment A); None when every row has one."""
        if self.is_metadata:
            return Q(**{f"{self.path}__isnull": False}) & ~Q(**{self.path: None})
        return Q(**{f"{self.column}__isnull": False}) if self.column in NULLABLE_COLUMNS else None

    def value_of(self, galaxy):
        if self.is_metadata:
            return (galaxy.metadata or {}).get(self.column)
        return getattr(galaxy, self.column)


def ordered_rows(qs, order: SortOrder):
    """``qs`` in the full page order (present values, then missing ones by id): for OFFSET pages."""
    desc = order.descending
    by = [OrderBy(order.expr, descending=desc, nulls_last=True)]
    if not order.unique:
        by.append("-id" if desc else "id")
    return qs.order_by(*by)


def _segment_a(qs, order: SortOrder, after, reverse: bool, limit: int) -> list:
    present = order.present()
    if present is not None:
        qs = qs.filter(present)
    desc = order.descending != reverse
    if after is not None:
        value, pk = after
        op = "lt" if desc else "gt"
        if order.unique:
            qs = qs.filter(**{f"{order.path}__{op}": value})
        elif not order.is_metadata:
            # A row-value comparison is one index bound on (survey, column, id), so even a long
            # run of equal values is entered at the cursor rather than scanned from its start.
            table = connection.ops.quote_name(qs.model._meta.db_table)
            column = f"{table}.{connection.ops.quote_name(order.column)}"
            qs = qs.extra(where=[f"({column}, {table}.{connection.ops.quote_name('id')}) "
                                 f"{'<' if desc else '>'} (%s, %s)"], params=[value, pk])
        else:   # the first condition is implied by the second; it gives the scan its start
            qs = qs.filter(Q(**{f"{order.path}__{op}e": value}),
                           Q(**{f"{order.path}__{op}": value}) | Q(**{f"id__{op}": pk}))
    by = [OrderBy(order.expr, descending=desc)]
    if not order.unique:
        by.append("-id" if desc else "id")
    return list(qs.order_by(*by)[:limit])


def _segment_b(qs, order: SortOrder, after_pk, reverse: bool, limit: int) -> list:
    present = order.present()
    if present is None or limit <= 0:
        return []
    qs = qs.exclude(present)
    desc = order.descending != reverse
    if after_pk is not None:
        qs = qs.filter(**{f"id__{'lt' if desc else 'gt'}": after_pk})
    return list(qs.order_by("-id" if desc else "id")[:limit])


def _fetch(qs, order: SortOrder, position: dict | None, backward: bool, limit: int, total: int | None = None) -> list:
    """Up to ``limit`` rows strictly after (or before) ``position`` in page order, nearest first.
    ``total``: the exact number of rows, when known (saves a query on a short first page)."""
    if not backward:
        if position is None or position["s"] == "a":
            after = None if position is None else (position["v"], position["i"])
            rows = _segment_a(qs, order, after, False, limit)
            if position is None and total is not None and len(rows) >= total:
                return rows
            return rows + _segment_b(qs, order, None, False, limit - len(rows))
        return _segment_b(qs, order, position["i"], False, limit)
    if position["s"] == "b":
        rows = _segment_b(qs, order, position["i"], True, limit)
        return rows + (_segment_a(qs, order, None, True, limit - len(rows)) if len(rows) < limit else [])
    return _segment_a(qs, order, (position["v"], position["i"]), True, limit)


# ----------------------------------------------------------------- cursors

def encode_cursor(order: SortOrder, galaxy, backward: bool, number: int) -> str:
    value = order.value_of(galaxy)
    present = value is not None
    data = {"k": order.text, "d": "p" if backward else "n", "s": "a" if present else "b",
            "v": value, "i": galaxy.pk, "n": number}
    raw = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: SortOrder) -> dict:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        ok = (isinstance(data, dict) and data.get("d") in ("n", "p") and data.get("s") in ("a", "b")
              and isinstance(data.get("i"), int) and isinstance(data.get("n"), int) and data["n"] >= 1
              and isinstance(data.get("v"), (int, float, str, bool, type(None))))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise PageError("this page link is damaged; start again from the first page")
    if data.get("k") != order.text:
        raise PageError("this page link belongs to another sort order; start again from the first page")
    return data


# ----------------------------------------------------------------- counts

def count_rows(qs, survey, filtered: bool) -> tuple[int, bool]:
    """(count, is_estimate) of ``qs``: see the module docstring."""
    if not filtered and survey is not None and survey.n_galaxies:
        # The survey's size is bookkept on ingest and import: never COUNT(*) ten million rows
        # (2.4 s at 10^7 on PostgreSQL, whose planner may not have seen a fresh import yet).
        return int(survey.n_galaxies), False
    if connection.vendor != "postgresql":
        return qs.count(), False
    estimate = planner_estimate(qs)
    if estimate <= EXACT_COUNT_LIMIT:
        return qs.count(), False
    return estimate, True


def planner_estimate(qs) -> int:
    """PostgreSQL's row estimate for ``qs`` (EXPLAIN, nothing executed)."""
    sql, params = qs.order_by().values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


# ----------------------------------------------------------------- a page

def keyset_page(qs, order: SortOrder, per_page: int, *, cursor: str = "", page_number=None,
                survey=None, filtered: bool = True) -> KeysetPage:
    """The page of ``qs`` (a survey's galaxies, filtered, unordered) that ``cursor`` or
    ``page_number`` names (neither: the first page)."""
    count, estimate = count_rows(qs, survey, filtered)
    position, backward, number = None, False, 1
    if cursor:
        data = decode_cursor(cursor, order)
        position, backward, number = data, data["d"] == "p", data["n"]
    elif page_number not in (None, ""):
        try:
            number = int(page_number)
        except (TypeError, ValueError):
            raise PageError("page must be a whole number") from None
        if number < 1:
            raise PageError("page must be 1 or more")
        if (number - 1) * per_page > OFFSET_LIMIT:
            raise PageError(f"page {number} is too deep to jump to (page numbers reach the first "
                            f"{OFFSET_LIMIT:,} rows); follow the Next links, or filter or sort instead")
    if position is None and number > 1:
        offset = (number - 1) * per_page
        rows = list(ordered_rows(qs, order)[offset:offset + per_page + 1])
        if not rows and offset:   # past the end, like Paginator.get_page: the last page
            number = max(1, math.ceil(count / per_page)) if not estimate else 1
            return keyset_page(qs, order, per_page, page_number=number if number > 1 else None,
                               survey=survey, filtered=filtered)
        has_more, rows = len(rows) > per_page, rows[:per_page]
        has_before = True
    elif backward:
        rows = _fetch(qs, order, position, True, per_page + 1)
        if len(rows) <= per_page:   # reached the start: show the first page as it is now
            return keyset_page(qs, order, per_page, survey=survey, filtered=filtered)
        rows = rows[:per_page][::-1]
        has_more, has_before = True, True
    else:
        rows = _fetch(qs, order, position, False, per_page + 1, None if estimate else count)
        has_more, rows = len(rows) > per_page, rows[:per_page]
        has_before = position is not None
    page = KeysetPage(rows, number, per_page, count, estimate)
    if rows and has_more:
        page.next_cursor = encode_cursor(order, rows[-1], False, number + 1)
    if rows and has_before and number > 1:
        page.prev_cursor = encode_cursor(order, rows[0], True, number - 1)
    if not has_more and not estimate:
        page.count = max(page.count, page.end_index())
    elif not has_more:   # the last page: the count is known exactly now
        page.count, page.count_is_estimate = page.end_index(), False
    return page


def cursor_before_index(image_index: int, number: int) -> str:
    """A catalogue-order cursor whose page starts at the first galaxy with index >= ``image_index``."""
    data = {"k": "", "d": "n", "s": "a", "v": image_index - 1, "i": 0, "n": number}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
