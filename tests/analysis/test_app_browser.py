"""The interactive app in a real browser: serve it, drive it with Playwright, step, screenshot.

Runs ``solara run analysis/app.py`` on 127.0.0.1 (a free port) with Solara's front-end assets from
the ``solara-assets`` package (no CDN), opens the page in Debian's headless Chromium, clicks STEP
and checks that the agent map changed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="/usr/bin/chromium missing (apt-get install -y chromium)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path: Path):
    port = _free_port()
    env = dict(os.environ, SOLARA_TELEMETRY_MIXPANEL_ENABLE="False", MESAOPT_VIZ_AGENTS="400")
    log = (tmp_path / "solara.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "run.py", "viz", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app did not start:\n{(tmp_path / 'solara.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=20)
        log.close()


def _map_image(page) -> str:
    """The src of the agent map (the first matplotlib image on the page)."""
    return page.locator("img").first.get_attribute("src") or ""


def _click_step(page, old: str) -> str:
    """Click STEP and wait until the agent map is redrawn; return the new image's src."""
    page.get_by_role("button", name="STEP").click()
    page.wait_for_function(
        "old => { const img = document.querySelector('img'); return img && img.src !== old; }",
        arg=old,
        timeout=60_000,
    )
    return _map_image(page)


def test_app_steps_in_a_real_browser(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, timeout=90_000)
            page.get_by_role("button", name="STEP").wait_for(timeout=90_000)
            page.locator("img").first.wait_for(timeout=90_000)
            assert page.get_by_text("colour agents by").count() >= 1
            assert page.get_by_text("selection n (candidates per slot)").count() == 1
            before = _map_image(page)
            assert before  # a blob: or data: URL of the PNG
            first = _click_step(page, before)
            second = _click_step(page, first)
            assert len({before, first, second}) == 3
            assert page.get_by_text("Time: 2").count() >= 1
            shot = Path(os.environ.get("MESAOPT_APP_SCREENSHOT", tmp_path / "app.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
