"""Sizes and counts of every partitioned table, read from the catalog.

Both come from the views ``partition_sizes`` and ``partition_counts`` that
bootstrap keeps (schema migrations 1 and 3): catalog-based (``pg_inherits``,
``relpartbound``), so every partitioned table shows up, not only names matching
the seed's ``LIKE 'event_logs_%'``, and oldest/newest are ordered by bound.
Reading the views here keeps the assets and the views from drifting apart.
"""

from __future__ import annotations

import pandas as pd
import psycopg

SIZE_COLUMNS = (
    "schema_name", "table_name", "parent_schema", "parent_table", "root_table", "partition_bound",
    "total_bytes", "table_bytes", "index_bytes", "live_tuples", "dead_tuples",
    "last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze",
)
COUNT_COLUMNS = (
    "schema_name", "parent_table", "strategy", "partition_count", "default_partitions",
    "oldest_partition", "newest_partition",
)
_INT_COLUMNS = ("total_bytes", "table_bytes", "index_bytes", "live_tuples", "dead_tuples")

_SIZES_SQL = """
SELECT schema_name, table_name, parent_schema, parent_table, root_table, partition_bound,
       total_bytes, table_bytes, index_bytes, live_tuples, dead_tuples,
       last_vacuum, last_autovacuum, last_analyze, last_autoanalyze
FROM partition_sizes
ORDER BY total_bytes DESC, schema_name, table_name
"""

_COUNTS_SQL = """
SELECT schema_name, parent_table, strategy, partition_count, default_partitions,
       oldest_partition, newest_partition
FROM partition_counts
ORDER BY schema_name, parent_table
"""


def dead_tuple_ratio(live: pd.Series, dead: pd.Series) -> pd.Series:
    """dead / (live + dead), 0 for a table with neither."""
    total = live + dead
    return (dead / total.where(total > 0)).fillna(0.0)


def read_partition_sizes(conn: psycopg.Connection) -> pd.DataFrame:
    """One row per leaf partition of every partitioned table, largest first.

    Adds ``dead_tuple_ratio``. Tuple counts are the statistics collector's
    estimates, like autovacuum's.
    """
    rows = conn.execute(_SIZES_SQL).fetchall()
    frame = pd.DataFrame(rows, columns=list(SIZE_COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    frame["dead_tuple_ratio"] = dead_tuple_ratio(frame["live_tuples"], frame["dead_tuples"])
    return frame


def read_partition_counts(conn: psycopg.Connection) -> pd.DataFrame:
    """One row per partitioned table (intermediate levels included): strategy, partition
    count, DEFAULT partitions, oldest and newest partition by bound."""
    rows = conn.execute(_COUNTS_SQL).fetchall()
    frame = pd.DataFrame(rows, columns=list(COUNT_COLUMNS))
    for column in ("partition_count", "default_partitions"):
        frame[column] = frame[column].astype("int64")
    return frame
