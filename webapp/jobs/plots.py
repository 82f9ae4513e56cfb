"""Bokeh figures for job pages."""
from bokeh.embed import json_item
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure


def loss_curve(job) -> dict:
    """A live-updatable loss curve (a json_item): the page's JS refreshes the source named 'loss'."""
    points = job.metrics.get("loss", [])
    source = ColumnDataSource({"step": [p[0] for p in points], "loss": [p[1] for p in points]}, name="loss")
    fig = figure(height=280, sizing_mode="stretch_width", x_axis_label="training step",
                 y_axis_label="contrastive loss", title="Training loss (live)", toolbar_location="right",
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    fig.line("step", "loss", source=source, line_width=2, color="#7aa2ff")
    fig.scatter("step", "loss", source=source, size=3, color="#7aa2ff")
    return json_item(fig)
