"""Monthly ``event_logs`` partitions in Dagster (SPEC §3.2–3.3).

- ``event_log_partitions`` (monthly): materializing month M makes its partition exist
  with the policy's bounds, indexes and storage settings. A run over several months
  records each month with its own metadata. ``month_query_pruned`` checks each month.
- ``event_logs_table`` (the table as a whole, unpartitioned): what exists now, and the
  checks on the whole table: the premake months exist, DEFAULT is empty, every partition
  has the policy's indexes and storage, the months are contiguous. A sensor reads it again
  after every change of months, so its checks are recorded once per change, not per month.
- ``event_log_partitions_plan``: what a materialization would do, recorded as an
  observation of each month; changes nothing and records no materialization or check.
- ``event_log_default_rehoming_job`` + ``event_log_default_rows_sensor``: rows that
  landed in DEFAULT are moved into their months, which are created as needed.
- Schedules: the seed's ``0 0 1 * *`` built from the partitioned job (it asks for the
  newest month), and a daily 00:05 UTC run of the whole lookback..premake window.
  The daily one is a custom schedule because ``build_schedule_from_partitioned_job``
  only runs at the partitions' cadence and only asks for the last key: after a fresh
  deploy or a daemon outage the earlier premake months would stay missing. One ranged
  run (``BackfillPolicy.single_run``) covers the window; months that exist are no-ops.
"""


import json
from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from ..db import LockRetryPolicy
from ..partitions import EVENT_LOGS_POLICY, ensure_months, rehome_default_rows
from ..partitions.maintain import read_with_retry
from ..partitions.state import (
    check_contiguous,
    check_default_empty,
    check_indexes_and_storage,
    check_month_pruning,
    check_months_exist,
    default_rows_by_month,
    describe_month,
    describe_table,
)
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from .common import MAINTENANCE_POOL, MONTHLY, as_of_tags, month_key, newest_materialization, run_clock, run_months
from .metadata import check_evaluation, check_result, recovery_entries
from .metadata import event_logs as md

POLICY = EVENT_LOGS_POLICY
GROUP = "event_logs"
ASSET_KEY = dg.AssetKey("event_log_partitions")
TABLE_KEY = dg.AssetKey("event_logs_table")
# Tags Dagster reads to run one partition range in a single run (as the UI's
# "launch single run" does); the range-run test proves Dagster reads them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

if MONTHLY.end_offset != POLICY.premake + 1:
    raise RuntimeError(
        f"MONTHLY.end_offset is {MONTHLY.end_offset} but the event_logs policy premakes {POLICY.premake} "
        "months: Dagster would not list every premade month (end_offset must be premake + 1)"
    )


class LockSettings(dg.Config):
    lock_timeout_ms: int = Field(default=2000, ge=1, description="lock_timeout of each DDL attempt")
    lock_attempts: int = Field(default=5, ge=1, description="attempts before failing with nothing changed")
    maintenance_lock_wait_s: float = Field(
        default=0.0, ge=0, description="how long to wait for another run's maintenance lock before failing")

    def retry(self) -> LockRetryPolicy:
        return LockRetryPolicy(lock_timeout_ms=self.lock_timeout_ms, attempts=self.lock_attempts)


class EventLogPartitionsConfig(LockSettings):
    exact_rows: bool = Field(default=False, description="count rows exactly (scans the month)")


@dg.asset(
    key=ASSET_KEY,
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=MAINTENANCE_POOL,
    group_name=GROUP,
    kinds={"postgres"},
    deps=["cosmic_schema"],
    description="One event_logs partition per month, [M, M+1 month) in UTC, with the policy's indexes and "
                "storage settings; created outside the tree, CHECKed, attached; rows for M in DEFAULT move in. "
                "Each month's materialization carries that month's own facts, also in a run over a range.",
)
def event_log_partitions(
    context: dg.AssetExecutionContext, config: EventLogPartitionsConfig, postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dg.MaterializeResult:
    months = run_months(context)
    with postgres.connect(purpose="event_log_partitions") as conn:
        result = ensure_months(conn, POLICY, months, retry=config.retry(),
                               lock_wait_s=config.maintenance_lock_wait_s, store=backup_store.store())
        plans = {m: result.plan.for_month(m).to_markdown(conn) for m in months}
        facts = read_with_retry(
            conn, lambda c: {m: describe_month(c, POLICY, m, exact_rows=config.exact_rows) for m in months},
            what="describe months", retry=config.retry())
    for month in months:
        context.add_asset_metadata(md.month(facts[month], result.for_month(month), plans[month]),
                                   partition_key=month_key(month))
    context.log.info("created %s; %d row(s) moved from DEFAULT", result.created or "nothing", result.rows_moved)
    return dg.MaterializeResult(metadata=recovery_entries(result.recovery))


@dg.op(description="What event_log_partitions would do for the run's months, recorded as an observation of "
                   "each month (with the SQL). Reads only: no materialization, no check result.")
def plan_event_log_partitions(context: dg.OpExecutionContext, config: LockSettings,
                              postgres: PostgresResource) -> None:
    months = run_months(context)
    with postgres.connect(purpose="event_log_partitions plan") as conn:
        plan = ensure_months(conn, POLICY, months, dry_run=True, retry=config.retry()).plan
        for month in months:
            month_plan = plan.for_month(month)
            context.log_event(md.plan(ASSET_KEY, month_plan, month_plan.to_markdown(conn)))
    context.log.info("planned %d action(s) for %d month(s); nothing changed", len(plan.actions), len(months))


@dg.job(name="event_log_partitions_plan", partitions_def=MONTHLY,
        description="Dry run of event_log_partitions: the plan of each month as an observation; changes nothing.")
def event_log_partitions_plan():
    plan_event_log_partitions()


# ---------------------------------------------------------------------------
# Checks of one month, and of the table as a whole (the state of the database, whatever ran before)

MONTH_QUERY_PRUNED = dg.AssetCheckKey(ASSET_KEY, "month_query_pruned")


@dg.multi_asset_check(
    name="month_query_pruned",
    specs=[dg.AssetCheckSpec(MONTH_QUERY_PRUNED.name, asset=ASSET_KEY, partitions_def=MONTHLY,
                             description="EXPLAIN of a one-month query on event_logs touches only that "
                                         "month's partition.")],
    can_subset=True,  # the evaluations are yielded per month, so the check's single output is optional
)
def month_query_pruned(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    with postgres.connect(purpose="check pruning") as conn:
        for month in run_months(context):
            yield check_evaluation(MONTH_QUERY_PRUNED, month_key(month), check_month_pruning(conn, POLICY, month))


@dg.asset(
    key=TABLE_KEY,
    group_name=GROUP,
    kinds={"postgres"},
    deps=[dg.AssetDep(ASSET_KEY, partition_mapping=dg.AllPartitionMapping())],
    description="The event_logs table as a whole, as it is now: every partition that exists (bounds, rows, "
                "bytes) and the rows in DEFAULT. Its checks are about the whole table. Read again after every "
                "change of months (event_logs_table_sensor) and hourly (monitoring_snapshot_job).",
)
def event_logs_table(postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect(purpose="event_logs table state") as conn:
        state = describe_table(conn, POLICY)
    return dg.MaterializeResult(metadata=md.table_state(state))


def _table_check(name: str, description: str, *, blocking: bool = False):
    return dg.asset_check(asset=TABLE_KEY, name=name, description=description, blocking=blocking)


@_table_check("premake_months_exist", "This month and the next `premake` months have partitions with exact bounds.")
def premake_months_exist(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check premake") as conn:
        return check_result(check_months_exist(conn, POLICY, now=run_clock(context)))


@_table_check("default_partition_empty", "No row waits in event_logs_default (the rehoming job empties it).")
def default_partition_empty(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check default") as conn:
        return check_result(check_default_empty(conn, POLICY), dg.AssetCheckSeverity.WARN)


@_table_check("partitions_have_policy_indexes_and_storage",
              "Every partition, DEFAULT included, has the policy's indexes and storage settings.")
def partitions_have_policy_indexes_and_storage(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check indexes") as conn:
        return check_result(check_indexes_and_storage(conn, POLICY))


@_table_check("partitions_contiguous",
              "Monthly partitions with no gap or overlap from the retention horizon to the last premade month.",
              blocking=True)
def partitions_contiguous(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check contiguous") as conn:
        return check_result(check_contiguous(conn, POLICY, now=run_clock(context)))


MONTH_CHECKS = [month_query_pruned]
TABLE_CHECKS = [premake_months_exist, default_partition_empty, partitions_have_policy_indexes_and_storage,
                partitions_contiguous]
STATE_CHECKS = MONTH_CHECKS + TABLE_CHECKS


# ---------------------------------------------------------------------------
# Job and schedules for the months


event_log_partitions_job = dg.define_asset_job(
    "event_log_partitions_job", selection=dg.AssetSelection.assets(ASSET_KEY),
    description="Create/verify event_logs months (each month's query-pruning check runs with it).",
)
event_logs_table_job = dg.define_asset_job(
    "event_logs_table_job", selection=dg.AssetSelection.assets(TABLE_KEY),
    description="Read the event_logs table as it is now and run the checks on the whole table.",
)

@dg.schedule(
    name="event_log_partitions_monthly_schedule", job=event_log_partitions_job, cron_schedule="0 0 1 * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The seed's pg_cron `0 0 1 * *` (UTC): materializes the newest month (premake months ahead).",
)
def event_log_partitions_monthly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    # What build_schedule_from_partitioned_job asks for, without its deprecated
    # JobDefinition.run_request_for_partition: the last key of the window at the tick.
    key = MONTHLY.get_partition_keys(current_time=context.scheduled_execution_time)[-1]
    return dg.RunRequest(run_key=key, partition_key=key, tags=as_of_tags(context.scheduled_execution_time))


def premake_window_keys(now: datetime) -> list[str]:
    """Dagster keys of the seed's window, lookback .. premake, around ``now``."""
    return [f"{m:%Y-%m-%d}" for m in POLICY.window(now)]


@dg.schedule(
    name="event_log_partitions_daily_schedule", job=event_log_partitions_job, cron_schedule="5 0 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily 00:05 UTC: one run over the lookback..premake months, so a quiet table still gets its "
                "future months and a missed month is made up the next day.",
)
def event_log_partitions_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    keys = [k for k in premake_window_keys(context.scheduled_execution_time) if MONTHLY.has_partition_key(k)]
    return dg.RunRequest(
        run_key=f"window:{keys[0]}:{keys[-1]}:{context.scheduled_execution_time:%Y-%m-%d}",
        tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1], **as_of_tags(context.scheduled_execution_time)},
    )


# ---------------------------------------------------------------------------
# DEFAULT rehoming


class RehomeConfig(LockSettings):
    max_months: int = Field(default=24, ge=1, description="months moved per run (one transaction each)")
    dry_run: bool = False


@dg.op(pool=MAINTENANCE_POOL, description="Move DEFAULT rows into their months, one month per transaction.")
def rehome_default_rows_op(context: dg.OpExecutionContext, config: RehomeConfig,
                           postgres: PostgresResource, backup_store: BackupStoreResource) -> None:
    with postgres.connect(purpose="rehome default") as conn:
        result = rehome_default_rows(conn, POLICY, max_months=config.max_months, dry_run=config.dry_run,
                                     retry=config.retry(), lock_wait_s=config.maintenance_lock_wait_s,
                                     store=backup_store.store())
        created_facts = {r.action.month: describe_month(conn, POLICY, r.action.month) for r in result.results}
    for month, facts in created_facts.items():
        if MONTHLY.has_partition_key(month_key(month)):  # record the month in the asset's history too
            context.log_event(dg.AssetMaterialization(asset_key=ASSET_KEY, partition=month_key(month),
                                                      metadata=md.created_by_rehoming(facts)))
    context.log_event(dg.AssetObservation(asset_key=ASSET_KEY, metadata=md.rehoming(result)))
    if result.conflicts:
        raise dg.Failure(description="some months could not be created: " + "; ".join(result.conflicts),
                         metadata={"rows_moved": result.rows_moved})
    context.log.info("moved %d row(s) out of DEFAULT into %s; %d row(s) remain", result.rows_moved,
                     result.created, result.default_rows_after)


@dg.job(description="Move rows from event_logs_default into their months (creating them).")
def event_log_default_rehoming_job():
    rehome_default_rows_op()


RECHECK_AFTER_S = 3600


def _default_fingerprint(postgres: PostgresResource) -> tuple[int, str]:
    with postgres.connect(purpose="default sensor") as conn:
        _, by_month = default_rows_by_month(conn, POLICY)
    rows = sum(n for _, n in by_month)
    return rows, ",".join(f"{m:%Y-%m}={n}" if m else f"null={n}" for m, n in by_month)


@dg.sensor(job=event_log_default_rehoming_job, minimum_interval_seconds=300,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Rows in event_logs_default ask for one rehoming run per distinct content; "
                       "if the rows are still there an hour later, it asks again.")
def event_log_default_rows_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    rows, fingerprint = _default_fingerprint(postgres)
    previous = json.loads(context.cursor) if context.cursor else {}
    now = datetime.now(timezone.utc).timestamp()
    if rows == 0:
        context.update_cursor(json.dumps({"fingerprint": "", "requested_at": 0}))
        return dg.SkipReason("event_logs_default is empty")
    if previous.get("fingerprint") == fingerprint and now - previous.get("requested_at", 0) < RECHECK_AFTER_S:
        return dg.SkipReason(f"{rows} row(s) in DEFAULT ({fingerprint}); a rehoming run was already requested")
    context.update_cursor(json.dumps({"fingerprint": fingerprint, "requested_at": now}))
    return dg.RunRequest(run_key=f"rehome:{fingerprint}:{int(now // RECHECK_AFTER_S)}",
                         tags={"cosmic_ops/default_rows": str(rows)})


# What changes the months of event_logs: creating (and restoring) them, retiring them.
MONTH_CHANGES = (ASSET_KEY, dg.AssetKey("event_log_retention"))


@dg.sensor(job=event_logs_table_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="After months of event_logs were created, restored or retired, read the table again and "
                       "run its checks: once per change, whatever the number of months it touched.")
def event_logs_table_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    newest = newest_materialization(context.instance, MONTH_CHANGES, after)
    if newest is None:
        return dg.SensorResult(skip_reason="no month of event_logs changed since the last reading")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"event-logs-table-after-{newest}")],
                           cursor=str(newest))


defs = dg.Definitions(
    assets=[event_log_partitions, event_logs_table],
    asset_checks=STATE_CHECKS,
    jobs=[event_log_partitions_job, event_logs_table_job, event_log_partitions_plan,
          event_log_default_rehoming_job],
    schedules=[event_log_partitions_monthly_schedule, event_log_partitions_daily_schedule],
    sensors=[event_log_default_rows_sensor, event_logs_table_sensor],
)
