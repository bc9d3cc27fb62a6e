"""Partition policy: what a managed monthly RANGE table should look like.

Policy values are validated when loaded. Durations carry their unit (``"12 months"``,
``"1 year"``); a bare number is an error, never silently months or seconds
(SPEC §4). Only whole months make sense for monthly partitions, so ``"30 days"``
is refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..schema import EVENT_LOG_STORAGE
from ..timeutil import add_months, month_start
from ..units import PolicyError, parse_months


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Storage parameters a partition may carry; values are numbers or booleans.
_STORAGE_NAME = re.compile(r"^(autovacuum_[a-z_]+|toast\.autovacuum_[a-z_]+|fillfactor|toast_tuple_target|"
                           r"parallel_workers|vacuum_index_cleanup|vacuum_truncate|user_catalog_table)$")
_STORAGE_VALUE = re.compile(r"^(-?\d+(\.\d+)?|on|off|true|false|auto)$", re.IGNORECASE)


def plain_identifier(value: Any, *, what: str) -> str:
    """``value`` if it is a plain SQL identifier (letters, digits, ``_``, ``$``; at most 63
    characters), else a ``PolicyError`` naming ``what``: the one check for every configurable name."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise PolicyError(f"{what}: {value!r} is not a plain SQL identifier")
    return value


@dataclass(frozen=True)
class IndexColumn:
    name: str
    descending: bool = False

    def __str__(self) -> str:
        return self.name + (" DESC" if self.descending else "")


@dataclass(frozen=True)
class IndexSpec:
    """A plain btree index over columns, each ascending or descending."""

    columns: tuple[IndexColumn, ...]

    @classmethod
    def parse(cls, text: str) -> "IndexSpec":
        """``"player_id, server_timestamp DESC"``."""
        if not isinstance(text, str) or not text.strip():
            raise PolicyError(f"index: {text!r} is not a column list")
        columns = []
        for part in text.split(","):
            words = part.split()
            if len(words) == 1 or (len(words) == 2 and words[1].upper() in ("ASC", "DESC")):
                name = plain_identifier(words[0], what=f"index {text!r}")
                columns.append(IndexColumn(name, len(words) == 2 and words[1].upper() == "DESC"))
            else:
                raise PolicyError(f"index {text!r}: {part.strip()!r} must be `column [ASC|DESC]`")
        return cls(tuple(columns))

    def __str__(self) -> str:
        return "(" + ", ".join(str(c) for c in self.columns) + ")"


@dataclass(frozen=True)
class PartitionPolicy:
    """How one monthly RANGE-partitioned table is kept.

    ``premake``/``lookback``/``retention`` are counts of months, parsed from values
    with units by :meth:`from_mapping`.
    """

    table: str
    partition_column: str
    premake: int
    lookback: int
    retention: int
    schema: str = "public"
    timezone: str = "UTC"
    indexes: tuple[IndexSpec, ...] = ()
    storage: Mapping[str, str] = field(default_factory=dict)
    # A DEFAULT partition holding at least this many rows is emptied online when months are
    # created (change capture + batched copy + a swap of milliseconds, see ``split_default``);
    # below it, the rows move inside the short create transaction. 0: always online.
    online_move_min_rows: int = 10_000
    online_move_batch_rows: int = 10_000

    def __post_init__(self) -> None:
        plain_identifier(self.table, what="table")
        plain_identifier(self.schema, what="schema")
        plain_identifier(self.partition_column, what="partition_column")
        if len(self.table) > 55:  # room for the "_YYYY_MM" suffix within PostgreSQL's 63 bytes
            raise PolicyError(f"table: {self.table!r} is too long for monthly partition names")
        if self.premake < 1:
            raise PolicyError(f"premake must be at least 1 month, got {self.premake}")
        if self.lookback < 0:
            raise PolicyError(f"lookback must not be negative, got {self.lookback}")
        if self.retention <= self.lookback:
            raise PolicyError(
                f"retention ({self.retention} months) must be longer than lookback ({self.lookback} months): "
                "otherwise maintenance would create months that retention drops"
            )
        if isinstance(self.online_move_min_rows, bool) or not isinstance(self.online_move_min_rows, int) \
                or self.online_move_min_rows < 0:
            raise PolicyError(f"online_move_min_rows must be a whole number of rows >= 0, got {self.online_move_min_rows!r}")
        if isinstance(self.online_move_batch_rows, bool) or not isinstance(self.online_move_batch_rows, int) \
                or not 100 <= self.online_move_batch_rows <= 1_000_000:
            raise PolicyError("online_move_batch_rows must be a whole number of rows from 100 to 1000000, "
                              f"got {self.online_move_batch_rows!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"timezone: {self.timezone!r} is not a known IANA time zone") from None
        for name, value in self.storage.items():
            if not _STORAGE_NAME.match(name):
                raise PolicyError(f"storage: {name!r} is not a supported table storage parameter")
            if not isinstance(value, str) or not _STORAGE_VALUE.match(value):
                raise PolicyError(f"storage: {name} = {value!r} must be a number or a boolean, as a string")
        # Frozen dataclass: normalise the mapping into an immutable, ordered copy.
        object.__setattr__(self, "storage", dict(sorted(self.storage.items())))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "PartitionPolicy":
        """Build from loaded config (YAML/JSON/dict); every duration needs its unit."""
        missing = [k for k in ("table", "partition_column", "premake", "lookback", "retention") if k not in raw]
        if missing:
            raise PolicyError(f"policy is missing {', '.join(missing)}")
        interval = raw.get("interval", "1 month")
        if parse_months(interval, what="interval") != 1:
            raise PolicyError(f"interval: only monthly partitions are managed, got {interval!r}")
        unknown = set(raw) - {"table", "partition_column", "premake", "lookback", "retention", "schema",
                              "timezone", "indexes", "storage", "interval", "online_move_min_rows",
                              "online_move_batch_rows"}
        if unknown:
            raise PolicyError(f"policy has unknown keys: {', '.join(sorted(unknown))}")
        return cls(
            table=raw["table"],
            schema=raw.get("schema", "public"),
            partition_column=raw["partition_column"],
            premake=parse_months(raw["premake"], what="premake"),
            lookback=parse_months(raw["lookback"], what="lookback"),
            retention=parse_months(raw["retention"], what="retention"),
            timezone=raw.get("timezone", "UTC"),
            indexes=tuple(IndexSpec.parse(i) for i in raw.get("indexes", ())),
            storage={str(k): str(v) for k, v in dict(raw.get("storage", {})).items()},
            online_move_min_rows=raw.get("online_move_min_rows", cls.online_move_min_rows),
            online_move_batch_rows=raw.get("online_move_batch_rows", cls.online_move_batch_rows),
        )

    # -- derived values -------------------------------------------------

    @property
    def qualified_name(self) -> str:
        """``schema.table`` as a regclass text (identifiers are validated plain names)."""
        return f"{self.schema}.{self.table}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def current_month(self, now: datetime) -> date:
        """The month ``now`` (the run's one clock, timezone-aware) falls in, in the policy's time zone."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return month_start(now.astimezone(self.zone).date())

    def window(self, now: datetime) -> list[date]:
        """Months to keep ready: ``lookback`` back, this month, ``premake`` ahead."""
        current = self.current_month(now)
        return [add_months(current, i) for i in range(-self.lookback, self.premake + 1)]

    def premake_months(self, now: datetime) -> list[date]:
        """This month and the ``premake`` months after it."""
        current = self.current_month(now)
        return [add_months(current, i) for i in range(0, self.premake + 1)]

    def partition_name(self, month: date) -> str:
        return f"{self.table}_{month:%Y_%m}"


EVENT_LOGS_POLICY = PartitionPolicy.from_mapping({
    "table": "event_logs",
    "partition_column": "server_timestamp",
    "interval": "1 month",
    "premake": "3 months",
    "lookback": "3 months",
    "retention": "12 months",
    "timezone": "UTC",
    "indexes": ["player_id, server_timestamp DESC", "event_type, server_timestamp DESC"],
    "storage": EVENT_LOG_STORAGE,
})
