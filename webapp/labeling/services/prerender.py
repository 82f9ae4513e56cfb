"""Pre-render what the labeling page will ask for, so that its first request is a file read.

For each queued galaxy the queue API (api.queue_item_dict) hands the page a card of
content-addressed thumbnail URLs (catalog/services/static_thumbs.py), and static/js/labeling.js
preloads what the page shows the moment an item arrives (preloadItem):
- ``image_url``: the large colour composite on stage (stage_px(): 2x the cutout, at most 512 px);
- ``strip.url``: ONE sprite atlas per reply (add_strips) holding each item's small composite
  (``thumb_url``, the band strip and "your last answers") and, on surveys with two or more
  bands, its single-band images (``bands[].url``), all at STRIP_PX.  The atlas is built from the
  pre-rendered files.  Without a strip (more than atlas.MAX_MEMBERS members) the page preloads
  ``thumb_url`` and ``bands[].url`` one by one instead.
``composite_url`` (the galaxy page's size) and ``bands[].large_url`` (shown only when a person
clicks a band) are not preloaded, so they are not pre-rendered either.

After a refill job has queued its batch (services/queue.py, run_refill_job), prerender_queue()
renders those files for the top PRERENDER_ITEMS of the task's queue, in queue order:
- local image stores: render.render_missing_variants() per survey and chunk, one store read
  for all variants; files already on disk are skipped (a re-run is a stat per file);
- remote-cutout surveys: their cutouts are fetched into remote_cutouts' cache one at a time
  through remote_cutouts.get_cutout(), so inside its CUTOUT_CONCURRENCY slots, at most
  PRERENDER_REMOTE_ITEMS of them, and a survey is left alone after REMOTE_FAILURES failed
  fetches (a service that is down is not asked hundreds of times).
All of it stops at PRERENDER_SECONDS.  Pre-rendering is best effort: an error is logged and the
rest goes on, and the caller never fails a refill for it.
"""
from __future__ import annotations

import logging
import time
from itertools import groupby

from webapp.catalog.models import Galaxy, Survey
from webapp.catalog.services import atlas, remote_cutouts, render
from webapp.labeling.models import QueueItem, Task

log = logging.getLogger(__name__)

# The sizes of the queue API's card: {card key: px}.  api.queue_item_dict builds the card from
# these, and this module renders from them, so the two cannot drift apart.
PAGE_THUMBS = {"composite_url": 320, "image_url": 512, "thumb_url": 96}   # 512 is the renderer's maximum
# The band strip's cells (64 px buttons; 56 px in the recent strip): 96 px for hi-dpi screens, the
# same files as the composite thumbnail's size, so one atlas per reply holds both (add_strips).
STRIP_PX = 96
PAGE_BANDS = {"url": STRIP_PX, "large_url": 512}
MIN_STAGE_PX = 128    # the on-stage composite is never rendered smaller than this (stage_px)
# What labeling.js shows of each galaxy at once, so what is rendered ahead: the stage image, and the
# thumbnail and band images that its strip atlas is built from (or that it preloads one by one).
PRELOADED_THUMBS = ("image_url", "thumb_url")
PRELOADED_BANDS = ("url",)

# A few hundred galaxies: far more than one labeller answers before the next refill (the page
# prefetches 10 at a time; a batch is task.batch_size, 20 by default), yet about 1,300 PNGs per
# refill at most (5 files a galaxy on a 3-band survey), a few seconds of a cpu worker.
PRERENDER_ITEMS = 256
# Remote cutouts cost a request to someone else's service each (2 per galaxy): fetch only the
# next page-loads' worth ahead (the page fetches 10 galaxies at a time).
PRERENDER_REMOTE_ITEMS = 40
REMOTE_FAILURES = 3      # failed fetches after which a survey's cutouts are left to the page
PRERENDER_SECONDS = 60.0  # wall-clock budget; the rest is rendered on first request as before
CHUNK = 32               # galaxies per store read (queue order is kept across chunks)


def stage_px(survey) -> int:
    """The on-stage composite's size for this survey: twice the stored cutout's side, within
    [MIN_STAGE_PX, PAGE_THUMBS["image_url"]].  The page scales (and zooms) the image in the browser;
    a server-side upscale past 2x adds no detail, yet a 512 px render of a 64 px cutout cost
    29 ms and 232 KB against 4 ms and ~25 KB at 128 px (the largest render cost of the load test).
    Remote-cutout surveys keep the full size: the cutout service renders it from its own pixels."""
    full = PAGE_THUMBS["image_url"]
    shape = survey.image_shape if render.has_local_store(survey) else None
    if not shape or len(shape) < 4:
        return full
    return int(min(full, max(MIN_STAGE_PX, 2 * max(int(shape[2]), int(shape[3])))))


def page_thumbs(survey) -> dict[str, int]:
    """PAGE_THUMBS for this survey's cards (the stage image sized by stage_px)."""
    return {**PAGE_THUMBS, "image_url": stage_px(survey)}


def page_variants(survey) -> list[tuple[str, int]]:
    """(band stem, px) of every file labeling.js preloads for one galaxy of this survey."""
    thumbs = page_thumbs(survey)
    out = [("composite", thumbs[key]) for key in PRELOADED_THUMBS]
    if render.has_local_store(survey):
        n_bands = int(survey.image_shape[1]) if survey.image_shape else len(survey.bands or [])
        if n_bands > 1:     # browse.galaxy_card shows no band strip for one band
            out += [(f"b{i}", PAGE_BANDS[key]) for key in PRELOADED_BANDS for i in range(n_bands)]
    return out


def top_of_queue(task: Task, limit: int) -> list[int]:
    """Galaxy ids of the first ``limit`` queue items nobody has finished, in the order the page
    gets them (rank, then id)."""
    return list(QueueItem.objects.filter(task=task, done=False).order_by("rank", "id")
                .values_list("galaxy_id", flat=True)[:limit])


def prerender_queue(task: Task, limit: int = PRERENDER_ITEMS, seconds: float = PRERENDER_SECONDS) -> dict:
    """Render (or fetch) the preloaded images of the top ``limit`` queued galaxies; returns
    {"galaxies", "rendered", "fetched", "failed", "stopped"} for the job's result."""
    deadline = time.monotonic() + seconds
    ids = top_of_queue(task, limit)
    galaxies = {g.pk: g for g in Galaxy.objects.filter(pk__in=ids).only(
        "id", "survey_id", "image_index", "ra", "dec", "source_id")}
    surveys = {s.pk: s for s in Survey.objects.filter(pk__in={g.survey_id for g in galaxies.values()})}
    ordered = [galaxies[g] for g in ids if g in galaxies]
    counts = {"galaxies": len(ordered), "rendered": 0, "fetched": 0, "failed": 0, "stopped": ""}
    remote_left = {pk: PRERENDER_REMOTE_ITEMS for pk in surveys}
    remote_failures = {pk: 0 for pk in surveys}
    for lo in range(0, len(ordered), CHUNK):
        if time.monotonic() > deadline:
            counts["stopped"] = f"time budget of {seconds:g} s spent"
            break
        chunk = sorted(ordered[lo:lo + CHUNK], key=lambda g: g.survey_id)
        for survey_id, members in groupby(chunk, key=lambda g: g.survey_id):
            survey, members = surveys[survey_id], list(members)
            try:
                if render.has_local_store(survey) and survey.has_images:
                    counts["rendered"] += render.render_missing_variants(
                        survey, [g.image_index for g in members], page_variants(survey))
                elif survey.remote_pixels:
                    members = members[:remote_left[survey_id]]
                    remote_left[survey_id] -= len(members)
                    _fetch_remote(survey, members, counts, remote_failures, deadline)
            except Exception:   # best effort: the page renders what is missing on first request
                counts["failed"] += len(members)
                log.exception("task %s: pre-rendering %d thumbnails of survey %s failed; going on",
                              task.pk, len(members), survey.slug)
    return counts


def _fetch_remote(survey, galaxies, counts: dict, failures: dict, deadline: float) -> None:
    """Fetch the page's composites of these galaxies into the remote cutout cache, one at a time."""
    for galaxy in galaxies:
        for _band, size in page_variants(survey):
            if failures[survey.pk] >= REMOTE_FAILURES or time.monotonic() > deadline:
                return
            cutout = remote_cutouts.galaxy_cutout(survey, galaxy, size)
            if cutout.ok:
                counts["fetched"] += 1
            else:
                failures[survey.pk] += 1
                counts["failed"] += 1


def add_strips(cards: list[dict], galaxies: dict) -> None:
    """One sprite atlas for the whole reply: each card's composite and band thumbnails, in card
    order, so that the page asks for 1 image per batch instead of 4-6 per galaxy (issue 16).
    Cards past atlas.MAX_MEMBERS members keep their single-image URLs only (no "strip")."""
    members, owners = [], []
    for card in cards:
        galaxy = galaxies[card["galaxy_id"]]
        own = [(galaxy, galaxy.survey)] + [(galaxy, galaxy.survey, f"b{b['index']}") for b in card["bands"]]
        if len(members) + len(own) > atlas.MAX_MEMBERS:
            break
        owners.append((card, len(members), len(own)))
        members += own
    sprites = atlas.layout(members, STRIP_PX)
    if sprites is None:
        return
    for card, start, count in owners:
        card["strip"] = {"url": sprites.url, "background_size": sprites.background_size,
                         "composite": sprites.positions[start], "bands": sprites.positions[start + 1:start + count]}
