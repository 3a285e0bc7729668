# PLACEHOLDER: replaced by work/pgusers at merge
"""An app's users table on PostgreSQL: names only, so that the storage wires and
type-checks."""

from __future__ import annotations

from collections.abc import Callable

from ...config import UsersConfig
from ..accounts import User
from .engine import PostgresEngine, Transaction


class PostgresAppUsers:
    # resetd's own engine when the app's table is in resetd's database (the
    # password change is then one transaction), else None.
    engine: PostgresEngine | None

    @classmethod
    async def open(
        cls, cfg: UsersConfig, *, engine: PostgresEngine | None = None
    ) -> PostgresAppUsers:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def get(self, user_id: int) -> User | None:
        raise NotImplementedError

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None:
        raise NotImplementedError

    async def find_by_login(self, login: str) -> User | None:
        raise NotImplementedError

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        raise NotImplementedError

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        raise NotImplementedError

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        raise NotImplementedError

    async def replace_password_hash(
        self, user_id: int, old_hash: str, new_hash: str, *, within: Transaction | None = None
    ) -> bool:
        raise NotImplementedError
