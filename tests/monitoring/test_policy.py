import pytest

from cosmic_ops.monitoring.policy import POLICY_ENV, MonitoringPolicy, PolicyError, load_policy, parse_policy


def test_tables_inherit_the_default_and_override_with_units():
    policy = parse_policy({
        "interval": "1 min",
        "default": {"max_bytes": "1 GB", "max_dead_ratio": "10%", "min_dead_tuples": "500 rows"},
        "tables": {"event_logs": {"max_bytes": "20 GB", "bytes_action": "analyze"},
                   "celestial_bodies_planets": {"max_rows": "2M rows"}},
    })
    assert policy.interval_s == 60
    assert policy.default.max_bytes == 1024**3
    events = policy.for_partition("public", "event_logs", "event_logs")
    assert (events.max_bytes, events.bytes_action, events.max_dead_ratio, events.min_dead_tuples) == (
        20 * 1024**3, "analyze", 0.1, 500)
    # The direct parent wins over the root.
    planets = policy.for_partition("public", "celestial_bodies_planets", "celestial_bodies")
    assert planets.max_rows == 2_000_000 and planets.max_bytes == 1024**3
    assert policy.for_partition("public", "other", "other") == policy.default


@pytest.mark.parametrize("raw, message", [
    ({"default": {"max_bytes": 2}}, "default.max_bytes"),
    ({"tables": {"event_logs": {"max_rows": "12"}}}, "tables.event_logs.max_rows"),
    ({"default": {"bytes_action": "drop"}}, "bytes_action"),
    ({"default": {"max_byte": "2 GB"}}, "unknown keys"),
    ({"interval": 60}, "interval"),
    ({"interval": "5 s"}, "between 30 s and 1 h"),
    ({"threshold": "2 GB"}, "unknown keys"),
])
def test_malformed_policies_name_the_offending_key(raw, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw)
    assert message in str(caught.value)


def test_policy_file_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "policy.yaml"
    path.write_text("default:\n  max_dead_ratio: 5%\ntables:\n  event_logs:\n    max_bytes: 3 GB\n")
    monkeypatch.setenv(POLICY_ENV, str(path))
    policy = load_policy()
    assert policy.default.max_dead_ratio == pytest.approx(0.05)
    assert policy.tables["event_logs"].max_bytes == 3 * 1024**3
    monkeypatch.delenv(POLICY_ENV)
    assert load_policy() == MonitoringPolicy()
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")
