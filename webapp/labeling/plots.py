"""Bokeh figures for the task page: learning curve, confusion matrix, reliability diagram."""
from __future__ import annotations

from bokeh.embed import json_item
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d
from bokeh.plotting import figure
from bokeh.transform import transform

DARK = {"background_fill_color": "#0d1322", "border_fill_color": "#131a2a"}
COLOURS = {"accuracy": "#7aa2ff", "balanced_accuracy": "#4ade80", "macro_f1": "#ffb86b", "ece": "#f87171",
           "rmse": "#7aa2ff", "coverage_90": "#4ade80"}
CLS_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
REG_METRICS = ("rmse", "coverage_90")


def _style(fig):
    fig.title.text_color = "#e6ebf5"
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_color = axis.major_label_text_color = "#8d99b3"
        axis.axis_line_color = axis.major_tick_line_color = "#26314a"
    fig.grid.grid_line_color = "#1f2940"
    if fig.legend:
        fig.legend.background_fill_color = "#131a2a"
        fig.legend.label_text_color = "#e6ebf5"
        fig.legend.border_line_color = "#26314a"
    return fig


def _embed(fig) -> dict:
    return json_item(_style(fig))


def _nan(value):
    return float("nan") if value is None else value


def learning_curve(rounds, classification: bool) -> dict:
    """Validation metrics against the number of labels, one point per ready round, each with
    its 95% interval drawn as a band (rounds from before intervals existed leave a gap)."""
    ready = sorted((r for r in rounds if r.status == "ready" and r.metrics), key=lambda r: r.number)
    metrics = CLS_METRICS if classification else REG_METRICS
    data = {"labels": [r.n_labels for r in ready], "round": [r.number for r in ready],
            "version": [r.model_version for r in ready],
            "n_eval": [str(r.metrics.get("n", "")) + (" (CV)" if r.metrics.get("evaluation") == "cv" else "")
                       for r in ready]}
    for m in metrics:
        data[m] = [_nan(r.metrics.get(m)) for r in ready]
        bounds = [(r.metrics.get("intervals") or {}).get(m) or [None, None] for r in ready]
        data[f"{m}_low"] = [_nan(b[0]) for b in bounds]
        data[f"{m}_high"] = [_nan(b[1]) for b in bounds]
    source = ColumnDataSource(data, name="learning_curve")
    fig = figure(height=300, sizing_mode="stretch_width", title="Learning curve (validation, 95% intervals)",
                 x_axis_label="labelled galaxies", y_axis_label="metric", tools="pan,wheel_zoom,reset,save",
                 toolbar_location="right", **DARK)
    for m in metrics:
        label = m.replace("_", " ")
        fig.varea("labels", f"{m}_low", f"{m}_high", source=source, color=COLOURS[m], alpha=0.15,
                  legend_label=label)
        fig.line("labels", m, source=source, color=COLOURS[m], line_width=2, legend_label=label)
        fig.scatter("labels", m, source=source, color=COLOURS[m], size=7, legend_label=label)
    fig.add_tools(HoverTool(tooltips=[("round", "@round"), ("labels", "@labels"), ("validated on", "@n_eval"),
                                      ("model", "@version")]
                            + [(m.replace("_", " "), f"@{m}{{0.000}} (@{m}_low{{0.000}}–@{m}_high{{0.000}})")
                               for m in metrics]))
    if classification:
        fig.y_range = Range1d(0, 1.02)
    fig.legend.location = "bottom_right"
    fig.legend.click_policy = "hide"
    return _embed(fig)


def confusion_matrix(matrix: list[list[int]], names: list[str]) -> dict:
    """Rows = labelled class, columns = predicted class; colour = fraction of the row."""
    xs, ys, counts, fracs = [], [], [], []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, c in enumerate(row):
            xs.append(names[j])
            ys.append(names[i])
            counts.append(c)
            fracs.append(c / total)
    source = ColumnDataSource({"predicted": xs, "true": ys, "count": counts, "fraction": fracs,
                               "text": [str(c) for c in counts]})
    fig = figure(height=300, width=360, x_range=names, y_range=list(reversed(names)), title="Confusion matrix",
                 x_axis_label="predicted", y_axis_label="labelled", tools="save", toolbar_location=None, **DARK)
    mapper = LinearColorMapper(palette=["#0d1322", "#172a52", "#23407a", "#3b5bdb", "#7aa2ff"], low=0, high=1)
    fig.rect("predicted", "true", 1, 1, source=source, fill_color=transform("fraction", mapper), line_color="#26314a")
    fig.text("predicted", "true", text="text", source=source, text_align="center", text_baseline="middle",
             text_color="#e6ebf5", text_font_size="12px")
    fig.add_tools(HoverTool(tooltips=[("labelled", "@true"), ("predicted", "@predicted"), ("galaxies", "@count"),
                                      ("share of row", "@fraction{0%}")]))
    fig.xaxis.major_label_orientation = 0.6
    return _embed(fig)


def reliability_diagram(reliability: dict) -> dict:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    conf, acc, count = reliability.get("confidence", []), reliability.get("accuracy", []), reliability.get("count", [])
    keep = [i for i, c in enumerate(count) if c and conf[i] is not None and acc[i] is not None]
    n_bins = len(count) or 10
    source = ColumnDataSource({"confidence": [conf[i] for i in keep], "accuracy": [acc[i] for i in keep],
                               "count": [count[i] for i in keep],
                               "centre": [(i + 0.5) / n_bins for i in keep]})
    fig = figure(height=300, width=360, x_range=(0, 1), y_range=(0, 1), title="Reliability diagram",
                 x_axis_label="confidence", y_axis_label="accuracy", tools="save", toolbar_location=None, **DARK)
    fig.line([0, 1], [0, 1], color="#8d99b3", line_dash="dashed", legend_label="perfect calibration")
    fig.vbar(x="centre", top="accuracy", width=0.9 / n_bins, source=source, color="#3b5bdb", alpha=0.7,
             legend_label="accuracy per bin")
    fig.scatter("confidence", "accuracy", source=source, size=7, color="#ffb86b", legend_label="mean confidence")
    fig.add_tools(HoverTool(tooltips=[("confidence", "@confidence{0.00}"), ("accuracy", "@accuracy{0.00}"),
                                      ("galaxies", "@count")]))
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "10px"
    return _embed(fig)
