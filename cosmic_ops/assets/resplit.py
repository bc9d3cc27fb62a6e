"""Online re-split of a hash-partitioned table in Dagster (SPEC §3 item 8).

- ``hash_resplit_plan_job``: the plan (statements and rows per old partition) as an
  observation of ``hash_resplit``; it records no materialization and changes nothing.
- ``hash_resplit``: re-split the configured table to the configured modulus, one old
  partition at a time (``cosmic_ops.layout.resplit``). The old partitions are kept,
  detached and renamed, so nothing is dropped in this step; progress per batch goes to the
  run log; rows moved, seconds, swap lock wait and the verification per new partition are
  its metadata.
- ``hash_resplit_verified`` (blocking): each move swapped after a verification in which every
  new partition held exactly its old partition's rows, and the new partitions are attached.
- ``hash_resplit_old_partitions``: drops the kept old partitions whose move was verified and
  whose retention (``keep_for``) has passed. Run by ``hash_resplit_job`` right after the
  check, so a failed verification stops the drop; and daily, for kept ones whose time came.
"""


from datetime import timedelta
from typing import Annotated, Optional

import dagster as dg
from pydantic import Field

from ..layout.resplit import (
    drop_kept_partitions,
    kept_partitions,
    plan_resplit,
    resplit_hash_partitions,
    verified_moves,
)
from ..resources import PostgresResource
from ..units import parse_duration
from .common import MAINTENANCE_POOL, PlainIdentifier, as_of_tags, parsed_by, run_clock
from .event_logs import LockSettings

GROUP = "layout"
RESPLIT_KEY = dg.AssetKey("hash_resplit")


class ResplitConfig(LockSettings):
    schema_name: PlainIdentifier = Field(default="public", description="schema of the hash-partitioned table")
    table: PlainIdentifier = Field(default="celestial_bodies_planets", description="the hash-partitioned table")
    modulus: int = Field(default=8, ge=2, le=1024,
                         description="target modulus: a multiple of every modulus the table has (4 -> 8, 8 -> 16)")
    remainders: Optional[list[int]] = Field(
        default=None, description="old partitions to split, by their remainder; default all below the target")
    batch_rows: int = Field(default=10_000, ge=100, le=1_000_000, description="at most this many rows per copy batch (each is sized to take about 20 ms)")

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.table}"


def _split_metadata(result) -> dict:
    return {
        "table": result.plan.table.label,
        "modulus": result.plan.modulus,
        "rows_moved": dg.MetadataValue.int(result.rows_moved),
        "partitions_split": dg.MetadataValue.json([r.split.old.name for r in result.results]),
        "move_ids": dg.MetadataValue.json([r.outcome.move_id for r in result.results]),
        "verified": result.verified,
        "seconds": round(sum(r.seconds for r in result.results), 3),
        "max_swap_lock_wait_s": max((r.outcome.swap_lock_wait_s for r in result.results), default=0.0),
        "per_partition": dg.MetadataValue.json([r.metadata() for r in result.results]),
        "recovered": dg.MetadataValue.json(result.recovered),
    }


@dg.op(description="Plan a hash re-split: the statements and the rows per old partition; changes nothing.")
def plan_hash_resplit_op(context: dg.OpExecutionContext, config: ResplitConfig, postgres: PostgresResource) -> None:
    with postgres.connect(purpose="plan hash re-split") as conn:
        plan = plan_resplit(conn, config.qualified, config.modulus, remainders=config.remainders,
                            batch_rows=config.batch_rows, exact_counts=True)
        text = plan.to_markdown(conn)
    context.log_event(dg.AssetObservation(asset_key=RESPLIT_KEY, metadata={
        "dry_run": True, "table": plan.table.label, "modulus": plan.modulus,
        "partitions_to_split": dg.MetadataValue.json([r.old.name for r in plan.remainders]),
        "rows_to_move": dg.MetadataValue.int(plan.rows), "plan": dg.MetadataValue.md(text)}))
    context.log.info(text)


@dg.job(description="Show what a hash re-split would do (plan only; nothing is changed or materialized).")
def hash_resplit_plan_job():
    plan_hash_resplit_op()


@dg.asset(key=RESPLIT_KEY, group_name=GROUP, pool=MAINTENANCE_POOL, kinds={"postgres"},
          description="Online re-split of a hash-partitioned table to a larger modulus; old partitions kept "
                      "detached until hash_resplit_old_partitions drops them after the verification check.")
def hash_resplit(context: dg.AssetExecutionContext, config: ResplitConfig,
                 postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect(purpose="hash re-split") as conn:
        result = resplit_hash_partitions(
            conn, config.qualified, config.modulus, remainders=config.remainders, keep_old=True,
            batch_rows=config.batch_rows, retry=config.retry(), lock_wait_s=config.maintenance_lock_wait_s,
            progress=context.log.info)
        plan_text = result.plan.to_markdown(conn)
    return dg.MaterializeResult(metadata={**_split_metadata(result), "plan": dg.MetadataValue.md(plan_text)})


@dg.asset_check(asset=hash_resplit, blocking=True,
                description="Every move of the latest re-split, and every move whose old partition is still kept, "
                            "swapped after a verification (count and checksum per new partition equal to the old "
                            "partition's rows) and its new partitions are attached.")
def hash_resplit_verified(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(RESPLIT_KEY)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    move_ids = list(metadata["move_ids"].value) if "move_ids" in metadata else []
    with postgres.connect(purpose="check hash re-split") as conn:
        # What the drop step may drop next: every kept old partition of the table, not only this run's.
        if "table" in metadata:
            move_ids += [k.move_id for k in kept_partitions(conn, metadata["table"].value)]
        found = verified_moves(conn, sorted(set(move_ids)))
    failed = [why for ok, why in found.values() if not ok]
    return dg.AssetCheckResult(
        passed=not failed,
        description="; ".join(failed) if failed else f"{len(found)} move(s) verified",
        metadata={"moves": dg.MetadataValue.json({str(k): v[1] for k, v in found.items()})})


class DropKeptConfig(LockSettings):
    schema_name: PlainIdentifier = Field(default="public")
    table: PlainIdentifier = Field(default="celestial_bodies_planets")
    keep_for: Annotated[str, parsed_by(parse_duration)] = Field(
        default="0 days", description="how long an old partition stays after its swap (\"7 days\")")

    def keep(self) -> timedelta:
        return timedelta(seconds=parse_duration(self.keep_for))


@dg.asset(deps=[hash_resplit], group_name=GROUP, pool=MAINTENANCE_POOL, kinds={"postgres"},
          description="Drop the old partitions kept by re-splits once their move is verified and keep_for has passed.")
def hash_resplit_old_partitions(context: dg.AssetExecutionContext, config: DropKeptConfig,
                                postgres: PostgresResource) -> dg.MaterializeResult:
    now = run_clock(context)
    with postgres.connect(purpose="drop re-split leftovers") as conn:
        dropped = drop_kept_partitions(conn, f"{config.schema_name}.{config.table}",
                                       swapped_before=now - config.keep() if config.keep() else None,
                                       retry=config.retry(), lock_wait_s=config.maintenance_lock_wait_s)
    return dg.MaterializeResult(metadata={"as_of": now.isoformat(), "keep_for": config.keep_for,
                                          "dropped": _kept(dropped)})


def _kept(kept) -> dg.MetadataValue:
    return dg.MetadataValue.json([{"table": k.name, "was": k.source_name, "rows": k.rows, "move_id": k.move_id}
                                  for k in kept])


@dg.op(description="The kept old partitions hash_resplit_old_partitions would drop, recorded as an observation. "
                   "Reads only: no materialization.")
def plan_hash_resplit_old_partitions(context: dg.OpExecutionContext, config: DropKeptConfig,
                                     postgres: PostgresResource) -> None:
    now = run_clock(context)
    with postgres.connect(purpose="plan drop of re-split leftovers") as conn:
        due = drop_kept_partitions(conn, f"{config.schema_name}.{config.table}",
                                   swapped_before=now - config.keep() if config.keep() else None, dry_run=True)
    context.log_event(dg.AssetObservation(
        asset_key=hash_resplit_old_partitions.key, description="plan only: nothing was changed",
        metadata={"as_of": now.isoformat(), "keep_for": config.keep_for, "would_drop": _kept(due)}))


@dg.job(description="Dry run of hash_resplit_old_partitions: the partitions it would drop, as an observation.")
def hash_resplit_old_partitions_plan():
    plan_hash_resplit_old_partitions()


hash_resplit_job = dg.define_asset_job(
    "hash_resplit_job", selection=dg.AssetSelection.assets(hash_resplit, hash_resplit_old_partitions),
    description="Re-split, verify (blocking check), then drop the old partitions whose retention passed.")

hash_resplit_cleanup_job = dg.define_asset_job(
    "hash_resplit_cleanup_job", selection=dg.AssetSelection.assets(hash_resplit_old_partitions))


@dg.schedule(job=hash_resplit_cleanup_job, cron_schedule="30 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Daily 03:30 UTC: drop kept old partitions whose retention passed.")
def hash_resplit_cleanup_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(tags=as_of_tags(context.scheduled_execution_time))


defs = dg.Definitions(
    assets=[hash_resplit, hash_resplit_old_partitions],
    asset_checks=[hash_resplit_verified],
    jobs=[hash_resplit_plan_job, hash_resplit_job, hash_resplit_cleanup_job, hash_resplit_old_partitions_plan],
    schedules=[hash_resplit_cleanup_schedule],
)
