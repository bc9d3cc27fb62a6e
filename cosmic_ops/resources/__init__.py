from .postgres import PostgresResource

__all__ = ["PostgresResource"]
