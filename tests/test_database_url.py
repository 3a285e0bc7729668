"""``[database] url``, ``pool_size`` and ``schema``: what is accepted, what is
refused (naming the key, exit 2), and a password that never shows."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from resetd.cli import main
from resetd.config import Config, ConfigError
from resetd.config_load import load_config
from resetd.db_url import redacted_url, scrub
from resetd.serve import _banner
from resetd.storage.postgres.engine import EngineError, PostgresEngine

from .helpers import TEST_SECRET
from .pg import admin

PASSWORD = "Pw-s3cret-9f2c"
PG_URL = f"postgresql://resetd:{PASSWORD}@db1.example.test,db2.example.test:5433/resetd?target_session_attrs=read-write"


def _load(env: dict[str, str] | None = None, **database: Any) -> Config:
    return load_config(
        None,
        env=env or {},
        overrides={"server": {"secret_key": TEST_SECRET}, "database": database},
    )


def _refusal(env: dict[str, str] | None = None, **database: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(env, **database)
    assert PASSWORD not in str(info.value)
    return str(info.value)


def test_sqlite_by_default_and_path_is_urls_older_spelling() -> None:
    default = load_config(None, env={}, overrides={"server": {"secret_key": TEST_SECRET}})
    assert (default.database.url, default.database.path) == ("sqlite:///resetd.db", "resetd.db")
    assert default.database.engine == "sqlite"
    assert _load(path="/var/lib/r.db").database.url == "sqlite:////var/lib/r.db"
    assert _load(url="sqlite:////var/lib/r.db").database.path == "/var/lib/r.db"
    assert _load(url="sqlite:///r.db", path="r.db").database.path == "r.db"


def test_url_and_path_naming_two_databases_are_refused() -> None:
    message = _refusal(url="sqlite:///a.db", path="b.db")
    assert message.startswith("[database] url:")
    assert "'b.db'" in message
    message = _refusal(url=PG_URL, path="b.db")
    assert "resetd:***@db1.example.test" in message


def test_the_environment_overrides_the_files_other_spelling(tmp_path: Path) -> None:
    toml = tmp_path / "resetd.toml"
    toml.write_text(f'[server]\nsecret_key = "{TEST_SECRET}"\n[database]\npath = "resetd.db"\n')
    cfg = load_config(toml, env={"RESETD_DATABASE_URL": PG_URL})
    assert (cfg.database.engine, cfg.database.url) == ("postgresql", PG_URL)


def test_a_postgresql_url_with_several_hosts_or_a_socket() -> None:
    cfg = _load(url=PG_URL, pool_size=4)
    assert (cfg.database.engine, cfg.database.schema, cfg.database.pool_size) == (
        "postgresql",
        "public",
        4,
    )
    assert _load(url="postgres:///resetd?host=/run/postgresql").database.engine == "postgresql"
    assert _load(url=PG_URL, schema="billing_app").database.schema == "billing_app"


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ({"url": "mysql://u:x@h/db"}, "[database] url: expected sqlite:///path.db or postgresql"),
        ({"url": "sqlite://r.db"}, "[database] url: expected sqlite:///relative"),
        ({"url": f"postgresql://u:{PASSWORD}@h:99999/db"}, "[database] url: expected a port"),
        ({"url": 5}, "[database] url: expected a string"),
        ({"url": f"postgresql://u:{PASSWORD}/x@h/db"}, "[database] url: percent-encode"),
        ({"url": f"postgresql://u:{PASSWORD}@x@h/db"}, "[database] url: percent-encode"),
        ({"schema": "app"}, "[database] schema: only for a postgresql:// url"),
        ({"url": PG_URL, "schema": "Billing"}, "[database] schema: expected a plain"),
        ({"url": PG_URL, "schema": "a-b"}, "[database] schema: expected a plain"),
        ({"url": PG_URL, "schema": "pg_catalog"}, "[database] schema: expected a plain"),
        ({"url": PG_URL, "pool_size": 0}, "[database] pool_size: expected 1-1000"),
    ],
)
def test_bad_database_values_name_their_key(database: dict[str, Any], expected: str) -> None:
    assert _refusal(**database).startswith(expected)


def test_redacted_url_hides_every_password() -> None:
    assert redacted_url(PG_URL) == (
        "postgresql://resetd:***@db1.example.test,db2.example.test:5433/resetd"
        "?target_session_attrs=read-write"
    )
    assert redacted_url(f"postgres:///db?host=/run/pg&password={PASSWORD}&user=u") == (
        "postgres:///db?host=/run/pg&password=***&user=u"
    )
    assert redacted_url("postgresql://u%40x:p%3Aw@h/db") == "postgresql://u%40x:***@h/db"
    assert redacted_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redacted_url("sqlite:///r.db") == "sqlite:///r.db"
    assert scrub(f'failed for "{PASSWORD}"', PG_URL) == 'failed for "***"'
    assert scrub("p:w", "postgresql://u:p%3Aw@h/db") == "***"


def test_the_config_repr_shows_no_password() -> None:
    cfg = _load(url=PG_URL)
    assert PASSWORD not in repr(cfg)
    assert cfg.database.redacted_url() == redacted_url(PG_URL)


def _config_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "resetd.toml"
    path.write_text(
        f'[server]\nsecret_key = "{TEST_SECRET}"\n[database]\nurl = "{url}"\n'
        "[dev_inbox]\nenabled = false\n"
    )
    return path


@pytest.mark.parametrize("command", [["serve"], ["user", "list"], ["outbox"], ["audit"]])
def test_commands_name_an_unreachable_postgresql_server_in_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = f"postgresql://resetd:{PASSWORD}@127.0.0.1:{_closed_port()}/resetd?connect_timeout=2"
    path = _config_file(tmp_path, url)
    assert main([*command, "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("resetd: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "resetd: [database] url: cannot connect to postgresql://resetd:***@127.0.0.1"
    )
    assert PASSWORD not in out + err
    assert not (tmp_path / "resetd.db").exists()  # nothing started on SQLite instead


def test_the_banner_shows_a_postgresql_url_without_its_password() -> None:
    cfg = load_config(
        None,
        env={},
        overrides={
            "server": {"secret_key": TEST_SECRET},
            "database": {"url": PG_URL},
            "dev_inbox": {"enabled": False},
        },
    )
    banner = _banner(web.Application(), cfg, 8080, {"pending": 0, "failed": 0, "sent": 0})
    assert "Database          postgresql://resetd:***@db1.example.test" in banner
    assert PASSWORD not in banner


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://resetd:{PASSWORD}@127.0.0.1:{_closed_port()}/resetd",
        f"postgresql://resetd@/resetd?host=/nonexistent/socket/dir&password={PASSWORD}",
    ],
)
async def test_an_unreachable_server_is_named_without_its_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EngineError) as info:
        await PostgresEngine.open(url, pool_size=2)
    message = str(info.value)
    assert message.startswith("cannot connect to postgresql://resetd")
    assert "***" in message and PASSWORD not in message
    assert PASSWORD not in caplog.text


async def test_a_lost_listener_is_logged_without_the_password(
    pg_url: str, pg_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The test server trusts local connections, so a url with a password still
    connects; the listener's reconnection warnings name it redacted."""
    with_password = pg_url.replace("postgresql:///", f"postgresql://postgres:{PASSWORD}@/", 1)
    caplog.set_level(logging.DEBUG)
    engine = await PostgresEngine.open(with_password, pool_size=1)
    try:
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        listener = engine.listen("wake", heard.put_nowait)
        await asyncio.wait_for(listener.wait_listening(), 15)
        admin(pg_server, f"SELECT pg_terminate_backend({listener.backend_pid})")
        assert await asyncio.wait_for(heard.get(), 15) is None  # reconnected
        assert "connection lost" in caplog.text
        assert "postgres:***@" in caplog.text
        assert PASSWORD not in caplog.text
    finally:
        await engine.close()
