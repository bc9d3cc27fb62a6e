"""What the Dagster UI shows, built from the core's results.

One module per domain turns that domain's results into metadata, check results and plan
observations, so asset bodies only call the core and hand its result over. The helpers
here keep the conventions every domain follows:

- a byte count is an int (the UI plots it) with a human-readable twin next to it
  (``total_bytes`` and ``total_size``, as ``pg_size_pretty`` would print it);
- ``dagster/row_count`` carries a count of rows where the row count is the point (the
  UI shows it on the asset's page), and only an exact one; estimates keep their own name;
- nothing is reported as a sentinel (no ``-1`` for "unknown"): an unknown value is left out;
- every check evaluation carries a description, and a failed one the numbers it failed on.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterable, Mapping, Optional, Sequence

import dagster as dg

from ...partitions.state import CheckOutcome
from ...units import format_bytes

ROW_COUNT = "dagster/row_count"


def size_entries(key: str, size: int) -> dict[str, Any]:
    """``{key: size, twin: "1.2 MB"}``: the byte count that plots and its readable twin
    (``bytes`` -> ``size``, ``total_bytes`` -> ``total_size``, ``x`` -> ``x_size``)."""
    twin = key.replace("bytes", "size") if "bytes" in key else f"{key}_size"
    return {key: dg.MetadataValue.int(int(size)), twin: format_bytes(int(size))}


def row_count(rows: Optional[int]) -> dict[str, Any]:
    """``dagster/row_count`` when the count is known exactly, else nothing."""
    return {} if rows is None else {ROW_COUNT: dg.MetadataValue.int(int(rows))}


def value(raw: Any) -> Any:
    """A plain Python value as metadata: scalars as they are, dates as ISO text, the rest as JSON."""
    if isinstance(raw, dg.MetadataValue) or isinstance(raw, (bool, int, float, str)):
        return raw
    if isinstance(raw, (date, datetime)):
        return raw.isoformat()
    return dg.MetadataValue.json(raw)


def entries(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Every known value of ``mapping`` as metadata; None (unknown) is left out, never a sentinel."""
    return {key: value(raw) for key, raw in mapping.items() if raw is not None}


def recovery_entries(recovery) -> dict[str, Any]:
    """What taking the table repaired first (``recovery.Recovery``); nothing when nothing was."""
    return {key: dg.MetadataValue.json(lines) for key, lines in recovery.metadata().items()} if recovery else {}


_TABLE_TYPES = {bool: "bool", int: "int", float: "float"}


def table(records: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> dg.TableMetadataValue:
    """Rows as table metadata; a column's type is taken from its first known value."""
    names = list(columns)

    def column_type(name: str) -> str:
        first = next((r[name] for r in records if r.get(name) is not None), None)
        return _TABLE_TYPES.get(type(first), "string")

    def cell(raw: Any) -> Any:
        if raw is None or isinstance(raw, (bool, int, float, str)):
            return raw
        return raw.isoformat() if isinstance(raw, (date, datetime)) else str(raw)

    schema = dg.TableSchema(columns=[dg.TableColumn(name, column_type(name)) for name in names])
    return dg.MetadataValue.table(records=[dg.TableRecord({n: cell(r.get(n)) for n in names}) for r in records],
                                  schema=schema)


def check_result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
                 ) -> dg.AssetCheckResult:
    """A check's outcome with its description and the numbers behind it."""
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, description=outcome.description,
                               metadata=entries(outcome.metadata))


def check_evaluation(check_key: dg.AssetCheckKey, partition: str, outcome: CheckOutcome,
                     severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckEvaluation:
    """The outcome of a per-month check for one month (``partition``). A check result cannot
    name its partition, so in a run over several months each month's outcome is yielded as
    its own evaluation: each month records its own result, none is left "skipped"."""
    return dg.AssetCheckEvaluation(asset_key=check_key.asset_key, check_name=check_key.name, partition=partition,
                                   passed=outcome.passed, severity=severity, description=outcome.description,
                                   metadata=entries(outcome.metadata))


def plan_observation(asset_key: dg.AssetKey, partition: Optional[str], plan_markdown: str,
                     **counts: Any) -> dg.AssetObservation:
    """A plan (what a materialization would do, with its SQL) recorded as an observation of the
    asset: plans are shown where the asset's history is, and never count as a materialization."""
    return dg.AssetObservation(
        asset_key=asset_key, partition=partition, description="plan only: nothing was changed",
        metadata={"plan": dg.MetadataValue.md(plan_markdown), **entries(counts)})
