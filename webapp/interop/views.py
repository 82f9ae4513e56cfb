"""SAMP links, tables sent back over SAMP, and the sky view's HiPS overlay data.

  POST samp/link          (signed in) {"kind": ..., ...} -> {"url", "name", "mtype", "ids"?}
  GET  samp/t/<token>/<f> (no login: the signature is the authorisation, 10 minutes)
  POST samp/rows?set=<id> (signed in) VOTable bytes -> {"ids", "rows", "matched", "by"}
  GET  maps/<id>/hips.json?layer=<key>  Aladin Lite overlay: hips id, centre, points
"""
from __future__ import annotations

from django.http import HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from webapp.apikit import BodyError, JsonBody
from webapp.embeddings.models import ArtifactStatus, EmbeddingSet, LatentMap
from webapp.embeddings.services import hips
from webapp.embeddings.services.map_data import MapDataError
from webapp.interop import links, rows, tables

MAX_TABLE_BYTES = 50 * 1024 * 1024


def _bad(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-")[:80] or "table"


@require_POST
def samp_link(request):
    """A signed, absolute URL for TOPCAT/Aladin to fetch what the page is about to send."""
    try:
        body = JsonBody().parse_body(request)   # the API's one JSON parser: size cap, clear messages
    except BodyError as exc:
        return _bad(str(exc), exc.status)
    kind = body.get("kind")
    reply: dict = {"mtype": "table.load.votable", "expires_in": links.TTL_SECONDS}
    try:
        if kind == "ids":
            raw = body.get("galaxy_ids") or []
            payload, ids, cut = tables.ids_payload(raw.split(",") if isinstance(raw, str) else raw)
            name = body.get("name") or f"Latent Sky selection ({len(ids)})"
            reply.update(ids=ids, cut=cut)
        elif kind == "collection":
            payload, ids, cname = tables.collection_payload(request.user, body.get("id"))
            name = f"Latent Sky collection {cname}"
            reply.update(ids=ids)
        elif kind == "anomalies":
            query = body.get("query") or {}
            query = QueryDict(query).dict() if isinstance(query, str) else query  # "kind=interesting&scope=all"
            payload, name = tables.anomalies_payload(request.user, body.get("id"), query)
        elif kind == "task":
            payload, name = tables.task_payload(body.get("id"), body.get("table") or "catalogue")
        elif kind == "cutout":
            payload, name = tables.cutout_payload(body.get("id"))
            reply["mtype"] = "image.load.fits"
        else:
            return _bad("kind must be one of ids, collection, anomalies, task, cutout")
    except (TypeError, ValueError) as exc:  # LinkError is a ValueError; int() of a bad id too
        return _bad(str(exc))
    ext = "fits" if reply["mtype"] == "image.load.fits" else "vot"
    reply.update(url=links.absolute_url(request, payload, f"{_safe(name)}.{ext}"), name=name)
    return JsonResponse(reply)


@require_GET
def samp_table(request, token, filename):
    """Serves a signed link's table or cutout, without login (TOPCAT has no session cookie)."""
    try:
        payload = links.unsign(token)
        body, content_type = tables.render(payload)
    except links.LinkError as exc:
        return HttpResponse(str(exc), status=403, content_type="text/plain")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{_safe(filename)}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
def samp_rows(request):
    """Galaxies of an embedding set named by a VOTable's rows (ids, or RA/Dec cross-matched)."""
    es = EmbeddingSet.objects.filter(pk=_int(request.GET.get("set")), status=ArtifactStatus.READY).first()
    if es is None:
        return _bad("set must be a ready embedding set id")
    if len(request.body) > MAX_TABLE_BYTES:
        return _bad("the table is too large", 413)
    try:
        return JsonResponse(rows.galaxies_from_votable(es, request.body))
    except rows.RowsError as exc:
        return _bad(str(exc))


@require_GET
def sky_overlay(request, map_id):
    lm = get_object_or_404(LatentMap.objects.select_related("embedding_set"), pk=map_id,
                           status=ArtifactStatus.READY)
    try:
        return JsonResponse(hips.overlay(lm, request.GET.get("layer") or None))
    except MapDataError as exc:
        return _bad(str(exc))


def _int(value) -> int:
    return int(value) if value and str(value).isdigit() else 0
