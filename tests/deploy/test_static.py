"""Static files and the Content-Security-Policy: templates carry no inline script, JS takes its
URLs from the page, every response has the policy, and collectstatic builds content-hashed
names (BokehJS included) that production serves."""
import re
from pathlib import Path

import pytest

from tests.deploy.test_settings import run_manage

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
SCRIPTS = sorted((ROOT / "static" / "js").glob("*.js"))


@pytest.mark.unit
def test_templates_have_no_inline_script_handler_or_literal_static_path():
    offenders = []
    for path in TEMPLATES:
        text = path.read_text()
        name = path.relative_to(ROOT)
        offenders += [f"{name}: inline <script>" for _ in re.finditer(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", text)]
        offenders += [f"{name}: {m.group(0)}" for m in re.finditer(r"\son[a-z]+=\"", text)]
        offenders += [f"{name}: {m.group(0)}" for m in re.finditer(r"(?:src|href)=\"/static/", text)]
        offenders += [f"{name}: {m.group(0)}" for m in re.finditer(r"\|safe\b.*script|\w+_script\|safe", text)]
    assert offenders == []


@pytest.mark.unit
def test_javascript_takes_api_urls_from_the_page():
    literals = [f"{p.name}: {m.group(0)}" for p in SCRIPTS
                for m in re.finditer(r"[\"'`]/(?:api|thumbs|galaxies|tasks|jobs)/", p.read_text())]
    assert literals == []


@pytest.mark.unit
def test_url_templates_fill_in_an_id():
    from webapp.context_processors import _js_urls
    urls = _js_urls()
    assert urls["job_api"] == "/api/jobs/{id}/" and urls["thumbnail"] == "/thumbs/{id}.png"
    assert urls["jobs_api"] == "/api/jobs/" and urls["task_enqueue_api"] == "/api/tasks/{id}/enqueue"


@pytest.mark.django_db
def test_every_page_has_the_content_security_policy(role_clients):
    r = role_clients["viewer"].get("/surveys/")
    assert r.status_code == 200
    policy = dict(d.strip().split(" ", 1) for d in r["Content-Security-Policy"].split(";") if d.strip())
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert policy["style-src"] == "'self' 'unsafe-inline'" and policy["img-src"] == "'self' data:"
    assert 'id="ls-urls"' in r.content.decode()
    assert role_clients["anonymous"].get("/accounts/login/").has_header("Content-Security-Policy")


@pytest.mark.slow
def test_collectstatic_gives_hashed_names_that_production_serves(tmp_path):
    environ = {"LATENTSKY_ENV": "production", "LATENTSKY_DATA_DIR": str(tmp_path),
               "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-value-1234567890"}
    result = run_manage(["collectstatic", "--noinput", "-v", "0"], environ)
    assert result.returncode == 0, result.stdout + result.stderr
    root = tmp_path / "staticfiles"
    assert (root / "staticfiles.json").exists()
    assert not (root / "bokeh" / "static" / "js" / "compiler.js").exists()  # minified bundles only
    probe = ("from django.template import engines; from django.test import Client;"
             "html = engines['django'].from_string(\"{% static 'js/app.js' %} {% bokeh_js 'bokeh' %}\").render({});"
             "app, bokeh = html.split()[0], html.split('\"')[1];"
             "r = Client(SERVER_NAME='localhost').get(bokeh, secure=True);"
             "print('PROBE', app, bokeh, r.status_code, r.headers.get('Cache-Control'))")
    result = run_manage(["shell", "-c", probe], environ)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    app, bokeh, status = line.split()[1:4]
    assert re.fullmatch(r"/static/js/app\.[0-9a-f]{12}\.js", app)
    assert re.fullmatch(r"/static/bokeh/static/js/bokeh\.min\.[0-9a-f]{12}\.js", bokeh)
    assert status == "200" and "immutable" in line  # whitenoise: hashed names are cached for good
