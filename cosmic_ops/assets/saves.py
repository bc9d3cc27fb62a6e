"""``compressed_saves``: monthly packing of inactive saves and its checks (both recorded per month,
also in a run over several months), the plan job, the rehydrate job and the nightly schedule."""

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
from ..timeutil import month_bounds_utc
from .archive import nightly_schedule, partition_months
from .common import (
    LIFECYCLE_ASSET_ARGS, LIFECYCLE_KINDS, MONTHS_TO_DATE, month_key, parsed_by, run_clock, run_months,
)
from .metadata import check_evaluation
from .metadata import lifecycle as md

ASSET_KEY = "compressed_saves"
CHECKSUM_SAMPLE = 50
NO_SAVE_WITH_BOTH = dg.AssetCheckKey(dg.AssetKey(ASSET_KEY), "no_save_has_rows_and_compressed_state")
CHECKSUMS_MATCH = dg.AssetCheckKey(dg.AssetKey(ASSET_KEY), "compressed_saves_checksums_match")


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
    kinds=LIFECYCLE_KINDS,
    **LIFECYCLE_ASSET_ARGS,
    description="Inactive saves of the month (by game_saves.updated_at) packed into compressed_state: rows "
                "taken with COPY (DELETE ... RETURNING) in PostgreSQL's binary form, compressed with a zstd "
                "dictionary trained once per table layout (save/5), "
                "verified by decompression before the batch's one transaction commits.",
)
def compressed_saves(context: dg.AssetExecutionContext, config: CompressConfig,
                     postgres: PostgresResource) -> dg.MaterializeResult:
    month, through = partition_months(context)
    policy = config.policy()
    with postgres.connect(purpose="compress-saves") as conn:
        report = compress_inactive_saves(
            conn, month, policy, now=run_clock(context), progress=context.log.info, through=through,
            worker_sessions=postgres.session_spec("compress-saves-worker"))
    context.log.info("packed %d saves of %s (%d rows, %.2fx)", report.log.moved, md.months_label(report.scope),
                     report.rows_folded, report.ratio)
    for part in report.scope.by_month():
        context.add_asset_metadata(md.saves_month(part, report.month(part.month)), partition_key=month_key(part.month))
    return dg.MaterializeResult(metadata=md.saves_run(report, f"{policy.codec.name}-{policy.codec.level}",
                                                      policy.workers))


@dg.op(description="The saves compressed_saves would pack in each month of the run, recorded as an observation "
                   "of the month. Reads only: no materialization, no check result.")
def plan_compressed_saves(context: dg.OpExecutionContext, config: CompressConfig, postgres: PostgresResource) -> None:
    policy, now = config.policy(), run_clock(context)
    with postgres.connect(purpose="compress-saves plan") as conn:
        for month in run_months(context):
            scope = MonthScope.of(month, policy.inactive_for, now)
            context.log_event(md.saves_plan(dg.AssetKey(ASSET_KEY), month_key(month), scope,
                                            select_candidates(conn, scope), policy.throttle.batch_size,
                                            f"{policy.codec.name} level {policy.codec.level}"))


@dg.job(name="compressed_saves_plan", partitions_def=MONTHS_TO_DATE,
        description="Dry run of compressed_saves: each month's due saves as an observation; changes nothing.")
def compressed_saves_plan():
    plan_compressed_saves()


def _month_check(key: dg.AssetCheckKey, description: str):
    # Evaluated month by month and yielded per month (a check result cannot name its month),
    # so the check's single output is optional.
    return dg.multi_asset_check(name=key.name, can_subset=True, specs=[dg.AssetCheckSpec(
        key.name, asset=key.asset_key, partitions_def=MONTHS_TO_DATE, description=description)])


@_month_check(NO_SAVE_WITH_BOTH, "No save of the month holds both live rows and a compressed state.")
def no_save_has_rows_and_compressed_state(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    with postgres.connect(purpose="check-saves") as conn:
        for month in run_months(context):
            lower, upper = month_bounds_utc(month)
            yield check_evaluation(NO_SAVE_WITH_BOTH, month_key(month),
                                   md.saves_with_both(month, saves_with_rows_and_state(conn, lower, upper)))


@_month_check(CHECKSUMS_MATCH, f"A sample (up to {CHECKSUM_SAMPLE}) of the month's packed saves decompress to "
                               "their stored checksum and row counts.")
def compressed_saves_checksums_match(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    with postgres.connect(purpose="check-saves") as conn:
        for month in run_months(context):
            lower, upper = month_bounds_utc(month)
            sample, total = sample_packed_saves(conn, lower, upper, CHECKSUM_SAMPLE)
            yield check_evaluation(CHECKSUMS_MATCH, month_key(month),
                                   md.checksums(month, sample, total, verify_packed_saves(conn, sample)))


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
    jobs=[compress_job, compressed_saves_plan, rehydrate_job],
    schedules=[compressed_saves_nightly],
)
