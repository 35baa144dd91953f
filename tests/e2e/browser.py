"""A real browser for the portal's end-to-end tests: Playwright driving Debian's headless Chromium
(`/usr/bin/chromium`, package `chromium`; Playwright's own browser download is never used).

Without Chromium the browser tests are skipped, unless CPMS_REQUIRE_BROWSER=1 (set by .ci/run, which installs
the package), where its absence is a failure. Screenshots go to test-artifacts/portal/ (or
$CPMS_TEST_ARTIFACTS/portal/).
"""

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = Path(os.environ.get("CPMS_CHROMIUM", "/usr/bin/chromium"))
# The machine's network is closed: without these, Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("CPMS_TEST_ARTIFACTS", settings.BASE_DIR / "test-artifacts"))
    path = root / "portal"
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
    if os.environ.get("CPMS_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A Playwright Browser on Debian's Chromium, closed on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    path = artifacts_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(browser, base_url: str, username: str, password: str):
    """A new browser context (its own cookies) logged in through the login form; returns its page."""
    context = browser.new_context(
        base_url=base_url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.goto("/portal/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/portal/")
    return page
