"""Throwaway partitioned tables for monitoring tests and the benchmark."""

from __future__ import annotations

import psycopg
from psycopg import sql

ROWS_PER_RANGE = 1000


def create_int_range_table(conn: psycopg.Connection, name: str, partitions: int, *, schema: str = "public") -> None:
    """``schema.name`` RANGE-partitioned on an int with ``partitions`` children ``name_p<i>``
    covering [i*1000, (i+1)*1000), autovacuum off so dead tuples stay until we VACUUM."""
    parent = sql.Identifier(schema, name)
    statements = [sql.SQL("CREATE TABLE {} (id int NOT NULL, payload text) PARTITION BY RANGE (id)").format(parent)]
    for index in range(partitions):
        statements.append(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}) WITH (autovacuum_enabled = false)")
            .format(sql.Identifier(schema, f"{name}_p{index}"), parent,
                    sql.Literal(index * ROWS_PER_RANGE), sql.Literal((index + 1) * ROWS_PER_RANGE))
        )
    # Batches keep each transaction's lock count well inside max_locks_per_transaction.
    for start in range(0, len(statements), 250):
        with conn.transaction():
            conn.execute(sql.SQL(";\n").join(statements[start:start + 250]))


def make_dead_tuples(conn_info: str, schema: str, parent: str, index: int, *, rows: int, deleted: int) -> None:
    """Fill partition ``index`` of an int-range table with ``rows`` rows, delete ``deleted``
    of them, and flush this session's statistics so readers see the dead tuples."""
    with psycopg.connect(conn_info, autocommit=True) as session:
        low = index * ROWS_PER_RANGE
        session.execute(
            sql.SQL("INSERT INTO {} SELECT g, repeat('x', 200) FROM generate_series(%s::int, %s::int) g")
            .format(sql.Identifier(schema, parent)),
            (low, low + rows - 1),
        )
        session.execute(
            sql.SQL("DELETE FROM {} WHERE id BETWEEN %s AND %s").format(sql.Identifier(schema, parent)),
            (low, low + deleted - 1),
        )
        flush_stats(session)


def flush_stats(session: psycopg.Connection) -> None:
    """Pending statistics are flushed when the backend next goes idle; forcing it makes the
    next statement's return mean they are visible to everyone."""
    session.execute("SELECT pg_stat_force_next_flush()")
    session.execute("SELECT 1")
