"""ensure_demo_task: the demo's ready-to-label morphology task, created once."""
import pytest

from tests.catalog.factories import make_survey
from tests.labeling.factories import make_embedding_set
from webapp.labeling.models import Task
from webapp.labeling.services.demo import DEMO_TASK_NAME, ensure_demo_task

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_demo_task_is_created_once_on_both_simulated_surveys():
    sdss, des = make_survey(name="Simulated SDSS-like", slug="sim-sdss", n=8), make_survey(
        name="Simulated DES-like", slug="sim-des", n=8, seed=1)
    es = make_embedding_set([sdss, des])
    task = ensure_demo_task(es)
    assert [(c["name"], c["key"]) for c in task.classes] == [
        ("elliptical", "1"), ("spiral", "2"), ("edge-on", "3"), ("merger", "4")]
    assert task.allow_unsure and task.kind == "classification" and task.embedding_set == es
    assert sorted(task.surveys.values_list("slug", flat=True)) == ["sim-des", "sim-sdss"]
    assert task.source_survey == sdss and task.queue_survey == sdss
    again = ensure_demo_task(es)
    assert again.pk == task.pk and Task.objects.filter(name=DEMO_TASK_NAME).count() == 1
    # a re-embedded demo (new set, no labels yet) moves the task to the new set
    es2 = make_embedding_set([sdss, des], name="second")
    assert ensure_demo_task(es2).embedding_set == es2


def test_demo_task_needs_the_sdss_like_survey():
    other = make_survey(name="Other", slug="other", n=4)
    with pytest.raises(ValueError, match="does not contain the 'sim-sdss' survey"):
        ensure_demo_task(make_embedding_set([other]))
