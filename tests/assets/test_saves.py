"""The Dagster layer of compressed saves, on a real server."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from cosmic_ops import db
from cosmic_ops.assets.event_logs import RANGE_END_TAG, RANGE_START_TAG
from cosmic_ops.assets.saves import (
    CHECKSUMS_MATCH,
    NO_SAVE_WITH_BOTH,
    compressed_saves,
    compressed_saves_checksums_match,
    compressed_saves_plan,
    no_save_has_rows_and_compressed_state,
)
from cosmic_ops.definitions import defs
from cosmic_ops.lifecycle import rehydrate_save
from cosmic_ops.resources import PostgresResource

from ..clock import NOW, RUN_TAGS
from .recorded import check_evaluation, check_executions, materialization, observations

from ..lifecycle.helpers import (
    SAVE_TABLES,
    inactive_save_months,
    load_demo,
    materialize_month,
    rows_as_text,
)

ASSETS = [compressed_saves, no_save_has_rows_and_compressed_state, compressed_saves_checksums_match]


@pytest.fixture(scope="module")
def demo_db(bootstrapped_database):
    load_demo(bootstrapped_database, seed=17)
    return bootstrapped_database


@pytest.fixture()
def resources(demo_db):
    return {"postgres": PostgresResource(database_url=demo_db)}


def _materialize(key, resources, **config):
    return materialize_month(ASSETS, "compressed_saves", key, resources, **config)


def _month(demo_db) -> tuple[str, list[int]]:
    with db.connect(demo_db) as conn:
        month = inactive_save_months(conn)[-3]
        key = month.strftime("%Y-%m-01")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM game_saves WHERE NOT is_active AND updated_at >= %s::timestamptz "
            "AND updated_at < %s::timestamptz + interval '1 month' AND updated_at < %s - interval '7 days' "
            "ORDER BY id", (key, key, NOW))]
    return key, ids


def _rows(conninfo, ids):
    with db.connect(conninfo) as conn:
        return {t: rows_as_text(conn, t, "save_id = ANY(%s)", (ids,)) for t in SAVE_TABLES}


def test_plan_job_records_the_due_saves_and_nothing_else(demo_db, resources):
    key, ids = _month(demo_db)
    before = _rows(demo_db, ids)
    instance = dg.DagsterInstance.ephemeral()
    result = compressed_saves_plan.execute_in_process(partition_key=key, tags=RUN_TAGS, resources=resources,
                                                      instance=instance)
    assert result.success
    (plan,) = observations(instance, "compressed_saves", key)
    assert plan["saves_to_pack"] == len(ids) > 0 and "pack saves" in plan["plan"]
    assert instance.get_materialized_partitions(dg.AssetKey("compressed_saves")) == set()
    assert check_executions(instance, NO_SAVE_WITH_BOTH) == check_executions(instance, CHECKSUMS_MATCH) == []
    assert _rows(demo_db, ids) == before


def test_materialize_packs_the_month_checks_pass_and_rehydrate_job_restores(demo_db, resources):
    key, ids = _month(demo_db)
    before = _rows(demo_db, ids)
    result = _materialize(key, resources, saves_per_batch=3, codec="zlib", level=6)
    assert result.success
    meta = result.asset_materializations_for_node("compressed_saves")[0].metadata
    assert meta["saves"].value == meta["run_saves_packed"].value == len(ids)
    assert meta["rows_folded"].value == sum(len(v) for v in before.values())
    assert meta["bytes_after"].value < meta["bytes_before"].value and meta["ratio"].value > 1
    assert meta["size_before"].value and meta["size_after"].value
    assert meta["saves_remaining"].value == 0 and meta["codec"].value == "zlib-6"
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["no_save_has_rows_and_compressed_state"].passed
    checksum = checks["compressed_saves_checksums_match"]
    assert checksum.passed and checksum.metadata["sample_size"].value == min(len(ids), 50)
    assert checksum.partition == key and key[:7] in checksum.description
    assert _rows(demo_db, ids) == {t: [] for t in SAVE_TABLES}

    again = _materialize(key, resources)
    assert again.success
    assert again.asset_materializations_for_node("compressed_saves")[0].metadata["saves"].value == 0

    job = defs.resolve_job_def("rehydrate_saves")
    restored = job.execute_in_process(
        run_config={"ops": {"rehydrate_saves_op": {"config": {"save_ids": ids}}}},
        resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert restored.success and restored.output_for_node("rehydrate_saves_op") == sum(len(v) for v in before.values())
    assert _rows(demo_db, ids) == before


def test_rehydrate_rerun_after_a_kill_skips_saves_already_live_and_restores_the_rest(demo_db, resources):
    """A killed rehydrate run committed its first saves; the rerun with the same ids finishes."""
    key, ids = _month(demo_db)
    before = _rows(demo_db, ids)
    assert _materialize(key, resources).success
    assert _rows(demo_db, ids) == {t: [] for t in SAVE_TABLES}
    with db.connect(demo_db) as conn:  # what the killed run committed: the first two saves
        for save_id in ids[:2]:
            rehydrate_save(conn, save_id)
            conn.commit()
    rest_rows = sum(len(v) for v in _rows(demo_db, ids[2:]).values())
    assert rest_rows == 0 < len(ids) - 2

    job = defs.resolve_job_def("rehydrate_saves")
    rerun = job.execute_in_process(
        run_config={"ops": {"rehydrate_saves_op": {"config": {"save_ids": ids}}}},
        resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert rerun.success
    meta = _op_metadata(rerun, "rehydrate_saves_op")
    assert meta["already_live"].value == ids[:2]
    assert meta["rehydrated"].value == len(ids) - 2 and meta["saves"].value == len(ids)
    assert meta["rows_restored"].value == sum(len(v) for v in _rows(demo_db, ids[2:]).values()) > 0
    assert _rows(demo_db, ids) == before
    with db.connect(demo_db) as conn:
        assert conn.execute("SELECT count(*) FROM game_saves WHERE id = ANY(%s) AND compressed_state IS NOT NULL",
                            (ids,)).fetchone()[0] == 0


def _op_metadata(result, op_name):
    output = next(e for e in result.events_for_node(op_name) if e.event_type_value == "STEP_OUTPUT")
    return output.step_output_data.metadata


def test_checks_fail_on_a_broken_database(demo_db, resources):
    key, ids = _month(demo_db)
    assert _materialize(key, resources).success
    with db.connect(demo_db) as conn:
        conn.execute("UPDATE game_saves SET compressed_state = overlay(compressed_state PLACING '\\xdeadbeef'::bytea "
                     "FROM length(compressed_state) / 2 FOR 4) WHERE id = %s",
                     (ids[0],))
        conn.execute("INSERT INTO save_research (save_id, tech_id) VALUES (%s, 'tech_stray')", (ids[1],))
        conn.commit()
    result = _materialize(key, resources)  # packs nothing more; the checks look at the database
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["no_save_has_rows_and_compressed_state"].passed
    assert checks["no_save_has_rows_and_compressed_state"].metadata["saves_with_both"].value == 1
    assert checks["no_save_has_rows_and_compressed_state"].metadata["examples"].value == [ids[1]]
    assert not checks["compressed_saves_checksums_match"].passed
    assert checks["compressed_saves_checksums_match"].metadata["failed"].value == 1
    assert "1 of" in checks["compressed_saves_checksums_match"].description


def test_a_range_run_records_each_month_and_its_checks_on_their_own(demo_db, resources):
    with db.connect(demo_db) as conn:
        months = [m.strftime("%Y-%m-01") for m in inactive_save_months(conn)[-7:-4]]
        due = {key: conn.execute(
            "SELECT count(*) FROM game_saves WHERE NOT is_active AND compressed_state IS NULL "
            "AND updated_at >= %s::timestamptz AND updated_at < %s::timestamptz + interval '1 month'",
            (key, key)).fetchone()[0] for key in months}
    assert len(months) == 3 and all(due.values())
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(ASSETS, resources=resources, instance=instance,
                            tags={**RUN_TAGS, RANGE_START_TAG: months[0], RANGE_END_TAG: months[-1]})
    assert result.success
    for key in months:
        meta = materialization(instance, "compressed_saves", key)
        assert meta["saves"] == due[key] and meta["saves_remaining"] == 0, key
        assert meta["run_saves_packed"] == sum(due.values())
        for check in (NO_SAVE_WITH_BOTH, CHECKSUMS_MATCH):
            assert check_evaluation(instance, check, key).passed
    for check in (NO_SAVE_WITH_BOTH, CHECKSUMS_MATCH):
        assert sorted(check_executions(instance, check)) == [("SUCCEEDED", key) for key in months]


def test_nightly_schedule_requests_the_newly_due_month():
    schedule = defs.resolve_schedule_def("compressed_saves_nightly")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 21, 1, 30, tzinfo=timezone.utc),
                                       repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-01"]
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 8, 1, 30, tzinfo=timezone.utc),
                                       repository_def=defs.get_repository_def())
    assert [r.partition_key for r in schedule.evaluate_tick(context).run_requests] == ["2026-10-01", "2026-11-01"]
