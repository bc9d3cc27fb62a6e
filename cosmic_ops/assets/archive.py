"""``destroyed_bodies_archive``: monthly archive of destroyed bodies, its check, un-archive job, nightly schedule."""

from datetime import date, datetime, timedelta
from typing import Annotated, Optional

import dagster as dg
from pydantic import Field

from ..lifecycle import ArchivePolicy, Throttle, archive_destroyed_bodies, parse_age, plan_archive, unarchive_bodies
from ..lifecycle.archive import DEFAULT_THROTTLE
from ..resources import PostgresResource
from ..timeutil import add_months
from .common import (
    LIFECYCLE_ASSET_ARGS, MAINTENANCE_POOL, MONTHLY, PlainIdentifier, as_of_tags, parsed_by, run_clock,
)

ASSET_KEY = "destroyed_bodies_archive"
CONSERVED_CHECK = "live_plus_archived_conserved"


class ArchiveConfig(dg.Config):
    older_than: Annotated[str, parsed_by(parse_age)] = Field(
        default="30 days", description="archive bodies destroyed longer ago than this (with unit)")
    batch_size: int = Field(default=DEFAULT_THROTTLE.batch_size, ge=1, description="rows per committed batch")
    pause_s: float = Field(default=DEFAULT_THROTTLE.pause_s, ge=0, description="pause between batches, seconds")
    max_rows_per_s: Optional[float] = Field(default=DEFAULT_THROTTLE.max_rows_per_s, gt=0,
                                            description="cap on rows moved per second; unset: no cap")
    sleep_coef: Optional[float] = Field(default=DEFAULT_THROTTLE.sleep_coef, ge=0,
                                        description="pause this many times as long as each batch took "
                                                    "(pt-archiver's --sleep-coef; 1.0: busy at most half the time)")
    tablespace: Optional[PlainIdentifier] = Field(default=None, description="tablespace the archive must live on")
    skip_locked: bool = Field(default=ArchivePolicy.skip_locked,
                              description="lock candidates and skip rows a game transaction holds (never wait); "
                                          "off: about a third faster, may wait up to lock_timeout")
    workers: int = Field(default=ArchivePolicy.workers, ge=1, le=64,
                         description="sessions moving different leaf partitions side by side, each paced as above")
    dry_run: bool = Field(default=False, description="report the plan, change nothing")

    def policy(self) -> ArchivePolicy:
        throttle = Throttle(batch_size=self.batch_size, pause_s=self.pause_s, max_rows_per_s=self.max_rows_per_s,
                            sleep_coef=self.sleep_coef)
        return ArchivePolicy(older_than=parse_age(self.older_than), throttle=throttle, tablespace=self.tablespace,
                             skip_locked=self.skip_locked, workers=self.workers)


def partition_months(context) -> tuple[date, date]:
    """First and last month of the run: one partition, or a range when a backfill runs as one run."""
    window = context.partition_time_window
    return window.start.date(), add_months(window.end.date(), -1)


@dg.asset(
    key=ASSET_KEY,
    **LIFECYCLE_ASSET_ARGS,
    check_specs=[dg.AssetCheckSpec(CONSERVED_CHECK, asset=ASSET_KEY,
                                   description="live + archived rows of the month equal the count before the move")],
    description="Destroyed celestial bodies of the month (by updated_at), older than the policy, moved to "
                "celestial_bodies_archive in bounded committed batches.",
)
def destroyed_bodies_archive(context: dg.AssetExecutionContext, config: ArchiveConfig,
                             postgres: PostgresResource) -> dg.MaterializeResult:
    month, through = partition_months(context)
    policy = config.policy()
    now = run_clock(context)
    with postgres.connect(purpose="archive") as conn:
        if config.dry_run:
            plan = plan_archive(conn, month, policy, now=now, through=through)
            return dg.MaterializeResult(
                metadata={"dry_run": True, "rows_to_move": plan.candidates, "plan": dg.MetadataValue.md(plan.as_markdown())},
                check_results=[dg.AssetCheckResult(check_name=CONSERVED_CHECK, passed=True,
                                                   metadata={"dry_run": True})],
            )
        report = archive_destroyed_bodies(conn, month, policy, now=now, progress=context.log.info, through=through,
                                          worker_sessions=postgres.session_spec("archive-worker"))
    log = report.log
    context.log.info("archived %d rows of %s in %d batches (%.0f rows/s); %d remain",
                     log.moved, month, log.batches, log.per_s, report.rows_remaining)
    return dg.MaterializeResult(
        metadata={
            "rows_moved": log.moved,
            "batches": log.batches,
            "rows_per_s": round(log.per_s, 1),
            "longest_batch_s": round(log.longest_batch_s, 4),
            "rows_remaining": report.rows_remaining,
            "scope": report.scope.describe(),
            "seconds": round(log.elapsed_s, 3),
            "moving_seconds": round(report.moving_s, 3),
            "tablespace_moved": report.tablespace_moved,
            "workers": policy.workers,
            "wal_compression": report.wal_compression or "unchanged (needs superuser or GRANT SET ON PARAMETER)",
        },
        check_results=[dg.AssetCheckResult(
            check_name=CONSERVED_CHECK,
            passed=report.conserved,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"rows_before": report.scope_rows_before, "live_plus_archived_after": report.scope_rows_after},
        )],
    )


archive_job = dg.define_asset_job("destroyed_bodies_archive_job", selection=[ASSET_KEY])


def due_months(moment: datetime, age: timedelta) -> list[str]:
    """Partition keys whose rows became due since yesterday's run (the cut-off may cross a month)."""
    keys = []
    for cutoff in (moment - age - timedelta(days=1), moment - age):
        key = cutoff.strftime("%Y-%m-01")
        if key not in keys and MONTHLY.has_partition_key(key):
            keys.append(key)
    return keys


def nightly_schedule(name: str, job, cron: str, age: timedelta, description: str) -> dg.ScheduleDefinition:
    """A nightly schedule requesting the month partitions whose rows became due (older than ``age``)."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC", description=description)
    def _nightly(context: dg.ScheduleEvaluationContext):
        moment = context.scheduled_execution_time
        for key in due_months(moment, age):
            yield dg.RunRequest(run_key=f"{key}@{moment:%Y-%m-%d}", partition_key=key, tags=as_of_tags(moment))

    return _nightly


destroyed_bodies_archive_nightly = nightly_schedule(
    "destroyed_bodies_archive_nightly", archive_job, "0 1 * * *", parse_age(ArchiveConfig().older_than),
    "Nightly at 01:00 UTC, after partition maintenance (00:05): the months newly due.")


class UnarchiveConfig(dg.Config):
    body_ids: list[int] = Field(default_factory=list, description="ids of archived bodies to restore")
    save_id: Optional[int] = Field(default=None, description="restore every archived body of this save")
    batch_size: int = Field(default=DEFAULT_THROTTLE.batch_size, ge=1, description="rows per committed batch")


@dg.op(pool=MAINTENANCE_POOL)
def unarchive_bodies_op(context: dg.OpExecutionContext, config: UnarchiveConfig, postgres: PostgresResource) -> int:
    with postgres.connect(purpose="unarchive") as conn:
        report = unarchive_bodies(conn, body_ids=config.body_ids or None, save_id=config.save_id,
                                  throttle=Throttle(batch_size=config.batch_size), progress=context.log.info)
    context.add_output_metadata({"rows_restored": report.log.moved, "batches": report.log.batches,
                                 "requested": report.requested})
    if report.log.moved == 0:
        raise dg.Failure(f"nothing restored for {report.requested}: no such rows in the archive")
    return report.log.moved


@dg.job(name="unarchive_destroyed_bodies", description="Move archived bodies (by ids or by save) back, as they were.")
def unarchive_job():
    unarchive_bodies_op()


defs = dg.Definitions(
    assets=[destroyed_bodies_archive],
    jobs=[archive_job, unarchive_job],
    schedules=[destroyed_bodies_archive_nightly],
)
