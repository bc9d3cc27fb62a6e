"""The Dagster UI of the product after the start, rendered in a real browser (headless Debian
Chromium).

Runs what ``./scripts/start`` runs (``python -m cosmic_ops.cli dev``: bootstrap through the
product's jobs, demo data, the verified retirement of the demo months past retention, the
monitoring snapshot and the ledger, then ``dagster dev``) on an embedded database (no
COSMIC_OPS_DATABASE_URL, a temporary state dir and Dagster home), then renders the asset
graph, the partitions of ``event_log_partitions`` after a retirement, the Checks tabs of
``event_log_partitions`` and ``event_logs_table``, and the month ledger. Screenshots go to test-artifacts/ui/ (git-ignored; the path is printed at the end
of the run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cosmic_ops import settings
from cosmic_ops.backups.store import BackupStore
from cosmic_ops.embedded import EMBEDDED_DBNAME, stop_embedded

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Guards against a hung server or page, never assertions on speed.
SERVER_START_LIMIT_S = 300
STOP_LIMIT_S = 60
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


def wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_LIMIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"cosmic-ops dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"cosmic-ops dev did not answer on {url}:\n{log.read_text()[-3000:]}")


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to cosmic-ops dev stops all it started; its session is killed if anything is left."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()


@pytest.fixture(scope="module")
def ui():
    chromium = chromium_path()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    # Not under pytest's own temp folder: as root, the embedded server runs as its own user, and a
    # pytest session starting meanwhile makes /tmp/pytest-of-root private again (mode 0700).
    root = Path(tempfile.mkdtemp(prefix="cosmic_ops_ui_"))
    home, state = root / "dagster_home", root / "state"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    dropped = (settings.DATABASE_URL_ENV, settings.BACKUP_DIR_ENV, settings.FIRST_MONTH_ENV,
               settings.DAGSTER_STORAGE_URL_ENV)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({settings.STATE_DIR_ENV: str(state), settings.DAGSTER_HOME_ENV: str(home)})
    port = free_port()
    log = root / "cosmic-ops-dev.log"
    server = None
    try:
        # The server first, without a moved clock (scripts/test-at-dates: under libfaketime a server's
        # timeouts never fire); the start reuses it, and everything else runs on the moved clock.
        real_clock = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
        subprocess.run([sys.executable, "-c", "from cosmic_ops.embedded import embedded_conninfo; embedded_conninfo()"],
                       env=real_clock, check=True, capture_output=True)
        with open(log, "w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "cosmic_ops.cli", "dev", "--port", str(port)],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        wait_for_server(url, server, log)
        from cosmic_ops.definitions import defs

        keys = graphql(url, '{ assetNodes(assetKeys: [{path: ["event_log_partitions"]}]) { partitionKeys } }'
                       )["assetNodes"][0]["partitionKeys"]
        store = BackupStore(state / "backups")
        retired = {}  # month key -> sha256 of the backup its retirement relied on
        for _, month, journal in store.retirement_journals(EMBEDDED_DBNAME):
            (generation,) = [g for g in store.month_generations(EMBEDDED_DBNAME, "event_logs", month)
                             if g.name == journal["backup_generation"]]
            retired[month.isoformat()] = generation.manifest.sha256
        yield {"url": url, "chromium": chromium, "partition_keys": keys, "retired": retired,
               "assets": sorted(k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys),
               "log": log}
    finally:
        if server is not None:
            stop(server)
        stop_embedded(state / "pgdata")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(ui):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    # The browser only shows what the product serves: when scripts/test-at-dates moves the clock
    # (libfaketime, preloaded), the product runs on the moved clock, while the browser and its
    # driver, which are not under test, start without the preload. The preload is not put back:
    # setenv while the driver's threads read the environment crashed the test process under
    # libfaketime (a segfault at teardown), and the browser tests run last in the session.
    os.environ.pop("LD_PRELOAD", None)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=ui["chromium"], headless=True, args=CHROMIUM_ARGS)
        context = instance.new_context(viewport={"width": 2400, "height": 2600})
        context.set_default_timeout(PAGE_LIMIT_MS)
        yield context
        context.close()
        instance.close()


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


def test_asset_graph_shows_every_asset_of_the_project(ui, browser):
    page = open_page(browser, ui["url"] + "/asset-groups")
    # The graph draws only the nodes in view: a page tall and wide enough holds all of them.
    page.set_viewport_size({"width": 3600, "height": 3200})
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
    assert {"cosmic_schema", "event_log_partitions", "partition_sizes", "partition_counts",
            "event_log_ledger"} <= shown
    page.close()


def test_partition_bar_after_a_retirement(ui, browser):
    retired, keys = ui["retired"], ui["partition_keys"]
    assert retired, f"the start retired no demo month past retention (see {ui['log']})"
    page = open_page(browser, ui["url"] + "/assets/event_log_partitions?view=partitions")
    page.get_by_text("Materialized (").first.wait_for()
    for month in keys:
        page.locator(f"div[data-tooltip='{month}']").first.wait_for()
    # Each month in the list is followed by its status dot: green when materialized.
    rows = dict(page.evaluate("""() => Array.from(document.querySelectorAll('div[data-tooltip]'))
        .filter(e => /^\\d{4}-\\d{2}-01$/.test(e.dataset.tooltip))
        .map(e => [e.dataset.tooltip, e.nextElementSibling ? e.nextElementSibling.style.background : ''])"""))
    path = screenshot(page, "event_log_partitions-partitions")
    # the months begin with the demo's first month (no grey months before it) and run 3 ahead
    assert sorted(rows) == keys and keys[0] == min(retired), (keys[:3], path)
    attached = [m for m in keys if m not in retired]
    assert all("green" in rows[m] for m in attached), {m: rows[m] for m in attached}
    # Dagster 1.13 cannot wipe one partition of an asset (README, "What the UI shows"): a retired
    # month keeps its dot, and its latest event, the retention's observation, says it is gone and
    # which backup it relies on.
    for month, sha256 in sorted(retired.items()):
        page.locator(f"div[data-tooltip='{month}']").first.click()
        page.get_by_text(sha256).first.wait_for()
        detail = page.inner_text("body")
        shot = screenshot(page, f"event_log_partitions-retired-{month[:7]}")
        for name, value in (("exists", "false"), ("retired", "true"), ("backup_sha256", sha256)):
            assert f"{name}\n\t\n{value}" in detail, (month, name, shot)
    page.close()


def _checks_tab(browser, url: str, asset: str, checks: list[str]) -> tuple[str, Path]:
    # A sensor may have started another evaluation since the start: read the tab once no check
    # of it is still running (at most 30 reloads), so what is read is a finished result.
    for _ in range(30):
        page = open_page(browser, f"{url}/assets/{asset}?view=checks")
        for name in checks:
            page.get_by_text(name).first.wait_for()
        page.get_by_text("Evaluation result").first.wait_for()  # the selected check's latest execution
        body = page.inner_text("body")
        path = screenshot(page, f"{asset}-checks")
        page.close()
        if "Running" not in body:
            break
        time.sleep(2)
    return body, path


def test_checks_tab_shows_no_skipped_check_where_a_check_ran(ui, browser):
    # per month: month_query_pruned on the months; the whole table's checks on event_logs_table
    for asset, checks in (("event_log_partitions", ["month_query_pruned"]),
                          ("event_logs_table", ["default_partition_empty", "partitions_contiguous",
                                                "partitions_have_policy_indexes_and_storage",
                                                "premake_months_exist"])):
        body, path = _checks_tab(browser, ui["url"], asset, checks)
        assert "Skipped" not in body, f"a check that ran is shown as Skipped (see {path})"
        assert body.count("Succeeded") >= len(checks) and "Passed" in body, path


def test_ledger_shows_the_backup_a_retired_month_depends_on(ui, browser):
    page = open_page(browser, ui["url"] + "/assets/event_log_ledger")
    page.get_by_text("retired_months").first.wait_for()
    for sha256 in ui["retired"].values():
        page.get_by_text(sha256).first.wait_for()
    body = page.inner_text("body")
    path = screenshot(page, "event_log_ledger")
    page.close()
    for month, sha256 in ui["retired"].items():
        line = next((line for line in body.splitlines() if line.startswith(month[:7]) and sha256 in line), None)
        # month, retired at, how, rows retired, restore test rows, equal, backup, its sha256, restored
        cells = line.split("\t") if line else []
        assert cells[2:3] == ["drop"] and cells[5:6] == ["yes"], (month, line, path)
        assert cells[3] == cells[4], line  # the restore test counted the rows that were dropped
