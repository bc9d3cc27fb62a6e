"""``pg_dump -Fc`` of one month's partition into the store, with its manifest.

The row count and checksum in the manifest are taken in the very snapshot pg_dump
uses (``pg_export_snapshot`` + ``--snapshot``), so they describe the dump exactly
even while the game keeps writing.

A backup only reads the table, so it does not take the table's maintenance lock scope
and may run beside the jobs that change it; it holds the lock of its folder in the
store instead (two backups of one month must not clear each other's staging). A month
without a partition whose retirement journal says it is retired, or being retired, with
a verified backup is not an error: the run reports that backup and changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

import psycopg

from .. import db
from ..partitions.catalog import partition_for_month
from ..timeutil import month_start
from ..fingerprint import fingerprint, table_columns
from .policy import checked_keep_generations
from .restore import RestoreRefused, newest_proven_generation
from .store import BackupStore, Generation, Manifest, sha256_of, size_of, utc_now
from .tools import PgClient, RunningTool


class NoPartitionToBackUp(LookupError):
    """The month has no attached partition; nothing was written."""


BACKED_UP = "backed-up"
ALREADY_RETIRED = "already-retired"  # journal "done": the backup it relied on is reported
BEING_RETIRED = "being-retired"  # journal "detaching"/"detached" with a verified backup


@dataclass(frozen=True)
class BackupResult:
    generation: Generation
    pruned: tuple[str, ...]
    stale_staging_removed: tuple[str, ...]
    status: str = BACKED_UP

    @property
    def mb_per_s(self) -> float:
        m = self.generation.manifest
        return (m.bytes / 1e6) / m.seconds if m.seconds else 0.0


def _iso(bound) -> str | None:
    return bound.isoformat() if bound is not None else None


def pattern(schema: str, name: str) -> str:
    """An exact pg_dump ``-t`` pattern: inside double quotes nothing is a wildcard."""
    def quote(part: str) -> str:
        return '"' + part.replace('"', '""') + '"'

    return f"{quote(schema)}.{quote(name)}"


def _default_sequences(conn: psycopg.Connection, table_oid: int) -> list[tuple[str, str]]:
    """Sequences the table's column defaults call: dumped alongside so the table's
    CREATE statement restores on its own."""
    return conn.execute(
        """
        SELECT DISTINCT n.nspname, s.relname
        FROM pg_attrdef d
        JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                          AND dep.refclassid = 'pg_class'::regclass
        JOIN pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
        JOIN pg_namespace n ON n.oid = s.relnamespace
        WHERE d.adrelid = %s
        ORDER BY 1, 2
        """,
        (table_oid,),
    ).fetchall()


def _retired_month(store: BackupStore, database: str, parent: str, month: date,
                   stale: tuple[str, ...]) -> BackupResult:
    """No partition: fine if the journal says the month is retired or being retired and a
    verified, intact backup of it exists (a retirement job's rerun); else nothing to back up."""
    journal = store.read_retirement(database, parent, month) or {}
    state = journal.get("state")
    try:
        proof = newest_proven_generation(store, database, parent, month)
    except RestoreRefused:
        proof = None
    if state in ("done", "detaching", "detached") and proof is not None:
        return BackupResult(proof, (), stale, ALREADY_RETIRED if state == "done" else BEING_RETIRED)
    why = (f"; its retirement journal says {state!r} but no verified, intact backup of it is left" if state
           else "")
    raise NoPartitionToBackUp(f"{parent} has no partition for {month:%Y-%m}{why}; nothing was backed up")


def backup_month(
    conn: psycopg.Connection,
    store: BackupStore,
    client: PgClient,
    *,
    conninfo: str,
    parent: str = "event_logs",
    month: date,
    keep_generations: int = 3,
) -> BackupResult:
    """Dump month ``month`` of ``parent`` as a new generation; prune old generations."""
    checked_keep_generations(keep_generations)
    month = month_start(month)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("backup_month needs an idle connection (it opens its own snapshot)")
    database = conn.info.dbname
    folder = store.month_dir(database, parent, month)
    with db.hold_scopes(conn, [db.store_lock_scope(conn, str(folder.relative_to(store.root)))]):
        stale = store.remove_stale_staging(folder)
        partition = partition_for_month(conn, parent, month)
        conn.commit()
        if partition is None:
            return _retired_month(store, database, parent, month, tuple(stale))
        started = time.monotonic()
        with store.staging(folder) as (staging, generation):
            file_name = f"{partition.name}.dump" if partition.name.isidentifier() else "partition.dump"
            target = staging / file_name
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                tables = [pattern(partition.schema, partition.name)]
                tables += [pattern(s, n) for s, n in _default_sequences(conn, partition.oid)]
                args = ["--format=custom", "--no-password", "--strict-names", f"--snapshot={snapshot}",
                        f"--file={target}"]
                for table in tables:
                    args += ["--table", table]
                # pg_dump and our count read the same snapshot at the same time
                dump = RunningTool(client, "pg_dump", args, conninfo=conninfo,
                                   what=f"backup of {parent} {month:%Y-%m}")
                try:
                    columns = table_columns(conn, partition.schema, partition.name)
                    counted = fingerprint(conn, partition.schema, partition.name, columns)
                    reloptions = conn.execute(
                        "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = %s", (partition.oid,)
                    ).fetchone()[0]
                    server_version = conn.execute("SHOW server_version").fetchone()[0]
                except BaseException:
                    dump.kill()
                    raise
                dump.wait()
            seconds = time.monotonic() - started
            manifest = Manifest(
                kind="month", database=database, generation=generation, file=file_name,
                bytes=size_of(target), sha256=sha256_of(target), created_at=utc_now().isoformat(),
                seconds=round(seconds, 3), server_version=server_version,
                server_version_num=conn.info.server_version, client=client.describe(),
                table=parent, partition=f"{partition.schema}.{partition.name}",
                partition_schema=partition.schema, partition_name=partition.name,
                month=month.isoformat(), lower_bound=_iso(partition.lower), upper_bound=_iso(partition.upper),
                rows=counted.rows, row_checksum=counted.checksum,
                columns=columns, reloptions=tuple(reloptions),
            )
            store.write_manifest(staging, manifest)
        generations = store.month_generations(database, parent, month)
        pruned = store.prune(generations, keep_generations)
    return BackupResult(
        generation=next(g for g in generations if g.name == generation),
        pruned=tuple(pruned), stale_staging_removed=tuple(stale),
    )
