"""PostgreSQL restarted under load: the web process recovers by itself, and labels posted
during the outage either fail with a clear error (503, "not stored, retry") or are
stored; no label that got 201 is missing.

A private PostgreSQL cluster (initdb into a temporary folder, run as the postgres
user, on its own port) is used so the shared database server is never disturbed.
Four writers post labels as fast as they can to gunicorn while the cluster is
restarted with ``pg_ctl restart -m fast`` (which drops every connection).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.faults, pytest.mark.slow]
PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1]
                                        if os.path.isdir("/usr/lib/postgresql") else "none") / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd, check=True):
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)], check=check,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def private_postgres(tmp_path_factory):
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("needs root and PostgreSQL server binaries to run a private cluster")
    try:
        pg_user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user")
    base = Path(f"/tmp/ls-pgfault-{os.getpid()}")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
    data, port = base / "data", _free_port()
    _as_postgres(PG_BIN / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-o", opts, "-l", base / "log", "-w", "start")
    _as_postgres(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "latentsky")
    yield {"url": f"postgres://postgres@127.0.0.1:{port}/latentsky", "data": data, "opts": opts, "base": base}
    _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop", check=False)
    shutil.rmtree(base, ignore_errors=True)


def _login(base_url: str, username: str):
    import requests
    s = requests.Session()
    s.get(base_url + "/accounts/login/", timeout=10)
    s.post(base_url + "/accounts/login/", data={"username": username, "password": "fault-pass",
                                                "csrfmiddlewaretoken": s.cookies["csrftoken"]},
           headers={"Referer": base_url + "/accounts/login/"}, timeout=10)
    assert "sessionid" in s.cookies
    s.headers.update({"X-CSRFToken": s.cookies["csrftoken"], "Referer": base_url + "/",
                      "Content-Type": "application/json"})
    return s


def test_labels_survive_a_postgres_restart_and_the_web_recovers(private_postgres, tmp_path):
    env = {**os.environ, "DATABASE_URL": private_postgres["url"], "LATENTSKY_DATA_DIR": str(tmp_path / "data"),
           "LATENTSKY_ENV": "development", "DEBUG": "false", "CELERY_BROKER_URL":
           f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}", "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    setup = subprocess.run([sys.executable, "tests/faults/pg_setup.py"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert setup.returncode == 0, setup.stderr[-3000:]
    data = json.loads(setup.stdout.strip().splitlines()[-1])
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    web_log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "4"], cwd=ROOT, env=env, stdout=web_log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import requests
        for _ in range(100):
            try:
                if requests.get(base_url + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        sessions = {u: _login(base_url, u) for u in data["users"]}
        outcomes: list[tuple[str, float, int, str]] = []
        lock, stop = threading.Lock(), threading.Event()

        def writer(username):
            session, i = sessions[username], 0
            while not stop.is_set():
                gid = data["galaxy_ids"][i % len(data["galaxy_ids"])]
                i += 1
                try:
                    r = session.post(f"{base_url}/api/tasks/{data['task_id']}/labels", timeout=20,
                                     data=json.dumps({"galaxy_id": gid, "kind": "value", "class_index": i % 2}))
                    status, body = r.status_code, r.text[:300]
                except requests.RequestException as exc:
                    status, body = 0, exc.__class__.__name__
                with lock:
                    outcomes.append((username, time.monotonic(), status, body))
                time.sleep(0.02)

        threads = [threading.Thread(target=writer, args=(u,)) for u in data["users"]]
        for t in threads:
            t.start()
        time.sleep(4)
        restart_at = time.monotonic()
        pg = private_postgres
        _as_postgres(PG_BIN / "pg_ctl", "-D", pg["data"], "-o", pg["opts"], "-l", pg["base"] / "log",
                     "-m", "fast", "-w", "restart")
        back_at = time.monotonic()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        os.killpg(web.pid, 15)
        web.wait(timeout=20)
        web_log.close()

    statuses = Counter(s for _, _, s, _ in outcomes)
    bad = [o for o in outcomes if o[2] not in (201, 503)]
    assert not bad, f"unclear failures: {bad[:5]} (statuses {statuses})"
    for _, _, status, body in outcomes:
        if status == 503:
            assert "not stored" in body and "retry" in body
    after = [o for o in outcomes if o[1] > back_at + 2]
    assert after and all(o[2] == 201 for o in after), "the web process did not recover after the restart"
    ok_per_user = Counter(u for u, _, s, _ in outcomes if s == 201)
    count = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                            "from webapp.labeling.models import Label; from django.db.models import Count; "
                            "import json; print(json.dumps({r['user__username']: r['n'] for r in "
                            "Label.objects.filter(kind='value').values('user__username').annotate(n=Count('id'))}))"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    stored = json.loads(count.stdout.strip().splitlines()[-1])
    lost = {u: n - stored.get(u, 0) for u, n in ok_per_user.items() if n > stored.get(u, 0)}
    assert lost == {}, f"labels answered 201 but missing: {lost}"
    assert statuses[201] > 50
    print(f"\nrestart took {back_at - restart_at:.1f} s; outcomes {dict(statuses)}; stored {sum(stored.values())}")
