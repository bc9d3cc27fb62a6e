"""The Dagster layer: one module per domain, each exporting the definitions it owns.

Dagster features we use on purpose although Dagster marks them beta or preview; their
warnings are silenced here, once, before any definition is built (each would otherwise be
printed by every process that loads the code location: the webserver, the daemon, the code
server and each run). Any other beta or preview use still warns.

- ``backfill_policy`` (beta) on ``event_log_partitions``, ``destroyed_bodies_archive`` and
  ``compressed_saves``: a backfill of many months is one run (one lock, one transaction per
  month) instead of one run per month;
- ``partitions_def`` on asset checks (preview): a check of a monthly asset without it leaves
  planned check rows that never resolve;
- ``owners`` of ``SensorDefinition`` (beta): Dagster passes it itself when it builds the
  sensors (we set no owners).
"""

import warnings

import dagster as dg

DELIBERATE_PREVIEWS = (
    (dg.BetaWarning, r"Parameter `backfill_policy` of function `asset`"),
    (dg.PreviewWarning, r"Specifying a partitions_def on an AssetCheckSpec"),
    (dg.BetaWarning, r"Parameter `owners` of initializer `SensorDefinition.__init__`"),
)

for category, message in DELIBERATE_PREVIEWS:
    warnings.filterwarnings("ignore", message=message, category=category)
