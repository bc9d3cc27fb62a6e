"""``event_log_retention`` (monthly): retire a month past retention, never without a
verified backup; the monthly retirement job backs the month up and verifies it
first, so lineage reads partition -> backup -> retention for each month."""


from typing import Annotated, Literal

import dagster as dg
from pydantic import Field

from ..backups import PolicyError, RetentionPolicy, parse_retention_months
from ..backups.policy import RETIRE_ACTIONS
from ..db import LockRetriesExhausted, MaintenanceLockBusy
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from ..retention import RetentionRefused, RetirementPlan, retire_month
from ..timeutil import add_months, month_start
from .backups import event_log_backups
from .common import MAINTENANCE_POOL, MONTHLY, PlainIdentifier, as_of_tags, month_of, parsed_by, run_clock

_DEFAULT_POLICY = RetentionPolicy()


class RetentionConfig(dg.Config):
    dry_run: bool = False
    retention: Annotated[str, parsed_by(parse_retention_months)] = Field(
        default=_DEFAULT_POLICY.retention, description="months kept attached, with unit (e.g. \"12 months\")")
    action: Literal[RETIRE_ACTIONS] = Field(default=_DEFAULT_POLICY.action,
                                            description="drop the month, or move it to archive_schema")
    archive_schema: PlainIdentifier = Field(default=_DEFAULT_POLICY.archive_schema,
                                            description="schema retired months move to (action archive-schema)")


@dg.asset(
    key="event_log_retention",
    partitions_def=MONTHLY,
    deps=[event_log_backups],
    group_name="backups",
    kinds={"postgres"},
    pool=MAINTENANCE_POOL,
    description="Retires the month's event_logs partition once it is past retention: detach (concurrently "
    "when PostgreSQL allows it), then drop or move to the archive schema. Refuses without a verified "
    "backup whose rows equal the partition's.",
)
def event_log_retention(
    context: dg.AssetExecutionContext,
    config: RetentionConfig,
    postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dg.MaterializeResult:
    try:
        policy = RetentionPolicy(retention=config.retention, action=config.action,
                                 archive_schema=config.archive_schema)
    except PolicyError as exc:
        raise dg.Failure(description=str(exc)) from None
    today = run_clock(context).date()
    try:
        with postgres.connect(purpose="retention") as conn:
            outcome = retire_month(conn, backup_store.store(), conninfo=postgres.conninfo(),
                                   month=month_of(context.partition_key), policy=policy, today=today,
                                   dry_run=config.dry_run)
    except (RetentionRefused, MaintenanceLockBusy, LockRetriesExhausted) as exc:
        raise dg.Failure(description=str(exc)) from None
    plan = outcome if isinstance(outcome, RetirementPlan) else outcome.plan
    if plan.status == "refused":
        raise dg.Failure(description=plan.refusal, metadata={"plan": dg.MetadataValue.md(plan.to_markdown())})
    metadata = {
        "status": "dry run: " + plan.status if config.dry_run else plan.status,
        "plan": dg.MetadataValue.md(plan.to_markdown()),
        "retention": policy.retention,
        "cutoff_month": plan.cutoff.isoformat(),
        "action": policy.action,
        "detach_mode": plan.detach_mode or "none",
    }
    if plan.backup:
        metadata["backup_generation"] = plan.backup.name
    if not isinstance(outcome, RetirementPlan):
        metadata.update(rows_retired=outcome.rows_retired, seconds=outcome.seconds,
                        detach_attempts=outcome.detach_attempts, archived_as=outcome.archived_as or "")
        if outcome.recovery:
            metadata.update({key: dg.MetadataValue.json(lines) for key, lines in outcome.recovery.metadata().items()})
    return dg.MaterializeResult(metadata=metadata)


event_log_retirement_job = dg.define_asset_job(
    "event_log_retirement_job",
    selection=dg.AssetSelection.assets(event_log_backups, event_log_retention),
    description="Fresh backup of the month, its blocking verification, then retirement.",
)


def month_crossing_retention(moment, policy: RetentionPolicy = _DEFAULT_POLICY):
    """The month that leaves the retention window at ``moment``."""
    return add_months(month_start(moment.date()), -policy.retention_months - 1)


@dg.schedule(
    name="event_log_retention_monthly",
    job=event_log_retirement_job,
    cron_schedule="0 2 1 * *",  # after the month's backup run (00:30)
    execution_timezone="UTC",
    description="Backs up, verifies and retires the month that just passed the retention window.",
)
def event_log_retention_monthly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    month = month_crossing_retention(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"event_log_retention:{month.isoformat()}", partition_key=month.isoformat(),
                         tags=as_of_tags(context.scheduled_execution_time))


defs = dg.Definitions(
    assets=[event_log_retention],
    jobs=[event_log_retirement_job],
    schedules=[event_log_retention_monthly],
)
