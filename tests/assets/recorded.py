"""What the Dagster UI reads, read through the instance: materializations and observations by
partition, check executions with their partition and status."""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


def _plain(metadata) -> dict[str, Any]:
    return {key: entry.value for key, entry in metadata.items()}


def materialization(instance: dg.DagsterInstance, key, partition: Optional[str] = None) -> Optional[dict[str, Any]]:
    """Metadata of the latest materialization of ``key`` (and ``partition``), None if there is none."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey.from_coercible(key), asset_partitions=[partition] if partition else None), limit=1).records
    return _plain(records[0].asset_materialization.metadata) if records else None


def observations(instance: dg.DagsterInstance, key, partition: Optional[str] = None) -> list[dict[str, Any]]:
    """Metadata of every observation of ``key`` (and ``partition``), newest first."""
    records = instance.fetch_observations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey.from_coercible(key), asset_partitions=[partition] if partition else None), limit=100).records
    return [_plain(r.asset_observation.metadata) for r in records]


def check_executions(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey) -> list[tuple[str, Optional[str]]]:
    """(status, partition) of every recorded execution of the check, newest first. A run that
    finished with a check still PLANNED shows it as "Skipped" in the UI."""
    records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1000)
    return [(r.status.value, r.partition) for r in records]


def check_evaluation(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, partition: Optional[str] = None):
    """The latest evaluation (AssetCheckEvaluation) of the check for ``partition``."""
    for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1000):
        if record.partition == partition and record.status != AssetCheckExecutionRecordStatus.PLANNED:
            return record.evaluation
    return None

