"""The start's bootstrap path (``cosmic-ops dev``, so ``./scripts/start``), through the Dagster
instance the UI reads: named jobs only, no failed check, every monitoring asset materialized,
the demo's months past retention retired with a verified backup."""

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
import uuid
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from cosmic_ops import db, demo, settings, start
from cosmic_ops.assets.common import AS_OF_TAG
from cosmic_ops.assets.ledger import ASSET_KEY as LEDGER
from cosmic_ops.backups.policy import RetentionPolicy
from cosmic_ops.partitions import list_partitions
from cosmic_ops.timeutil import add_months, month_start

from .clock import NOW, TODAY

pytestmark = pytest.mark.slow  # the whole start: demo data, Dagster runs, `cosmic-ops dev` in a subprocess

MONITORING = ("partition_sizes", "partition_counts", "event_logs_table", "event_log_ledger")
BOOTSTRAP_JOBS = ("cosmic_schema_job", "event_log_partitions_job", "event_log_retirement_job",
                  "monitoring_snapshot_job", "event_log_ledger_job")


@pytest.fixture()
def started(new_database, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.DATABASE_URL_ENV, new_database)
    monkeypatch.setenv(settings.STATE_DIR_ENV, str(tmp_path))  # the default backup store: tmp_path/backups
    monkeypatch.delenv(settings.BACKUP_DIR_ENV, raising=False)
    instance = dg.DagsterInstance.ephemeral()
    first = start.first_month(new_database, "small", NOW)
    lines: list[str] = []
    report = start.bootstrap(instance, conninfo=new_database, scale="small", now=NOW, log=lines.append)
    return instance, report, first, lines, new_database


def _check_evaluations(instance):
    return [event.dagster_event.event_specific_data
            for run in instance.get_runs()
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]


def test_first_start_leaves_no_failed_check_and_every_monitoring_asset_materialized(started):
    instance, report, first, lines, conninfo = started
    assert report.ok and report.demo_loaded, lines
    demo_months = demo.event_months(demo.SCALES["small"], TODAY)
    assert first == demo_months[0]

    # every run is one of the product's named jobs, none __ephemeral_asset_job__
    jobs = [run.job_name for run in reversed(instance.get_runs())]
    assert jobs == ["cosmic_schema_job", "event_log_partitions_job", "event_log_retirement_job",
                    "event_log_retirement_job", "monitoring_snapshot_job", "event_log_ledger_job"], lines

    evaluations = _check_evaluations(instance)
    failed = [(e.asset_check_key.name, e.partition, e.description) for e in evaluations if not e.passed]
    assert evaluations and failed == []
    checked = {e.asset_check_key.name for e in evaluations}
    assert {"nothing_attached_past_retention", "retired_months_backups_intact",
            "backup_restores_with_equal_rows", "partitions_contiguous"} <= checked
    for key in MONITORING:
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key

    # the demo's months past retention were backed up, verified and dropped; the ledger shows it
    cutoff = RetentionPolicy().cutoff(TODAY)
    overdue = [m for m in demo_months if m < cutoff]
    assert len(overdue) == 2
    with db.connect(conninfo) as conn:
        attached = {p.lower_month() for p in list_partitions(conn, "event_logs") if p.lower_month()}
    assert attached == {add_months(cutoff, i) for i in range(len(demo_months) - 2 + 3)}
    # each month that exists shows as materialized
    recorded = instance.get_materialized_partitions(dg.AssetKey("event_log_partitions"))
    assert {m.isoformat() for m in attached} <= recorded
    months = {row.data["month"]: row.data for row in instance.get_latest_materialization_event(LEDGER)
              .asset_materialization.metadata["months"].value.records}
    for month in overdue:
        row = months[f"{month:%Y-%m}"]
        assert row["state"] == "retired" and row["relied_on_sha256"] and row["restore_test_equal"] is True
        assert row["rows_at_retirement"] == row["restore_test_rows"] > 0
    assert months[f"{month_start(TODAY):%Y-%m}"]["state"] == "attached"
    # the next start shows the same first month: the retired months are in the backup store
    assert start.first_month(conninfo, "small", NOW) == first


def test_a_second_start_keeps_the_data_and_retires_nothing(started):
    instance, _, first, _, conninfo = started
    runs = len(instance.get_runs())
    lines: list[str] = []
    report = start.bootstrap(instance, conninfo=conninfo, scale="small", now=NOW, log=lines.append)
    assert report.ok and not report.demo_loaded
    jobs = [run.job_name for run in instance.get_runs()[: len(instance.get_runs()) - runs]]
    assert sorted(jobs) == ["cosmic_schema_job", "event_log_ledger_job", "monitoring_snapshot_job"], lines
    assert not [e for e in _check_evaluations(instance) if not e.passed]


# ---------------------------------------------------------------------------
# The whole start in a subprocess: `python -m cosmic_ops.cli dev` is what ./scripts/start execs
# (scripts/start itself would first install into the venv it runs from).

SERVER_START_LIMIT_S = 300  # guards against a hang, never assertions on speed
STOP_LIMIT_S = 120


def _session_members(sid: int) -> list[str]:
    """Live (not zombie) processes of session ``sid``, as "pid state command"."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(f"{stat.parent.name} {fields[0]} {command}")
    return members


def _until(condition, limit_s: float, what: str):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} (gave up after {limit_s} s)")


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture()
def storage_database(server_conninfo):
    name = f"cosmic_test_start_dagster_{uuid.uuid4().hex[:8]}"
    db.create_database(server_conninfo, name)
    try:
        yield db.sqlalchemy_url(server_conninfo, name)
    finally:
        db.drop_database(server_conninfo, name)


def test_sigterm_stops_the_started_ui_and_all_it_started(new_database, storage_database, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(settings.project_root() / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in (settings.BACKUP_DIR_ENV, settings.FIRST_MONTH_ENV)}
    env.update({settings.DATABASE_URL_ENV: new_database, settings.DAGSTER_STORAGE_URL_ENV: storage_database,
                settings.DAGSTER_HOME_ENV: str(home), settings.STATE_DIR_ENV: str(tmp_path / "state")})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    with open(log, "w") as out:
        # As a shell without job control starts a background command: its own session, SIGINT ignored.
        started = subprocess.Popen(
            [sys.executable, "-m", "cosmic_ops.cli", "dev", "--port", str(port)], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        _until(lambda: _answers(url) or started.poll() is not None, SERVER_START_LIMIT_S, "the UI did not answer")
        assert started.poll() is None, log.read_text()[-3000:]
        (node,) = _graphql(url, '{ assetNodes(assetKeys: [{path: ["event_log_partitions"]}]) { partitionKeys } }'
                           )["assetNodes"]
        assert len(_session_members(started.pid)) >= 4  # cosmic-ops dev, dagster dev, webserver, daemon, ...

        started.send_signal(signal.SIGTERM)  # to cosmic-ops dev alone
        _until(lambda: started.poll() is not None, STOP_LIMIT_S, "cosmic-ops dev did not exit on SIGTERM")
        assert started.returncode == 0, log.read_text()[-3000:]
        _until(lambda: not _session_members(started.pid), STOP_LIMIT_S,
               f"processes it started outlived it: {_session_members(started.pid)}")
    finally:
        if started.poll() is None or _session_members(started.pid):
            os.killpg(started.pid, signal.SIGKILL)
            started.wait()

    # what that start recorded, read through its Dagster instance
    monkeypatch.setenv(settings.DAGSTER_STORAGE_URL_ENV, storage_database)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        bootstrap_runs = [r for r in instance.get_runs() if r.job_name in BOOTSTRAP_JOBS]
        assert {r.job_name for r in bootstrap_runs} == set(BOOTSTRAP_JOBS)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in bootstrap_runs)
        assert not [e for e in _check_evaluations(instance) if not e.passed]
        for key in MONITORING:
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
        # the UI's months begin with the demo's first month as of the start's clock (its runs' tag)
        start_day = datetime.fromisoformat(bootstrap_runs[0].tags[AS_OF_TAG]).date()
        assert node["partitionKeys"][0] == demo.event_months(demo.SCALES["small"], start_day)[0].isoformat()
