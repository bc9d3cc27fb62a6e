"""Per-month pg_dump into the store, verified by a scratch restore that counts rows."""

from __future__ import annotations

import json
import os
import stat
from datetime import date

import pytest

from cosmic_ops import db
from cosmic_ops.backups import (
    BackupStoreError, NoPartitionToBackUp, PgClient, PgToolFailed, backup_month, verify_month_backup,
)
from cosmic_ops.fingerprint import fingerprint, table_columns
from cosmic_ops.backups.store import sha256_of

from .helpers import make_month, scratch_exists, store_and_client

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)


@pytest.fixture(scope="module")
def seeded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        make_month(conn, JAN, 1500)
        make_month(conn, FEB, 40)
        make_month(conn, MAR, 0)
    return bootstrapped_database


def test_backup_writes_dump_and_manifest_from_the_dump_snapshot(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        result = backup_month(conn, store, client, conninfo=seeded, month=JAN)
        with conn.transaction():
            live = fingerprint(conn, "public", "event_logs_2025_01", table_columns(conn, "public", "event_logs_2025_01"))
        server_version = conn.info.server_version
    generation = result.generation
    m = generation.manifest
    on_disk = json.loads((generation.path / "manifest.json").read_text())
    assert on_disk["rows"] == 1500 == m.rows
    assert (m.rows, m.row_checksum) == (live.rows, live.checksum)
    assert m.partition == "public.event_logs_2025_01" and m.month == "2025-01-01"
    assert m.bytes == generation.file.stat().st_size > 0
    assert m.sha256 == sha256_of(generation.file)
    assert m.server_version_num == server_version
    assert [p.name for p in generation.path.parent.iterdir()] == [generation.name]
    assert result.mb_per_s > 0


@pytest.mark.slow
def test_verification_restores_into_scratch_database_and_counts(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=JAN).generation
    verification = verify_month_backup(store, generation, conninfo=seeded, client=client)
    assert verification.ok, verification.error
    assert verification.method == "scratch database"
    assert (verification.rows, verification.row_checksum) == (1500, generation.manifest.row_checksum)
    assert verification.toc_entries >= 3
    reread = store.month_generations(generation.manifest.database, "event_logs", JAN)[0]
    assert reread.verified and reread.verification.rows == 1500
    assert verification.scratch and not scratch_exists(seeded, verification.scratch)


@pytest.mark.slow
def test_verification_in_scratch_schema_matches_too(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=FEB).generation
    verification = verify_month_backup(store, generation, conninfo=seeded, client=client, scratch="schema")
    assert verification.ok, verification.error
    assert verification.method == "scratch schema" and verification.note
    assert verification.rows == 40
    assert verification.scratch and not scratch_exists(seeded, verification.scratch)


@pytest.mark.slow
def test_empty_month_backs_up_and_verifies(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=MAR).generation
    verification = verify_month_backup(store, generation, conninfo=seeded, client=client)
    assert verification.ok and verification.rows == 0 == generation.manifest.rows


@pytest.mark.slow
def test_flipped_bytes_fail_verification(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=FEB).generation
    data = bytearray(generation.file.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    generation.file.write_bytes(bytes(data))
    verification = verify_month_backup(store, generation, conninfo=seeded, client=client)
    assert not verification.ok and not verification.sha256_ok
    assert "sha256" in verification.error
    assert not store.month_generations(generation.manifest.database, "event_logs", FEB)[0].verified


def test_generations_are_kept_by_count(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        names = [backup_month(conn, store, client, conninfo=seeded, month=FEB, keep_generations=2).generation.name
                 for _ in range(3)]
        kept = [g.name for g in store.month_generations(conn.info.dbname, "event_logs", FEB)]
    assert kept == [names[2], names[1]]


@pytest.mark.parametrize("keep", [0, -1])
def test_keeping_no_generation_is_refused_before_dumping(seeded, tmp_path, keep):
    from cosmic_ops.backups import PolicyError, full_backup

    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        with pytest.raises(PolicyError, match="keep_generations"):
            backup_month(conn, store, client, conninfo=seeded, month=JAN, keep_generations=keep)
        with pytest.raises(PolicyError, match="keep_generations"):
            full_backup(conn, store, client, conninfo=seeded, keep_generations=keep)
    assert not store.root.exists()


def test_month_without_partition_is_an_error(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        with pytest.raises(NoPartitionToBackUp, match="2024-06"):
            backup_month(conn, store, client, conninfo=seeded, month=date(2024, 6, 1))
    assert not (tmp_path / "store").exists() or not any(
        p.name.startswith("2024-06") for p in (tmp_path / "store").rglob("*"))


def _month_files(store_root):
    return sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*") if p.is_file())


def test_failing_pg_dump_leaves_no_partial_file(seeded, tmp_path):
    """A pg_dump that writes half a file then fails: nothing stays in the store."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    script = fake / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        "for a in \"$@\"; do case $a in --file=*) f=${a#--file=};; esac; done\n"
        "head -c 4096 /dev/urandom > \"$f\"\necho 'pg_dump: error: disk on fire' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    os.symlink("/bin/true", fake / "pg_restore")
    client = PgClient(bin_dir=fake, major=99, version="99.0")
    with db.connect(seeded) as conn:
        store, _ = store_and_client(tmp_path, conn)
        before = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
        with pytest.raises(PgToolFailed, match="disk on fire"):
            backup_month(conn, store, client, conninfo=seeded, month=JAN)
        # The failed dump's snapshot transaction is over: the session holds no snapshot open.
        assert conn.info.transaction_status == conn.info.transaction_status.IDLE
        after = conn.execute("SELECT count(*) FROM event_logs").fetchone()[0]
    assert before == after
    assert _month_files(tmp_path / "store") == []


def _failing_client(tmp_path) -> PgClient:
    """pg_dump that fails the way a full disk makes it fail, after writing part of its output."""
    fake = tmp_path / "fullbin"
    fake.mkdir()
    script = fake / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        "for a in \"$@\"; do case $a in --file=*) f=${a#--file=};; esac; done\n"
        "mkdir -p \"$f\" 2>/dev/null; head -c 4096 /dev/zero > \"$f/part\" 2>/dev/null || "
        "head -c 4096 /dev/zero > \"$f\"\n"
        "echo 'pg_dump: error: could not write to output file: No space left on device' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    os.symlink("/bin/true", fake / "pg_restore")
    return PgClient(bin_dir=fake, major=99, version="99.0")


def test_a_failed_backup_leaves_no_folder_behind(seeded, tmp_path):
    """Month and full backups on a full disk: the store is as it was, not one empty folder more."""
    from cosmic_ops.backups import full_backup

    client = _failing_client(tmp_path)
    with db.connect(seeded) as conn:
        store, real = store_and_client(tmp_path, conn)
        store.root.mkdir()
        with pytest.raises(PgToolFailed, match="No space left on device"):
            backup_month(conn, store, client, conninfo=seeded, month=JAN)
        conn.rollback()
        with pytest.raises(PgToolFailed, match="No space left on device"):
            full_backup(conn, store, client, conninfo=seeded)
        conn.rollback()
        assert list(store.root.iterdir()) == []
        # Beside an earlier generation, a failed one leaves the earlier one alone.
        kept = backup_month(conn, store, real, conninfo=seeded, month=FEB).generation
        before = sorted(p for p in store.root.rglob("*"))
        with pytest.raises(PgToolFailed):
            backup_month(conn, store, client, conninfo=seeded, month=FEB)
        conn.rollback()
    assert sorted(p for p in store.root.rglob("*")) == before and kept.path in before


def test_wrong_binary_path_and_unusable_store_change_nothing(seeded, tmp_path):
    from cosmic_ops.backups import PgClientNotFound, find_client

    with pytest.raises(PgClientNotFound, match="/nonexistent/bin: no executable pg_dump"):
        find_client(150000, "/nonexistent/bin")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the store should be")
    from cosmic_ops.backups import BackupStore
    with db.connect(seeded) as conn:
        _, client = store_and_client(tmp_path, conn)
        with pytest.raises(BackupStoreError, match="cannot be created"):
            backup_month(conn, BackupStore(blocker), client, conninfo=seeded, month=JAN)
    assert blocker.read_text() == "a file where the store should be"


def test_staging_left_by_a_killed_run_is_cleared_next_time(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        folder = store.month_dir(conn.info.dbname, "event_logs", FEB)
        (folder / ".staging-killed").mkdir(parents=True)
        (folder / ".staging-killed" / "half.dump").write_bytes(b"PGDMP partial")
        result = backup_month(conn, store, client, conninfo=seeded, month=FEB)
    assert result.stale_staging_removed == (".staging-killed",)
    assert sorted(p.name for p in folder.iterdir()) == [result.generation.name]


@pytest.mark.slow
def test_role_without_createdb_verifies_in_a_scratch_schema(seeded, tmp_path):
    """The fallback chosen by the verifier itself, for a real role that may not CREATE DATABASE."""
    import uuid

    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"cosmic_test_nocreatedb_{uuid.uuid4().hex[:6]}"
    dbname = conninfo_to_dict(seeded)["dbname"]
    with db.connect(seeded, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB NOSUPERUSER").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON event_logs TO {}").format(sql.Identifier(role)))
    try:
        with db.connect(seeded) as conn:
            store, client = store_and_client(tmp_path, conn)
            generation = backup_month(conn, store, client, conninfo=seeded, month=FEB).generation
        as_role = make_conninfo(seeded, user=role)
        verification = verify_month_backup(store, generation, conninfo=as_role, client=client)
        assert verification.ok, verification.error
        assert verification.method == "scratch schema" and "cannot CREATE DATABASE" in verification.note
        assert verification.rows == 40
        assert not scratch_exists(seeded, verification.scratch)
    finally:
        with db.connect(seeded, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
