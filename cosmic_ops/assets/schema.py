"""``cosmic_schema``: the versioned bootstrap of the managed database."""


import dagster as dg

from .. import schema
from ..resources import PostgresResource


@dg.asset(
    key="cosmic_schema",
    group_name="foundation",
    kinds={"postgres"},
    description="Tables, partitions and monitoring views of SPEC §2, at the latest schema version.",
)
def cosmic_schema(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with postgres.connect(purpose="bootstrap") as conn:
        result = schema.bootstrap(conn)
        tables = conn.execute(
            """
            SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            """
        ).fetchone()[0]
    context.log.info(
        "schema version %s -> %s (applied %s)", result.version_before, result.version_after, list(result.applied)
    )
    return dg.MaterializeResult(
        metadata={
            "schema_version": result.version_after,
            "version_before": result.version_before,
            "migrations_applied": dg.MetadataValue.json(list(result.applied)),
            "changed": result.changed,
            "tables": tables,
            "database": postgres.describe(),
        }
    )


cosmic_schema_job = dg.define_asset_job(
    "cosmic_schema_job", selection=dg.AssetSelection.assets(cosmic_schema),
    description="Create or migrate the managed database's schema (what `cosmic-ops dev` runs first).",
)

defs = dg.Definitions(assets=[cosmic_schema], jobs=[cosmic_schema_job])
