"""PostgreSQL for the tests: a server, a migrated template, a fresh database per test.

The server is RESETD_TEST_POSTGRES's (a libpq URL of a superuser's
connection; .ci/run sets it to a throwaway cluster), or else one started here
for the session (tests/pg_cluster.py) when PostgreSQL is installed. Without
either the PostgreSQL tests are skipped, saying why, except under CI (CI=true),
where a missing server is a failure: those tests must not vanish quietly.

Each test gets a database of its own, copied from a template that the
migrations were applied to once per session (``CREATE DATABASE … TEMPLATE``
copies files: a few milliseconds), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from . import pg_cluster

ENV = "RESETD_TEST_POSTGRES"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def database_url(server_url: str, dbname: str) -> str:
    """``server_url`` pointing at database ``dbname`` instead."""
    # By hand: urlunsplit drops the empty host of postgresql:///db?host=/socket.
    scheme, _, rest = server_url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    query = urlsplit(server_url).query
    return f"{scheme}://{authority}/{dbname}" + (f"?{query}" if query else "")


def admin(server_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE need that)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _migrate(url: str) -> None:
    from resetd.storage.postgres.startup import open_migrated

    async def run() -> None:
        engine = await open_migrated(url, pool_size=1)
        await engine.close()

    # In a thread of its own: the test's event loop is not running yet, and
    # asyncio.run must not replace it.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's ``postgres`` database, as a superuser."""
    url = os.environ.get(ENV, "")
    if url:
        yield url
        return
    if in_ci():
        pytest.fail(
            f"{ENV} is not set while CI is: .ci/run starts a PostgreSQL cluster and sets it, "
            "and the PostgreSQL tests must run in CI"
        )
    pytest.importorskip("psycopg", reason="the postgresql extra is not installed")
    reason = pg_cluster.unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests need {ENV} or a local PostgreSQL: {reason}")
    directory = pg_cluster.make_directory()
    try:
        yield pg_cluster.start(directory)
    finally:
        pg_cluster.stop(directory)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """A database with every migration applied, to copy from."""
    name = f"resetd_template_{os.getpid()}"
    admin(pg_server, f"DROP DATABASE IF EXISTS {name}")
    admin(pg_server, f"CREATE DATABASE {name}")
    _migrate(database_url(pg_server, name))
    yield name
    admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _copy_clause(pg_server: str) -> str:
    """PostgreSQL 15 copies a template block by block through the WAL unless told
    to copy its files: 0.26 s a database instead of 0.04 s without fsync."""
    import psycopg

    with psycopg.connect(pg_server) as conn:
        return " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""


def _fresh(pg_server: str, template: str) -> Iterator[str]:
    name = f"resetd_test_{uuid.uuid4().hex[:16]}"
    admin(pg_server, f"CREATE DATABASE {name} TEMPLATE {template}{_copy_clause(pg_server)}")
    try:
        yield database_url(pg_server, name)
    finally:
        admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """A database of this test's own, migrated to the newest version."""
    yield from _fresh(pg_server, pg_template)


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """A database of this test's own with no tables at all."""
    yield from _fresh(pg_server, "template0")
