"""Hash-partitioned tables as the catalog knows them, never by name.

A table is hash-partitioned when ``pg_partitioned_table.partstrat = 'h'``; it may itself be a
partition of another table (``celestial_bodies_planets`` is the ``planet`` list partition of
``celestial_bodies``). Its partitions come from ``pg_inherits``, and each one's modulus and
remainder from its bound as ``pg_get_expr(relpartbound)`` renders it,
``FOR VALUES WITH (modulus 4, remainder 1)``. A remainder may be partitioned further: its
rows and bytes are those of its leaves (``pg_partition_tree``).

Partitions of different moduli may coexist under one parent (each modulus divides the next
larger one, so remainder r of modulus m is exactly remainders r and r+m of modulus 2m): every
figure here is per (modulus, remainder), never assuming one modulus per table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import psycopg

_HASH_BOUND = re.compile(r"^FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)$")

# Every hash-partitioned table (temporary ones of other sessions cannot be read: left out),
# with its key and its direct partitions; a parent without partitions yields one row of NULLs.
_HASH_TABLES_SQL = """
SELECT p.oid::bigint, pn.nspname, p.relname,
       rn.nspname, r.relname,
       -- key columns by name; attnum 0 marks an expression, which has no column to group by
       array(SELECT coalesce(a.attname::text, '')
             FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       pg_get_partkeydef(p.oid),
       c.oid::bigint, cn.nspname, c.relname, c.relkind::text,
       pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
FROM pg_partitioned_table pt
JOIN pg_class p ON p.oid = pt.partrelid
JOIN pg_namespace pn ON pn.oid = p.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(p.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN pg_inherits i ON i.inhparent = p.oid
LEFT JOIN pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_namespace cn ON cn.oid = c.relnamespace
WHERE pt.partstrat = 'h' AND p.relpersistence <> 't'
  AND (%(parent)s::regclass IS NULL OR p.oid = %(parent)s::regclass)
ORDER BY pn.nspname, p.relname, c.relname
"""


class NotHashPartitioned(LookupError):
    """The named table does not exist or is not hash-partitioned; nothing was done."""


@dataclass(frozen=True)
class HashPartition:
    """One direct partition of a hash-partitioned table: the rows whose key hashes to
    ``remainder`` modulo ``modulus``. ``relkind`` is ``r`` (a table), ``p`` (partitioned
    further) or ``f`` (a foreign table)."""

    oid: int
    schema: str
    name: str
    modulus: int
    remainder: int
    relkind: str
    detach_pending: bool = False

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def hash_fraction(self) -> Fraction:
        """The part of the hash space this partition holds: 1/modulus."""
        return Fraction(1, self.modulus)


@dataclass(frozen=True)
class HashTable:
    """A hash-partitioned table (root or sub-partition), its key and its partitions by
    (modulus, remainder)."""

    oid: int
    schema: str
    name: str
    root_schema: str
    root_name: str
    key_columns: tuple[str, ...]  # empty when the key has an expression
    key_definition: str  # as pg_get_partkeydef renders it: "HASH (save_id)"
    partitions: tuple[HashPartition, ...]

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def root_label(self) -> str:
        return f"{self.root_schema}.{self.root_name}"

    @property
    def is_sub_partition(self) -> bool:
        return (self.root_schema, self.root_name) != (self.schema, self.name)

    @property
    def moduli(self) -> tuple[int, ...]:
        return tuple(sorted({p.modulus for p in self.partitions}))

    @property
    def modulus(self) -> Optional[int]:
        """The largest modulus present: the table's modulus once every remainder has it."""
        return max(self.moduli) if self.partitions else None

    @property
    def coverage(self) -> Fraction:
        """The part of the hash space that has a partition (1 when complete). Below 1, an
        insert whose key hashes into the gap fails: no partition of relation ... found for row."""
        return sum((p.hash_fraction for p in self.partitions), Fraction(0))

    def partition_for(self, modulus: int, remainder: int) -> Optional[HashPartition]:
        return next((p for p in self.partitions if (p.modulus, p.remainder) == (modulus, remainder)), None)


def parse_hash_bound(bound: str) -> tuple[int, int]:
    """``FOR VALUES WITH (modulus 4, remainder 1)`` -> (4, 1)."""
    found = _HASH_BOUND.match(bound or "")
    if not found:
        raise ValueError(f"not a hash partition bound: {bound!r}")
    return int(found[1]), int(found[2])


def _tables(conn: psycopg.Connection, parent: Optional[str]) -> list[HashTable]:
    rows = conn.execute(_HASH_TABLES_SQL, {"parent": parent}).fetchall()
    tables: dict[int, HashTable] = {}
    parts: dict[int, list[HashPartition]] = {}
    for (oid, schema, name, root_schema, root_name, key_columns, key_def,
         part_oid, part_schema, part_name, relkind, bound, pending) in rows:
        if oid not in tables:
            columns = tuple(key_columns)
            tables[oid] = HashTable(oid, schema, name, root_schema, root_name,
                                    () if "" in columns else columns, key_def, ())
            parts[oid] = []
        if part_oid is not None:
            modulus, remainder = parse_hash_bound(bound)
            parts[oid].append(HashPartition(part_oid, part_schema, part_name, modulus, remainder, relkind,
                                            bool(pending)))
    return [
        HashTable(**{**table.__dict__,
                     "partitions": tuple(sorted(parts[oid], key=lambda p: (p.modulus, p.remainder)))})
        for oid, table in tables.items()
    ]


def hash_tables(conn: psycopg.Connection) -> list[HashTable]:
    """Every hash-partitioned table of the database, sub-partitions included, by schema and name."""
    return _tables(conn, None)


def hash_table(conn: psycopg.Connection, table: str) -> HashTable:
    """The hash-partitioned table ``table`` (a regclass text: ``celestial_bodies_planets``,
    ``public."Odd Name"``), or ``NotHashPartitioned``."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        raise NotHashPartitioned(f"no table {table!r} in database {conn.info.dbname!r}")
    found = _tables(conn, table)
    if not found:
        raise NotHashPartitioned(f"{table!r} is not hash-partitioned")
    return found[0]
