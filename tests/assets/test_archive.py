"""The Dagster layer of the destroyed bodies archive, on a real server."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from cosmic_ops import db
from cosmic_ops.assets.archive import CONSERVED, CONSERVED_CHECK, destroyed_bodies_archive, destroyed_bodies_archive_plan
from cosmic_ops.assets.event_logs import RANGE_END_TAG, RANGE_START_TAG
from cosmic_ops.definitions import defs
from cosmic_ops.resources import PostgresResource

from ..clock import RUN_TAGS
from .recorded import check_evaluation, check_executions, materialization, observations
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


ASSET = "destroyed_bodies_archive"


def _materialize(key, resources, **config):
    return materialize_month([destroyed_bodies_archive], "destroyed_bodies_archive", key, resources, **config)


def _counts(conninfo):
    with db.connect(conninfo) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM celestial_bodies), "
                            "(SELECT count(*) FROM celestial_bodies_archive)").fetchone()


def _month_key(conninfo) -> str:
    with db.connect(conninfo) as conn:
        return destroyed_months(conn)[1].strftime("%Y-%m-01")


def test_plan_job_records_the_plan_and_nothing_else(demo_db, resources):
    before = _counts(demo_db)
    key = _month_key(demo_db)
    instance = dg.DagsterInstance.ephemeral()
    result = destroyed_bodies_archive_plan.execute_in_process(
        partition_key=key, tags=RUN_TAGS, resources=resources, instance=instance,
        run_config={"ops": {"plan_destroyed_bodies_archive": {"config": {"batch_size": 100, "sleep_coef": 0.5}}}})
    assert result.success
    (plan,) = observations(instance, ASSET, key)
    assert plan["rows_to_move"] > 0
    assert "FOR UPDATE SKIP LOCKED" in plan["plan"] and "then 0.5x each batch's time" in plan["plan"]
    # No materialization and no conservation check, not even a "passing" one: nothing was moved.
    assert instance.get_materialized_partitions(dg.AssetKey(ASSET)) == set()
    assert check_executions(instance, CONSERVED) == []
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
    assert meta["rows_moved"].value == meta["run_rows_moved"].value == len(expected) > 50
    assert meta["archived_rows"].value == meta["dagster/row_count"].value >= len(expected)
    assert meta["run_batches"].value >= len(expected) // 50
    assert meta["rows_remaining"].value == 0
    assert meta["run_rows_per_s"].value > 0 and meta["run_longest_batch_s"].value > 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CONSERVED_CHECK and check.passed and check.partition == key
    assert check.metadata["rows_before"].value == check.metadata["live_plus_archived_after"].value
    assert key[:7] in check.description
    assert _counts(demo_db) == (live - len(expected), archived + len(expected))
    with db.connect(demo_db) as conn:
        assert archived_as_live_text(conn, "updated_at >= %s::timestamptz AND "
                                     "updated_at < %s::timestamptz + interval '1 month'", (key, key)) == expected

    again = _materialize(key, resources)
    meta = again.asset_materializations_for_node("destroyed_bodies_archive")[0].metadata
    assert again.success and meta["rows_moved"].value == 0 and meta["run_batches"].value == 0
    assert again.get_asset_check_evaluations()[0].passed
    assert _counts(demo_db) == (live - len(expected), archived + len(expected))


def test_a_range_run_records_each_month_and_its_check_on_its_own(demo_db, resources):
    with db.connect(demo_db) as conn:
        months = [m.strftime("%Y-%m-01") for m in destroyed_months(conn)[2:5]]
        due = {key: conn.execute(
            "SELECT count(*) FROM celestial_bodies WHERE is_destroyed AND updated_at >= %s::timestamptz "
            "AND updated_at < %s::timestamptz + interval '1 month'", (key, key)).fetchone()[0] for key in months}
    assert len(months) == 3 and all(due.values())
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([destroyed_bodies_archive], resources=resources, instance=instance,
                            tags={**RUN_TAGS, RANGE_START_TAG: months[0], RANGE_END_TAG: months[-1]})
    assert result.success
    for key in months:
        meta = materialization(instance, ASSET, key)
        assert meta["rows_moved"] == due[key] and meta["rows_remaining"] == 0, key
        assert meta["run_rows_moved"] == sum(due.values()) and meta["run_months"] == f"{months[0][:7]} .. {months[-1][:7]}"
        evaluation = check_evaluation(instance, CONSERVED, key)
        assert evaluation.passed and evaluation.metadata["rows_before"].value >= due[key]
    assert sorted(check_executions(instance, CONSERVED)) == [("SUCCEEDED", key) for key in months]


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



def test_the_archive_without_its_check_records_no_check(demo_db, resources):
    with db.connect(demo_db) as conn:
        key = destroyed_months(conn)[0].strftime("%Y-%m-01")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([destroyed_bodies_archive], partition_key=key, resources=resources, tags=RUN_TAGS,
                            selection=dg.AssetSelection.assets(ASSET).without_checks(), instance=instance)
    assert result.success and materialization(instance, ASSET, key)["rows_remaining"] == 0
    assert check_executions(instance, CONSERVED) == []
