"""Metadata of the event_logs assets: one month's partition, the table as a whole, plans,
DEFAULT rehoming, retirements and restores as the partitions asset records them."""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg

from ...partitions.maintain import MonthChange, Plan
from ...partitions.state import TableState
from ...units import format_bytes
from . import entries, plan_observation, row_count, size_entries, table


def month(facts: dict[str, Any], change: MonthChange, plan_markdown: str) -> dict[str, Any]:
    """One month of an ``event_log_partitions`` run: its own bounds, rows, bytes, indexes and
    storage, whether this run created it, and what its own actions cost (lock wait, attempts)."""
    metadata: dict[str, Any] = {
        "exists": bool(facts),
        "created": change.created,
        "actions_applied": len(change.results),
        "rows_moved_from_default": change.rows_moved,
        "lock_wait_s": round(change.lock_wait_s, 3),
        "lock_attempts": change.lock_attempts,
        "plan": dg.MetadataValue.md(plan_markdown),
    }
    if facts:
        metadata.update(entries({
            "partition": facts["partition"],
            "lower_bound": facts["lower_bound"],
            "upper_bound": facts["upper_bound"],
            "rows_estimate": facts["rows_estimate"],
            "rows_exact": facts.get("rows_exact"),
            "indexes": facts["indexes"],
            "storage": facts["storage"],
        }))
        metadata.update(size_entries("total_bytes", facts["total_bytes"]))
        metadata.update(row_count(facts.get("rows_exact")))
    return metadata


def plan(asset_key: dg.AssetKey, month_plan: Plan, markdown: str) -> dg.AssetObservation:
    """The plan of one month (``Plan.for_month``), as an observation of that month."""
    (only,) = month_plan.months
    return plan_observation(asset_key, f"{only:%Y-%m}-01", markdown, planned_actions=len(month_plan.actions))


def created_by_rehoming(facts: dict[str, Any]) -> dict[str, Any]:
    """A month the DEFAULT rehoming job created, recorded in the partitions asset's history."""
    return {"created": True, "created_by": "DEFAULT rehoming", **entries({
        "partition": facts["partition"], "lower_bound": facts["lower_bound"], "upper_bound": facts["upper_bound"],
        "rows_estimate": facts["rows_estimate"]}), **size_entries("total_bytes", facts["total_bytes"])}


def rehoming(result) -> dict[str, Any]:
    """A rehoming run (``partitions.rehome.RehomeResult``) as an observation of the partitions asset."""
    return {
        "dry_run": result.dry_run,
        "default_rows_before": result.default_rows_before,
        "default_rows_after": result.default_rows_after,
        "rows_moved": result.rows_moved,
        "months_created": dg.MetadataValue.json(result.created),
        "months_remaining": dg.MetadataValue.json(result.remaining_months),
        "rows_with_null_key": result.unplaceable_rows,
        "plan": dg.MetadataValue.md(result.plan_markdown),
        "recovered": dg.MetadataValue.json(result.recovered),
    }


TABLE_COLUMNS = ("partition", "month", "lower_bound", "upper_bound", "rows_estimate", "total_bytes", "total_size")


def table_state(state: TableState) -> dict[str, Any]:
    """The table as it is now: every partition that exists (retired months are gone from it)."""
    records = [{"partition": p.partition, "month": "DEFAULT" if p.is_default else (
                    f"{p.month:%Y-%m}" if p.month else None),
                "lower_bound": p.lower_bound, "upper_bound": p.upper_bound, "rows_estimate": p.rows_estimate,
                "total_bytes": p.total_bytes, "total_size": format_bytes(p.total_bytes)} for p in state.partitions]
    months = state.months
    return {
        "partitions": table(records, TABLE_COLUMNS),
        "months_attached": len(months),
        **entries({"first_month": f"{months[0]:%Y-%m}" if months else None,
                   "last_month": f"{months[-1]:%Y-%m}" if months else None,
                   "default_rows": state.default_rows}),
        "rows_estimate": state.rows_estimate,
        **size_entries("total_bytes", state.total_bytes),
    }


def retired(plan, result: Optional[Any]) -> dict[str, Any]:
    """A retired month (``retention.RetirementPlan`` and, when this run changed something, its
    ``RetirementResult``), as an observation of that month of the partitions asset: the
    partition no longer exists, and this says how it left and which backup it relied on."""
    metadata = entries({
        "exists": False,
        "retired": True,
        "retirement_status": plan.status,
        "action": plan.policy.action,
        "backup_generation": plan.backup.name if plan.backup else None,
        "backup_sha256": plan.backup.manifest.sha256 if plan.backup else None,
        "backup_rows": plan.backup.manifest.rows if plan.backup else None,
    })
    if result is not None:
        metadata.update(entries({"rows_retired": result.rows_retired, "archived_as": result.archived_as or None}))
    return metadata


def restored(result, month_key: str) -> dict[str, Any]:
    """A month restored as the partition (``backups.restore.RestoreResult``): it exists again."""
    return {"exists": True, "restored": True, "created_by": "restore_event_log_month", **entries({
        "partition": f"{result.schema}.{result.table}", "month": month_key, "backup_generation": result.generation,
        "rows_exact": result.rows, "row_checksum": result.row_checksum}), **row_count(result.rows)}
