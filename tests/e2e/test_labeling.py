"""Labeling in a real browser: create a task, label five galaxies from the keyboard, undo,
train a round on a real worker, and watch the learning curve gain a point per round."""
import pytest

from tests.catalog.factories import make_survey
from tests.integration.conftest import celery_worker_proc, worker_env  # noqa: F401  (fixtures)
from tests.labeling.factories import make_embedding_set
from webapp.labeling.models import Label, Task

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CURVE_LABELS = "() => { const d = Bokeh.documents[0]; const s = d && d.get_model_by_name('learning_curve');" \
               " return s ? Array.from(s.data.labels) : null; }"


@pytest.fixture
def data(transactional_db):
    from django.contrib.auth.models import Group
    from webapp.accounts.roles import ROLES
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    survey = make_survey(name="E2E sky", slug="e2e-sky", n=40, size=32)
    return survey, make_embedding_set([survey])


def label_with_keys(page, keys, screenshot=None):
    """Press each key on the labeling page; wait until the next galaxy is on screen each time."""
    seen = []
    for key in keys:
        current = page.evaluate("() => document.body.dataset.galaxy")
        assert current, "no galaxy on screen"
        seen.append(int(current))
        # a person looks at each galaxy for a moment, in which the next one's image arrives
        page.wait_for_function("() => window.LSLabel.nextReady()")
        page.keyboard.press(key)
        page.wait_for_function("g => document.body.dataset.galaxy !== g", arg=current)
    if screenshot:
        page.screenshot(path=screenshot)
    return seen


def test_create_label_from_keyboard_train_and_see_the_curve(page, live_server, login, make_user, data,
                                                            celery_worker_proc, screenshot_dir):  # noqa: F811
    survey, es = data
    make_user("curator", "cora")
    login("cora", "pw-cora", "/tasks/")

    # Create the task in the form.
    page.click("#new-task")
    page.fill("#id_name", "Shapes")
    page.fill("#id_classes_text", "round\nelongated\nirregular\ndouble")
    page.select_option("#id_embedding_set", str(es.pk))
    page.check(f"#task-form input[name=surveys][value='{survey.pk}']")
    page.select_option("#id_strategy", "margin")
    page.select_option("#id_head_kind", "logistic")
    page.fill("#id_round_every", "0")
    page.fill("#id_batch_size", "10")
    page.fill("#id_cold_start_labels", "4")
    page.screenshot(path=str(screenshot_dir / "task_form.png"), full_page=True)
    page.click("#save-task")
    page.wait_for_selector("#no-model")
    task = Task.objects.get(name="Shapes")
    assert [c["key"] for c in task.classes] == ["1", "2", "3", "4"]

    # Label five galaxies from the keyboard (plus a skip and an undo on the way).
    page.click("#start-labeling")
    page.wait_for_function("() => !!document.body.dataset.galaxy")
    assert "nearest to centroid" in page.locator("#reason").inner_text()
    first = label_with_keys(page, ["1", "2", "s"])
    page.keyboard.press("u")                                 # undo the skip: that galaxy comes back
    page.wait_for_function("g => document.body.dataset.galaxy === String(g)", arg=first[2])
    more = label_with_keys(page, ["3", "4", "1"], screenshot=str(screenshot_dir / "labeling.png"))
    page.wait_for_function("() => document.querySelector('#save-state').innerText === 'Saved.'")
    page.wait_for_function("() => document.querySelector('#my-count').innerText === '5'")
    # answer -> next galaxy on screen, measured by the page (prefetched, decoded images)
    timings = sorted(page.evaluate("() => window.LSLabel.state.timings"))
    print("answer -> next galaxy (ms):", [round(t) for t in timings])
    assert len(timings) >= 6 and timings[len(timings) // 2] < 100, f"next galaxy took {timings} ms"
    values = Label.objects.filter(task=task, kind="value").order_by("id")
    assert list(values.values_list("galaxy_id", "class_index")) == list(zip(first[:2] + more, [0, 1, 2, 3, 0]))
    assert Label.objects.filter(task=task, kind="undo").count() == 1

    # Train a round on the worker; the page follows the job and shows the learning curve.
    page.goto(live_server.url + f"/tasks/{task.pk}/")
    page.click("#train-now")
    page.wait_for_selector("#learning-curve .bk-Figure, #learning-curve div", timeout=60_000)
    page.wait_for_function(CURVE_LABELS + "", timeout=60_000)
    assert page.evaluate(CURVE_LABELS) == [5]
    assert page.locator(".rounds-table tr.round-ready").count() == 1

    # Three more labels and another round: the curve gains a point.
    page.goto(live_server.url + f"/tasks/{task.pk}/label/")
    page.wait_for_function("() => !!document.body.dataset.galaxy")
    assert "round 1 model" in page.locator("#reason").inner_text()
    label_with_keys(page, ["2", "3", "4"])
    page.wait_for_function("() => document.querySelector('#my-count').innerText === '8'")
    page.wait_for_function("() => document.querySelector('#save-state').innerText === 'Saved.'")
    page.goto(live_server.url + f"/tasks/{task.pk}/")
    page.click("#train-now")
    page.wait_for_function(f"() => {{ const l = ({CURVE_LABELS})(); return l && l.length === 2; }}", timeout=60_000)
    assert page.evaluate(CURVE_LABELS) == [5, 8]
    page.screenshot(path=str(screenshot_dir / "task_page.png"), full_page=True)
