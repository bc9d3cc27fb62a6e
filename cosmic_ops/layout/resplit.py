"""Online re-split of a hash partition to a larger modulus (4 -> 8, 8 -> 16), one remainder
at a time, while the game reads and writes it.

PostgreSQL accepts partitions of different moduli under one parent as long as each modulus
divides the next larger one, so remainder ``r`` of modulus ``m`` is exactly remainders
``r, r + m, ..., r + (k - 1) m`` of modulus ``k m``. For one remainder, an online move
(``cosmic_ops.online``) copies the partition's rows into the ``k`` new tables while capturing
every change (an update of the key moves a row between them), verifies them (count and
checksum per new remainder), and swaps: detach the old partition, attach the new ones (no
scan: each carries a CHECK equal to its partition constraint, the parent's own constraint
included when the table is itself a partition), all in one transaction of milliseconds.

Seed 001's procedure (detach, rename, create, ``INSERT ... SELECT``, drop) hides the rows of
the detached partition from the game for the whole copy, and its writes for them fail; here
the old partition stays attached and current until the swap.

The old partition is dropped after the swap (its rows were verified copied) unless the
caller keeps it, detached and renamed, for its own retention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import psycopg
from psycopg import sql

from .. import db, recovery
from ..online import OnlineMove, Route, unique_key
from ..online.move import Hook, MoveOutcome, Relation, insertable_columns
from ..partitions.actions import create_like_statement, qualified
from ..partitions.catalog import storage_parameters
from ..partitions.split_default import free_name
from ..units import PolicyError
from .catalog import HashPartition, HashTable, hash_table


class SplitRefused(RuntimeError):
    """The table or the requested split cannot be done as asked; nothing was changed."""


@dataclass(frozen=True)
class RemainderSplit:
    """The plan for one old partition: its rows go to ``targets`` (modulus, remainder, name)."""

    table: HashTable
    old: HashPartition
    modulus: int
    targets: tuple[tuple[int, int, str], ...]
    rows: int
    rows_exact: bool
    move: OnlineMove

    @property
    def label(self) -> str:
        return f"{self.old.name} ({self.old.modulus}, {self.old.remainder})"

    def to_markdown(self, conn: psycopg.Connection) -> str:
        into = ", ".join(f"`{name}` (modulus {m}, remainder {r})" for m, r, name in self.targets)
        return "\n".join([
            f"### {self.old.schema}.{self.old.name}: modulus {self.old.modulus}, remainder {self.old.remainder}",
            f"{self.rows:,} rows ({'counted' if self.rows_exact else 'estimated'}) move into {into}.",
            "", "```sql", *self.move.render(conn), "```", ""])


@dataclass
class SplitPlan:
    table: HashTable
    modulus: int
    remainders: list[RemainderSplit]
    already: list[str] = field(default_factory=list)  # old partitions at the target modulus already

    def to_markdown(self, conn: psycopg.Connection) -> str:
        head = [f"**Re-split of `{self.table.label}` to modulus {self.modulus}** "
                f"(today: moduli {', '.join(map(str, self.table.moduli))}, key {self.table.key_definition})", ""]
        if not self.remainders:
            head.append("Nothing to do: every partition already has modulus "
                        f"{self.modulus} or larger.")
        return "\n".join(head + [r.to_markdown(conn) for r in self.remainders])

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.remainders)


@dataclass
class RemainderResult:
    split: RemainderSplit
    outcome: MoveOutcome
    seconds: float
    kept_old: Optional[str]

    def metadata(self) -> dict:
        return {"partition": self.split.old.name, "rows_moved": self.outcome.rows_copied,
                "rows_by_new_partition": self.outcome.rows_by_route, "seconds": round(self.seconds, 3),
                "copy_seconds": round(self.outcome.copy_seconds, 3), "batches": self.outcome.batches,
                "swap_seconds": round(self.outcome.swap_seconds, 4),
                "swap_lock_wait_s": round(self.outcome.swap_lock_wait_s, 4),
                "swap_attempts": self.outcome.swap_attempts,
                "verified": all(v["equal"] for v in self.outcome.verification.values()),
                "verification": self.outcome.verification, "kept_old_table": self.kept_old}


@dataclass
class SplitResult:
    plan: SplitPlan
    results: list[RemainderResult]
    dry_run: bool
    recovered: list[str] = field(default_factory=list)

    @property
    def rows_moved(self) -> int:
        return sum(r.outcome.rows_copied for r in self.results)

    @property
    def verified(self) -> bool:
        return all(r.metadata()["verified"] for r in self.results)


def _hash_predicate(table: HashTable, modulus: int, remainder: int):
    def predicate(ref):
        return sql.SQL("satisfies_hash_partition({}::oid, {}, {}, {})").format(
            sql.Literal(table.oid), sql.Literal(modulus), sql.Literal(remainder),
            sql.SQL(", ").join(ref(c) for c in table.key_columns))
    return predicate


def _check_statement(conn: psycopg.Connection, table: HashTable, target: sql.Identifier, name: str,
                     modulus: int, remainder: int) -> sql.Composable:
    """A CHECK equal to the new partition's constraint, so its ATTACH needs no scan. When the
    hash table is itself a partition its own constraint is part of it (rendered by the server)."""
    inherited = conn.execute("SELECT pg_get_partition_constraintdef(%s::oid)", (table.oid,)).fetchone()[0]
    own = _hash_predicate(table, modulus, remainder)(sql.Identifier)
    condition = own if inherited is None else sql.SQL("({}) AND {}").format(sql.SQL(inherited), own)
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})").format(
        target, sql.Identifier(f"{name}_attach_check"), condition)


def _foreign_keys(conn: psycopg.Connection, relation_oid: int) -> list[str]:
    """Foreign keys the new tables must carry before ATTACH (else ATTACH validates them, a scan
    under the swap's lock), as the server renders them."""
    return [r[0] for r in conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::oid AND contype = 'f' "
        "ORDER BY conname", (relation_oid,))]


def _row_count(conn: psycopg.Connection, partition: HashPartition, exact: bool) -> tuple[int, bool]:
    if exact:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(partition.schema, partition.name))).fetchone()[0], True
    estimate = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::oid",
                            (partition.oid,)).fetchone()[0]
    return estimate, False


def plan_resplit(conn: psycopg.Connection, table: str, modulus: int, *, remainders: Optional[Sequence[int]] = None,
                 keep_old: bool = False, batch_rows: int = 10_000, exact_counts: bool = False) -> SplitPlan:
    """What re-splitting ``table`` to ``modulus`` does, partition by partition, from the catalog.

    ``remainders`` picks old partitions by their remainder (of their own modulus); default all
    whose modulus is below ``modulus``."""
    if isinstance(modulus, bool) or not isinstance(modulus, int) or not 2 <= modulus <= 1024:
        raise PolicyError(f"modulus must be a whole number from 2 to 1024, got {modulus!r}")
    if not 100 <= batch_rows <= 1_000_000:
        raise PolicyError(f"batch_rows must be from 100 to 1000000, got {batch_rows!r}")
    hashed = hash_table(conn, table)
    if not hashed.key_columns:
        raise SplitRefused(f"{hashed.label} is hashed on an expression ({hashed.key_definition}); only column keys")
    if hashed.coverage != 1:
        raise SplitRefused(f"{hashed.label} covers {hashed.coverage} of the hash space; fix the gap first")
    if any(modulus % m for m in hashed.moduli):
        raise SplitRefused(f"modulus {modulus} is not a multiple of every modulus of {hashed.label} "
                           f"({', '.join(map(str, hashed.moduli))}); PostgreSQL needs each to divide the next")
    root_oid = conn.execute("SELECT pg_partition_root(%s::oid)::oid::bigint", (hashed.oid,)).fetchone()[0]
    parent = qualified(hashed.schema, hashed.name)
    plan = SplitPlan(hashed, modulus, [])
    for old in hashed.partitions:
        if old.modulus >= modulus:
            plan.already.append(old.name)
            continue
        if remainders is not None and old.remainder not in remainders:
            continue
        if old.relkind != "r" or old.detach_pending:
            raise SplitRefused(f"{old.label} is {'detach pending' if old.detach_pending else 'not a plain table'}; "
                               "only plain tables are re-split")
        key = unique_key(conn, old.oid)
        if key is None:
            raise SplitRefused(f"{old.label} has no primary key or unique index on NOT NULL columns: "
                               "changes cannot be captured by key")
        storage = storage_parameters(conn, [old.oid])[old.oid]
        foreign_keys = _foreign_keys(conn, hashed.oid)
        targets, routes = [], []
        for step in range(modulus // old.modulus):
            remainder = old.remainder + step * old.modulus
            name = free_name(conn, old.schema, f"{hashed.name}_m{modulus}_r{remainder}")
            target = sql.Identifier(old.schema, name)
            create = [create_like_statement(target, parent, storage),
                      *[sql.SQL("ALTER TABLE {} ADD FOREIGN KEY {}").format(
                          target, sql.SQL(fk.removeprefix("FOREIGN KEY "))) for fk in foreign_keys],
                      _check_statement(conn, hashed, target, name, modulus, remainder)]
            targets.append((modulus, remainder, name))
            routes.append(Route(old.schema, name, f"{modulus}/{remainder}",
                                _hash_predicate(hashed, modulus, remainder), tuple(create)))
        old_id = sql.Identifier(old.schema, old.name)
        swap: list[sql.Composable] = [sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, old_id)]
        for m, r, name in targets:
            swap += [sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
                         parent, sql.Identifier(old.schema, name), sql.Literal(m), sql.Literal(r)),
                     sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                         sql.Identifier(old.schema, name), sql.Identifier(f"{name}_attach_check"))]
        if keep_old:
            swap.append(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                old_id, sql.Identifier(free_name(conn, old.schema, f"{old.name}_split_m{old.modulus}"))))
        move = OnlineMove(
            kind="split_hash", root_oid=root_oid, source=Relation(old.oid, old.schema, old.name),
            columns=insertable_columns(conn, old.oid), key=key, routes=tuple(routes),
            lock=(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(parent),
                  sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(old_id)),
            swap=tuple(swap), drop_source=not keep_old, batch_rows=batch_rows)
        rows, exact = _row_count(conn, old, exact_counts)
        plan.remainders.append(RemainderSplit(hashed, old, modulus, tuple(targets), rows, exact, move))
    db.end_read(conn)
    return plan


def resplit_hash_partitions(
    conn: psycopg.Connection, table: str, modulus: int, *, remainders: Optional[Sequence[int]] = None,
    keep_old: bool = False, batch_rows: int = 10_000, dry_run: bool = False,
    retry: db.LockRetryPolicy = db.LockRetryPolicy(), lock_wait_s: float = 0.0,
    progress: Optional[Callable[[str], None]] = None, hook: Optional[Hook] = None,
) -> SplitResult:
    """Plan, and unless ``dry_run`` apply, one old partition after another, holding the table
    (``recovery.table_maintenance`` of its root: an interrupted split is undone or finished
    first). A dry run takes no lock and changes nothing."""
    db.end_read(conn)
    if dry_run:
        plan = plan_resplit(conn, table, modulus, remainders=remainders, keep_old=keep_old, batch_rows=batch_rows,
                            exact_counts=True)
        return SplitResult(plan, [], True)
    root = conn.execute("SELECT pg_partition_root(%s::regclass)::oid::bigint", (table,)).fetchone()
    if root is None or root[0] is None:
        raise SplitRefused(f"no table {table!r}")
    with recovery.table_maintenance(conn, root[0], wait_s=lock_wait_s, retry=retry) as recovered:
        plan = plan_resplit(conn, table, modulus, remainders=remainders, keep_old=keep_old, batch_rows=batch_rows)
        result = SplitResult(plan, [], False, recovered.lines)
        for split in plan.remainders:
            started = time.monotonic()
            outcome = split.move.run(conn, retry=retry, progress=progress, hook=hook)
            kept = None
            if keep_old:
                kept = conn.execute("SELECT relname FROM pg_class WHERE oid = %s::oid",
                                    (split.old.oid,)).fetchone()[0]
                db.end_read(conn)
            result.results.append(RemainderResult(split, outcome, time.monotonic() - started, kept))
    return result


# ---------------------------------------------------------------------------------------------
# After the swap: proof, then the drop of the old partitions kept detached


@dataclass(frozen=True)
class KeptPartition:
    move_id: int
    oid: int
    name: str  # as it is called now (renamed aside at the swap)
    source_name: str  # as it was called when it was a partition
    swapped_at: object
    verified: bool
    rows: int


def verified_moves(conn: psycopg.Connection, move_ids: Sequence[int]) -> dict[int, tuple[bool, str]]:
    """For each move: did it swap after a verification in which every new partition held exactly
    the old one's rows (count and checksum), and are the new partitions attached? With the reason."""
    found: dict[int, tuple[bool, str]] = {}
    rows = conn.execute(
        "SELECT move_id, phase, verification, routes FROM cosmic_ops.online_moves WHERE move_id = ANY(%s)",
        (list(move_ids),)).fetchall() if move_ids else []
    for move_id, phase, verification, routes in rows:
        if phase not in ("swapped", "done"):
            found[move_id] = (False, f"move {move_id} is {phase}")
            continue
        unequal = [label for label, v in (verification or {}).items() if not v.get("equal")]
        if not verification or unequal:
            found[move_id] = (False, f"move {move_id}: verification missing or unequal for {unequal}")
            continue
        detached = [r["name"] for r in routes if not conn.execute(
            "SELECT coalesce((SELECT relispartition FROM pg_class WHERE oid = %s::oid), false)",
            (r["oid"],)).fetchone()[0]]
        found[move_id] = ((False, f"move {move_id}: new partitions not attached: {detached}") if detached else
                          (True, f"move {move_id}: " + ", ".join(
                              f"{v['table']} {v['rows']} rows = source" for v in verification.values())))
    for move_id in move_ids:
        found.setdefault(move_id, (False, f"move {move_id} is not recorded"))
    db.end_read(conn)
    return found


def kept_partitions(conn: psycopg.Connection, table: str) -> list[KeptPartition]:
    """Old partitions a re-split of ``table``'s tree kept, detached, and that still exist."""
    root = conn.execute("SELECT pg_partition_root(%s::regclass)::oid::bigint", (table,)).fetchone()[0]
    if not conn.execute("SELECT to_regclass('cosmic_ops.online_moves') IS NOT NULL").fetchone()[0]:
        return []
    rows = conn.execute(
        """
        SELECT m.move_id, c.oid::bigint, c.relname, m.source_name, m.swapped_at, m.verification,
               (SELECT sum((v->>'rows')::bigint) FROM jsonb_each(m.verification) e(k, v))
        FROM cosmic_ops.online_moves m JOIN pg_class c ON c.oid = m.source_oid
        WHERE m.root_oid = %s::oid AND m.kind = 'split_hash' AND NOT m.drop_source
          AND m.phase = 'done' AND NOT c.relispartition
        ORDER BY m.move_id
        """, (root,)).fetchall()
    db.end_read(conn)
    return [KeptPartition(m, oid, name, source, swapped, all(v.get("equal") for v in (ver or {}).values())
                          and bool(ver), int(n or 0))
            for m, oid, name, source, swapped, ver, n in rows]


def drop_kept_partitions(conn: psycopg.Connection, table: str, *, swapped_before, dry_run: bool = False,
                         retry: db.LockRetryPolicy = db.LockRetryPolicy(), lock_wait_s: float = 0.0) -> list[KeptPartition]:
    """Drop the old partitions kept by re-splits of ``table`` whose move was verified and that
    swapped before ``swapped_before`` (the run's clock minus the operator's retention; ``None``:
    no retention, drop once verified); returns those dropped (or, in a dry run, would be)."""
    due = [k for k in kept_partitions(conn, table)
           if k.verified and (swapped_before is None or k.swapped_at < swapped_before)]
    if dry_run or not due:
        return due
    root = conn.execute("SELECT pg_partition_root(%s::regclass)::oid::bigint", (table,)).fetchone()[0]
    db.end_read(conn)
    with recovery.table_maintenance(conn, root, wait_s=lock_wait_s, retry=retry):
        for kept in due:
            def drop(c: psycopg.Connection, kept=kept) -> None:
                row = c.execute("SELECT n.nspname, c.relname, c.relispartition FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s::oid", (kept.oid,)).fetchone()
                if row is not None and not row[2]:
                    c.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(row[0], row[1])))
            db.run_locked(conn, drop, what=f"drop kept partition {kept.name}", policy=retry)
    return due
