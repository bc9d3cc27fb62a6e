"""The code location: every domain module's definitions plus shared resources."""

from __future__ import annotations

import dagster as dg

from .assets import schema as schema_assets
from .resources.postgres import postgres_from_env

defs = dg.Definitions.merge(
    schema_assets.defs,
    dg.Definitions(resources={"postgres": postgres_from_env()}),
)
