"""Bokeh figures of the encoder pages: evaluation bars (SSL vs baselines) and the loss history."""
from __future__ import annotations

from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

REP_LABELS = {"ssl": "SSL encoder", "pca_pixels": "PCA on pixels", "random_encoder": "random encoder"}
PROBE_LABELS = {"knn": "kNN (k=20)", "linear": "linear probe"}
PALETTE = ["#7aa2ff", "#ffb86b", "#6b7280"]


def _style(fig) -> None:
    fig.background_fill_color = "#131a2a"
    fig.border_fill_color = "#131a2a"
    fig.outline_line_color = None
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_color = "#8d99b3"
        axis.major_label_text_color = "#8d99b3"
        axis.axis_line_color = "#26314a"
    fig.grid.grid_line_color = "#1a2338"
    fig.title.text_color = "#e6ebf5"


def evaluation_bars(report: dict, metric: str = "balanced_accuracy", height: int = 240):
    """Grouped bars: for kNN and the linear probe, the SSL encoder beside both baselines."""
    reps = [r for r in ("ssl", "pca_pixels", "random_encoder") if r in report.get("results", {})]
    factors, values, labels = [], [], []
    for probe in ("linear", "knn"):
        for rep in reps:
            value = report["results"][rep][probe][metric]
            factors.append((PROBE_LABELS[probe], REP_LABELS[rep]))
            values.append(value)
            labels.append(f"{value:.3f}")
    source = ColumnDataSource({"x": factors, "value": values, "label": labels,
                               "rep": [f[1] for f in factors]})
    fig = figure(x_range=FactorRange(*factors), height=height, sizing_mode="stretch_width",
                 title=f"{report.get('survey', '')}: {metric.replace('_', ' ')} ({report.get('n_labelled', 0):,} "
                       f"labelled, {len(report.get('classes', []))} classes)",
                 toolbar_location=None, tools="")
    fig.vbar(x="x", top="value", width=0.85, source=source, line_color=None,
             fill_color=factor_cmap("rep", palette=PALETTE[:len(reps)], factors=[REP_LABELS[r] for r in reps]))
    chance = 1.0 / max(1, len(report.get("classes", [])))
    fig.line(x=[factors[0], factors[-1]], y=[chance, chance], line_dash="dashed", color="#8d99b3",
             legend_label="chance")
    fig.add_tools(HoverTool(tooltips=[("", "@x"), (metric.replace("_", " "), "@label")]))
    fig.y_range = Range1d(0, 1)
    fig.xaxis.major_label_orientation = 0.9
    fig.xgrid.grid_line_color = None
    fig.legend.location = "top_right"
    fig.legend.background_fill_alpha = 0
    fig.legend.label_text_color = "#8d99b3"
    _style(fig)
    return fig


def epoch_loss_chart(points: list, height: int = 200):
    """Mean contrastive loss per epoch ([[epoch, loss], ...])."""
    source = ColumnDataSource({"epoch": [p[0] for p in points], "loss": [p[1] for p in points]})
    fig = figure(height=height, sizing_mode="stretch_width", title="Mean loss per epoch",
                 x_axis_label="epoch", y_axis_label="loss", toolbar_location=None, tools="")
    fig.line("epoch", "loss", source=source, line_width=2, color="#7aa2ff")
    fig.scatter("epoch", "loss", source=source, size=5, color="#7aa2ff")
    fig.add_tools(HoverTool(tooltips=[("epoch", "@epoch"), ("loss", "@loss{0.0000}")]))
    _style(fig)
    return fig
