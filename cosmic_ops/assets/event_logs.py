"""Monthly ``event_logs`` partitions in Dagster (SPEC §3.2–3.3).

- ``event_log_partitions`` (monthly): materializing month M makes its partition exist
  with the policy's bounds, indexes and storage settings; a dry run returns the plan.
- Checks on the database state: the premake months exist, DEFAULT is empty, every
  partition has the policy's indexes and storage, the months are contiguous, a
  one-month query is pruned to its partition.
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
from datetime import date, datetime, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from ..db import RetryPolicy
from ..partitions import EVENT_LOGS_POLICY, ensure_months, rehome_default_rows
from ..partitions.maintain import read_with_retry
from ..partitions.state import (
    CheckOutcome,
    check_contiguous,
    check_default_empty,
    check_indexes_and_storage,
    check_month_pruning,
    check_months_exist,
    default_rows_by_month,
    describe_month,
)
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from .common import MAINTENANCE_POOL, MONTHLY, as_of_tags, month_of, run_clock

POLICY = EVENT_LOGS_POLICY
GROUP = "event_logs"
ASSET_KEY = dg.AssetKey("event_log_partitions")
# Tags Dagster reads to run one partition range in a single run (as the UI's
# "launch single run" does); tests pin them to Dagster's own constants.
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

    def retry(self) -> RetryPolicy:
        return RetryPolicy(lock_timeout_ms=self.lock_timeout_ms, attempts=self.lock_attempts)


class EventLogPartitionsConfig(LockSettings):
    dry_run: bool = Field(default=False, description="return the plan as metadata and change nothing")
    exact_rows: bool = Field(default=False, description="count rows exactly (scans the month)")


def _run_months(context) -> list[date]:
    """The months of this run: one key, or a range in a single-run backfill."""
    if context.has_partition_key:
        return [month_of(context.partition_key)]
    keys = MONTHLY.get_partition_keys_in_range(context.partition_key_range)
    return [month_of(k) for k in keys]


@dg.asset(
    key=ASSET_KEY,
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=MAINTENANCE_POOL,
    group_name=GROUP,
    kinds={"postgres"},
    deps=["cosmic_schema"],
    description="One event_logs partition per month, [M, M+1 month) in UTC, with the policy's indexes and "
                "storage settings; created outside the tree, CHECKed, attached; rows for M in DEFAULT move in.",
)
def event_log_partitions(
    context: dg.AssetExecutionContext, config: EventLogPartitionsConfig, postgres: PostgresResource,
    backup_store: BackupStoreResource,
) -> dg.MaterializeResult:
    months = _run_months(context)
    with postgres.connect(purpose="event_log_partitions") as conn:
        result = ensure_months(conn, POLICY, months, dry_run=config.dry_run, retry=config.retry(),
                               lock_wait_s=config.maintenance_lock_wait_s, store=backup_store.store())
        plan_md = result.plan.to_markdown(conn)
        if config.dry_run:
            context.log.info("dry run: %d action(s) planned, nothing changed", len(result.plan.actions))
            return dg.MaterializeResult(metadata={
                "dry_run": True, "plan": dg.MetadataValue.md(plan_md), "planned_actions": len(result.plan.actions),
            })
        facts = read_with_retry(
            conn, lambda c: {m: describe_month(c, POLICY, m, exact_rows=config.exact_rows) for m in months},
            what="describe months", retry=config.retry())
    context.log.info("created %s; %d row(s) moved from DEFAULT", result.created or "nothing", result.rows_moved)
    metadata: dict[str, Any] = {
        "dry_run": False,
        "created": bool(result.created),
        "created_partitions": dg.MetadataValue.json(result.created),
        "actions_applied": len(result.results),
        "rows_moved_from_default": result.rows_moved,
        "lock_wait_s": round(result.lock_wait_s, 3),
        "lock_attempts": max((r.attempts for r in result.results), default=0),
        "plan": dg.MetadataValue.md(plan_md),
        **{key: dg.MetadataValue.json(lines) for key, lines in result.recovery.metadata().items()},
    }
    if len(months) == 1:
        one = facts[months[0]]
        metadata.update({
            "partition": one["partition"],
            "lower_bound": one["lower_bound"],
            "upper_bound": one["upper_bound"],
            "rows_estimate": one["rows_estimate"],
            "total_bytes": dg.MetadataValue.int(one["total_bytes"]),
            "indexes": dg.MetadataValue.json(one["indexes"]),
            "storage": dg.MetadataValue.json(one["storage"]),
        })
        if config.exact_rows:
            metadata["rows_exact"] = one["rows_exact"]
    else:
        metadata["months"] = dg.MetadataValue.md(_months_table(facts))
        metadata["total_bytes"] = dg.MetadataValue.int(sum(f["total_bytes"] for f in facts.values()))
    return dg.MaterializeResult(metadata=metadata)


def _months_table(facts: dict[date, dict[str, Any]]) -> str:
    lines = ["| month | partition | lower | upper | rows (estimate) | bytes |", "|---|---|---|---|---|---|"]
    for month, f in facts.items():
        lines.append(f"| {month:%Y-%m} | {f['partition']} | {f['lower_bound']} | {f['upper_bound']} | "
                     f"{f.get('rows_exact', f['rows_estimate'])} | {f['total_bytes']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Checks: the state of the database, whatever ran before


def _result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=severity, description=outcome.description,
        metadata={k: v if isinstance(v, (int, float, str, bool)) else dg.MetadataValue.json(v)
                  for k, v in outcome.metadata.items() if v is not None},
    )


def _state_check(name: str, description: str, *, blocking: bool = False):
    return dg.asset_check(asset=ASSET_KEY, name=name, description=description, partitions_def=MONTHLY,
                          blocking=blocking)


@_state_check("premake_months_exist", "This month and the next `premake` months have partitions with exact bounds.")
def premake_months_exist(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check premake") as conn:
        return _result(check_months_exist(conn, POLICY, now=run_clock(context)))


@_state_check("default_partition_empty", "No row waits in event_logs_default (the rehoming job empties it).")
def default_partition_empty(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check default") as conn:
        return _result(check_default_empty(conn, POLICY), dg.AssetCheckSeverity.WARN)


@_state_check("partitions_have_policy_indexes_and_storage",
              "Every partition, DEFAULT included, has the policy's indexes and storage settings.")
def partitions_have_policy_indexes_and_storage(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check indexes") as conn:
        return _result(check_indexes_and_storage(conn, POLICY))


@_state_check("partitions_contiguous",
              "Monthly partitions with no gap or overlap from the retention horizon to the last premade month.",
              blocking=True)
def partitions_contiguous(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check contiguous") as conn:
        return _result(check_contiguous(conn, POLICY, now=run_clock(context)))


@_state_check("month_query_pruned", "EXPLAIN of a one-month query on event_logs touches only that month's partition.")
def month_query_pruned(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connect(purpose="check pruning") as conn:
        outcomes = [check_month_pruning(conn, POLICY, m) for m in _run_months(context)]
    failed = [o for o in outcomes if not o.passed]
    return _result(failed[0] if failed else outcomes[-1])


STATE_CHECKS = [premake_months_exist, default_partition_empty, partitions_have_policy_indexes_and_storage,
                partitions_contiguous, month_query_pruned]


# ---------------------------------------------------------------------------
# Job and schedules for the months


event_log_partitions_job = dg.define_asset_job(
    "event_log_partitions_job", selection=dg.AssetSelection.assets(ASSET_KEY),
    description="Create/verify event_logs months (with the state checks).",
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
        key = f"{month:%Y-%m-%d}"
        if MONTHLY.has_partition_key(key):  # record the month in the asset's history too
            context.log_event(dg.AssetMaterialization(
                asset_key=ASSET_KEY, partition=key,
                metadata={"created_by": "DEFAULT rehoming", "partition": facts["partition"],
                          "lower_bound": facts["lower_bound"], "upper_bound": facts["upper_bound"]}))
    context.log_event(dg.AssetObservation(asset_key=ASSET_KEY, metadata={
        "default_rows_before": result.default_rows_before,
        "default_rows_after": result.default_rows_after,
        "rows_moved": result.rows_moved,
        "months_created": dg.MetadataValue.json(result.created),
        "months_remaining": dg.MetadataValue.json(result.remaining_months),
        "rows_with_null_key": result.unplaceable_rows,
        "dry_run": result.dry_run,
        "plan": dg.MetadataValue.md(result.plan_markdown),
        "recovered": dg.MetadataValue.json(result.recovered),
    }))
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


defs = dg.Definitions(
    assets=[event_log_partitions],
    asset_checks=STATE_CHECKS,
    jobs=[event_log_partitions_job, event_log_default_rehoming_job],
    schedules=[event_log_partitions_monthly_schedule, event_log_partitions_daily_schedule],
    sensors=[event_log_default_rows_sensor],
)
