"""Restore of one month into a named table; the full -Fd -j backup and its verification; PITR report."""

from __future__ import annotations

from datetime import date

import pytest

from cosmic_ops import db
from cosmic_ops.backups import (
    RestoreRefused, backup_month, full_backup, pitr_readiness, restore_month, verify_full_backup,
    verify_month_backup,
)

from .helpers import make_month, month_rows, scratch_exists, store_and_client

MONTH = date(2025, 9, 1)


@pytest.fixture(scope="module")
def seeded(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        make_month(conn, MONTH, 700)
        make_month(conn, date(2025, 10, 1), 90)
        conn.execute("INSERT INTO players (player_id, username) VALUES (1, 'ada'), (2, 'grace')")
        conn.commit()
    return bootstrapped_database


def _columns(conn, table):
    return conn.execute(
        "SELECT id, server_timestamp, player_id, event_type, payload, server_region FROM {} ORDER BY id"
        .replace("{}", table)).fetchall()


@pytest.mark.slow
def test_restore_into_a_named_table_reads_identically(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=MONTH).generation
    assert verify_month_backup(store, generation, conninfo=seeded, client=client).ok
    with db.connect(seeded) as conn:
        result = restore_month(conn, store, client, month=MONTH, table="event_logs_2025_09_copy")
        copied = _columns(conn, "event_logs_2025_09_copy")
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'event_logs_2025_09_copy'::regclass").fetchone()[0]
        conn.rollback()
    assert not result.attached and result.rows == 700
    assert copied == month_rows(db.connect(seeded), MONTH)
    assert set(options) == set(generation.manifest.reloptions)
    # the month is attached: restoring it "as the partition" must refuse, not duplicate
    with db.connect(seeded) as conn, pytest.raises(RestoreRefused, match="already has a partition"):
        restore_month(conn, store, client, month=MONTH)
    # the name is taken by other rows: refuse
    with db.connect(seeded) as conn:
        conn.execute("DELETE FROM event_logs_2025_09_copy WHERE id IN (SELECT id FROM event_logs_2025_09_copy LIMIT 1)")
        conn.commit()
        with pytest.raises(RestoreRefused, match="exists with other rows"):
            restore_month(conn, store, client, month=MONTH, table="event_logs_2025_09_copy")


def test_restore_needs_a_verified_backup(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        backup_month(conn, store, client, conninfo=seeded, month=date(2025, 10, 1))
        with pytest.raises(RestoreRefused, match="no verified, intact backup"):
            restore_month(conn, store, client, month=date(2025, 10, 1), table="elsewhere")
        assert conn.execute("SELECT to_regclass('elsewhere')").fetchone()[0] is None


@pytest.mark.slow
def test_restore_killed_after_the_copy_only_attaches_next_time(seeded, tmp_path):
    month = date(2025, 10, 1)
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = backup_month(conn, store, client, conninfo=seeded, month=month).generation
    assert verify_month_backup(store, generation, conninfo=seeded, client=client).ok
    original = month_rows(db.connect(seeded), month)
    with db.connect(seeded) as conn:
        # the state a killed restore leaves: the proven table exists, not attached
        conn.execute("ALTER TABLE event_logs DETACH PARTITION event_logs_2025_10")
        conn.commit()
        result = restore_month(conn, store, client, month=month)
    assert result.resumed and result.attached and result.rows == 90
    assert month_rows(db.connect(seeded), month) == original


@pytest.mark.slow
def test_full_backup_in_parallel_verifies_per_table_counts(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        result = full_backup(conn, store, client, conninfo=seeded, jobs=2)
    m = result.generation.manifest
    assert m.kind == "full" and m.jobs == 2
    assert m.tables["public.event_logs_2025_09"] == 700 and m.tables["public.players"] == 2
    assert (result.generation.file / "toc.dat").is_file()
    verification = verify_full_backup(store, result.generation, conninfo=seeded, client=client)
    assert verification.ok, verification.error
    assert verification.tables == m.tables
    assert verification.scratch and not scratch_exists(seeded, verification.scratch)


@pytest.mark.slow
def test_corrupted_full_backup_fails_verification(seeded, tmp_path):
    with db.connect(seeded) as conn:
        store, client = store_and_client(tmp_path, conn)
        generation = full_backup(conn, store, client, conninfo=seeded, jobs=2).generation
    biggest = max((p for p in generation.file.iterdir() if p.name != "toc.dat"), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    verification = verify_full_backup(store, generation, conninfo=seeded, client=client)
    assert not verification.ok and "sha256" in verification.error


def test_pitr_report_reads_settings_and_changes_nothing(seeded):
    with db.connect(seeded) as conn:
        before = conn.execute("SELECT name, setting FROM pg_settings ORDER BY name").fetchall()
        report = pitr_readiness(conn)
        after = conn.execute("SELECT name, setting FROM pg_settings ORDER BY name").fetchall()
        archive_mode = conn.execute("SHOW archive_mode").fetchone()[0]
    assert before == after
    assert report.wal_level in ("minimal", "replica", "logical")
    assert report.archive_mode == archive_mode
    if archive_mode == "off":
        assert not report.ready and any("archive_mode" in p for p in report.problems)
