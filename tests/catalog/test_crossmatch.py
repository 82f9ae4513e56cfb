"""Galaxy pages link the same object in other surveys, by id or by position."""
import pytest

from tests.catalog.factories import make_survey
from webapp.catalog.models import Galaxy
from webapp.catalog.services.crossmatch import counterparts

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_same_id_and_nearby_position_are_matched_and_far_ones_are_not():
    a = make_survey(name="A", slug="a", n=3)
    b = make_survey(name="B", slug="b", n=3)          # same source ids as A
    c = make_survey(name="C", slug="c", n=3)
    Galaxy.objects.filter(survey=c).update(source_id=models_source())  # no shared id ...
    g_a = Galaxy.objects.get(survey=a, image_index=1)
    g_c = Galaxy.objects.get(survey=c, image_index=1)
    g_c.ra, g_c.dec = g_a.ra + 0.3 / 3600, g_a.dec      # ... but 0.3 arcsec away
    g_c.save()
    found = {c_["survey"].slug: c_ for c_ in counterparts(g_a)}
    assert found["b"]["how"] == "same id" and found["b"]["galaxy"].image_index == 1
    assert found["c"]["galaxy"].pk == g_c.pk and found["c"]["how"].endswith("″ away")
    g_c.ra += 5 / 3600
    g_c.save()
    assert "c" not in {c_["survey"].slug for c_ in counterparts(g_a)}


def models_source():
    from django.db.models import F, Value
    from django.db.models.functions import Concat
    return Concat(Value("C-"), F("source_id"))


def test_detail_page_shows_the_counterpart_panel(client, make_user):
    a = make_survey(name="A", slug="a", n=2)
    make_survey(name="B", slug="b", n=2)
    client.force_login(make_user("viewer"))
    html = client.get(f"/galaxies/{Galaxy.objects.filter(survey=a).first().pk}/").content.decode()
    assert 'id="counterparts"' in html and ">B<" in html
