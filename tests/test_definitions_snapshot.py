"""A snapshot of the whole code location: every asset, check, job, schedule, sensor and resource, with
their partitions and pools. A rename, a lost check or a changed partitioning shows up in review as a
diff of ``tests/snapshots/definitions.json``.

After an intended change, rewrite the snapshot and review its diff:

    COSMIC_OPS_UPDATE_SNAPSHOT=1 ./scripts/test tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from cosmic_ops.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The start month comes from COSMIC_OPS_FIRST_MONTH, which differs per machine: not part of the shape.
        return f"time window: {partitions_def.cron_schedule} in {partitions_def.timezone}, {partitions_def.fmt}"
    return type(partitions_def).__name__


def _mapping(graph, key: dg.AssetKey, parent: dg.AssetKey) -> str | None:
    """How a partition of ``key`` maps onto its parent's (None: one of them is not partitioned)."""
    if graph.get(key).partitions_def is None or graph.get(parent).partitions_def is None:
        return None
    return type(graph.get_partition_mapping(key, parent)).__name__


def definitions_snapshot(definitions: dg.Definitions) -> dict:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "kind": "materializable" if node.is_materializable else "observable" if node.is_observable else "external",
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "pools": sorted(node.pools or ()),
            "depends_on": {parent.to_user_string(): _mapping(graph, key, parent) for parent in sorted(node.parent_keys)},
            "automation": node.automation_condition.get_label() or type(node.automation_condition).__name__
            if node.automation_condition else None,
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        owner = next(d for d in graph.assets_defs if check_key in d.check_keys)  # the check's own definition
        spec = owner.get_spec_for_check_key(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {
            "blocking": spec.blocking,
            "partitions": _partitions(spec.partitions_def),
            "pools": sorted({op.pool for op in owner.node_def.iterate_op_defs() if op.pool}),
        }
    jobs = {}
    for job in sorted(definitions.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "partitions": _partitions(job.partitions_def),
            "ops": sorted(node.name for node in job.graph.node_defs) if not job.asset_layer.executable_asset_keys else None,
        }
    schedules = {
        s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name,
                 "default_status": s.default_status.value}
        for s in sorted(definitions.schedules or (), key=lambda s: s.name)
    }
    sensors = {}
    for sensor in sorted(definitions.sensors or (), key=lambda s: s.name):
        sensors[sensor.name] = {
            "type": sensor.sensor_type.value,
            "jobs": sorted(target.job_name for target in sensor.targets) if sensor.targets else [],
            "default_status": sensor.default_status.value,
        }
    resources = sorted((definitions.resources or {}).keys())
    return {"assets": assets, "checks": checks, "jobs": jobs, "schedules": schedules, "sensors": sensors,
            "resources": resources}


def test_definitions_match_the_snapshot():
    current = json.dumps(definitions_snapshot(defs), indent=2, sort_keys=True) + "\n"
    if os.environ.get("COSMIC_OPS_UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with COSMIC_OPS_UPDATE_SNAPSHOT=1 to write {SNAPSHOT}"
    assert current == SNAPSHOT.read_text(), (
        "the definitions changed; if that was intended, rewrite the snapshot with "
        "COSMIC_OPS_UPDATE_SNAPSHOT=1 and review its diff")
