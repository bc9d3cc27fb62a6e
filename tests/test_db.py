"""Connections, DDL under lock_timeout with retries, and the maintenance advisory lock."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from cosmic_ops import db


def test_redact_hides_password_and_keeps_the_rest():
    shown = db.redact("postgresql://ops:s3cr3t@db.example.invalid:6543/game")
    assert "s3cr3t" not in shown
    assert "db.example.invalid" in shown and "6543" in shown and "game" in shown


def test_sqlalchemy_url_uses_psycopg2_scheme_for_tcp_and_socket():
    assert db.sqlalchemy_url("host=127.0.0.1 port=5432 user=postgres dbname=x", "dag") == \
        "postgresql+psycopg2://postgres@127.0.0.1:5432/dag"
    assert db.sqlalchemy_url("host=/tmp/sock user=postgres dbname=x", "dag") == \
        "postgresql+psycopg2://postgres@/dag?host=%2Ftmp%2Fsock"


def test_connect_error_never_shows_the_password(server_conninfo):
    bad = db.with_database(server_conninfo, "no_such_database_here")
    bad = psycopg.conninfo.make_conninfo(bad, password="hunter2-secret")
    with pytest.raises(psycopg.OperationalError) as caught:
        db.connect(bad)
    assert "hunter2-secret" not in str(caught.value)
    assert "no_such_database_here" in str(caught.value)


def test_session_settings_are_applied(fresh_database):
    with db.connect(fresh_database, application_name="cosmic_ops:test", lock_timeout="1234ms") as conn:
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "1234ms"
        assert conn.execute("SHOW application_name").fetchone()[0] == "cosmic_ops:test"


def test_run_ddl_retries_then_fails_cleanly_when_lock_is_held(fresh_database):
    with db.connect(fresh_database) as setup:
        setup.execute("CREATE TABLE t (a int)")
    holder = db.connect(fresh_database, autocommit=False)  # holds its lock until it rolls back
    holder.execute("LOCK TABLE t IN ACCESS SHARE MODE")  # blocks ALTER TABLE (ACCESS EXCLUSIVE)
    slept = []
    try:
        with db.connect(fresh_database) as conn:
            policy = db.LockRetryPolicy(lock_timeout_ms=50, attempts=3, backoff_s=0.01)
            with pytest.raises(db.LockRetriesExhausted, match="after 3 attempts"):
                db.run_locked(
                    conn,
                    lambda c: (c.execute("CREATE TABLE side_effect (x int)"),
                               c.execute("ALTER TABLE t ADD COLUMN b int")),
                    what="add column", policy=policy, sleep=slept.append,
                )
            assert len(slept) == 2
            # Nothing half-done: the statement before the blocked one was rolled back too.
            assert conn.execute("SELECT to_regclass('side_effect')").fetchone()[0] is None
            holder.rollback()
            outcome = db.run_ddl(conn, [sql.SQL("ALTER TABLE t ADD COLUMN b int")], what="add column",
                                 policy=policy)
            assert outcome.attempts == 1
            cols = conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                                "AND attnum > 0").fetchone()[0]
            assert cols == 2
    finally:
        holder.close()


def _lock_test_tables(conninfo):
    with db.connect(conninfo) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS event_logs (at timestamptz) PARTITION BY RANGE (at)")
        conn.execute("CREATE TABLE IF NOT EXISTS celestial_bodies (id int)")


def test_maintenance_lock_reports_the_holder(fresh_database):
    _lock_test_tables(fresh_database)
    first = db.connect(fresh_database, application_name="cosmic_ops:first-run")
    second = db.connect(fresh_database, application_name="cosmic_ops:second-run")
    try:
        with db.maintenance_lock(first, "event_logs"):
            with pytest.raises(db.MaintenanceLockBusy) as caught:
                with db.maintenance_lock(second, "event_logs"):
                    pytest.fail("second holder must not get the lock")
            message = str(caught.value)
            assert "cosmic_ops:first-run" in message and f"pid {first.info.backend_pid}" in message
            assert "did not do its work" in message
            # Another scope is independent.
            with db.maintenance_lock(second, "celestial_bodies"):
                pass
        with db.maintenance_lock(second, "event_logs"):
            held = second.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            ).fetchone()[0]
            assert held == 1
    finally:
        first.close()
        second.close()


def test_compressed_wal_is_set_for_the_session_and_restored(fresh_database):
    with db.connect(fresh_database) as conn:
        before = conn.execute("SHOW wal_compression").fetchone()[0]
        with db.compressed_wal(conn) as method:
            assert method in ("lz4", "pglz")  # the test role is a superuser
            assert conn.execute("SHOW wal_compression").fetchone()[0] == method
        assert conn.execute("SHOW wal_compression").fetchone()[0] == before


def test_sqlalchemy_url_round_trips_a_password_with_url_characters():
    from sqlalchemy.engine import make_url

    url = make_url(db.sqlalchemy_url("host=/tmp/sock port=5433 user=u password=p@ss:w/d dbname=x sslmode=require",
                                     "dag"))
    assert (url.username, url.password, url.database) == ("u", "p@ss:w/d", "dag")
    assert dict(url.query) == {"host": "/tmp/sock", "port": "5433", "sslmode": "require"}


def test_sessions_read_dates_whatever_the_database_datestyle(fresh_database):
    """psycopg parses dates in ISO only: a database set to another DateStyle must not break our reads."""
    from datetime import date, datetime, timezone

    with db.connect(fresh_database) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET DateStyle = 'SQL, DMY'").format(sql.Identifier(conn.info.dbname)))
    with psycopg.connect(fresh_database) as plain:
        assert plain.execute("SHOW DateStyle").fetchone()[0] == "SQL, DMY"
    with db.connect(fresh_database) as conn:
        read = conn.execute("SELECT date '2028-02-29', timestamptz '2027-01-01 00:02:00+00'").fetchone()
    assert read == (date(2028, 2, 29), datetime(2027, 1, 1, 0, 2, tzinfo=timezone.utc))
