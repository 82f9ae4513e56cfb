"""Shared astronomy vocabulary: bands, simulated classes, rarities, Galaxy Zoo 1 labels.

Every other module (simulator, image store, heads, anomaly benchmarks, the web app)
imports names from here, so a class or band is spelled in exactly one place.

Units used across Latent Sky image arrays: flux in nanomaggies per pixel
(1 nanomaggy = 3.631e-6 Jy, i.e. AB magnitude m = 22.5 - 2.5 log10(flux_nmgy)),
sky-subtracted, band order as in BANDS.
"""
from __future__ import annotations

# Photometric bands of the simulated surveys and of SDSS/DES gri colour cutouts,
# blue to red. Image arrays are (N, len(BANDS), H, W) in this order.
BANDS: tuple[str, ...] = ("g", "r", "i")

FLUX_UNIT = "nanomaggy/pixel"
AB_ZEROPOINT_NMGY = 22.5  # m_AB = 22.5 - 2.5 log10(flux in nanomaggies)

# Simulated morphological classes (the truth "class" of every simulated galaxy).
ELLIPTICAL = "elliptical"  # smooth, de Vaucouleurs-like Sersic profile, red
SPIRAL = "spiral"  # face-on/moderately inclined disk with spiral arms and clumps
EDGE_ON = "edge_on"  # thin disk seen edge-on with a small bulge
MERGER = "merger"  # overlapping interacting pair with tidal tails
CLASSES: tuple[str, ...] = (ELLIPTICAL, SPIRAL, EDGE_ON, MERGER)

# Rarities planted on top of (or instead of) the normal morphology.
NONE = "none"
LENS = "lens"  # blue arcs / Einstein ring around a red elliptical
RING = "ring"  # collisional ring galaxy (blue knotty ring + red nucleus)
SATELLITE_TRAIL = "satellite_trail"  # bright straight line, often one band only
COSMIC_RAY = "cosmic_ray"  # sharp single-pixel hits / short worms, one band, no PSF
SATURATED_STAR = "saturated_star"  # clipped bright star, diffraction spikes, bleed trail
RARITIES: tuple[str, ...] = (NONE, LENS, RING, SATELLITE_TRAIL, COSMIC_RAY, SATURATED_STAR)

# What an astronomer wants the anomaly ranking to surface, and what is instrument junk.
INTERESTING: frozenset[str] = frozenset({LENS, RING, MERGER})
ARTIFACTS: frozenset[str] = frozenset({SATELLITE_TRAIL, COSMIC_RAY, SATURATED_STAR})

# The simulated surveys' public volunteer catalogue (ml.sim_votes), spelled like the real
# Galaxy Zoo ingest columns (gz1_label): what the app may read instead of the hidden truth.
GZ_LABEL_KEY = "gz_label"  # consensus class of the simulated volunteers, or UNCERTAIN
GZ_VOTE_PREFIX = "gz_vote_"  # gz_vote_<class> / gz_vote_dont_know: vote fractions, sum to 1
GZ_N_VOTES_KEY = "gz_n_votes"  # classifications per galaxy
DONT_KNOW = "dont_know"  # a volunteer's "star / artifact / don't know" answer (GZ1 class 4)
UNCERTAIN = "uncertain"  # no class won a majority: a consensus value that is not a class

# The 3-class morphology task used by active learning and transfer benchmarks.
TASK3_CLASSES: tuple[str, ...] = (ELLIPTICAL, SPIRAL, EDGE_ON)

# Galaxy Zoo 1 leaf classes of /work/shared/data/gz1_sdss/smallCSV_class.csv (CLASS column).
GZ1_CLASSES: dict[int, str] = {
    0: "elliptical",
    1: "clockwise spiral",
    2: "anticlockwise spiral",
    3: "edge-on",
    4: "don't know / star / artifact",
    5: "merger",
}
GZ1_ARTIFACT = 4
GZ1_MERGER = 5
_GZ1_TO_TASK3: dict[int, str] = {0: ELLIPTICAL, 1: SPIRAL, 2: SPIRAL, 3: EDGE_ON}


def gz1_to_task3(gz1_class: int) -> str | None:
    """GZ1 class -> 3-class task label: 0 -> elliptical, 1/2 -> spiral, 3 -> edge_on.

    Classes 4 (star/artifact) and 5 (merger) have no task label and give None.
    Example: gz1_to_task3(2) == "spiral".
    """
    return _GZ1_TO_TASK3.get(int(gz1_class))


def sim_to_task3(sim_class: str) -> str | None:
    """Simulated class -> 3-class task label (mergers have none and give None)."""
    return sim_class if sim_class in TASK3_CLASSES else None


def is_interesting(sim_class: str, rarity: str) -> bool:
    """True for objects an anomaly search should surface: lenses, rings and mergers."""
    return sim_class in INTERESTING or rarity in INTERESTING


def is_artifact(rarity: str) -> bool:
    """True when the stamp carries an instrumental artifact (trail, cosmic ray, star)."""
    return rarity in ARTIFACTS
