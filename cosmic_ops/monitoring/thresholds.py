"""Which partitions cross their thresholds, and which crossings are new since the last tick.

A crossing is identified by (kind, partition). It stays "active" in the sensor's
cursor while the partition stays above the threshold, so one crossing asks for
one run; once the partition drops below, the entry is forgotten and a later
crossing gets a fresh run key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from .policy import MonitoringPolicy
from ..units import format_bytes

KINDS = ("bytes", "rows", "dead_ratio")


@dataclass(frozen=True)
class Crossing:
    kind: str  # one of KINDS
    schema: str
    table: str
    parent_table: str
    root_table: str
    observed: float
    threshold: float
    action: str  # warn | analyze | vacuum

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.schema}.{self.table}"

    def describe(self) -> str:
        if self.kind == "bytes":
            shown = f"{format_bytes(int(self.observed))} > {format_bytes(int(self.threshold))}"
        elif self.kind == "rows":
            shown = f"{int(self.observed):,d} live rows > {int(self.threshold):,d}"
        else:
            shown = f"dead-tuple ratio {self.observed:.1%} > {self.threshold:.1%}"
        return f"{self.schema}.{self.table} (of {self.root_table}): {shown}; action {self.action}"


def find_crossings(sizes: pd.DataFrame, policy: MonitoringPolicy) -> list[Crossing]:
    """Every threshold exceeded by a row of ``read_partition_sizes``, in frame order."""
    found: list[Crossing] = []
    columns = ("schema_name", "table_name", "parent_schema", "parent_table", "root_table",
               "total_bytes", "live_tuples", "dead_tuples", "dead_tuple_ratio")
    for schema, table, pschema, parent, root, total, live, dead, ratio in sizes[list(columns)].itertuples(
            index=False, name=None):
        rule = policy.for_partition(pschema, parent, root)

        def crossing(kind: str, observed: float, threshold: float, action: str) -> Crossing:
            return Crossing(kind, schema, table, parent, root, float(observed), float(threshold), action)

        if rule.max_bytes is not None and total > rule.max_bytes:
            found.append(crossing("bytes", total, rule.max_bytes, rule.bytes_action))
        if rule.max_rows is not None and live > rule.max_rows:
            found.append(crossing("rows", live, rule.max_rows, rule.rows_action))
        if rule.max_dead_ratio is not None and dead >= rule.min_dead_tuples and ratio > rule.max_dead_ratio:
            found.append(crossing("dead_ratio", ratio, rule.max_dead_ratio, "vacuum"))
    return found


@dataclass(frozen=True)
class TickPlan:
    new: list[tuple[Crossing, str]]  # (crossing, run_key) to act on in this tick
    still_active: list[Crossing]  # crossed before and still above: already handled
    cursor: str


def parse_cursor(cursor: str | None) -> dict[str, str]:
    """The active crossings recorded by the previous tick: key -> tick id when first seen."""
    if not cursor:
        return {}
    try:
        active = json.loads(cursor).get("active", {})
    except (ValueError, AttributeError):
        return {}  # an unreadable cursor re-arms every crossing rather than hiding one
    return {str(k): str(v) for k, v in active.items()} if isinstance(active, Mapping) else {}


def plan_tick(crossings: list[Crossing], cursor: str | None, tick_id: str) -> TickPlan:
    """Split crossings into new ones (each with a run key unique to this crossing) and
    ones already acted on; the returned cursor remembers exactly the current crossings."""
    previous = parse_cursor(cursor)
    active: dict[str, str] = {}
    new: list[tuple[Crossing, str]] = []
    still: list[Crossing] = []
    for crossing in crossings:
        if crossing.key in active:
            continue
        since = previous.get(crossing.key)
        if since is None:
            since = tick_id
            new.append((crossing, f"{crossing.key}@{since}"))
        else:
            still.append(crossing)
        active[crossing.key] = since
    return TickPlan(new=new, still_active=still, cursor=json.dumps({"active": active}, sort_keys=True))
