"""How evenly each hash-partitioned table spreads its rows over its partitions.

For every partition of every hash-partitioned table (``catalog.hash_tables``): rows, heap and
index bytes, dead tuples, and the hottest keys (the partition key values with the most rows
in that remainder). Per table: the skew ratio, max/mean of the partitions' rows (and of their
bytes), and the largest partition.

The ratio is over the partitions as they are, whatever their moduli: with the moduli 4 and 8
side by side (half-way through a re-split) the remainders still of modulus 4 are twice the
others on even data, and the ratio shows it, because what a split is for is partitions of
similar size (to vacuum, index, back up or move to another server). A hash spreads keys
evenly, so on a complete modulus rows skew only because keys differ in rows; a key is never
split across remainders, so a key holding most of a remainder stays a hot spot at any modulus.

By default (``exact=False``) nothing is scanned in full: rows are the planner's estimate
(``pg_class.reltuples``; ``pg_stat_user_tables.n_live_tup`` for a leaf never analyzed) and the
hottest keys come from a ``TABLESAMPLE SYSTEM`` sample of about ``sample_rows`` rows per
remainder (repeatable: the same pages while the table does not change). SYSTEM reads whole
pages, which is what makes it cheap; rows stored together (one save's planets written in one
go) are then sampled together, so a key's share is right on average but coarse. A remainder
no larger than the sample is read whole, and its keys are exact. ``exact=True`` counts every
remainder and its keys with full scans. Every figure says how it was obtained.

Each remainder is read in its own statement (autocommit): a report holds no lock on the tables
between statements, so it never stands in the way of a re-split's short swap, and its figures
are not from one snapshot. A partition detached or dropped while the report runs makes it
re-read the catalog and start again (bounded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import psycopg
from psycopg import sql

from .catalog import HashPartition, HashTable, NotHashPartitioned, hash_tables

DEFAULT_TOP_KEYS = 5
DEFAULT_SAMPLE_ROWS = 30_000
SAMPLE_SEED = 1  # TABLESAMPLE ... REPEATABLE: the same pages each run while the table is unchanged
_ATTEMPTS = 3

ROWS_EXACT = "exact"
ROWS_ESTIMATE = "estimate (reltuples)"
ROWS_ESTIMATE_LIVE = "estimate (reltuples; n_live_tup for leaves never analyzed)"

_SIZES_SQL = """
-- Every partition's own row (a partitioned remainder with no leaves yet counts as empty);
-- a partition dropped since the catalog was read returns no row at all.
SELECT r.oid::bigint,
       count(*) FILTER (WHERE t.isleaf)::int AS leaves,
       coalesce(sum(CASE WHEN l.reltuples >= 0 THEN l.reltuples::bigint ELSE coalesce(s.n_live_tup, 0) END)
                FILTER (WHERE t.isleaf), 0)::bigint AS estimated_rows,
       coalesce(bool_and(l.reltuples >= 0) FILTER (WHERE t.isleaf), true) AS analyzed,
       coalesce(sum(s.n_dead_tup) FILTER (WHERE t.isleaf), 0)::bigint AS dead_tuples,
       coalesce(sum(pg_relation_size(l.oid)) FILTER (WHERE t.isleaf), 0)::bigint AS heap_bytes,
       coalesce(sum(pg_indexes_size(l.oid)) FILTER (WHERE t.isleaf), 0)::bigint AS index_bytes,
       coalesce(sum(pg_total_relation_size(l.oid)) FILTER (WHERE t.isleaf), 0)::bigint AS total_bytes,
       coalesce(bool_or(l.relkind = 'f') FILTER (WHERE t.isleaf), false) AS has_foreign
FROM unnest(%s::oid[]) AS r(oid)
CROSS JOIN LATERAL pg_partition_tree(r.oid) AS t
JOIN pg_class l ON l.oid = t.relid
LEFT JOIN pg_stat_user_tables s ON s.relid = l.oid
GROUP BY r.oid
"""


class LayoutChanged(RuntimeError):
    """Partitions kept being detached or dropped while the report read them."""


@dataclass(frozen=True)
class HotKey:
    """A partition key value and its rows in one remainder: counted (exact) or its share of
    the sample times the remainder's rows (estimate)."""

    key: tuple[Any, ...]
    rows: int
    share: float  # of the remainder's rows (of the sampled rows when sampled)

    @property
    def text(self) -> str:
        return str(self.key[0]) if len(self.key) == 1 else "(" + ", ".join(map(str, self.key)) + ")"


@dataclass(frozen=True)
class RemainderStats:
    partition: HashPartition
    rows: int
    rows_source: str
    heap_bytes: int  # main fork of the heap (pg_relation_size), summed over leaves
    index_bytes: int
    total_bytes: int  # heap, TOAST, FSM/VM and indexes (pg_total_relation_size)
    dead_tuples: int
    leaves: int
    hot_keys: tuple[HotKey, ...] = ()
    hot_keys_source: str = "not computed"
    sampled_rows: Optional[int] = None  # rows read by the sample, when sampled

    @property
    def top_key(self) -> Optional[HotKey]:
        return self.hot_keys[0] if self.hot_keys else None


def _ratio(value: float, mean: float) -> float:
    return value / mean if mean > 0 else 1.0


@dataclass(frozen=True)
class ParentLayout:
    """One hash-partitioned table and its partitions."""

    table: HashTable
    remainders: tuple[RemainderStats, ...]

    @property
    def total_rows(self) -> int:
        return sum(r.rows for r in self.remainders)

    @property
    def total_bytes(self) -> int:
        return sum(r.total_bytes for r in self.remainders)

    @property
    def mean_rows(self) -> float:
        return self.total_rows / len(self.remainders) if self.remainders else 0.0

    def load(self, stats: RemainderStats) -> float:
        """Rows of a partition over the mean of the table's partitions (1.0 = even)."""
        return _ratio(stats.rows, self.mean_rows)

    def bytes_load(self, stats: RemainderStats) -> float:
        return _ratio(stats.total_bytes, self.total_bytes / len(self.remainders) if self.remainders else 0.0)

    @property
    def skew_ratio(self) -> float:
        """max/mean of the partitions' rows; 1.0 for a table without rows."""
        return max((self.load(r) for r in self.remainders), default=1.0)

    @property
    def bytes_skew_ratio(self) -> float:
        """max/mean of the partitions' total bytes."""
        return max((self.bytes_load(r) for r in self.remainders), default=1.0)

    @property
    def hottest_remainder(self) -> Optional[RemainderStats]:
        return max(self.remainders, key=self.load, default=None)

    @property
    def largest(self) -> Optional[RemainderStats]:
        return max(self.remainders, key=lambda r: r.total_bytes, default=None)

    @property
    def hottest_key(self) -> Optional[tuple[RemainderStats, HotKey]]:
        """The key with the most rows in any remainder, and that remainder."""
        found = [(r, r.top_key) for r in self.remainders if r.top_key is not None]
        return max(found, key=lambda pair: (pair[1].rows, pair[1].share), default=None)

    def hottest_key_share_of_table(self) -> float:
        """Rows of the hottest key over the table's rows: whatever the modulus, that key's
        partition holds at least this share (a key is never split across remainders)."""
        hottest = self.hottest_key
        return hottest[1].rows / self.total_rows if hottest and self.total_rows else 0.0

    def summary(self) -> dict[str, Any]:
        largest, hottest = self.largest, self.hottest_key
        return {
            "table": self.table.label,
            "root": self.table.root_label,
            "key": self.table.key_definition,
            "modulus": self.table.modulus or 0,
            "moduli": ",".join(map(str, self.table.moduli)),
            "partitions": len(self.remainders),
            "hash_coverage": float(self.table.coverage),
            "rows": self.total_rows,
            "skew_ratio": round(self.skew_ratio, 4),
            "bytes_skew_ratio": round(self.bytes_skew_ratio, 4),
            "total_bytes": self.total_bytes,
            "largest_partition": largest.partition.label if largest else "",
            "largest_partition_bytes": largest.total_bytes if largest else 0,
            "hottest_key": hottest[1].text if hottest else "",
            "hottest_key_rows": hottest[1].rows if hottest else 0,
            "hottest_key_share_of_table": round(self.hottest_key_share_of_table(), 4),
        }


@dataclass(frozen=True)
class LayoutReport:
    parents: tuple[ParentLayout, ...]
    exact: bool
    top_keys: int
    sample_rows: int
    seconds: float = 0.0
    attempts: int = 1

    @property
    def rows_method(self) -> str:
        if self.exact:
            return ROWS_EXACT
        sources = {r.rows_source for p in self.parents for r in p.remainders}
        return ROWS_ESTIMATE_LIVE if ROWS_ESTIMATE_LIVE in sources else ROWS_ESTIMATE

    @property
    def hot_keys_method(self) -> str:
        if self.top_keys == 0:
            return "not computed (top_keys = 0)"
        if self.exact:
            return "exact (GROUP BY over every row)"
        return (f"sample (TABLESAMPLE SYSTEM of about {self.sample_rows:,d} rows per remainder, "
                f"REPEATABLE ({SAMPLE_SEED}); remainders no larger are read whole)")

    def parent(self, table: str) -> ParentLayout:
        """The layout of ``table`` given as ``schema.name`` or a bare name."""
        for layout in self.parents:
            if table in (layout.table.label, layout.table.name):
                return layout
        raise KeyError(f"no hash-partitioned table {table!r} in the report")

    def remainder_records(self) -> list[dict[str, Any]]:
        records = []
        for layout in self.parents:
            for stats in layout.remainders:
                top = stats.top_key
                records.append({
                    "table": layout.table.label,
                    "partition": stats.partition.label,
                    "modulus": stats.partition.modulus,
                    "remainder": stats.partition.remainder,
                    "rows": stats.rows,
                    "rows_source": stats.rows_source,
                    "load": round(layout.load(stats), 4),
                    "heap_bytes": stats.heap_bytes,
                    "index_bytes": stats.index_bytes,
                    "total_bytes": stats.total_bytes,
                    "dead_tuples": stats.dead_tuples,
                    "top_key": top.text if top else "",
                    "top_key_rows": top.rows if top else 0,
                    "top_key_share": round(top.share, 4) if top else 0.0,
                    "hot_keys_source": stats.hot_keys_source,
                })
        return records

    def hot_key_records(self) -> list[dict[str, Any]]:
        return [
            {"table": layout.table.label, "partition": stats.partition.label,
             "modulus": stats.partition.modulus, "remainder": stats.partition.remainder,
             "rank": rank, "key": hot.text, "rows": hot.rows, "share_of_remainder": round(hot.share, 4),
             "source": stats.hot_keys_source}
            for layout in self.parents for stats in layout.remainders
            for rank, hot in enumerate(stats.hot_keys, 1)
        ]

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for the Dagster layer: numbers it plots (one series per table), the
        methods used, and tables as ``MetadataTable`` (one record per parent, per remainder,
        per hot key)."""
        per_table: dict[str, Any] = {}
        for layout in self.parents:
            label = layout.table.label
            largest = layout.largest
            per_table[f"skew_ratio/{label}"] = round(layout.skew_ratio, 4)
            per_table[f"bytes_skew_ratio/{label}"] = round(layout.bytes_skew_ratio, 4)
            per_table[f"largest_partition_bytes/{label}"] = largest.total_bytes if largest else 0
            per_table[f"modulus/{label}"] = layout.table.modulus or 0
            per_table[f"rows/{label}"] = layout.total_rows
        return {
            "hash_tables": len(self.parents),
            "hash_partitions": sum(len(p.remainders) for p in self.parents),
            "max_skew_ratio": round(max((p.skew_ratio for p in self.parents), default=1.0), 4),
            "rows_method": self.rows_method,
            "hot_keys_method": self.hot_keys_method,
            "seconds": round(self.seconds, 3),
            **per_table,
            "tables": MetadataTable(PARENT_COLUMNS, [p.summary() for p in self.parents]),
            "remainders": MetadataTable(REMAINDER_COLUMNS, self.remainder_records()),
            "hottest_keys": MetadataTable(HOT_KEY_COLUMNS, self.hot_key_records()),
        }


@dataclass(frozen=True)
class MetadataTable:
    """Rows to show as a table: ``columns`` pairs each name with its type (int, float, string)."""

    columns: tuple[tuple[str, str], ...]
    records: list[dict[str, Any]] = field(default_factory=list)


PARENT_COLUMNS = (
    ("table", "string"), ("root", "string"), ("key", "string"), ("modulus", "int"), ("moduli", "string"),
    ("partitions", "int"), ("hash_coverage", "float"), ("rows", "int"), ("skew_ratio", "float"),
    ("bytes_skew_ratio", "float"), ("total_bytes", "int"), ("largest_partition", "string"),
    ("largest_partition_bytes", "int"), ("hottest_key", "string"), ("hottest_key_rows", "int"),
    ("hottest_key_share_of_table", "float"),
)
REMAINDER_COLUMNS = (
    ("table", "string"), ("partition", "string"), ("modulus", "int"), ("remainder", "int"), ("rows", "int"),
    ("rows_source", "string"), ("load", "float"), ("heap_bytes", "int"), ("index_bytes", "int"),
    ("total_bytes", "int"), ("dead_tuples", "int"), ("top_key", "string"), ("top_key_rows", "int"),
    ("top_key_share", "float"), ("hot_keys_source", "string"),
)
HOT_KEY_COLUMNS = (
    ("table", "string"), ("partition", "string"), ("modulus", "int"), ("remainder", "int"), ("rank", "int"),
    ("key", "string"), ("rows", "int"), ("share_of_remainder", "float"), ("source", "string"),
)


# ---------------------------------------------------------------------------
# Reading


def _key_counts(conn: psycopg.Connection, partition: HashPartition, key_columns: Sequence[str], limit: int,
                sample_percent: Optional[float]) -> tuple[list[tuple[tuple, int]], int]:
    """The ``limit`` keys with the most rows in ``partition`` and the rows read in all (the
    whole partition, or the sample)."""
    aliases = [sql.Identifier(f"k{i}") for i in range(len(key_columns))]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in key_columns)
    sample = sql.SQL("")
    params: list[Any] = []
    if sample_percent is not None:
        sample = sql.SQL(" TABLESAMPLE SYSTEM (%s) REPEATABLE ({})").format(sql.Literal(SAMPLE_SEED))
        params.append(sample_percent)
    # The window sum runs before LIMIT: it is every row read, not only the top keys'.
    query = sql.SQL(
        "SELECT {aliases}, n, sum(n) OVER ()::bigint FROM (SELECT {columns}, count(*) FROM {relation}{sample} "
        "GROUP BY {columns}) AS g({aliases}, n) ORDER BY n DESC, {aliases} LIMIT %s"
    ).format(aliases=sql.SQL(", ").join(aliases), columns=columns, relation=sql.Identifier(*partition.qualified),
             sample=sample)
    rows = conn.execute(query, [*params, limit]).fetchall()
    width = len(key_columns)
    total = int(rows[0][width + 1]) if rows else 0
    return [(tuple(row[:width]), int(row[width])) for row in rows], total


def _count(conn: psycopg.Connection, partition: HashPartition) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*partition.qualified))).fetchone()[0]


def _remainder(conn: psycopg.Connection, table: HashTable, partition: HashPartition, sizes: tuple, *,
               exact: bool, top_keys: int, sample_rows: int) -> RemainderStats:
    leaves, estimated, analyzed, dead, heap, index, total, has_foreign = sizes
    rows = estimated
    rows_source = ROWS_ESTIMATE if analyzed else ROWS_ESTIMATE_LIVE
    hot: tuple[HotKey, ...] = ()
    hot_source = "not computed"
    sampled: Optional[int] = None
    wants_keys = top_keys > 0 and bool(table.key_columns)
    if top_keys > 0 and not table.key_columns:
        hot_source = f"not computed: the key is an expression ({table.key_definition})"
    if exact:
        rows_source = ROWS_EXACT
        if wants_keys:
            counted, rows = _key_counts(conn, partition, table.key_columns, top_keys, None)
            hot = tuple(HotKey(key, n, n / rows) for key, n in counted)
            hot_source = "exact"
        else:
            rows = _count(conn, partition)
    elif wants_keys and has_foreign:
        hot_source = "not sampled: TABLESAMPLE does not apply to a foreign table (ask for exact)"
    elif wants_keys:
        percent = 100.0 * sample_rows / estimated if estimated > 0 else 100.0
        if percent >= 100.0:
            counted, read = _key_counts(conn, partition, table.key_columns, top_keys, None)
            hot = tuple(HotKey(key, n, n / read) for key, n in counted)
            hot_source = "exact (partition no larger than the sample: read whole)"
        else:
            counted, read = _key_counts(conn, partition, table.key_columns, top_keys, percent)
            sampled = read
            # A key's rows are its share of the sample times the remainder's estimated rows.
            hot = tuple(HotKey(key, round(n / read * estimated), n / read) for key, n in counted)
            hot_source = f"sample (SYSTEM {percent:.3g}%, {read:,d} rows read)"
    return RemainderStats(partition, int(rows), rows_source, heap, index, total, dead, leaves, hot, hot_source,
                          sampled)


def _measure_once(conn: psycopg.Connection, tables: Sequence[HashTable], *, exact: bool, top_keys: int,
                  sample_rows: int) -> tuple[ParentLayout, ...]:
    oids = [p.oid for t in tables for p in t.partitions]
    sizes = {row[0]: row[1:] for row in conn.execute(_SIZES_SQL, (oids,)).fetchall()}
    missing = [p.label for t in tables for p in t.partitions if p.oid not in sizes]
    if missing:
        raise _Vanished(missing)
    parents = []
    for table in tables:
        stats = []
        for partition in table.partitions:
            try:
                stats.append(_remainder(conn, table, partition, sizes[partition.oid], exact=exact,
                                        top_keys=top_keys, sample_rows=sample_rows))
            except psycopg.errors.UndefinedTable:
                raise _Vanished([partition.label]) from None
        parents.append(ParentLayout(table, tuple(stats)))
    return tuple(parents)


class _Vanished(Exception):
    def __init__(self, labels: list[str]):
        super().__init__(", ".join(labels))


def measure(
    conn: psycopg.Connection,
    *,
    exact: bool = False,
    top_keys: int = DEFAULT_TOP_KEYS,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    tables: Optional[Sequence[str]] = None,
) -> LayoutReport:
    """The layout of every hash-partitioned table (or of ``tables``, ``schema.name`` or bare
    names). ``conn`` should be in autocommit mode: each statement then holds its locks only
    while it runs."""
    if top_keys < 0 or sample_rows < 1:
        raise ValueError("top_keys must be at least 0 and sample_rows at least 1")
    started = time.perf_counter()
    for attempt in range(1, _ATTEMPTS + 1):
        found = hash_tables(conn)
        if tables is not None:
            unknown = [name for name in tables if not any(name in (t.label, t.name) for t in found)]
            if unknown:
                raise NotHashPartitioned(f"not hash-partitioned tables of this database: {unknown}")
            found = [t for t in found if t.label in tables or t.name in tables]
        try:
            parents = _measure_once(conn, found, exact=exact, top_keys=top_keys, sample_rows=sample_rows)
        except _Vanished as vanished:
            if not conn.autocommit:
                conn.rollback()
            if attempt == _ATTEMPTS:
                raise LayoutChanged(f"partitions vanished while being read, {_ATTEMPTS} times: {vanished}") from None
            continue
        if not conn.autocommit:
            conn.commit()
        return LayoutReport(parents, exact, top_keys, sample_rows, time.perf_counter() - started, attempt)
    raise AssertionError("unreachable")
