"""Waiting, in a test, until another session is blocked on a lock (a condition polled, not a sleep)."""

from __future__ import annotations

import time
from typing import Optional

import psycopg


def wait_for_lock_wait(conninfo: str, *, application_name: Optional[str] = None, pid: Optional[int] = None,
                       limit_s: float, what: str = "the session") -> int:
    """The pid of the session named by ``application_name`` (or ``pid``) once it waits on a
    lock; ``AssertionError`` naming ``what`` if it has not within ``limit_s`` (which only keeps
    a broken test from hanging)."""
    if (application_name is None) == (pid is None):
        raise ValueError("name the session by application_name or by pid")
    column, value = ("application_name", application_name) if pid is None else ("pid", pid)
    deadline = time.monotonic() + limit_s
    with psycopg.connect(conninfo, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(f"SELECT pid FROM pg_stat_activity WHERE {column} = %s "
                                  "AND wait_event_type = 'Lock' LIMIT 1", (value,)).fetchone()
            if row:
                return row[0]
            time.sleep(0.01)
    raise AssertionError(f"{what} never waited on a lock")
