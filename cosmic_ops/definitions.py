"""The code location: every domain module's definitions plus shared resources.

Each module under ``cosmic_ops.assets`` exports ``defs`` (its assets, checks,
jobs, schedules and sensors); this file only assembles them.
"""

from __future__ import annotations

import dagster as dg

from .assets import monitoring as monitoring_assets
from .assets import schema as schema_assets
from .resources.postgres import postgres_from_env

DOMAIN_MODULES = [
    schema_assets,
    monitoring_assets,
]

defs = dg.Definitions.merge(
    *(module.defs for module in DOMAIN_MODULES),
    dg.Definitions(resources={"postgres": postgres_from_env()}),
)
