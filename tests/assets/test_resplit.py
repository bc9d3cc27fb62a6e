"""The hash re-split in Dagster: the plan job records nothing but an observation, the re-split
job splits, its blocking check passes on the recorded verification, and only then are the
old partitions dropped; a failing check stops the drop."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from cosmic_ops import db, demo, schema
from cosmic_ops.assets import resplit
from cosmic_ops.definitions import defs
from cosmic_ops.resources import PostgresResource

from ..clock import RUN_TAGS, TODAY

CONFIG = {"modulus": 8, "remainders": [0, 3], "batch_rows": 500}


@pytest.fixture()
def database(new_database):
    with db.connect(new_database) as conn:
        schema.bootstrap(conn)
        demo.load(conn, "small", as_of=TODAY)
        conn.commit()
    return new_database


def _bounds(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return sorted(r[0] for r in conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'celestial_bodies_planets'::regclass"))


def _run(job_name: str, conninfo: str, instance: dg.DagsterInstance, run_config: dict):
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(run_config=run_config, instance=instance, tags=RUN_TAGS, raise_on_error=False,
                                  resources={"postgres": PostgresResource(database_url=conninfo)})


def test_plan_job_records_an_observation_and_changes_nothing(database):
    instance = dg.DagsterInstance.ephemeral()
    before = _bounds(database)
    result = _run("hash_resplit_plan_job", database, instance,
                  {"ops": {"plan_hash_resplit_op": {"config": CONFIG}}})
    assert result.success and _bounds(database) == before
    assert instance.get_latest_materialization_event(resplit.RESPLIT_KEY) is None
    observations = instance.fetch_observations(resplit.RESPLIT_KEY, limit=5).records
    assert len(observations) == 1
    shown = observations[0].asset_observation.metadata
    assert shown["partitions_to_split"].value == ["celestial_bodies_planets_0", "celestial_bodies_planets_3"]
    assert "REMAINDER 7" in shown["plan"].value


def test_resplit_job_verifies_then_drops_the_old_partitions(database):
    instance = dg.DagsterInstance.ephemeral()
    result = _run("hash_resplit_job", database, instance, {"ops": {
        "hash_resplit": {"config": CONFIG}, "hash_resplit_old_partitions": {"config": {}}}})
    assert result.success
    assert _bounds(database) == sorted(
        [f"FOR VALUES WITH (modulus 4, remainder {r})" for r in (1, 2)]
        + [f"FOR VALUES WITH (modulus 8, remainder {r})" for r in (0, 3, 4, 7)])
    split = instance.get_latest_materialization_event(resplit.RESPLIT_KEY).asset_materialization.metadata
    assert split["verified"].value is True and split["rows_moved"].value > 0
    assert split["partitions_split"].value == ["celestial_bodies_planets_0", "celestial_bodies_planets_3"]
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(resplit.RESPLIT_KEY, "hash_resplit_verified")])
    assert list(evaluation.values())[0].status.value == "SUCCEEDED"
    dropped = instance.get_latest_materialization_event(
        dg.AssetKey("hash_resplit_old_partitions")).asset_materialization.metadata["dropped"].value
    assert [d["was"] for d in dropped] == ["public.celestial_bodies_planets_0", "public.celestial_bodies_planets_3"]
    with psycopg.connect(database) as conn:
        left = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'celestial_bodies_planets_%%_split_%%'"
                            ).fetchone()[0]
    assert left == 0


def test_a_failed_verification_blocks_the_drop(database):
    instance = dg.DagsterInstance.ephemeral()
    first = _run("hash_resplit_job", database, instance, {"ops": {
        "hash_resplit": {"config": {**CONFIG, "remainders": [1]}},
        "hash_resplit_old_partitions": {"config": {"keep_for": "3650 days"}}}})  # kept, at any test date
    assert first.success
    with psycopg.connect(database) as conn:  # the record of the verification is tampered with
        conn.execute("UPDATE cosmic_ops.online_moves SET verification = jsonb_set(verification, "
                     "'{8/1,equal}', 'false')")
    second = _run("hash_resplit_job", database, instance, {"ops": {
        "hash_resplit": {"config": {**CONFIG, "remainders": [2]}},
        "hash_resplit_old_partitions": {"config": {}}}})
    assert not second.success  # the blocking check failed: the drop did not run
    drops = [e for e in second.all_events if e.is_step_success and e.step_key == "hash_resplit_old_partitions"]
    assert drops == []
    with psycopg.connect(database) as conn:
        kept = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'celestial_bodies_planets_%%_split_%%'"
                            ).fetchone()[0]
    assert kept == 2
