"""A verification killed mid-restore: what it leaves, and what the next verification cleans up.

The verifications run in a child process that the test kills with SIGKILL, as an
operator or the OOM killer would.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import time
from datetime import date

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from cosmic_ops import db
from cosmic_ops.backups import PgClient, backup_month, verify_month_backup
from cosmic_ops.backups.scratch import SCRATCH_MARKER, SCRATCH_PREFIX, drop_stale_scratch_databases

from .helpers import make_month, store_and_client

pytestmark = pytest.mark.slow  # kills verifications running in subprocesses

MONTH = date(2025, 4, 1)
POLL_LIMIT_S = 30  # a failure bound only: every wait polls its condition

_VERIFY = """
import sys
from pathlib import Path
from cosmic_ops.backups import BackupStore, PgClient, verify_month_backup
conninfo, generation, bin_dir, scratch = sys.argv[1:]
store = BackupStore(Path(generation).parents[3])
client = PgClient(bin_dir=Path(bin_dir), major=99, version="99.0")
verify_month_backup(store, store.load(Path(generation)), conninfo=conninfo, client=client, scratch=scratch)
"""


@pytest.fixture(scope="module")
def seeded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        make_month(conn, MONTH, 300)
    return bootstrapped_database


def _poll(condition, what: str) -> None:
    deadline = time.monotonic() + POLL_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def _fake_bin(tmp_path, real: PgClient):
    """pg_restore that lists archives for real, but whose restore only records its arguments
    and then waits for its parent to die (a restore still running when the run is killed)."""
    fake = tmp_path / "slowbin"
    fake.mkdir()
    started = tmp_path / "restore-started"
    os.symlink(real.pg_dump, fake / "pg_dump")
    script = fake / "pg_restore"
    script.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do [ \"$a\" = --list ] && exec {real.pg_restore} \"$@\"; done\n"
        f"printf '%s\\n' \"$@\" > {started}.tmp && mv {started}.tmp {started}\n"
        "while kill -0 $PPID 2>/dev/null; do sleep 0.05; done\n"
        "exit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return fake, started


def _databases(conninfo: str, *names: str) -> set[str]:
    with psycopg.connect(conninfo) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),))}


def _sessions_on(conninfo: str, name: str) -> int:
    with psycopg.connect(conninfo) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]


def _create(conninfo: str, name: str, comment: str | None) -> None:
    with db.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if comment is not None:
            admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def test_a_killed_verification_leaves_a_scratch_database_that_the_next_one_drops(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=MONTH).generation
    fake, started = _fake_bin(tmp_path, client)
    # Someone else's database with our prefix, and a marked one a live verification is using.
    foreign = SCRATCH_PREFIX + "foreign" + secrets.token_hex(3)
    in_use = SCRATCH_PREFIX + "inuse" + secrets.token_hex(3)
    _create(seeded, foreign, None)
    _create(seeded, in_use, SCRATCH_MARKER)
    user = db.connect(db.with_database(seeded, in_use))
    killed = None
    run = subprocess.Popen([sys.executable, "-c", _VERIFY, seeded, str(generation.path), str(fake), "auto"])
    try:
        _poll(lambda: started.exists() or run.poll() is not None, "the scratch restore to start")
        assert run.poll() is None, "the verification ended before its restore started"
        args = started.read_text().splitlines()
        killed = conninfo_to_dict(next(a for a in args if a.startswith("--dbname="))[len("--dbname="):])["dbname"]
        assert killed.startswith(SCRATCH_PREFIX)
        run.kill()
        run.wait()
        _poll(lambda: _sessions_on(seeded, killed) == 0, "the killed run's sessions to end")

        verification = verify_month_backup(store, generation, conninfo=seeded, client=client)
        assert verification.ok, verification.error
        assert _databases(seeded, killed, foreign, in_use) == {foreign, in_use}
    finally:
        run.kill()  # its fake restore then ends too
        run.wait()
        user.close()
        for name in (foreign, in_use, killed):
            if name:
                db.drop_database(seeded, name)


def test_only_marked_scratch_databases_without_sessions_are_dropped(seeded):
    stale, unmarked, other_comment, connected = (SCRATCH_PREFIX + label + secrets.token_hex(3)
                                                 for label in ("stale", "unmarked", "comment", "connected"))
    lookalike = "not_" + SCRATCH_PREFIX + secrets.token_hex(3)
    _create(seeded, stale, SCRATCH_MARKER)
    _create(seeded, unmarked, None)
    _create(seeded, other_comment, "cosmic_ops scratch restore of someone else")
    _create(seeded, connected, SCRATCH_MARKER)
    _create(seeded, lookalike, SCRATCH_MARKER)
    user = db.connect(db.with_database(seeded, connected))
    try:
        dropped = drop_stale_scratch_databases(seeded)
        assert stale in dropped
        assert _databases(seeded, stale, unmarked, other_comment, connected, lookalike) == {
            unmarked, other_comment, connected, lookalike}
    finally:
        user.close()
        for name in (stale, unmarked, other_comment, connected, lookalike):
            db.drop_database(seeded, name)


def test_a_verification_killed_mid_restore_in_a_scratch_schema_leaves_no_schema(seeded, tmp_path, request):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=MONTH).generation
    scratch_schemas = "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, %s)"
    with db.connect(seeded, autocommit=False) as holder, db.connect(seeded, autocommit=True) as watcher:
        # Hold the parent table: the restore's CREATE TABLE (LIKE ...) waits there, mid-run.
        holder.execute("LOCK TABLE event_logs IN ACCESS EXCLUSIVE MODE")
        run = subprocess.Popen([sys.executable, "-c", _VERIFY, seeded, str(generation.path), str(client.bin_dir),
                                "schema"])
        request.addfinalizer(run.kill)
        waiting = ("SELECT pid FROM pg_locks WHERE relation = 'event_logs'::regclass AND NOT granted "
                   "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")

        _poll(lambda: watcher.execute(waiting).fetchone() or run.poll() is not None, "the restore to wait")
        assert run.poll() is None, "the verification ended before it reached the restore"
        pid = watcher.execute(waiting).fetchone()[0]
        run.kill()
        run.wait()
        holder.rollback()
        _poll(lambda: not watcher.execute("SELECT FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
              "the killed run's session to end")
        assert watcher.execute(scratch_schemas, (SCRATCH_PREFIX,)).fetchone()[0] == 0
