"""Online reshaping of a table the game keeps writing: change capture, batched copy,
verification, and a short swap (the technique of pgslice and pg_repack, made verified,
resumable and recorded).

A *move* copies every row of one source table into one or more new tables, each new table
taking the rows of its ``Route`` predicate. From the moment the move begins, a trigger on the
source mirrors every insert, update and delete into the new tables in the same transaction as
the game's change, so the source and the new tables agree in every snapshot once the copy has
passed over the old rows. The caller then swaps them into place in one short transaction.

Users: ``partitions`` empties a DEFAULT partition that holds many rows into the months being
created (the game waits only for the swap, not for the rows to move); a hash re-split and a
reshard reuse the same machinery with other routes and another swap.

State lives in the managed database (``cosmic_ops.online_moves``), written in the same
transactions as the DDL it describes, so a kill at any point leaves a record that says
exactly what exists: ``copying`` (undone by the next job on the table: the source still holds
every row) or ``swapped`` (finished by the next job: the old table is dropped, proof recorded).
"""

from .move import (
    MoveRecord,
    OnlineMove,
    Route,
    VerificationFailed,
    recover_moves,
    unique_key,
)

__all__ = ["MoveRecord", "OnlineMove", "Route", "VerificationFailed", "recover_moves", "unique_key"]
