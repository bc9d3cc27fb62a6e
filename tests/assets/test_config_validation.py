"""Bad config is refused when the run's config is loaded, before any op body runs, with an
error that names the field; the database and the backup store stay exactly as they were."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
from pydantic import ValidationError

from cosmic_ops import db
from cosmic_ops.assets import event_logs
from cosmic_ops.assets.archive import ArchiveConfig, UnarchiveConfig
from cosmic_ops.assets.backups import (
    FullBackupConfig, MonthBackupConfig, RestoreEventLogMonthConfig, backup_restores_with_equal_rows,
    event_log_backups, full_backup, restore_event_log_month_job,
)
from cosmic_ops.assets.monitoring import MaintenanceRunConfig, VacuumPartitionsConfig
from cosmic_ops.assets.retention import RetentionConfig, event_log_retention
from cosmic_ops.assets.saves import CompressConfig, RehydrateConfig
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource

from ..backups.helpers import make_month
from ..partitions.helpers import insert_events, rows_per_partition

INJECTION = 'x"; drop table players; --'
MONTH = date(2025, 1, 1)
KEY = "2025-01-01"


@pytest.fixture(scope="module")
def seeded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        make_month(conn, MONTH, 50)
        conn.execute("INSERT INTO players (player_id, username) VALUES (1, 'ada')")
        conn.commit()
        insert_events(conn, "1999-01-15 00:00+00", "1999-02-15 00:00+00")  # rows in DEFAULT, to rehome
    return bootstrapped_database


@pytest.fixture()
def store_root(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture()
def resources(seeded, store_root):
    return {"postgres": PostgresResource(database_url=seeded), "backup_store": BackupStoreResource(root=str(store_root))}


def _database_state(conninfo: str):
    """Every schema and relation outside the system catalogs (with the xmin of its catalog row,
    which any DDL changes), the rows of each partition, and the players."""
    with db.connect(conninfo) as conn:
        catalog = conn.execute(
            """SELECT n.nspname, c.relname, c.xmin::text FROM pg_namespace n
            LEFT JOIN pg_class c ON c.relnamespace = n.oid
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2""").fetchall()
        players = conn.execute("SELECT player_id, username FROM players ORDER BY 1").fetchall()
        conn.commit()
        return catalog, rows_per_partition(conn), players


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _verified_backup(resources) -> None:
    result = dg.materialize([event_log_backups, backup_restores_with_equal_rows], partition_key=KEY,
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success and result.get_asset_check_evaluations()[0].passed


def _materialize(assets, resources, config: dict, op: str):
    return dg.materialize(assets, partition_key=KEY, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                          run_config={"ops": {op: {"config": config}}})


def test_archive_schema_that_is_no_plain_identifier_is_refused_before_anything_moves(seeded, resources):
    _verified_backup(resources)  # the month could be retired: only the config stands in the way
    before = _database_state(seeded)
    with pytest.raises(ValidationError, match="archive_schema: .* is not a plain SQL identifier"):
        _materialize([event_log_retention], resources, {"action": "archive-schema", "archive_schema": INJECTION},
                     "event_log_retention")
    assert _database_state(seeded) == before


def test_restore_target_that_is_no_plain_identifier_is_refused_before_anything_is_created(seeded, resources):
    _verified_backup(resources)
    before = _database_state(seeded)
    for config in ({"month": "2025-01", "target": INJECTION},
                   {"month": "2025-01", "target": "copy_2025_01", "schema_name": "bad schema"}):
        with pytest.raises(ValidationError, match="(target|schema_name): .* is not a plain SQL identifier"):
            restore_event_log_month_job.execute_in_process(
                run_config={"ops": {"restore_event_log_month_op": {"config": config}}},
                resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert _database_state(seeded) == before


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_generations_below_one_is_refused_before_a_backup_is_made(seeded, resources, store_root, keep):
    before = _database_state(seeded)
    with pytest.raises(ValidationError, match="keep_generations"):
        _materialize([event_log_backups], resources, {"keep_generations": keep}, "event_log_backups")
    with pytest.raises(ValidationError, match="keep_generations"):
        dg.materialize([full_backup], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                       run_config={"ops": {"full_backup": {"config": {"keep_generations": keep}}}})
    assert _files(store_root) == []
    assert _database_state(seeded) == before


@pytest.mark.parametrize("config, field", [
    ({"max_months": 0}, "max_months"),
    ({"max_months": -1}, "max_months"),
    ({"maintenance_lock_wait_s": -5}, "maintenance_lock_wait_s"),
    ({"lock_attempts": 0}, "lock_attempts"),
])
def test_rehoming_bounds_are_enforced_before_any_row_moves(seeded, resources, config, field):
    before = _database_state(seeded)
    assert before[1].get("event_logs_default") == 2
    job = dg.Definitions.merge(event_logs.defs, dg.Definitions(resources=resources)).resolve_job_def(
        "event_log_default_rehoming_job")
    with pytest.raises(ValidationError, match=field):
        job.execute_in_process(run_config={"ops": {"rehome_default_rows_op": {"config": config}}},
                               instance=dg.DagsterInstance.ephemeral())
    assert _database_state(seeded) == before


def test_negative_lock_wait_is_refused_before_partition_maintenance_runs(seeded, resources):
    before = _database_state(seeded)
    with pytest.raises(ValidationError, match="maintenance_lock_wait_s"):
        _materialize([event_logs.event_log_partitions], resources, {"maintenance_lock_wait_s": -5},
                     "event_log_partitions")
    assert _database_state(seeded) == before


@pytest.mark.parametrize("config_class, values, field", [
    (RetentionConfig, {"archive_schema": "Archive Schema"}, "archive_schema"),
    (RetentionConfig, {"retention": "12"}, "retention"),
    (RetentionConfig, {"action": "truncate"}, "action"),
    (MonthBackupConfig, {"keep_generations": 0}, "keep_generations"),
    (FullBackupConfig, {"jobs": 0}, "jobs"),
    (RestoreEventLogMonthConfig, {"month": "January"}, "month"),
    (RestoreEventLogMonthConfig, {"month": "2025-01", "target": "a.b"}, "target"),
    (CompressConfig, {"saves_per_batch": 0}, "saves_per_batch"),
    (CompressConfig, {"workers": 0}, "workers"),
    (CompressConfig, {"pause_s": -1}, "pause_s"),
    (CompressConfig, {"codec": "lzma"}, "codec"),
    (CompressConfig, {"codec": "zlib", "level": 12}, "level"),
    (CompressConfig, {"inactive_for": "7"}, "inactive_for"),
    (ArchiveConfig, {"batch_size": -1}, "batch_size"),
    (ArchiveConfig, {"max_rows_per_s": 0}, "max_rows_per_s"),
    (ArchiveConfig, {"tablespace": "pg_default; --"}, "tablespace"),
    (ArchiveConfig, {"older_than": "-30 days"}, "older_than"),
    (UnarchiveConfig, {"batch_size": 0}, "batch_size"),
    (RehydrateConfig, {"save_ids": []}, "save_ids"),
    (MaintenanceRunConfig, {"lock_wait": "-1 s"}, "lock_wait"),
    (VacuumPartitionsConfig, {"tables": ["event_logs_2025_01; vacuum"]}, "tables"),
    (VacuumPartitionsConfig, {"tables": ["t"], "schema_name": "public, pg_catalog"}, "schema_name"),
    (VacuumPartitionsConfig, {"tables": ["t"], "mode": "vacuum full"}, "mode"),
])
def test_each_config_refuses_a_bad_value_naming_the_field(config_class, values, field):
    with pytest.raises(ValidationError, match=field):
        config_class(**values)


def test_enumerated_choices_are_rejected_by_dagsters_own_config_schema(seeded, resources):
    """Choices are enums in the config schema, so the Launchpad refuses them before a run exists."""
    with pytest.raises(dg.DagsterInvalidConfigError, match="action"):
        _materialize([event_log_retention], resources, {"action": "truncate"}, "event_log_retention")


def test_postgres_session_timeouts_must_be_plain_durations():
    assert PostgresResource(lock_timeout="250ms", statement_timeout="30min").lock_timeout == "250ms"
    with pytest.raises(ValidationError, match="lock_timeout"):
        PostgresResource(lock_timeout="5s -c search_path=elsewhere")
