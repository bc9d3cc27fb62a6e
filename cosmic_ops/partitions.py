"""Monthly RANGE partitions (placeholder until the partition-maintenance core lands)."""

from __future__ import annotations

from datetime import date
from typing import Iterable

import psycopg
from psycopg import sql

from .schema import EVENT_LOG_STORAGE
from .timeutil import month_bounds_utc


def existing_lower_bounds(conn: psycopg.Connection, table: str) -> set[date]:
    rows = conn.execute(
        r"""
        SELECT (btrim((regexp_match(pg_get_expr(c.relpartbound, c.oid),
                       '^FOR VALUES FROM \((.*)\) TO'))[1], '''')::timestamptz AT TIME ZONE 'UTC')::date
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
        """,
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


def ensure_month_partitions(conn: psycopg.Connection, table: str, months: Iterable[date]) -> list[str]:
    have = existing_lower_bounds(conn, table)
    created = []
    for month in months:
        lower, upper = month_bounds_utc(month)
        if lower.date() in have:
            continue
        name = f"{table}_{lower:%Y_%m}"
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}) WITH ({})").format(
                sql.Identifier(name), sql.Identifier(table), sql.Literal(lower), sql.Literal(upper),
                sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v))
                                   for k, v in EVENT_LOG_STORAGE.items()),
            )
        )
        created.append(name)
    return created
