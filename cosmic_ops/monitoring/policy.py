"""Threshold policy per partitioned table, with units (SPEC §3.9, §4).

Written as a mapping (YAML file named by ``COSMIC_OPS_MONITORING_POLICY``, or the
defaults below)::

    interval: 2 min                 # how often the sensor polls
    default:
      max_bytes: 10 GB              # per partition; action: bytes_action
      max_rows: 50M rows            # live tuples per partition; action: rows_action
      max_dead_ratio: 20%           # dead / (live + dead); action: VACUUM (ANALYZE)
      min_dead_tuples: 1000 rows    # below this a ratio is noise (autovacuum's threshold idea)
      bytes_action: warn            # warn | analyze | vacuum
      rows_action: warn
    tables:
      event_logs: {max_bytes: 20 GB}   # keyed by parent or root table; unset keys inherit default
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from ..units import PolicyError, parse_bytes, parse_duration, parse_ratio, parse_rows

POLICY_ENV = "COSMIC_OPS_MONITORING_POLICY"

ACTIONS = ("warn", "analyze", "vacuum")
_THRESHOLD_PARSERS = {
    "max_bytes": parse_bytes,
    "max_rows": parse_rows,
    "max_dead_ratio": parse_ratio,
    "min_dead_tuples": parse_rows,
}
_ACTION_KEYS = ("bytes_action", "rows_action")


@dataclass(frozen=True)
class TablePolicy:
    max_bytes: Optional[int] = None
    max_rows: Optional[int] = None
    max_dead_ratio: Optional[float] = None
    min_dead_tuples: int = 1000
    bytes_action: str = "warn"
    rows_action: str = "warn"


@dataclass(frozen=True)
class MonitoringPolicy:
    interval_s: float = 120.0
    default: TablePolicy = TablePolicy(max_bytes=10 * 1024**3, max_dead_ratio=0.2)
    tables: Mapping[str, TablePolicy] = field(default_factory=dict)

    def for_partition(self, parent_schema: str, parent_table: str, root_table: str) -> TablePolicy:
        """The most specific entry: the direct parent (qualified, then bare), then the root."""
        for key in (f"{parent_schema}.{parent_table}", parent_table, root_table):
            if key in self.tables:
                return self.tables[key]
        return self.default


def _table_policy(raw: Any, base: TablePolicy, where: str) -> TablePolicy:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping of thresholds, got {raw!r}")
    known = set(_THRESHOLD_PARSERS) | set(_ACTION_KEYS)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    values: dict[str, Any] = {}
    for key, parse in _THRESHOLD_PARSERS.items():
        if key in raw:
            try:
                values[key] = None if raw[key] is None else parse(raw[key])
            except PolicyError as exc:
                raise PolicyError(f"{where}.{key}: {exc}") from None
    for key in _ACTION_KEYS:
        if key in raw:
            if raw[key] not in ACTIONS:
                raise PolicyError(f"{where}.{key}: {raw[key]!r} is not one of {list(ACTIONS)}")
            values[key] = raw[key]
    return replace(base, **values)


def parse_policy(raw: Mapping[str, Any]) -> MonitoringPolicy:
    """Validate a policy mapping; every value carries its unit or it is an error."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"monitoring policy: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"interval", "default", "tables"})
    if unknown:
        raise PolicyError(f"monitoring policy: unknown keys {unknown}; known keys are interval, default, tables")
    base = MonitoringPolicy()
    interval_s = base.interval_s
    if "interval" in raw:
        try:
            interval_s = parse_duration(raw["interval"])
        except PolicyError as exc:
            raise PolicyError(f"interval: {exc}") from None
        if not 30 <= interval_s <= 3600:
            raise PolicyError(f"interval: {raw['interval']!r} must lie between 30 s and 1 h")
    default = _table_policy(raw.get("default", {}), base.default, "default")
    tables_raw = raw.get("tables") or {}
    if not isinstance(tables_raw, Mapping):
        raise PolicyError(f"tables: expected a mapping of table name to thresholds, got {tables_raw!r}")
    tables = {str(name): _table_policy(entry, default, f"tables.{name}") for name, entry in tables_raw.items()}
    return MonitoringPolicy(interval_s=interval_s, default=default, tables=tables)


def load_policy(path: str | os.PathLike | None = None) -> MonitoringPolicy:
    """The policy from ``path``, else from the file named by ``COSMIC_OPS_MONITORING_POLICY``,
    else the defaults."""
    import yaml

    path = path or os.environ.get(POLICY_ENV)
    if not path:
        return MonitoringPolicy()
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"monitoring policy file {str(path)!r} cannot be read: {exc.strerror}") from None
    return parse_policy(raw or {})
