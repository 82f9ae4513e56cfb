"""Django settings for Latent Sky.

Everything comes from environment variables (see README "Configuration").
Defaults are the embedded set-up used by ``make demo`` and ``make test``:
SQLite for the database and kombu's SQLAlchemy transport on a SQLite file as the
Celery broker, so nothing but this project has to run.  Set
``LATENTSKY_ENV=production`` for a deployment: DEBUG is then off, SECRET_KEY is
required and cookies are secure (``manage.py check --deploy`` passes).
"""
from __future__ import annotations

from pathlib import Path

from webapp.env import (ConfigError, env_bool, env_float, env_int, env_list, env_path,
                        env_str, env_url_prefix, parse_database_url)

BASE_DIR = Path(__file__).resolve().parent.parent

ENVIRONMENT = env_str("LATENTSKY_ENV", "development")
if ENVIRONMENT not in {"development", "test", "production"}:
    raise ConfigError(f"LATENTSKY_ENV={ENVIRONMENT!r}; use development, test or production")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ConfigError("DEBUG must be off when LATENTSKY_ENV=production")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ConfigError("SECRET_KEY is required when LATENTSKY_ENV=production")
    SECRET_KEY = "insecure-development-key-not-for-production-use-only-locally"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Where image stores, embeddings, indexes, checkpoints and caches live.  Arrays
# never go into database rows; the database keeps pointers, shapes and checksums.
DATA_DIR = env_path("LATENTSKY_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)
DEMO_SEED = env_int("LATENTSKY_DEMO_SEED", 0)
# Server folders a curator may ingest from in the browser (comma-separated absolute
# paths); anything outside them is refused.  The CLI (manage.py ingest) is not limited.
_ingest_roots = [Path(p).expanduser() for p in env_list("LATENTSKY_INGEST_ROOTS", [])]
if not all(p.is_absolute() for p in _ingest_roots):
    raise ConfigError(f"LATENTSKY_INGEST_ROOTS={_ingest_roots}: list absolute paths, comma-separated")
INGEST_ROOTS = [p.resolve() for p in _ingest_roots] or [DATA_DIR / "incoming", BASE_DIR.parent / "shared" / "data"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "csp",
    "webapp.accounts",
    "webapp.jobs",
    "webapp.catalog",
    "webapp.embeddings",
    "webapp.anomalies",
    "webapp.labeling",
    "webapp.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webapp.accounts.middleware.LoginRequiredMiddleware",
    "webapp.middleware.DatabaseUnavailableMiddleware",
]
# CPU ms per request by URL name, for benchmarks/load.py (webapp/profiling.py); off by default
PROFILE_CPU = env_bool("LATENTSKY_PROFILE_CPU", False)
if PROFILE_CPU:
    MIDDLEWARE.insert(0, "webapp.profiling.CpuProfileMiddleware")

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "webapp.accounts.context.roles",
        "webapp.context_processors.js_urls",
    ], "builtins": ["webapp.templatetags.ui", "django.templatetags.static"],
       "libraries": {"interop": "webapp.templatetags.interop"}},  # {% samp_scripts %}, {% aladin_src %}
}]

DATABASES = {"default": parse_database_url(
    env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests on SQLite use a file (not :memory:) so a real worker process can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if ENVIRONMENT == "test":  # fast hashing keeps the many per-role test users cheap; never in production
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# collectstatic's output.  The Docker image collects into the image (LATENTSKY_STATIC_ROOT=/app/
# staticfiles), not into the data volume that would hide it.
STATIC_ROOT = env_path("LATENTSKY_STATIC_ROOT", DATA_DIR / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# BokehJS's minified bundles come from the installed bokeh package (pages never need a CDN),
# as /static/bokeh/static/js/<bundle>.min.js, hashed like every other static file.
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "webapp.staticfinders.BokehJSFinder",
    "webapp.staticfinders.NodeModulesFinder",  # /static/vendor/: sampjs, aladin-lite (package.json)
]
# Every template links static files with {% static %}.  Outside tests the names carry a content
# hash from collectstatic's manifest (scripts/demo.sh and the Dockerfile run collectstatic), so a
# deploy busts browser caches and whitenoise serves them with a far-future max-age.  Tests use
# plain names so they need no collectstatic (tests/deploy checks the manifest build).
# Content-hashed names (a deploy busts browser caches) wherever collectstatic has written its
# manifest: always in production (the Dockerfile collects), and in `make demo` (demo.sh collects).
# A development or test process started without collectstatic (a fault test's gunicorn, a
# benchmark server) serves plain names, instead of failing every {% static %} tag.
HASHED_STATIC = PRODUCTION or (ENVIRONMENT != "test" and (STATIC_ROOT / "staticfiles.json").exists())
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage" if HASHED_STATIC
                    else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Development also serves straight from the source folders (an edited file shows at once);
# production serves only what collectstatic wrote.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_MAX_AGE = 3600  # for unhashed names (whitenoise gives hashed names a year)

# Content-Security-Policy (django-csp).  Every script is a file under /static/; data for the
# scripts travels in json_script blocks and data attributes, so no inline script runs.  Bokeh
# plots are json_item documents embedded by static/js/app.js (Bokeh.embed.embed_item), and the
# map's bokeh events are hooked by map.js with JS functions, not CustomJS (whose `new Function`
# would need 'unsafe-eval'; BokehJS 3.9 itself needs no eval).  The non-'self' sources, found by
# tests/e2e/test_csp.py with each one removed:
#   style-src 'unsafe-inline'  BokehJS 3.9 styles its views with <style> elements in shadow roots
#                              (without it the map's layout breaks and taps miss); our templates'
#                              bar widths are style attributes too;
#   img-src data:              BokehJS's toolbar icons are data: SVG URIs; so is the favicon.
#   connect-src SAMP_WEB_HUBS  static/js/samp.js talks XML-RPC to the SAMP Web Profile hub on the
#                              user's own machine (TOPCAT, Aladin Desktop or astropy's hub listen
#                              on port 21012 by the standard); sampjs says "localhost", we try
#                              127.0.0.1 too.  Only these two origins, on pages of every kind
#                              (map, collection, anomaly list, task, galaxy page send tables).
#   The sky view's HiPS imagery (Aladin Lite) adds SKY_IMAGERY_CSP on the map page only, and only
#   when one of the map's surveys has a HiPS id (webapp/embeddings/services/hips.py): 'wasm-unsafe-eval'
#   (Aladin Lite compiles its bundled WebAssembly; no JS eval is allowed) and the HiPS servers
#   for tiles (img-src) and the availability probe and tile fetches (connect-src).
SAMP_WEB_HUBS = ["http://127.0.0.1:21012", "http://localhost:21012"]
HIPS_SERVERS = ["https://alasky.cds.unistra.fr", "https://alaskybis.cds.unistra.fr"]
SKY_IMAGERY_CSP = {
    "script-src": ["'wasm-unsafe-eval'"],
    "connect-src": HIPS_SERVERS,
    "img-src": HIPS_SERVERS + ["blob:"],
}
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", *SAMP_WEB_HUBS],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Uploads: a search image or an ingest archive.  Larger bodies get a clear 400/413.
# Writers of large arrays (image stores) stop with a clear "disk full" error while this much
# space would still be free, instead of letting HDF5 hit ENOSPC mid-write.
DISK_HEADROOM_BYTES = env_int("LATENTSKY_DISK_HEADROOM_BYTES", 64 * 1024 * 1024, minimum=0)
MAX_UPLOAD_BYTES = env_int("LATENTSKY_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1024)
# Retention of computed per-galaxy files: the last K labeling rounds per task, score sets per
# embedding set and personal rankings per person and score set keep their files; older ones
# are deleted at the end of each round / scoring / ranking job (never the serving one).
KEEP_ROUNDS = env_int("LATENTSKY_KEEP_ROUNDS", 5, minimum=1)
# At most one automatic round per task this often (seconds since the last round started): with
# many people labelling at once, "retrain every N labels" would otherwise retrain back to back,
# a worker core busy for a model that is replaced before anyone sees it (issue 16's load test:
# 25 people, rounds of an MLP ensemble every 20 labels took half of a 2-core machine).
AUTO_ROUND_MIN_SECONDS = env_int("LATENTSKY_AUTO_ROUND_MIN_SECONDS", 60, minimum=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# Remote cutouts: surveys whose pixels come from a cutout URL template (Survey.cutout_url_template,
# webapp/catalog/services/remote_cutouts.py).  Fetched images are cached under
# DATA_DIR/cache/remote_cutouts, evicted least recently used above this many MiB.
CUTOUT_CACHE_BYTES = env_int("LATENTSKY_CUTOUT_CACHE_MB", 512, minimum=1) * 1024 * 1024
CUTOUT_CONNECT_TIMEOUT = env_float("LATENTSKY_CUTOUT_CONNECT_TIMEOUT", 3.0, minimum=0.01)  # seconds
# Seconds for the whole response body (and for each socket read): a slow server gets the placeholder.
CUTOUT_READ_TIMEOUT = env_float("LATENTSKY_CUTOUT_READ_TIMEOUT", 8.0, minimum=0.01)
CUTOUT_MAX_BYTES = env_int("LATENTSKY_CUTOUT_MAX_BYTES", 4 * 1024 * 1024, minimum=1024)  # per response
CUTOUT_CONCURRENCY = env_int("LATENTSKY_CUTOUT_CONCURRENCY", 4, minimum=1)  # fetches at once, per process
# A request that finds every fetch slot busy for this long answers the placeholder instead of queueing.
CUTOUT_SLOT_WAIT = env_float("LATENTSKY_CUTOUT_SLOT_WAIT", 0.5, minimum=0.0)  # seconds
CUTOUT_NEGATIVE_TTL = env_int("LATENTSKY_CUTOUT_NEGATIVE_TTL", 60, minimum=0)  # seconds a failed URL is not retried

# Thumbnails and sprite atlases are content-addressed files under DATA_DIR/cache (catalog/services/
# static_thumbs.py, atlas.py).  With a front nginx, name its internal location here (e.g. /protected/,
# mapped to DATA_DIR/cache/): the app then checks the login and answers an empty response with
# X-Accel-Redirect, and nginx sends the file without Python.  Empty: Django sends the file itself.
ACCEL_REDIRECT = env_url_prefix("LATENTSKY_ACCEL_REDIRECT")
# Atlases are one file per page of thumbnails (any filter and sort), so their cache is bounded:
# least recently used atlases above this many MiB are deleted (a later request builds them again).
ATLAS_CACHE_BYTES = env_int("LATENTSKY_ATLAS_CACHE_MB", 1024, minimum=1) * 1024 * 1024

# Latent maps larger than this are served as precomputed tiles (a map_tiles job after the UMAP
# job): every map request then costs O(tile).  Smaller maps send all their points at once.
MAP_TILE_THRESHOLD = env_int("LATENTSKY_MAP_TILE_THRESHOLD", 150_000, minimum=0)

# Celery.  The embedded default broker needs no server: kombu's SQLAlchemy
# transport on a SQLite file.  Production points CELERY_BROKER_URL at Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'broker.sqlite3'}")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# A shared cache for sessions (webapp/accounts/sessions.py: read from Redis, written through to the
# database, a Redis outage falls back to the database).  LATENTSKY_CACHE_URL, else the Redis
# broker's URL; without Redis (the demo's server-less broker) sessions stay in the database.
CACHE_URL = env_str("LATENTSKY_CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
                    else "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "latentsky", "TIMEOUT": 24 * 3600,
                          # a Redis that does not answer costs a request a quarter second, not a hang
                          "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}}}
    SESSION_ENGINE = "webapp.accounts.sessions"
# A job whose worker has sent no heartbeat for this long is considered dead and
# may be reclaimed by a redelivered message or the reaper.
JOB_STALE_SECONDS = env_int("LATENTSKY_JOB_STALE_SECONDS", 120, minimum=5)
# A queued job whose message was lost (e.g. the broker restarted without persistence) is
# re-sent by the reaper after this long; a duplicate message is harmless (atomic claim).
JOB_REQUEUE_AFTER_SECONDS = env_int("LATENTSKY_JOB_REQUEUE_AFTER_SECONDS", 600, minimum=1)
JOB_REAP_EVERY_SECONDS = env_int("LATENTSKY_JOB_REAP_EVERY_SECONDS", 60, minimum=1)
# A job whose worker keeps dying under it (a handler that exhausts memory, segfaults or
# hangs) is failed after this many claims instead of being re-run by the reaper for ever.
JOB_MAX_ATTEMPTS = env_int("LATENTSKY_JOB_MAX_ATTEMPTS", 3, minimum=1)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the map page's JS reads it for fetch() POSTs
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"},
                "faiss.loader": {"level": "WARNING"}},  # it logs every CPU-feature probe at INFO
}
