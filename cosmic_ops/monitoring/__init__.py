"""Monitoring of partitioned tables: sizes and counts from the catalog, threshold policy,
threshold evaluation for the sensor, and VACUUM/ANALYZE maintenance.

Plain Python over psycopg connections; the Dagster layer is ``cosmic_ops.assets.monitoring``.
"""

from .maintenance import (
    ActionResult, MaintenanceAction, RelationNotFound, apply, partitioned_roots, plan_analyze,
    plan_markdown, plan_vacuum,
)
from .policy import MonitoringPolicy, TablePolicy, load_policy, parse_policy
from .sizes import read_partition_counts, read_partition_sizes
from .thresholds import Crossing, TickPlan, find_crossings, plan_tick
from ..units import PolicyError, parse_bytes, parse_duration, parse_ratio, parse_rows

__all__ = [
    "ActionResult", "Crossing", "MaintenanceAction", "MonitoringPolicy", "PolicyError", "RelationNotFound",
    "TablePolicy", "TickPlan", "PolicyError", "apply", "find_crossings", "load_policy", "parse_bytes",
    "parse_duration", "parse_policy", "parse_ratio", "parse_rows", "partitioned_roots", "plan_analyze",
    "plan_markdown", "plan_tick", "plan_vacuum", "read_partition_counts", "read_partition_sizes",
]
