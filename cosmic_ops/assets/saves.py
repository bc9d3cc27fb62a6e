"""``compressed_saves``: monthly packing of inactive saves, its checks, the rehydrate job, nightly schedule."""

from typing import Annotated, Literal, Optional

import dagster as dg
from pydantic import Field, model_validator

from ..lifecycle import Codec, SavePolicy, Throttle, compress_inactive_saves, parse_age, rehydrate_saves
from ..lifecycle.saves import (
    CODECS, DEFAULT_CODEC, DEFAULT_SAVES_PER_BATCH, DEFAULT_WORKERS, sample_packed_saves, saves_with_rows_and_state,
    select_candidates, verify_packed_saves,
)
from ..lifecycle.policy import MonthScope
from ..resources import PostgresResource
from .archive import nightly_schedule, partition_months
from .common import LIFECYCLE_ASSET_ARGS, MONTHLY, parsed_by, run_clock

ASSET_KEY = "compressed_saves"
CHECKSUM_SAMPLE = 50


class CompressConfig(dg.Config):
    inactive_for: Annotated[str, parsed_by(parse_age)] = Field(
        default="7 days", description="pack saves untouched for longer than this (with unit)")
    codec: Literal[CODECS] = Field(default=DEFAULT_CODEC.name, description="zstd or zlib")
    level: int = Field(default=DEFAULT_CODEC.level, ge=1, le=22,
                       description="compression level of the codec (zstd 1-22, zlib 1-9)")
    saves_per_batch: int = Field(default=DEFAULT_SAVES_PER_BATCH, ge=1, description="saves packed per transaction")
    pause_s: float = Field(default=0.0, ge=0, description="pause between batches, seconds")
    sleep_coef: Optional[float] = Field(default=None, ge=0, description="pause this many times as long as each "
                                                                        "batch took (1.0: busy at most half the time)")
    workers: int = Field(default=DEFAULT_WORKERS, ge=1, le=64,
                         description="worker processes packing batches side by side, each with its own session")
    dry_run: bool = Field(default=False, description="report the saves that would be packed, change nothing")

    @model_validator(mode="after")
    def _level_fits_the_codec(self) -> "CompressConfig":
        Codec(self.codec, self.level)
        return self

    def policy(self) -> SavePolicy:
        return SavePolicy(inactive_for=parse_age(self.inactive_for), codec=Codec(self.codec, self.level),
                          throttle=Throttle(batch_size=self.saves_per_batch, pause_s=self.pause_s,
                                            sleep_coef=self.sleep_coef),
                          workers=self.workers)


@dg.asset(
    key=ASSET_KEY,
    **LIFECYCLE_ASSET_ARGS,
    description="Inactive saves of the month (by game_saves.updated_at) packed into compressed_state: rows "
                "taken with COPY (DELETE ... RETURNING) in PostgreSQL's binary form, packed column by column, "
                "verified by decompression before the batch's one transaction commits.",
)
def compressed_saves(context: dg.AssetExecutionContext, config: CompressConfig,
                     postgres: PostgresResource) -> dg.MaterializeResult:
    month, through = partition_months(context)
    policy = config.policy()
    now = run_clock(context)
    with postgres.connect(purpose="compress-saves") as conn:
        if config.dry_run:
            scope = MonthScope.of(month, policy.inactive_for, now, through=through)
            due = select_candidates(conn, scope)
            plan = (f"**pack saves** updated in {scope.describe()}: {len(due)} saves, "
                    f"{policy.throttle.batch_size} per transaction, codec {policy.codec.name} level {policy.codec.level}")
            return dg.MaterializeResult(metadata={"dry_run": True, "saves_to_pack": len(due),
                                                  "plan": dg.MetadataValue.md(plan)})
        report = compress_inactive_saves(
            conn, month, policy, now=now, progress=context.log.info, through=through,
            worker_sessions=postgres.session_spec("compress-saves-worker"))
    log = report.log
    context.log.info("packed %d saves of %s (%d rows, %.2fx)", log.moved, month, report.rows_folded, report.ratio)
    return dg.MaterializeResult(metadata={
        "saves": log.moved,
        "rows_folded": report.rows_folded,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "ratio": round(report.ratio, 3),
        "saves_per_s": round(log.per_s, 1),
        "batches": log.batches,
        "longest_batch_s": round(log.longest_batch_s, 4),
        "skipped_changed": report.skipped_changed,
        "saves_remaining": report.saves_remaining,
        "codec": f"{policy.codec.name}-{policy.codec.level}",
        "workers": policy.workers,
        "scope": report.scope.describe(),
    })


@dg.asset_check(asset=ASSET_KEY, partitions_def=MONTHLY, name="no_save_has_rows_and_compressed_state",
                description="No save of the month holds both live rows and a compressed state.")
def no_save_has_rows_and_compressed_state(context: dg.AssetCheckExecutionContext,
                                          postgres: PostgresResource) -> dg.AssetCheckResult:
    lower, upper = (context.partition_time_window.start, context.partition_time_window.end)
    with postgres.connect(purpose="check-saves") as conn:
        both = saves_with_rows_and_state(conn, lower, upper)
    return dg.AssetCheckResult(passed=not both, metadata={"saves_with_both": len(both),
                                                          "examples": dg.MetadataValue.json(both[:20])})


@dg.asset_check(asset=ASSET_KEY, partitions_def=MONTHLY, name="compressed_saves_checksums_match",
                description=f"A sample (up to {CHECKSUM_SAMPLE}) of the month's packed saves decompress to "
                            "their stored checksum and row counts.")
def compressed_saves_checksums_match(context: dg.AssetCheckExecutionContext,
                                     postgres: PostgresResource) -> dg.AssetCheckResult:
    lower, upper = (context.partition_time_window.start, context.partition_time_window.end)
    with postgres.connect(purpose="check-saves") as conn:
        sample, total = sample_packed_saves(conn, lower, upper, CHECKSUM_SAMPLE)
        problems = verify_packed_saves(conn, sample)
    return dg.AssetCheckResult(passed=not problems, metadata={
        "sample_size": len(sample), "packed_saves": total, "failed": len(problems),
        "problems": dg.MetadataValue.json({str(k): v for k, v in list(problems.items())[:20]})})


compress_job = dg.define_asset_job("compressed_saves_job", selection=[ASSET_KEY])


compressed_saves_nightly = nightly_schedule(
    "compressed_saves_nightly", compress_job, "30 1 * * *", parse_age(CompressConfig().inactive_for),
    "Nightly at 01:30 UTC, after partition maintenance (00:05) and the archive (01:00).")


class RehydrateConfig(dg.Config):
    save_ids: list[int] = Field(min_length=1, description="saves to unpack (their players came back); saves "
                                                           "already live are skipped")


# Not in the maintenance pool: a returning player must not wait for the nightly jobs;
# the save row lock (FOR UPDATE) is all the coordination a rehydration needs.
@dg.op
def rehydrate_saves_op(context: dg.OpExecutionContext, config: RehydrateConfig, postgres: PostgresResource) -> int:
    with postgres.connect(purpose="rehydrate") as conn:
        report = rehydrate_saves(conn, config.save_ids, progress=context.log.info)
    context.add_output_metadata({
        "saves": len(config.save_ids),
        "rehydrated": len(report.restored),
        "already_live": dg.MetadataValue.json(report.already_live),
        "rows_restored": report.rows_restored,
    })
    return report.rows_restored


@dg.job(name="rehydrate_saves", description="Restore packed saves row for row and clear their compressed state; "
                                            "saves already live (e.g. restored by a killed run) are skipped and "
                                            "listed in the metadata.")
def rehydrate_job():
    rehydrate_saves_op()


defs = dg.Definitions(
    assets=[compressed_saves],
    asset_checks=[no_save_has_rows_and_compressed_state, compressed_saves_checksums_match],
    jobs=[compress_job, rehydrate_job],
    schedules=[compressed_saves_nightly],
)
