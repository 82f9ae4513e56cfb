"""Cached vs uncached thumbnail latency of a remote-cutout survey, through the Django view and the
service, against the local simulated cutout server (tests/cutout_server.py).  Prints a table; writes
nothing but a temporary data directory.  Run: .venv/bin/python scripts/measure_remote_cutouts.py
(N=200 SIZE=96 by default)."""
import os, sys, tempfile, time, statistics
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tmp = tempfile.mkdtemp()
os.environ.update(LATENTSKY_ENV="test", LATENTSKY_DATA_DIR=tmp, DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3",
                  DJANGO_SETTINGS_MODULE="webapp.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.conf import settings
settings.ALLOWED_HOSTS = ["*"]
from django.contrib.auth.models import User
from django.test import Client
from tests.cutout_server import CutoutServer
from webapp.catalog.models import Galaxy, Survey

N = int(os.environ.get("N", 200))
SIZE = int(os.environ.get("SIZE", 96))
server = CutoutServer().start()
survey = Survey.objects.create(name="Remote", slug="remote", status="ready", n_galaxies=N,
                               cutout_url_template=server.template, cutout_layer="ls-dr10")
Galaxy.objects.bulk_create([Galaxy(survey=survey, source_id=f"G{i}", ra=10 + 0.001 * i, dec=-5 + 0.001 * i,
                                   image_index=i) for i in range(N)])
ids = list(Galaxy.objects.filter(survey=survey).order_by("image_index").values_list("id", flat=True))
client = Client()
client.force_login(User.objects.create_user("u", password="x"))

def run(label):
    times = []
    for gid in ids:
        t = time.perf_counter()
        r = client.get(f"/thumbs/{gid}.png?size={SIZE}")
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200 and r["Content-Type"] == "image/jpeg", (r.status_code, r["Content-Type"])
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{label:<28} n={len(times)} p50={p(0.5):6.2f} ms  p95={p(0.95):6.2f} ms  mean={statistics.mean(times):6.2f} ms")

client.get(f"/thumbs/{ids[0]}.png?size=16")  # warm imports
run(f"uncached (fetch, {SIZE}px)")
n0 = server.count
run(f"cached (disk hit, {SIZE}px)")
assert server.count == n0, "cached pass made HTTP calls"
from webapp.catalog.services import remote_cutouts as rc
def svc(label, size):
    times = []
    for g in Galaxy.objects.filter(survey=survey).order_by("image_index"):
        t = time.perf_counter(); cut = rc.galaxy_cutout(survey, g, size); times.append((time.perf_counter() - t) * 1000)
        assert cut.ok
    times.sort()
    print(f"{label:<28} n={len(times)} p50={times[len(times)//2]:6.2f} ms  p95={times[int(0.95*len(times))]:6.2f} ms")
svc("service uncached (64px)", 64)
svc("service cached (64px)", 64)
server.reset("500")
settings.CUTOUT_NEGATIVE_TTL = 0
t = time.perf_counter(); r = client.get(f"/thumbs/{ids[0]}.png?size=128")
print(f"server 500 -> placeholder    status={r.status_code} {r['Content-Type']} {(time.perf_counter()-t)*1000:.2f} ms")
print("loadavg", os.getloadavg())
server.stop()
import shutil
shutil.rmtree(tmp, ignore_errors=True)
