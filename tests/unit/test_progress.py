"""ml.progress: spans of a parent's bar keep the parent's extras (cancel, metrics)."""
import pytest

from ml.progress import check_cancelled, span

pytestmark = pytest.mark.unit


class JobLike:
    def __init__(self):
        self.calls, self.points = [], []

    def __call__(self, done, total, message=""):
        self.calls.append((round(done / total, 6), message))

    def metric(self, name, x, y):
        self.points.append((name, x, y))

    def check_cancelled(self):
        raise RuntimeError("cancelled")


def test_nested_spans_map_onto_the_parents_bar_and_forward_its_extras():
    job = JobLike()
    inner = span(span(job, 0.5, 1.0), 0.0, 0.5)          # [0.5, 0.75] of the job
    inner(1, 2, "half")
    inner(4, 2)                                          # clamped at the span's end
    assert job.calls == [(0.625, "half"), (0.75, "")]
    inner.metric("loss", 1, 0.5)
    assert job.points == [("loss", 1, 0.5)]
    with pytest.raises(RuntimeError, match="cancelled"):
        check_cancelled(inner)


def test_plain_functions_and_none():
    seen = []
    span(lambda d, t, m="": seen.append((d, t)), 0.2, 0.4)(0, 0)
    assert seen == [(0.2, 1.0)]
    assert span(None, 0.0, 1.0) is None
    check_cancelled(lambda *a: None)
    check_cancelled(None)
