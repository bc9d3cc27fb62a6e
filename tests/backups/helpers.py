"""Shared by the backup and retention tests: months with rows, a store, the client."""

from __future__ import annotations

from datetime import date

import psycopg

from cosmic_ops import db, schema
from cosmic_ops.backups import BackupStore, backup_month, client_for, verify_month_backup
from cosmic_ops.partitions import default_partition, ensure_month_partitions
from cosmic_ops.timeutil import month_bounds_utc

TODAY = date(2026, 11, 21)


def add_rows(conn: psycopg.Connection, month: date, count: int, *, player_base: int = 1) -> None:
    """``count`` event rows spread over ``month``, committed."""
    lower, upper = month_bounds_utc(month)
    conn.execute(
        """
        INSERT INTO event_logs (player_id, event_type, server_timestamp, payload, server_region)
        SELECT %(base)s + g %% 97, (ARRAY['login','logout','resource_collected'])[1 + g %% 3],
               %(lower)s::timestamptz + (%(upper)s::timestamptz - %(lower)s::timestamptz) * g / (%(n)s + 1),
               jsonb_build_object('g', g, 'note', 'tab' || chr(9) || 'nl' || chr(10) || 'bs\\'),
               (ARRAY['eu','na','asia'])[1 + g %% 3]
        FROM generate_series(1, %(n)s) g
        """,
        {"base": player_base, "lower": lower, "upper": upper, "n": count},
    )
    conn.commit()


def make_month(conn: psycopg.Connection, month: date, rows: int) -> None:
    ensure_month_partitions(conn, "event_logs", [month])
    conn.commit()
    if rows:
        add_rows(conn, month, rows)


def month_rows(conn: psycopg.Connection, month: date) -> list[tuple]:
    lower, upper = month_bounds_utc(month)
    rows = conn.execute(
        "SELECT id, server_timestamp, player_id, event_type, payload, server_region FROM event_logs "
        "WHERE server_timestamp >= %s AND server_timestamp < %s ORDER BY id",
        (lower, upper),
    ).fetchall()
    conn.rollback()
    return rows


def store_and_client(tmp_path, conn) -> tuple[BackupStore, object]:
    client = client_for(conn)
    conn.rollback()
    return BackupStore(tmp_path / "store"), client


def store_for(conninfo: str, tmp_path) -> tuple[BackupStore, object]:
    with db.connect(conninfo) as conn:
        return store_and_client(tmp_path, conn)


def backed_up(conninfo: str, store: BackupStore, client, month: date, *, verify: bool = True):
    """A new backup generation of ``month``, verified by a scratch restore unless told not to."""
    with db.connect(conninfo) as conn:
        generation = backup_month(conn, store, client, conninfo=conninfo, month=month).generation
    if verify:
        assert verify_month_backup(store, generation, conninfo=conninfo, client=client).ok
    return generation


def bootstrap_without_default(conninfo: str, months: list[date], rows: int) -> str:
    """The schema with no DEFAULT partition on event_logs (so PostgreSQL allows DETACH ...
    CONCURRENTLY), and ``rows`` rows in each of ``months``."""
    with db.connect(conninfo) as conn:
        schema.bootstrap(conn)
        conn.execute("ALTER TABLE event_logs DETACH PARTITION event_logs_default")
        conn.execute("DROP TABLE event_logs_default")
        conn.commit()
        for month in months:
            make_month(conn, month, rows)
        assert default_partition(conn, "event_logs") is None
    return conninfo


def scratch_exists(conninfo: str, name: str) -> bool:
    """Whether the scratch database or schema ``name`` (from a verification record) still exists.
    Checked by name: other test runs may verify in parallel on the same server."""
    with psycopg.connect(conninfo) as c:
        return c.execute(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = %s) "
            "OR EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)", (name, name)).fetchone()[0]
