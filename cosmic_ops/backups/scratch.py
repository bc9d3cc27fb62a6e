"""Disposable places to restore a backup into: a scratch database, else a scratch schema.

Both are created and dropped by us; names are random so parallel runs never meet.
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


@dataclass(frozen=True)
class Scratch:
    method: str  # "scratch database" | "scratch schema"
    name: str
    conninfo: str  # where to connect to read it


@contextlib.contextmanager
def scratch_database(conninfo: str) -> Iterator[Scratch]:
    """A new empty database on the same server, dropped on exit.

    Raises ``errors.InsufficientPrivilege`` when the role may not create databases.
    """
    with db.scratch_database(conninfo, SCRATCH_PREFIX.rstrip("_")) as scratch:
        yield Scratch("scratch database", psycopg.conninfo.conninfo_to_dict(scratch)["dbname"], scratch)


@contextlib.contextmanager
def scratch_schema(conninfo: str) -> Iterator[Scratch]:
    """A new schema in the managed database itself, dropped (CASCADE) on exit."""
    name = SCRATCH_PREFIX + secrets.token_hex(6)
    with db.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield Scratch("scratch schema", name, conninfo)
    finally:
        with db.connect(conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextlib.contextmanager
def any_scratch(conninfo: str, prefer: str = "auto") -> Iterator[tuple[Scratch, Optional[str]]]:
    """A scratch database if we may create one, else a scratch schema; the second value
    says why the fallback was used (``None`` for a scratch database)."""
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
            scratch = stack.enter_context(scratch_schema(conninfo))
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
