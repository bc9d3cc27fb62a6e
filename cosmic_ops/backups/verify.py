"""Verification of a month backup: restore it somewhere disposable and count it.

``pg_restore --list`` only proves the archive's table of contents is readable; a
backup counts as verified only when its rows were restored and their count and
checksum equal the manifest's. The result is written next to the backup so that
retention can read it (and re-checks the file's sha256 itself).
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from .. import db
from ..fingerprint import Fingerprint, fingerprint
from .scratch import Scratch, any_scratch, restore_toc, scratch_schema, stream_table_data
from .store import BackupStore, Generation, Verification, sha256_of, utc_now
from .tools import PgClient, PgToolFailed, select_toc, toc_entries

# What a lone partition needs to stand as a table: itself, its rows and the
# sequences its defaults call. ATTACH entries need the parent and are left out.
MONTH_RESTORE_ENTRIES = ("SEQUENCE", "SEQUENCE SET", "TABLE", "TABLE DATA")


def qualified_name(conn: psycopg.Connection, relation: str) -> sql.Identifier:
    """``relation`` (regclass text) as a schema-qualified identifier, resolved by the catalog."""
    schema, name = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s::regclass",
        (relation,),
    ).fetchone()
    return sql.Identifier(schema, name)


def _restore_and_count(generation: Generation, conninfo: str, client: PgClient, prefer: str,
                       entries: list[str]) -> tuple[Fingerprint, Scratch, str | None]:
    m = generation.manifest
    what = f"verification of {generation.name}"
    with any_scratch(conninfo, prefer) as (scratch, reason):
        if scratch.method == "scratch database":
            restore_toc(client, generation.file, scratch.conninfo, entries, what=what)
            with db.connect(scratch.conninfo) as conn:
                counted = fingerprint(conn, m.partition_schema, m.partition_name, m.columns)
        else:
            with db.connect(conninfo) as conn, scratch_schema(conn, scratch.name):
                target = sql.Identifier(scratch.name, m.partition_name)
                conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target, qualified_name(conn, m.table)))
                stream_table_data(client, generation.file, conn, target, m.columns, what=what)
                counted = fingerprint(conn, scratch.name, m.partition_name, m.columns)
        return counted, scratch, reason


def verify_month_backup(
    store: BackupStore,
    generation: Generation,
    *,
    conninfo: str,
    client: PgClient,
    scratch: str = "auto",
) -> Verification:
    """Restore ``generation`` into a scratch database (or schema) and compare rows and
    checksum with its manifest; record and return the outcome. Never raises for a bad
    backup: a failed verification is a result."""
    started = time.monotonic()
    m = generation.manifest
    outcome: dict = dict(method="not restored", scratch=None, sha256_ok=False, toc_entries=0)
    try:
        if not generation.file.exists():
            raise FileNotFoundError(f"backup file {generation.file} is missing")
        outcome["sha256_ok"] = sha256_of(generation.file) == m.sha256
        if not outcome["sha256_ok"]:
            raise ValueError("file sha256 differs from the manifest: the backup is corrupt or was modified")
        entries = toc_entries(client, generation.file)
        outcome["toc_entries"] = len(entries)
        wanted = select_toc(entries, MONTH_RESTORE_ENTRIES)
        if not select_toc(wanted, ("TABLE DATA",)):
            raise ValueError("the archive has no TABLE DATA entry: nothing to restore")
        counted, used, reason = _restore_and_count(generation, conninfo, client, scratch, wanted)
        outcome.update(method=used.method, scratch=used.name, rows=counted.rows, row_checksum=counted.checksum,
                       stale_scratch_dropped=list(used.stale_dropped))
        outcome["note"] = reason
        if counted.matches(m.rows, m.row_checksum):
            outcome["ok"] = True
        else:
            outcome["ok"] = False
            outcome["mismatches"] = {
                "rows": {"manifest": m.rows, "restored": counted.rows},
                "row_checksum": {"manifest": m.row_checksum, "restored": counted.checksum},
            }
            outcome["error"] = (f"restored {counted.rows} rows (checksum {counted.checksum}); "
                                f"manifest says {m.rows} ({m.row_checksum})")
    except (PgToolFailed, psycopg.Error, OSError, ValueError, LookupError) as exc:
        outcome["ok"] = False
        outcome["error"] = f"{exc.__class__.__name__}: {str(exc).strip()}"[:2000]
    verification = Verification(checked_at=utc_now().isoformat(), seconds=round(time.monotonic() - started, 3),
                                **outcome)
    store.record_verification(generation, verification)
    return verification
