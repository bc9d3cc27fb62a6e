"""Row count and an order-independent checksum of a table's rows, computed in SQL.

The checksum sums the first 64 bits of md5 of each row's text form over a fixed,
name-sorted column list, with the output settings that shape that text pinned
(TimeZone, DateStyle, ...), so the same rows give the same value in the source,
in a scratch database and in a restored table whatever the column order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import psycopg
from psycopg import sql

# The one set of settings under which the project turns values into text it compares.
# DateStyle: only its output half (ISO) shapes text; the order half (MDY) decides how
# ambiguous input such as 01/02/03 is read, and this text is hashed, never read back.
# MDY is PostgreSQL's default and what every checksum already recorded (backup
# manifests, online moves) was computed under. (Packed saves no longer parse text: their
# formats are binary, and ISO-written dates read the same under any order anyway.)
TEXT_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    checksum: str

    def matches(self, rows: int | None, checksum: str | None) -> bool:
        return self.rows == rows and self.checksum == checksum


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (schema, table),
    ).fetchall()
    if not rows:
        raise LookupError(f"table {schema}.{table} not found")
    return tuple(r[0] for r in rows)


def row_count(conn: psycopg.Connection, schema: str, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0]


def pin_text_settings(conn: psycopg.Connection) -> None:
    """``TEXT_SETTINGS`` for the rest of the caller's transaction (``set_config(..., true)``),
    whatever the session set: the text of a value is then the same in every session."""
    for name, value in TEXT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def fingerprint(conn: psycopg.Connection, schema: str, table: str, columns: Sequence[str],
                where: sql.Composable | None = None) -> Fingerprint:
    """Count and checksum under ``TEXT_SETTINGS``, in a transaction of its own (a savepoint inside
    the caller's): the settings are transaction-local, and on an autocommit session outside a
    block they would end with the ``set_config`` statement itself. ``where`` narrows the rows
    (an online move compares the source's rows of one route)."""
    with conn.transaction():
        pin_text_settings(conn)
        return _count_and_sum(conn, schema, table, columns, where)


def _count_and_sum(conn: psycopg.Connection, schema: str, table: str, columns: Sequence[str],
                   where: sql.Composable | None) -> Fingerprint:
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in sorted(columns)))
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5({row}::text), 16))::bit(64)::bigint), 0)::text "
        "FROM {table}{where}"
    ).format(row=row, table=sql.Identifier(schema, table),
             where=sql.SQL(" WHERE ") + where if where is not None else sql.SQL(""))
    rows, checksum = conn.execute(query).fetchone()
    return Fingerprint(rows=rows, checksum=checksum)
