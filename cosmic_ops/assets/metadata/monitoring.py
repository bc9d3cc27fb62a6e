"""Metadata of the monitoring assets: sizes and counts of every partitioned table as table
metadata (the assets' value: nothing is pickled), with the numbers the UI plots over time;
VACUUM/ANALYZE runs and their plans."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Sequence

import dagster as dg
import pandas as pd

from ...monitoring.maintenance import ActionResult
from ...units import format_bytes
from . import row_count, size_entries, table

# At most this many rows go into table metadata (the UI stays responsive): the largest
# partitions; the counts around them cover every partition.
TABLE_METADATA_ROWS = 200
PER_TABLE_ENTRIES = 10


def _cell(raw: Any) -> Any:
    if raw is None or (not isinstance(raw, (list, dict, str)) and pd.isna(raw)):
        return None
    if hasattr(raw, "item"):  # numpy scalars
        return raw.item()
    if isinstance(raw, pd.Timestamp):
        return raw.isoformat()
    return raw.isoformat() if isinstance(raw, (date, datetime)) else raw


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _cell(v) for k, v in row.items()} for row in frame.astype(object).to_dict("records")]


def sizes(frame: pd.DataFrame) -> dict[str, Any]:
    """``monitoring.read_partition_sizes``: one row per leaf partition, largest first."""
    shown = frame.head(TABLE_METADATA_ROWS).assign(total_size=lambda f: f["total_bytes"].map(format_bytes))
    per_root = frame.groupby("root_table")["total_bytes"].sum().sort_values(ascending=False)
    largest = frame.iloc[0] if len(frame) else None
    metadata: dict[str, Any] = {
        "leaf_partitions": len(frame),
        **row_count(len(frame)),
        **size_entries("total_bytes", int(frame["total_bytes"].sum())),
        **size_entries("largest_partition_bytes", int(largest["total_bytes"]) if largest is not None else 0),
        "largest_partition": f"{largest['schema_name']}.{largest['table_name']}" if largest is not None else "",
        "dead_tuples": int(frame["dead_tuples"].sum()),
        "max_dead_tuple_ratio": float(frame["dead_tuple_ratio"].max()) if len(frame) else 0.0,
        "partitions_shown": len(shown),
        "partitions": table(_records(shown), list(shown.columns)),
        "bytes_by_table": table([{"root_table": root, "total_bytes": int(total), "total_size": format_bytes(int(total))}
                                 for root, total in per_root.items()], ("root_table", "total_bytes", "total_size")),
    }
    for root, total in per_root.head(PER_TABLE_ENTRIES).items():
        metadata.update(size_entries(f"total_bytes/{root}", int(total)))
    return metadata


def counts(frame: pd.DataFrame) -> dict[str, Any]:
    """``monitoring.read_partition_counts``: one row per partitioned table."""
    per_table = {f"partitions/{schema}.{parent}": int(count) for schema, parent, count in
                 frame[["schema_name", "parent_table", "partition_count"]].head(20).itertuples(index=False)}
    return {
        "partitioned_tables": len(frame),
        **row_count(len(frame)),
        "partitions": int(frame["partition_count"].sum()),
        "default_partitions": int(frame["default_partitions"].sum()),
        **per_table,
        "tables": table(_records(frame), list(frame.columns)),
    }


def maintenance(results: Sequence[ActionResult]) -> dict[str, Any]:
    """What a VACUUM/ANALYZE run did, statement by statement."""
    rows = [{"sql": r.sql_text, "seconds": round(r.seconds, 3), "attempts": r.attempts,
             "dead_tuples_before": r.dead_tuples_before, "dead_tuples_after": r.dead_tuples_after,
             "live_tuples_after": r.live_tuples_after} for r in results]
    return {
        "statements": len(results),
        "dead_tuples_before": sum(r.dead_tuples_before for r in results),
        "dead_tuples_after": sum(r.dead_tuples_after for r in results),
        "seconds": round(sum(r.seconds for r in results), 3),
        "results": table(rows, ("sql", "seconds", "attempts", "dead_tuples_before", "dead_tuples_after",
                                "live_tuples_after")),
    }
