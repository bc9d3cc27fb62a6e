"""Monitoring and routine maintenance in Dagster (SPEC §3.9, §3.11).

- ``partition_sizes`` / ``partition_counts``: DataFrames of every partitioned table, shown
  as tables, with numeric metadata the UI plots over time.
- ``partition_threshold_sensor``: polls sizes; a partition crossing a threshold of its
  table's policy asks for one run (run_key per crossing): VACUUM (ANALYZE) for dead
  tuples, a warning event (plus the configured action) for bytes and rows.
- ``event_log_vacuum``: VACUUM (ANALYZE) of one event_logs month; backfill a range.
- ``partitioned_parent_statistics``: ANALYZE of every partitioned parent, after
  structural changes (sensor) and nightly (schedule).
Maintenance takes the Dagster pool ``MAINTENANCE_POOL`` and, in the database, the
table (``recovery.table_maintenance``: the lock scope of the root of its partition tree,
then the repair of what an interrupted job left, which needs the backup store).
"""

from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal, Sequence

import dagster as dg
import pandas as pd
import psycopg
from pydantic import Field

from .. import db, monitoring
from ..monitoring.maintenance import ActionResult, MaintenanceAction
from ..backups.policy import RetentionPolicy
from ..partitions.catalog import partition_for_month
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from ..retention import attached_past_retention
from .common import MAINTENANCE_POOL, MONTHLY, PlainIdentifier, month_of, parsed_by, run_clock

GROUP = "monitoring"
POLICY = monitoring.load_policy()
# At most this many rows go into table metadata (the UI stays responsive); the full
# frame is the asset's value.
TABLE_METADATA_ROWS = 200
STRUCTURAL_ASSETS = ("event_log_partitions", "event_log_retention", "destroyed_bodies_archive")
VACUUM_OP = "vacuum_partitions"


# ---------------------------------------------------------------------------
# Sizes and counts


def _table_metadata(frame: pd.DataFrame) -> dg.TableMetadataValue:
    shown = frame.head(TABLE_METADATA_ROWS)
    types = {"int64": "int", "float64": "float", "bool": "bool"}
    columns = [dg.TableColumn(name, types.get(str(dtype), "string")) for name, dtype in shown.dtypes.items()]
    records = [
        dg.TableRecord({k: (None if pd.isna(v) else v if isinstance(v, (int, float, str, bool)) else str(v))
                        for k, v in row.items()})
        for row in shown.astype(object).to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def sizes_metadata(sizes: pd.DataFrame) -> dict[str, Any]:
    largest = sizes.iloc[0] if len(sizes) else None
    per_root = sizes.groupby("root_table")["total_bytes"].sum().sort_values(ascending=False)
    return {
        "leaf_partitions": len(sizes),
        "total_bytes": int(sizes["total_bytes"].sum()),
        "largest_partition_bytes": int(largest["total_bytes"]) if largest is not None else 0,
        "largest_partition": f"{largest['schema_name']}.{largest['table_name']}" if largest is not None else "",
        "dead_tuples": int(sizes["dead_tuples"].sum()),
        "max_dead_tuple_ratio": float(sizes["dead_tuple_ratio"].max()) if len(sizes) else 0.0,
        **{f"total_bytes/{root}": int(total) for root, total in per_root.head(10).items()},
        "partitions": _table_metadata(sizes),
        "bytes_by_table": dg.MetadataValue.md(per_root.rename("total_bytes").to_frame().to_markdown()),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    deps=["cosmic_schema"],
    description="Per leaf partition of every partitioned table: total/table/index bytes, live and "
                "dead tuples, dead-tuple ratio, last (auto)vacuum/analyze (view partition_sizes).",
)
def partition_sizes(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.Output[pd.DataFrame]:
    with postgres.connect(purpose="partition_sizes") as conn:
        sizes = monitoring.read_partition_sizes(conn)
    context.log.info("%d leaf partitions, %d bytes in all", len(sizes), int(sizes["total_bytes"].sum()))
    return dg.Output(sizes, metadata=sizes_metadata(sizes))


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    deps=["cosmic_schema"],
    description="Per partitioned table: strategy, partition count, DEFAULT partitions, oldest and "
                "newest partition by bound (view partition_counts).",
)
def partition_counts(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.Output[pd.DataFrame]:
    with postgres.connect(purpose="partition_counts") as conn:
        counts = monitoring.read_partition_counts(conn)
    per_table = {
        f"partitions/{schema}.{parent}": int(count)
        for schema, parent, count in counts[["schema_name", "parent_table", "partition_count"]].head(20)
        .itertuples(index=False)
    }
    return dg.Output(counts, metadata={
        "partitioned_tables": len(counts),
        "partitions": int(counts["partition_count"].sum()),
        "default_partitions": int(counts["default_partitions"].sum()),
        **per_table,
        "tables": _table_metadata(counts),
    })


# ---------------------------------------------------------------------------
# VACUUM / ANALYZE


class MaintenanceRunConfig(dg.Config):
    dry_run: bool = Field(default=False, description="show the plan as metadata, change nothing")
    lock_wait: Annotated[str, parsed_by(monitoring.parse_duration)] = Field(
        default="0 s", description="how long to wait for another maintenance run's lock, e.g. '10 min'")


class VacuumConfig(MaintenanceRunConfig):
    analyze: bool = Field(default=True, description="VACUUM (ANALYZE) rather than plain VACUUM")


class VacuumPartitionsConfig(MaintenanceRunConfig):
    schema_name: PlainIdentifier = "public"
    tables: list[PlainIdentifier] = Field(min_length=1, description="leaf tables of schema_name to maintain")
    mode: Literal[monitoring.maintenance.KINDS] = Field(default="vacuum_analyze",
                                                        description="vacuum_analyze | vacuum | analyze")


def run_maintenance(
    context: dg.OpExecutionContext,
    postgres: PostgresResource,
    config: MaintenanceRunConfig,
    plan: Callable[[psycopg.Connection], Sequence[MaintenanceAction]],
    backup_store: BackupStoreResource,
) -> dict[str, Any]:
    """Plan on an autocommit session, then (unless dry run) apply under the tables' maintenance
    locks. A busy lock fails the run with the holder's name: it never passes as success."""
    lock_wait_s = monitoring.parse_duration(config.lock_wait)
    with postgres.connect(autocommit=True, purpose=f"maintenance run {context.run.run_id[:8]}") as conn:
        actions = plan(conn)
        metadata: dict[str, Any] = {
            "plan": dg.MetadataValue.md(monitoring.plan_markdown(conn, actions)),
            "dry_run": config.dry_run,
            "lock_scopes": dg.MetadataValue.json(sorted({a.lock_scope for a in actions})),
        }
        if config.dry_run:
            return metadata
        try:
            results = monitoring.apply(conn, actions, lock_wait_s=lock_wait_s, log=context.log.info,
                                       store=backup_store.store())
        except db.MaintenanceLockBusy as busy:
            raise dg.Failure(description=str(busy), metadata=metadata) from None
    return {**metadata, **_results_metadata(results)}


def _results_metadata(results: Sequence[ActionResult]) -> dict[str, Any]:
    rows = [
        {"sql": r.sql_text, "seconds": round(r.seconds, 3), "attempts": r.attempts,
         "dead_tuples_before": r.dead_tuples_before, "dead_tuples_after": r.dead_tuples_after,
         "live_tuples_after": r.live_tuples_after}
        for r in results
    ]
    return {
        "statements": len(results),
        "dead_tuples_before": sum(r.dead_tuples_before for r in results),
        "dead_tuples_after": sum(r.dead_tuples_after for r in results),
        "seconds": round(sum(r.seconds for r in results), 3),
        "results": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False) if rows else "nothing to do"),
    }


@dg.op(name=VACUUM_OP, pool=MAINTENANCE_POOL, description="VACUUM/ANALYZE of named leaf tables")
def vacuum_partitions(context: dg.OpExecutionContext, config: VacuumPartitionsConfig,
                      postgres: PostgresResource, backup_store: BackupStoreResource) -> dg.Output[None]:
    relations = [(config.schema_name, table) for table in config.tables]

    def plan(conn: psycopg.Connection) -> list[MaintenanceAction]:
        if config.mode == "analyze":
            return monitoring.plan_analyze(conn, relations)
        return monitoring.plan_vacuum(conn, relations, analyze=config.mode == "vacuum_analyze")

    return dg.Output(None, metadata=run_maintenance(context, postgres, config, plan, backup_store))


@dg.job(
    executor_def=dg.in_process_executor,
    description="VACUUM (ANALYZE) of given partitions; requested by partition_threshold_sensor.",
    tags={"cosmic_ops/kind": "maintenance"},
)
def vacuum_partition_job():
    vacuum_partitions()


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    partitions_def=MONTHLY,
    pool=MAINTENANCE_POOL,
    deps=[dg.AssetDep("event_log_partitions")],
    description="VACUUM (ANALYZE) of one event_logs month; backfill a range to vacuum several.",
)
def event_log_vacuum(context: dg.AssetExecutionContext, config: VacuumConfig,
                     postgres: PostgresResource, backup_store: BackupStoreResource) -> dg.MaterializeResult:
    month = month_of(context.partition_key)

    def plan(conn: psycopg.Connection) -> list[MaintenanceAction]:
        partition = partition_for_month(conn, "event_logs", month)
        if partition is None:
            raise dg.Failure(
                f"event_logs has no partition for {month:%Y-%m}: materialize event_log_partitions "
                f"{context.partition_key} first; nothing was vacuumed")
        return monitoring.plan_vacuum(conn, [partition.qualified], analyze=config.analyze)

    metadata = run_maintenance(context, postgres, config, plan, backup_store)
    return dg.MaterializeResult(metadata={"month": f"{month:%Y-%m}", **metadata})


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    pool=MAINTENANCE_POOL,
    deps=[dg.AssetDep(key) for key in STRUCTURAL_ASSETS],
    description="ANALYZE of every partitioned parent (event_logs, celestial_bodies, ...): autovacuum "
                "never analyzes a partitioned parent, so its statistics go stale after structural changes.",
)
def partitioned_parent_statistics(context: dg.AssetExecutionContext, config: MaintenanceRunConfig,
                                  postgres: PostgresResource, backup_store: BackupStoreResource
                                  ) -> dg.MaterializeResult:
    def plan(conn: psycopg.Connection) -> list[MaintenanceAction]:
        return monitoring.plan_analyze(conn, monitoring.partitioned_roots(conn))

    return dg.MaterializeResult(metadata=run_maintenance(context, postgres, config, plan, backup_store))


monitoring_snapshot_job = dg.define_asset_job(
    "monitoring_snapshot_job", selection=[partition_sizes, partition_counts],
    executor_def=dg.in_process_executor,
)
parent_statistics_job = dg.define_asset_job(
    "parent_statistics_job", selection=[partitioned_parent_statistics],
    executor_def=dg.in_process_executor,
)
event_log_vacuum_job = dg.define_asset_job(
    "event_log_vacuum_job", selection=[event_log_vacuum],
    executor_def=dg.in_process_executor,
)

monitoring_snapshot_schedule = dg.ScheduleDefinition(
    name="monitoring_snapshot_schedule", job=monitoring_snapshot_job, cron_schedule="5 * * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="partition_sizes and partition_counts every hour at :05 (UTC), for the plots.",
)
parent_statistics_schedule = dg.ScheduleDefinition(
    name="parent_statistics_schedule", job=parent_statistics_job, cron_schedule="30 4 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="ANALYZE of partitioned parents daily at 04:30 UTC, after the night's maintenance.",
)


# ---------------------------------------------------------------------------
# Sensors


def _vacuum_request(crossing: monitoring.Crossing, run_key: str) -> dg.RunRequest:
    mode = "analyze" if crossing.action == "analyze" else "vacuum_analyze"
    return dg.RunRequest(
        run_key=run_key,
        job_name=vacuum_partition_job.name,
        run_config={"ops": {VACUUM_OP: {"config": {
            "schema_name": crossing.schema, "tables": [crossing.table], "mode": mode}}}},
        tags={"cosmic_ops/crossing": crossing.key, "cosmic_ops/threshold": crossing.kind},
    )


def _warning(crossing: monitoring.Crossing) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=partition_sizes.key,
        description=f"threshold crossed: {crossing.describe()}",
        metadata={"threshold_kind": crossing.kind, "partition": f"{crossing.schema}.{crossing.table}",
                  "root_table": crossing.root_table, "observed": crossing.observed,
                  "threshold": crossing.threshold, "action": crossing.action},
    )


def build_partition_threshold_sensor(policy: monitoring.MonitoringPolicy) -> dg.SensorDefinition:
    """The threshold sensor for ``policy`` (the module's is built from ``load_policy()``)."""

    @dg.sensor(
        name="partition_threshold_sensor",
        jobs=[vacuum_partition_job],
        minimum_interval_seconds=int(policy.interval_s),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Partitions over their table's bytes / rows / dead-tuple-ratio threshold: one run "
                    "(VACUUM or ANALYZE) or warning per crossing.",
    )
    def partition_threshold_sensor(context: dg.SensorEvaluationContext,
                                   postgres: PostgresResource) -> dg.SensorResult:
        with postgres.connect(purpose="partition_threshold_sensor") as conn:
            sizes = monitoring.read_partition_sizes(conn)
        crossings = monitoring.find_crossings(sizes, policy)
        tick_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        tick = monitoring.plan_tick(crossings, context.cursor, tick_id)
        requests, warnings = [], []
        for crossing, run_key in tick.new:
            if crossing.kind != "dead_ratio":
                context.log.warning("threshold crossed: %s", crossing.describe())
                warnings.append(_warning(crossing))
            if crossing.action in ("vacuum", "analyze"):
                requests.append(_vacuum_request(crossing, run_key))
        skip = None if tick.new else (
            f"{len(sizes)} partitions checked, none newly over a threshold "
            f"({len(tick.still_active)} still over, already handled)")
        return dg.SensorResult(run_requests=requests, asset_events=warnings, cursor=tick.cursor, skip_reason=skip)

    return partition_threshold_sensor


partition_threshold_sensor = build_partition_threshold_sensor(POLICY)


@dg.sensor(
    name="structural_change_sensor",
    jobs=[parent_statistics_job],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After event_logs partitions are created, retired or archived, ANALYZE the parents.",
)
def structural_change_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    newest = after
    for key in STRUCTURAL_ASSETS:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), after_storage_id=after), limit=1).records
        if records:
            newest = max(newest or 0, records[0].storage_id)
    if newest == after:
        return dg.SensorResult(skip_reason="no structural change since the last ANALYZE request")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"analyze-parents-after-{newest}")], cursor=str(newest))


@dg.asset_check(
    asset=partition_counts,
    description="No event_logs month past the retention policy is still attached (state of the database, "
    "not of the retention runs): a month listed here needs a backup and an event_log_retention run.",
)
def nothing_attached_past_retention(context: dg.AssetCheckExecutionContext,
                                    postgres: PostgresResource) -> dg.AssetCheckResult:
    policy = RetentionPolicy()
    today = run_clock(context).date()
    with postgres.connect(purpose="retention check") as conn:
        overdue = attached_past_retention(conn, policy, today)
    months = [p.lower_month().isoformat() for p in overdue]
    return dg.AssetCheckResult(
        passed=not overdue,
        description=(f"{len(overdue)} month(s) past {policy.retention} still attached: "
                     + ", ".join(f"{p.name} ({p.lower_month():%Y-%m})" for p in overdue)) if overdue
        else f"no event_logs month before {policy.cutoff(today):%Y-%m} is attached",
        metadata={"retention": policy.retention, "cutoff_month": policy.cutoff(today).isoformat(),
                  "overdue_months": dg.MetadataValue.json(months)},
    )


defs = dg.Definitions(
    asset_checks=[nothing_attached_past_retention],
    assets=[partition_sizes, partition_counts, event_log_vacuum, partitioned_parent_statistics],
    jobs=[vacuum_partition_job, monitoring_snapshot_job, parent_statistics_job, event_log_vacuum_job],
    schedules=[monitoring_snapshot_schedule, parent_statistics_schedule],
    sensors=[partition_threshold_sensor, structural_change_sensor],
)
