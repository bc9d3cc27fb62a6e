"""Shared fixtures' helpers for the lifecycle tests: demo data, snapshots, a killable worker."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg
from psycopg import sql

from cosmic_ops import db, demo, schema
from cosmic_ops.fingerprint import pin_text_settings

from ..clock import RUN_TAGS, TODAY

SAVE_TABLES = ("celestial_bodies", "save_resources", "save_research")
LIVE_COLUMNS = ("id", "save_id", "body_type", "name", "parent_id", "mass", "radius", "position_x", "position_y",
                "position_z", "orbital_period_s", "properties", "is_destroyed", "destroyed_at", "created_at",
                "updated_at")


def load_demo(conninfo: str, seed: int = 7) -> None:
    with db.connect(conninfo) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", seed=seed, as_of=TODAY)


def materialize_month(assets, op_name: str, key: str, resources: dict, **config):
    """Materialize one month of a lifecycle asset (and any checks listed) with run config."""
    import dagster as dg

    return dg.materialize(
        assets, partition_key=key, resources=resources, instance=dg.DagsterInstance.ephemeral(), tags=RUN_TAGS,
        run_config={"ops": {op_name: {"config": config}}} if config else None,
    )


def months_with(conn: psycopg.Connection, query: str) -> list[date]:
    rows = conn.execute(query).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def destroyed_months(conn: psycopg.Connection) -> list[date]:
    return months_with(conn, "SELECT DISTINCT date_trunc('month', updated_at AT TIME ZONE 'UTC')::date "
                             "FROM celestial_bodies WHERE is_destroyed ORDER BY 1")


def inactive_save_months(conn: psycopg.Connection) -> list[date]:
    return months_with(conn, "SELECT DISTINCT date_trunc('month', updated_at AT TIME ZONE 'UTC')::date "
                             "FROM game_saves WHERE NOT is_active AND compressed_state IS NULL ORDER BY 1")


def rows_as_text(conn: psycopg.Connection, table: str, where: str = "true", params=()) -> list[str]:
    """Every row's exact text form (``fingerprint.TEXT_SETTINGS``: floats shortest-exact, UTC), sorted.

    ``where`` is a constant predicate written in the test (values go in ``params``).
    """
    pin_text_settings(conn)
    rows = conn.execute(
        sql.SQL("SELECT t::text FROM {} t WHERE {} ORDER BY 1").format(sql.Identifier(table), sql.SQL(where)), params
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def archived_as_live_text(conn: psycopg.Connection, where: str = "true", params=()) -> list[str]:
    """Archived rows without ``archived_at``, in the live table's text form, sorted."""
    pin_text_settings(conn)
    rows = conn.execute(
        sql.SQL("SELECT ROW({})::celestial_bodies::text FROM celestial_bodies_archive WHERE {} ORDER BY 1").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in LIVE_COLUMNS), sql.SQL(where)), params).fetchall()
    conn.commit()
    return [r[0] for r in rows]


class KillableWorker:
    """Runs ``work(conn)`` in a thread on its own session, so a test can terminate that session."""

    def __init__(self, conninfo: str, work):
        self.conn = db.connect(conninfo, application_name="cosmic_ops:test-worker")
        self.pid = self.conn.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)

    def _run(self, work) -> None:
        try:
            work(self.conn)
        except BaseException as exc:  # the terminated session surfaces here
            self.error = exc

    def start(self) -> "KillableWorker":
        self.thread.start()
        return self

    def kill_when(self, conninfo: str, condition: str, poll_s: float = 0.01) -> None:
        """Terminate the worker's backend as soon as ``condition`` (SQL returning a bool) holds."""
        with psycopg.connect(conninfo, autocommit=True) as watcher:
            while self.thread.is_alive() and not watcher.execute(condition).fetchone()[0]:
                time.sleep(poll_s)
            watcher.execute("SELECT pg_terminate_backend(%s)", (self.pid,))
        self.thread.join()
        self.conn.close()
