"""A real Chromium driven by Playwright. The browser is Debian's (``scripts/test`` installs it
where it can); Playwright's own download (``playwright install``) is never used."""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def chromium() -> str:
    """The Chromium binary, or a skip that says why there is none."""
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "no Chromium: install Debian's `chromium` (scripts/test does it with apt-get where "
            "it can) or set CHROMIUM to a Chromium binary"
        )
    return executable


@contextlib.contextmanager
def browser_page(executable: str, screenshots: Path) -> Iterator:
    """A page in a fresh headless Chromium; ``page.shot(name)`` saves a full-page screenshot.

    Playwright's sync API runs an event loop in this thread while it is open, and Django
    refuses ORM calls from a thread with a running loop: prepare data before, check the
    database after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.shot = lambda name: page.screenshot(
                path=screenshots / f"{name}.png", full_page=True
            )
            yield page
        finally:
            browser.close()
