"""Disposable places to restore a backup into: a scratch database, else a scratch schema.

Both are created by us; names are random so parallel runs never meet.

A scratch database outlives a run killed before it could drop it, so each one is
marked as ours: a session of ours stays connected to it for its whole life and,
once connected, writes ``SCRATCH_MARKER`` as the database's comment. A database
named ``cosmic_scratch_*`` that carries the marker and has no session left is
therefore a killed run's leftover, and the next scratch restore drops it; a
database without the marker is someone else's and is never touched.

A scratch schema is created inside the restoring session's transaction, which is
rolled back at the end: a killed run's transaction is rolled back by the server,
so no scratch schema can be left behind.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import psycopg
from psycopg import errors, sql

from .. import db
from .tools import PgClient, PgToolFailed, run_tool, select_toc, toc_entries

SCRATCH_PREFIX = "cosmic_scratch_"
SCRATCH_MARKER = "cosmic_ops scratch restore; dropped by cosmic_ops once no session is connected"
SCRATCH_KEEPER = "cosmic_ops:scratch-keeper"


@dataclass(frozen=True)
class Scratch:
    method: str  # "scratch database" | "scratch schema"
    name: str
    conninfo: str  # where to connect to read it
    stale_dropped: tuple[str, ...] = ()  # leftovers of killed runs dropped before this one was made


def _new_name() -> str:
    return SCRATCH_PREFIX + secrets.token_hex(6)


def drop_stale_scratch_databases(conninfo: str) -> tuple[str, ...]:
    """Drop the scratch databases killed runs left: marked as ours, no session connected.

    ``DROP DATABASE`` without FORCE refuses a database someone has connected to since
    the check, so a database in use is never dropped; one we may not drop is left too.
    """
    dropped = []
    with db.connect(conninfo, autocommit=True) as admin:
        stale = admin.execute(
            """SELECT d.datname FROM pg_database d
            WHERE d.datname LIKE %s AND shobj_description(d.oid, 'pg_database') = %s
              AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.datid = d.oid)
            ORDER BY 1""",
            (SCRATCH_PREFIX.replace("_", "\\_") + "%", SCRATCH_MARKER)).fetchall()
        for (name,) in stale:
            try:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            except (errors.ObjectInUse, errors.InsufficientPrivilege):
                continue
            dropped.append(name)
    return tuple(dropped)


@contextlib.contextmanager
def scratch_database(conninfo: str) -> Iterator[Scratch]:
    """A new empty database on the same server, dropped on exit (stale ones first).

    Raises ``errors.InsufficientPrivilege`` when the role may not create databases.
    """
    stale = drop_stale_scratch_databases(conninfo)
    name = _new_name()
    scratch_conninfo = db.create_database(conninfo, name)
    try:
        # Marked only once our keeper session is connected: marked and unconnected means abandoned.
        with db.connect(scratch_conninfo, autocommit=True, application_name=SCRATCH_KEEPER) as keeper:
            keeper.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(SCRATCH_MARKER)))
            yield Scratch("scratch database", name, scratch_conninfo, stale)
    finally:
        db.drop_database(conninfo, name)


@contextlib.contextmanager
def scratch_schema(conn: psycopg.Connection, name: str) -> Iterator[str]:
    """Schema ``name`` made in a transaction of its own on ``conn``, rolled back (with all in it)
    on exit, whatever happens: a killed run's transaction is rolled back by the server, so no
    scratch schema is ever left behind."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        yield name


@contextlib.contextmanager
def any_scratch(conninfo: str, prefer: str = "auto") -> Iterator[tuple[Scratch, Optional[str]]]:
    """A scratch database if we may create one, else the name of a scratch schema for
    ``scratch_schema`` to make in the restoring session; the second value says why the
    fallback was used (``None`` for a scratch database)."""
    with contextlib.ExitStack() as stack:
        scratch: Optional[Scratch] = None
        reason = "scratch schema requested" if prefer == "schema" else None
        if prefer != "schema":
            try:
                scratch = stack.enter_context(scratch_database(conninfo))
            except errors.InsufficientPrivilege as exc:
                if prefer == "database":
                    raise
                reason = f"cannot CREATE DATABASE ({str(exc).strip()}); used a scratch schema instead"
        if scratch is None:
            scratch = Scratch("scratch schema", _new_name(), conninfo)
        yield scratch, reason


def restore_toc(
    client: PgClient,
    archive: Path,
    conninfo: str,
    entries: Sequence[str],
    *,
    what: str,
    jobs: int = 1,
) -> None:
    """``pg_restore`` of exactly ``entries`` (from ``pg_restore --list``), stopping at the
    first error: a restore that half-works is a failed restore."""
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as listing:
        listing.write("\n".join(entries) + "\n")
    try:
        args = ["--exit-on-error", "--no-owner", "--no-privileges", f"--use-list={listing.name}"]
        if jobs > 1:
            args.append(f"--jobs={jobs}")
        run_tool(client, "pg_restore", args + [str(archive)], conninfo=conninfo, what=what)
    finally:
        Path(listing.name).unlink(missing_ok=True)


def stream_table_data(
    client: PgClient,
    archive: Path,
    conn: psycopg.Connection,
    target: sql.Composable,
    columns: Sequence[str],
    *,
    what: str,
) -> None:
    """Copy the one TABLE DATA entry of ``archive`` into ``target`` (in the caller's
    transaction): pg_restore renders it as a COPY block, whose payload we feed to
    ``COPY target (columns) FROM STDIN`` unchanged."""
    data_entries = select_toc(toc_entries(client, archive), ("TABLE DATA",))
    if len(data_entries) != 1:
        raise PgToolFailed(f"{what}: expected one TABLE DATA entry in {archive.name}, found {len(data_entries)}")
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as listing:
        listing.write(data_entries[0] + "\n")
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    proc = run_tool(client, "pg_restore", [f"--use-list={listing.name}", "--file=-", str(archive)],
                    what=what, stdout=subprocess.PIPE)
    try:
        in_copy = finished = False
        with conn.cursor().copy(copy_sql) as copy:
            for line in proc.stdout:
                if not in_copy:
                    in_copy = line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;")
                    continue
                if line in (b"\\.\n", b"\\.\r\n"):
                    finished = True
                    break
                copy.write(line)
        proc.stdout.read()
        stderr = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Path(listing.name).unlink(missing_ok=True)
    if code != 0 or not finished:
        raise PgToolFailed(f"{what}: pg_restore exited with {code} before the end of the data: {stderr[-2000:]}")
