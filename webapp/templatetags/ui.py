"""Template helpers available in every template (registered as builtins in settings)."""
from django import template
from django.utils.safestring import mark_safe

register = template.Library()

BOKEH_FILES = ("bokeh", "bokeh-gl", "bokeh-widgets", "bokeh-tables", "bokeh-api")


@register.simple_tag
def bokeh_js():
    """Script tags for the BokehJS bundled with the installed bokeh (no CDN)."""
    from bokeh import __version__
    tags = [f'<script src="/static/bokeh/static/js/{name}.min.js?v={__version__}"></script>' for name in BOKEH_FILES]
    return mark_safe("\n".join(tags))


@register.filter
def percent(value, digits=0):
    try:
        return f"{float(value) * 100:.{int(digits)}f}%"
    except (TypeError, ValueError):
        return ""


@register.filter
def get_item(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None
