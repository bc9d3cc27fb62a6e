"""A save's rows as PostgreSQL sends them, column by column (document format ``cosmic_ops.save/4``).

PostgreSQL does the reading and the value formatting: one ``COPY (DELETE ...
RETURNING ...) TO STDOUT (FORMAT binary)`` per table for a whole batch of saves, so
the rows packed are exactly the rows deleted, found and removed in one pass (the
caller's transaction commits only once every document has been verified). Rows
are put in save and primary-key order in numpy (a server-side sort of wide rows
costs more than the scan). Every value stays in the server's own binary form (``*_send``), so
whatever the type -- NaN, -0, ±infinity, int8 limits, jsonb, numeric -- rehydration
is a ``COPY ... FROM STDIN (FORMAT binary)`` of the same bytes, and no setting
(DateStyle, TimeZone, extra_float_digits) can change them.

Python only rearranges bytes, with numpy, over the whole batch at once:

- fixed-width columns (int2/4/8, date, timestamp[tz], float4/8, bool) become
  numbers: integers as the distance from the batch minimum, or, where they never
  decrease within a save (ids, sequences), as the step from the previous row;
  float8 as a scaled integer when every value is exactly a short decimal (checked
  bit for bit, like DuckDB's ALP); then byte-shuffled (byte 0 of every value,
  then byte 1, ...) so the codec sees long runs. A nullable column is read as
  ``coalesce(col, 0)`` plus a NULL mask.
- every other column keeps its COPY fields (length, then bytes) back to back.

The encoder checks itself: every transform is undone over the batch and compared
byte for byte with what PostgreSQL sent, and every document is read back and its
blocks compared with the batch, before anything is stored.

A document is one JSON header line, then per table: the NULL masks, the 8-, 4- and
1-byte shuffled blocks, then the variable-width blocks. The header names each
table's layout (columns, types, nullability) by fingerprint; the layouts
themselves are recorded once in ``cosmic_ops.save_layouts`` (a schema registry),
so each save does not carry its tables' column lists.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import psycopg
from psycopg import sql

FORMAT = "cosmic_ops.save/4"
# A float8 column is stored as scaled integers when every value is a decimal of at most this many digits.
MAX_DECIMALS = 6
# COPY binary: signature, flags, header-extension length; each tuple then a field count.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_HEADER = COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"

# Fixed-width types: (bytes on the wire, big-endian numpy type, placeholder for NULL, kind).
_FIXED = {
    "int2": (2, ">i2", "0", "int"),
    "int4": (4, ">i4", "0", "int"),
    "int8": (8, ">i8", "0", "int"),
    "date": (4, ">i4", "epoch", "int"),
    "timestamp": (8, ">i8", "epoch", "int"),
    "timestamptz": (8, ">i8", "epoch", "int"),
    "float8": (8, ">f8", "0", "float8"),
    "float4": (4, ">u4", "0", "raw"),
    "bool": (1, ">u1", "false", "raw"),
}
# Codes of stored fixed columns and their stored width: offset ints, stepped ints, decimals,
# raw float8 bits, raw 4-byte values, raw bytes.
_STORED_WIDTH = {"i": 8, "d": 8, "F": 8, "f": 8, "g": 4, "b": 1}


class EncodingMismatch(RuntimeError):
    """A document did not read back to what PostgreSQL sent: it is not used."""


@dataclass(frozen=True)
class TableLayout:
    """How one table's rows are read for packing, from the catalog."""

    table: str
    columns: tuple[str, ...]
    # pg_catalog types by name (int8, text, ...), any other type schema-qualified.
    types: tuple[str, ...]
    # Type modifiers (numeric(20,4), timestamptz(3), ...): binary input applies them, so a
    # changed precision must not meet old values unnoticed.
    typmods: tuple[int, ...]
    nullable: tuple[bool, ...]
    # Rows of a save are ordered by this column (the first integer primary-key column after
    # save_id) so ids step by small amounts; None keeps the order the rows were read in.
    sort_column: str | None = None

    @property
    def fingerprint(self) -> str:
        """Names this layout in documents and in the registry (the sort column is not part of it)."""
        text = json.dumps([self.table, self.columns, self.types, self.typmods, self.nullable], separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def describe(self) -> str:
        return ", ".join(f"{c} {t}{f'({m})' if m >= 0 else ''}{'' if n else ' NOT NULL'}"
                         for c, t, m, n in zip(self.columns, self.types, self.typmods, self.nullable))

    @property
    def fixed(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t in _FIXED]

    @property
    def var(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t not in _FIXED]

    @property
    def masked(self) -> list[int]:
        return [i for i in self.fixed if self.nullable[i]]

    def take_statement(self) -> sql.Composed:
        """Delete the rows of ``save_id = ANY(%s)``, returning fixed values, NULL flags, other columns."""
        values = []
        for i in self.fixed:
            column = sql.Identifier("t", self.columns[i])
            if self.nullable[i]:
                placeholder = sql.Literal(_FIXED[self.types[i]][2])
                values.append(sql.SQL("coalesce({}, {}::{})").format(
                    column, placeholder, sql.Identifier(self.types[i])))
            else:
                values.append(column)
        values += [sql.SQL("{} IS NULL").format(sql.Identifier("t", self.columns[i])) for i in self.masked]
        values += [sql.Identifier("t", self.columns[i]) for i in self.var]
        return sql.SQL(
            "COPY (DELETE FROM {table} AS t WHERE t.save_id = ANY(%s) RETURNING {values}) "
            "TO STDOUT (FORMAT binary)").format(values=sql.SQL(", ").join(values), table=sql.Identifier(self.table))

    def insert_statement(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(self.table), sql.SQL(", ").join(map(sql.Identifier, self.columns)))


def table_layout(conn: psycopg.Connection, table: str) -> TableLayout:
    rows = conn.execute(
        """SELECT a.attname,
                  CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN t.typname
                       ELSE format('%%I.%%I', n.nspname, t.typname) END,
                  a.atttypmod, NOT a.attnotnull, coalesce(array_position(pk.conkey, a.attnum), 0)
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_namespace n ON n.oid = t.typnamespace
           LEFT JOIN pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'
           WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""", (table,)).fetchall()
    if not rows:
        raise LookupError(f"table {table!r} not found")
    columns = tuple(r[0] for r in rows)
    if "save_id" not in columns:
        raise ValueError(f"{table} has no save_id column")
    key = [(name, kind) for name, kind, _, _, position in sorted(rows, key=lambda r: r[4]) if position]
    sort_column = next((name for name, kind in key if name != "save_id" and kind in _FIXED
                        and _FIXED[kind][3] == "int"), None)
    return TableLayout(table, columns, tuple(r[1] for r in rows), tuple(r[2] for r in rows),
                       tuple(r[3] for r in rows), sort_column)


def record_layouts(conn: psycopg.Connection, layouts: Sequence[TableLayout]) -> None:
    """Register the layouts documents are about to name (in the caller's transaction)."""
    for layout in layouts:
        conn.execute(
            "INSERT INTO cosmic_ops.save_layouts (fingerprint, table_name, columns, types, typmods, nullable) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING",
            (layout.fingerprint, layout.table, list(layout.columns), list(layout.types), list(layout.typmods),
             list(layout.nullable)))


def recorded_layout(conn: psycopg.Connection, fingerprint: str) -> TableLayout | None:
    row = conn.execute("SELECT table_name, columns, types, typmods, nullable FROM cosmic_ops.save_layouts "
                       "WHERE fingerprint = %s", (fingerprint,)).fetchone()
    if row is None:
        return None
    return TableLayout(row[0], tuple(row[1]), tuple(row[2]), tuple(row[3]), tuple(row[4]))


# --- reading COPY binary --------------------------------------------------------------------
@dataclass
class FixedColumn:
    index: int
    wire: np.ndarray            # big-endian values as sent (NULLs hold the placeholder)
    nulls: np.ndarray | None    # uint8 per row, 1 = NULL


@dataclass
class VarColumn:
    index: int
    data: bytes                 # every row's COPY field (int32 length, then the bytes) back to back
    ends: np.ndarray            # per row: end offset of its field in ``data``


@dataclass
class BatchRows:
    """One table's rows of a batch of saves, in save order, column by column."""

    layout: TableLayout
    save_ids: list[int]
    starts: np.ndarray          # row index where each save begins, plus the total row count
    fixed: list[FixedColumn]
    var: list[VarColumn]

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def count(self, number: int) -> int:
        return int(self.starts[number + 1] - self.starts[number])

    def value_bytes(self, number: int) -> int:
        """Bytes of save ``number``'s rows in PostgreSQL's binary form (fixed widths, variable fields)."""
        start, end = int(self.starts[number]), int(self.starts[number + 1])
        fixed = sum(c.wire.dtype.itemsize for c in self.fixed) * (end - start)
        return fixed + sum(high - low for low, high in (_slice_bounds(c.ends, start, end) for c in self.var))


def _tuples(data: bytes, fixed_bytes: int, var_fields: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Row start offsets, and the offset and length of each variable-width field, of a COPY binary stream."""
    if not data.startswith(COPY_SIGNATURE):
        raise EncodingMismatch("not a COPY binary stream")
    position = 19 + int.from_bytes(data[15:19], "big")
    end = len(data) - 2
    if data[end:] != COPY_TRAILER:
        raise EncodingMismatch("COPY binary stream without its trailer")
    starts: list[int] = []
    positions: list[int] = []
    lengths: list[int] = []
    unpack = struct.Struct(">i").unpack_from
    while position < end:
        starts.append(position)
        position += fixed_bytes
        for _ in range(var_fields):
            (length,) = unpack(data, position)
            positions.append(position)
            lengths.append(length)
            position += 4 + (length if length > 0 else 0)
    if position != end:
        raise EncodingMismatch("COPY binary stream ends inside a row")
    return np.array(starts, dtype=np.int64), positions, lengths


def _gather(buffer: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The bytes ``buffer[offsets[i]:offsets[i] + sizes[i]]`` of every i, back to back."""
    total = int(sizes.sum())
    if not total:
        return buffer[:0]
    shift = np.repeat(offsets - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    return buffer[shift + np.arange(total)]


def parse_rows(layout: TableLayout, data: bytes, save_ids: Sequence[int]) -> BatchRows:
    """Split the COPY stream of ``layout.take_statement()`` into columns."""
    fixed, masked, var = layout.fixed, layout.masked, layout.var
    widths = [*(_FIXED[layout.types[i]][0] for i in fixed), *(1 for _ in masked)]
    fixed_bytes = 2 + sum(4 + w for w in widths)
    starts, positions, lengths = _tuples(data, fixed_bytes, len(var))
    buffer = np.frombuffer(data, np.uint8)
    matrix = buffer[starts[:, None] + np.arange(fixed_bytes)] if len(starts) else np.zeros((0, fixed_bytes), np.uint8)
    # The field count and each fixed field's length are the same on every row, or the read is refused.
    expected = bytearray((len(widths) + len(var)).to_bytes(2, "big"))
    offsets = []
    at = 2
    for width in widths:
        expected += width.to_bytes(4, "big") + bytes(width)
        offsets.append(at + 4)
        at += 4 + width
    frame = np.frombuffer(bytes(expected), np.uint8)
    framing = np.ones(fixed_bytes, bool)
    for offset, width in zip(offsets, widths):
        framing[offset: offset + width] = False
    expected_frame = np.broadcast_to(frame[framing], (len(starts), framing.sum()))
    if len(starts) and not np.array_equal(matrix[:, framing], expected_frame):
        raise EncodingMismatch(f"{layout.table}: unexpected field count or NULL in a fixed-width column")

    def wire(number: int) -> np.ndarray:
        offset, width = offsets[number], widths[number]
        return np.ascontiguousarray(matrix[:, offset: offset + width])

    def column(name: str) -> np.ndarray:
        number = fixed.index(layout.columns.index(name))
        return wire(number).view(_FIXED[layout.types[layout.columns.index(name)]][1]).reshape(-1).astype(np.int64)

    ids = column("save_id")
    wanted = np.array(save_ids, dtype=np.int64)
    if not np.isin(ids, wanted).all():
        raise EncodingMismatch(f"{layout.table}: rows of other saves were read")
    order = np.lexsort((column(layout.sort_column), ids) if layout.sort_column else (ids,))
    matrix = matrix[order]
    ids = ids[order]

    mask_of = {index: wire(len(fixed) + n).reshape(-1) for n, index in enumerate(masked)}
    columns = [FixedColumn(index, wire(n).view(_FIXED[layout.types[index]][1]).reshape(-1), mask_of.get(index))
               for n, index in enumerate(fixed)]
    var_columns = []
    if var:
        field_starts = np.array(positions, dtype=np.int64).reshape(-1, len(var))[order]
        sizes = (4 + np.maximum(np.array(lengths, dtype=np.int64), 0)).reshape(-1, len(var))[order]
        for n, index in enumerate(var):
            var_columns.append(VarColumn(index, _gather(buffer, field_starts[:, n], sizes[:, n]).tobytes(),
                                         np.cumsum(sizes[:, n])))
    save_starts = np.searchsorted(ids, wanted, side="left")
    return BatchRows(layout, list(save_ids), np.append(save_starts, len(ids)).astype(np.int64),
                     columns, var_columns)


def take_batch(conn: psycopg.Connection, layout: TableLayout, save_ids: Sequence[int]) -> BatchRows:
    """Delete the saves' rows of ``layout.table`` and return them, in the caller's transaction."""
    with conn.cursor().copy(layout.take_statement(), (list(save_ids),)) as copy:
        data = b"".join(copy)
    return parse_rows(layout, data, sorted(save_ids))


# --- per-save deltas and exact decimals ---------------------------------------------------------
def delta_by_save(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Differences to the previous value of the same save (the first value of each save stays itself).

    ``values`` are uint64 (modular: every value round-trips); ``starts`` the row where each
    save begins, then the row count.
    """
    diffs = np.diff(values, prepend=np.uint64(0))
    firsts = starts[:-1][starts[:-1] < starts[1:]]
    diffs[firsts] = values[firsts]
    return diffs


def undelta_by_save(diffs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The inverse of ``delta_by_save``."""
    sums = np.cumsum(diffs, dtype=np.uint64)
    if not len(sums):
        return sums
    before = np.where(starts[:-1] > 0, sums[np.maximum(starts[:-1] - 1, 0)], np.uint64(0))
    return sums - np.repeat(before.astype(np.uint64), np.diff(starts))


_POWERS = 10.0 ** np.arange(MAX_DECIMALS + 1)


def _decimal_scale(values: np.ndarray) -> int | None:
    """Fewest decimals k such that every value is float64(n) / 10**k for an integer n, bit for bit."""
    # -0.0 scales to the integer 0, which reads back as +0.0: such a column stays raw.
    if not len(values) or not np.all(np.isfinite(values)) or np.signbit(values[values == 0]).any():
        return None
    # Huge values overflow to infinity here, which never compares exact: no warning needed.
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(values * _POWERS[:, None])
        exact = np.all((scaled / _POWERS[:, None]).view(np.int64) == values.view(np.int64), axis=1)
        # Integers beyond 2**53 are not all exact doubles.
        exact &= np.max(np.abs(values)) * _POWERS < 2.0 ** 53
    return int(np.argmax(exact)) if exact.any() else None


def encode_decimals(floats: np.ndarray) -> tuple[list, np.ndarray] | None:
    """``["F", decimals, base]`` and the scaled integers' offsets from ``base`` (uint64), when every
    value is exactly a decimal of at most ``MAX_DECIMALS`` digits; else None (NaN, infinities and
    -0 never are)."""
    decimals = _decimal_scale(floats)
    if decimals is None:
        return None
    scaled = np.rint(floats * 10.0 ** decimals).astype(np.int64)
    base = int(scaled.min())
    return ["F", decimals, base], scaled.view(np.uint64) - np.int64(base).view(np.uint64)


def decode_decimals(spec: list, stored: np.ndarray) -> np.ndarray:
    """The float8 values ``encode_decimals`` stored under ``spec``."""
    return (stored + np.int64(spec[2]).view(np.uint64)).view(np.int64).astype(np.float64) / 10.0 ** spec[1]


# --- encoding ---------------------------------------------------------------------------------
@dataclass
class _Stored:
    """One fixed column over the batch as stored: spec (code and parameters) and values."""

    index: int
    spec: list
    values: np.ndarray
    nulls: np.ndarray | None


def _native(column: FixedColumn) -> np.ndarray:
    return column.wire.astype(column.wire.dtype.newbyteorder("="))


def _encode_int(values: np.ndarray, starts: np.ndarray) -> tuple[list, np.ndarray]:
    numbers = values.astype(np.int64).view(np.uint64)
    if not len(numbers):
        return ["i", 0], numbers
    base = int(values.astype(np.int64).min())
    offsets = numbers - np.int64(base).view(np.uint64)
    steps = np.diff(values.astype(np.int64))
    firsts = starts[:-1][starts[:-1] < starts[1:]]
    inner = np.ones(len(steps), bool)
    inner[firsts[firsts > 0] - 1] = False
    if len(steps) and np.all(steps[inner] >= 0):
        return ["d", base], delta_by_save(offsets, starts)
    return ["i", base], offsets


def _decode_int(spec: list, stored: np.ndarray, starts: np.ndarray) -> np.ndarray:
    if spec[0] == "d":
        stored = undelta_by_save(stored, starts)
    return (stored + np.int64(spec[1]).view(np.uint64)).view(np.int64)


def _encode_fixed(layout: TableLayout, column: FixedColumn, starts: np.ndarray) -> _Stored:
    kind = _FIXED[layout.types[column.index]][3]
    native = _native(column)
    if kind == "int":
        spec, stored = _encode_int(native, starts)
    elif kind == "float8":
        spec, stored = encode_decimals(native) or (["f"], native.view(np.uint64))
    else:
        width = native.dtype.itemsize
        spec, stored = (["g"] if width == 4 else ["b"]), native.view(np.uint32 if width == 4 else np.uint8)
    return _Stored(column.index, spec, np.ascontiguousarray(stored), column.nulls)


def _decode_fixed(spec: list, type_name: str, stored: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Stored values back to the big-endian wire values."""
    wire_type = np.dtype(_FIXED[type_name][1])
    code = spec[0]
    if code in ("i", "d"):
        native = _decode_int(spec, stored, starts)
    elif code == "F":
        native = decode_decimals(spec, stored)
    elif code == "f":
        native = stored.view(np.float64)
    else:
        native = stored
    return native.astype(wire_type.newbyteorder("=")).astype(wire_type) if code in ("i", "d") else \
        native.view(wire_type.newbyteorder("=")).astype(wire_type)


def _shuffle(block: np.ndarray, width: int) -> bytes:
    """(rows, columns) values -> per column, byte 0 of every row, then byte 1, ..."""
    rows, columns = block.shape
    return block.view(np.uint8).reshape(rows, columns, width).transpose(1, 2, 0).tobytes()


def _unshuffle(data: bytes, rows: int, columns: int, width: int, dtype) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8).reshape(columns, width, rows)
    return np.ascontiguousarray(planes.transpose(2, 0, 1)).view(dtype).reshape(rows, columns)


_GROUP_TYPES = {8: np.uint64, 4: np.uint32, 1: np.uint8}


@dataclass
class _EncodedTable:
    header: dict
    masks: np.ndarray | None                 # (rows, masked columns) uint8
    groups: dict[int, np.ndarray] = field(default_factory=dict)  # width -> (rows, columns) stored values
    var: list[VarColumn] = field(default_factory=list)


def _encode_table(batch: BatchRows) -> _EncodedTable:
    layout = batch.layout
    stored = [_encode_fixed(layout, column, batch.starts) for column in batch.fixed]
    # The transforms are undone over the whole batch before any document is built.
    for item, column in zip(stored, batch.fixed):
        back = _decode_fixed(item.spec, layout.types[item.index], item.values, batch.starts)
        if back.tobytes() != column.wire.tobytes():
            raise EncodingMismatch(f"{layout.table}.{layout.columns[item.index]} does not decode to what was read")
    groups = {}
    for width, dtype in _GROUP_TYPES.items():
        members = [s.values for s in stored if _STORED_WIDTH[s.spec[0]] == width]
        if members:
            groups[width] = np.column_stack(members).astype(dtype, copy=False)
    masked = [s.nulls for s in stored if s.nulls is not None]
    header = {"layout": layout.fingerprint, "fixed": [s.spec for s in stored]}
    return _EncodedTable(header, np.column_stack(masked) if masked else None, groups, batch.var)


def _slice_bounds(ends: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """Byte range in a variable-width column's data of rows [start, end)."""
    low = int(ends[start - 1]) if start else 0
    return low, (int(ends[end - 1]) if end > start else low)


def _save_blocks(table: _EncodedTable, start: int, end: int) -> tuple[list[int], list[bytes]]:
    """(byte length of each variable-width block, every block in document order) for rows [start, end)."""
    blocks = []
    if table.masks is not None:
        blocks.append(np.ascontiguousarray(table.masks[start:end].T).tobytes())
    for width in sorted(table.groups, reverse=True):
        blocks.append(_shuffle(table.groups[width][start:end], width))
    var_sizes = []
    for column in table.var:
        low, high = _slice_bounds(column.ends, start, end)
        var_sizes.append(high - low)
        blocks.append(column.data[low:high])
    return var_sizes, blocks


def encode_saves(batches: dict[str, BatchRows]) -> list[bytes]:
    """One document per save of the batch (every table's ``BatchRows`` holds the same saves, in order)."""
    tables = {name: _encode_table(batch) for name, batch in batches.items()}
    save_ids = next(iter(batches.values())).save_ids
    documents = []
    for number, save_id in enumerate(save_ids):
        header = {"format": FORMAT, "save_id": save_id, "tables": {}}
        body: list[bytes] = []
        for name, table in tables.items():
            batch = batches[name]
            start, end = int(batch.starts[number]), int(batch.starts[number + 1])
            var_sizes, blocks = _save_blocks(table, start, end)
            header["tables"][name] = {**table.header, "rows": end - start, "var_bytes": var_sizes}
            body += blocks
        documents.append(json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + b"".join(body))
    _check_documents(documents, batches, tables)
    return documents


# --- decoding ---------------------------------------------------------------------------------
@dataclass
class DecodedTable:
    layout: TableLayout
    rows: int
    masks: np.ndarray | None
    groups: dict[int, np.ndarray]
    fixed_specs: list[list]
    var: dict[int, bytes]

    def wire_columns(self) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """Fixed columns back to big-endian wire values, with their NULL masks."""
        position = {width: 0 for width in self.groups}
        masked = self.layout.masked
        out = {}
        starts = np.array([0, self.rows], dtype=np.int64)
        for index, spec in zip(self.layout.fixed, self.fixed_specs):
            width = _STORED_WIDTH[spec[0]]
            stored = self.groups[width][:, position[width]]
            position[width] += 1
            nulls = self.masks[:, masked.index(index)] if index in masked else None
            out[index] = (_decode_fixed(spec, self.layout.types[index], np.ascontiguousarray(stored), starts), nulls)
        return out

    def copy_stream(self) -> bytes:
        """The rows as a COPY binary stream, columns in table order (NULLs as PostgreSQL writes them)."""
        fixed = self.wire_columns()
        fields: list[list[bytes]] = []
        for index in range(len(self.layout.columns)):
            if index in fixed:
                wire, nulls = fixed[index]
                size = wire.dtype.itemsize
                prefix, raw = size.to_bytes(4, "big"), wire.tobytes()
                fields.append([b"\xff\xff\xff\xff" if nulls is not None and nulls[r]
                               else prefix + raw[r * size:(r + 1) * size] for r in range(self.rows)])
            else:
                fields.append(_split_fields(self.var[index], self.rows))
        count = len(self.layout.columns).to_bytes(2, "big")
        return COPY_HEADER + b"".join(count + b"".join(row) for row in zip(*fields)) + COPY_TRAILER


def _split_fields(data: bytes, rows: int) -> list[bytes]:
    out, position = [], 0
    for _ in range(rows):
        length = int.from_bytes(data[position:position + 4], "big", signed=True)
        end = position + 4 + max(length, 0)
        out.append(data[position:end])
        position = end
    if position != len(data):
        raise ValueError("variable-width block does not hold the row count")
    return out


LayoutResolver = Callable[[str, str], TableLayout]


def parse(raw: bytes, layout_of: LayoutResolver) -> dict:
    """The header, with each table's ``DecodedTable`` under ``"decoded"``.

    ``layout_of(table, fingerprint)`` gives the layout a table's part was written with.
    """
    line, _, body = raw.partition(b"\n")
    header = json.loads(line)
    if header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document: {header.get('format')!r}")
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        block = body[offset: offset + size]
        if len(block) != size:
            raise ValueError(f"document body ends inside a block ({len(block)} of {size} bytes)")
        offset += size
        return block

    for name, part in header["tables"].items():
        layout = layout_of(name, part["layout"])
        rows, masked, specs = part["rows"], layout.masked, part["fixed"]
        if len(specs) != len(layout.fixed) or len(part["var_bytes"]) != len(layout.var):
            raise ValueError(f"{name}: document blocks do not match layout {part['layout']}")
        masks = np.frombuffer(take(rows * len(masked)), np.uint8).reshape(len(masked), rows).T if masked else None
        groups = {}
        for width in sorted(_GROUP_TYPES, reverse=True):
            count = sum(1 for spec in specs if _STORED_WIDTH[spec[0]] == width)
            if count:
                groups[width] = _unshuffle(take(rows * count * width), rows, count, width, _GROUP_TYPES[width])
        var = {index: take(size) for index, size in zip(layout.var, part["var_bytes"])}
        part["decoded"] = DecodedTable(layout, rows, masks, groups, specs, var)
    if offset != len(body):
        raise ValueError(f"document body holds {len(body)} bytes, the header accounts for {offset}")
    return header


def _check_documents(documents: list[bytes], batches: dict[str, BatchRows], tables: dict[str, _EncodedTable]) -> None:
    """Read every document back; its blocks, side by side, must be the batch's stored values and fields."""
    parts: dict[str, list[DecodedTable]] = {name: [] for name in batches}
    layouts = {batch.layout.fingerprint: batch.layout for batch in batches.values()}
    for raw in documents:
        for name, part in parse(raw, lambda _, fingerprint: layouts[fingerprint])["tables"].items():
            parts[name].append(part["decoded"])
    for name, decoded in parts.items():
        table, batch = tables[name], batches[name]
        if [d.rows for d in decoded] != [batch.count(n) for n in range(len(batch.save_ids))]:
            raise EncodingMismatch(f"{name}: documents hold other row counts than were read")
        if table.masks is not None and not np.array_equal(np.vstack([d.masks for d in decoded]), table.masks):
            raise EncodingMismatch(f"{name}: NULL masks do not read back")
        for width, values in table.groups.items():
            if not np.array_equal(np.vstack([d.groups[width] for d in decoded]), values):
                raise EncodingMismatch(f"{name}: {width}-byte columns do not read back")
        for column in table.var:
            if b"".join(d.var[column.index] for d in decoded) != column.data:
                raise EncodingMismatch(f"{name}.{batch.layout.columns[column.index]} does not read back")
