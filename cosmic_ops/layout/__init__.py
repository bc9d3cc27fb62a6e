"""The layout of hash-partitioned tables: which exist (from the catalog), how evenly their
partitions hold rows and bytes, their hottest keys, and when a split is worth planning.

Plain Python over psycopg connections; the Dagster layer is ``cosmic_ops.assets.layout``.
A re-split (and, later, moving a remainder to another server) starts from the same catalog
reading: ``hash_table(conn, name)`` gives every partition with its modulus and remainder.
"""

from ..units import PolicyError
from .catalog import HashPartition, HashTable, NotHashPartitioned, hash_table, hash_tables, parse_hash_bound
from .findings import BYTES, GAP, SKEW, Finding, SplitProposal, find_layout_problems, propose_split
from .policy import LayoutPolicy, LayoutThresholds, load_layout_policy, parse_factor, parse_layout_policy
from .skew import (
    DEFAULT_SAMPLE_ROWS, DEFAULT_TOP_KEYS, HotKey, LayoutChanged, LayoutReport, MetadataTable, ParentLayout,
    RemainderStats, measure,
)

__all__ = [
    "BYTES", "DEFAULT_SAMPLE_ROWS", "DEFAULT_TOP_KEYS", "Finding", "GAP", "HashPartition", "HashTable", "HotKey",
    "LayoutChanged", "LayoutPolicy", "LayoutReport", "LayoutThresholds", "MetadataTable", "NotHashPartitioned",
    "ParentLayout", "PolicyError", "RemainderStats", "SKEW", "SplitProposal", "find_layout_problems", "hash_table",
    "hash_tables", "load_layout_policy", "measure", "parse_factor", "parse_hash_bound", "parse_layout_policy",
    "propose_split",
]
