"""Cutout URL templates of surveys whose pixels come from a remote cutout service: the
placeholders, examples and validation (used by the Survey model field, the curator form, the
admin and ``manage.py set_cutout_url``).  Fetching lives in services/remote_cutouts.py.

A template is an http(s) URL with ``{ra} {dec}`` (ICRS degrees), ``{size}`` (pixels a side),
``{pixscale}`` (arcsec per pixel), ``{layer}`` and ``{source_id}`` placeholders, e.g. the public
Legacy Survey viewer or SDSS SkyServer ImgCutout below.  Format specs such as ``{ra:.6f}`` are
allowed; ``{{`` and ``}}`` are literal braces.
"""
from __future__ import annotations

import string
from urllib.parse import urlparse

from django.core.exceptions import ValidationError

PLACEHOLDERS = ("ra", "dec", "size", "pixscale", "layer", "source_id")
EXAMPLE_TEMPLATES = {
    "Legacy Survey viewer (DR10)": "https://www.legacysurvey.org/viewer/cutout.jpg?ra={ra}&dec={dec}"
                                   "&size={size}&layer={layer}&pixscale={pixscale}",
    "SDSS SkyServer ImgCutout (DR18)": "https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg"
                                       "?ra={ra}&dec={dec}&scale={pixscale}&width={size}&height={size}",
}
TEMPLATE_HELP = ("Remote cutout URL with {ra} {dec} {size} {pixscale} {layer} {source_id} placeholders, e.g. "
                 + EXAMPLE_TEMPLATES["Legacy Survey viewer (DR10)"] + " (layer ls-dr10, 0.262″/px) or "
                 + EXAMPLE_TEMPLATES["SDSS SkyServer ImgCutout (DR18)"] + ". Used only when the survey "
                 "has no local image store.")
MAX_TEMPLATE_LENGTH = 500


class TemplateError(ValueError):
    """A cutout URL template that cannot be used; the message says why."""


_SAMPLE = {"ra": 150.1, "dec": 2.2, "size": 96, "pixscale": 0.262, "layer": "ls-dr10", "source_id": "OBJ1"}


def validate_template(template: str) -> str:
    """The template, stripped; raises TemplateError for unknown placeholders or non-http(s) URLs.
    Blank is allowed (no remote cutouts)."""
    template = (template or "").strip()
    if not template:
        return ""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"the template is longer than {MAX_TEMPLATE_LENGTH} characters")
    allowed = " ".join("{%s}" % p for p in PLACEHOLDERS)
    fields = set()
    try:
        for _, field, _, conversion in string.Formatter().parse(template):
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                shown = "{%s}" % field if field else "{}"
                raise TemplateError(f"unknown placeholder {shown}; use {allowed} (write {{{{ and }}}} "
                                    "for literal braces)")
            if conversion is not None:
                raise TemplateError(f"placeholder {{{field}!{conversion}}}: conversions are not allowed")
            fields.add(field)
        sample = template.format(**_SAMPLE)
    except TemplateError:
        raise
    except (ValueError, IndexError, KeyError) as exc:
        raise TemplateError(f"cannot read the template: {exc}") from None
    parsed = urlparse(sample)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TemplateError("the template must be an http:// or https:// URL with a host")
    if not ({"ra", "dec"} <= fields or "source_id" in fields):
        raise TemplateError("the template needs {ra} and {dec} (or {source_id}), "
                            "otherwise every galaxy gets the same image")
    return template


def template_validator(value: str) -> None:
    """Model/form field validator of Survey.cutout_url_template."""
    try:
        validate_template(value)
    except TemplateError as exc:
        raise ValidationError(str(exc)) from None
