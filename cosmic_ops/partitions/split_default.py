"""Create months while a DEFAULT partition holds many rows, without making the game wait
for those rows to move.

PostgreSQL will not attach a month while DEFAULT holds rows of it, and moving the rows
inside the create transaction keeps the game's inserts waiting for the whole move (seconds
for a busy month). Instead, one online move (``cosmic_ops.online``) copies DEFAULT's rows,
while the game goes on writing to it, into the new month tables (one per month created,
each with its CHECK) and into a fresh DEFAULT for the rows of every other month. The swap,
one short transaction under ``lock_timeout`` with retries, then:

1. locks the parent and DEFAULT (ACCESS EXCLUSIVE: the game waits here, for milliseconds),
   and counts the old DEFAULT against the new tables;
2. detaches the old DEFAULT; attaches each month (no scan: the CHECK proves it) and drops
   its CHECK;
3. renames the old DEFAULT aside and the fresh one to its name, and attaches it as DEFAULT
   (its scan covers only the rows of months not created, normally few).

The old DEFAULT is dropped after the swap has committed: the new tables were verified
equal to it (count and checksum per month) before the swap and counted again under its
locks. A kill at any point leaves a record the next job on the table acts on.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import psycopg
from psycopg import sql

from .. import db
from ..online import OnlineMove, Route, unique_key
from ..online.move import Hook, Relation, insertable_columns
from .actions import (
    ActionResult,
    CreatePartition,
    SplitDefault,
    attach_month_statements,
    create_like_statement,
    month_table_statements,
    qualified,
    range_predicate,
)
from .catalog import Partition, storage_parameters
from .policy import IndexSpec, PartitionPolicy


def free_name(conn: psycopg.Connection, schema: str, wanted: str) -> str:
    """``wanted`` (cut to PostgreSQL's 63 bytes), or it with a number, whichever no relation has."""
    for attempt in range(100):
        suffix = "" if attempt == 0 else f"_{attempt}"
        name = wanted[:63 - len(suffix)] + suffix
        if conn.execute("SELECT to_regclass(%s) IS NULL", (sql.Identifier(schema, name).as_string(conn),)).fetchone()[0]:
            return name
    raise RuntimeError(f"no free name like {schema}.{wanted}")


def plan_split(conn: psycopg.Connection, policy: PartitionPolicy, parent: sql.Composable, parent_oid: int,
               default: Partition, creates: list[CreatePartition], extra_indexes: list[IndexSpec]
               ) -> Optional[SplitDefault]:
    """The online split for ``creates``, or ``None`` when DEFAULT holds fewer rows than the
    policy's ``online_move_min_rows`` (counted up to that many, no further), or its rows
    have no unique key to mirror changes by."""
    threshold = policy.online_move_min_rows
    default_id = qualified(default.schema, default.name)
    rows = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM ONLY {} LIMIT {}) s").format(
        default_id, sql.Literal(max(threshold, 1)))).fetchone()[0]
    if rows < threshold:
        return None
    key = unique_key(conn, default.oid)
    if key is None:
        return None
    root_oid = conn.execute("SELECT pg_partition_root(%s::oid)::oid::bigint", (parent_oid,)).fetchone()[0]
    column = policy.partition_column
    routes = [Route(policy.schema, c.target, f"{c.month:%Y-%m}",
                    lambda ref, c=c: range_predicate(column, c.lower, c.upper, ref),
                    tuple(month_table_statements(policy, c.target, c.lower, c.upper, parent, extra_indexes)))
              for c in creates]
    fresh = free_name(conn, default.schema, f"{default.name}_next")
    parked = free_name(conn, default.schema, f"{default.name}_replaced")

    def other_months(ref):
        return sql.SQL("NOT ({})").format(sql.SQL(" OR ").join(
            range_predicate(column, c.lower, c.upper, ref) for c in creates))

    default_storage = storage_parameters(conn, [default.oid])[default.oid]
    routes.append(Route(default.schema, fresh, "DEFAULT", other_months,
                        (create_like_statement(qualified(default.schema, fresh), parent, default_storage),)))
    swap: list[sql.Composable] = [sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, default_id)]
    for c in creates:
        swap += attach_month_statements(parent, qualified(policy.schema, c.target), c.target, c.lower, c.upper)
    swap += [
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(default_id, sql.Identifier(parked)),
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(qualified(default.schema, fresh), sql.Identifier(default.name)),
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(parent, default_id),
    ]
    move = OnlineMove(
        kind="split_default", root_oid=root_oid, source=Relation(default.oid, default.schema, default.name),
        columns=insertable_columns(conn, default.oid), key=key, routes=tuple(routes),
        lock=(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(parent),
              sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(default_id)),
        swap=tuple(swap), drop_source=True, batch_rows=policy.online_move_batch_rows)
    months = ", ".join(f"{c.month:%Y-%m}" for c in creates)
    return SplitDefault(
        creates[0].month, ", ".join(c.target for c in creates),
        f"{default.name} holds at least {rows} rows: create {months} "
        f"by moving them online (capture changes, copy in batches of about {move.batch_target_s}s, at most "
        f"{policy.online_move_batch_rows} rows, verify, "
        f"swap in a fresh {default.name}); the game waits only for the swap",
        (), creates=tuple(creates), move=move, default_rows_at_least=rows)


def apply_split(conn: psycopg.Connection, action: SplitDefault, retry: db.LockRetryPolicy, *,
                progress: Optional[Callable[[str], None]] = None, hook: Optional[Hook] = None) -> list[ActionResult]:
    """Run the move; one result per month created, with the rows it took from DEFAULT
    (counted under the swap's locks) and the swap's lock wait."""
    started = time.monotonic()
    outcome = action.move.run(conn, retry=retry, progress=progress, hook=hook)
    seconds = time.monotonic() - started
    return [ActionResult(c, outcome.swap_attempts, outcome.swap_lock_wait_s, seconds,
                         outcome.rows_by_route.get(f"{c.month:%Y-%m}", 0)) for c in action.creates]
