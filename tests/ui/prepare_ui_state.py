"""Run as a script by test_browser.py, in the environment the UI will use (embedded database,
temporary DAGSTER_HOME): bootstrap the schema and materialize a few months of the monthly
event_logs asset, as an operator would before opening the UI. Prints a JSON summary."""

from __future__ import annotations

import json
import os
import sys

import dagster as dg

from cosmic_ops import settings
from cosmic_ops.cli import ensure_dagster_storage
from cosmic_ops.embedded import resolve_conninfo

MONTHLY_ASSET = "event_log_partitions"


def main(months: list[str]) -> None:
    os.environ[settings.DAGSTER_STORAGE_URL_ENV] = ensure_dagster_storage(resolve_conninfo())
    from cosmic_ops.definitions import defs

    instance = dg.DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys)
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("cosmic_schema")]).success
    for month in months:
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(MONTHLY_ASSET)], partition_key=month)
        assert result.success, month
    print(json.dumps({
        "storage_url": os.environ[settings.DAGSTER_STORAGE_URL_ENV],
        "assets": keys,
        "materialized": sorted(instance.get_materialized_partitions(dg.AssetKey(MONTHLY_ASSET))),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
