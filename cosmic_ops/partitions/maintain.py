"""Plan, then apply: bring a policy's monthly partitions into existence.

The plan is computed from the catalog (never from names) as typed actions, each
carrying the SQL it will run. A month is created with the least locking
PostgreSQL allows, in ONE transaction under ``lock_timeout`` with retries:

1. the parent, then the DEFAULT partition, locked up front in the order game
   statements lock them (parent first), so no row for the month can reach DEFAULT
   after we emptied it. Without a DEFAULT partition the parent gets SHARE UPDATE
   EXCLUSIVE, what ATTACH takes: game reads and writes go on. With one, the parent
   gets ACCESS EXCLUSIVE for this short step: a game statement that read the list of
   partitions before the ATTACH would route its row to DEFAULT and then fail
   DEFAULT's new constraint (``new row for relation "..._default" violates partition
   constraint``), or read DEFAULT after the month's rows left it. Locked out at the
   parent instead, game statements wait (at most our ``lock_timeout`` while we queue,
   plus the step itself) and then plan against the new partition;
2. ``CREATE TABLE`` outside the tree, ``LIKE`` the parent with its indexes, plus
   any policy index the parent lacks, with the policy's storage parameters;
3. a CHECK constraint equal to the partition constraint, so ATTACH skips the scan;
4. rows of that month still in DEFAULT are moved in (``DELETE ... RETURNING``
   feeding the ``INSERT``: one statement, so nothing is lost or doubled) and
   counted back before commit;
5. ``ATTACH PARTITION`` (matching indexes attach to the parent's), drop the CHECK.

A lock timeout rolls the whole transaction back: nothing is half done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence, TypeVar, Union

import psycopg
from psycopg import sql

from ..db import DdlOutcome, LockRetryPolicy, end_read, run_locked
from ..timeutil import add_months
from .catalog import (
    IndexInfo,
    Partition,
    PartitionKey,
    indexes_of,
    list_partitions,
    partition_key,
    storage_parameters,
)
from .. import recovery
from ..online.move import insertable_columns
from .actions import (
    Action,
    ActionResult,
    Conflict,
    CreateIndex,
    CreatePartition,
    SetStorage,
    SplitDefault,
    attach_check_name,
    attach_month_statements,
    index_statement,
    month_table_statements,
    qualified,
    range_predicate,
    storage_clause,
)
from .policy import IndexSpec, PartitionPolicy, PolicyError
from . import split_default

if TYPE_CHECKING:
    from ..backups.store import BackupStore

Bound = Union[datetime, date]
T = TypeVar("T")
__all__ = ["Action", "ActionResult", "Conflict", "CreateIndex", "CreatePartition", "SetStorage", "SplitDefault"]
TIME_KEY_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


class PartitionConflict(RuntimeError):
    """Something in the catalog prevents a month from being created as the policy says."""


# ---------------------------------------------------------------------------
# Bounds


def month_bounds(policy: PartitionPolicy, key: PartitionKey, month: date) -> tuple[Bound, Bound]:
    """``[month, next month)`` typed for the partition key, in the policy's time zone."""
    upper_month = add_months(month, 1)
    if key.key_type == "timestamp with time zone":
        zone = policy.zone
        return (datetime(month.year, month.month, 1, tzinfo=zone),
                datetime(upper_month.year, upper_month.month, 1, tzinfo=zone))
    if key.key_type == "timestamp without time zone":
        return (datetime(month.year, month.month, 1), datetime(upper_month.year, upper_month.month, 1))
    return (date(month.year, month.month, 1), upper_month)


def comparable_bound(value: Optional[Bound]) -> Optional[Bound]:
    """The catalog reads ``timestamp`` bounds as UTC-aware; make ours match."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _overlaps(partition: Partition, lower: Bound, upper: Bound) -> bool:
    if partition.is_default or partition.lower is None and partition.upper is None:
        return False
    low, high = comparable_bound(lower), comparable_bound(upper)
    starts_before_end = partition.lower is None or partition.lower < high
    ends_after_start = partition.upper is None or partition.upper > low
    return starts_before_end and ends_after_start


def index_matches(index: IndexInfo, spec: IndexSpec) -> bool:
    """A plain, valid btree index over exactly the spec's columns and directions."""
    wanted = tuple((c.name, c.descending) for c in spec.columns)
    return index.method == "btree" and not index.is_partial and index.is_valid and index.columns == wanted


def storage_differences(have: dict[str, str], want: dict[str, str]) -> dict[str, tuple[Optional[str], str]]:
    """Parameters whose value differs from the policy: ``{name: (have, want)}``."""
    def same(a: Optional[str], b: str) -> bool:
        if a is None:
            return False
        try:
            return float(a) == float(b)
        except ValueError:
            return a.lower() == b.lower()

    return {k: (have.get(k), v) for k, v in want.items() if not same(have.get(k), v)}


# ---------------------------------------------------------------------------
# Plans


@dataclass
class Plan:
    policy: PartitionPolicy
    months: list[date]
    actions: list[Action]
    existing: dict[date, Partition] = field(default_factory=dict)

    @property
    def conflicts(self) -> list[Conflict]:
        return [a for a in self.actions if isinstance(a, Conflict)]

    @property
    def is_noop(self) -> bool:
        return not self.actions

    def for_month(self, month: date) -> "Plan":
        """The part of this plan that concerns ``month`` (a split of DEFAULT concerns every month it creates)."""
        def concerns(action: Action) -> bool:
            return action.month == month or any(c.month == month for c in getattr(action, "creates", ()))

        return Plan(self.policy, [month], [a for a in self.actions if concerns(a)],
                    {m: p for m, p in self.existing.items() if m == month})

    def to_markdown(self, conn: psycopg.Connection) -> str:
        lines = [f"**Plan for `{self.policy.qualified_name}`** — months "
                 + ", ".join(f"{m:%Y-%m}" for m in self.months), ""]
        if not self.actions:
            lines.append("Nothing to do: every month exists with the policy's indexes and storage settings.")
        for number, action in enumerate(self.actions, 1):
            lines += [f"{number}. `{action.kind}` **{action.target}** ({action.month:%Y-%m}): {action.reason}"]
            if action.statements or isinstance(action, SplitDefault):
                lines += ["", "```sql", action.render(conn), "```", ""]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Planning


def read_key(conn: psycopg.Connection, policy: PartitionPolicy) -> PartitionKey:
    """The parent's partition key, checked against the policy."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (policy.qualified_name,)).fetchone()[0]
    if not exists:
        raise PolicyError(f"{policy.qualified_name} does not exist")
    key = partition_key(conn, policy.qualified_name)
    if key is None or key.strategy != "range" or key.columns != (policy.partition_column,):
        raise PolicyError(
            f"{policy.qualified_name} must be RANGE partitioned by ({policy.partition_column}); "
            f"the catalog says {key}"
        )
    if key.key_type not in TIME_KEY_TYPES:
        raise PolicyError(f"{policy.qualified_name}: monthly partitions need a time key, not {key.key_type}")
    return key


def plan_months(conn: psycopg.Connection, policy: PartitionPolicy, months: Iterable[date], *,
                online: bool = True) -> Plan:
    """What must change so that every month in ``months`` exists as the policy says.

    When a DEFAULT partition holds ``policy.online_move_min_rows`` rows or more, the months
    to create become one ``SplitDefault`` (unless ``online`` is false: a caller that runs the
    statements in its own transaction, or a table whose rows have no unique key)."""
    key = read_key(conn, policy)
    wanted = sorted({date(m.year, m.month, 1) for m in months})
    partitions = list_partitions(conn, policy.qualified_name)
    default = next((p for p in partitions if p.is_default), None)
    parent_oid = conn.execute("SELECT %s::regclass::oid::bigint", (policy.qualified_name,)).fetchone()[0]
    oids = [parent_oid] + [p.oid for p in partitions]
    indexes = indexes_of(conn, oids)
    storage = storage_parameters(conn, oids)
    parent_covers = [s for s in policy.indexes if any(index_matches(i, s) for i in indexes[parent_oid])]
    columns = list(insertable_columns(conn, parent_oid))
    parent = qualified(policy.schema, policy.table)

    plan = Plan(policy=policy, months=wanted, actions=[])
    for month in wanted:
        lower, upper = month_bounds(policy, key, month)
        exact = next((p for p in partitions if p.lower == comparable_bound(lower) and p.upper == comparable_bound(upper)
                      and not p.is_default), None)
        if exact is not None:
            plan.existing[month] = exact
            plan.actions += _repairs(policy, month, exact, indexes[exact.oid], storage[exact.oid])
            continue
        overlapping = [p for p in partitions if _overlaps(p, lower, upper)]
        name = policy.partition_name(month)
        taken = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(policy.schema, name).as_string(conn),)
        ).fetchone()[0]
        if overlapping or taken:
            reason = (f"existing partition(s) {', '.join(p.name for p in overlapping)} overlap "
                      f"[{lower}, {upper})" if overlapping else
                      f"a relation named {policy.schema}.{name} already exists but is not this month's partition")
            plan.actions.append(Conflict(month, name, reason + "; fix it by hand, nothing was changed", ()))
            continue
        plan.actions.append(_create_action(policy, month, name, lower, upper, parent, default,
                                           [s for s in policy.indexes if s not in parent_covers], columns))
    creates = [a for a in plan.actions if isinstance(a, CreatePartition)]
    if online and default is not None and creates:
        split = split_default.plan_split(conn, policy, parent, parent_oid, default, creates,
                                         [s for s in policy.indexes if s not in parent_covers])
        if split is not None:
            plan.actions = [split] + [a for a in plan.actions if not isinstance(a, CreatePartition)]
    return plan


def _repairs(policy: PartitionPolicy, month: date, partition: Partition,
             indexes: Sequence[IndexInfo], storage: dict[str, str]) -> list[Action]:
    table = qualified(partition.schema, partition.name)
    actions: list[Action] = []
    diff = storage_differences(storage, dict(policy.storage))
    if diff:
        actions.append(SetStorage(
            month, partition.name,
            "storage settings differ: " + ", ".join(f"{k} is {h} (want {w})" for k, (h, w) in diff.items()),
            (sql.SQL("ALTER TABLE {} SET ({})").format(table, storage_clause({k: w for k, (_, w) in diff.items()})),),
        ))
    for spec in policy.indexes:
        if not any(index_matches(i, spec) for i in indexes):
            actions.append(CreateIndex(month, partition.name, f"index {spec} is missing",
                                       (index_statement(table, spec),)))
    return actions


def _create_action(policy: PartitionPolicy, month: date, name: str, lower: Bound, upper: Bound,
                   parent: sql.Composable, default: Optional[Partition], extra_indexes: list[IndexSpec],
                   columns: list[str]) -> CreatePartition:
    table = qualified(policy.schema, name)
    parent_mode = sql.SQL("SHARE UPDATE EXCLUSIVE" if default is None else "ACCESS EXCLUSIVE")
    statements: list[sql.Composable] = [
        sql.SQL("LOCK TABLE ONLY {} IN {} MODE").format(parent, parent_mode)]
    move = count = None
    if default is not None:
        statements.append(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(
            qualified(default.schema, default.name)))
    statements += month_table_statements(policy, name, lower, upper, parent, extra_indexes)
    if default is not None:
        column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        move = sql.SQL(
            "WITH moved AS (DELETE FROM ONLY {d} WHERE {p} RETURNING {cols}) "
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM moved"
        ).format(d=qualified(default.schema, default.name), p=range_predicate(policy.partition_column, lower, upper),
                 cols=column_list, t=table)
        count = sql.SQL("SELECT count(*) FROM ONLY {}").format(table)
        statements.append(move)
    statements += attach_month_statements(parent, table, name, lower, upper)
    reason = f"missing: create [{lower}, {upper}) outside the tree, CHECK, ATTACH"
    if default is not None:
        reason += f", moving this month's rows out of {default.name} in the same transaction"
    return CreatePartition(month, name, reason, tuple(statements), lower=lower, upper=upper,
                           move_statement=move, moved_rows_count=count)


# ---------------------------------------------------------------------------
# Applying


def apply_action(conn: psycopg.Connection, action: Action, retry: LockRetryPolicy) -> ActionResult:
    moved = [0]

    def work(c: psycopg.Connection) -> None:
        for statement in action.statements:
            cursor = c.execute(statement)
            if isinstance(action, CreatePartition) and statement is action.move_statement:
                moved[0] = cursor.rowcount
                landed = c.execute(action.moved_rows_count).fetchone()[0]
                if landed != moved[0]:  # proof before commit: every deleted row is in the new table
                    raise RuntimeError(f"{action.target}: moved {moved[0]} rows but found {landed}; rolled back")

    started = time.monotonic()
    outcome: DdlOutcome = run_locked(conn, work, what=f"{action.kind} {action.target}", policy=retry)
    return ActionResult(action, outcome.attempts, outcome.lock_wait_s, time.monotonic() - started, moved[0])


def attach_month_table(conn: psycopg.Connection, policy: PartitionPolicy, schema: str, name: str, month: date,
                       retry: LockRetryPolicy = LockRetryPolicy()) -> None:
    """THE way a standalone table becomes ``month``'s partition (a restored month, a retirement
    undone): bounds typed for the key in the policy's time zone, a CHECK equal to the partition
    constraint added first in its own transaction (its scan locks only that table), then
    ATTACH (no scan under the parent's lock) and the CHECK dropped."""
    end_read(conn)
    key = read_key(conn, policy)
    lower, upper = month_bounds(policy, key, month)
    parent = qualified(policy.schema, policy.table)
    table = qualified(schema, name)
    end_read(conn)
    run_locked(conn, lambda c: c.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK {}").format(
        table, attach_check_name(name), range_predicate(policy.partition_column, lower, upper))),
        what=f"bounds check on {schema}.{name}", policy=retry)
    run_locked(conn, lambda c: [c.execute(s) for s in attach_month_statements(parent, table, name, lower, upper)],
               what=f"attach {schema}.{name} to {policy.qualified_name}", policy=retry)


def read_with_retry(conn: psycopg.Connection, read: Callable[[psycopg.Connection], T], *, what: str,
                    retry: LockRetryPolicy) -> T:
    """Catalog reads under the same lock_timeout and retries as DDL: rendering bounds
    (``pg_get_expr``) takes ACCESS SHARE on each partition, which waits behind a
    conflicting ACCESS EXCLUSIVE lock like any DDL would."""
    box: list[T] = []
    run_locked(conn, lambda c: box.append(read(c)), what=what, policy=retry)
    return box[0]


@dataclass(frozen=True)
class MonthChange:
    """What a run did to one month: the actions applied to it and what they cost."""

    month: date
    results: list[ActionResult]

    @property
    def created(self) -> bool:
        return any(isinstance(r.action, CreatePartition) for r in self.results)

    @property
    def rows_moved(self) -> int:
        return sum(r.rows_moved for r in self.results)

    @property
    def lock_wait_s(self) -> float:
        return sum(r.lock_wait_s for r in self.results)

    @property
    def lock_attempts(self) -> int:
        return max((r.attempts for r in self.results), default=0)


@dataclass
class MaintenanceResult:
    plan: Plan
    results: list[ActionResult]
    dry_run: bool
    recovery: Optional["recovery.Recovery"] = None  # what taking the table repaired first

    @property
    def created(self) -> list[str]:
        return [r.action.target for r in self.results if isinstance(r.action, CreatePartition)]

    @property
    def changed(self) -> bool:
        return bool(self.results)

    @property
    def lock_wait_s(self) -> float:
        return sum(r.lock_wait_s for r in self.results)

    @property
    def rows_moved(self) -> int:
        return sum(r.rows_moved for r in self.results)

    def for_month(self, month: date) -> MonthChange:
        return MonthChange(month, [r for r in self.results if r.action.month == month])


def apply_plan(conn: psycopg.Connection, plan: Plan, retry: LockRetryPolicy = LockRetryPolicy(), *,
               progress: Optional[Callable[[str], None]] = None) -> list[ActionResult]:
    """Run every action but conflicts, each in its own transaction; then raise on conflicts.

    One broken month never blocks the others (SPEC §4)."""
    end_read(conn)
    results: list[ActionResult] = []
    for action in plan.actions:
        if isinstance(action, SplitDefault):
            results += split_default.apply_split(conn, action, retry, progress=progress)
        elif not isinstance(action, Conflict):
            results.append(apply_action(conn, action, retry))
    if plan.conflicts:
        raise PartitionConflict(
            "; ".join(f"{c.target} ({c.month:%Y-%m}): {c.reason}" for c in plan.conflicts)
            + (f" (the other {len(results)} action(s) were applied)" if results else "")
        )
    return results


def ensure_months(
    conn: psycopg.Connection,
    policy: PartitionPolicy,
    months: Iterable[date],
    *,
    dry_run: bool = False,
    retry: LockRetryPolicy = LockRetryPolicy(),
    lock_wait_s: float = 0.0,
    store: Optional[BackupStore] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> MaintenanceResult:
    """Plan and (unless ``dry_run``) apply, holding the table (``recovery.table_maintenance``:
    its maintenance lock scope, then the repair of what an interrupted job left; with
    ``store``, interrupted retirements too). A dry run takes neither.

    The connection must not be inside a transaction. Raises ``MaintenanceLockBusy``
    if another run holds the lock, ``LockRetriesExhausted`` if a DDL lock could not
    be had, ``PartitionConflict`` if the catalog contradicts the policy.
    """
    end_read(conn)
    wanted = list(months)
    if dry_run:
        plan = read_with_retry(conn, lambda c: plan_months(c, policy, wanted), what="plan", retry=retry)
        return MaintenanceResult(plan, [], True)
    with recovery.table_maintenance(conn, policy.qualified_name, store=store, wait_s=lock_wait_s,
                                    retry=retry) as recovered:
        plan = read_with_retry(conn, lambda c: plan_months(c, policy, wanted), what="plan", retry=retry)
        return MaintenanceResult(plan, apply_plan(conn, plan, retry, progress=progress), False, recovered)
