import pytest

from cosmic_ops.units import (
    PolicyError, format_bytes, parse_bytes, parse_duration, parse_ratio, parse_rows,
)


@pytest.mark.parametrize("text, expected", [
    ("2 GB", 2 * 1024**3), ("500MB", 500 * 1024**2), ("1.5 GiB", int(1.5 * 1024**3)),
    ("8 kB", 8192), ("100 bytes", 100), ("1 TB", 1024**4),
])
def test_byte_sizes_follow_postgresql_units(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", [2, "2", "2 G", "2 parsecs", "", "GB", None, "-1 GB"])
def test_byte_sizes_without_a_known_unit_are_errors(bad):
    with pytest.raises(PolicyError):
        parse_bytes(bad)


def test_rows_ratios_and_durations():
    assert parse_rows("5M rows") == 5_000_000
    assert parse_rows("250000 rows") == 250_000
    assert parse_rows("1 row") == 1
    assert parse_ratio("20%") == pytest.approx(0.2)
    assert parse_ratio("0.5 %") == pytest.approx(0.005)
    assert parse_duration("5 min") == 300
    assert parse_duration("90s") == 90
    assert parse_duration("1 h") == 3600


@pytest.mark.parametrize("parse, bad", [
    (parse_rows, 5000), (parse_rows, "5000"), (parse_rows, "5 GB"),
    (parse_ratio, 0.2), (parse_ratio, "0.2"), (parse_ratio, "0%"), (parse_ratio, "150%"),
    (parse_duration, 12), (parse_duration, "12"), (parse_duration, "12 fortnights"),
])
def test_values_without_their_unit_are_refused(parse, bad):
    with pytest.raises(PolicyError) as caught:
        parse(bad)
    assert repr(bad) in str(caught.value)


def test_format_bytes_is_readable():
    assert format_bytes(100) == "100 bytes"
    assert format_bytes(3 * 1024**3) == "3.0 GB"
