"""Fixed-window rate limits: the buckets clients are counted in.

The counters are kept in the storage (:mod:`resetd.storage.limits`), so they
survive restarts and are shared by every instance on the same database."""

from __future__ import annotations

import ipaddress

from .storage.limits import Counted, Hit, Taken

__all__ = ["Counted", "Hit", "Taken", "client_bucket"]


def client_bucket(ip: str) -> str:
    """The key a client is limited by: its IPv4 address, or its IPv6 /64.

    One IPv6 subscriber is usually given a whole /64, so counting single
    addresses would hand each client 2**64 fresh budgets.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
