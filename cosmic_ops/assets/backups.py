"""Backups in Dagster: ``event_log_backups`` (monthly) with its blocking verification,
``full_backup`` with its verification and the PITR readiness check, the restore job
and the schedules. Each piece reads config/resources and calls one core function."""


from datetime import date
from typing import Annotated, Optional

import dagster as dg
from pydantic import Field

from ..backups import (
    BackupStoreError, NoPartitionToBackUp, PgClientNotFound, PgToolFailed, PolicyError, RestoreRefused,
    RetentionPolicy, Verification, backup_month, full_backup as run_full_backup, pitr_readiness,
    restore_month, verify_full_backup, verify_month_backup,
)
from ..backups.month import BACKED_UP
from ..backups.store import Generation
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from ..timeutil import add_months, month_start
from .common import MAINTENANCE_POOL, MONTHLY, PlainIdentifier, as_of_tags, month_of, parsed_by

GROUP = "backups"
EVENT_LOG_PARTITIONS = dg.AssetKey("event_log_partitions")
_OPERATIONAL = (BackupStoreError, NoPartitionToBackUp, PgClientNotFound, PgToolFailed, PolicyError)


def _manifest_metadata(generation: Generation) -> dict:
    m = generation.manifest
    mb_per_s = (m.bytes / 1e6) / m.seconds if m.seconds else 0.0
    return {
        "path": dg.MetadataValue.path(str(generation.file)),
        "generation": generation.name,
        "bytes": m.bytes,
        "sha256": m.sha256,
        "rows": m.rows,
        "mb_per_s": round(mb_per_s, 2),
        "seconds": m.seconds,
        "server_version": m.server_version,
        "pg_client": m.client,
    }


def _verification_metadata(v: Verification) -> dict:
    metadata = {
        "method": v.method,
        "scratch": v.scratch or "",
        "sha256_ok": v.sha256_ok,
        "toc_entries": v.toc_entries,
        "rows_restored": v.rows if v.rows is not None else -1,
        "seconds": v.seconds,
    }
    if v.row_checksum:
        metadata["row_checksum_restored"] = v.row_checksum
    if v.note:
        metadata["note"] = v.note
    if v.stale_scratch_dropped:
        metadata["stale_scratch_dropped"] = dg.MetadataValue.json(v.stale_scratch_dropped)
    if v.error:
        metadata["error"] = v.error
    if v.mismatches:
        metadata["mismatches"] = dg.MetadataValue.json(v.mismatches)
    return metadata


# ---------------------------------------------------------------------------
# per-month backups


def _keep_generations():
    return Field(default=RetentionPolicy().keep_generations, ge=1,
                 description="backups kept (of the month, or full); the newest verified one is always kept too")


class MonthBackupConfig(dg.Config):
    keep_generations: int = _keep_generations()


@dg.asset(
    key="event_log_backups",
    partitions_def=MONTHLY,
    deps=[EVENT_LOG_PARTITIONS],
    group_name=GROUP,
    kinds={"postgres"},
    pool=MAINTENANCE_POOL,
    description="pg_dump -Fc of the month's event_logs partition into the backup store, with a manifest "
    "(file, bytes, sha256, rows and checksum taken in the dump's snapshot). Each run is a new generation.",
)
def event_log_backups(
    context: dg.AssetExecutionContext,
    config: MonthBackupConfig,
    postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dg.MaterializeResult:
    month = month_of(context.partition_key)
    try:
        with postgres.connect(purpose="backup") as conn:
            result = backup_month(conn, backup_store.store(), backup_store.client(conn),
                                  conninfo=postgres.conninfo(), month=month,
                                  keep_generations=config.keep_generations)
    except _OPERATIONAL as exc:
        raise dg.Failure(description=str(exc)) from None
    if result.status == BACKED_UP:
        context.log.info("backed up %s rows of %s to %s", result.generation.manifest.rows, month,
                         result.generation.path)
    else:
        context.log.info("%s has no partition any more (%s): its verified backup %s stands, nothing was dumped",
                         month, result.status, result.generation.name)
    return dg.MaterializeResult(metadata={
        "status": result.status,
        **_manifest_metadata(result.generation),
        "pruned_generations": dg.MetadataValue.json(list(result.pruned)),
    })


@dg.asset_check(
    asset=event_log_backups,
    name="backup_restores_with_equal_rows",
    blocking=True,
    partitions_def=MONTHLY,
    description="Restores the newest backup of the month into a scratch database (or schema) and compares "
    "row count and row checksum with the manifest. Retention reads this record.",
)
def backup_restores_with_equal_rows(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, backup_store: BackupStoreResource
) -> dg.AssetCheckResult:
    month = month_of(context.partition_key)
    store = backup_store.store()
    with postgres.connect(purpose="verify backup") as conn:
        client = backup_store.client(conn)
        generations = store.month_generations(conn.info.dbname, "event_logs", month)
    if not generations:
        return dg.AssetCheckResult(passed=False, metadata={"error": f"no backup of {month:%Y-%m} in {store.root}"})
    verification = verify_month_backup(store, generations[0], conninfo=postgres.conninfo(), client=client)
    return dg.AssetCheckResult(
        passed=verification.ok,
        metadata={"generation": generations[0].name, "rows_in_manifest": generations[0].manifest.rows,
                  **_verification_metadata(verification)},
    )


# ---------------------------------------------------------------------------
# full backup


class FullBackupConfig(dg.Config):
    jobs: int = Field(default=2, ge=1, le=64, description="pg_dump --jobs: tables dumped side by side")
    keep_generations: int = _keep_generations()


@dg.asset(
    key="full_backup",
    group_name=GROUP,
    kinds={"postgres"},
    pool=MAINTENANCE_POOL,
    description="pg_dump -Fd -j N of the whole managed database into the backup store, with per-table "
    "row counts taken in the dump's snapshot. Restore: see cosmic_ops/backups/RESTORE.md.",
)
def full_backup(
    context: dg.AssetExecutionContext,
    config: FullBackupConfig,
    postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dg.MaterializeResult:
    try:
        with postgres.connect(purpose="full backup") as conn:
            result = run_full_backup(conn, backup_store.store(), backup_store.client(conn),
                                     conninfo=postgres.conninfo(), jobs=config.jobs,
                                     keep_generations=config.keep_generations)
    except _OPERATIONAL as exc:
        raise dg.Failure(description=str(exc)) from None
    m = result.generation.manifest
    return dg.MaterializeResult(metadata={
        **_manifest_metadata(result.generation),
        "jobs": config.jobs,
        "tables": len(m.tables),
        "rows_per_table": dg.MetadataValue.md(
            "| table | rows |\n|---|---|\n" + "\n".join(f"| {t} | {n} |" for t, n in m.tables.items())),
        "pruned_generations": dg.MetadataValue.json(list(result.pruned)),
    })


@dg.asset_check(
    asset=full_backup,
    name="full_backup_restores_with_equal_counts",
    blocking=True,
    description="Restores the newest full backup into a scratch database and compares per-table row counts.",
)
def full_backup_restores_with_equal_counts(
    postgres: PostgresResource, backup_store: BackupStoreResource
) -> dg.AssetCheckResult:
    store = backup_store.store()
    with postgres.connect(purpose="verify full backup") as conn:
        client = backup_store.client(conn)
        generations = store.full_generations(conn.info.dbname)
    if not generations:
        return dg.AssetCheckResult(passed=False, metadata={"error": f"no full backup in {store.root}"})
    jobs = generations[0].manifest.jobs or 1
    verification = verify_full_backup(store, generations[0], conninfo=postgres.conninfo(), client=client, jobs=jobs)
    return dg.AssetCheckResult(passed=verification.ok,
                               metadata={"generation": generations[0].name, **_verification_metadata(verification)})


@dg.asset_check(
    asset=full_backup,
    name="pitr_readiness",
    description="Reports wal_level, archive_mode, archive_command/library and the age of the last archived "
    "WAL (pg_stat_archiver). Warns, never changes server settings.",
)
def pitr_readiness_check(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="pitr readiness") as conn:
        report = pitr_readiness(conn)
    age = report.last_archived_age_s
    return dg.AssetCheckResult(
        passed=report.ready,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "wal_level": report.wal_level,
            "archive_mode": report.archive_mode,
            "archive_command": report.archive_command or "(empty)",
            "archive_library": report.archive_library or "(empty)",
            "archived_count": report.archived_count,
            "failed_count": report.failed_count,
            "last_archived_wal": report.last_archived_wal or "(none)",
            "last_archived_age_s": round(age, 1) if age is not None else -1.0,
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems) or "none"),
        },
    )


# ---------------------------------------------------------------------------
# restore of a month


def parse_month(text: str) -> date:
    text = text.strip()
    try:
        return month_start(date.fromisoformat(text if len(text) > 7 else f"{text}-01"))
    except ValueError:
        raise PolicyError(f"month {text!r} is not YYYY-MM or YYYY-MM-01") from None


class RestoreEventLogMonthConfig(dg.Config):
    """``month``: ``YYYY-MM`` or ``YYYY-MM-01``. ``target``: ``partition`` re-attaches the
    month; anything else is the name of a new standalone table (in ``schema_name``,
    default the partition's schema)."""

    month: Annotated[str, parsed_by(parse_month)]
    target: PlainIdentifier = "partition"
    schema_name: Optional[PlainIdentifier] = None


@dg.op(name="restore_event_log_month_op", pool=MAINTENANCE_POOL,
       description="Restores one month of event_logs from its newest verified backup.")
def restore_event_log_month_op(
    context: dg.OpExecutionContext,
    config: RestoreEventLogMonthConfig,
    postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dict:
    month = parse_month(config.month)
    table = None if config.target == "partition" else config.target
    try:
        with postgres.connect(purpose="restore month") as conn:
            result = restore_month(conn, backup_store.store(), backup_store.client(conn), month=month,
                                   table=table, schema=config.schema_name)
    except (RestoreRefused, *_OPERATIONAL) as exc:
        raise dg.Failure(description=str(exc)) from None
    summary = {"table": f"{result.schema}.{result.table}", "attached": result.attached, "rows": result.rows,
               "row_checksum": result.row_checksum, "generation": result.generation,
               "resumed": result.resumed, "seconds": result.seconds}
    context.add_output_metadata({**summary, "recovered": dg.MetadataValue.json(list(result.recovered))}
                                if result.recovered else summary)
    return summary


@dg.job(name="restore_event_log_month", description="Restore one month (config: month, target).")
def restore_event_log_month_job():
    restore_event_log_month_op()


# ---------------------------------------------------------------------------
# jobs and schedules

event_log_backup_job = dg.define_asset_job(
    "event_log_backup_job",
    selection=dg.AssetSelection.assets(event_log_backups),
    description="Back up one month of event_logs and verify it by a scratch restore.",
)
full_backup_job = dg.define_asset_job(
    "full_backup_job",
    selection=dg.AssetSelection.assets(full_backup),
    description="Full parallel backup, its verification and the PITR readiness report.",
)


def closed_month(moment) -> date:
    """The month that ended just before ``moment``'s month began."""
    return add_months(month_start(moment.date()), -1)


@dg.schedule(
    name="event_log_backups_monthly",
    job=event_log_backup_job,
    cron_schedule="30 0 1 * *",  # after partition maintenance at 00:00 on the 1st
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Backs up (and verifies) the month that just closed.",
)
def event_log_backups_monthly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    month = closed_month(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"event_log_backups:{month.isoformat()}", partition_key=month.isoformat(),
                         tags=as_of_tags(context.scheduled_execution_time))


full_backup_weekly = dg.ScheduleDefinition(
    name="full_backup_weekly",
    job=full_backup_job,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly full backup (Sunday 03:00 UTC) with verification and PITR report.",
)

defs = dg.Definitions(
    assets=[event_log_backups, full_backup],
    asset_checks=[backup_restores_with_equal_rows, full_backup_restores_with_equal_counts, pitr_readiness_check],
    jobs=[event_log_backup_job, full_backup_job, restore_event_log_month_job],
    schedules=[event_log_backups_monthly, full_backup_weekly],
)
