"""Export labels, consensus and predictions as CSV, FITS and VOTable (read back with astropy)."""
import io

import numpy as np
import pytest
from astropy.table import Table

from tests.labeling.factories import make_task, true_class
from webapp.catalog.models import Galaxy
from webapp.jobs.services import execute_job
from webapp.labeling.services import export, labels, rounds

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def read(data: bytes, fmt: str) -> Table:
    if fmt == "csv":
        return Table.read(data.decode("utf-8"), format="ascii.csv")
    return Table.read(io.BytesIO(data), format=export.FORMATS[fmt][0])


@pytest.fixture
def labelled(make_user):
    task = make_task(n=20)
    ann, bob = make_user("labeler", "ann"), make_user("labeler", "bøb")
    g = list(Galaxy.objects.order_by("image_index"))
    for x in g[:10]:
        labels.record_label(task, x.pk, ann, "value", class_index=true_class(x))
    labels.record_label(task, g[0].pk, bob, "value", class_index=1)       # disagrees with ann (0)
    labels.record_label(task, g[1].pk, bob, "value", class_index=1)       # agrees
    labels.record_label(task, g[2].pk, bob, "value", class_index=3)
    labels.undo_last(task, bob)                                           # retracts g[2] by bob
    rnd = rounds.start_round(task, ann)
    execute_job(rnd.job_id, worker="test")
    rnd.refresh_from_db()
    return task, g, rnd


@pytest.mark.parametrize("fmt", ["csv", "fits", "votable"])
def test_catalogue_round_trips_through_every_format(labelled, fmt):
    task, g, rnd = labelled
    data = export.render_table(export.catalogue_table(task), fmt)
    table = read(data, fmt)
    assert len(table) == 20
    by_id = {int(r["galaxy_id"]): r for r in table}
    first = by_id[g[0].pk]
    assert int(first["n_votes"]) == 2
    assert float(first["frac_elliptical"]) == pytest.approx(0.5) and float(first["frac_spiral"]) == pytest.approx(0.5)
    assert str(first["consensus"]) == "elliptical"                 # tie: the earliest vote wins
    assert int(by_id[g[2].pk]["n_votes"]) == 1                     # bob's vote was undone
    assert float(by_id[g[1].pk]["vote_entropy"]) == pytest.approx(0.0)
    assert float(first["ra"]) == pytest.approx(g[0].ra)
    assert str(first["model_version"]) == rnd.model_version and int(first["round"]) == 1
    unlabelled = by_id[g[15].pk]
    missing = unlabelled["frac_elliptical"]                         # NaN, or masked after a round trip
    assert int(unlabelled["n_votes"]) == 0 and (np.ma.is_masked(missing) or np.isnan(missing))
    assert str(unlabelled["pred_class"]) == "merger"               # image row 15 -> class 3
    p = [float(unlabelled[f"p_{c}"]) for c in ("elliptical", "spiral", "edge_on", "merger")]
    assert sum(p) == pytest.approx(1.0, abs=1e-3) and float(unlabelled["pred_entropy"]) >= 0


@pytest.mark.parametrize("fmt", ["csv", "fits", "votable"])
def test_labels_table_keeps_the_whole_history(labelled, fmt):
    task, g, _ = labelled
    table = read(export.render_table(export.labels_table(task), fmt), fmt)
    assert len(table) == 14
    kinds = [str(k) for k in table["kind"]]
    assert kinds.count("undo") == 1
    counts = [str(c) == "True" for c in table["counts"]]           # CSV reads booleans back as text
    assert sum(counts) == 12                                      # undone row and the undo row don't count
    users = {str(u) for u in table["user"]}
    assert users == ({"ann", "b?b"} if fmt == "fits" else {"ann", "bøb"})


def test_unknown_format_is_refused(labelled):
    with pytest.raises(ValueError, match="format must be one of"):
        export.render_table(export.catalogue_table(labelled[0]), "xlsx")


def test_class_columns_are_safe_and_unique():
    assert export.class_columns(["edge-on", "edge on", "Edge-on!", "spiral"]) == [
        "edge_on", "edge_on_2", "Edge_on", "spiral"]
