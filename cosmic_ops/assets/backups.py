"""Backups in Dagster: ``event_log_backups`` (monthly, closed months only) with its blocking
verification, ``full_backup`` with its verification and the PITR readiness check, the restore
job and the schedules. Each piece reads config/resources and calls one core function; what
the UI shows is built in ``metadata.backups``."""


from datetime import date
from typing import Annotated, Optional

import dagster as dg
from pydantic import Field

from ..backups import (
    BackupStoreError, NoPartitionToBackUp, PgClientNotFound, PgToolFailed, PolicyError, RestoreRefused,
    RetentionPolicy, backup_month, full_backup as run_full_backup, pitr_readiness,
    restore_month, verify_full_backup, verify_month_backup,
)
from ..backups.month import BACKED_UP
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from ..timeutil import add_months, month_start
from .common import CLOSED_MONTHS, MAINTENANCE_POOL, MONTHLY, PlainIdentifier, as_of_tags, month_key, month_of, parsed_by
from .metadata import backups as md
from .metadata import event_logs as event_logs_md

GROUP = "backups"
EVENT_LOG_PARTITIONS = dg.AssetKey("event_log_partitions")
_OPERATIONAL = (BackupStoreError, NoPartitionToBackUp, PgClientNotFound, PgToolFailed, PolicyError)


# ---------------------------------------------------------------------------
# per-month backups


def _keep_generations():
    return Field(default=RetentionPolicy().keep_generations, ge=1,
                 description="backups kept (of the month, or full); the newest verified one is always kept too")


class MonthBackupConfig(dg.Config):
    keep_generations: int = _keep_generations()


# Month M of the backups is a dump of month M of the partitions (same month, no offset).
SAME_MONTH = dg.TimeWindowPartitionMapping()


@dg.asset(
    key="event_log_backups",
    partitions_def=CLOSED_MONTHS,
    deps=[dg.AssetDep(EVENT_LOG_PARTITIONS, partition_mapping=SAME_MONTH)],
    group_name=GROUP,
    kinds={"postgres"},
    pool=MAINTENANCE_POOL,
    description="pg_dump -Fc of the month's event_logs partition into the backup store, with a manifest "
    "(file, bytes, sha256, rows and checksum taken in the dump's snapshot). Each run is a new generation. "
    "Closed months only, one month per run (a backfill of several months is a run per month).",
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
    return dg.MaterializeResult(metadata=md.month_backup(result))


@dg.asset_check(
    asset=event_log_backups,
    name="backup_restores_with_equal_rows",
    blocking=True,
    partitions_def=CLOSED_MONTHS,
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
        return md.missing_backup(f"backup of {month:%Y-%m}", str(store.root))
    verification = verify_month_backup(store, generations[0], conninfo=postgres.conninfo(), client=client)
    return md.month_verification(generations[0], verification)


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
    return dg.MaterializeResult(metadata=md.full_backup(result, config.jobs))


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
        return md.missing_backup("full backup", str(store.root))
    jobs = generations[0].manifest.jobs or 1
    verification = verify_full_backup(store, generations[0], conninfo=postgres.conninfo(), client=client, jobs=jobs)
    return md.full_verification(generations[0], verification)


@dg.asset_check(
    asset=full_backup,
    name="pitr_readiness",
    description="Reports wal_level, archive_mode, archive_command/library and the age of the last archived "
    "WAL (pg_stat_archiver). Warns, never changes server settings.",
)
def pitr_readiness_check(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="pitr readiness") as conn:
        return md.pitr(pitr_readiness(conn))


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
    if result.attached and MONTHLY.has_partition_key(month_key(month)):
        # The month exists again: its partition bar shows it, with the backup it came from.
        context.log_event(dg.AssetMaterialization(asset_key=EVENT_LOG_PARTITIONS, partition=month_key(month),
                                                  metadata=event_logs_md.restored(result, month_key(month))))
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
