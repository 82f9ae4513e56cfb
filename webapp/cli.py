"""Command-line helpers shared by management commands: a terminal progress bar."""
from __future__ import annotations

import sys


def render_bar(fraction: float, width: int = 28) -> str:
    """``fraction`` in [0, 1] as a bar of ``width`` characters."""
    filled = int(round(fraction * width))
    return "█" * filled + "·" * (width - filled)


def print_progress(done: int, total: int, message: str = "", out=None) -> None:
    """A ``progress(done, total, message)`` callback that redraws one line on stderr."""
    out = out or sys.stderr
    fraction = done / total if total else 0.0
    out.write(f"\r  {render_bar(fraction)} {fraction * 100:5.1f}%  {message[:60]:<60}")
    out.flush()
