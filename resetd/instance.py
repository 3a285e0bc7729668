"""Which running resetd process this is, and whether another one is still alive.

Every process that claims outbox mail names itself by an instance id made at
start: ``host/pid/random``, where ``host`` is the host name and, on Linux, the
process-id namespace (two containers may share a host name, with
``--network host``, yet not see each other's processes). A claim records its
owner's id and a lease the owner renews while it works; another instance
releases the claim once the lease has run out, or at once when the owner is
known to be dead: it ran on this same host and its process is gone (a
``kill -9`` followed by a restart, or a crash beside a surviving instance).
The random part tells apart several apps in one process, and a process from
an earlier one that had its pid.
"""

from __future__ import annotations

import os
import secrets
import socket


def this_host() -> str:
    """The host name, and the pid namespace when the system names it: the
    space in which a pid names one process."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:  # not Linux, or no /proc
        return socket.gethostname()
    return f"{socket.gethostname()}@{namespace.removeprefix('pid:').strip('[]')}"


def new_instance_id() -> str:
    """A fresh id for this process: ``host/pid/random``."""
    return f"{this_host()}/{os.getpid()}/{secrets.token_hex(4)}"


def known_dead(owner: str, me: str) -> bool:
    """Whether ``owner`` (an instance id) is certainly not running any more.

    True only for an owner on this host (and in this pid namespace) whose
    process is gone. An owner on another host or in another namespace, one
    whose pid is alive (even if reused since, or this very process: tests run
    several apps in one), or an id not made by :func:`new_instance_id`, is
    never known dead: its claims end with their lease.
    """
    host, _, rest = owner.partition("/")
    pid_text, _, nonce = rest.partition("/")
    if not nonce or host != me.partition("/")[0] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but its parent has not reaped it yet: it runs no
    code, so it renews no lease and sends nothing, although signal 0 still finds
    it. (A supervisor that is slow to reap would otherwise hold its claims for a
    whole lease.)"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ")".
    return stat.rpartition(b")")[2][:3].strip() == b"Z"
