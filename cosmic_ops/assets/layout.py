"""The layout of hash-partitioned tables in Dagster (SPEC §3.8, issue 16 item 1).

- ``celestial_bodies_layout``: every hash-partitioned table and sub-table (from the catalog;
  ``celestial_bodies_planets`` in the game's schema), per remainder rows, bytes, dead tuples and
  hottest keys as tables, and per table the numbers the UI plots (skew ratio, largest
  partition, modulus). Read-only: not in the maintenance pool, takes no table's lock scope.
- its check ``hash_layout_within_policy`` (WARN): a table's row skew, its largest partition
  or a gap in its hash space crosses the layout policy (``COSMIC_OPS_LAYOUT_POLICY``); the
  result carries the numbers and a split proposal per table.
- ``layout_split_proposal_sensor``: when that check warns for a table it did not warn for
  before, asks the operator to plan a split, once, as an observation of the asset (what to
  split, to which modulus, what to expect after), and requests the split's *plan*
  (``hash_resplit_plan_job``: a dry run that changes and materializes nothing). It never runs
  the split itself: that is an operator's decision (``hash_resplit_job``).
"""

import json
from typing import Any, Mapping

import dagster as dg
from pydantic import Field

from .. import layout
from ..resources import PostgresResource
from .resplit import hash_resplit_plan_job

GROUP = "layout"
ASSET_NAME = "celestial_bodies_layout"
CHECK_NAME = "hash_layout_within_policy"
POLICY = layout.load_layout_policy()
# Rows of one table in the metadata (the UI stays responsive with many partitions).
TABLE_METADATA_ROWS = 200


class LayoutConfig(dg.Config):
    exact: bool = Field(default=False, description="count every partition's rows and keys with full scans "
                        "instead of the planner's estimates and a sample")
    top_keys: int = Field(default=layout.DEFAULT_TOP_KEYS, ge=0, le=100,
                          description="hottest keys to list per remainder (0: none)")
    sample_rows: int = Field(default=layout.DEFAULT_SAMPLE_ROWS, ge=100,
                             description="rows to sample per remainder for its hottest keys, when not exact")


def _metadata_table(table: layout.MetadataTable) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord(record) for record in table.records[:TABLE_METADATA_ROWS]],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in table.columns]),
    )


def report_metadata(report: layout.LayoutReport) -> dict[str, Any]:
    return {key: _metadata_table(value) if isinstance(value, layout.MetadataTable) else value
            for key, value in report.to_metadata().items()}


def _thresholds(policy: layout.LayoutPolicy) -> dict[str, Any]:
    rule = policy.default
    return {"max_skew": rule.max_skew, "max_partition_bytes": rule.max_partition_bytes, "min_rows": rule.min_rows,
            "per_table": sorted(policy.tables)}


def check_result(report: layout.LayoutReport, policy: layout.LayoutPolicy) -> dg.AssetCheckResult:
    findings = layout.find_layout_problems(report, policy)
    return dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=("; ".join(f.describe() for f in findings) if findings else
                     f"{len(report.parents)} hash-partitioned table(s) within the layout policy"),
        metadata={
            "tables_over_threshold": len(findings),
            "max_skew_ratio": round(max((p.skew_ratio for p in report.parents), default=1.0), 4),
            "rows_method": report.rows_method,
            "findings": dg.MetadataValue.json([f.to_json() for f in findings]),
            "default_thresholds": dg.MetadataValue.json(_thresholds(policy)),
        },
    )


def build_celestial_bodies_layout(policy: layout.LayoutPolicy) -> dg.AssetsDefinition:
    """The layout asset and its check for ``policy`` (the module's is built from the
    policy file, validated at load: a wrong value stops the code location naming its key)."""

    @dg.asset(
        name=ASSET_NAME,
        group_name=GROUP,
        kinds={"postgres"},
        deps=["cosmic_schema"],
        check_specs=[dg.AssetCheckSpec(
            CHECK_NAME, asset=ASSET_NAME,
            description="No hash-partitioned table has its row skew (max/mean) or its largest partition over "
                        "the layout policy, or a gap in its hash space; warns with the numbers and a split "
                        "proposal. Evaluates the report the asset just measured.")],
        description="Every hash-partitioned table and sub-table (from the catalog): per remainder rows "
                    "(estimate, or exact on request), heap and index bytes, dead tuples, hottest keys; per "
                    "table the max/mean skew, largest partition and modulus.",
    )
    def celestial_bodies_layout(context: dg.AssetExecutionContext, config: LayoutConfig,
                                postgres: PostgresResource) -> dg.MaterializeResult:
        # Autocommit: each partition is read in its own statement, holding its lock only meanwhile.
        with postgres.connect(autocommit=True, purpose=ASSET_NAME) as conn:
            report = layout.measure(conn, exact=config.exact, top_keys=config.top_keys,
                                    sample_rows=config.sample_rows)
        for parent in report.parents:
            context.log.info("%s: %d partitions (modulus %s), %d rows (%s), skew %.2fx", parent.table.label,
                             len(parent.remainders), parent.table.modulus, parent.total_rows, report.rows_method,
                             parent.skew_ratio)
        return dg.MaterializeResult(metadata=report_metadata(report), check_results=[check_result(report, policy)])

    return celestial_bodies_layout


celestial_bodies_layout = build_celestial_bodies_layout(POLICY)
CHECK_KEY = dg.AssetCheckKey(celestial_bodies_layout.key, CHECK_NAME)

layout_report_job = dg.define_asset_job(
    "layout_report_job", selection=[celestial_bodies_layout], executor_def=dg.in_process_executor,
)
layout_report_schedule = dg.ScheduleDefinition(
    name="layout_report_schedule", job=layout_report_job, cron_schedule="45 4 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="celestial_bodies_layout (estimates and samples: no full scan) daily at 04:45 UTC, after the "
                "parents' ANALYZE, so the skew is plotted and the sensor sees the check.",
)


# ---------------------------------------------------------------------------
# Sensor: the check warns -> propose a split, once per table while it keeps warning


def _cursor(raw: str | None) -> tuple[int | None, dict[str, int]]:
    """(id of the last check evaluation read, table -> id of the evaluation that first warned)."""
    try:
        state = json.loads(raw) if raw else {}
        active = {str(k): int(v) for k, v in state.get("active", {}).items()}
        return state.get("evaluation"), active
    except (ValueError, AttributeError, TypeError):
        return None, {}  # an unreadable cursor proposes again rather than staying silent


def layout_proposal_text(finding: Mapping[str, Any]) -> str:
    """What the operator is asked, from a finding as the check recorded it."""
    proposal = finding.get("proposal")
    if proposal is None:  # only a gap in the hash space: no split fills it
        return f"{finding['description']}. Attach partitions for the missing remainders. Nothing was run."
    ask = proposal["description"]
    return (f"{finding['description']}. {ask[:1].upper()}{ask[1:]}. Nothing was run: review the split's plan "
            f"(dry run) and start it yourself.")


def _proposal_event(finding: Mapping[str, Any], evaluation_id: int) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=celestial_bodies_layout.key,
        description=layout_proposal_text(finding),
        metadata={
            "table": finding["table"],
            "crossed": dg.MetadataValue.json(finding["kinds"]),
            "skew_ratio": float(finding["skew_ratio"]),
            "largest_partition_bytes": int(finding["largest_partition_bytes"]),
            "proposed_split": dg.MetadataValue.json(finding.get("proposal") or {}),
            "check_evaluation_id": evaluation_id,
        },
    )


def _plan_request(finding: Mapping[str, Any], evaluation_id: int) -> dg.RunRequest | None:
    """The dry run of the proposed split, for the operator to read before starting it."""
    proposal = finding.get("proposal")
    if not proposal or not proposal.get("partitions"):
        return None
    schema_name, _, table = str(finding["table"]).rpartition(".")
    config = {"schema_name": schema_name or "public", "table": table, "modulus": int(proposal["target_modulus"]),
              "remainders": sorted({int(p["remainder"]) for p in proposal["partitions"]})}
    return dg.RunRequest(run_key=f"plan-split:{finding['table']}:{evaluation_id}",
                         run_config={"ops": {"plan_hash_resplit_op": {"config": config}}},
                         tags={"cosmic_ops/proposed_by": "layout_split_proposal_sensor"})


@dg.sensor(
    name="layout_split_proposal_sensor",
    job=hash_resplit_plan_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When hash_layout_within_policy warns for a table, asks the operator (once per table while it "
                "keeps warning) to plan a split: an observation of celestial_bodies_layout with the proposal, "
                "and a run of the split's plan (a dry run). Never runs a split.",
)
def layout_split_proposal_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen, active = _cursor(context.cursor)
    record = context.instance.get_latest_asset_check_evaluation_record(CHECK_KEY)
    if record is None:
        return dg.SensorResult(skip_reason=f"{CHECK_NAME} has not been evaluated yet")
    if record.id == seen:
        return dg.SensorResult(skip_reason=f"no new evaluation of {CHECK_NAME} since the last tick")
    evaluation = record.evaluation
    if not isinstance(evaluation, dg.AssetCheckEvaluation):  # planned, its run still going (or it died)
        return dg.SensorResult(skip_reason=f"the latest evaluation of {CHECK_NAME} has no result yet")
    findings_entry = evaluation.metadata.get("findings")
    findings = [] if evaluation.passed or findings_entry is None else findings_entry.value
    still: dict[str, int] = {}
    events = []
    requests = []
    for finding in findings:
        table = finding["table"]
        if table in active:
            still[table] = active[table]
            continue
        still[table] = record.id
        event = _proposal_event(finding, record.id)
        context.log.warning("%s", event.description)
        events.append(event)
        request = _plan_request(finding, record.id)
        if request is not None:
            requests.append(request)
    cursor = json.dumps({"evaluation": record.id, "active": still}, sort_keys=True)
    if events:
        skip = "; ".join(e.description for e in events)
    elif findings:
        skip = f"{len(findings)} table(s) still over the layout policy, split already proposed: " + ", ".join(
            sorted(still))
    else:
        skip = f"{CHECK_NAME} passed: no split to propose"
    if requests:
        return dg.SensorResult(asset_events=events, cursor=cursor, run_requests=requests)
    return dg.SensorResult(asset_events=events, cursor=cursor, skip_reason=skip)


defs = dg.Definitions(
    assets=[celestial_bodies_layout],
    jobs=[layout_report_job],
    schedules=[layout_report_schedule],
    sensors=[layout_split_proposal_sensor],
)
