"""Append-only labels (latest per person counts, undo walks back), Galaxy Zoo vote fractions,
vote entropy and Fleiss'/Cohen's kappa on a task labelled by several people."""
import math

import numpy as np
import pytest

from tests.labeling.factories import make_task
from webapp.catalog.models import Galaxy
from webapp.labeling.models import Label
from webapp.labeling.services import labels
from webapp.labeling.services.consensus import agreement, build_consensus

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def task():
    return make_task(n=8, name="Votes")


def galaxies(task):
    return list(Galaxy.objects.filter(survey__in=task.surveys.all()).order_by("image_index"))


def answer(task, galaxy, user):
    a = labels.task_answers(task, [galaxy.pk], user=user).get((galaxy.pk, user.pk))
    return None if a is None else (a.kind, a.class_index)


def test_latest_answer_counts_and_undo_walks_back_one_action_at_a_time(task, make_user):
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")
    g = galaxies(task)[0]
    labels.record_label(task, g.pk, ann, "value", class_index=0)
    labels.record_label(task, g.pk, ann, "value", class_index=2)          # ann changes her mind
    labels.record_label(task, g.pk, bob, "value", class_index=1)
    assert answer(task, g, ann) == ("value", 2) and answer(task, g, bob) == ("value", 1)
    assert build_consensus(task).counts.tolist() == [[0, 1, 1, 0]]       # one vote per person

    labels.undo_last(task, ann)                                           # retracts the 2: the 0 counts again
    assert answer(task, g, ann) == ("value", 0)
    labels.undo_last(task, ann)                                           # retracts the 0: no answer left
    assert answer(task, g, ann) is None
    assert labels.undo_last(task, ann) is None                            # nothing more to undo
    assert answer(task, g, bob) == ("value", 1)                           # bob's vote never moved
    assert build_consensus(task).counts.tolist() == [[0, 1, 0, 0]]
    # nothing was updated or deleted: 3 answers + 2 undo rows, each undo naming what it retracts
    rows = list(Label.objects.filter(task=task).order_by("id").values_list("kind", "class_index", "undoes_id"))
    ids = list(Label.objects.filter(task=task).order_by("id").values_list("id", flat=True))
    assert rows == [("value", 0, None), ("value", 2, None), ("value", 1, None),
                    ("undo", None, ids[1]), ("undo", None, ids[0])]


def test_vote_fractions_entropy_and_kappas_by_hand(task, make_user):
    a, b, c = (make_user("labeler", n) for n in ("a", "b", "c"))
    g = galaxies(task)
    votes = {g[0]: (0, 0, 0), g[1]: (1, 1, 2), g[2]: (2, "unsure", 2), g[3]: (3, None, None)}
    for galaxy, answers in votes.items():
        for user, v in zip((a, b, c), answers):
            if v == "unsure":
                labels.record_label(task, galaxy.pk, user, "unsure")
            elif v is not None:
                labels.record_label(task, galaxy.pk, user, "value", class_index=v)

    cons = build_consensus(task)
    assert cons.galaxy_ids.tolist() == [x.pk for x in g[:4]]
    assert cons.n_votes.tolist() == [3, 3, 2, 1] and cons.n_unsure.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(cons.fractions[1], [0, 2 / 3, 1 / 3, 0])
    assert cons.label.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(cons.entropy, [0.0, -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3), 0.0, 0.0])

    agree = agreement(task)
    # Fleiss over the 3 galaxies with >= 2 votes: P = (1 + 1/3 + 1) / 3, pooled shares 3/8, 2/8, 3/8, 0
    p_bar, p_e = 7 / 9, (9 + 4 + 9) / 64
    assert agree["n_galaxies_multi"] == 3
    assert agree["fleiss_kappa"] == pytest.approx((p_bar - p_e) / (1 - p_e))
    # Cohen for the pair with most galaxies in common (a and c: 3; b's unsure is not a vote):
    # observed 2/3, chance 1/3 * 1/3 + 1/3 * 2/3 = 1/3 -> kappa 0.5
    assert agree["cohen_pair"] == ["a", "c"] and agree["n_common"] == 3
    assert agree["cohen_kappa"] == pytest.approx(0.5)
    assert agree["n_labellers"] == 3


def test_progress_counts_current_answers_in_sql_like_the_python_rule(task, make_user, monkeypatch):
    """user_progress (every label post's reply) counts in the database what current_answers()
    finds in Python, through changed minds, skips, unsure and undos, without reading the rows."""
    from webapp.labeling.services import stats

    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bob")
    g = galaxies(task)
    rng = np.random.default_rng(7)
    for _ in range(40):
        who, galaxy = (ann, bob)[rng.integers(2)], g[rng.integers(len(g))]
        action = rng.choice(["value", "value", "unsure", "skip", "undo", "undo-here"])
        if action == "undo":
            labels.undo_last(task, who)
        elif action == "undo-here":
            labels.undo_last(task, who, galaxy.pk)
        else:
            labels.record_label(task, galaxy.pk, who, action, class_index=int(rng.integers(4)))
    expected = {}
    for user in (ann, bob):
        kinds = [a.kind for a in labels.task_answers(task, user=user).values()]
        expected[user.pk] = {"answered": sum(k in ("value", "unsure") for k in kinds),
                             "skipped": kinds.count("skip")}
    assert sum(e["answered"] + e["skipped"] for e in expected.values()) > 0

    def no_python_rule(rows):
        raise AssertionError("user_progress read the person's label rows")

    monkeypatch.setattr(labels, "current_answers", no_python_rule)
    assert {u.pk: stats.user_progress(task, u) for u in (ann, bob)} == expected
