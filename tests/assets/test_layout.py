"""celestial_bodies_layout through Dagster on a real server: metadata the UI shows and plots,
the WARN check with its numbers, and the sensor that proposes a split once and runs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from pydantic import ValidationError

from cosmic_ops import db
from cosmic_ops.assets import layout as layout_assets
from cosmic_ops.layout import LayoutPolicy
from cosmic_ops.layout.policy import POLICY_ENV
from cosmic_ops.resources import PostgresResource

from ..clock import RUN_TAGS
from ..layout.helpers import create_hash_table, fill, load_demo, rows_by_partition

HOT_KEY = 42
PLANETS = "public.celestial_bodies_planets"
ASSET = layout_assets.build_celestial_bodies_layout(LayoutPolicy())  # the defaults, whatever the environment says
SENSOR = layout_assets.layout_split_proposal_sensor


@pytest.fixture(scope="module")
def demo_db(fresh_database):
    load_demo(fresh_database, seed=23)
    with db.connect(fresh_database, autocommit=True) as conn:
        create_hash_table(conn, "orders", [(4, r) for r in range(4)])
        fill(conn, "orders", {**{k: 20 for k in range(1, 101) if k != HOT_KEY}, HOT_KEY: 6_000})
    return fresh_database


def materialize(conninfo, instance, **config):
    return dg.materialize(
        [ASSET], resources={"postgres": PostgresResource(database_url=conninfo)}, instance=instance, tags=RUN_TAGS,
        run_config={"ops": {layout_assets.ASSET_NAME: {"config": config}}} if config else None,
    )


def metadata_of(result):
    return result.asset_materializations_for_node(layout_assets.ASSET_NAME)[0].metadata


def tick(instance, cursor=None):
    return SENSOR.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_metadata_shows_every_remainder_and_plots_each_table(demo_db):
    result = materialize(demo_db, dg.DagsterInstance.ephemeral())
    metadata = metadata_of(result)
    assert metadata["hash_tables"].value == 2 and metadata["hash_partitions"].value == 8
    assert metadata["rows_method"].value == "estimate (reltuples)"
    assert metadata[f"modulus/{PLANETS}"].value == 4
    assert isinstance(metadata[f"skew_ratio/{PLANETS}"], dg.FloatMetadataValue)
    assert metadata[f"skew_ratio/public.orders"].value > 3
    with db.connect(demo_db) as conn:
        largest = conn.execute(
            "SELECT max(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'celestial_bodies_planets'::regclass").fetchone()[0]
    assert metadata[f"largest_partition_bytes/{PLANETS}"].value == largest

    remainders = metadata["remainders"]
    assert isinstance(remainders, dg.TableMetadataValue)
    columns = [column.name for column in remainders.schema.columns]
    assert {"modulus", "remainder", "rows", "heap_bytes", "index_bytes", "dead_tuples", "top_key",
            "top_key_share"} <= set(columns)
    planets = [r.data for r in remainders.records if r.data["table"] == PLANETS]
    assert sorted((r["modulus"], r["remainder"]) for r in planets) == [(4, 0), (4, 1), (4, 2), (4, 3)]
    hot = [r.data for r in metadata["hottest_keys"].records if r.data["table"] == "public.orders"]
    [whale] = [r for r in hot if r["key"] == str(HOT_KEY)]
    assert (whale["rank"], whale["rows"]) == (1, 6_000)  # its remainder is read whole: exact
    assert len(hot) == 4 * layout_assets.layout.DEFAULT_TOP_KEYS  # top 5 of each remainder
    tables = {r.data["table"]: r.data for r in metadata["tables"].records}
    assert tables[PLANETS]["root"] == "public.celestial_bodies" and tables[PLANETS]["key"] == "HASH (save_id)"
    assert tables["public.orders"]["hottest_key"] == str(HOT_KEY)


def test_exact_on_request_counts_every_row(demo_db):
    result = materialize(demo_db, dg.DagsterInstance.ephemeral(), exact=True)
    metadata = metadata_of(result)
    assert metadata["rows_method"].value == "exact"
    with db.connect(demo_db) as conn:
        counted = rows_by_partition(conn, "celestial_bodies_planets")
    shown = {r.data["partition"]: r.data["rows"] for r in metadata["remainders"].records
             if r.data["table"] == PLANETS}
    assert shown == {f"public.{name}": rows for name, rows in counted.items()}
    assert metadata[f"rows/{PLANETS}"].value == sum(counted.values())


def test_check_warns_for_the_skewed_table_with_its_numbers_and_hottest_key(demo_db):
    result = materialize(demo_db, dg.DagsterInstance.ephemeral(), exact=True)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == layout_assets.CHECK_NAME
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert result.success  # a warning does not fail the run
    [finding] = evaluation.metadata["findings"].value  # planets are within the default 1.5x
    assert finding["table"] == "public.orders" and finding["kinds"] == ["skew"]
    assert finding["skew_ratio"] > 3 and finding["max_skew"] == 1.5 and finding["rows"] == 7_980
    proposal = finding["proposal"]
    assert proposal["hottest_key"] == str(HOT_KEY) and proposal["hottest_key_rows"] == 6_000
    assert proposal["split_helps"] is False
    assert "public.orders: skew" in evaluation.description
    assert evaluation.metadata["tables_over_threshold"].value == 1


def test_sensor_proposes_a_split_once_and_asks_only_for_its_plan(demo_db):
    instance = dg.DagsterInstance.ephemeral()
    assert tick(instance).skip_message.endswith("has not been evaluated yet")
    materialize(demo_db, instance)
    runs_before = len(instance.get_runs())

    first = tick(instance)
    [request] = first.run_requests  # the plan (a dry run) of the proposed split, never the split
    assert request.job_name in (None, "hash_resplit_plan_job")
    assert request.run_config["ops"]["plan_hash_resplit_op"]["config"]["table"] == "orders"
    assert request.run_config["ops"]["plan_hash_resplit_op"]["config"]["modulus"] == 8
    [event] = first.asset_events
    assert isinstance(event, dg.AssetObservation) and event.asset_key == dg.AssetKey(layout_assets.ASSET_NAME)
    assert event.description.startswith("public.orders: skew")
    assert "Plan a split of public.orders" in event.description and "Nothing was run" in event.description
    assert f"key {HOT_KEY} holds" in event.description
    proposed = event.metadata["proposed_split"].value
    assert proposed["table"] == "public.orders" and proposed["target_modulus"] == 8

    assert "no new evaluation" in tick(instance, first.cursor).skip_message
    materialize(demo_db, instance)  # still skewed: proposed already, not again
    again = tick(instance, first.cursor)
    assert again.asset_events == [] and "split already proposed: public.orders" in again.skip_message

    with db.connect(demo_db, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE customer_id = %s", (HOT_KEY,))
        conn.execute("ANALYZE orders")
    materialize(demo_db, instance)
    cleared = tick(instance, again.cursor)
    assert cleared.asset_events == [] and json.loads(cleared.cursor)["active"] == {}
    assert cleared.skip_message.endswith("passed: no split to propose")

    with db.connect(demo_db, autocommit=True) as conn:
        fill(conn, "orders", {HOT_KEY: 6_000})
    materialize(demo_db, instance)
    assert len(tick(instance, cleared.cursor).asset_events) == 1  # a new crossing is proposed again
    # Every run in the instance is one of the four materializations: a tick evaluated here launches nothing.
    assert len(instance.get_runs()) == runs_before + 3
    assert {run.job_name for run in instance.get_runs()} == {"__ephemeral_asset_job__"}


@pytest.mark.parametrize("config, field", [({"top_keys": -1}, "top_keys"), ({"sample_rows": 5}, "sample_rows"),
                                           ({"exact": "yes please"}, "exact")])
def test_run_config_is_checked_before_the_database_is_read_naming_the_field(demo_db, config, field):
    instance = dg.DagsterInstance.ephemeral()
    # Dagster's own types are refused as the config loads, pydantic's bounds as the step starts.
    with pytest.raises((ValidationError, dg.DagsterInvalidConfigError), match=field):
        materialize(demo_db, instance, **config)
    assert instance.get_latest_materialization_event(dg.AssetKey(layout_assets.ASSET_NAME)) is None


def test_a_bad_policy_file_stops_the_code_location_naming_the_key(tmp_path):
    path = tmp_path / "layout.yaml"
    path.write_text("default:\n  max_skew: 2\n")
    env = {**os.environ, POLICY_ENV: str(path)}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", "import cosmic_ops.definitions"], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "default.max_skew: factor 2 has no unit" in done.stderr


def test_code_location_has_the_layout_asset_check_sensor_and_schedule():
    from cosmic_ops.definitions import defs

    repository = defs.get_repository_def()
    assert dg.AssetKey(layout_assets.ASSET_NAME) in defs.resolve_asset_graph().get_all_asset_keys()
    assert layout_assets.CHECK_KEY in defs.resolve_asset_graph().asset_check_keys
    assert "layout_split_proposal_sensor" in {s.name for s in repository.sensor_defs}
    assert "layout_report_schedule" in {s.name for s in repository.schedule_defs}


def test_a_gap_alone_asks_for_the_missing_partitions_not_a_split():
    text = layout_assets.layout_proposal_text(
        {"description": "public.t: partitions cover 75.0% of the hash space", "proposal": None})
    assert text.endswith("Attach partitions for the missing remainders. Nothing was run.")
