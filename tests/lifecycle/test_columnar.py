"""The columnar save document on its own: every encoding round-trips bit for bit, or falls back."""

from __future__ import annotations

import math

import pytest

from cosmic_ops.lifecycle import columnar
from cosmic_ops.lifecycle.columnar import Column

INT8_MIN, INT8_MAX = -2 ** 63, 2 ** 63 - 1


def _round_trip(columns: dict[str, Column]) -> tuple[dict, dict]:
    raw = columnar.build(7, {"t": (list(columns), list(columns.values()))})
    document = columnar.parse(raw)
    part = document["tables"]["t"]
    return dict(zip(part["columns"], part["values"])), dict(zip(part["columns"], part["blocks"]))


def test_integers_delta_and_offset_survive_the_int8_edges():
    ids = [INT8_MAX, INT8_MIN, 0, 5, -1, 3]
    values, specs = _round_trip({"id": Column("int8", ids), "other": Column("int8", [INT8_MIN, 1, None, INT8_MAX, 0, 2])})
    order = sorted(range(len(ids)), key=ids.__getitem__)
    assert values["id"] == [str(ids[i]) for i in order]
    assert values["other"] == [None if v is None else str(v) for v in (
        [INT8_MIN, 1, None, INT8_MAX, 0, 2][i] for i in order)]
    assert specs["id"] == ["i", None] and specs["other"][0] == "~i"


def test_floats_take_the_decimal_path_only_when_exact():
    decimals = [0.1, -2.5, 1234567890123.4, 0.0, 3.0, -0.7]
    not_decimal = [0.1, 0.30000000000000004]
    special = [float("nan"), math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    values, specs = _round_trip({"a": Column("float8", decimals), "b": Column("float8", not_decimal + [1.0] * 4),
                                 "c": Column("float8", special)})
    assert specs["a"][:2] == ["F", 1] and values["a"] == [repr(v) for v in decimals]
    assert specs["b"] == ["f"] and [float(v) for v in values["b"]] == not_decimal + [1.0] * 4
    assert specs["c"] == ["f"] and values["c"] == ["NaN", "Infinity", "-Infinity", "-0.0", "5e-324",
                                                   "1.7976931348623157e+308"]


def test_timestamps_fall_back_to_text_for_infinity_and_text_keeps_everything():
    stamps = ["2024-02-29 23:59:59.999999+00", "1970-01-01 00:00:00+00", None]
    odd = ["infinity", "2024-01-01 00:00:00+00", "-infinity"]
    texts = ["", "星雲 ✨", 'q"uote\\back\nline']
    values, specs = _round_trip({"ts": Column("timestamptz", stamps), "odd": Column("timestamptz", odd),
                                 "txt": Column("text", texts)})
    assert specs["ts"][0] == "~u" and values["ts"] == ["2024-02-29 23:59:59.999999+00",
                                                       "1970-01-01 00:00:00.000000+00", None]
    assert specs["odd"][0] == "t" and values["odd"] == odd
    assert values["txt"] == texts


def test_a_truncated_document_is_rejected():
    raw = columnar.build(1, {"t": (["id", "x"], [Column("int8", [1, 2, 3]), Column("float8", [0.5, 1.5, 2.5])])})
    with pytest.raises(ValueError):
        columnar.parse(raw[:-1])
    with pytest.raises(ValueError):
        columnar.parse(raw + b"\0")
