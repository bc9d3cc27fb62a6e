"""cosmic_ops: Dagster assets that keep the Cosmic Gardener PostgreSQL database healthy.

The domain core (``schema``, ``demo``, ``db``, ...) is plain Python over psycopg 3
connections; ``assets``/``resources``/``definitions`` are the thin Dagster layer.
"""
