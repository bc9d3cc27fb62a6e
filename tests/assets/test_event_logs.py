"""The event_logs Dagster layer on a real server: the monthly asset and its month check, the
table asset and its checks, the plan job, the schedules' requests, the sensors and rehoming job.
What a run records is read through the instance, as the UI reads it."""

import json
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from cosmic_ops import db, schema
from cosmic_ops.assets import event_logs
from cosmic_ops.assets.common import MONTHLY
from cosmic_ops.partitions import EVENT_LOGS_POLICY, list_partitions
from cosmic_ops.resources import PostgresResource
from cosmic_ops.timeutil import add_months
from cosmic_ops.resources.backup_store import BackupStoreResource

from ..clock import NOW, RUN_TAGS
from .recorded import check_evaluation, check_executions, materialization, observations
from tests.partitions.helpers import insert_events, row_fingerprint, rows_per_partition, tree_snapshot

ASSET = event_logs.event_log_partitions
CHECKS = event_logs.MONTH_CHECKS
TABLE_CHECKS = event_logs.TABLE_CHECKS
TABLE_CHECK_NAMES = ["default_partition_empty", "partitions_contiguous", "partitions_have_policy_indexes_and_storage",
                     "premake_months_exist"]


@pytest.fixture()
def database(new_database):
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
    return new_database


def resources(conninfo):
    # The store is only read here (journals of interrupted retirements): none exist.
    store = Path(tempfile.gettempdir()) / f"cosmic_ops_no_store_{conninfo_to_dict(conninfo)['dbname']}"
    store.mkdir(exist_ok=True)  # a configured store must exist
    return {"postgres": PostgresResource(database_url=conninfo), "backup_store": BackupStoreResource(root=str(store))}


def materialize(conninfo, partition_key=None, run_config=None, tags=None, instance=None, checks=CHECKS):
    return dg.materialize(
        [ASSET, *checks], partition_key=partition_key, run_config=run_config, tags={**RUN_TAGS, **(tags or {})},
        resources=resources(conninfo), instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialize_table(conninfo, instance=None):
    """The event_logs table asset with its checks (what event_logs_table_sensor asks for)."""
    return dg.materialize([event_logs.event_logs_table, *TABLE_CHECKS], tags=RUN_TAGS, resources=resources(conninfo),
                          instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


def config(**values):
    return {"ops": {"event_log_partitions": {"config": values}}}


def _range(keys):
    """Tags of one run over the months ``keys[0]`` .. ``keys[-1]`` (a single-run backfill)."""
    return {event_logs.RANGE_START_TAG: keys[0], event_logs.RANGE_END_TAG: keys[-1]}


def metadata(result):
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def latest_keys(n=7):
    return MONTHLY.get_partition_keys(current_time=NOW)[-n:]


def test_latest_seven_partitions_give_the_seed_window_and_pass_every_check(database):
    keys = latest_keys()
    assert keys == [f"{m:%Y-%m-%d}" for m in EVENT_LOGS_POLICY.window(NOW)]
    for key in keys:
        result = materialize(database, key)
        assert result.success
        meta = metadata(result)
        assert meta["created"] is True and meta["partition"] == "public.event_logs_" + key[:7].replace("-", "_")
        assert meta["lower_bound"] == key + "T00:00:00+00:00"
        (pruned,) = result.get_asset_check_evaluations()
        assert pruned.check_name == "month_query_pruned" and pruned.partition == key and pruned.passed
    # Every check of the whole table passes once all seven exist (the premake one could not before).
    evaluations = checks(materialize_table(database))
    assert sorted(evaluations) == TABLE_CHECK_NAMES
    assert all(e.passed and e.description for e in evaluations.values()), [e.description for e in evaluations.values()]
    with db.connect(database) as conn:
        names = [p.name for p in list_partitions(conn, "event_logs") if not p.is_default]
    assert names == ["event_logs_" + k[:7].replace("-", "_") for k in keys]


def test_rematerializing_changes_nothing_and_reports_metadata(database):
    key = latest_keys()[-1]
    assert materialize(database, key).success
    with db.connect(database) as conn:
        before = tree_snapshot(conn)
        insert_events(conn, key + " 12:00+00")
    result = materialize(database, key, run_config=config(exact_rows=True))
    meta = metadata(result)
    assert result.success and meta["created"] is False and meta["actions_applied"] == 0
    assert meta["rows_exact"] == 1 and meta["total_bytes"] > 0 and len(meta["indexes"]) == 3
    assert meta["upper_bound"] and meta["lock_wait_s"] == 0
    with db.connect(database) as conn:
        assert tree_snapshot(conn) == before


def test_plan_job_records_the_plan_as_an_observation_and_nothing_else(database):
    instance = dg.DagsterInstance.ephemeral()
    existing, new = latest_keys()[-2:]
    assert materialize(database, existing, instance=instance).success
    materialized = instance.get_materialized_partitions(event_logs.ASSET_KEY)
    checked = check_executions(instance, event_logs.MONTH_QUERY_PRUNED)
    with db.connect(database) as conn:
        before = tree_snapshot(conn)
    run = event_logs.event_log_partitions_plan.execute_in_process(
        tags={**RUN_TAGS, **_range([existing, new])}, resources=resources(database), instance=instance)
    assert run.success
    (plan,) = observations(instance, event_logs.ASSET_KEY, new)
    assert plan["planned_actions"] == 1
    assert "ATTACH PARTITION" in plan["plan"] and "CREATE TABLE" in plan["plan"]
    (nothing,) = observations(instance, event_logs.ASSET_KEY, existing)
    assert nothing["planned_actions"] == 0 and "Nothing to do" in nothing["plan"]
    # No materialization, no check execution (not even a planned, "skipped" one), nothing changed.
    assert instance.get_materialized_partitions(event_logs.ASSET_KEY) == materialized == {existing}
    assert check_executions(instance, event_logs.MONTH_QUERY_PRUNED) == checked == [("SUCCEEDED", existing)]
    with db.connect(database) as conn:
        assert tree_snapshot(conn) == before


def test_checks_fail_on_a_broken_database_and_say_why(database):
    key = latest_keys()[-4]  # the current month
    for k in latest_keys():
        materialize(database, k, checks=[])
    with db.connect(database) as conn:
        newest = EVENT_LOGS_POLICY.partition_name(date.fromisoformat(latest_keys()[-1]))
        conn.execute(sql.SQL("ALTER TABLE event_logs DETACH PARTITION {}").format(sql.Identifier(newest)))
        conn.execute("ALTER TABLE event_logs_default RESET (autovacuum_analyze_scale_factor)")
        conn.commit()
        insert_events(conn, "1999-12-31 23:00+00")
    evaluations = checks(materialize_table(database))
    assert not evaluations["premake_months_exist"].passed
    assert evaluations["premake_months_exist"].metadata["missing_months"].value == [latest_keys()[-1][:7]]
    assert latest_keys()[-1][:7] in evaluations["premake_months_exist"].description
    assert not evaluations["default_partition_empty"].passed
    assert evaluations["default_partition_empty"].severity == dg.AssetCheckSeverity.WARN
    assert "1999-12: 1" in evaluations["default_partition_empty"].description
    assert "event_logs_default: autovacuum_analyze_scale_factor is unset" in \
        evaluations["partitions_have_policy_indexes_and_storage"].description
    assert evaluations["partitions_contiguous"].passed
    assert checks(materialize(database, key))["month_query_pruned"].passed


def test_a_range_run_materializes_every_month_in_one_run_and_checks_each(database):
    keys = latest_keys()
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(database, tags=_range(keys), instance=instance)
    assert result.success
    assert instance.get_materialized_partitions(event_logs.ASSET_KEY) == set(keys)
    # The month check is recorded once per month, each with its own partition; none left "skipped".
    assert sorted(check_executions(instance, event_logs.MONTH_QUERY_PRUNED)) == [("SUCCEEDED", k) for k in keys]
    for key in keys:
        evaluation = check_evaluation(instance, event_logs.MONTH_QUERY_PRUNED, key)
        assert evaluation.passed and key[:7] in evaluation.description
    with db.connect(database) as conn:
        assert len([p for p in list_partitions(conn, "event_logs") if not p.is_default]) == 7


def test_each_month_of_a_range_run_carries_its_own_metadata(database):
    """Acceptance: a 3-month range where only one month is new; each month's materialization
    tells its own bounds, rows, bytes and indexes, and only the new month says created."""
    keys = latest_keys()[-3:]
    old, new = keys[:2], keys[2]
    for key in old:
        assert materialize(database, key, checks=[]).success
    with db.connect(database) as conn:
        insert_events(conn, old[0] + " 10:00+00", old[0] + " 11:00+00", old[1] + " 12:00+00")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(database, tags=_range(keys), instance=instance, run_config=config(exact_rows=True))
    assert result.success
    expected_rows = {old[0]: 2, old[1]: 1, new: 0}
    with db.connect(database) as conn:
        sizes = dict(conn.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                                  "WHERE relname = ANY(%s)", ([f"event_logs_{k[:7].replace('-', '_')}" for k in keys],)))
    for key in keys:
        name = "event_logs_" + key[:7].replace("-", "_")
        meta = materialization(instance, event_logs.ASSET_KEY, key)
        assert meta["created"] is (key == new), key
        assert meta["actions_applied"] == (1 if key == new else 0)
        assert meta["partition"] == "public." + name
        assert meta["lower_bound"] == key + "T00:00:00+00:00"
        assert meta["upper_bound"] == add_months(date.fromisoformat(key), 1).isoformat() + "T00:00:00+00:00"
        assert meta["rows_exact"] == meta["dagster/row_count"] == expected_rows[key]
        assert meta["total_bytes"] == sizes[name] and meta["total_size"].endswith(("bytes", "kB", "MB"))
        assert len(meta["indexes"]) == 3
        assert (name in meta["plan"]) is (key == new) and "created_partitions" not in meta
        assert meta["lock_wait_s"] >= 0 and meta["lock_attempts"] == (1 if key == new else 0)


def test_schedules_request_the_newest_month_and_the_whole_window(database):
    defs = dg.Definitions.merge(event_logs.defs, dg.Definitions(resources=resources(database)))
    monthly = defs.resolve_schedule_def("event_log_partitions_monthly_schedule")
    assert monthly.cron_schedule == "0 0 1 * *" and monthly.execution_timezone == "UTC"
    tick = datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc)
    # The daemon evaluates a schedule with its repository, which resolves the partition key.
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        (request,) = monthly.evaluate_tick(context).run_requests
    assert request.partition_key == "2027-02-01"

    daily = defs.resolve_schedule_def("event_log_partitions_daily_schedule")
    assert daily.cron_schedule == "5 0 * * *" and daily.execution_timezone == "UTC"
    tick = datetime(2026, 11, 21, 0, 5, tzinfo=timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        (request,) = daily.evaluate_tick(context).run_requests
    assert request.tags[event_logs.RANGE_START_TAG] == "2026-08-01"
    assert request.tags[event_logs.RANGE_END_TAG] == "2027-02-01"


def test_sensor_requests_rehoming_and_the_job_moves_rows(database):
    defs = dg.Definitions.merge(event_logs.defs, dg.Definitions(resources=resources(database)))
    sensor = defs.resolve_sensor_def("event_log_default_rows_sensor")
    instance = dg.DagsterInstance.ephemeral()
    current = latest_keys()[-4]

    def tick(cursor=None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                           resources=resources(database))
        return sensor.evaluate_tick(context)

    empty = tick()
    assert not empty.run_requests and "empty" in empty.skip_message
    with db.connect(database) as conn:
        insert_events(conn, "1999-01-15 00:00+00", "2031-07-01 00:00+00", "2031-07-02 00:00+00",
                      current + " 06:00+00")
        before = row_fingerprint(conn)
    first = tick(empty.cursor)
    (request,) = first.run_requests
    fingerprint = f"1999-01=1,{current[:7]}=1,2031-07=2"
    assert request.run_key.startswith(f"rehome:{fingerprint}:")
    assert json.loads(first.cursor)["fingerprint"] == fingerprint
    again = tick(first.cursor)
    assert not again.run_requests and "already requested" in again.skip_message

    job = defs.resolve_job_def("event_log_default_rehoming_job")
    run = job.execute_in_process(instance=instance, run_config=request.run_config or None,
                                 resources=resources(database))
    assert run.success
    with db.connect(database) as conn:
        assert rows_per_partition(conn) == {"event_logs_1999_01": 1, "event_logs_2031_07": 2,
                                            EVENT_LOGS_POLICY.partition_name(date.fromisoformat(current)): 1}
        assert row_fingerprint(conn) == before
    # The month that is a Dagster key has its history; 1999 and 2031 are outside the partitions.
    assert instance.get_materialized_partitions(event_logs.ASSET_KEY) == {current}
    created = materialization(instance, event_logs.ASSET_KEY, current)
    assert created["created"] is True and created["created_by"] == "DEFAULT rehoming"
    assert not tick(again.cursor).run_requests
    observation = [e for e in run.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observation and observation[0].event_specific_data.asset_observation.metadata["rows_moved"].value == 4


def test_held_maintenance_lock_fails_the_run(database):
    with db.connect(database, application_name="another_run") as other:
        with db.maintenance_lock(other, EVENT_LOGS_POLICY.qualified_name):
            result = materialize(database, latest_keys()[-1], checks=[])
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "did not do its work" in failure.step_failure_data.error.to_string()


def test_checks_of_the_whole_table_are_recorded_once_without_a_partition(database):
    keys = latest_keys()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(database, tags=_range(keys), instance=instance).success
    result = materialize_table(database, instance)
    assert result.success
    for name in TABLE_CHECK_NAMES:
        check = dg.AssetCheckKey(event_logs.TABLE_KEY, name)
        assert check_executions(instance, check) == [("SUCCEEDED", None)], name
        assert check_evaluation(instance, check).description
    # The monthly asset has only its month check; nothing recorded there is left "skipped".
    graph = dg.Definitions.merge(event_logs.defs, dg.Definitions(resources=resources(database))).resolve_asset_graph()
    assert [k for k in graph.asset_check_keys if k.asset_key == event_logs.ASSET_KEY] == [event_logs.MONTH_QUERY_PRUNED]
    assert all(status != "PLANNED" for status, _ in check_executions(instance, event_logs.MONTH_QUERY_PRUNED))
    table = materialization(instance, event_logs.TABLE_KEY)
    assert table["months_attached"] == 7 and table["default_rows"] == 0
    assert (table["first_month"], table["last_month"]) == (keys[0][:7], keys[-1][:7])
    listed = [r.data["partition"] for r in table["partitions"].records]
    assert listed == ["public.event_logs_" + k[:7].replace("-", "_") for k in keys] + ["public.event_logs_default"]


def test_table_sensor_asks_for_one_reading_per_change_of_months(database):
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions.merge(event_logs.defs, dg.Definitions(resources=resources(database)))
    sensor = defs.resolve_sensor_def("event_logs_table_sensor")

    def evaluate(cursor):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

    quiet = evaluate(None)
    assert quiet.run_requests == [] and "no month" in quiet.skip_message
    assert materialize(database, tags=_range(latest_keys()[-3:]), instance=instance, checks=[]).success
    first = evaluate(quiet.cursor)
    (request,) = first.run_requests  # one reading for the three months of the run
    assert request.job_name in (None, "event_logs_table_job")
    assert evaluate(first.cursor).run_requests == []
    instance.report_runless_asset_event(dg.AssetMaterialization("event_log_retention", partition="2025-01-01"))
    assert len(evaluate(first.cursor).run_requests) == 1
