"""Hash-partitioned tables made in the tests, with partition names that say nothing of their
bounds (the layout is read from the catalog, never from names)."""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import psycopg
from psycopg import sql

from cosmic_ops import db, demo, schema

from ..clock import TODAY
from ..monitoring.helpers import flush_stats

NAMES = ("amber", "birch", "cedar", "dune", "ember", "fjord", "grove", "heath")


def load_demo(conninfo: str, seed: int = 16) -> None:
    with db.connect(conninfo) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", seed=seed, as_of=TODAY)


def create_hash_table(conn: psycopg.Connection, name: str, bounds: Iterable[tuple[int, int]], *,
                      key: str = "customer_id", key_sql: Optional[str] = None) -> list[str]:
    """``name (id, customer_id, region, payload)`` HASH-partitioned by ``key`` (or the
    expression ``key_sql``), one partition per (modulus, remainder) in ``bounds``, named after
    trees; returns the partition names in the order of ``bounds``."""
    key_clause = sql.SQL(key_sql) if key_sql else sql.SQL(", ").join(sql.Identifier(k) for k in key.split(","))
    statements = [sql.SQL(
        "CREATE TABLE {} (id bigserial, customer_id bigint NOT NULL, region text NOT NULL DEFAULT 'eu', "
        "payload text) PARTITION BY HASH ({})").format(sql.Identifier(name), key_clause)]
    names = []
    for index, (modulus, remainder) in enumerate(bounds):
        partition = f"{name}_{NAMES[index]}"
        names.append(partition)
        statements.append(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            sql.Identifier(partition), sql.Identifier(name), sql.Literal(modulus), sql.Literal(remainder)))
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return names


def fill(conn: psycopg.Connection, table: str, rows_per_key: Mapping[int, int], *, analyze: bool = True) -> None:
    """``rows_per_key[k]`` rows with ``customer_id = k``; ANALYZE (as autovacuum would) unless
    told not. ``conn`` is in autocommit mode, so the statistics are flushed for every reader."""
    keys = [k for k, n in rows_per_key.items() for _ in range(n)]
    with conn.transaction():
        conn.execute(
            sql.SQL("INSERT INTO {} (customer_id, payload) SELECT k, repeat('x', 100) FROM unnest(%s::bigint[]) k")
            .format(sql.Identifier(table)), (keys,))
    if analyze:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    flush_stats(conn)


def keys_in_remainder(conn: psycopg.Connection, table: str, modulus: int, remainder: int,
                      candidates: range) -> list[int]:
    """The keys of ``candidates`` that PostgreSQL's own hash puts in (modulus, remainder) of ``table``."""
    return [k for (k,) in conn.execute(
        "SELECT k FROM generate_series(%s::bigint, %s::bigint) k "
        "WHERE satisfies_hash_partition(%s::regclass, %s, %s, k)",
        (candidates.start, candidates.stop - 1, table, modulus, remainder)).fetchall()]


def rows_by_partition(conn: psycopg.Connection, table: str) -> dict[str, int]:
    return dict(conn.execute(
        sql.SQL("SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1").format(sql.Identifier(table))
    ).fetchall())
