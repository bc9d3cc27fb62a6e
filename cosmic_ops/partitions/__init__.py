"""Monthly RANGE partition maintenance: catalog reading, planning, applying."""

from __future__ import annotations

from datetime import date
from typing import Iterable

import psycopg
from psycopg import sql

from ..schema import EVENT_LOG_STORAGE
from ..timeutil import month_bounds_utc
from .catalog import Partition, default_partition, list_partitions, partition_for_month

__all__ = ["Partition", "default_partition", "ensure_month_partitions", "list_partitions", "partition_for_month"]


# TODO(issue 3): replace with the policy-driven plan/apply core (low-lock attach,
# DEFAULT rehoming); the demo generator calls this name.
def ensure_month_partitions(conn: psycopg.Connection, table: str, months: Iterable[date]) -> list[str]:
    have = {p.lower_month() for p in list_partitions(conn, table)}
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
