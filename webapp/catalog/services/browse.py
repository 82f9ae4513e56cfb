"""Catalogue browsing: filter and sort galaxies by columns and metadata keys.

Filters are strings ``key<op>value`` with op one of ``:`` or ``=`` (equal),
``<`` and ``>`` (numeric keys only), e.g. ``gz1_label:elliptical`` or
``mag_r<17.5``.  Sorts are a key with an optional leading ``-``.  Keys are the
columns ``source_id``, ``ra``, ``dec``, ``image_index``, ``mag`` (the indexed magnitude promoted
from metadata, services.sky) or any metadata key.  Pages are keyset pages (services.paging).
Everything goes through Django's JSONField key transforms, which compile to
JSON_EXTRACT on SQLite and ``->`` on PostgreSQL.  Galaxy.truth never leaves
this module: querysets defer it and the dicts below do not contain it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Q

from webapp.catalog.models import Galaxy
from webapp.catalog.services import paging, static_thumbs

COLUMNS = paging.COLUMNS
KEY_SAMPLE = 200  # galaxies whose metadata keys populate the filter/sort dropdowns
OPS = {":": "=", "=": "=", "<": "<", ">": ">"}
_FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})\s*([:=<>])\s*(.+?)\s*$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
GALAXY_FIELDS = ("id", "survey_id", "source_id", "ra", "dec", "image_index", "mag", "metadata")


class BrowseError(ValueError):
    """A filter or sort the user typed cannot be applied; the message says why."""


@dataclass(frozen=True)
class Filter:
    key: str
    op: str      # "=", "<" or ">"
    value: str   # as typed; converted per key type when applied

    def __str__(self):
        return f"{self.key}{':' if self.op == '=' else self.op}{self.value}"


def valid_key(key: str) -> bool:
    # "__" would let a user reach Django lookups (metadata__x__contains, ...).
    return bool(_KEY_RE.match(key)) and "__" not in key


def metadata_keys(survey) -> dict[str, str]:
    """{key: "number" | "text"} of metadata keys seen in a sample of the survey (one query)."""
    kinds: dict[str, str] = {}
    rows = (Galaxy.objects.filter(survey=survey).order_by("image_index")
            .values_list("metadata", flat=True)[:KEY_SAMPLE])
    for metadata in rows:
        for key, value in (metadata or {}).items():
            if not valid_key(key) or value is None:
                continue
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            previous = kinds.get(key)
            kinds[key] = "number" if is_number and previous in (None, "number") else "text"
    return dict(sorted(kinds.items()))


def parse_filter(text: str) -> Filter:
    match = _FILTER_RE.match(text or "")
    if not match or not valid_key(match.group(1)):
        raise BrowseError(f"cannot read filter {text!r}; write key:value, key<number or key>number")
    return Filter(match.group(1), OPS[match.group(2)], match.group(3))


def parse_filter_safe(text: str) -> str:
    """The canonical text of a filter, or the text itself when it does not parse."""
    try:
        return str(parse_filter(text))
    except BrowseError:
        return text


def _number(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise BrowseError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BrowseError(f"{text!r} is not a finite number")
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def filter_q(flt: Filter, key_kinds: dict[str, str]) -> Q:
    """A Q object for one filter; ``key_kinds`` comes from metadata_keys()."""
    if flt.key in COLUMNS:
        kind, lookup = COLUMNS[flt.key], flt.key
    else:
        kind, lookup = key_kinds.get(flt.key), f"metadata__{flt.key}"
    if flt.op in "<>":
        if kind == "text":
            raise BrowseError(f"{flt.key} is not numeric; use {flt.key}:value")
        suffix = "lt" if flt.op == "<" else "gt"
        return Q(**{f"{lookup}__{suffix}": _number(flt.value)})
    if kind == "number":
        return Q(**{lookup: _number(flt.value)})
    if kind == "text" or flt.key in COLUMNS:
        return Q(**{lookup: flt.value})
    # Key not in the sample: match the value as text, or as a number/boolean when it reads as one.
    q = Q(**{lookup: flt.value})
    if flt.value.lower() in ("true", "false"):
        q |= Q(**{lookup: flt.value.lower() == "true"})
    else:
        try:
            q |= Q(**{lookup: _number(flt.value)})
        except BrowseError:
            pass
    return q


def parse_sort(sort: str | None) -> tuple[str, bool]:
    """("key", descending) from "key" / "-key"; "" means catalogue order."""
    sort = (sort or "").strip()
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key and not valid_key(key):
        raise BrowseError(f"cannot sort by {sort!r}")
    return key, descending


def filtered_galaxies(survey, filters: list[Filter], sort_key: str = "",
                      key_kinds: dict[str, str] | None = None):
    """The filtered, UNORDERED queryset of a survey's galaxies (truth deferred)."""
    kinds = key_kinds if key_kinds is not None else metadata_keys(survey)
    qs = Galaxy.objects.filter(survey=survey).only(*GALAXY_FIELDS)
    for flt in filters:
        qs = qs.filter(filter_q(flt, kinds))
    if sort_key and sort_key not in COLUMNS and sort_key not in kinds:
        raise BrowseError(f"no column or metadata key {sort_key!r} in {survey.slug}")
    return qs


def galaxies(survey, filters: list[Filter], sort_key: str = "", descending: bool = False,
             key_kinds: dict[str, str] | None = None):
    """The filtered queryset in page order: galaxies without the key last, id breaks ties."""
    qs = filtered_galaxies(survey, filters, sort_key, key_kinds)
    return paging.ordered_rows(qs, paging.SortOrder(sort_key, descending))


PER_PAGE_DEFAULT = 100


def grid_page(survey, filter_texts: list[str], sort: str | None, per=None, page_no=None, cursor: str = ""):
    """(page, context) of the catalogue grid and its API: a keyset page (services.paging).

    Raises BrowseError for any bad input (filters, sort, per, page number, cursor)."""
    key_kinds = metadata_keys(survey)
    filters = [parse_filter(f) for f in filter_texts if f.strip()]
    sort_key, descending = parse_sort(sort)
    qs = filtered_galaxies(survey, filters, sort_key, key_kinds)
    try:
        per_page = int(PER_PAGE_DEFAULT if per in (None, "") else per)
    except (TypeError, ValueError):
        raise BrowseError("per must be an integer") from None
    if not 1 <= per_page <= 500:
        raise BrowseError("per must be between 1 and 500")
    try:
        page = paging.keyset_page(qs, paging.SortOrder(sort_key, descending), per_page, cursor=cursor or "",
                                  page_number=page_no, survey=survey, filtered=bool(filters))
    except paging.PageError as exc:
        raise BrowseError(str(exc)) from None
    return page, {"filters": filters, "sort_key": sort_key, "descending": descending,
                  "key_kinds": key_kinds, "per_page": per_page}


# ----------------------------------------------------------------- public dicts (no truth)

def thumb_url(galaxy, survey, size: int = 96, band: str | None = None) -> str:
    """The content-addressed, immutable URL of a thumbnail (services/static_thumbs.py); ``band`` is
    None (the composite) or a band index.  Where there is no content key (a catalogue-only survey)
    or the queryset deferred a field the key reads, the revalidated /thumbs/<id>.png URL."""
    url = static_thumbs.immutable_url(galaxy, survey, size, "composite" if band is None else f"b{int(band)}")
    if url is not None:
        return url
    url = f"/thumbs/{galaxy.pk}.png?size={size}"
    if band is not None:
        url += f"&band={band}"
    # The checksum makes the URL change on re-ingest, so a day of browser caching is safe.
    return url + f"&v={(survey.image_checksum or 'x')[:8]}"


def galaxy_dict(galaxy, survey) -> dict:
    return {
        "id": galaxy.pk, "survey": survey.slug, "source_id": galaxy.source_id,
        "ra": galaxy.ra, "dec": galaxy.dec, "image_index": galaxy.image_index,
        "metadata": galaxy.metadata or {}, "url": f"/galaxies/{galaxy.pk}/",
        "thumb_url": thumb_url(galaxy, survey),
    }


def band_images(galaxy, survey, sizes: dict[str, int]) -> list[dict]:
    """One {"index", "name", key: URL, ...} per band of the survey's images, blue to red, with a
    single-band thumbnail URL under each key of ``sizes`` ({key: px}); unnamed bands read "band <i>"."""
    if not survey.image_shape and "store_path" not in survey.get_deferred_fields() and not survey.store_path:
        return []  # no local pixels (remote cutouts are one colour image)
    names = survey.bands or []
    n_bands = int(survey.image_shape[1]) if survey.image_shape else len(names)
    return [{"index": i, "name": names[i] if i < len(names) else f"band {i}",
             **{key: thumb_url(galaxy, survey, size=size, band=str(i)) for key, size in sizes.items()}}
            for i in range(n_bands)]


def field_arcsec(survey) -> float | None:
    """Width of a cutout on the sky in arcsec (pixel scale × side), None when the scale is unknown."""
    if survey.pixel_scale_arcsec and survey.image_shape:
        return survey.pixel_scale_arcsec * survey.image_shape[-1]
    # A survey whose cutouts come from a remote service (only() querysets that left the fields
    # out are not asked: that would cost a query per card).
    deferred = survey.get_deferred_fields()
    if not survey.image_shape and not deferred & {"cutout_url_template", "store_path", "cutout_field_arcsec"} \
            and survey.remote_pixels:
        from webapp.catalog.services.remote_cutouts import field_arcsec as remote_field
        return remote_field(survey)
    return None


def galaxy_card(galaxy, survey=None, *, thumbs: dict[str, int] | None = None,
                bands: dict[str, int] | None = None, detail: bool = True) -> dict:
    """The presentation card of a galaxy that the galaxy page, search, anomaly review and labeling
    build their tiles and panels from (never its truth).

    Always: id, source_id, survey (slug), survey_name, ra and dec (ICRS degrees), url (its page)
    and a composite thumbnail URL under each key of ``thumbs`` ({key: px}, default
    {"thumb_url": 96}).  ``detail``: also ra_hms/dec_dms (sexagesimal), metadata and
    field_arcsec.  ``bands`` ({key: px}): also "bands", the per-band images of band_images()
    when the survey has two or more bands, else [].  ``survey`` defaults to galaxy.survey.
    """
    survey = survey if survey is not None else galaxy.survey
    card = {"id": galaxy.pk, "source_id": galaxy.source_id, "survey": survey.slug, "survey_name": survey.name,
            "ra": galaxy.ra, "dec": galaxy.dec, "url": f"/galaxies/{galaxy.pk}/"}
    if detail:
        card["ra_hms"], card["dec_dms"] = sexagesimal(galaxy.ra, galaxy.dec)
        card.update(metadata=galaxy.metadata or {}, field_arcsec=field_arcsec(survey))
    for key, size in (thumbs if thumbs is not None else {"thumb_url": 96}).items():
        card[key] = thumb_url(galaxy, survey, size=size)
    if bands is not None:
        images = band_images(galaxy, survey, bands)
        card["bands"] = images if len(images) > 1 else []
    return card


def survey_dict(survey) -> dict:
    return {
        "id": survey.pk, "name": survey.name, "slug": survey.slug, "description": survey.description,
        "bands": survey.bands, "image_kind": survey.image_kind,
        "pixel_scale_arcsec": survey.pixel_scale_arcsec, "psf_fwhm_arcsec": survey.psf_fwhm_arcsec,
        "zero_points": survey.zero_points, "depth": survey.depth, "provenance": survey.provenance,
        "is_simulated": survey.is_simulated, "status": survey.status, "n_galaxies": survey.n_galaxies,
        "image_shape": survey.image_shape, "image_checksum": survey.image_checksum,
        "url": f"/surveys/{survey.slug}/", "api_galaxies_url": f"/api/surveys/{survey.slug}/galaxies/",
    }


def sexagesimal(ra: float | None, dec: float | None) -> tuple[str, str]:
    """("hh:mm:ss.ss", "±dd:mm:ss.s") of ICRS degrees.

    Integer arithmetic on rounded hundredths of a second of time (RA) and tenths of an arcsecond
    (Dec), so a carry never prints "60".  Written here instead of astropy's Angle.to_string because
    a SkyCoord costs about 1.5 ms per galaxy, a third of the labeling queue's CPU (issue 16);
    tests/catalog/test_sexagesimal.py checks it against astropy.  RA wraps at 24 h ("00:00:00.00",
    where astropy prints "24:00:00.00")."""
    if ra is None or dec is None:
        return "", ""
    centis = round((float(ra) % 360.0) / 15.0 * 360_000) % (24 * 360_000)
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6_000)
    ra_text = f"{hours:02d}:{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"
    tenths = round(abs(float(dec)) * 36_000)
    degrees, rest = divmod(tenths, 36_000)
    minutes, rest = divmod(rest, 600)
    sign = "-" if float(dec) < 0 else "+"
    return ra_text, f"{sign}{degrees:02d}:{minutes:02d}:{rest // 10:02d}.{rest % 10}"
