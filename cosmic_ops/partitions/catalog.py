"""Partitions as the catalog knows them: ``pg_inherits`` + ``pg_get_expr(relpartbound)``.

Never by name. Bounds are cast back to the partition key's type in the same
session that rendered them, so the session TimeZone cannot shift them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Optional

import psycopg

_PARTITIONS_SQL = r"""
WITH key AS (
    SELECT pt.partrelid, pt.partstrat, pt.partnatts,
           format_type(a.atttypid, a.atttypmod) AS key_type, a.attname AS key_column
    FROM pg_partitioned_table pt
    LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partrelid = %(parent)s::regclass
), parts AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind,
           pg_get_expr(c.relpartbound, c.oid) AS bound,
           regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS rb
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE i.inhparent = %(parent)s::regclass
)
SELECT parts.oid, parts.nspname, parts.relname, parts.relkind, parts.bound, key.key_type,
       -- [lower, upper] as UTC instants (naive timestamps and dates read as UTC);
       -- NULL for MINVALUE/MAXVALUE, multi-column keys, LIST, HASH and DEFAULT.
       (SELECT array_agg(
                   CASE WHEN key.partnatts <> 1 OR lit IN ('MINVALUE', 'MAXVALUE') THEN NULL
                        WHEN key.key_type = 'timestamp with time zone' THEN btrim(lit, '''')::timestamptz
                        WHEN key.key_type IN ('timestamp without time zone', 'date')
                            THEN btrim(lit, '''')::timestamp AT TIME ZONE 'UTC'
                   END ORDER BY ord)
        FROM unnest(parts.rb) WITH ORDINALITY AS u(lit, ord)) AS bounds_utc
FROM parts CROSS JOIN key
ORDER BY parts.relname
"""


@dataclass(frozen=True)
class Partition:
    """One child of a partitioned table. ``lower``/``upper`` are set for single-column
    RANGE partitions on a time key (timestamptz and timestamp as UTC-aware datetimes,
    date as ``date``); ``None`` for MINVALUE/MAXVALUE, DEFAULT, LIST and HASH."""

    oid: int
    schema: str
    name: str
    bound: str
    key_type: str
    is_default: bool
    is_partitioned: bool
    lower: Optional[datetime | date] = None
    upper: Optional[datetime | date] = None

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    def lower_month(self) -> Optional[date]:
        """The calendar month (UTC) this partition starts in, if it has a time lower bound."""
        if self.lower is None:
            return None
        if isinstance(self.lower, datetime):
            moment = self.lower.astimezone(timezone.utc)
            return date(moment.year, moment.month, 1)
        return date(self.lower.year, self.lower.month, 1)


def _typed(instant: Optional[datetime], key_type: str) -> Optional[datetime | date]:
    if instant is None:
        return None
    instant = instant.astimezone(timezone.utc)
    return instant.date() if key_type == "date" else instant


def list_partitions(conn: psycopg.Connection, parent: str) -> list[Partition]:
    """Direct children of ``parent`` (a regclass text such as ``event_logs`` or ``s.t``),
    time-ranged ones ordered by lower bound, then the rest by name."""
    rows = conn.execute(_PARTITIONS_SQL, {"parent": parent}).fetchall()
    result = []
    for oid, nsp, name, relkind, bound, key_type, bounds_utc in rows:
        lower, upper = (_typed(b, key_type) for b in (bounds_utc or [None, None]))
        result.append(Partition(
            oid=oid, schema=nsp, name=name, bound=bound, key_type=key_type,
            is_default=(bound == "DEFAULT"), is_partitioned=(relkind == "p"),
            lower=lower, upper=upper,
        ))

    def order(p: Partition):
        if p.lower is None:
            return (1, datetime.min.replace(tzinfo=timezone.utc), p.name)
        low = p.lower if isinstance(p.lower, datetime) else datetime(
            p.lower.year, p.lower.month, p.lower.day, tzinfo=timezone.utc)
        return (0, low, p.name)

    return sorted(result, key=order)


def default_partition(conn: psycopg.Connection, parent: str) -> Optional[Partition]:
    return next((p for p in list_partitions(conn, parent) if p.is_default), None)


def partition_for_month(conn: psycopg.Connection, parent: str, month: date) -> Optional[Partition]:
    """The RANGE partition of ``parent`` whose lower bound is the start of ``month`` (UTC)."""
    wanted = date(month.year, month.month, 1)
    return next((p for p in list_partitions(conn, parent) if p.lower_month() == wanted), None)


# ---------------------------------------------------------------------------
# Partition key, indexes and storage parameters (added for issue 3)


@dataclass(frozen=True)
class PartitionKey:
    """The partitioning of a table: strategy (``range``/``list``/``hash``), columns and type."""

    strategy: str
    columns: tuple[str, ...]
    key_type: str


def partition_key(conn: psycopg.Connection, parent: str) -> Optional[PartitionKey]:
    """``None`` when ``parent`` exists but is not partitioned."""
    row = conn.execute(
        """
        SELECT CASE pt.partstrat WHEN 'r' THEN 'range' WHEN 'l' THEN 'list' WHEN 'h' THEN 'hash' END,
               array(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum ORDER BY k.ord),
               (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                WHERE a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0])
        FROM pg_partitioned_table pt WHERE pt.partrelid = %s::regclass
        """,
        (parent,),
    ).fetchone()
    if row is None:
        return None
    return PartitionKey(strategy=row[0], columns=tuple(row[1]), key_type=row[2])


@dataclass(frozen=True)
class IndexInfo:
    """One index as the catalog describes it; ``columns`` pairs each key column (or
    expression text) with whether it is DESC."""

    relation_oid: int
    name: str
    method: str
    columns: tuple[tuple[str, bool], ...]
    is_partial: bool
    is_unique: bool
    is_valid: bool
    parent_index: Optional[str]


def indexes_of(conn: psycopg.Connection, relation_oids: list[int]) -> dict[int, list[IndexInfo]]:
    """Indexes of each relation, with the partitioned index each one is attached to."""
    rows = conn.execute(
        """
        SELECT i.indrelid::bigint, c.relname, am.amname,
               array(SELECT pg_get_indexdef(i.indexrelid, k, true)
                     FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
               array(SELECT (i.indoption[k - 1] & 1) = 1
                     FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
               i.indpred IS NOT NULL, i.indisunique, i.indisvalid,
               (SELECT pc.relname FROM pg_inherits ih JOIN pg_class pc ON pc.oid = ih.inhparent
                WHERE ih.inhrelid = i.indexrelid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam
        WHERE i.indrelid = ANY(%s::oid[])
        ORDER BY c.relname
        """,
        (relation_oids,),
    ).fetchall()
    result: dict[int, list[IndexInfo]] = {oid: [] for oid in relation_oids}
    for rel, name, method, cols, descs, partial, unique, valid, parent in rows:
        result[rel].append(IndexInfo(rel, name, method, tuple(zip(cols, descs)), partial, unique, valid, parent))
    return result


def storage_parameters(conn: psycopg.Connection, relation_oids: list[int]) -> dict[int, dict[str, str]]:
    """``pg_class.reloptions`` of each relation as a mapping."""
    rows = conn.execute(
        "SELECT oid::bigint, coalesce(reloptions, '{}') FROM pg_class WHERE oid = ANY(%s::oid[])",
        (relation_oids,),
    ).fetchall()
    result: dict[int, dict[str, str]] = {oid: {} for oid in relation_oids}
    for oid, options in rows:
        result[oid] = dict(option.split("=", 1) for option in options)
    return result
