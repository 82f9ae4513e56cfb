"""A round's stored metrics as the pages print them: value, 95% interval and n, side by side.

Rounds trained before intervals existed lack "intervals" (and the calibration block): their
cells simply carry no interval, so old rounds still render.
"""
from __future__ import annotations

CLASSIFICATION = (   # (metrics key, label, format): "percent" for proportions, "3f" otherwise
    ("accuracy", "accuracy", "percent"),
    ("balanced_accuracy", "balanced accuracy", "percent"),
    ("macro_f1", "macro-F1", "3f"),
    ("ece", "ECE (calibrated)", "3f"),
)
REGRESSION = (
    ("rmse", "RMSE", "3f"),
    ("coverage_90", "90% interval coverage", "percent"),
)


def _fmt(value, how: str) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}%" if how == "percent" else f"{value:.3f}"


def _fmt_interval(bounds, how: str) -> str:
    if not bounds or None in bounds:
        return ""
    lo, hi = bounds
    return f"{lo * 100:.1f}–{hi * 100:.1f}%" if how == "percent" else f"{lo:.3f}–{hi:.3f}"


def evaluated_on(metrics: dict) -> str:
    """"5-fold CV over 30 labels" / "hold-out n = 61": how many galaxies stand behind the numbers."""
    n = metrics.get("n")
    if metrics.get("evaluation") == "cv":
        return f"CV over {n}"
    if metrics.get("evaluation") == "holdout":
        return f"hold-out n = {n}"
    return f"n = {n}" if n is not None else ""


def metric_cells(metrics: dict | None, classification: bool) -> list[dict]:
    """[{key, label, value, interval, level}] for the task page's stats and rounds table."""
    metrics = metrics or {}
    intervals = metrics.get("intervals") or {}
    level = f"{round(100 * metrics.get('interval_level', 0.95))}%"
    return [{"key": key, "label": label, "value": _fmt(metrics.get(key), how),
             "interval": _fmt_interval(intervals.get(key), how), "level": level}
            for key, label, how in (CLASSIFICATION if classification else REGRESSION)]


def calibration_summary(metrics: dict | None) -> dict | None:
    """ECE (or 90% coverage) before and after calibration on evaluation rows the calibration
    never saw; None for rounds from before the cross-fit."""
    cal = (metrics or {}).get("calibration") or {}
    if "ece_before" in cal:
        return {"name": "ECE", "before": _fmt(cal["ece_before"], "3f"), "after": _fmt(cal.get("ece_after"), "3f"),
                "param": f"T = {cal['temperature']:.2f}", "n": cal.get("n"), "method": cal.get("method", "")}
    if "coverage_90_before" in cal:
        return {"name": "90% coverage", "before": _fmt(cal["coverage_90_before"], "percent"),
                "after": _fmt(cal.get("coverage_90_after"), "percent"),
                "param": f"σ × {cal['sigma_scale']:.2f}", "n": cal.get("n"), "method": cal.get("method", "")}
    return None


def accuracy_interval(metrics: dict | None) -> str:
    """"61.0–81.0%" for a transfer before/after block; "" when the round predates intervals."""
    return _fmt_interval(((metrics or {}).get("intervals") or {}).get("accuracy"), "percent")
