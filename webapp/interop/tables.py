"""What a signed SAMP link serves: VOTables of galaxies (a selection, a collection, an anomaly
list, a task's export) and a galaxy's FITS cutout.

Each ``*_payload`` checks what the signed-in user may see and returns the payload that
links.sign() puts in the URL; ``render(payload)`` turns a verified payload into bytes.
Galaxy tables carry galaxy_id (meta.id), survey, source_id, ra and dec (ICRS degrees, with
the pos.eq UCDs TOPCAT and Aladin use to plot them).
"""
from __future__ import annotations

import io

import numpy as np
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404

from webapp.interop.links import MAX_IDS, LinkError, pack_ids, unpack_ids

VOTABLE = "application/x-votable+xml"
FITS = "application/fits"


# ----------------------------------------------------------------- payloads (checked at sign time)

def ids_payload(galaxy_ids) -> tuple[dict, list[int], bool]:
    """(payload, ids in row order, cut) for a list of galaxy ids (a map selection)."""
    try:
        ids = sorted({int(g) for g in galaxy_ids})
    except (TypeError, ValueError):
        raise LinkError("galaxy_ids must be integers") from None
    if not ids:
        raise LinkError("nothing selected")
    cut = len(ids) > MAX_IDS
    ids = ids[:MAX_IDS]
    return {"k": "ids", "d": pack_ids(ids)}, ids, cut


def collection_payload(user, collection_id) -> tuple[dict, list[int], str]:
    from webapp.embeddings.models import Collection
    c = get_object_or_404(Collection, pk=int(collection_id), owner=user)
    ids = sorted(c.galaxies.values_list("id", flat=True)[:MAX_IDS])
    return {"k": "collection", "id": c.pk}, ids, c.name


ANOMALY_KEYS = ("scope", "kind", "min", "max", "method", "top")


def anomalies_payload(user, score_set_id, query: dict) -> tuple[dict, str]:
    from webapp.anomalies.models import ScoreSet
    from webapp.anomalies.services import export
    from webapp.embeddings.models import ArtifactStatus
    score_set = get_object_or_404(ScoreSet, pk=int(score_set_id), status=ArtifactStatus.READY)
    q = {k: str(query[k]) for k in ANOMALY_KEYS if query.get(k) not in (None, "")}
    try:
        flt = export.ReviewFilter.from_query(q, score_set, default_kind="interesting")
    except export.ExportError as exc:
        raise LinkError(str(exc)) from None
    return ({"k": "anomalies", "id": score_set.pk, "q": q, "u": user.pk},
            f"anomalies-set{score_set.pk}-{flt.kind or 'reviewed'}-{flt.scope}")


def task_payload(task_id, table: str) -> tuple[dict, str]:
    from webapp.labeling.models import Task
    from webapp.labeling.services import export
    task = get_object_or_404(Task, pk=int(task_id))
    if table not in export.TABLES:
        raise LinkError(f"table must be one of {list(export.TABLES)}")
    return {"k": "task", "id": task.pk, "t": table}, f"{task.name} {table}"


def cutout_payload(galaxy_id) -> tuple[dict, str]:
    from webapp.catalog.models import Galaxy
    g = get_object_or_404(Galaxy.objects.only("id", "source_id"), pk=int(galaxy_id))
    return {"k": "cutout", "id": g.pk}, f"galaxy {g.pk} ({g.source_id})"


# ----------------------------------------------------------------- rendering (after the signature)

def render(payload: dict) -> tuple[bytes, str]:
    kind = payload.get("k")
    if kind == "ids":
        return galaxies_votable(unpack_ids(payload["d"]), "Latent Sky selection"), VOTABLE
    if kind == "collection":
        from webapp.embeddings.models import Collection
        c = Collection.objects.filter(pk=payload["id"]).first()
        if c is None:
            raise LinkError("the collection is gone")
        ids = sorted(c.galaxies.values_list("id", flat=True)[:MAX_IDS])
        return galaxies_votable(ids, f"Latent Sky collection {c.name}"), VOTABLE
    if kind == "anomalies":
        from webapp.anomalies.models import ScoreSet
        from webapp.anomalies.services import export
        score_set = ScoreSet.objects.filter(pk=payload["id"]).first()
        user = get_user_model().objects.filter(pk=payload["u"]).first()
        if score_set is None or user is None:
            raise LinkError("the anomaly list is gone")
        flt = export.ReviewFilter.from_query(payload["q"], score_set, default_kind="interesting")
        return export.to_votable(export.reviewed_rows(score_set, user, flt), score_set), VOTABLE
    if kind == "task":
        from webapp.labeling.models import Task
        from webapp.labeling.services import export
        task = Task.objects.filter(pk=payload["id"]).first()
        if task is None:
            raise LinkError("the task is gone")
        table = export.catalogue_table(task) if payload["t"] == "catalogue" else export.labels_table(task)
        return export.render_table(table, "votable"), VOTABLE
    if kind == "cutout":
        return cutout_fits(payload["id"]), FITS
    raise LinkError("invalid link")


def galaxies_votable(galaxy_ids: list[int], description: str) -> bytes:
    """galaxy_id, survey, source_id, ra, dec for the ids, in the given order (missing ones dropped)."""
    from astropy.io.votable import from_table
    from astropy.table import Table

    from webapp.catalog.models import Galaxy

    info = {g: (slug, sid, ra, dec) for g, slug, sid, ra, dec in Galaxy.objects.filter(pk__in=galaxy_ids)
            .values_list("pk", "survey__slug", "source_id", "ra", "dec")}
    ids = [g for g in galaxy_ids if g in info]
    table = Table()
    table["galaxy_id"] = np.array(ids, dtype=np.int64)
    table["survey"] = np.array([info[g][0] for g in ids] or [""], dtype=str)[:len(ids)]
    table["source_id"] = np.array([info[g][1] for g in ids] or [""], dtype=str)[:len(ids)]
    table["ra"] = np.array([np.nan if info[g][2] is None else info[g][2] for g in ids], dtype=np.float64)
    table["dec"] = np.array([np.nan if info[g][3] is None else info[g][3] for g in ids], dtype=np.float64)
    table["ra"].unit = table["dec"].unit = "deg"
    table.meta["description"] = description
    votable = from_table(table)
    ucds = {"galaxy_id": "meta.id", "survey": "meta.dataset", "source_id": "meta.id;meta.main",
            "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main"}
    for field in votable.get_first_table().fields:
        field.ucd = ucds[field.name]
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def cutout_fits(galaxy_id: int) -> bytes:
    """The galaxy's pixels as FITS: (bands, H, W) float32 with a TAN WCS centred on its RA/Dec
    when the survey has a pixel scale (RGB surveys: the three colour planes)."""
    from astropy.io import fits

    from webapp.catalog.models import Galaxy
    from webapp.catalog.services.store_cache import read_images

    g = Galaxy.objects.select_related("survey").filter(pk=galaxy_id).first()
    if g is None:
        raise LinkError("the galaxy is gone")
    survey = g.survey
    image = np.asarray(read_images(survey.store_abspath, [g.image_index])[0], dtype=np.float32)  # (C, H, W)
    hdu = fits.PrimaryHDU(image[:, ::-1, :])  # FITS rows run bottom-up
    h = hdu.header
    h["OBJECT"] = (str(g.source_id)[:60], "survey catalogue id")
    h["SURVEY"] = (survey.slug[:60], "Latent Sky survey")
    h["LS_ID"] = (g.pk, "Latent Sky galaxy id")
    for i, band in enumerate(survey.bands or []):
        h[f"BAND{i + 1}"] = str(band)[:60]
    if g.ra is not None and g.dec is not None:
        h["RA"], h["DEC"] = (g.ra, "deg ICRS"), (g.dec, "deg ICRS")
        if survey.pixel_scale_arcsec:
            _, height, width = image.shape
            scale = survey.pixel_scale_arcsec / 3600.0
            h.update({"WCSAXES": 2, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
                      "CRVAL1": g.ra, "CRVAL2": g.dec, "CRPIX1": (width + 1) / 2.0, "CRPIX2": (height + 1) / 2.0,
                      "CDELT1": -scale, "CDELT2": scale, "RADESYS": "ICRS"})
    out = io.BytesIO()
    hdu.writeto(out)
    return out.getvalue()
