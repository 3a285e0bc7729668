"""Accounts: resetd's own ``users`` table, or an application's table of users.

Logic modules see only these types; which table (and which engine) answers
is chosen where the app and the CLI are wired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    password_hash: str


class DuplicateUser(Exception):
    """The email or username is already taken; the message says which."""


class AccountStore(Protocol):
    """Where accounts live: resetd's own table, or a host application's."""

    async def get(self, user_id: int) -> User | None: ...

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None: ...

    async def find_by_login(self, login: str) -> User | None: ...

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]: ...

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Transparent re-hash on sign-in; a no-op if the password changed meanwhile."""
        ...

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        """One stored hash of each kind ``kind_of`` tells apart (at most ``limit``)."""
        ...

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Swap the hash only if it is still ``old_hash``, in a transaction of its own;
        False when the password changed meanwhile."""
        ...


class AccountsInTransaction(Protocol):
    """The account store, as seen from a :class:`~resetd.storage.Transaction`."""

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """As :meth:`AccountStore.replace_password_hash`, committed with the
        transaction when the accounts live in resetd's own database; an app's
        table commits its one write at once, and the transaction rolls back
        (giving the token back) when this returns False."""
        ...


class UserAdmin(AccountStore, Protocol):
    """resetd's own ``users`` table, as the CLI manages it."""

    async def add(self, email: str, username: str, password_hash: str) -> User:
        """Create an account; raises DuplicateUser naming the clashing field, and
        ValueError when the username is unusable."""
        ...

    async def set_password_hash(self, user_id: int, new_hash: str) -> None: ...

    async def list(self) -> list[User]: ...
