"""Metadata of the backup assets and checks: month and full backups, their verifications,
PITR readiness, and retirements of months."""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg

from ...backups.pitr import PitrReport
from ...backups.store import Generation, Verification
from . import entries, plan_observation, row_count, size_entries


def manifest(generation: Generation) -> dict[str, Any]:
    """A backup generation: its file, size, sha256, rows, and how long the dump took."""
    m = generation.manifest
    return {
        "path": dg.MetadataValue.path(str(generation.file)),
        "generation": generation.name,
        **size_entries("bytes", m.bytes),
        "sha256": m.sha256,
        **entries({"rows": m.rows, "row_checksum": m.row_checksum}),
        **row_count(m.rows),
        "mb_per_s": round((m.bytes / 1e6) / m.seconds, 2) if m.seconds else 0.0,
        "seconds": m.seconds,
        "server_version": m.server_version,
        "pg_client": m.client,
    }


def month_backup(result) -> dict[str, Any]:
    """``backups.month.BackupResult``: the generation written, or the one a retired month relies on."""
    return {"status": result.status, **manifest(result.generation),
            "pruned_generations": dg.MetadataValue.json(list(result.pruned))}


def full_backup(result, jobs: int) -> dict[str, Any]:
    m = result.generation.manifest
    return {
        **manifest(result.generation),
        **(row_count(sum(m.tables.values())) if m.tables else {}),
        "jobs": jobs,
        "tables": len(m.tables),
        "rows_per_table": dg.MetadataValue.md(
            "| table | rows |\n|---|---|\n" + "\n".join(f"| {t} | {n} |" for t, n in m.tables.items())),
        "pruned_generations": dg.MetadataValue.json(list(result.pruned)),
    }


def _verification(v: Verification) -> dict[str, Any]:
    return entries({
        "method": v.method,
        "scratch": v.scratch,
        "sha256_ok": v.sha256_ok,
        "toc_entries": v.toc_entries,
        "rows_restored": v.rows,  # unknown (nothing restored) is left out, never -1
        "row_checksum_restored": v.row_checksum,
        "seconds": v.seconds,
        "note": v.note,
        "stale_scratch_dropped": v.stale_scratch_dropped or None,
        "error": v.error,
        "mismatches": v.mismatches or None,
    })


def month_verification(generation: Generation, v: Verification) -> dg.AssetCheckResult:
    """The scratch restore of a month backup: the rows and checksum restored against the manifest."""
    m = generation.manifest
    if v.ok:
        description = (f"{generation.name} restored into a {v.method}: {v.rows} rows, checksum {v.row_checksum}, "
                       "equal to the manifest")
    else:
        description = f"{generation.name} did not verify: {v.error or 'restored rows differ from the manifest'}"
    return dg.AssetCheckResult(passed=v.ok, description=description, metadata={
        "generation": generation.name, **entries({"rows_in_manifest": m.rows, "row_checksum_in_manifest": m.row_checksum}),
        **_verification(v)})


def full_verification(generation: Generation, v: Verification) -> dg.AssetCheckResult:
    """The scratch restore of a full backup: every table's count against the manifest."""
    m = generation.manifest
    differing = {t: {"manifest": n, "restored": v.tables.get(t)} for t, n in m.tables.items() if v.tables.get(t) != n}
    if v.ok:
        description = f"{generation.name} restored: all {len(m.tables)} tables have the manifest's row counts"
    else:
        description = f"{generation.name} did not verify: " + (
            v.error or f"{len(differing)} table(s) differ: " + ", ".join(sorted(differing)))
    return dg.AssetCheckResult(passed=v.ok, description=description, metadata={
        "generation": generation.name, "tables_in_manifest": len(m.tables), "rows_in_manifest": sum(m.tables.values()),
        **entries({"tables_differing": differing or None}), **_verification(v)})


def missing_backup(what: str, where: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"no {what} in {where}: nothing to verify",
                               metadata={"generations": 0})


def pitr(report: PitrReport) -> dg.AssetCheckResult:
    """WAL archiving readiness; the age of the last archived WAL is left out when none was archived."""
    description = ("ready for point-in-time recovery" if report.ready
                   else "not ready for point-in-time recovery: " + "; ".join(report.problems))
    return dg.AssetCheckResult(
        passed=report.ready, severity=dg.AssetCheckSeverity.WARN, description=description,
        metadata={
            "wal_level": report.wal_level,
            "archive_mode": report.archive_mode,
            "archive_command": report.archive_command or "(empty)",
            "archive_library": report.archive_library or "(empty)",
            "archived_count": report.archived_count,
            "failed_count": report.failed_count,
            "last_archived_wal": report.last_archived_wal or "(none)",
            **entries({"last_archived_age_s": round(report.last_archived_age_s, 1)
                       if report.last_archived_age_s is not None else None}),
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems) or "none"),
        },
    )


def retirement(plan, result: Optional[Any]) -> dict[str, Any]:
    """``retention.RetirementPlan`` and, when this run changed something, its ``RetirementResult``."""
    metadata = {
        "status": plan.status,
        "plan": dg.MetadataValue.md(plan.to_markdown()),
        "retention": plan.policy.retention,
        "cutoff_month": plan.cutoff.isoformat(),
        "action": plan.policy.action,
        "detach_mode": plan.detach_mode or "none",
        **entries({"backup_generation": plan.backup.name if plan.backup else None,
                   "backup_sha256": plan.backup.manifest.sha256 if plan.backup else None}),
    }
    if result is not None:
        metadata.update(entries({"rows_retired": result.rows_retired, "seconds": result.seconds,
                                 "detach_attempts": result.detach_attempts, "archived_as": result.archived_as or None}))
    return metadata


def retirement_plan(asset_key: dg.AssetKey, partition: str, plan) -> dg.AssetObservation:
    """What retiring the month would do (or why it would be refused), as an observation of it."""
    return plan_observation(asset_key, partition, plan.to_markdown(), status=plan.status, refusal=plan.refusal,
                            current_rows=plan.current_rows,
                            backup_generation=plan.backup.name if plan.backup else None)
