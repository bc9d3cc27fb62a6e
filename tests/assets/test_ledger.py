"""``event_log_ledger`` through the Dagster instance: a month created, backed up, verified,
retired and restored by the product's own assets and jobs, then read back as the UI reads it
(the ledger's latest materialization and its check evaluation in the instance)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg
import pytest

from cosmic_ops import db
from cosmic_ops.assets.backups import (
    backup_restores_with_equal_rows, event_log_backups, restore_event_log_month_job,
)
from cosmic_ops.assets.common import as_of_tags
from cosmic_ops.assets.event_logs import event_log_partitions
from cosmic_ops.assets.ledger import (
    ASSET_KEY, event_log_ledger, event_log_ledger_sensor, retired_months_backups_intact, touches_months,
)
from cosmic_ops.assets.retention import event_log_retention
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource

from ..backups.helpers import TODAY, add_rows

MONTH = "2025-03-01"
# The month is fixed, so the runs decide as of the fixed day it was chosen for, whatever today is.
AS_OF = as_of_tags(datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=timezone.utc))


@pytest.fixture()
def resources(bootstrapped_database, tmp_path):
    (tmp_path / "store").mkdir()
    return {"postgres": PostgresResource(database_url=bootstrapped_database),
            "backup_store": BackupStoreResource(root=str(tmp_path / "store"))}


def _materialize(instance, assets, resources, partition_key=None):
    result = dg.materialize(assets, partition_key=partition_key, resources=resources, tags=AS_OF,
                            instance=instance, raise_on_error=False)
    assert result.success
    return result


def _ledger_row(instance, month="2025-03"):
    """The ledger's newest materialization, as the UI shows it: the months table's row for ``month``."""
    (record,) = instance.fetch_materializations(ASSET_KEY, limit=1).records
    metadata = record.asset_materialization.metadata
    rows = {row.data["month"]: row.data for row in metadata["months"].value.records}
    return rows[month], metadata


def test_the_ledger_answers_which_backup_a_retired_month_depends_on(bootstrapped_database, resources):
    instance = dg.DagsterInstance.ephemeral()
    created = _materialize(instance, [event_log_partitions], resources, MONTH)
    with db.connect(bootstrapped_database) as conn:
        add_rows(conn, date(2025, 3, 1), 250)
    _materialize(instance, [event_log_backups, backup_restores_with_equal_rows, event_log_retention], resources,
                 MONTH)
    backup = instance.fetch_materializations(event_log_backups.key, limit=1).records[0].asset_materialization
    sha256, generation = backup.metadata["sha256"].value, backup.metadata["generation"].value

    ledger = _materialize(instance, [event_log_ledger, retired_months_backups_intact], resources)
    row, metadata = _ledger_row(instance)
    assert row["state"] == "retired" and row["retired_how"] == "drop" and row["retired_at"]
    assert row["relied_on_backup"] == generation and row["relied_on_sha256"] == sha256
    assert row["rows_at_retirement"] == row["restore_test_rows"] == 250 and row["restore_test_equal"] is True
    assert row["created_at"] and row["created_by"] == f"event_log_partitions run {created.run_id[:8]}"
    assert row["partition"] == "public.event_logs_2025_03" and row["lower_bound"].startswith("2025-03-01")
    (line,) = [line for line in metadata["retired_months"].value.splitlines() if line.startswith("| 2025-03 ")]
    assert f"| drop | 250 | 250 | yes | {generation} | `{sha256}` |" in line
    assert metadata["months_retired"].value == 1
    generations = [g.data for g in metadata["backup_generations"].value.records]
    assert [(g["generation"], g["sha256"], g["verified_rows"]) for g in generations] == [(generation, sha256, 250)]
    (evaluation,) = ledger.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["backups_hashed"].value == 1

    restored = restore_event_log_month_job.execute_in_process(
        run_config={"ops": {"restore_event_log_month_op": {"config": {"month": "2025-03"}}}},
        resources=resources, instance=instance, tags=AS_OF)
    assert restored.success
    _materialize(instance, [event_log_ledger], resources)
    row, metadata = _ledger_row(instance)
    assert row["state"] == "attached" and row["restored_at"]
    assert row["restored_into"] == "public.event_logs_2025_03 (attached)"
    assert row["relied_on_sha256"] == sha256 and row["problems"] is None
    assert metadata["months_restored"].value == 1 and metadata["problems"].value == "none"


def test_the_sensor_asks_for_the_ledger_after_runs_that_change_months(bootstrapped_database, resources):
    instance = dg.DagsterInstance.ephemeral()
    backup = _materialize(instance, [event_log_backups], resources, "2025-03-01")
    ledger = _materialize(instance, [event_log_ledger], resources)
    assert touches_months(instance, instance.get_run_by_id(backup.run_id))
    assert not touches_months(instance, instance.get_run_by_id(ledger.run_id))
    (success,) = instance.all_logs(backup.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name=event_log_ledger_sensor.name, dagster_instance=instance,
        dagster_run=instance.get_run_by_id(backup.run_id), dagster_event=success.dagster_event)
    request = event_log_ledger_sensor(context)
    assert request.run_key == f"ledger-after-{backup.run_id}"
