"""Bokeh figures of the reviewed-list page."""
from __future__ import annotations

import numpy as np
from bokeh.embed import json_item
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from webapp.anomalies.models import Review
from webapp.anomalies.services.files import load_scores
from webapp.anomalies.services.reviews import latest_verdicts

COLOURS = {"interesting": "#4ade80", "unsure": "#7aa2ff", "boring": "#8d99b3", "artifact": "#f87171"}


def _dark(fig) -> None:
    fig.background_fill_color = fig.border_fill_color = "#131a2a"
    fig.outline_line_color = None
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_color = axis.major_label_text_color = "#8d99b3"
        axis.axis_line_color = axis.major_tick_line_color = axis.minor_tick_line_color = "#26314a"
    fig.grid.grid_line_color = "#1f2940"
    fig.title.text_color = "#e6ebf5"


def discovery_curve(user, score_set) -> dict | None:
    """Interesting galaxies found against galaxies reviewed, in the order the person reviewed them
    (each galaxy at its first verdict, counted by its verdict now): the curve feedback should steepen."""
    in_set = load_scores(score_set).row_of
    first_seen = {}
    for galaxy_id in (Review.objects.filter(user=user).exclude(kind=Review.Kind.UNDO)
                      .order_by("created_at", "id").values_list("galaxy_id", flat=True)):
        if galaxy_id in in_set:
            first_seen.setdefault(galaxy_id, len(first_seen))
    verdicts = latest_verdicts(user, first_seen)
    order = [g for g in sorted(first_seen, key=first_seen.get) if g in verdicts]
    if not order:
        return None
    found = np.cumsum([verdicts[g].is_interesting for g in order])
    artifacts = np.cumsum([verdicts[g].artifact for g in order])
    source = ColumnDataSource({"n": np.arange(1, len(order) + 1), "found": found, "artifacts": artifacts})
    fig = figure(height=260, sizing_mode="stretch_width", title="Your discoveries",
                 x_axis_label="galaxies reviewed", y_axis_label="count", tools="pan,wheel_zoom,reset,save")
    fig.line("n", "found", source=source, line_width=2, color=COLOURS["interesting"], legend_label="interesting (4-5)")
    fig.line("n", "artifacts", source=source, line_width=2, color=COLOURS["artifact"], legend_label="artifacts")
    fig.add_tools(HoverTool(tooltips=[("reviewed", "@n"), ("interesting", "@found"), ("artifacts", "@artifacts")],
                            mode="vline"))
    fig.legend.location = "top_left"
    fig.legend.background_fill_color = "#0d1322"
    fig.legend.border_line_color = "#26314a"
    fig.legend.label_text_color = "#e6ebf5"
    _dark(fig)
    return json_item(fig)


def score_histogram(score_set, bins: int = 40) -> dict:
    """Distribution of the combined anomaly rank, one bar per bin."""
    combined = load_scores(score_set).combined
    counts, edges = np.histogram(combined, bins=bins, range=(0.0, 1.0))
    source = ColumnDataSource({"left": edges[:-1], "right": edges[1:], "count": counts})
    fig = figure(height=260, sizing_mode="stretch_width", title=f"Combined anomaly rank ({len(combined):,} galaxies)",
                 x_axis_label="combined rank (1 = most anomalous)", y_axis_label="galaxies",
                 tools="pan,wheel_zoom,reset,save")
    fig.quad(left="left", right="right", bottom=0, top="count", source=source, color="#7aa2ff", alpha=0.8)
    fig.add_tools(HoverTool(tooltips=[("rank", "@left{0.00}–@right{0.00}"), ("galaxies", "@count")]))
    _dark(fig)
    return json_item(fig)
