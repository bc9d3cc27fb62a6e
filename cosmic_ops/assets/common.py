"""What every domain's assets share: the monthly partitions and the maintenance pool."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

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


# One maintenance run per database at a time (dagster.yaml sets the pool limit to 1); each
# table's advisory lock scope (cosmic_ops.db.table_lock_scope) backs it up across deployments.
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
