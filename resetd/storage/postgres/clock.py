"""The database's clock, the one time every instance sharing it compares.

``NOW`` is the transaction's start by the server's clock (``now()``): every
statement of one transaction reads the same instant, as a SQLite
transaction's ``now`` is one reading of the host's clock.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .engine import Transaction

NOW = "extract(epoch FROM now())::float8"


async def transaction_now(tx: Transaction) -> float:
    """``tx``'s start, in seconds since the epoch, by the database's clock."""
    row = await tx.fetchone(f"SELECT {NOW}")
    assert row is not None
    return float(row[0])


def batch_now(conn: psycopg.Connection[Any]) -> float:
    """:func:`transaction_now` on a sync connection inside its transaction."""
    row = conn.execute(f"SELECT {NOW}").fetchone()
    assert row is not None
    return float(row[0])
