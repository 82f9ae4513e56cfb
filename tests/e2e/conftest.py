"""Headless Debian Chromium driven by Playwright against pytest-django's live_server.

Never downloads a browser: uses /usr/bin/chromium (apt package ``chromium``) and
skips with a clear reason where it is absent.  Screenshots go to
$E2E_SCREENSHOT_DIR when set (else the test's tmp dir), so a person can look.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run e2e tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python package playwright is not installed")
    # Playwright's sync API keeps an event loop in this thread; Django's ORM calls made by
    # fixtures meanwhile are still plain synchronous code, so the async guard must be off.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield b
            b.close()
    finally:  # never leak the flag into subprocesses of later tests (check --deploy refuses it)
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    path = Path(os.environ.get("E2E_SCREENSHOT_DIR") or tmp_path / "screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def login(page, live_server):
    """login(username, password): sign in through the real login form."""
    def do(username: str, password: str, next_path: str = "/surveys/"):
        page.goto(live_server.url + next_path)
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"**{next_path}")
    return do
