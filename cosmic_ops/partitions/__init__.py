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
    attach_month_table,
    ensure_months,
    plan_months,
)
from .policy import EVENT_LOGS_POLICY, PartitionPolicy, PolicyError
from .rehome import RehomeResult, rehome_default_rows

__all__ = [
    "CreatePartition", "EVENT_LOGS_POLICY", "MaintenanceResult", "Partition", "PartitionConflict",
    "PartitionPolicy", "Plan", "PolicyError", "attach_month_table", "policy_for", "RehomeResult", "apply_plan", "default_partition",
    "ensure_month_partitions", "ensure_months", "list_partitions", "partition_for_month", "plan_months",
    "rehome_default_rows",
]

POLICIES = {EVENT_LOGS_POLICY.table: EVENT_LOGS_POLICY}


def policy_for(conn: psycopg.Connection, table: str) -> PartitionPolicy:
    """The partition policy of a managed table, found by the relation ``table`` names (any
    spelling: ``event_logs``, ``"public"."event_logs"``), not by comparing text."""
    wanted = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()[0]
    for policy in POLICIES.values():
        if wanted is not None and conn.execute("SELECT to_regclass(%s)::oid", (policy.qualified_name,)
                                               ).fetchone()[0] == wanted:
            return policy
    raise PolicyError(f"no partition policy for table {table!r}")


def ensure_month_partitions(
    conn: psycopg.Connection, table: str | PartitionPolicy, months: Iterable[date]
) -> list[str]:
    """Create missing months all or nothing: in one transaction of their own on an autocommit
    session, or inside the CALLER's transaction (as a savepoint) for loaders that must be all
    or nothing as a whole, like the demo generator; returns the names created.

    Same plan and statements as ``ensure_months``, but no advisory lock and no
    retry: the statements run under the session's ``lock_timeout`` and a timeout
    aborts the caller's transaction. Maintenance runs use ``ensure_months``.
    """
    policy = table if isinstance(table, PartitionPolicy) else POLICIES.get(table)
    if policy is None:
        raise PolicyError(f"no partition policy for table {table!r}; pass a PartitionPolicy")
    with conn.transaction():  # LOCK TABLE and the plan's catalog reads need one transaction
        plan = plan_months(conn, policy, months, online=False)
        if plan.conflicts:
            raise PartitionConflict("; ".join(f"{c.target}: {c.reason}" for c in plan.conflicts))
        for action in plan.actions:
            for statement in action.statements:
                conn.execute(statement)
    return [a.target for a in plan.actions if isinstance(a, CreatePartition)]
