"""The monitoring Dagster layer on a real server: sizes assets, the threshold sensor with
1,000 partitions, the VACUUM job, event_logs months, parent ANALYZE, one maintenance at a time."""

import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from cosmic_ops import db
from cosmic_ops.assets import monitoring as monitoring_assets
from cosmic_ops.assets.common import MAINTENANCE_POOL
from cosmic_ops.monitoring import parse_policy
from cosmic_ops.partitions import ensure_month_partitions
from cosmic_ops.resources import PostgresResource
from cosmic_ops.resources.backup_store import BackupStoreResource
from tests.monitoring.helpers import create_int_range_table, flush_stats, make_dead_tuples

from .recorded import materialization, observations

PARTITIONS = 1000
MONTHS = [date(2026, 9, 1), date(2026, 10, 1)]


@pytest.fixture(scope="module")
def database(bootstrapped_database):
    with db.connect(bootstrapped_database) as conn:
        with conn.transaction():
            ensure_month_partitions(conn, "event_logs", MONTHS)
        create_int_range_table(conn, "shards", PARTITIONS)
    return bootstrapped_database


def resources(conninfo, **options):
    # The store is only read here (journals of interrupted retirements): none exist.
    store = Path(tempfile.gettempdir()) / f"cosmic_ops_no_store_{conninfo_to_dict(conninfo)['dbname']}"
    store.mkdir(exist_ok=True)  # a configured store must exist
    return {"postgres": PostgresResource(database_url=conninfo, **options),
            "backup_store": BackupStoreResource(root=str(store))}


def materialize(assets, conninfo, *, partition_key=None, run_config=None, raise_on_error=True, instance=None):
    return dg.materialize(
        assets, partition_key=partition_key, run_config=run_config, resources=resources(conninfo),
        instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=raise_on_error,
    )


def dead_tuples(conninfo, table):
    with db.connect(conninfo, autocommit=True) as conn:
        return conn.execute("SELECT pg_stat_get_dead_tuples(%s::regclass)", (table,)).fetchone()[0]


def wait_for(predicate, what, limit_s=120.0):
    """Poll until ``predicate()``; the limit only keeps a broken test from hanging forever."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# partition_sizes / partition_counts


def test_partition_sizes_match_pg_total_relation_size_and_carry_plot_metadata(database):
    result = materialize([monitoring_assets.partition_sizes], database)
    with db.connect(database) as conn:
        expected = dict(conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.relispartition AND c.relkind = 'r'").fetchall())
    leaves = PARTITIONS + 8 + 3  # shards, celestial_bodies leaves, event_logs months + DEFAULT
    assert len(expected) == leaves
    # The materialization is the whole value: no output is stored for an IO manager.
    assert [e for e in result.all_events if e.event_type_value == "HANDLED_OUTPUT"] == []
    metadata = result.asset_materializations_for_node("partition_sizes")[0].metadata
    assert metadata["leaf_partitions"].value == metadata["dagster/row_count"].value == leaves
    assert metadata["total_bytes"].value == sum(expected.values())
    assert metadata["total_size"].value.endswith(("kB", "MB", "GB"))
    assert metadata["largest_partition_bytes"].value == max(expected.values())
    assert metadata["largest_partition_size"].value
    assert isinstance(metadata["max_dead_tuple_ratio"], dg.FloatMetadataValue)
    table = metadata["partitions"].value
    assert len(table.records) == metadata["partitions_shown"].value == monitoring_assets.TABLE_METADATA_ROWS
    shown = {r.data["table_name"]: r.data["total_bytes"] for r in table.records}
    assert all(expected[name] == size for name, size in shown.items())
    assert sorted(shown.values(), reverse=True) == sorted(expected.values(), reverse=True)[:len(shown)]
    columns = {column.name: column.type for column in table.schema.columns}
    assert columns["total_bytes"] == "int" and columns["total_size"] == "string"


def test_partition_counts_are_by_bound_for_every_partitioned_table(database):
    result = materialize([monitoring_assets.partition_counts], database)
    metadata = result.asset_materializations_for_node("partition_counts")[0].metadata
    counts = {r.data["parent_table"]: r.data for r in metadata["tables"].value.records}
    assert counts["shards"]["partition_count"] == PARTITIONS
    assert (counts["shards"]["oldest_partition"], counts["shards"]["newest_partition"]) == (
        "shards_p0", f"shards_p{PARTITIONS - 1}")
    assert counts["event_logs"]["newest_partition"] == "event_logs_2026_10"
    assert metadata["dagster/row_count"].value == metadata["partitioned_tables"].value == len(counts)
    assert metadata["partitions/public.shards"].value == PARTITIONS
    assert metadata["default_partitions"].value == 1


# ---------------------------------------------------------------------------
# Threshold sensor on 1,000 partitions

POLICY = parse_policy({
    "default": {"max_bytes": "1 TB", "max_dead_ratio": "20%", "min_dead_tuples": "100 rows"},
    "tables": {"shards": {"max_bytes": "1 MB", "bytes_action": "warn"}},
})
SENSOR = monitoring_assets.build_partition_threshold_sensor(POLICY)


def sensor_defs(conninfo):
    return dg.Definitions(jobs=[monitoring_assets.vacuum_partition_job], sensors=[SENSOR],
                          resources=resources(conninfo))


def tick(conninfo, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources=resources(conninfo), definitions=sensor_defs(conninfo),
        instance=dg.DagsterInstance.ephemeral())
    return SENSOR.evaluate_tick(context)


def test_sensor_on_1000_partitions_requests_one_run_per_crossing(database):
    quiet = tick(database)
    assert quiet.run_requests == [] and quiet.skip_message and "1011 partitions checked" in quiet.skip_message

    make_dead_tuples(database, "public", "shards", 500, rows=1000, deleted=400)  # 40% dead
    make_dead_tuples(database, "public", "shards", 7, rows=1000, deleted=10)  # 1% dead: below
    first = tick(database, quiet.cursor)
    assert [r.tags["cosmic_ops/crossing"] for r in first.run_requests] == ["dead_ratio:public.shards_p500"]
    [request] = first.run_requests
    assert request.job_name == "vacuum_partition_job"
    assert request.run_config["ops"]["vacuum_partitions"]["config"] == {
        "schema_name": "public", "tables": ["shards_p500"], "mode": "vacuum_analyze"}

    again = tick(database, first.cursor)
    assert again.run_requests == [] and "1 still over" in again.skip_message

    # The requested run lowers the dead tuples; the crossing clears and nothing more is asked.
    job = sensor_defs(database).resolve_job_def("vacuum_partition_job")
    run = job.execute_in_process(run_config=request.run_config)
    assert run.success
    assert dead_tuples(database, "shards_p500") == 0
    cleared = tick(database, again.cursor)
    assert cleared.run_requests == []
    assert '"active": {}' in cleared.cursor

    # A new crossing of the same partition later is a new run key.
    with db.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM shards WHERE id BETWEEN 500400 AND 500699")  # half of the live rows
        flush_stats(conn)
    recrossed = tick(database, cleared.cursor)
    assert [r.run_key for r in recrossed.run_requests] != [request.run_key]
    assert len(recrossed.run_requests) == 1


def test_byte_threshold_warns_once_without_a_run(database):
    with db.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO shards SELECT g, repeat('y', 1500) FROM generate_series(900000, 900999) g")
        flush_stats(conn)
    first = tick(database)
    warnings = [e for e in first.asset_events if e.metadata["threshold_kind"].value == "bytes"]
    assert [w.metadata["partition"].value for w in warnings] == ["public.shards_p900"]
    assert warnings[0].asset_key == dg.AssetKey("partition_sizes")
    assert not any(r.tags["cosmic_ops/threshold"] == "bytes" for r in first.run_requests)
    second = tick(database, first.cursor)
    assert second.asset_events == []


# ---------------------------------------------------------------------------
# event_logs months, parents, one maintenance at a time


def fill_month(conninfo, month: date, rows=600, deleted=300):
    with db.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO event_logs (server_timestamp, player_id, event_type) "
            "SELECT %s::timestamptz + g * interval '1 second', g, 'player_login' FROM generate_series(1, %s) g",
            (f"{month.isoformat()} 00:00+00", rows))
        conn.execute(
            "DELETE FROM event_logs WHERE server_timestamp >= %s::timestamptz "
            "AND server_timestamp < %s::timestamptz + interval '1 month' AND player_id <= %s",
            (f"{month.isoformat()} 00:00+00", f"{month.isoformat()} 00:00+00", deleted))
        flush_stats(conn)


def test_event_log_vacuum_month_lowers_dead_tuples_and_its_plan_changes_nothing(database):
    fill_month(database, MONTHS[0])
    before = dead_tuples(database, "event_logs_2026_09")
    assert before >= 300
    instance = dg.DagsterInstance.ephemeral()
    planned = monitoring_assets.event_log_vacuum_plan.execute_in_process(
        partition_key="2026-09-01", resources=resources(database), instance=instance)
    assert planned.success
    (plan,) = observations(instance, "event_log_vacuum", "2026-09-01")
    assert 'VACUUM (ANALYZE) "public"."event_logs_2026_09"' in plan["plan"] and plan["statements"] == 1
    assert instance.get_materialized_partitions(dg.AssetKey("event_log_vacuum")) == set()
    assert dead_tuples(database, "event_logs_2026_09") == before

    result = materialize([monitoring_assets.event_log_vacuum], database, partition_key="2026-09-01")
    metadata = result.asset_materializations_for_node("event_log_vacuum")[0].metadata
    assert (metadata["dead_tuples_before"].value, metadata["dead_tuples_after"].value) == (before, 0)
    assert dead_tuples(database, "event_logs_2026_09") == 0


def test_event_log_vacuum_of_a_missing_month_fails_clearly(database):
    result = materialize([monitoring_assets.event_log_vacuum], database, partition_key="2025-03-01",
                         raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("event_log_vacuum")
    assert "no partition for 2025-03" in str(failure.user_failure_data.description)


def test_parent_statistics_plan_is_an_observation_that_asks_for_no_analyze(database):
    instance = dg.DagsterInstance.ephemeral()
    assert monitoring_assets.partitioned_parent_statistics_plan.execute_in_process(
        resources=resources(database), instance=instance).success
    (plan,) = observations(instance, "partitioned_parent_statistics")
    assert 'ANALYZE "public"."event_logs"' in plan["plan"]
    assert materialization(instance, "partitioned_parent_statistics") is None


def test_parent_statistics_analyze_every_partitioned_parent(database):
    result = materialize([monitoring_assets.partitioned_parent_statistics], database)
    plan = result.asset_materializations_for_node("partitioned_parent_statistics")[0].metadata["plan"].value
    for parent in ("event_logs", "celestial_bodies", "shards"):
        assert f'ANALYZE "public"."{parent}"' in plan
    with db.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'event_logs'").fetchone()[0] > 0


def test_structural_change_sensor_asks_for_one_analyze_per_change(database):
    instance = dg.DagsterInstance.ephemeral()
    sensor = monitoring_assets.structural_change_sensor
    defs = dg.Definitions(jobs=[monitoring_assets.parent_statistics_job], sensors=[sensor],
                          assets=[monitoring_assets.partitioned_parent_statistics], resources=resources(database))

    def evaluate(cursor):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

    assert evaluate(None).run_requests == []
    # Plans (dry runs) and retirements noted on a month are observations: no structural change.
    instance.report_runless_asset_event(dg.AssetObservation("event_log_partitions", partition="2026-10-01",
                                                            metadata={"plan": "..."}))
    assert evaluate(None).run_requests == []
    instance.report_runless_asset_event(dg.AssetMaterialization("event_log_partitions", partition="2026-10-01"))
    first = evaluate(None)
    assert len(first.run_requests) == 1
    assert evaluate(first.cursor).run_requests == []


def _holds_maintenance_lock(conninfo) -> bool:
    with db.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::int::oid)", (db.ADVISORY_LOCK_CLASS,)).fetchone()[0]


def test_two_maintenance_runs_started_together_one_proceeds_the_other_names_the_holder(database):
    fill_month(database, MONTHS[1])
    outcome = {}
    # A reader's SHARE lock stalls the first run's VACUUM after it took the maintenance lock.
    blocker = db.connect(database, autocommit=False)  # holds its lock in an open transaction
    blocker.execute("LOCK TABLE event_logs_2026_10 IN SHARE MODE")

    def first_run():
        # The thread owns its Dagster instance (in-memory storage is bound to its thread).
        with dg.DagsterInstance.ephemeral() as instance:
            outcome["first"] = materialize([monitoring_assets.event_log_vacuum], database,
                                           partition_key="2026-10-01", instance=instance).success

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        wait_for(lambda: _holds_maintenance_lock(database), "the first run to take the maintenance lock")
        second = materialize([monitoring_assets.event_log_vacuum], database, partition_key="2026-09-01",
                             raise_on_error=False)
        assert not second.success
        message = str(second.failure_data_for_node("event_log_vacuum").user_failure_data.description)
        assert "maintenance lock of table public.event_logs" in message
        assert "application_name='cosmic_ops:maintenance run" in message
        assert "did not do its work" in message
        assert second.asset_materializations_for_node("event_log_vacuum") == []
    finally:
        blocker.rollback()
        blocker.close()
        thread.join()
    assert outcome["first"] is True
    assert dead_tuples(database, "event_logs_2026_10") == 0


def test_a_run_told_to_wait_proceeds_after_the_holder(database):
    fill_month(database, MONTHS[1])
    holder = db.connect(database, autocommit=True, application_name="cosmic_ops:other-run")
    release = threading.Event()

    def hold():
        with db.maintenance_lock(holder, "event_logs"):
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        wait_for(lambda: _holds_maintenance_lock(database), "the holder")
        threading.Timer(1.0, release.set).start()
        result = materialize([monitoring_assets.event_log_vacuum], database, partition_key="2026-10-01",
                             run_config={"ops": {"event_log_vacuum": {"config": {"lock_wait": "2 min"}}}})
        assert result.success
    finally:
        release.set()
        thread.join()
        holder.close()
    assert dead_tuples(database, "event_logs_2026_10") == 0


# ---------------------------------------------------------------------------
# Operations surface


def test_every_maintenance_step_is_in_the_maintenance_pool():
    assert monitoring_assets.event_log_vacuum.op.pool == MAINTENANCE_POOL
    assert monitoring_assets.partitioned_parent_statistics.op.pool == MAINTENANCE_POOL
    assert monitoring_assets.vacuum_partitions.pool == MAINTENANCE_POOL
    for job in (monitoring_assets.vacuum_partition_job,):
        assert job.executor_def is dg.in_process_executor


def test_instance_config_limits_the_pool_and_frees_slots_of_dead_runs():
    config = yaml.safe_load((Path(__file__).parents[2] / "dagster_home" / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["pools"]["granularity"] == "op"
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "COSMIC_OPS_DAGSTER_STORAGE_URL"}
    assert config["telemetry"]["enabled"] is False


def test_code_location_has_the_monitoring_schedules_and_sensors():
    from cosmic_ops.definitions import defs

    repository = defs.get_repository_def()
    assert {"partition_threshold_sensor", "structural_change_sensor"} <= {
        s.name for s in repository.sensor_defs}
    assert {"monitoring_snapshot_schedule", "parent_statistics_schedule"} <= {
        s.name for s in repository.schedule_defs}
    dg.Definitions.validate_loadable(defs)


def test_every_job_runs_in_process_for_short_ddl_steps():
    from cosmic_ops.definitions import defs

    executors = {job.name: job.executor_def.name for job in defs.get_repository_def().get_all_jobs()}
    assert executors and set(executors.values()) == {"in_process"}, executors
