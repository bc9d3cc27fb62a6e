"""The Dagster layer: one module per domain, each exporting the definitions it owns."""
