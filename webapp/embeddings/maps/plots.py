"""Bokeh figures of the map page: the latent map and the sky view, sharing one data source.

The figures are built empty and shipped as one bokeh json_item (a row: map, sky); static/
js/map.js embeds it, fills the shared ColumnDataSource ("points") with typed arrays from the
binary points endpoint, swaps colour layers on the shared LinearColorMapper ("mapper") and
puts density images and mosaics into the "overlay" sources.  Because both scatters draw
from the same source, a box or lasso selection in either figure selects the same galaxies
in the other (linked brushing).  The figures are built for WebGL; map.js switches the item
to bokeh's canvas renderer before embedding it in browsers whose WebGL is software-only
(about twice as fast there) or when the URL says ?backend=canvas.
"""
from __future__ import annotations

from bokeh.embed import json_item
from bokeh.layouts import row
from bokeh.models import (BoxSelectTool, ColorBar, ColumnDataSource, HoverTool, LassoSelectTool,
                          LinearColorMapper, PanTool, Range1d, ResetTool, WheelZoomTool)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

BACKGROUND = "#0b0f1a"
TEXT = "#8d99b3"
MISSING = "#4b5563"  # colour of galaxies with no value in the current layer
TOOLTIP = """
<div class="map-tip">
  <img src="/thumbs/@id{0}.png?size=96" width="96" height="96" alt="">
  <div class="map-tip-id">#@id{0}</div>
</div>
"""
def _tools(prefix: str):
    hover = HoverTool(name=f"{prefix}_hover", tooltips=TOOLTIP, point_policy="snap_to_data",
                      attachment="horizontal")
    # Select once, on mouse-up: a live selection would recompute (and redraw the drawer) on every move.
    lasso = LassoSelectTool(name=f"{prefix}_lasso", continuous=False)
    box = BoxSelectTool(name=f"{prefix}_box", continuous=False)
    pan = PanTool(name=f"{prefix}_pan")
    wheel = WheelZoomTool(name=f"{prefix}_wheel")
    return [pan, wheel, box, lasso, ResetTool(), hover], pan, wheel, hover


def _style(fig, axes: bool) -> None:
    fig.background_fill_color = BACKGROUND
    fig.border_fill_color = BACKGROUND
    fig.outline_line_color = None
    fig.toolbar.logo = None
    fig.grid.grid_line_color = "#1a2338"
    fig.axis.visible = axes
    fig.axis.axis_label_text_color = TEXT
    fig.axis.major_label_text_color = TEXT
    fig.axis.axis_line_color = "#26314a"
    fig.axis.major_tick_line_color = "#26314a"
    fig.axis.minor_tick_line_color = None
    if not axes:
        fig.grid.visible = False


def _scatter(fig, source, x, y, mapper, name):
    return fig.scatter(x, y, source=source, name=name, size=5, line_color=None,
                       fill_color={"field": "c", "transform": mapper}, fill_alpha=0.85,
                       selection_fill_alpha=1.0, selection_line_color="#ffffff", selection_line_width=0.6,
                       nonselection_fill_alpha=0.12)


def map_figures(bounds: list[float], sky_bounds: list[float] | None) -> dict:
    """The page's bokeh json_item: a row of the latent map and (when positions exist) the sky."""
    points = ColumnDataSource(name="points", data={k: [] for k in ("x", "y", "ra", "dec", "id", "c")})
    mapper = LinearColorMapper(name="mapper", palette=Viridis256, low=0, high=1, nan_color=MISSING)
    xmin, ymin, xmax, ymax = bounds
    pad_x, pad_y = (xmax - xmin) * 0.04 or 1.0, (ymax - ymin) * 0.04 or 1.0
    tools, pan, wheel, _ = _tools("map")
    latent = figure(name="map", output_backend="webgl", tools=tools, active_drag=pan, active_scroll=wheel,
                    match_aspect=True, sizing_mode="stretch_both", toolbar_location="above",
                    x_range=Range1d(xmin - pad_x, xmax + pad_x, name="map_x"),
                    y_range=Range1d(ymin - pad_y, ymax + pad_y, name="map_y"))
    _style(latent, axes=False)
    _overlay_and_points(latent, "map", points, "x", "y", mapper)
    highlight = ColumnDataSource(name="highlight", data={"x": [], "y": [], "kind": []})
    latent.scatter("x", "y", source=highlight, name="highlight_glyph", size=15, fill_color=None,
                   line_color="#ffb86b", line_width=2)
    latent.add_layout(ColorBar(color_mapper=mapper, name="colorbar", visible=False, width=10,
                               background_fill_color=BACKGROUND, major_label_text_color=TEXT,
                               title_text_color=TEXT), "right")
    # Range, tap and selection events are hooked by map.js (no CustomJS: the CSP has no 'unsafe-eval').
    children = [latent]
    if sky_bounds:
        sky = _sky_figure(points, mapper, sky_bounds)
        sky.visible = False  # map.js shows it for the "both" and "sky" views
        children.append(sky)
    return json_item(row(children, sizing_mode="stretch_both", name="map_row"))


def _sky_figure(points, mapper, sky_bounds):
    ra0, dec0, ra1, dec1 = sky_bounds
    pad = max(ra1 - ra0, dec1 - dec0) * 0.04 or 0.5
    tools, pan, wheel, _ = _tools("sky")
    sky = figure(name="sky", output_backend="webgl", tools=tools, active_drag=pan, active_scroll=wheel,
                 sizing_mode="stretch_both", toolbar_location="above", x_axis_label="RA (deg, ICRS)",
                 y_axis_label="Dec (deg)",
                 x_range=Range1d(ra1 + pad, ra0 - pad, name="sky_x"),  # RA increases to the east (left)
                 y_range=Range1d(dec0 - pad, dec1 + pad, name="sky_y"))
    _style(sky, axes=True)
    _overlay_and_points(sky, "sky", points, "ra", "dec", mapper)
    return sky


def _overlay_and_points(fig, prefix: str, points, x: str, y: str, mapper) -> None:
    """The image overlay (``<prefix>_overlay``, density or mosaic tiles that map.js fills in) under
    the points (``<prefix>_points``, plotted at columns ``x``/``y``), which the hover tool reads."""
    overlay = ColumnDataSource(name=f"{prefix}_overlay", data={"url": [], "x": [], "y": [], "w": [], "h": []})
    fig.image_url(url="url", x="x", y="y", w="w", h="h", anchor="bottom_left", source=overlay,
                  name=f"{prefix}_overlay_glyph")
    scatter = _scatter(fig, points, x, y, mapper, f"{prefix}_points")
    fig.select_one(HoverTool).renderers = [scatter]
