"""``event_log_retention`` (monthly, closed months only): retire a month past retention, never
without a verified backup; the monthly retirement job backs the month up and verifies it
first, so lineage reads partition -> backup -> retention for each month. A retired month is
recorded on its month of ``event_log_partitions`` too (an observation ``retired: true``).
``event_log_retention_plan`` shows what a retirement would do and changes nothing."""


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
from .backups import SAME_MONTH, event_log_backups
from .common import (
    CLOSED_MONTHS, MAINTENANCE_POOL, MONTHLY, PlainIdentifier, as_of_tags, month_of, parsed_by, run_clock,
)
from .event_logs import ASSET_KEY as EVENT_LOG_PARTITIONS
from .metadata import backups as md
from .metadata import recovery_entries
from .metadata import event_logs as event_logs_md

_DEFAULT_POLICY = RetentionPolicy()


# Plan statuses after which the month's table is gone from event_logs (dropped or archived).
RETIRED_STATUSES = ("retire", "resume", "record-done", "already-retired")


class RetentionConfig(dg.Config):
    retention: Annotated[str, parsed_by(parse_retention_months)] = Field(
        default=_DEFAULT_POLICY.retention, description="months kept attached, with unit (e.g. \"12 months\")")
    action: Literal[RETIRE_ACTIONS] = Field(default=_DEFAULT_POLICY.action,
                                            description="drop the month, or move it to archive_schema")
    archive_schema: PlainIdentifier = Field(default=_DEFAULT_POLICY.archive_schema,
                                            description="schema retired months move to (action archive-schema)")


@dg.asset(
    key="event_log_retention",
    partitions_def=CLOSED_MONTHS,
    deps=[dg.AssetDep(event_log_backups, partition_mapping=SAME_MONTH)],
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
    policy = _policy(config)
    today = run_clock(context).date()
    try:
        with postgres.connect(purpose="retention") as conn:
            outcome = retire_month(conn, backup_store.store(), conninfo=postgres.conninfo(),
                                   month=month_of(context.partition_key), policy=policy, today=today)
    except (RetentionRefused, MaintenanceLockBusy, LockRetriesExhausted) as exc:
        raise dg.Failure(description=str(exc)) from None
    plan = outcome if isinstance(outcome, RetirementPlan) else outcome.plan
    result = None if isinstance(outcome, RetirementPlan) else outcome
    if plan.status == "refused":
        raise dg.Failure(description=plan.refusal, metadata={"plan": dg.MetadataValue.md(plan.to_markdown())})
    if plan.status in RETIRED_STATUSES and MONTHLY.has_partition_key(context.partition_key):
        # The month's partition is gone: say so where its partition is shown.
        context.log_event(dg.AssetObservation(asset_key=EVENT_LOG_PARTITIONS, partition=context.partition_key,
                                              description=f"retired ({plan.status}): the partition no longer exists",
                                              metadata=event_logs_md.retired(plan, result)))
    recovered = recovery_entries(result.recovery) if result is not None else {}
    return dg.MaterializeResult(metadata={**md.retirement(plan, result), **recovered})


def _policy(config: RetentionConfig) -> RetentionPolicy:
    try:
        return RetentionPolicy(retention=config.retention, action=config.action, archive_schema=config.archive_schema)
    except PolicyError as exc:
        raise dg.Failure(description=str(exc)) from None


@dg.op(description="What event_log_retention would do for the month (or why it would refuse), recorded as an "
                   "observation of the month. Reads only: no materialization, no check result.")
def plan_event_log_retention(context: dg.OpExecutionContext, config: RetentionConfig, postgres: PostgresResource,
                             backup_store: BackupStoreResource) -> None:
    policy = _policy(config)
    with postgres.connect(purpose="retention plan") as conn:
        plan = retire_month(conn, backup_store.store(), conninfo=postgres.conninfo(),
                            month=month_of(context.partition_key), policy=policy,
                            today=run_clock(context).date(), dry_run=True)
    context.log_event(md.retirement_plan(event_log_retention.key, context.partition_key, plan))
    context.log.info("plan for %s: %s%s", context.partition_key, plan.status,
                     f" ({plan.refusal})" if plan.refusal else "")


@dg.job(name="event_log_retention_plan", partitions_def=CLOSED_MONTHS,
        description="Dry run of event_log_retention: the month's retirement plan as an observation; changes nothing.")
def event_log_retention_plan():
    plan_event_log_retention()


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
    jobs=[event_log_retirement_job, event_log_retention_plan],
    schedules=[event_log_retention_monthly],
)
