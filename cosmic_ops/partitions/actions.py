"""The typed actions of a partition plan, and the SQL they are built from.

Every action carries the statements it will run, so a dry run shows exactly what a real
run does. Planning (``maintain``) decides which actions a table needs; the online DEFAULT
split (``split_default``) builds its own from the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Callable, Optional, Union

import psycopg
from psycopg import sql

from .policy import IndexSpec, PartitionPolicy

if TYPE_CHECKING:
    from ..online import OnlineMove

Bound = Union[datetime, date]
ColumnRef = Callable[[str], sql.Composable]


# ---------------------------------------------------------------------------
# SQL pieces


def qualified(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def storage_clause(settings: dict[str, str]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(value))
        for name, value in settings.items()
    )


def index_statement(table: sql.Composable, spec: IndexSpec) -> sql.Composable:
    columns = sql.SQL(", ").join(
        sql.SQL("{} DESC").format(sql.Identifier(c.name)) if c.descending else sql.Identifier(c.name)
        for c in spec.columns
    )
    # No name: PostgreSQL picks a unique one, as it does for LIKE ... INCLUDING INDEXES.
    return sql.SQL("CREATE INDEX ON {} ({})").format(table, columns)


def range_predicate(column: str, lower: Bound, upper: Bound, ref: ColumnRef = sql.Identifier) -> sql.Composable:
    """The partition constraint of ``[lower, upper)``; ``ref`` names the column (a trigger
    writes ``NEW.column``). Never NULL, so ``NOT`` of an ``OR`` of these is exact."""
    return sql.SQL("({c} IS NOT NULL AND {c} >= {lo} AND {c} < {hi})").format(
        c=ref(column), lo=sql.Literal(lower), hi=sql.Literal(upper))


def create_like_statement(table: sql.Composable, parent: sql.Composable, storage: dict[str, str]) -> sql.Composable:
    """A table outside the tree shaped like the parent: columns, defaults, constraints,
    the parent's indexes (which ATTACH then adopts instead of building), storage."""
    with_clause = sql.SQL(" WITH ({})").format(storage_clause(storage)) if storage else sql.SQL("")
    return sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES "
        "INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS INCLUDING GENERATED "
        "INCLUDING COMPRESSION){}").format(table, parent, with_clause)


def attach_check_name(name: str) -> sql.Identifier:
    return sql.Identifier(f"{name}_attach_check")


def month_table_statements(policy: PartitionPolicy, name: str, lower: Bound, upper: Bound,
                           parent: sql.Composable, extra_indexes: list[IndexSpec]) -> list[sql.Composable]:
    """Create one month's table outside the tree, with the policy's indexes and storage and a
    CHECK equal to its partition constraint, so that its ATTACH needs no scan."""
    table = qualified(policy.schema, name)
    return [
        create_like_statement(table, parent, dict(policy.storage)),
        *[index_statement(table, spec) for spec in extra_indexes],
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK {}").format(
            table, attach_check_name(name), range_predicate(policy.partition_column, lower, upper)),
    ]


def attach_month_statements(parent: sql.Composable, table: sql.Identifier, name: str,
                            lower: Bound, upper: Bound) -> list[sql.Composable]:
    """ATTACH (no scan: the CHECK proves the bound), then drop the CHECK it no longer needs."""
    return [
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            parent, table, sql.Literal(lower), sql.Literal(upper)),
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, attach_check_name(name)),
    ]


# ---------------------------------------------------------------------------
# Actions


@dataclass(frozen=True)
class Action:
    """One step of a plan; ``statements`` run in one transaction."""

    month: date
    target: str
    reason: str
    statements: tuple[sql.Composable, ...]

    kind = "action"

    def render(self, conn: psycopg.Connection) -> str:
        return ";\n".join(s.as_string(conn) for s in self.statements) + ";"


@dataclass(frozen=True)
class CreatePartition(Action):
    lower: Bound = None  # type: ignore[assignment]
    upper: Bound = None  # type: ignore[assignment]
    move_statement: Optional[sql.Composable] = None
    moved_rows_count: Optional[sql.Composable] = None

    kind = "create_partition"


@dataclass(frozen=True)
class SplitDefault(Action):
    """Create ``creates`` together by emptying a DEFAULT partition that holds many rows
    online (``split_default``): the game waits only for a swap of milliseconds."""

    creates: tuple[CreatePartition, ...] = ()
    move: Optional["OnlineMove"] = None
    default_rows_at_least: int = 0

    kind = "split_default"

    def render(self, conn: psycopg.Connection) -> str:
        return "\n".join(self.move.render(conn)) if self.move is not None else ""


@dataclass(frozen=True)
class SetStorage(Action):
    kind = "set_storage"


@dataclass(frozen=True)
class CreateIndex(Action):
    kind = "create_index"


@dataclass(frozen=True)
class Conflict(Action):
    """Not applied: reported, and raised after the other actions ran."""

    kind = "conflict"


@dataclass
class ActionResult:
    action: Action
    attempts: int
    lock_wait_s: float
    seconds: float
    rows_moved: int = 0
