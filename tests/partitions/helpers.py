"""Catalog snapshots and row fingerprints shared by the partition tests."""

from __future__ import annotations

from psycopg import sql


def tree_snapshot(conn, parent: str = "event_logs"):
    """Every relation of the tree (tables and indexes) with the xmin of its pg_class
    row and its reloptions, plus constraints: any DDL changes it."""
    rows = conn.execute(
        """
        SELECT c.relname, c.xmin::text, c.reloptions::text, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'i', 'I')
        UNION ALL
        SELECT co.conname, co.xmin::text, NULL, NULL FROM pg_constraint co
        JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = 'public'
        ORDER BY 1
        """
    ).fetchall()
    conn.commit()
    return rows


def row_fingerprint(conn, table: str = "event_logs"):
    """(count, sorted ids) of the whole tree: equality means nothing lost or doubled."""
    count, ids = conn.execute(
        sql.SQL("SELECT count(*), array_agg(id ORDER BY id) FROM {}").format(sql.Identifier(table))
    ).fetchone()
    conn.commit()
    return count, ids


def rows_per_partition(conn, table: str = "event_logs"):
    rows = conn.execute(
        sql.SQL("SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
            sql.Identifier(table))
    ).fetchall()
    conn.commit()
    return dict(rows)


def insert_events(conn, *timestamps: str) -> None:
    for ts in timestamps:
        conn.execute(
            "INSERT INTO event_logs (server_timestamp, player_id, event_type) VALUES (%s::timestamptz, 1, 'test')",
            (ts,),
        )
    conn.commit()
