"""The save/4 transforms on their own: each round-trips bit for bit, or is not used."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmic_ops.lifecycle.savecopy import decode_decimals, delta_by_save, encode_decimals, undelta_by_save

INT8_MIN, INT8_MAX = -2 ** 63, 2 ** 63 - 1


@pytest.mark.parametrize("values, decimals", [
    ([0.1, -2.5, 1234567890123.4, 0.0, 3.0, -0.7], 1),
    ([12.345, 7.0, -0.001], 3),
    ([1.0, 2.0], 0),
])
def test_short_decimals_are_stored_as_integers_and_read_back_bit_for_bit(values, decimals):
    floats = np.array(values)
    spec, stored = encode_decimals(floats)
    assert spec[:2] == ["F", decimals] and stored.dtype == np.uint64
    assert decode_decimals(spec, stored).tobytes() == floats.tobytes()


@pytest.mark.parametrize("values", [
    [0.1, 0.30000000000000004],          # not a short decimal
    [1.5, -0.0],                         # -0.0 would read back as +0.0
    [1.5, math.nan], [1.5, math.inf],    # not finite
    [2.0 ** 60],                         # beyond 2**53: not every integer is a double
    [],
])
def test_other_floats_stay_raw(values):
    assert encode_decimals(np.array(values, dtype=np.float64)) is None


def test_per_save_deltas_round_trip_over_the_int8_range_and_empty_saves():
    values = np.array([INT8_MAX, INT8_MIN, 0, 5, -1, 3, 7], dtype=np.int64).view(np.uint64)
    starts = np.array([0, 2, 2, 5, 7])  # the second save has no rows
    diffs = delta_by_save(values, starts)
    assert diffs[0] == values[0] and diffs[2] == values[2] and diffs[5] == values[5]
    assert undelta_by_save(diffs, starts).tobytes() == values.tobytes()
    empty = np.array([], dtype=np.uint64)
    assert undelta_by_save(delta_by_save(empty, np.array([0, 0])), np.array([0, 0])).size == 0
