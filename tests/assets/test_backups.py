"""The Dagster layer of backups and retention, on a real server."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg
import pytest
from psycopg.conninfo import conninfo_to_dict

from cosmic_ops import db
from cosmic_ops.assets.common import as_of_tags
from cosmic_ops.assets.backups import (
    backup_restores_with_equal_rows, event_log_backups, full_backup, full_backup_restores_with_equal_counts,
    pitr_readiness_check, restore_event_log_month_job,
)
from cosmic_ops.assets.retention import event_log_retention
from cosmic_ops.definitions import defs
from cosmic_ops.partitions.catalog import partition_for_month
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource

from ..backups.helpers import TODAY, make_month, month_rows

CHECK_KEY = backup_restores_with_equal_rows.check_key


@pytest.fixture(scope="module")
def seeded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        for m in (1, 2, 3, 4, 5, 6):
            make_month(conn, date(2025, m, 1), 120 * m)
        make_month(conn, date(2026, 10, 1), 10)
    return bootstrapped_database


@pytest.fixture()
def resources(seeded, tmp_path):
    (tmp_path / "store").mkdir()  # a configured store must exist
    return {"postgres": PostgresResource(database_url=seeded),
            "backup_store": BackupStoreResource(root=str(tmp_path / "store"))}


# The months here are fixed (2025, 2026-10), so the runs decide as of the fixed day they were
# chosen for, whatever today is.
AS_OF = as_of_tags(datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=timezone.utc))


def _run(assets, key, resources, selection=None, run_config=None):
    return dg.materialize(assets, partition_key=key, resources=resources, selection=selection, tags=AS_OF,
                          run_config=run_config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _attached(conninfo, month):
    with db.connect(conninfo) as conn:
        return partition_for_month(conn, "event_logs", month)


def test_backup_then_blocking_verification_passes(seeded, resources):
    result = _run([event_log_backups, backup_restores_with_equal_rows], "2025-01-01", resources)
    assert result.success
    metadata = result.asset_materializations_for_node("event_log_backups")[0].metadata
    assert metadata["rows"].value == 120 and metadata["bytes"].value > 0 and metadata["mb_per_s"].value > 0
    assert len(metadata["sha256"].value) == 64
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["rows_restored"].value == 120
    assert evaluation.metadata["method"].value == "scratch database"


def test_retirement_run_backs_up_verifies_then_retires(seeded, resources):
    month = date(2025, 2, 1)
    assert len(month_rows(db.connect(seeded), month)) == 240
    result = _run([event_log_backups, backup_restores_with_equal_rows, event_log_retention], "2025-02-01", resources)
    assert result.success
    metadata = result.asset_materializations_for_node("event_log_retention")[0].metadata
    assert metadata["status"].value == "retire" and metadata["detach_mode"].value == "plain"
    assert metadata["rows_retired"].value == 240
    assert _attached(seeded, month) is None and month_rows(db.connect(seeded), month) == []
    # the restore job brings it back as the partition
    restored = restore_event_log_month_job.execute_in_process(
        run_config={"ops": {"restore_event_log_month_op": {"config": {"month": "2025-02"}}}},
        resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert restored.success
    assert _attached(seeded, month) is not None and len(month_rows(db.connect(seeded), month)) == 240


def test_corrupted_backup_fails_the_check_and_blocks_retirement(seeded, resources):
    month = date(2025, 3, 1)
    assert _run([event_log_backups], "2025-03-01", resources).success
    store = resources["backup_store"].store()
    (generation,) = store.month_generations(conninfo_to_dict(seeded)["dbname"], "event_logs", month)
    data = bytearray(generation.file.read_bytes())
    data[len(data) // 3] ^= 0xFF
    generation.file.write_bytes(bytes(data))
    result = _run([event_log_backups, backup_restores_with_equal_rows, event_log_retention], "2025-03-01",
                  resources, selection=dg.AssetSelection.checks(backup_restores_with_equal_rows)
                  | dg.AssetSelection.assets(event_log_retention))
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and "sha256" in evaluation.metadata["error"].value
    assert not result.asset_materializations_for_node("event_log_retention")
    assert _attached(seeded, month) is not None and len(month_rows(db.connect(seeded), month)) == 360


def test_retention_inside_window_fails_and_changes_nothing(seeded, resources):
    assert _run([event_log_backups, backup_restores_with_equal_rows], "2026-10-01", resources).success
    result = _run([event_log_retention], "2026-10-01", resources)
    assert not result.success
    failure = result.failure_data_for_node("event_log_retention")
    assert "inside the retention window" in failure.error.message + str(failure.user_failure_data)
    assert _attached(seeded, date(2026, 10, 1)) is not None


def test_dry_run_reports_the_plan(seeded, resources):
    assert _run([event_log_backups, backup_restores_with_equal_rows], "2025-04-01", resources).success
    result = _run([event_log_retention], "2025-04-01", resources,
                  run_config={"ops": {"event_log_retention": {"config": {"dry_run": True,
                                                                         "action": "archive-schema"}}}})
    assert result.success
    metadata = result.asset_materializations_for_node("event_log_retention")[0].metadata
    assert metadata["status"].value == "dry run: retire"
    assert 'SET SCHEMA "event_logs_archive"' in metadata["plan"].value
    assert _attached(seeded, date(2025, 4, 1)) is not None


def test_retention_policy_without_unit_is_refused(seeded, resources):
    result = _run([event_log_retention], "2025-04-01", resources,
                  run_config={"ops": {"event_log_retention": {"config": {"retention": "12"}}}})
    assert not result.success
    assert _attached(seeded, date(2025, 4, 1)) is not None


def _killed_after_the_detach(conninfo, store, month, state):
    """What a retirement run leaves when killed after its detach: its journal saying
    ``state`` (as apply writes it), the month's table outside the tree."""
    name = f"event_logs_{month:%Y_%m}"
    with db.connect(conninfo) as conn:
        oid = conn.execute("SELECT %s::regclass::oid::bigint", (name,)).fetchone()[0]
        (proof, *_) = store.month_generations(conn.info.dbname, "event_logs", month)
        conn.execute(f"ALTER TABLE event_logs DETACH PARTITION {name}")
        conn.commit()
        store.write_retirement(conn.info.dbname, "event_logs", month, {
            "state": state, "table_oid": oid, "table": f"public.{name}", "backup_generation": proof.name,
            "detach_mode": "plain", "action": "drop", "archive_schema": "event_logs_archive"})
    return oid


def _table_exists(conninfo, oid) -> bool:
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT EXISTS (SELECT FROM pg_class WHERE oid = %s)", (oid,)).fetchone()[0]


def test_retirement_job_killed_after_the_detach_completes_on_rerun_then_reruns_as_a_no_op(seeded, resources):
    month, key = date(2025, 5, 1), "2025-05-01"
    job = [event_log_backups, backup_restores_with_equal_rows, event_log_retention]
    assert _run([event_log_backups, backup_restores_with_equal_rows], key, resources).success
    store = resources["backup_store"].store()
    oid = _killed_after_the_detach(seeded, store, month, "detached")

    rerun = _run(job, key, resources)
    assert rerun.success
    backup = rerun.asset_materializations_for_node("event_log_backups")[0].metadata
    assert backup["status"].value == "being-retired" and backup["rows"].value == 600
    retired = rerun.asset_materializations_for_node("event_log_retention")[0].metadata
    assert retired["rows_retired"].value == 600
    assert any("finished the interrupted retirement" in line for line in retired["recovered"].value)
    assert not _table_exists(seeded, oid) and month_rows(db.connect(seeded), month) == []
    assert store.read_retirement(conninfo_to_dict(seeded)["dbname"], "event_logs", month)["state"] == "done"

    again = _run(job, key, resources)
    assert again.success
    assert again.asset_materializations_for_node("event_log_backups")[0].metadata["status"].value == \
        "already-retired"
    assert again.asset_materializations_for_node("event_log_retention")[0].metadata["status"].value == \
        "already-retired"


def test_partition_run_finishes_a_retirement_killed_before_its_journal_said_detached(seeded, resources):
    from cosmic_ops.assets.event_logs import event_log_partitions

    month = date(2025, 6, 1)
    assert _run([event_log_backups, backup_restores_with_equal_rows], "2025-06-01", resources).success
    store = resources["backup_store"].store()
    oid = _killed_after_the_detach(seeded, store, month, "detaching")
    result = _run([event_log_partitions], "2026-10-01", resources)  # a month that exists: otherwise a no-op
    assert result.success
    recovered = result.asset_materializations_for_node("event_log_partitions")[0].metadata["recovered"].value
    assert any("finished the interrupted retirement of public.event_logs_2025_06" in line for line in recovered)
    assert not _table_exists(seeded, oid) and month_rows(db.connect(seeded), month) == []
    assert store.read_retirement(conninfo_to_dict(seeded)["dbname"], "event_logs", month)["state"] == "done"


def test_full_backup_with_its_checks(seeded, resources):
    result = dg.materialize([full_backup, full_backup_restores_with_equal_counts, pitr_readiness_check],
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    metadata = result.asset_materializations_for_node("full_backup")[0].metadata
    assert metadata["jobs"].value == 2 and metadata["tables"].value > 10
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["full_backup_restores_with_equal_counts"].passed
    pitr = evaluations["pitr_readiness"]
    assert pitr.severity == dg.AssetCheckSeverity.WARN
    assert {"wal_level", "archive_mode", "archive_command", "last_archived_age_s"} <= set(pitr.metadata)


@pytest.mark.parametrize("schedule, tick, key", [
    ("event_log_backups_monthly", datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc), "2026-11-01"),
    ("event_log_retention_monthly", datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc), "2025-11-01"),
])
def test_schedules_request_the_right_month(schedule, tick, key):
    definition = defs.resolve_schedule_def(schedule)
    (request,) = definition.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())).run_requests
    assert request.partition_key == key


def test_lineage_is_partition_backup_retention():
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("event_log_partitions") in graph.get(dg.AssetKey("event_log_backups")).parent_keys
    assert dg.AssetKey("event_log_backups") in graph.get(dg.AssetKey("event_log_retention")).parent_keys
    assert defs.resolve_schedule_def("full_backup_weekly").cron_schedule == "0 3 * * 0"


def test_a_configured_backup_dir_that_does_not_exist_is_refused_not_created(seeded, tmp_path, monkeypatch):
    from cosmic_ops import settings
    from cosmic_ops.backups import BackupStoreError
    from cosmic_ops.resources.backup_store import backup_store_from_env

    typo = tmp_path / "backpus"
    monkeypatch.setenv(settings.BACKUP_DIR_ENV, str(typo))
    resources = {"postgres": PostgresResource(database_url=seeded), "backup_store": backup_store_from_env()}
    result = _run([event_log_backups], "2025-03-01", resources)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert f"backup directory {typo} does not exist" in failure.step_failure_data.error.to_string()
    assert not typo.exists()
    with pytest.raises(BackupStoreError, match="does not exist"):
        BackupStoreResource(root=str(typo)).store()
    assert not typo.exists()


def test_the_default_backup_dir_is_created(tmp_path, monkeypatch):
    from cosmic_ops import settings
    from cosmic_ops.resources.backup_store import backup_store_from_env

    monkeypatch.delenv(settings.BACKUP_DIR_ENV, raising=False)
    monkeypatch.setenv(settings.STATE_DIR_ENV, str(tmp_path / "state"))
    store = backup_store_from_env().store()
    assert store.root == tmp_path / "state" / "backups" and store.root.is_dir()
