"""The interactive app in a real browser: serve it, drive it with Playwright, step, screenshot.

Runs ``solara run analysis/app.py`` on 127.0.0.1 (a free port) with Solara's front-end assets from
the ``solara-assets`` package (no CDN), opens the page in Debian's headless Chromium, clicks STEP
and checks that the agent map changed, that the sliders show their values, that the note under
the map shows inside its grid cell, that the app names the scenario it serves (app bar and
heading) and that its tabs carry their names (not Mesa's "Page 0"), the second one drawing its
plots. ``MESAOPT_APP_SCREENSHOT=docs/img/app.png`` keeps the
screenshot (the README's, at 1,000 px wide).

Without ``/usr/bin/chromium`` the test is skipped on a developer's machine, but fails in CI (the
``CI`` environment variable set, as ``.ci/run`` does), which installs chromium: a browser test that
silently does not run is a hole in the suite.
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
#: The scenario the test serves (the README's screenshot shows it).
SCENARIO = "scenarios/baseline.toml"
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

pytestmark = [pytest.mark.slow]


def require_chromium(path: Path = CHROMIUM, environ: dict[str, str] | None = None) -> None:
    """Skip without chromium, except in CI (``CI`` set and not ``0``/``false``), where it fails.

    Args:
        path: The chromium executable.
        environ: The environment (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if path.exists():
        return
    message = f"{path} missing (apt-get install -y chromium)"
    if environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium"
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium(missing, {"CI": "true"})
    with pytest.raises(pytest.skip.Exception):
        require_chromium(missing, {})
    with pytest.raises(pytest.skip.Exception):
        require_chromium(missing, {"CI": "false"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path: Path):
    require_chromium()
    port = _free_port()
    env = dict(os.environ, SOLARA_TELEMETRY_MIXPANEL_ENABLE="False", MESAOPT_VIZ_AGENTS="400")
    log = (tmp_path / "solara.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "run.py", "viz", SCENARIO, "--host", "127.0.0.1", "--port", str(port)],
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


def _assert_note_inside_its_cell(page) -> None:
    """The note under the agent map is visible and within the map's grid cell."""
    note = page.locator(".mesaopt-map-note")
    assert note.is_visible()
    assert note.inner_text().startswith("Drawing ")
    box = note.bounding_box()
    cell = page.locator(".vue-grid-item").filter(has=note).bounding_box()
    assert box and cell
    assert cell["y"] <= box["y"] and box["y"] + box["height"] <= cell["y"] + cell["height"] + 0.5


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
            assert page.get_by_text("mesaopt — baseline").count() >= 1  # the app bar
            assert page.locator(".mesaopt-scenario").inner_text() == "Scenario: baseline"
            tabs = page.get_by_role("tab")
            assert tabs.all_inner_texts() == [
                "AGENTS, PROXY AND TRUE VALUE",  # Vuetify draws tab labels in capitals
                "LOSSES, MISALIGNMENT AND WELFARE",
            ]
            assert page.get_by_text("selection n (candidates per slot): 16").count() == 1
            assert page.get_by_text("contract β (all principals): 0.30").count() == 1
            _assert_note_inside_its_cell(page)
            before = _map_image(page)
            assert before  # a blob: or data: URL of the PNG
            first = _click_step(page, before)
            second = _click_step(page, first)
            assert len({before, first, second}) == 3
            assert page.get_by_text("Time: 2").count() >= 1
            _assert_note_inside_its_cell(page)
            shot = Path(os.environ.get("MESAOPT_APP_SCREENSHOT", tmp_path / "app.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if shot.suffix == ".png" and "MESAOPT_APP_SCREENSHOT" in os.environ:
                from PIL import Image

                with Image.open(shot) as image:
                    image.resize((1000, round(image.height * 1000 / image.width))).save(shot)

            # the second tab draws its four plots
            tabs.nth(1).click()
            page.wait_for_function(
                "() => document.querySelectorAll('.v-window-item--active img').length >= 4",
                timeout=60_000,
            )
            tabs.nth(0).click()

            # moving a slider shows its new value
            audit = page.locator(".v-input").filter(has_text="audit rate: 0.02")
            audit.get_by_role("slider").focus()
            page.keyboard.press("ArrowRight")
            page.get_by_text("audit rate: 0.03").wait_for(timeout=30_000)
        finally:
            browser.close()
