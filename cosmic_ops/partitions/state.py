"""The state of a managed table, read from the catalog: per-month facts and the
checks that assert it (SPEC §4: checks assert the database, not that a job ran).

Each check returns a ``CheckOutcome`` whose description says exactly what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Optional

import psycopg
from psycopg import sql

from ..timeutil import add_months
from .catalog import Partition, PartitionKey, indexes_of, list_partitions, storage_parameters
from .maintain import comparable_bound, index_matches, month_bounds, read_key, storage_differences
from .policy import PartitionPolicy


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Facts about one month


def month_partition(conn: psycopg.Connection, policy: PartitionPolicy, month: date) -> Optional[Partition]:
    """The partition whose bounds are exactly ``month`` in the policy's time zone."""
    key = read_key(conn, policy)
    lower, upper = (comparable_bound(b) for b in month_bounds(policy, key, month))
    return next((p for p in list_partitions(conn, policy.qualified_name)
                 if not p.is_default and p.lower == lower and p.upper == upper), None)


def describe_month(conn: psycopg.Connection, policy: PartitionPolicy, month: date,
                   *, exact_rows: bool = False) -> dict[str, Any]:
    """Bounds, rows, bytes, indexes and storage of the month's partition (empty if none)."""
    partition = month_partition(conn, policy, month)
    if partition is None:
        return {}
    estimate, total_bytes = conn.execute(
        "SELECT reltuples::bigint, pg_total_relation_size(oid) FROM pg_class WHERE oid = %s", (partition.oid,)
    ).fetchone()
    facts: dict[str, Any] = {
        "partition": f"{partition.schema}.{partition.name}",
        "lower_bound": partition.lower.isoformat(),
        "upper_bound": partition.upper.isoformat(),
        "bound_expression": partition.bound,
        # reltuples is -1 until the first VACUUM/ANALYZE: report 0 rather than a negative count.
        "rows_estimate": max(int(estimate), 0),
        "total_bytes": int(total_bytes),
        "indexes": [i.name for i in indexes_of(conn, [partition.oid])[partition.oid]],
        "storage": storage_parameters(conn, [partition.oid])[partition.oid],
    }
    if exact_rows:
        facts["rows_exact"] = conn.execute(
            sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(partition.schema, partition.name))
        ).fetchone()[0]
    return facts


# ---------------------------------------------------------------------------
# Facts about the whole table


@dataclass(frozen=True)
class PartitionFacts:
    """One partition as the catalog shows it now."""

    partition: str  # schema.name
    month: Optional[date]  # the month its lower bound starts, in the policy's time zone
    lower_bound: Optional[str]
    upper_bound: Optional[str]
    is_default: bool
    rows_estimate: int
    total_bytes: int


@dataclass(frozen=True)
class TableState:
    """Every partition of a managed table, oldest month first (DEFAULT last), and the rows in DEFAULT."""

    table: str
    partitions: list[PartitionFacts]
    default_rows: Optional[int]  # None: the table has no DEFAULT partition

    @property
    def months(self) -> list[date]:
        return [p.month for p in self.partitions if p.month is not None and not p.is_default]

    @property
    def total_bytes(self) -> int:
        return sum(p.total_bytes for p in self.partitions)

    @property
    def rows_estimate(self) -> int:
        return sum(p.rows_estimate for p in self.partitions)


def describe_table(conn: psycopg.Connection, policy: PartitionPolicy) -> TableState:
    """What exists of the policy's table now: each partition's bounds, rows (estimate) and bytes."""
    key = read_key(conn, policy)
    partitions = list_partitions(conn, policy.qualified_name)
    stats = {oid: (max(int(tuples), 0), int(size)) for oid, tuples, size in conn.execute(
        "SELECT oid::bigint, reltuples::bigint, pg_total_relation_size(oid) FROM pg_class WHERE oid = ANY(%s)",
        ([p.oid for p in partitions],)).fetchall()}
    default = next((p for p in partitions if p.is_default), None)
    default_rows = None if default is None else conn.execute(
        sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(default.schema, default.name))).fetchone()[0]
    facts = [PartitionFacts(
        partition=f"{p.schema}.{p.name}", month=None if p.is_default else _month_of(p.lower, key, policy),
        lower_bound=p.lower.isoformat() if p.lower is not None else None,
        upper_bound=p.upper.isoformat() if p.upper is not None else None,
        is_default=p.is_default, rows_estimate=stats.get(p.oid, (0, 0))[0], total_bytes=stats.get(p.oid, (0, 0))[1],
    ) for p in partitions]
    facts.sort(key=lambda f: (f.is_default, f.lower_bound is None, f.lower_bound or "", f.partition))
    return TableState(policy.qualified_name, facts, default_rows)


# ---------------------------------------------------------------------------
# Checks


def check_months_exist(conn: psycopg.Connection, policy: PartitionPolicy, *,
                       now: datetime) -> CheckOutcome:
    """This month and the next ``premake`` months exist with exact bounds."""
    wanted = policy.premake_months(now)
    missing = [m for m in wanted if month_partition(conn, policy, m) is None]
    names = [f"{m:%Y-%m}" for m in missing]
    if missing:
        return CheckOutcome(False, f"{policy.qualified_name}: no partition for {', '.join(names)} "
                            f"(the current month and {policy.premake} ahead must exist)",
                            {"missing_months": names, "expected_months": [f"{m:%Y-%m}" for m in wanted]})
    return CheckOutcome(True, f"{policy.qualified_name}: {wanted[0]:%Y-%m} .. {wanted[-1]:%Y-%m} exist",
                        {"missing_months": [], "expected_months": [f"{m:%Y-%m}" for m in wanted]})


def default_rows_by_month(conn: psycopg.Connection, policy: PartitionPolicy) -> tuple[Optional[Partition], list[tuple[Optional[date], int]]]:
    """Rows in the DEFAULT partition grouped by their month in the policy time zone
    (``None`` for NULL keys, which no range partition accepts)."""
    key = read_key(conn, policy)
    default = next((p for p in list_partitions(conn, policy.qualified_name) if p.is_default), None)
    if default is None:
        return None, []
    column = sql.Identifier(policy.partition_column)
    local = (sql.SQL("({} AT TIME ZONE {})").format(column, sql.Literal(policy.timezone))
             if key.key_type == "timestamp with time zone" else column)
    rows = conn.execute(sql.SQL(
        "SELECT date_trunc('month', {local})::date AS month, count(*) FROM ONLY {d} GROUP BY 1 ORDER BY 1"
    ).format(local=local, d=sql.Identifier(default.schema, default.name))).fetchall()
    return default, [(m, n) for m, n in rows]


def check_default_empty(conn: psycopg.Connection, policy: PartitionPolicy) -> CheckOutcome:
    default, months = default_rows_by_month(conn, policy)
    if default is None:
        return CheckOutcome(True, f"{policy.qualified_name} has no DEFAULT partition", {"default_rows": 0})
    total = sum(n for _, n in months)
    listing = {("NULL key" if m is None else f"{m:%Y-%m}"): n for m, n in months}
    if total:
        return CheckOutcome(
            False,
            f"{default.name} holds {total} row(s): " + ", ".join(f"{k}: {v}" for k, v in listing.items())
            + " — the rehoming job moves them into their months",
            {"default_rows": total, "rows_by_month": listing},
        )
    return CheckOutcome(True, f"{default.name} is empty", {"default_rows": 0})


def check_indexes_and_storage(conn: psycopg.Connection, policy: PartitionPolicy) -> CheckOutcome:
    """Every partition (DEFAULT included) carries the policy's indexes and storage settings."""
    partitions = list_partitions(conn, policy.qualified_name)
    oids = [p.oid for p in partitions]
    indexes = indexes_of(conn, oids)
    storage = storage_parameters(conn, oids)
    problems: dict[str, list[str]] = {}
    for p in partitions:
        issues = [f"missing index {spec}" for spec in policy.indexes
                  if not any(index_matches(i, spec) for i in indexes[p.oid])]
        issues += [f"{k} is {have if have is not None else 'unset'} (want {want})"
                   for k, (have, want) in storage_differences(storage[p.oid], dict(policy.storage)).items()]
        if issues:
            problems[p.name] = issues
    meta = {"partitions_checked": len(partitions), "problems": problems}
    if problems:
        return CheckOutcome(False, "; ".join(f"{name}: {', '.join(i)}" for name, i in problems.items()), meta)
    return CheckOutcome(True, f"all {len(partitions)} partitions have the policy's "
                        f"{len(policy.indexes)} indexes and storage settings", meta)


def _month_of(lower: Any, key: PartitionKey, policy: PartitionPolicy) -> Optional[date]:
    """The month a lower bound starts in: timestamptz bounds read in the policy's zone,
    ``timestamp``/``date`` bounds as the wall-clock values they are."""
    if lower is None:
        return None
    if isinstance(lower, datetime):
        zone = policy.zone if key.key_type == "timestamp with time zone" else timezone.utc
        lower = lower.astimezone(zone)
    return date(lower.year, lower.month, 1)


def check_contiguous(conn: psycopg.Connection, policy: PartitionPolicy, *,
                     now: datetime) -> CheckOutcome:
    """Each range partition spans exactly one month in the policy's time zone, none
    overlap, and there is no gap from the oldest month within retention to the last
    premade month. Months outside that span (rows rehomed from DEFAULT years away,
    months awaiting retention) are listed, not failed."""
    key = read_key(conn, policy)
    current = policy.current_month(now)
    span = (comparable_bound(month_bounds(policy, key, add_months(current, -policy.retention))[0]),
            comparable_bound(month_bounds(policy, key, add_months(current, policy.premake))[1]))
    ranged = [p for p in list_partitions(conn, policy.qualified_name) if not p.is_default]
    problems: list[str] = []
    for p in ranged:
        month = _month_of(p.lower, key, policy)
        if month is None or tuple(comparable_bound(b) for b in month_bounds(policy, key, month)) != (p.lower, p.upper):
            problems.append(f"{p.name} [{p.lower}, {p.upper}) is not exactly one month in {policy.timezone}")
    for before, after in zip(ranged, ranged[1:]):
        if before.upper is None or after.lower is None:
            continue
        if before.upper > after.lower:
            problems.append(f"{before.name} and {after.name} overlap from {after.lower} to {before.upper}")
    inside = [p for p in ranged if p.lower is not None and p.upper is not None
              and p.lower >= span[0] and p.upper <= span[1]]
    for before, after in zip(inside, inside[1:]):
        if before.upper < after.lower:
            problems.append(f"gap between {before.name} and {after.name}: "
                            f"[{before.upper}, {after.lower}) has no partition")
    meta = {"partitions": len(ranged), "span": [str(span[0]), str(span[1])],
            "first": inside[0].name if inside else None, "last": inside[-1].name if inside else None,
            "outside_span": [p.name for p in ranged if p not in inside]}
    if problems:
        return CheckOutcome(False, "; ".join(problems), {**meta, "problems": problems})
    return CheckOutcome(True, f"{len(inside)} monthly partitions contiguous within retention and premake"
                        + (f"; {len(meta['outside_span'])} outside that span" if meta["outside_span"] else ""),
                        meta)


def _scanned_relations(plan: Any) -> list[str]:
    found: list[str] = []
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.append(plan["Relation Name"])
        for value in plan.values():
            found += _scanned_relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _scanned_relations(value)
    return found


def check_month_pruning(conn: psycopg.Connection, policy: PartitionPolicy, month: date) -> CheckOutcome:
    """EXPLAIN of a one-month query on the parent touches exactly that month's partition."""
    key = read_key(conn, policy)
    lower, upper = month_bounds(policy, key, month)
    statement = sql.SQL("EXPLAIN (FORMAT JSON) SELECT count(*) FROM {} WHERE {} >= {} AND {} < {}").format(
        sql.Identifier(policy.schema, policy.table), sql.Identifier(policy.partition_column), sql.Literal(lower),
        sql.Identifier(policy.partition_column), sql.Literal(upper))
    raw = conn.execute(statement).fetchone()[0]
    plan = json.loads(raw) if isinstance(raw, str) else raw
    scanned = sorted(set(_scanned_relations(plan)))
    expected = month_partition(conn, policy, month)
    meta = {"month": f"{month:%Y-%m}", "scanned": scanned, "query": statement.as_string(conn)}
    if expected is None:
        return CheckOutcome(False, f"no partition for {month:%Y-%m}: a one-month query scans {scanned}", meta)
    if scanned != [expected.name]:
        return CheckOutcome(False, f"a one-month query on {policy.table} for {month:%Y-%m} scans {scanned}, "
                            f"expected only {expected.name} (is partition pruning off?)", meta)
    return CheckOutcome(True, f"a one-month query for {month:%Y-%m} is pruned to {expected.name}", meta)
