"""browse.sexagesimal: the fast formatter agrees with astropy's Angle.to_string."""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Angle

from webapp.catalog.services.browse import sexagesimal

pytestmark = pytest.mark.unit


def astropy_strings(ra, dec):
    return (Angle(ra, u.deg).to_string(unit=u.hourangle, sep=":", precision=2, pad=True),
            Angle(dec, u.deg).to_string(unit=u.deg, sep=":", precision=1, alwayssign=True, pad=True))


def test_matches_astropy_on_random_positions_and_round_numbers():
    rng = np.random.default_rng(3)
    ras = np.concatenate([rng.uniform(0, 360, 3000), np.arange(0, 360, 0.25)])
    decs = np.concatenate([rng.uniform(-90, 90, 3000), np.linspace(-89.75, 89.75, 1440)])
    for ra, dec in zip(ras.tolist(), decs.tolist()):
        assert sexagesimal(ra, dec) == astropy_strings(ra, dec), (ra, dec)


@pytest.mark.parametrize("ra, dec, expected", [
    (0.0, 0.0, ("00:00:00.00", "+00:00:00.0")),
    (150.1, 2.2, ("10:00:24.00", "+02:12:00.0")),
    (14.999999999, -0.999999999, ("01:00:00.00", "-01:00:00.0")),     # carries, never "60"
    (359.9999999, -90.0, ("00:00:00.00", "-90:00:00.0")),             # RA wraps at 24 h
    (-15.0, 45.0, ("23:00:00.00", "+45:00:00.0")),
])
def test_carries_and_wraps(ra, dec, expected):
    assert sexagesimal(ra, dec) == expected


def test_missing_position_is_blank():
    assert sexagesimal(None, 1.0) == ("", "") and sexagesimal(1.0, None) == ("", "")
