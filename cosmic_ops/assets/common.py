"""What every domain's assets share: the monthly partitions, the maintenance pool, and the
types that validate config values when a run's config is loaded."""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated, Any, Callable

import dagster as dg
from pydantic import AfterValidator, ValidationInfo

from ..partitions.policy import plain_identifier
from ..units import PolicyError

# First month Dagster shows; the demo data reaches 15 months back.
FIRST_MONTH_ENV = "COSMIC_OPS_FIRST_MONTH"
DEFAULT_FIRST_MONTH = "2025-01-01"
# premake 3 months ahead: Dagster lists finished windows only, so end_offset = premake + 1.
PREMAKE_MONTHS = 3

MONTHLY = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get(FIRST_MONTH_ENV, DEFAULT_FIRST_MONTH),
    timezone="UTC",
    end_offset=PREMAKE_MONTHS + 1,
)

def month_of(partition_key: str) -> date:
    """The month a monthly partition key (``YYYY-MM-01``) stands for."""
    return date.fromisoformat(partition_key)


# One maintenance run per database at a time (dagster.yaml sets the pool limit to 1);
# the PostgreSQL advisory lock in cosmic_ops.db backs it up across deployments.
MAINTENANCE_POOL = "cosmic_maintenance"

# Row-lifecycle assets (archive, compression): monthly, in the maintenance pool, and a
# backfill of many months runs once, in full batches, instead of once per month.
LIFECYCLE_ASSET_ARGS = dict(
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=MAINTENANCE_POOL,
    group_name="lifecycle",
    kinds={"postgres"},
)


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
