"""Monitoring and routine maintenance in Dagster (SPEC §3.9, §3.11).

- ``partition_sizes`` / ``partition_counts``: every partitioned table, as table metadata
  (the assets' whole value: nothing is stored besides), with numbers the UI plots over time.
- ``partition_threshold_sensor``: polls sizes; a partition crossing a threshold of its
  table's policy asks for one run (run_key per crossing): VACUUM (ANALYZE) for dead
  tuples, a warning event (plus the configured action) for bytes and rows.
- ``event_log_vacuum``: VACUUM (ANALYZE) of one event_logs month; backfill a range (a run per month).
- ``partitioned_parent_statistics``: ANALYZE of every partitioned parent, after
  structural changes (sensor) and nightly (schedule).
- ``event_log_vacuum_plan`` / ``partitioned_parent_statistics_plan``: their plans as
  observations; they change nothing and record no materialization.
Maintenance takes the Dagster pool ``MAINTENANCE_POOL`` and, in the database, the
table (``recovery.table_maintenance``: the lock scope of the root of its partition tree,
then the repair of what an interrupted job left, which needs the backup store).
"""

from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal, Sequence

import dagster as dg
import psycopg
from pydantic import Field

from .. import db, monitoring
from ..monitoring.maintenance import MaintenanceAction
from ..backups.policy import RetentionPolicy
from ..partitions.catalog import partition_for_month
from ..resources import PostgresResource
from ..resources.backup_store import BackupStoreResource
from ..retention import attached_past_retention
from .common import MAINTENANCE_POOL, MONTHLY, PlainIdentifier, month_of, newest_materialization, parsed_by, run_clock
from .metadata import monitoring as md
from .metadata import plan_observation
from .metadata.monitoring import TABLE_METADATA_ROWS

GROUP = "monitoring"
POLICY = monitoring.load_policy()
STRUCTURAL_ASSETS = ("event_log_partitions", "event_log_retention", "destroyed_bodies_archive")
EVENT_LOGS_TABLE = dg.AssetKey("event_logs_table")
VACUUM_OP = "vacuum_partitions"


# ---------------------------------------------------------------------------
# Sizes and counts


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    deps=["cosmic_schema"],
    description="Per leaf partition of every partitioned table: total/table/index bytes, live and "
                "dead tuples, dead-tuple ratio, last (auto)vacuum/analyze (view partition_sizes), "
                f"as table metadata (the {TABLE_METADATA_ROWS} largest) with totals plotted over time.",
)
def partition_sizes(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect(purpose="partition_sizes") as conn:
        sizes = monitoring.read_partition_sizes(conn)
    context.log.info("%d leaf partitions, %d bytes in all", len(sizes), int(sizes["total_bytes"].sum()))
    return dg.MaterializeResult(metadata=md.sizes(sizes))


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    deps=["cosmic_schema"],
    description="Per partitioned table: strategy, partition count, DEFAULT partitions, oldest and "
                "newest partition by bound (view partition_counts), as table metadata.",
)
def partition_counts(postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect(purpose="partition_counts") as conn:
        counts = monitoring.read_partition_counts(conn)
    return dg.MaterializeResult(metadata=md.counts(counts))


# ---------------------------------------------------------------------------
# VACUUM / ANALYZE


class MaintenanceRunConfig(dg.Config):
    lock_wait: Annotated[str, parsed_by(monitoring.parse_duration)] = Field(
        default="0 s", description="how long to wait for another maintenance run's lock, e.g. '10 min'")


class VacuumConfig(MaintenanceRunConfig):
    analyze: bool = Field(default=True, description="VACUUM (ANALYZE) rather than plain VACUUM")


class VacuumPartitionsConfig(MaintenanceRunConfig):
    dry_run: bool = Field(default=False, description="show the plan as the step's metadata, change nothing")
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
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Plan on an autocommit session, then (unless ``dry_run``) apply under the tables' maintenance
    locks. A busy lock fails the run with the holder's name: it never passes as success."""
    lock_wait_s = monitoring.parse_duration(config.lock_wait)
    with postgres.connect(autocommit=True, purpose=f"maintenance run {context.run.run_id[:8]}") as conn:
        actions = plan(conn)
        metadata: dict[str, Any] = {
            "plan": dg.MetadataValue.md(monitoring.plan_markdown(conn, actions)),
            "dry_run": dry_run,
            "lock_scopes": dg.MetadataValue.json(sorted({a.lock_scope for a in actions})),
        }
        if dry_run:
            return metadata
        try:
            results = monitoring.apply(conn, actions, lock_wait_s=lock_wait_s, log=context.log.info,
                                       store=backup_store.store())
        except db.MaintenanceLockBusy as busy:
            raise dg.Failure(description=str(busy), metadata=metadata) from None
    return {**metadata, **md.maintenance(results)}


def record_plan(context: dg.OpExecutionContext, postgres: PostgresResource, asset_key: dg.AssetKey,
                partition: str | None, plan: Callable[[psycopg.Connection], Sequence[MaintenanceAction]]) -> None:
    """A maintenance plan as an observation of ``asset_key`` (and ``partition``); reads only."""
    with postgres.connect(autocommit=True, purpose=f"maintenance plan {context.run.run_id[:8]}") as conn:
        actions = plan(conn)
        context.log_event(plan_observation(asset_key, partition, monitoring.plan_markdown(conn, actions),
                                           statements=len(actions),
                                           lock_scopes=sorted({a.lock_scope for a in actions})))


@dg.op(name=VACUUM_OP, pool=MAINTENANCE_POOL, description="VACUUM/ANALYZE of named leaf tables")
def vacuum_partitions(context: dg.OpExecutionContext, config: VacuumPartitionsConfig,
                      postgres: PostgresResource, backup_store: BackupStoreResource) -> dg.Output[None]:
    relations = [(config.schema_name, table) for table in config.tables]

    def plan(conn: psycopg.Connection) -> list[MaintenanceAction]:
        if config.mode == "analyze":
            return monitoring.plan_analyze(conn, relations)
        return monitoring.plan_vacuum(conn, relations, analyze=config.mode == "vacuum_analyze")

    return dg.Output(None, metadata=run_maintenance(context, postgres, config, plan, backup_store,
                                                   dry_run=config.dry_run))


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
    metadata = run_maintenance(context, postgres, config, _month_vacuum(month, config.analyze), backup_store)
    return dg.MaterializeResult(metadata={"month": f"{month:%Y-%m}", **metadata})


def _month_vacuum(month, analyze: bool) -> Callable[[psycopg.Connection], list[MaintenanceAction]]:
    def plan(conn: psycopg.Connection) -> list[MaintenanceAction]:
        partition = partition_for_month(conn, "event_logs", month)
        if partition is None:
            raise dg.Failure(
                f"event_logs has no partition for {month:%Y-%m}: materialize event_log_partitions "
                f"{month:%Y-%m}-01 first; nothing was vacuumed")
        return monitoring.plan_vacuum(conn, [partition.qualified], analyze=analyze)

    return plan


@dg.op(description="The VACUUM event_log_vacuum would run for the month, recorded as an observation of the "
                   "month. Reads only: no materialization.")
def plan_event_log_vacuum(context: dg.OpExecutionContext, config: VacuumConfig, postgres: PostgresResource) -> None:
    record_plan(context, postgres, event_log_vacuum.key, context.partition_key,
                _month_vacuum(month_of(context.partition_key), config.analyze))


@dg.job(name="event_log_vacuum_plan", partitions_def=MONTHLY,
        description="Dry run of event_log_vacuum: the month's VACUUM as an observation; changes nothing.")
def event_log_vacuum_plan():
    plan_event_log_vacuum()


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
    return dg.MaterializeResult(metadata=run_maintenance(context, postgres, config, _analyze_parents, backup_store))


def _analyze_parents(conn: psycopg.Connection) -> list[MaintenanceAction]:
    return monitoring.plan_analyze(conn, monitoring.partitioned_roots(conn))


@dg.op(description="The ANALYZE statements partitioned_parent_statistics would run, recorded as an observation. "
                   "Reads only: no materialization.")
def plan_partitioned_parent_statistics(context: dg.OpExecutionContext, postgres: PostgresResource) -> None:
    record_plan(context, postgres, partitioned_parent_statistics.key, None, _analyze_parents)


@dg.job(name="partitioned_parent_statistics_plan",
        description="Dry run of partitioned_parent_statistics: its ANALYZE statements as an observation.")
def partitioned_parent_statistics_plan():
    plan_partitioned_parent_statistics()


monitoring_snapshot_job = dg.define_asset_job(
    "monitoring_snapshot_job",
    selection=dg.AssetSelection.assets(partition_sizes, partition_counts, EVENT_LOGS_TABLE),
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
    description="partition_sizes, partition_counts and event_logs_table (with their checks) every hour at :05 "
                "(UTC), for the plots.",
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
    # Materializations only: plans (dry runs) are observations and change nothing.
    after = int(context.cursor) if context.cursor else None
    newest = newest_materialization(context.instance, STRUCTURAL_ASSETS, after)
    if newest is None:
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
    jobs=[vacuum_partition_job, monitoring_snapshot_job, parent_statistics_job, event_log_vacuum_job,
          event_log_vacuum_plan, partitioned_parent_statistics_plan],
    schedules=[monitoring_snapshot_schedule, parent_statistics_schedule],
    sensors=[partition_threshold_sensor, structural_change_sensor],
)
