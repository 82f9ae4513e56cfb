"""Template helpers available in every template (registered as builtins in settings)."""
import itertools

from django import template
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join, json_script

register = template.Library()

# The map page loads only what it uses (core + WebGL); other pages load the usual bundles.
BOKEH_FILES = ("bokeh", "bokeh-gl", "bokeh-widgets", "bokeh-tables", "bokeh-api")
_plot_ids = itertools.count(1)


@register.simple_tag
def bokeh_js(*names):
    """Script tags for the BokehJS bundled with the installed bokeh (no CDN).

    ``{% static %}`` names: hashed by the manifest storage, so a bokeh upgrade busts caches."""
    return format_html_join("\n", '<script src="{}"></script>',
                            ((static(f"bokeh/static/js/{name}.min.js"),) for name in names or BOKEH_FILES))


@register.simple_tag
def bokeh_plot(item, css_class="bokeh-plot"):
    """A bokeh ``json_item`` as a div plus its JSON in a json_script block (never an inline
    script); static/js/app.js embeds every ``[data-bokeh-item]`` with Bokeh.embed.embed_item."""
    if not item:
        return ""
    script_id = f"bokeh-item-{next(_plot_ids)}"
    return format_html('<div class="{}" data-bokeh-item="{}"></div>{}', css_class, script_id,
                       json_script(item, script_id))


@register.simple_block_tag
def keyboard_help(content):
    """The page's "?" overlay, ``#kbd-help`` (each page's script shows and hides it):
    ``{% keyboard_help %}<dl class="kv">…</dl>{% endkeyboard_help %}`` lists its shortcuts."""
    return format_html('<div class="help-overlay" id="kbd-help" hidden>\n'
                       '  <div class="help-card card" role="dialog" aria-label="Keyboard shortcuts">\n'
                       '    <h2>Keyboard shortcuts</h2>{}</div>\n</div>', content)


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
