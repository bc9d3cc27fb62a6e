"""The Dagster layer of the destroyed bodies archive, on a real server."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from cosmic_ops import db
from cosmic_ops.assets.archive import CONSERVED_CHECK, destroyed_bodies_archive
from cosmic_ops.definitions import defs
from cosmic_ops.resources import PostgresResource

from ..lifecycle.helpers import (
    archived_as_live_text,
    destroyed_months,
    load_demo,
    materialize_month,
    rows_as_text,
)


@pytest.fixture(scope="module")
def demo_db(bootstrapped_database):
    load_demo(bootstrapped_database, seed=21)
    return bootstrapped_database


@pytest.fixture()
def resources(demo_db):
    return {"postgres": PostgresResource(database_url=demo_db)}


def _materialize(key, resources, **config):
    return materialize_month([destroyed_bodies_archive], "destroyed_bodies_archive", key, resources, **config)


def _counts(conninfo):
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM celestial_bodies), "
                            "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()


def _month_key(conninfo) -> str:
    with db.connect(conninfo) as conn:
        return destroyed_months(conn)[1].strftime("%Y-%m-01")


def test_dry_run_reports_the_plan_and_changes_nothing(demo_db, resources):
    before = _counts(demo_db)
    result = _materialize(_month_key(demo_db), resources, dry_run=True, batch_size=100, sleep_coef=0.5)
    meta = result.asset_materializations_for_node("destroyed_bodies_archive")[0].metadata
    assert meta["dry_run"].value is True and meta["rows_to_move"].value > 0
    assert "FOR UPDATE SKIP LOCKED" in meta["plan"].value
    assert "then 0.5x each batch's time" in meta["plan"].value
    assert _counts(demo_db) == before


def test_materialize_archives_the_month_and_checks_conservation(demo_db, resources):
    key = _month_key(demo_db)
    live, archived = _counts(demo_db)
    with db.connect(demo_db) as conn:
        expected = rows_as_text(conn, "celestial_bodies", "is_destroyed AND updated_at >= %s::timestamptz AND "
                                "updated_at < %s::timestamptz + interval '1 month'", (key, key))
    result = _materialize(key, resources, batch_size=50, pause_s=0.0)
    assert result.success
    meta = result.asset_materializations_for_node("destroyed_bodies_archive")[0].metadata
    assert meta["rows_moved"].value == len(expected) > 50
    assert meta["batches"].value >= len(expected) // 50
    assert meta["rows_remaining"].value == 0
    assert meta["rows_per_s"].value > 0 and meta["longest_batch_s"].value > 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CONSERVED_CHECK and check.passed
    assert check.metadata["rows_before"].value == check.metadata["live_plus_archived_after"].value
    assert _counts(demo_db) == (live - len(expected), archived + len(expected))
    with db.connect(demo_db) as conn:
        assert archived_as_live_text(conn, "updated_at >= %s::timestamptz AND "
                                     "updated_at < %s::timestamptz + interval '1 month'", (key, key)) == expected

    again = _materialize(key, resources)
    meta = again.asset_materializations_for_node("destroyed_bodies_archive")[0].metadata
    assert again.success and meta["rows_moved"].value == 0 and meta["batches"].value == 0
    assert again.get_asset_check_evaluations()[0].passed
    assert _counts(demo_db) == (live - len(expected), archived + len(expected))


def test_unarchive_job_moves_rows_back(demo_db, resources):
    with db.connect(demo_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM celestial_bodies_archive ORDER BY id LIMIT 3")]
        expected = archived_as_live_text(conn, "id = ANY(%s)", (ids,))
    job = defs.resolve_job_def("unarchive_destroyed_bodies")
    result = job.execute_in_process(
        run_config={"ops": {"unarchive_bodies_op": {"config": {"body_ids": ids}}}},
        resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success and result.output_for_node("unarchive_bodies_op") == 3
    with db.connect(demo_db) as conn:
        assert rows_as_text(conn, "celestial_bodies", "id = ANY(%s)", (ids,)) == expected
        assert archived_as_live_text(conn, "id = ANY(%s)", (ids,)) == []

    nothing = job.execute_in_process(
        run_config={"ops": {"unarchive_bodies_op": {"config": {"body_ids": ids}}}},
        resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not nothing.success  # asking for rows that are not archived never looks like success


def test_nightly_schedule_requests_the_newly_due_month():
    schedule = defs.resolve_schedule_def("destroyed_bodies_archive_nightly")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 21, 1, tzinfo=timezone.utc),
                                       repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-10-01"]
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 1, 1, tzinfo=timezone.utc),
                                       repository_def=defs.get_repository_def())
    keys = [r.partition_key for r in schedule.evaluate_tick(context).run_requests]
    assert keys == ["2026-10-01", "2026-11-01"]
    assert all(r.run_key for r in schedule.evaluate_tick(context).run_requests)
