"""The month ledger through a whole life: create -> back up -> verify -> retire -> restore,
read back from the catalog and the backup store's records only."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from cosmic_ops import db
from cosmic_ops.backups import RetentionPolicy, restore_month
from cosmic_ops.ledger import ATTACHED, MISSING, RETIRED, PartitionRecord, build_ledger, verify_retired_backups
from cosmic_ops.retention import retire_month

from .backups.helpers import TODAY, backed_up, make_month, store_and_client

MARCH, APRIL, MAY, OCTOBER = date(2025, 3, 1), date(2025, 4, 1), date(2025, 5, 1), date(2026, 10, 1)


@pytest.fixture(scope="module")
def months(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        for month, rows in ((MARCH, 250), (APRIL, 120), (MAY, 80), (OCTOBER, 10)):
            make_month(conn, month, rows)
        conn.execute("ANALYZE event_logs")
        conn.commit()
    return bootstrapped_database


@pytest.fixture(scope="module")
def store(months, tmp_path_factory):
    with db.connect(months) as conn:
        return store_and_client(tmp_path_factory.mktemp("ledger"), conn)


def _ledger(conninfo, store, records=()):
    with db.connect(conninfo) as conn:
        return build_ledger(conn, store, records=records)


def _retire(conninfo, store, month, policy=RetentionPolicy()):
    with db.connect(conninfo) as conn:
        return retire_month(conn, store, conninfo=conninfo, month=month, policy=policy, today=TODAY)


@pytest.mark.slow
def test_a_month_through_its_whole_life(months, store):
    store, client = store
    # created: attached, with the catalog's bounds, rows and bytes; no backup yet
    march = _ledger(months, store).month(MARCH)
    assert march.state == ATTACHED and march.partition == "public.event_logs_2025_03"
    assert march.lower_bound.startswith("2025-03-01T00:00:00") and march.upper_bound.startswith("2025-04-01")
    assert march.rows == 250 and march.bytes > 0 and march.generations == [] and march.retirement is None

    # backed up twice, the newest verified by a scratch restore
    first = backed_up(months, store, client, MARCH, verify=False)
    second = backed_up(months, store, client, MARCH)
    march = _ledger(months, store).month(MARCH)
    assert [g.generation for g in march.generations] == [second.name, first.name]
    newest = march.generations[0]
    assert newest.sha256 == second.manifest.sha256 and newest.file == str(second.file) and newest.file_present
    assert newest.rows == 250 and newest.verified and newest.verified_rows == 250 and newest.verified_at
    assert newest.lower_bound == march.lower_bound and newest.upper_bound == march.upper_bound
    assert not march.generations[1].verified and march.generations[1].verification == "never verified"

    # retired: dropped, relying on the verified generation, whose restore test counted the dropped rows
    assert _retire(months, store, MARCH).rows_retired == 250
    march = _ledger(months, store).month(MARCH)
    r = march.retirement
    assert march.state == RETIRED and r.action == "drop" and r.how == "drop" and r.at
    assert r.rows == 250 and r.relied_on == second.name
    assert r.relied_on_entry.sha256 == second.manifest.sha256 and r.relied_on_entry.verified_rows == 250
    assert r.restore_test_equal is True and march.problems == []
    # the month's name and bounds are still known: the journal and the backup's manifest say them
    assert march.partition == "public.event_logs_2025_03" and march.lower_bound.startswith("2025-03-01")
    assert march.rows == 250 and march.rows_basis == "at retirement (journal)" and march.bytes is None
    assert verify_retired_backups(store, _ledger(months, store)) == ([], 1)

    # restored as the partition: attached again, the retirement and the restore both on record
    with db.connect(months) as conn:
        restored = restore_month(conn, store, client, month=MARCH)
    march = _ledger(months, store).month(MARCH)
    assert march.state == ATTACHED and march.retirement.relied_on == second.name
    (restore,) = march.restores
    assert restore.generation == restored.generation == second.name and restore.rows == 250
    assert restore.table == "public.event_logs_2025_03" and restore.attached and restore.at
    assert restore.sha256 == second.manifest.sha256 and march.problems == []


@pytest.mark.slow
def test_archived_month_and_a_restore_into_a_named_table(months, store):
    store, client = store
    backed_up(months, store, client, APRIL)
    _retire(months, store, APRIL, RetentionPolicy(action="archive-schema"))
    april = _ledger(months, store).month(APRIL)
    assert april.state == RETIRED and april.retirement.archive_present is True
    assert april.retirement.how == "archive-schema (event_logs_archive.event_logs_2025_04)"
    assert april.retirement.restore_test_equal is True and april.problems == []
    with db.connect(months) as conn:
        restore_month(conn, store, client, month=APRIL, table="april_copy")
    april = _ledger(months, store).month(APRIL)
    assert april.state == RETIRED and april.restores[0].table == "public.april_copy"
    assert not april.restores[0].attached


@pytest.mark.slow
def test_a_dropped_months_damaged_backup_is_reported(months, store):
    store, client = store
    generation = backed_up(months, store, client, MAY)
    _retire(months, store, MAY)
    assert verify_retired_backups(store, _ledger(months, store))[0] == []
    with open(generation.file, "r+b") as handle:  # one flipped byte
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    problems, _ = verify_retired_backups(store, _ledger(months, store))
    assert len(problems) == 1 and problems[0].startswith("2025-05:") and "sha256" in problems[0]
    generation.file.unlink()
    may = _ledger(months, store).month(MAY)
    assert may.state == RETIRED and "file of the backup" in may.problems[0]


def test_creation_comes_from_the_records_and_a_lost_month_is_missing(months, store):
    store, _ = store
    at = datetime(2026, 9, 20, 0, 5, tzinfo=timezone.utc)
    records = [
        # a ranged run that created October only: it counts as October's creation, not as another month's
        PartitionRecord(month=OCTOBER, at=at, run_id="abcdef0123", created=True,
                        created_names=("event_logs_2026_10",)),
        PartitionRecord(month=date(2026, 11, 1), at=at, run_id="abcdef0123", created=True,
                        created_names=("event_logs_2026_10",), partition="public.event_logs_2026_11"),
        PartitionRecord(month=OCTOBER, at=at + timedelta(days=1), run_id="later", created=False),
    ]
    ledger = _ledger(months, store, records)
    october = ledger.month(OCTOBER)
    assert october.created_at == at.isoformat() and october.created_by == "event_log_partitions run abcdef01"
    assert october.first_recorded_at == at.isoformat()
    november = ledger.month(date(2026, 11, 1))  # recorded, never attached here: lost
    assert november.state == MISSING and november.created_at is None and november.problems
    assert ledger.month(MARCH).created_by == "not recorded"
