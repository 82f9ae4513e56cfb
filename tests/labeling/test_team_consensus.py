"""Team consensus panels: labels and verdicts stay per person; the task and score-set pages
show, for galaxies several people answered, what the team thinks."""
import pytest

from tests.anomalies.factories import make_score_set
from tests.labeling.factories import make_task
from webapp.anomalies.services import reviews, team
from webapp.catalog.models import Galaxy
from webapp.labeling.models import Task
from webapp.labeling.services.consensus import team_consensus
from webapp.labeling.services.labels import record_label

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_task_team_consensus_orders_by_votes_then_disagreement(make_user):
    task = make_task(n=10)
    g = list(Galaxy.objects.order_by("id").values_list("id", flat=True))
    a, b, c = (make_user("labeler", n) for n in "abc")
    for user, k in ((a, 0), (b, 0), (c, 1)):  # g0: three votes, 2/3 elliptical
        record_label(task, g[0], user, class_index=k)
    for user in (a, b):  # g1: two votes, unanimous spiral
        record_label(task, g[1], user, class_index=1)
    for user, k in ((a, 2), (b, 3)):  # g2: two votes, split
        record_label(task, g[2], user, class_index=k)
    record_label(task, g[3], a, class_index=0)  # g3: one vote, left out
    rows = team_consensus(task)
    assert [r["galaxy_id"] for r in rows] == [g[0], g[2], g[1]]
    assert (rows[0]["n_votes"], rows[0]["consensus"], round(rows[0]["agreement"], 3)) == (3, "elliptical", 0.667)
    assert (rows[2]["consensus"], rows[2]["agreement"]) == ("spiral", 1.0)


def test_task_team_consensus_for_regression(make_user):
    task = make_task(n=6, name="Redshift", kind=Task.Kind.REGRESSION, classes=[], target_name="z")
    g = Galaxy.objects.order_by("id").first().pk
    for name, v in (("a", 0.1), ("b", 0.3)):
        record_label(task, g, make_user("labeler", name), value=v)
    [row] = team_consensus(task)
    assert (row["n_votes"], round(row["mean"], 3), round(row["spread"], 3)) == (2, 0.2, 0.1)


def test_task_page_shows_the_team_panel(make_user, role_clients):
    task = make_task(n=6)
    g = Galaxy.objects.order_by("id").first()
    for name in ("a", "b"):
        record_label(task, g.pk, make_user("labeler", name), class_index=1)
    page = role_clients["viewer"].get(f"/tasks/{task.pk}/").content.decode()
    assert 'id="team-consensus"' in page and g.source_id in page and "100%" in page


def test_score_set_team_consensus_mean_interest_and_artifact_share(make_user, role_clients):
    score_set, ids = make_score_set()
    a, b, c = (make_user("labeler", n) for n in "abc")
    reviews.record_verdict(a, score_set, ids[0], 5, False)
    reviews.record_verdict(b, score_set, ids[0], 3, False)
    reviews.record_verdict(c, score_set, ids[0], None, True)
    reviews.record_verdict(a, score_set, ids[1], 4, False)
    reviews.record_verdict(b, score_set, ids[1], 4, False)
    reviews.undo_verdict(b, score_set, ids[1])  # b retracts: one reviewer left on ids[1]
    reviews.record_verdict(a, score_set, ids[2], 1, False)
    reviews.record_verdict(b, score_set, ids[2], 0, False)
    rows = team.team_consensus(score_set)
    assert [r["galaxy_id"] for r in rows] == [ids[0], ids[2]]
    assert (rows[0]["n_reviewers"], rows[0]["mean_interest"], round(rows[0]["artifact_share"], 3),
            round(rows[0]["interesting_share"], 3)) == (3, 4.0, 0.333, 0.333)
    page = role_clients["viewer"].get(f"/anomalies/{score_set.pk}/reviewed/").content.decode()
    assert 'id="team-consensus"' in page and "4.00" in page
