"""What every domain's assets share: the monthly partitions definitions, the maintenance pool,
the run's clock, and the types that validate config values when a run's config is loaded."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from typing import Annotated, Any, Callable

import dagster as dg
from pydantic import AfterValidator, ValidationInfo

from ..partitions.policy import plain_identifier
from ..settings import FIRST_MONTH_ENV
from ..units import PolicyError

# First month Dagster shows: settings.FIRST_MONTH_ENV (which `cosmic-ops dev` sets), else this.
DEFAULT_FIRST_MONTH = "2025-01-01"
# premake 3 months ahead: Dagster lists finished windows only, so end_offset = premake + 1.
PREMAKE_MONTHS = 3

FIRST_MONTH = os.environ.get(FIRST_MONTH_ENV, DEFAULT_FIRST_MONTH)

# Months of event_logs partitions: from the first month to the last premade one.
MONTHLY = dg.MonthlyPartitionsDefinition(
    start_date=FIRST_MONTH,
    timezone="UTC",
    end_offset=PREMAKE_MONTHS + 1,
)
# Months that have ended (backups, retention): a month is backed up and retired only once it
# is over, so the list stops at last month and "materialize missing" never asks for a future one.
CLOSED_MONTHS = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, timezone="UTC")
# Months whose rows can be due (archive, compression: rows older than an age): through this month.
MONTHS_TO_DATE = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, timezone="UTC", end_offset=1)

# A run's one "now" (ISO 8601 with offset). Schedules set it to their tick, so a run that
# starts late, or crosses midnight or a month end, still decides as of its tick.
AS_OF_TAG = "cosmic_ops/as_of"


def as_of_tags(moment: datetime) -> dict[str, str]:
    """Run tags that fix a run's clock at ``moment`` (a schedule's tick)."""
    return {AS_OF_TAG: moment.astimezone(timezone.utc).isoformat()}


def run_clock(context) -> datetime:
    """The run's one "now", decided once for every step of the run (assets and checks alike).

    The ``cosmic_ops/as_of`` tag when a schedule (or an operator) set it, else the moment
    the run was created (the wall clock, read once: every step reads the same record).
    A tag in the future is refused: a run may decide as of an earlier time, never a later one.
    """
    tag = context.run.tags.get(AS_OF_TAG)
    wall = datetime.now(timezone.utc)
    if tag is None:
        record = context.instance.get_run_record_by_id(context.run.run_id)
        created = record.create_timestamp if record is not None else wall
        return created if created.tzinfo else created.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(tag)
    except ValueError:
        raise dg.Failure(f"run tag {AS_OF_TAG}={tag!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise dg.Failure(f"run tag {AS_OF_TAG}={tag!r} has no UTC offset")
    if moment > wall:
        raise dg.Failure(f"run tag {AS_OF_TAG}={tag!r} is in the future; a run cannot act as of a later time")
    return moment


def month_of(partition_key: str) -> date:
    """The month a monthly partition key (``YYYY-MM-01``) stands for."""
    return date.fromisoformat(partition_key)


def month_key(month: date) -> str:
    """The partition key (``YYYY-MM-01``) of ``month``."""
    return f"{month:%Y-%m}-01"


def run_months(context) -> list[date]:
    """The months of this run, oldest first: one partition, or a range when a backfill runs as one run."""
    return [month_of(key) for key in context.partition_keys]


def newest_materialization(instance: dg.DagsterInstance, keys, after: int | None) -> int | None:
    """Storage id of the newest materialization of any of ``keys`` after ``after`` (None: none since)."""
    newest = None
    for key in keys:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_coercible(key), after_storage_id=after), limit=1).records
        if records:
            newest = max(newest or 0, records[0].storage_id)
    return newest


# One maintenance run per database at a time (dagster.yaml sets the pool limit to 1); each
# table's advisory lock scope (cosmic_ops.db.table_lock_scope) backs it up across deployments.
MAINTENANCE_POOL = "cosmic_maintenance"

# Row-lifecycle assets (archive, compression): monthly, in the maintenance pool, and a
# backfill of many months runs once, in full batches, instead of once per month.
LIFECYCLE_ASSET_ARGS = dict(
    partitions_def=MONTHS_TO_DATE,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=MAINTENANCE_POOL,
    group_name="lifecycle",
)
LIFECYCLE_KINDS = {"postgres"}


# ---------------------------------------------------------------------------
# Config values checked when Dagster builds a run's Config, before the op body runs
# (a bad value fails the step with pydantic's error, which names the field). Numbers
# carry their bounds as pydantic ``Field(ge=...)``; values Dagster's own config types
# cannot express go through these.


def _plain_identifier(value: str, info: ValidationInfo) -> str:
    return plain_identifier(value, what=info.field_name)


# A schema, table or tablespace name: a plain SQL identifier, as partition policies require.
PlainIdentifier = Annotated[str, AfterValidator(_plain_identifier)]


def parsed_by(parse: Callable[[Any], Any]) -> AfterValidator:
    """Check a text value with one of the policy parsers (durations, months, ...); the error names the field."""
    def check(value: Any, info: ValidationInfo) -> Any:
        try:
            parse(value)
        except PolicyError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None
        return value
    return AfterValidator(check)
