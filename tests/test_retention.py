"""Retiring months: refusal rules, both detach paths, drop or archive, resumption."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from cosmic_ops import db
from cosmic_ops.backups import RetentionPolicy, backup_month, restore_month, verify_month_backup
from cosmic_ops.backups.policy import PolicyError
from cosmic_ops.partitions.catalog import partition_for_month
from cosmic_ops.retention import (
    DETACH_CONCURRENT, DETACH_PLAIN, RetentionRefused, apply_retirement, plan_retirement,
    retire_month,
)

from .backups.helpers import (
    TODAY, add_rows, bootstrap_without_default, make_month, month_rows, scratch_exists, store_and_client,
)

POLICY = RetentionPolicy()


def _backed_up(conninfo, store, client, month, *, verify=True):
    with db.connect(conninfo) as conn:
        generation = backup_month(conn, store, client, conninfo=conninfo, month=month).generation
    if verify:
        assert verify_month_backup(store, generation, conninfo=conninfo, client=client).ok
    return generation


def _retire(conninfo, store, month, policy=POLICY, **kw):
    with db.connect(conninfo) as conn:
        return retire_month(conn, store, conninfo=conninfo, month=month, policy=policy, today=TODAY, **kw)


def _attached(conninfo, month):
    with db.connect(conninfo) as conn:
        return partition_for_month(conn, "event_logs", month)


def _catalog(conninfo):
    with db.connect(conninfo) as conn:
        return conn.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relispartition FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname LIKE 'event\\_logs%' ORDER BY 1"
        ).fetchall()


@pytest.fixture(scope="module")
def months(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        for m in range(1, 10):
            make_month(conn, date(2025, m, 1), 300 + m)
        for m in (11, 12):
            make_month(conn, date(2024, m, 1), 280 + m)
        make_month(conn, date(2026, 1, 1), 50)
    return bootstrapped_database


def test_policy_values_carry_units():
    assert RetentionPolicy(retention="2 years").retention_months == 24
    assert POLICY.cutoff(TODAY) == date(2025, 11, 1)
    for bad in ("12", "12 days", "0 months", "twelve months"):
        with pytest.raises(PolicyError):
            RetentionPolicy(retention=bad)
    with pytest.raises(PolicyError, match="action"):
        RetentionPolicy(action="truncate")


# Each refusal's state, made on its own month: (conninfo, store, client) -> the month to retire.
def _no_backup(conninfo, store, client):
    return date(2025, 1, 1)


def _inside_the_window(conninfo, store, client):
    _backed_up(conninfo, store, client, date(2026, 1, 1))
    return date(2026, 1, 1)


def _rows_added_after_the_dump(conninfo, store, client):
    _backed_up(conninfo, store, client, date(2025, 2, 1))
    with db.connect(conninfo) as conn:
        add_rows(conn, date(2025, 2, 1), 3, player_base=5000)
    return date(2025, 2, 1)


def _never_verified(conninfo, store, client):
    _backed_up(conninfo, store, client, date(2025, 3, 1), verify=False)
    return date(2025, 3, 1)


def _corrupt(generation):
    data = bytearray(generation.file.read_bytes())
    data[-100] ^= 0xFF
    generation.file.write_bytes(bytes(data))


def _corrupted_after_its_verification(conninfo, store, client):
    # The verification record still says ok: the core re-hashes the file itself.
    _corrupt(_backed_up(conninfo, store, client, date(2024, 11, 1)))
    return date(2024, 11, 1)


def _last_verification_failed(conninfo, store, client):
    generation = _backed_up(conninfo, store, client, date(2024, 12, 1))
    _corrupt(generation)
    assert verify_month_backup(store, generation, conninfo=conninfo, client=client).ok is False
    return date(2024, 12, 1)


# A state made with a verified backup (pg_dump, then pg_restore into a scratch database) is slow.
_REFUSALS = [
    pytest.param(_no_backup, "no backup of event_logs 2025-01"),
    pytest.param(_inside_the_window, "inside the retention window", marks=pytest.mark.slow),
    pytest.param(_rows_added_after_the_dump, "stale backup.*305 rows now.*302", marks=pytest.mark.slow),
    pytest.param(_never_verified, "never verified"),
    pytest.param(_corrupted_after_its_verification, "no longer match their sha256", marks=pytest.mark.slow),
    pytest.param(_last_verification_failed, "last verification failed", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make_state, refusal", _REFUSALS,
                         ids=[param.values[0].__name__.strip("_") for param in _REFUSALS])
def test_refusals_change_nothing(months, tmp_path, make_state, refusal):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = make_state(months, store, client)
    before = _catalog(months)
    with pytest.raises(RetentionRefused, match=refusal):
        _retire(months, store, month)
    assert _catalog(months) == before
    assert _attached(months, month) is not None


@pytest.mark.slow
def test_dry_run_shows_the_plan_and_changes_nothing(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 4, 1)
    _backed_up(months, store, client, month)
    before = _catalog(months)
    plan = _retire(months, store, month, dry_run=True)
    assert plan.status == "retire" and plan.detach_mode == DETACH_PLAIN
    text = plan.to_markdown()
    assert 'ALTER TABLE "public"."event_logs" DETACH PARTITION "public"."event_logs_2025_04"' in text
    assert 'DROP TABLE "public"."event_logs_2025_04"' in text
    assert "DEFAULT partition" in text
    assert _catalog(months) == before


@pytest.mark.slow
def test_retires_with_plain_detach_and_drop_rows_only_in_backup(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 5, 1)
    original = month_rows(db.connect(months), month)
    generation = _backed_up(months, store, client, month)
    result = _retire(months, store, month)
    assert result.detach_mode == DETACH_PLAIN and result.action == "drop"
    assert result.rows_retired == 305 == len(original)
    assert _attached(months, month) is None
    assert month_rows(db.connect(months), month) == []
    assert not any(r[2] == "event_logs_2025_05" for r in _catalog(months))
    # rows live on in the backup: a fresh scratch restore still counts them
    again = verify_month_backup(store, generation, conninfo=months, client=client)
    assert again.ok and again.rows == 305
    assert store.read_retirement(generation.manifest.database, "event_logs", month)["state"] == "done"
    # a second run is a no-op that says so
    assert _retire(months, store, month).plan.status == "already-retired"
    # and the restore job brings it back, row for row
    with db.connect(months) as conn:
        restored = restore_month(conn, store, client, month=month)
    assert restored.attached and restored.rows == 305
    assert month_rows(db.connect(months), month) == original
    assert _attached(months, month).name == "event_logs_2025_05"
    assert again.scratch and not scratch_exists(months, again.scratch)


@pytest.mark.slow
def test_retires_into_archive_schema(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 6, 1)
    original = month_rows(db.connect(months), month)
    _backed_up(months, store, client, month)
    # Mixed case: a plain identifier that still needs quoting to keep its case.
    policy = RetentionPolicy(action="archive-schema", archive_schema="Old_Logs")
    result = _retire(months, store, month, policy=policy)
    assert result.archived_as == "Old_Logs.event_logs_2025_06"
    with db.connect(months) as conn:
        archived = conn.execute(
            'SELECT id, server_timestamp, player_id, event_type, payload, server_region '
            'FROM "Old_Logs".event_logs_2025_06 ORDER BY id').fetchall()
        relispartition = conn.execute(
            "SELECT relispartition FROM pg_class WHERE oid = '\"Old_Logs\".event_logs_2025_06'::regclass"
        ).fetchone()[0]
    assert archived == original and relispartition is False
    assert month_rows(db.connect(months), month) == []


@pytest.mark.slow
def test_rows_arriving_between_check_and_detach_reattach_and_refuse(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 7, 1)
    _backed_up(months, store, client, month)
    with db.connect(months) as conn:
        plan = plan_retirement(conn, store, month=month, policy=POLICY, today=TODAY)
        assert plan.status == "retire"
        add_rows(conn, month, 2, player_base=9000)  # lands after the plan's count
        with pytest.raises(RetentionRefused, match="re-attached unchanged"):
            apply_retirement(conn, store, plan, conninfo=months)
    attached = _attached(months, month)
    assert attached is not None and attached.oid == plan.table_oid
    assert len(month_rows(db.connect(months), month)) == 307 + 2
    assert store.read_retirement(plan.backup.manifest.database, "event_logs", month) is None


@pytest.mark.slow
def test_rows_updated_before_detach_are_caught_by_the_checksum(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 9, 1)
    _backed_up(months, store, client, month)
    with db.connect(months) as conn:
        conn.execute("UPDATE event_logs_2025_09 SET payload = '{\"edited\": true}' "
                     "WHERE id = (SELECT min(id) FROM event_logs_2025_09)")
        conn.commit()
        plan = plan_retirement(conn, store, month=month, policy=POLICY, today=TODAY)
        assert plan.status == "retire"  # same count: only the checksum can tell
        with pytest.raises(RetentionRefused, match="re-attached unchanged"):
            apply_retirement(conn, store, plan, conninfo=months)
    assert _attached(months, month).oid == plan.table_oid
    assert len(month_rows(db.connect(months), month)) == 309


@pytest.mark.slow
def test_run_killed_after_detach_finishes_next_time(months, tmp_path):
    with db.connect(months) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 8, 1)
    generation = _backed_up(months, store, client, month)
    with db.connect(months) as conn:
        plan = plan_retirement(conn, store, month=month, policy=POLICY, today=TODAY)
        # what apply does before a crash: journal, detach; the drop never happened
        store.write_retirement(conn.info.dbname, "event_logs", month,
                               {"state": "detached", "table_oid": plan.table_oid, "table": "public.event_logs_2025_08"})
        conn.execute("ALTER TABLE event_logs DETACH PARTITION event_logs_2025_08")
        conn.commit()
    assert _attached(months, month) is None
    with db.connect(months) as conn:
        resumed = plan_retirement(conn, store, month=month, policy=POLICY, today=TODAY)
    assert resumed.status == "resume" and resumed.table_name == "event_logs_2025_08"
    result = _retire(months, store, month)
    assert result.rows_retired == generation.manifest.rows
    assert not any(r[2] == "event_logs_2025_08" for r in _catalog(months))


# ---------------------------------------------------------------------------
# the concurrent path: a table layout without DEFAULT


@pytest.fixture()
def no_default(new_database):
    return bootstrap_without_default(new_database, [date(2025, 1, 1), date(2025, 2, 1)], 200)


@pytest.mark.slow
def test_detaches_concurrently_without_default(no_default, tmp_path):
    with db.connect(no_default) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 1, 1)
    _backed_up(no_default, store, client, month)
    result = _retire(no_default, store, month)
    assert result.detach_mode == DETACH_CONCURRENT
    assert _attached(no_default, month) is None
    assert month_rows(db.connect(no_default), month) == []
    assert len(month_rows(db.connect(no_default), date(2025, 2, 1))) == 200


@pytest.mark.slow
def test_interrupted_concurrent_detach_is_finalized(no_default, tmp_path):
    with db.connect(no_default) as conn:
        store, client = store_and_client(tmp_path, conn)
    month = date(2025, 2, 1)
    _backed_up(no_default, store, client, month)
    # an open transaction that has read event_logs makes DETACH CONCURRENTLY wait;
    # its lock_timeout then interrupts it after the first phase: "detach pending"
    reader = psycopg.connect(no_default)
    reader.execute("SELECT count(*) FROM event_logs").fetchone()
    detacher = psycopg.connect(no_default, autocommit=True)
    detacher.execute("SET lock_timeout = '300ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        detacher.execute("ALTER TABLE event_logs DETACH PARTITION event_logs_2025_02 CONCURRENTLY")
    detacher.close()
    reader.rollback()
    reader.close()
    with db.connect(no_default) as conn:
        pending = conn.execute("SELECT inhdetachpending FROM pg_inherits "
                               "WHERE inhrelid = 'event_logs_2025_02'::regclass").fetchone()[0]
        assert pending
        plan = plan_retirement(conn, store, month=month, policy=POLICY, today=TODAY)
    # No journal explains that detach: taking the table finalizes it and attaches it
    # again (the dry run says so), then the month is retired as usual.
    assert plan.detach_mode == DETACH_CONCURRENT and "finalizes it and attaches it again" in plan.to_markdown()
    result = _retire(no_default, store, month)
    assert result.detach_mode == DETACH_CONCURRENT and result.rows_retired == 200
    assert any("finalized the interrupted DETACH CONCURRENTLY of public.event_logs_2025_02" in line
               for line in result.recovery.actions)
    assert _attached(no_default, month) is None
