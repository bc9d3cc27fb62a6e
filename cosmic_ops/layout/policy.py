"""When a hash-partitioned table's layout needs an operator: thresholds with units.

Written like the monitoring policy (a YAML file named by ``COSMIC_OPS_LAYOUT_POLICY``, or the
defaults below), validated when it is loaded; an error names the offending key::

    default:
      max_skew: 1.5x                # largest remainder's rows over its fair share (max/mean)
      max_partition_bytes: 10 GB    # one remainder, heap + TOAST + indexes
      min_rows: 1k rows             # below this many rows in a table its skew is noise
    tables:
      celestial_bodies_planets: {max_skew: 1.3x}   # schema.table or bare name; unset keys inherit default

``max_skew`` is a factor (``"1.5x"``): rows of the fullest remainder over the rows it would
hold if every key had as many rows (1x is perfectly even). ``null`` switches a threshold off.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from ..units import PolicyError, parse_bytes, parse_rows

POLICY_ENV = "COSMIC_OPS_LAYOUT_POLICY"
_FACTOR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*x\s*$", re.IGNORECASE)


def parse_factor(value: object) -> float:
    """``"1.5x"`` -> 1.5: how many times the fair share; at least 1 (a maximum is never below
    the mean). A bare number is refused like every policy value without its unit."""
    if not isinstance(value, str):
        raise PolicyError(f"factor {value!r} has no unit; write it like '1.5x'")
    found = _FACTOR.match(value)
    if not found:
        raise PolicyError(f"factor {value!r} is not understood; write it like '1.5x'")
    factor = float(found[1])
    if factor < 1:
        raise PolicyError(f"factor {value!r} must be at least 1x: the largest remainder is never below the mean")
    return factor


_PARSERS = {"max_skew": parse_factor, "max_partition_bytes": parse_bytes, "min_rows": parse_rows}


@dataclass(frozen=True)
class LayoutThresholds:
    max_skew: Optional[float] = 1.5
    max_partition_bytes: Optional[int] = 10 * 1024**3
    min_rows: int = 1_000


@dataclass(frozen=True)
class LayoutPolicy:
    default: LayoutThresholds = LayoutThresholds()
    tables: Mapping[str, LayoutThresholds] = field(default_factory=dict)

    def for_table(self, schema: str, table: str) -> LayoutThresholds:
        """The entry for ``schema.table``, else for the bare name, else the default."""
        for key in (f"{schema}.{table}", table):
            if key in self.tables:
                return self.tables[key]
        return self.default


def _thresholds(raw: Any, base: LayoutThresholds, where: str) -> LayoutThresholds:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping of thresholds, got {raw!r}")
    unknown = sorted(set(raw) - set(_PARSERS))
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; known keys are {sorted(_PARSERS)}")
    values: dict[str, Any] = {}
    for key, parse in _PARSERS.items():
        if key not in raw:
            continue
        if raw[key] is None and key != "min_rows":
            values[key] = None
            continue
        try:
            values[key] = parse(raw[key])
        except PolicyError as exc:
            raise PolicyError(f"{where}.{key}: {exc}") from None
    return replace(base, **values)


def parse_layout_policy(raw: Mapping[str, Any]) -> LayoutPolicy:
    """Validate a policy mapping; every value carries its unit or it is an error."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"layout policy: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"default", "tables"})
    if unknown:
        raise PolicyError(f"layout policy: unknown keys {unknown}; known keys are default, tables")
    default = _thresholds(raw.get("default") or {}, LayoutThresholds(), "default")
    tables_raw = raw.get("tables") or {}
    if not isinstance(tables_raw, Mapping):
        raise PolicyError(f"tables: expected a mapping of table name to thresholds, got {tables_raw!r}")
    tables = {str(name): _thresholds(entry, default, f"tables.{name}") for name, entry in tables_raw.items()}
    return LayoutPolicy(default=default, tables=tables)


def load_layout_policy(path: str | os.PathLike | None = None) -> LayoutPolicy:
    """The policy from ``path``, else from the file named by ``COSMIC_OPS_LAYOUT_POLICY``,
    else the defaults."""
    import yaml

    path = path or os.environ.get(POLICY_ENV)
    if not path:
        return LayoutPolicy()
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PolicyError(f"layout policy file {str(path)!r} cannot be read: {exc.strerror}") from None
    return parse_layout_policy(raw or {})
