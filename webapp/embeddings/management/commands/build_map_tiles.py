"""manage.py build_map_tiles MAP_ID [--tile-size 256] [--density-levels 4] [--points-per-tile 2048]

Builds (or rebuilds) a latent map's tiles in this process, with a progress bar: what the
map_tiles job does (services.map_tiles.build_map_tiles).  Maps above MAP_TILE_THRESHOLD get
their tiles queued automatically after the UMAP job; this command is for maps made before,
or to rebuild tiles after colour layers changed (new anomaly scores or predictions).
"""
from django.core.management.base import BaseCommand, CommandError

from webapp.cli import print_progress
from webapp.embeddings.models import LatentMap
from webapp.embeddings.services import map_tiles


class Command(BaseCommand):
    help = "Build a latent map's tiles (density, colour layers, point tiles, HEALPix sky) with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("map_id", type=int)
        parser.add_argument("--tile-size", type=int, default=None, help="pixels per density tile side (256)")
        parser.add_argument("--density-levels", type=int, default=None, help="deepest density level (4)")
        parser.add_argument("--points-per-tile", type=int, default=None, help="most points one point tile keeps (2048)")

    def handle(self, *args, **opts):
        lm = LatentMap.objects.filter(pk=opts["map_id"]).select_related("embedding_set").first()
        if lm is None:
            raise CommandError(f"latent map {opts['map_id']} does not exist")
        overrides = {k: opts[o] for k, o in (("tile_size", "tile_size"), ("density_levels", "density_levels"),
                                             ("points_per_tile", "points_per_tile")) if opts[o] is not None}
        try:
            info = map_tiles.build_map_tiles(lm, map_tiles.tile_config(overrides), print_progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write("")
        self.stdout.write(f"map {lm.pk}: tiles {info['version']} in {info['seconds']} s "
                          f"(point levels 0..{info['point_levels']}, density levels 0..{info['density_levels']})")
