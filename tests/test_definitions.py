"""The code location loads, with the names SPEC §7 fixes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from cosmic_ops.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_defs_are_loadable_and_hold_cosmic_schema():
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "cosmic_schema" in keys


@pytest.mark.slow
def test_dagster_cli_validates_the_workspace():
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


# Every asset that changes data has a plan job (its dry run): an op job that records the plan
# as an observation, so a dry run never passes for a materialization or a check result.
PLAN_JOBS = {
    "event_log_partitions": "event_log_partitions_plan",
    "event_log_retention": "event_log_retention_plan",
    "destroyed_bodies_archive": "destroyed_bodies_archive_plan",
    "compressed_saves": "compressed_saves_plan",
    "event_log_vacuum": "event_log_vacuum_plan",
    "partitioned_parent_statistics": "partitioned_parent_statistics_plan",
    "hash_resplit": "hash_resplit_plan_job",
    "hash_resplit_old_partitions": "hash_resplit_old_partitions_plan",
}


def test_dry_runs_are_plan_jobs_that_target_no_asset():
    graph = defs.resolve_asset_graph()
    for asset, name in PLAN_JOBS.items():
        job = defs.resolve_job_def(name)
        assert not job.asset_layer.executable_asset_keys, name  # materializes nothing, plans no check
        assert job.partitions_def == graph.get(dg.AssetKey(asset)).partitions_def, name
    for key in graph.materializable_asset_keys:
        schema = graph.get(key).assets_def.node_def.config_schema
        fields = getattr(schema.config_type, "fields", {}) if schema and schema.config_type else {}
        assert "dry_run" not in fields, key
