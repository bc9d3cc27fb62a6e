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
from cosmic_ops.assets.event_logs import ASSET_KEY as PARTITIONS
from cosmic_ops.assets.retention import event_log_retention, event_log_retention_plan
from cosmic_ops.definitions import defs
from cosmic_ops.partitions.catalog import partition_for_month
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource

from ..backups.helpers import TODAY, make_month, month_rows
from .recorded import check_executions, materialization, observations

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


def _run(assets, key, resources, selection=None, run_config=None, instance=None):
    return dg.materialize(assets, partition_key=key, resources=resources, selection=selection, tags=AS_OF,
                          run_config=run_config, instance=instance or dg.DagsterInstance.ephemeral(),
                          raise_on_error=False)


def _attached(conninfo, month):
    with db.connect(conninfo) as conn:
        return partition_for_month(conn, "event_logs", month)


def test_backup_then_blocking_verification_passes(seeded, resources):
    result = _run([event_log_backups, backup_restores_with_equal_rows], "2025-01-01", resources)
    assert result.success
    metadata = result.asset_materializations_for_node("event_log_backups")[0].metadata
    assert metadata["rows"].value == metadata["dagster/row_count"].value == 120
    assert metadata["bytes"].value > 0 and metadata["size"].value.endswith(("bytes", "kB"))
    assert metadata["mb_per_s"].value > 0 and len(metadata["sha256"].value) == 64
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["rows_restored"].value == 120
    assert evaluation.metadata["rows_in_manifest"].value == 120 and evaluation.partition == "2025-01-01"
    assert evaluation.metadata["method"].value == "scratch database"
    assert "120 rows" in evaluation.description and "equal to the manifest" in evaluation.description


def test_retirement_run_backs_up_verifies_then_retires(seeded, resources):
    month = date(2025, 2, 1)
    assert len(month_rows(db.connect(seeded), month)) == 240
    instance = dg.DagsterInstance.ephemeral()
    result = _run([event_log_backups, backup_restores_with_equal_rows, event_log_retention], "2025-02-01", resources,
                  instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("event_log_retention")[0].metadata
    assert metadata["status"].value == "retire" and metadata["detach_mode"].value == "plain"
    assert metadata["rows_retired"].value == 240
    assert _attached(seeded, month) is None and month_rows(db.connect(seeded), month) == []
    # The month's partition records that it no longer exists, and the backup it relied on.
    backup = materialization(instance, "event_log_backups", "2025-02-01")
    (retired,) = observations(instance, PARTITIONS, "2025-02-01")
    assert retired["retired"] is True and retired["exists"] is False and retired["rows_retired"] == 240
    assert (retired["backup_generation"], retired["backup_sha256"]) == (backup["generation"], backup["sha256"])
    # the restore job brings it back as the partition, and the partition's history says so
    restored = restore_event_log_month_job.execute_in_process(
        run_config={"ops": {"restore_event_log_month_op": {"config": {"month": "2025-02"}}}},
        resources=resources, instance=instance)
    assert restored.success
    assert _attached(seeded, month) is not None and len(month_rows(db.connect(seeded), month)) == 240
    again = materialization(instance, PARTITIONS, "2025-02-01")
    assert again["exists"] is True and again["restored"] is True and again["dagster/row_count"] == 240
    assert again["backup_generation"] == backup["generation"]


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


def test_plan_job_records_the_plan_and_leaves_no_materialization_or_check(seeded, resources):
    instance = dg.DagsterInstance.ephemeral()
    assert _run([event_log_backups, backup_restores_with_equal_rows], "2025-04-01", resources,
                instance=instance).success
    materialized = {key: instance.get_materialized_partitions(dg.AssetKey(key))
                    for key in ("event_log_backups", "event_log_retention", "event_log_partitions")}
    checks_before = check_executions(instance, CHECK_KEY)
    result = event_log_retention_plan.execute_in_process(
        partition_key="2025-04-01", tags=AS_OF, resources=resources, instance=instance,
        run_config={"ops": {"plan_event_log_retention": {"config": {"action": "archive-schema"}}}})
    assert result.success
    (plan,) = observations(instance, "event_log_retention", "2025-04-01")
    assert plan["status"] == "retire" and plan["current_rows"] == 480
    assert 'SET SCHEMA "event_logs_archive"' in plan["plan"]
    assert {key: instance.get_materialized_partitions(dg.AssetKey(key)) for key in materialized} == materialized
    assert check_executions(instance, CHECK_KEY) == checks_before
    assert observations(instance, PARTITIONS, "2025-04-01") == []  # nothing was retired
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
    assert "tables have the manifest's row counts" in evaluations["full_backup_restores_with_equal_counts"].description
    assert metadata["dagster/row_count"].value == sum(
        int(line.split("|")[2]) for line in metadata["rows_per_table"].value.splitlines()[2:])
    pitr = evaluations["pitr_readiness"]
    assert pitr.severity == dg.AssetCheckSeverity.WARN and pitr.description
    assert {"wal_level", "archive_mode", "archive_command", "last_archived_wal"} <= set(pitr.metadata)
    # The age of the last archived WAL is there when some WAL was archived, never a -1 stand-in.
    archived = pitr.metadata["last_archived_wal"].value != "(none)"
    assert ("last_archived_age_s" in pitr.metadata) is archived
    assert not archived or pitr.metadata["last_archived_age_s"].value >= 0


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


def _upstream_months(graph, child: str, parent: str, month: str) -> list[str]:
    child_key, parent_key = dg.AssetKey(child), dg.AssetKey(parent)
    child_def, parent_def = graph.get(child_key).partitions_def, graph.get(parent_key).partitions_def
    mapping = graph.get_partition_mapping(child_key, parent_key)
    mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
        child_def.empty_subset().with_partition_keys([month]), child_def, parent_def)
    return sorted(mapped.partitions_subset.get_partition_keys())


def test_month_m_of_backups_and_retention_depends_on_month_m():
    graph = defs.resolve_asset_graph()
    for month in ("2025-01-01", "2025-07-01"):
        assert _upstream_months(graph, "event_log_backups", "event_log_partitions", month) == [month]
        assert _upstream_months(graph, "event_log_retention", "event_log_backups", month) == [month]
    assert isinstance(graph.get_partition_mapping(dg.AssetKey("event_log_backups"),
                                                  dg.AssetKey("event_log_partitions")), dg.TimeWindowPartitionMapping)


def test_closed_month_assets_list_no_future_month():
    """Backups and retention list months up to the last one that ended, never the premade ones."""
    graph = defs.resolve_asset_graph()
    now = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    for key in ("event_log_backups", "event_log_retention"):
        keys = graph.get(dg.AssetKey(key)).partitions_def.get_partition_keys(current_time=now)
        assert keys[-1] == "2026-10-01", key
    assert graph.get(PARTITIONS).partitions_def.get_partition_keys(current_time=now)[-1] == "2027-02-01"


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
