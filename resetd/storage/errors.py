"""What an implementation raises, named so logic can tell the kinds apart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageErrors:
    """The exceptions an implementation raises, for logic that must tell them
    apart: ``error`` is any of them; ``unavailable`` the database's own state
    (locked, full, unreachable) rather than anything about one row."""

    error: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...]
