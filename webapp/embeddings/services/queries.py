"""Similarity-search queries as the search page and the JSON API receive them: which embedding
set, a list of galaxy ids, an RA/Dec position, an uploaded image.

Each function takes the values a request carries (strings, an uploaded file), checks them,
and calls services/search.py (faiss), services/sky.py (astropy cross-match) or
services/upload.py (decode + embed).  Bad input raises search.SearchError, sky.SkyError or
upload.UploadError (HTTP 400); an unknown galaxy or set raises NotFound (404).  Nothing is
stored.
"""
from __future__ import annotations

from django.conf import settings

from webapp.catalog.models import Galaxy, Survey
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet
from webapp.embeddings.services import search, sky, upload
from webapp.embeddings.services.maps import latest_map, load_coords
from webapp.embeddings.services.vectors import load_embedding_set

DEFAULT_K = 48        # results on the search page (a 6-8 column grid)
PANEL_K = 12          # neighbours on the galaxy page and in the map's side panel
MAX_IDS = 500         # positives accepted by "more like these"


class NotFound(Exception):
    """404 with a message (JSON or page)."""


def parse_ids(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        ids = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise search.SearchError("ids must be comma-separated galaxy ids, e.g. 12,40,41") from None
    if len(ids) > MAX_IDS:
        raise search.SearchError(f"at most {MAX_IDS} galaxies, got {len(ids)}")
    if any(not 0 < g < 2**63 for g in ids):  # database integers are 64-bit
        raise search.SearchError("galaxy ids are positive 64-bit integers")
    return list(dict.fromkeys(ids))


def resolve_set(value, galaxy_id: int | None = None) -> EmbeddingSet:
    """The requested set, else the newest ready set containing the galaxy, else the newest ready set."""
    if value not in (None, ""):
        try:
            es = EmbeddingSet.objects.select_related("encoder").get(pk=int(value))
        except (ValueError, EmbeddingSet.DoesNotExist):
            raise NotFound(f"embedding set {value} does not exist") from None
        if es.status != ArtifactStatus.READY:
            raise search.SearchError(f"embedding set {es.pk} is {es.status}, not ready")
        return es
    if galaxy_id is not None:
        survey_id = Galaxy.objects.filter(pk=galaxy_id).values_list("survey_id", flat=True).first()
        if survey_id is None:
            raise NotFound(f"galaxy {galaxy_id} does not exist")
        es = search.latest_set_for(galaxy_id, survey_id)
        if es is None:
            raise NotFound(f"no ready embedding set contains galaxy {galaxy_id}; embed its survey first")
        return es
    es = search.ready_sets().select_related("encoder").order_by("-created_at", "-id").first()
    if es is None:
        raise NotFound("no embedding set is ready yet; train an encoder and embed a survey first")
    return es


def with_map_coords(es, cards, map_id) -> list[dict]:
    """Add x, y of the set's map (given id, else latest) so the map can highlight results."""
    given = str(map_id).isdigit() and int(map_id) < 2**63
    lm = es.maps.filter(pk=int(map_id), status=ArtifactStatus.READY).first() if given else latest_map(es)
    if lm is None:
        return cards
    coords = load_coords(lm)
    _, _, row_of = load_embedding_set(es)
    for card in cards:
        row = row_of.get(card["id"])
        if row is not None:
            card["x"], card["y"] = float(coords[row, 0]), float(coords[row, 1])
    return cards


def set_dict(es) -> dict:
    return {"id": es.pk, "name": str(es), "n": es.n, "dim": es.dim, "index": search.index_description(es)}


# ----------------------------------------------------------------- by position

def sky_query(es, ra_text, dec_text, max_sep_text, k) -> tuple[dict, list[dict]]:
    """(card of the nearest catalogue object, cards of its k look-alikes) for an RA/Dec text."""
    ra = sky.parse_angle(ra_text, "RA")
    dec = sky.parse_angle(dec_text, "Dec")
    sky.check_radec(ra, dec)
    try:
        max_sep = float(max_sep_text) if max_sep_text not in (None, "") else sky.DEFAULT_MAX_SEP_ARCSEC
    except ValueError:
        raise search.SearchError(f"max_sep must be a number of arcseconds, got {max_sep_text!r}") from None
    found = sky.nearest_object(es, ra, dec)
    if found is None:
        raise NotFound(f"no galaxy of embedding set {es.pk} has a sky position")
    gid, sep = found
    card = search.galaxy_cards([{"id": gid, "separation_arcsec": round(sep, 3)}], thumb_size=160)[0]
    if sep > max_sep:
        raise NotFound(f"no galaxy within {max_sep:g}″ of RA {ra:.5f}°, Dec {dec:+.5f}°; the nearest, "
                       f"{card['source_id']}, is {_arc(sep)} away")
    return card, search.galaxy_cards(search.nearest(es, gid, k))


def _arc(arcsec: float) -> str:
    return f"{arcsec:.1f}″" if arcsec < 60 else f"{arcsec / 60:.1f}′" if arcsec < 3600 else f"{arcsec / 3600:.2f}°"


# ----------------------------------------------------------------- by uploaded image

def check_body_size(content_length) -> None:
    """Refuse an upload by its Content-Length, before the body is parsed."""
    length = int(content_length or 0)
    if length > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        upload.check_upload_size(length)


def upload_query(image, set_value, survey_slug, crop, k):
    """(set, survey, prepared image, k nearest results) for an uploaded FITS/PNG/JPEG file:
    preprocessed like `survey_slug` of the set (default its first ready survey), embedded
    with the set's encoder, searched.  crop: the central fraction to keep; crop and k may be
    text (checked here, after the image)."""
    data = upload.read_upload(image)
    es = resolve_set(set_value)
    survey = _upload_survey(es, survey_slug)
    crop = crop or None
    try:
        crop = float(crop) if crop is not None else None
    except ValueError:
        raise upload.UploadError(f"crop must be a number in (0, 1], got {crop!r}") from None
    prepared = upload.prepare_upload(data, survey, crop)
    vector = upload.embed_prepared(es.encoder, prepared)
    return es, survey, prepared, search.nearest_to_vector(es, vector, search.check_k(k))


def _upload_survey(es, slug) -> Survey:
    surveys = list(es.surveys.filter(status=Survey.Status.READY))
    if not surveys:
        raise search.SearchError(f"embedding set {es.pk} has no ready survey to preprocess like")
    if slug:
        chosen = [s for s in surveys if s.slug == slug]
        if not chosen:
            raise search.SearchError(f"survey {slug!r} is not part of embedding set {es.pk} "
                                     f"({', '.join(s.slug for s in surveys)})")
        return chosen[0]
    return surveys[0]
