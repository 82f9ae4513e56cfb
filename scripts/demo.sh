#!/usr/bin/env bash
# `make demo`: migrate, create the demo login, start the web server and a real Celery
# worker, then queue the demo pipeline and follow it with progress bars.
# Embedded default: SQLite database and a SQLite-backed Celery broker (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export LATENTSKY_DATA_DIR="${LATENTSKY_DATA_DIR:-$PWD/var}"
HOST="${LATENTSKY_HOST:-127.0.0.1}"
PORT="${LATENTSKY_PORT:-8000}"
LOGS="$LATENTSKY_DATA_DIR/logs"
mkdir -p "$LOGS"

pids=()
cleanup() {
  echo
  echo "Stopping web server and worker… (an unfinished job resumes from its checkpoint next time)"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Celery's warm shutdown would wait for a running training job: give it 5 s, then stop hard.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    alive=0; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.5
  done
  for pid in "${pids[@]}"; do pkill -KILL -P "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if curl -s -o /dev/null "http://$HOST:$PORT/healthz" 2>/dev/null; then
  echo "Port $PORT is already serving something. Stop it first (or set LATENTSKY_PORT)." >&2
  exit 1
fi

echo "==> Migrating the database ($LATENTSKY_DATA_DIR/db.sqlite3)"
$BIN/python manage.py migrate --noinput -v 0
$BIN/python manage.py create_demo_user
echo "==> Collecting static files (content-hashed names for browser caching)"
$BIN/python manage.py collectstatic --noinput -v 0

echo "==> Starting a Celery worker (queues default,cpu,gpu; log: $LOGS/worker.log)"
$BIN/celery -A workers worker -Q default,cpu,gpu --concurrency 2 --loglevel INFO -n demo@%h \
  >"$LOGS/worker.log" 2>&1 &
pids+=($!)

echo "==> Starting the web server on http://$HOST:$PORT/ (log: $LOGS/web.log)"
$BIN/gunicorn webapp.wsgi --bind "$HOST:$PORT" --workers 2 --threads 8 --timeout 120 \
  --access-logfile "$LOGS/access.log" >"$LOGS/web.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 60); do
  curl -s -o /dev/null "http://$HOST:$PORT/healthz" && break
  sleep 0.5
done

cat <<MSG

  Latent Sky is running:  http://$HOST:$PORT/
  Log in as               demo / galaxies
  Jobs (live progress):   http://$HOST:$PORT/jobs/

MSG

echo "==> Queueing the demo pipeline: simulate surveys, ingest real SDSS (if present), train, embed, map, score"
echo "    (a re-run keeps what is already built and queues only what is missing)"
$BIN/python manage.py demo_pipeline --follow || echo "(the pipeline reported a problem; see the Jobs page)"

echo
echo "Demo pipeline finished. The site stays up until you press Ctrl-C:  http://$HOST:$PORT/"
wait
