"""{% load interop %}{% samp_scripts %}: the SAMP scripts of a page that sends to TOPCAT/Aladin.

The sampjs library comes from npm (package.json); where npm never ran, only static/js/samp.js
is included and its buttons say that SAMP is not installed, instead of a 404 or a broken page.
"""
from django import template
from django.templatetags.static import static
from django.utils.html import format_html

from webapp.staticfinders import vendor_available

register = template.Library()


@register.simple_tag
def samp_scripts():
    lib = format_html('<script src="{}"></script><script src="{}"></script>', static("js/samp_module_shim.js"),
                      static("vendor/sampjs/samp.js")) if vendor_available("sampjs/samp.js") else ""
    return format_html('{}<script src="{}"></script>', lib, static("js/samp.js"))


@register.simple_tag
def aladin_src():
    """The static URL of Aladin Lite's ES module, or "" where npm never installed it."""
    return static("vendor/aladin-lite/aladin.js") if vendor_available("aladin-lite/aladin.js") else ""
