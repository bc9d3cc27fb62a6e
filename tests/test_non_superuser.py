"""SPEC §6: maintenance works with a non-superuser role that owns the tables.

The role can log in, owns its database, and has neither SUPERUSER nor CREATEDB
(so backup verification must use a scratch schema). Every step runs through the
Dagster assets, as an operator would.
"""

from __future__ import annotations

import uuid
from datetime import date

import dagster as dg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cosmic_ops import db, demo
from cosmic_ops.assets import archive, backups, event_logs, monitoring
from cosmic_ops.assets.schema import cosmic_schema
from cosmic_ops.partitions import EVENT_LOGS_POLICY, list_partitions
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource
from tests.clock import NOW, RUN_TAGS, TODAY
from tests.lifecycle.helpers import destroyed_months


@pytest.fixture()
def owner_database(server_conninfo):
    role = f"cosmic_owner_{uuid.uuid4().hex[:8]}"
    name = f"cosmic_test_owner_{uuid.uuid4().hex[:8]}"
    with db.connect(server_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
            sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    try:
        yield make_conninfo(db.with_database(server_conninfo, name), user=role)
    finally:
        db.drop_database(server_conninfo, name)
        with db.connect(server_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.slow
def test_owner_role_runs_the_maintenance_assets(owner_database, tmp_path):
    with db.connect(owner_database) as conn:
        assert conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
                            ).fetchone()[0] is False
    (tmp_path / "backups").mkdir()
    resources = {"postgres": PostgresResource(database_url=owner_database),
                 "backup_store": BackupStoreResource(root=str(tmp_path / "backups"))}
    instance = dg.DagsterInstance.ephemeral()

    def run(assets, key=None, **kwargs):
        result = dg.materialize(assets, partition_key=key, resources=resources, instance=instance,
                                tags={**RUN_TAGS, **kwargs.pop("tags", {})}, **kwargs)
        assert result.success
        return result

    run([cosmic_schema])
    with db.connect(owner_database) as conn:
        demo.load(conn, "small", seed=5, as_of=TODAY)
        months = [p.lower_month() for p in list_partitions(conn, "event_logs") if not p.is_default]
        archive_month = destroyed_months(conn)[0]
        before = conn.execute("SELECT (SELECT count(*) FROM celestial_bodies) + "
                              "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()[0]

    window = [m.isoformat() for m in EVENT_LOGS_POLICY.window(NOW)]
    run([event_logs.event_log_partitions, *event_logs.defs.asset_checks],
        tags={event_logs.RANGE_START_TAG: window[0], event_logs.RANGE_END_TAG: window[-1]})

    moved = run([archive.destroyed_bodies_archive], key=archive_month.isoformat())
    archived = moved.asset_materializations_for_node("destroyed_bodies_archive")[0].metadata
    assert archived["rows_moved"].value > 0
    # wal_compression is superuser-only unless granted: the archive runs without it.
    assert archived["wal_compression"].value.startswith("unchanged")

    vacuum_month = months[-1].isoformat()
    run([monitoring.event_log_vacuum], key=vacuum_month)

    backup_month = months[0].isoformat()
    backed_up = run([backups.event_log_backups, backups.backup_restores_with_equal_rows], key=backup_month)
    (verification,) = backed_up.get_asset_check_evaluations()
    assert verification.passed
    assert "scratch schema" in str(verification.metadata)

    with db.connect(owner_database) as conn:
        after = conn.execute("SELECT (SELECT count(*) FROM celestial_bodies) + "
                             "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()[0]
        have = {p.lower_month() for p in list_partitions(conn, "event_logs") if not p.is_default}
    assert after == before
    assert {date.fromisoformat(k) for k in window} <= have
