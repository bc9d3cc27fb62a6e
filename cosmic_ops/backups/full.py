"""Full backup: ``pg_dump -Fd -j N`` of the whole database, verified by a scratch restore.

Per-table row counts go into the manifest from the snapshot the dump used; the
verification restores the directory into a scratch database and counts again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .. import db
from .scratch import restore_toc, scratch_database
from .policy import checked_keep_generations
from .store import BackupStore, Generation, Manifest, Verification, sha256_of, size_of, utc_now
from .tools import PgClient, PgToolFailed, RunningTool, toc_entries

DUMP_DIR = "dump"
_LEAF_TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_temp%' AND n.nspname NOT LIKE 'pg\\_toast%'
ORDER BY 1, 2
"""


def count_tables(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every ordinary table (leaf partitions, not their parents: no double count)."""
    counts = {}
    for schema, name in conn.execute(_LEAF_TABLES_SQL).fetchall():
        counts[f"{schema}.{name}"] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()[0]
    return counts


@dataclass(frozen=True)
class FullBackupResult:
    generation: Generation
    pruned: tuple[str, ...]

    @property
    def mb_per_s(self) -> float:
        m = self.generation.manifest
        return (m.bytes / 1e6) / m.seconds if m.seconds else 0.0


def full_backup(
    conn: psycopg.Connection,
    store: BackupStore,
    client: PgClient,
    *,
    conninfo: str,
    jobs: int = 2,
    keep_generations: int = 3,
) -> FullBackupResult:
    checked_keep_generations(keep_generations)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    database = conn.info.dbname
    folder = store.full_dir(database)
    # Reads only: no table's maintenance lock, just the lock of its folder in the store.
    with db.hold_scopes(conn, [db.store_lock_scope(conn, str(folder.relative_to(store.root)))]):
        store.remove_stale_staging(folder)
        started = time.monotonic()
        with store.staging(folder) as (staging, generation):
            target = staging / DUMP_DIR
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                # pg_dump and our counts read the same snapshot at the same time
                dump = RunningTool(client, "pg_dump", ["--format=directory", f"--jobs={jobs}", "--no-password",
                                                       f"--snapshot={snapshot}", f"--file={target}"],
                                   conninfo=conninfo, what=f"full backup of {database}")
                try:
                    tables = count_tables(conn)
                    server_version = conn.execute("SHOW server_version").fetchone()[0]
                except BaseException:
                    dump.kill()
                    raise
                dump.wait()
            manifest = Manifest(
                kind="full", database=database, generation=generation, file=DUMP_DIR,
                bytes=size_of(target), sha256=sha256_of(target), created_at=utc_now().isoformat(),
                seconds=round(time.monotonic() - started, 3), server_version=server_version,
                server_version_num=conn.info.server_version, client=client.describe(),
                rows=sum(tables.values()), tables=tables, jobs=jobs,
            )
            store.write_manifest(staging, manifest)
        generations = store.full_generations(database)
        pruned = store.prune(generations, keep_generations)
    return FullBackupResult(next(g for g in generations if g.name == generation), tuple(pruned))


def verify_full_backup(
    store: BackupStore, generation: Generation, *, conninfo: str, client: PgClient, jobs: int = 2
) -> Verification:
    """Restore the whole dump into a scratch database and compare per-table row counts.

    A whole-database restore needs CREATE DATABASE; without it verification fails
    and says so (a scratch schema cannot hold another database's schemas)."""
    started = time.monotonic()
    m = generation.manifest
    outcome: dict = dict(method="not restored", scratch=None, sha256_ok=False, toc_entries=0)
    try:
        outcome["sha256_ok"] = generation.file.exists() and sha256_of(generation.file) == m.sha256
        if not outcome["sha256_ok"]:
            raise ValueError("dump sha256 differs from the manifest: the backup is corrupt, modified or missing")
        entries = toc_entries(client, generation.file)
        outcome["toc_entries"] = len(entries)
        with scratch_database(conninfo) as scratch:
            outcome.update(method=scratch.method, scratch=scratch.name,
                           stale_scratch_dropped=list(scratch.stale_dropped))
            restore_toc(client, generation.file, scratch.conninfo, entries,
                        what=f"verification of full backup {generation.name}", jobs=jobs)
            with db.connect(scratch.conninfo) as restored:
                counts = count_tables(restored)
        outcome["tables"] = counts
        outcome["rows"] = sum(counts.values())
        differing = {t: {"manifest": m.tables.get(t), "restored": counts.get(t)}
                     for t in sorted(set(m.tables) | set(counts)) if m.tables.get(t) != counts.get(t)}
        outcome["ok"] = not differing
        if differing:
            outcome["mismatches"] = differing
            outcome["error"] = f"{len(differing)} table(s) restored with a different row count"
    except (PgToolFailed, psycopg.Error, OSError, ValueError) as exc:
        outcome["ok"] = False
        outcome["error"] = f"{exc.__class__.__name__}: {str(exc).strip()}"[:2000]
    verification = Verification(checked_at=utc_now().isoformat(), seconds=round(time.monotonic() - started, 3),
                                **outcome)
    store.record_verification(generation, verification)
    return verification
