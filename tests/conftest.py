"""Shared fixtures: a real app on a real loopback port, real SQLite files, and the
real embedded SMTP sink on a free port. Everything else tests share is in
helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import Config
from resetd.config_load import load_config

from .helpers import TEST_SECRET, ConfigFactory, merge_sections

# PostgreSQL: pg_server, pg_template, pg_url (a migrated database per test),
# pg_empty_url (an empty one). See tests/pg.py.
from .pg import pg_empty_url, pg_server, pg_template, pg_url  # noqa: F401
from .relays import Relay

# storage (a Storage on each engine: tests using it run on SQLite and on
# PostgreSQL) and open_storage (more instances on its database). See
# tests/storage_engines.py.
from .storage_engines import open_storage, storage  # noqa: F401

ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_engines: run each test that builds its config with make_config once on "
        "SQLite and once on PostgreSQL (a fresh migrated database per test)",
    )
    config.addinivalue_line(
        "markers",
        "sqlite_only: in a both_engines module, a test that arranges or inspects rows "
        "beneath the storage's interfaces with SQLite's own API: run on SQLite only",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in modules marked ``both_engines`` run on each engine: [sqlite] and
    [postgresql] in their ids."""
    node = metafunc.definition
    if (
        "db_engine" in metafunc.fixturenames
        and node.get_closest_marker("both_engines")
        and not node.get_closest_marker("sqlite_only")
    ):
        metafunc.parametrize("db_engine", ENGINES, indirect=True)


@pytest.fixture
def db_engine(request: pytest.FixtureRequest) -> str:
    """The engine of resetd's own database in this test: "sqlite" unless the
    module is marked ``both_engines`` (then each in turn)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_section(
    db_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """``[database]`` for this test's engine: a SQLite file under tmp_path, or a
    fresh PostgreSQL database migrated to the newest version."""
    if db_engine == "postgresql":
        # A small pool: each test's app opens it at start, and a few suffice.
        return {"url": request.getfixturevalue("pg_url"), "pool_size": 3}
    return {"path": str(tmp_path / "resetd.db")}


@pytest.fixture(autouse=True)
def _database_before_apps(database_section: dict[str, Any]) -> None:
    """The test's database is set up before any app fixture, so it is torn down
    (a PostgreSQL one dropped) only after every app using it has closed."""


@pytest.fixture
def make_config(tmp_path: Path, database_section: dict[str, Any]) -> ConfigFactory:
    """Config with test defaults (free ports, files under tmp_path, cheap argon2),
    resetd's database on the test's engine (see ``database_section``).

    Keyword arguments are sections: ``make_config(mail={"port": 2525})``.
    """

    def make(**sections: dict[str, Any]) -> Config:
        base: dict[str, dict[str, Any]] = {
            "server": {"secret_key": TEST_SECRET, "public_url": "http://localhost:8080"},
            "database": dict(database_section),
            "mail": {"server": "127.0.0.1", "port": 0, "sender": "resetd <no-reply@example.test>"},
            "dev_inbox": {"enabled": True, "smtp_port": 0, "path": str(tmp_path / "inbox.db")},
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        }
        given = sections.get("database", {})
        if "url" in given or "path" in given:  # the test names its database itself
            base["database"] = {}
        merge_sections(base, sections)
        return load_config(None, env={}, overrides=base)

    return make


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]], config: Config
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(config))


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """A real accepting SMTP relay on a free loopback port."""
    r = Relay()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def rclient(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    make_config: ConfigFactory,
    relay: Relay,
) -> TestClient[Any, Any]:
    """The app with the dev inbox off and [mail] pointing at ``relay``."""
    return await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, mail={"port": relay.port}))
    )
