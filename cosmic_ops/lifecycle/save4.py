"""Reader of ``cosmic_ops.save/4`` documents: saves packed before save/5, still in databases.

Frozen: nothing writes this format any more (its encoder was replaced by save/5, see
FORMAT.md, which also gives the byte layout read here), and a change here could make a stored
save unreadable. ``tests/lifecycle/test_save4_documents.py`` rehydrates saves the encoder
wrote, covering every column encoding below.

A document is one JSON header line, then per table (in header order): the NULL masks, the
8-, 4- and 1-byte byte-shuffled blocks of the fixed-width columns, then each variable-width
column's COPY fields back to back. ``parse`` gives each table's ``DecodedTable``, whose
``copy_stream`` is the COPY binary stream of its rows in the table's column order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .savecopy import COPY_HEADER, COPY_TRAILER, LayoutResolver, TableLayout

FORMAT = "cosmic_ops.save/4"

# Fixed-width types: (bytes on the wire, big-endian numpy type). Every other type is variable-width.
_FIXED = {
    "int2": (2, ">i2"), "int4": (4, ">i4"), "int8": (8, ">i8"), "date": (4, ">i4"),
    "timestamp": (8, ">i8"), "timestamptz": (8, ">i8"), "float8": (8, ">f8"), "float4": (4, ">u4"),
    "bool": (1, ">u1"),
}
# Codes of stored fixed columns and their stored width: offset ints ``["i", base]``, stepped
# ints ``["d", base]``, decimals ``["F", digits, base]``, raw float8 bits ``["f"]``, raw 4-byte
# values ``["g"]``, raw bytes ``["b"]``.
_STORED_WIDTH = {"i": 8, "d": 8, "F": 8, "f": 8, "g": 4, "b": 1}
_GROUP_TYPES = {8: np.uint64, 4: np.uint32, 1: np.uint8}


def _fixed(layout: TableLayout) -> list[int]:
    return [i for i, t in enumerate(layout.types) if t in _FIXED]


def _var(layout: TableLayout) -> list[int]:
    return [i for i, t in enumerate(layout.types) if t not in _FIXED]


def _masked(layout: TableLayout) -> list[int]:
    return [i for i in _fixed(layout) if layout.nullable[i]]


def _decode_fixed(spec: list, type_name: str, stored: np.ndarray) -> np.ndarray:
    """One save's stored values of a fixed column back to its big-endian wire values."""
    wire_type = np.dtype(_FIXED[type_name][1])
    code = spec[0]
    if code in ("i", "d"):
        if code == "d":
            stored = np.cumsum(stored, dtype=np.uint64)  # steps from the previous row (modular)
        native = (stored + np.int64(spec[1]).view(np.uint64)).view(np.int64)
        return native.astype(wire_type.newbyteorder("=")).astype(wire_type)
    if code == "F":  # integers n, offset from base, meaning n / 10**digits, exact
        native = (stored + np.int64(spec[2]).view(np.uint64)).view(np.int64).astype(np.float64) / 10.0 ** spec[1]
    elif code == "f":
        native = stored.view(np.float64)
    else:
        native = stored
    return native.view(wire_type.newbyteorder("=")).astype(wire_type)


def _unshuffle(data: bytes, rows: int, columns: int, width: int, dtype) -> np.ndarray:
    """Per column byte 0 of every row, then byte 1, ... -> (rows, columns) values."""
    planes = np.frombuffer(data, np.uint8).reshape(columns, width, rows)
    return np.ascontiguousarray(planes.transpose(2, 0, 1)).view(dtype).reshape(rows, columns)


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
        masked = _masked(self.layout)
        out = {}
        for index, spec in zip(_fixed(self.layout), self.fixed_specs):
            width = _STORED_WIDTH[spec[0]]
            stored = self.groups[width][:, position[width]]
            position[width] += 1
            nulls = self.masks[:, masked.index(index)] if index in masked else None
            out[index] = (_decode_fixed(spec, self.layout.types[index], np.ascontiguousarray(stored)), nulls)
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
        rows, masked, specs, var = part["rows"], _masked(layout), part["fixed"], _var(layout)
        if len(specs) != len(_fixed(layout)) or len(part["var_bytes"]) != len(var):
            raise ValueError(f"{name}: document blocks do not match layout {part['layout']}")
        masks = np.frombuffer(take(rows * len(masked)), np.uint8).reshape(len(masked), rows).T if masked else None
        groups = {}
        for width in sorted(_GROUP_TYPES, reverse=True):
            count = sum(1 for spec in specs if _STORED_WIDTH[spec[0]] == width)
            if count:
                groups[width] = _unshuffle(take(rows * count * width), rows, count, width, _GROUP_TYPES[width])
        blocks = {index: take(size) for index, size in zip(var, part["var_bytes"])}
        part["decoded"] = DecodedTable(layout, rows, masks, groups, specs, blocks)
    if offset != len(body):
        raise ValueError(f"document body holds {len(body)} bytes, the header accounts for {offset}")
    return header
