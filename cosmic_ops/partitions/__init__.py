"""Monthly RANGE partition maintenance: policy, catalog reading, planning, applying."""

from __future__ import annotations

from datetime import date
from typing import Iterable

import psycopg

from .catalog import Partition, default_partition, list_partitions, partition_for_month
from .maintain import (
    CreatePartition,
    MaintenanceResult,
    Plan,
    PartitionConflict,
    apply_plan,
    ensure_months,
    plan_months,
)
from .policy import EVENT_LOGS_POLICY, PartitionPolicy, PolicyError
from .rehome import RehomeResult, rehome_default_rows

__all__ = [
    "CreatePartition", "EVENT_LOGS_POLICY", "MaintenanceResult", "Partition", "PartitionConflict",
    "PartitionPolicy", "Plan", "PolicyError", "RehomeResult", "apply_plan", "default_partition",
    "ensure_month_partitions", "ensure_months", "list_partitions", "partition_for_month", "plan_months",
    "rehome_default_rows",
]

POLICIES = {EVENT_LOGS_POLICY.table: EVENT_LOGS_POLICY}


def ensure_month_partitions(
    conn: psycopg.Connection, table: str | PartitionPolicy, months: Iterable[date]
) -> list[str]:
    """Create missing months inside the CALLER's transaction (loaders that must be all
    or nothing, like the demo generator); returns the names created.

    Same plan and statements as ``ensure_months``, but no advisory lock and no
    retry: the statements run under the session's ``lock_timeout`` and a timeout
    aborts the caller's transaction. Maintenance runs use ``ensure_months``.
    """
    policy = table if isinstance(table, PartitionPolicy) else POLICIES.get(table)
    if policy is None:
        raise PolicyError(f"no partition policy for table {table!r}; pass a PartitionPolicy")
    plan = plan_months(conn, policy, months, online=False)  # the caller's one transaction
    if plan.conflicts:
        raise PartitionConflict("; ".join(f"{c.target}: {c.reason}" for c in plan.conflicts))
    for action in plan.actions:
        for statement in action.statements:
            conn.execute(statement)
    return [a.target for a in plan.actions if isinstance(a, CreatePartition)]
