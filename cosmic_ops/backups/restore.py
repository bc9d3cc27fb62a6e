"""Restore one month from its newest verified backup: back as the partition, or into a named table.

The rows are streamed from the archive into a new table and counted (rows and
checksum against the manifest) in the same transaction that creates it, so a
restore either lands whole and proven or not at all. Re-attaching adds a CHECK
matching the bounds first, so ATTACH does not scan the table under its lock. A
run killed after the copy finds the proven table and only attaches it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Optional

import psycopg
from psycopg import sql

from .. import db, recovery
from ..partitions import attach_month_table, policy_for
from ..partitions.catalog import partition_for_month
from ..timeutil import month_start
from ..fingerprint import fingerprint
from .scratch import stream_table_data
from .store import BackupStore, Generation
from .tools import PgClient
from .verify import qualified_name


class RestoreRefused(RuntimeError):
    """The restore would overwrite or duplicate something; nothing was changed."""


@dataclass(frozen=True)
class RestoreResult:
    schema: str
    table: str
    attached: bool
    rows: int
    row_checksum: str
    generation: str
    resumed: bool
    seconds: float
    recovered: tuple[str, ...] = ()  # what taking the table repaired first


def newest_proven_generation(store: BackupStore, database: str, parent: str, month: date) -> Generation:
    """The newest generation that was verified by a restore and whose file is still intact."""
    generations = store.month_generations(database, parent, month)
    for generation in generations:
        if generation.verified and generation.file_intact():
            return generation
    raise RestoreRefused(
        f"no verified, intact backup of {parent} {month:%Y-%m} in {store.root} "
        f"({len(generations)} generation(s) found)"
    )


def _relation(conn: psycopg.Connection, schema: str, name: str) -> Optional[tuple[int, bool]]:
    return conn.execute(
        "SELECT c.oid, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()


def _record(store: BackupStore, database: str, parent: str, month: date, generation: Generation, table: str,
            attached: bool, rows: int, resumed: bool) -> None:
    """The restore, in the month's record in the store (the ledger reads it), with the retirement
    it undid as the journal said then: a later retirement of the month overwrites the journal."""
    journal = store.read_retirement(database, parent, month)
    store.record_restore(database, parent, month, {
        "generation": generation.name, "sha256": generation.manifest.sha256, "rows": rows, "table": table,
        "attached": attached, "resumed": resumed,
        "retirement": {k: journal.get(k) for k in ("state", "updated_at", "action", "rows", "backup_generation",
                                                   "archived_as")} if journal else None,
    })


def restore_month(
    conn: psycopg.Connection,
    store: BackupStore,
    client: PgClient,
    *,
    parent: str = "event_logs",
    month: date,
    table: Optional[str] = None,
    schema: Optional[str] = None,
    policy: db.LockRetryPolicy = db.LockRetryPolicy(),
) -> RestoreResult:
    """``table=None``: restore as the month's partition (re-attached). Otherwise into
    ``schema.table`` (schema defaults to the partition's), left standalone. Either way it
    holds ``parent``'s maintenance lock scope: a new table of the month, or the month
    itself, must not appear while another job changes the table."""
    started = time.monotonic()
    month = month_start(month)
    with recovery.table_maintenance(conn, parent, store=store, retry=policy) as recovered:
        generation = newest_proven_generation(store, conn.info.dbname, parent, month)
        m = generation.manifest
        as_partition = table is None
        target_schema = schema or m.partition_schema
        target_name = m.partition_name if as_partition else table
        if as_partition and partition_for_month(conn, parent, month) is not None:
            conn.rollback()
            raise RestoreRefused(f"{parent} already has a partition for {month:%Y-%m}; nothing was changed")
        existing = _relation(conn, target_schema, target_name)
        resumed = existing is not None
        if existing is not None:
            if existing[1]:
                conn.rollback()
                raise RestoreRefused(f"{target_schema}.{target_name} is a partition already; nothing was changed")
            with conn.transaction():
                found = fingerprint(conn, target_schema, target_name, m.columns)
            if not found.matches(m.rows, m.row_checksum):
                raise RestoreRefused(
                    f"{target_schema}.{target_name} exists with other rows ({found.rows}) than backup "
                    f"{generation.name} ({m.rows}); choose another table name. Nothing was changed")
            counted = found
        else:
            target = sql.Identifier(target_schema, target_name)
            like = qualified_name(conn, parent)
            conn.rollback()
            proof = {}

            def create_copy_and_count(c: psycopg.Connection) -> None:
                c.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING STORAGE "
                                  "INCLUDING COMMENTS)").format(target, like))
                for option in m.reloptions:
                    key, _, value = option.partition("=")
                    c.execute(sql.SQL("ALTER TABLE {} SET ({} = {})").format(
                        target, sql.Identifier(key), sql.Literal(value)))
                stream_table_data(client, generation.file, c, target, m.columns,
                                  what=f"restore of {parent} {month:%Y-%m}")
                proof["counted"] = counted_now = fingerprint(c, target_schema, target_name, m.columns)
                if not counted_now.matches(m.rows, m.row_checksum):
                    raise RestoreRefused(
                        f"restored {counted_now.rows} rows but backup {generation.name} holds {m.rows}; "
                        "rolled back, nothing was changed")

            db.run_locked(conn, create_copy_and_count, what=f"restore {target_schema}.{target_name}",
                          policy=policy)
            counted = proof["counted"]
        if as_partition:
            attach_month_table(conn, policy_for(conn, parent), target_schema, target_name, month, policy)
        elif not conn.autocommit:
            conn.commit()
        _record(store, conn.info.dbname, parent, month, generation, f"{target_schema}.{target_name}",
                as_partition, counted.rows, resumed)
    return RestoreResult(
        schema=target_schema, table=target_name, attached=as_partition, rows=counted.rows,
        row_checksum=counted.checksum, generation=generation.name, resumed=resumed,
        seconds=round(time.monotonic() - started, 3),
        recovered=tuple(recovered.lines),
    )
