"""``destroyed_bodies_archive``: monthly archive of destroyed bodies with its conservation check
(both recorded per month, also in a run over several months), the plan job, the un-archive
job and the nightly schedule."""

from datetime import date, datetime, timedelta
from typing import Annotated, Optional

import dagster as dg
from pydantic import Field

from ..lifecycle import ArchivePolicy, Throttle, archive_destroyed_bodies, parse_age, plan_archive, unarchive_bodies
from ..lifecycle.archive import DEFAULT_THROTTLE
from ..resources import PostgresResource
from ..timeutil import add_months
from .common import (
    LIFECYCLE_ASSET_ARGS, LIFECYCLE_KINDS, MAINTENANCE_POOL, MONTHS_TO_DATE, PlainIdentifier, as_of_tags, month_key, parsed_by,
    run_clock, run_months,
)
from .metadata import check_evaluation
from .metadata import lifecycle as md

ASSET_KEY = "destroyed_bodies_archive"
CONSERVED_CHECK = "live_plus_archived_conserved"
CONSERVED = dg.AssetCheckKey(dg.AssetKey(ASSET_KEY), CONSERVED_CHECK)


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
    def policy(self) -> ArchivePolicy:
        throttle = Throttle(batch_size=self.batch_size, pause_s=self.pause_s, max_rows_per_s=self.max_rows_per_s,
                            sleep_coef=self.sleep_coef)
        return ArchivePolicy(older_than=parse_age(self.older_than), throttle=throttle, tablespace=self.tablespace,
                             skip_locked=self.skip_locked, workers=self.workers)


def partition_months(context) -> tuple[date, date]:
    """First and last month of the run: one partition, or a range when a backfill runs as one run."""
    window = context.partition_time_window
    return window.start.date(), add_months(window.end.date(), -1)


@dg.multi_asset(
    name=ASSET_KEY,
    specs=[dg.AssetSpec(ASSET_KEY, kinds=LIFECYCLE_KINDS, description="Destroyed celestial bodies of the month (by updated_at), older "
                        "than the policy, moved to celestial_bodies_archive in bounded committed batches.")],
    check_specs=[dg.AssetCheckSpec(CONSERVED_CHECK, asset=ASSET_KEY, partitions_def=MONTHS_TO_DATE,
                                   description="live + archived rows of the month equal the count before the move")],
    # The conservation check is yielded per month (a check result cannot name its month), so
    # its output must be optional.
    can_subset=True,
    **LIFECYCLE_ASSET_ARGS,
)
def destroyed_bodies_archive(context: dg.AssetExecutionContext, config: ArchiveConfig, postgres: PostgresResource):
    month, through = partition_months(context)
    policy = config.policy()
    with postgres.connect(purpose="archive") as conn:
        report = archive_destroyed_bodies(conn, month, policy, now=run_clock(context), progress=context.log.info,
                                          through=through, worker_sessions=postgres.session_spec("archive-worker"))
    context.log.info("archived %d rows of %s in %d batches (%.0f rows/s); %d remain",
                     report.log.moved, md.months_label(report.scope), report.log.batches, report.log.per_s,
                     report.rows_remaining)
    for counts in report.months:
        context.add_asset_metadata(md.archive_month(counts), partition_key=month_key(counts.month))
    yield dg.MaterializeResult(asset_key=ASSET_KEY, metadata=md.archive_run(report, policy.workers))
    if CONSERVED in context.selected_asset_check_keys:
        for counts in report.months:
            yield check_evaluation(CONSERVED, month_key(counts.month), md.conservation(counts))


@dg.op(description="What destroyed_bodies_archive would move for each month of the run, recorded as an "
                   "observation of the month. Reads only: no materialization, no check result.")
def plan_destroyed_bodies_archive(context: dg.OpExecutionContext, config: ArchiveConfig,
                                  postgres: PostgresResource) -> None:
    policy, now = config.policy(), run_clock(context)
    with postgres.connect(purpose="archive plan") as conn:
        for month in run_months(context):
            plan = plan_archive(conn, month, policy, now=now)
            context.log_event(md.archive_plan(dg.AssetKey(ASSET_KEY), month_key(month), plan))


@dg.job(name="destroyed_bodies_archive_plan", partitions_def=MONTHS_TO_DATE,
        description="Dry run of destroyed_bodies_archive: each month's plan as an observation; changes nothing.")
def destroyed_bodies_archive_plan():
    plan_destroyed_bodies_archive()


archive_job = dg.define_asset_job("destroyed_bodies_archive_job", selection=[ASSET_KEY])


def due_months(moment: datetime, age: timedelta) -> list[str]:
    """Partition keys whose rows became due since yesterday's run (the cut-off may cross a month)."""
    keys = []
    for cutoff in (moment - age - timedelta(days=1), moment - age):
        key = cutoff.strftime("%Y-%m-01")
        if key not in keys and MONTHS_TO_DATE.has_partition_key(key):
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
    jobs=[archive_job, destroyed_bodies_archive_plan, unarchive_job],
    schedules=[destroyed_bodies_archive_nightly],
)
