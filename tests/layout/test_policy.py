"""The layout policy: values with units, validated when loaded, errors naming the key."""

from __future__ import annotations

import pytest

from cosmic_ops.layout import LayoutPolicy, PolicyError, load_layout_policy, parse_factor, parse_layout_policy
from cosmic_ops.layout.policy import POLICY_ENV


def test_defaults_and_per_table_overrides_with_units():
    assert LayoutPolicy().default.max_skew == 1.5
    assert LayoutPolicy().default.max_partition_bytes == 10 * 1024**3
    policy = parse_layout_policy({
        "default": {"max_skew": "2x", "max_partition_bytes": "1 GB", "min_rows": "10k rows"},
        "tables": {"celestial_bodies_planets": {"max_skew": "1.25x"},
                   "game.orders": {"max_partition_bytes": None}},
    })
    assert (policy.default.max_skew, policy.default.max_partition_bytes, policy.default.min_rows) == (
        2.0, 1024**3, 10_000)
    planets = policy.for_table("public", "celestial_bodies_planets")
    assert (planets.max_skew, planets.max_partition_bytes, planets.min_rows) == (1.25, 1024**3, 10_000)
    assert policy.for_table("game", "orders").max_partition_bytes is None  # switched off
    assert policy.for_table("other", "orders") == policy.default  # qualified key: that schema only


@pytest.mark.parametrize("raw, message", [
    ({"default": {"max_skew": 1.5}}, "default.max_skew: factor 1.5 has no unit"),
    ({"default": {"max_skew": "150%"}}, "default.max_skew"),
    ({"default": {"max_skew": "0.5x"}}, "must be at least 1x"),
    ({"default": {"max_partition_bytes": "10"}}, "default.max_partition_bytes"),
    ({"tables": {"orders": {"min_rows": 1000}}}, "tables.orders.min_rows"),
    ({"tables": {"orders": {"max_skw": "2x"}}}, "tables.orders: unknown keys ['max_skw']"),
    ({"tables": ["orders"]}, "tables: expected a mapping"),
    ({"thresholds": {}}, "unknown keys ['thresholds']"),
])
def test_malformed_policies_name_the_offending_key(raw, message):
    with pytest.raises(PolicyError) as caught:
        parse_layout_policy(raw)
    assert message in str(caught.value)


def test_factor_units():
    assert parse_factor("1.5x") == 1.5 and parse_factor(" 3 X ") == 3.0
    with pytest.raises(PolicyError, match="write it like '1.5x'"):
        parse_factor("1.5 times")


def test_policy_file_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "layout.yaml"
    path.write_text("default:\n  max_skew: 3x\n")
    monkeypatch.setenv(POLICY_ENV, str(path))
    assert load_layout_policy().default.max_skew == 3.0
    monkeypatch.setenv(POLICY_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(PolicyError, match="cannot be read"):
        load_layout_policy()
    monkeypatch.delenv(POLICY_ENV)
    assert load_layout_policy() == LayoutPolicy()
