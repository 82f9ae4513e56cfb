"""URLs the shared JavaScript needs, reversed from URL names (never written as literals in JS).

base.html renders them with ``json_script`` as ``#ls-urls``; static/js/app.js reads them into
``LS.urls``.  A URL with an id in it is a template with ``{id}`` where the id goes:
``LS.url("galaxy_api", 42)`` gives ``/api/galaxies/42/``.
"""
from __future__ import annotations

from django.urls import NoReverseMatch, reverse

# Reversed with this id, which is then replaced by "{id}" (no real URL contains it).
_PLACEHOLDER = 987654321

# name in LS.urls: (URL name, takes an id)
JS_URLS = {
    "jobs_api": ("jobs:api_list", False),
    "job_api": ("jobs:api_detail", True),
    "galaxy": ("catalog:galaxy_detail", True),
    "galaxy_api": ("catalog:api_galaxy_detail", True),
    "thumbnail": ("catalog:thumbnail", True),
    "thumb_atlas_api": ("catalog:api_thumb_atlas", False),   # static/js/map_panels.js selection drawer
    "task_enqueue_api": ("labeling:api_enqueue", True),
    "samp_link": ("interop:samp_link", False),    # static/js/samp.js
    "samp_rows": ("interop:samp_rows", False),
}


def url_template(name: str, with_id: bool) -> str:
    """The path of URL `name`; with ``{id}`` standing for its one integer argument."""
    if not with_id:
        return reverse(name)
    return reverse(name, args=[_PLACEHOLDER]).replace(str(_PLACEHOLDER), "{id}")


def _js_urls() -> dict:
    urls = {}
    for key, (name, with_id) in JS_URLS.items():
        try:
            urls[key] = url_template(name, with_id)
        except NoReverseMatch:  # an app that is not installed: its pages are absent too
            continue
    return urls


def js_urls(request):
    return {"js_urls": _js_urls()}
