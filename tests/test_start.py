"""The start's bootstrap path (``cosmic-ops dev``, so ``./scripts/start``), through the Dagster
instance the UI reads: named jobs only, no failed check, every monitoring asset materialized,
the demo's months past retention retired with a verified backup."""

from __future__ import annotations

import dagster as dg
import pytest

from cosmic_ops import db, demo, settings, start
from cosmic_ops.assets.ledger import ASSET_KEY as LEDGER
from cosmic_ops.backups.policy import RetentionPolicy
from cosmic_ops.partitions import list_partitions
from cosmic_ops.timeutil import add_months, month_start

from .clock import NOW, TODAY

MONITORING = ("partition_sizes", "partition_counts", "event_log_ledger")


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
