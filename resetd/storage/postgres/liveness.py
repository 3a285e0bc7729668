"""Whether an instance on another host is still running: a lock it holds while it lives.

On one host an instance that died is seen at once (its process is gone:
:func:`resetd.instance.known_dead`). On another host nothing said so, and its
claims on outbox mail waited for their lease (60 s) to run out. Here each
instance holds a session-level advisory lock, keyed by its instance id, on a
connection of its own (:class:`~.listen.Listener`) for as long as it runs.
PostgreSQL drops a session's locks when the session ends, however it ends: a
process killed, a host gone (once the server sees the connection drop), a
network cut. Another instance that can take the lock for a moment knows the
owner is gone, and releases its claims at its next look (every few seconds).

Only ids that say so (ending in MARK) are judged this way: an instance from
before these locks never took one, and its claims still last their lease. A
live instance whose lock connection is reconnecting looks dead for that
moment; its claims may then be taken over and a mail sent twice, which the
outbox's at-least-once delivery already allows (as after a lapsed lease).

Advisory locks belong to the whole database, not a schema; the keys are
drawn from ids that are unique per process, so two instances sharing a key
is a 1-in-4-billion chance. Then the second one cannot take its lock
(the listener tries again at each ping), and while the first one lives the
second looks alive too: a clash can only make a death go unseen until the
lease runs out, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .engine import Transaction

# This suffix on an instance id says its owner holds its liveness lock.
MARK = "+lock"
# The first key of every liveness lock (the second is the owner's): "rsd\x01".
LOCK_CLASS = 0x72736401
# How long an instance waits at its first claim for its lock to be taken.
FIRST_WAIT = 5.0
APPLICATION_NAME = "resetd liveness"


def with_liveness(owner: str) -> str:
    """``owner``, marked as holding its liveness lock."""
    return owner + MARK


def uses_liveness(owner: str) -> bool:
    return owner.endswith(MARK)


def lock_of(owner: str) -> tuple[int, int]:
    """The two keys of ``owner``'s advisory lock."""
    digest = hashlib.blake2b(owner.encode("utf-8", "surrogateescape"), digest_size=4).digest()
    return LOCK_CLASS, int.from_bytes(digest, "big", signed=True)


async def gone(tx: Transaction, owners: Sequence[str]) -> list[str]:
    """Which of ``owners`` (ids with MARK) no session holds the lock of: they
    stopped running. (Trying a lock takes it: each one found free is held
    until ``tx`` ends, then let go.)"""
    if not owners:
        return []
    keys = [lock_of(owner)[1] for owner in owners]
    rows = await tx.fetchall(
        "SELECT owner FROM unnest(%s::text[], %s::int4[]) AS t(owner, key) "
        "WHERE pg_try_advisory_xact_lock(%s::int4, key)",
        (list(owners), keys, LOCK_CLASS),
    )
    return [row[0] for row in rows]
