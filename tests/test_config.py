"""Configuration: defaults, env overrides, and one clear line for each mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resetd.config import DEV_SECRET_KEY, ConfigError
from resetd.config_load import load_config
from resetd.config_rules import check_serve_safety

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "resetd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads_with_inbox_enabled_and_mail_pointing_at_it() -> None:
    cfg = load_config(REPO / "resetd.toml", env={})
    assert cfg.dev_inbox.enabled
    assert (cfg.mail.server, cfg.mail.port) == (cfg.dev_inbox.smtp_host, cfg.dev_inbox.smtp_port)
    assert cfg.server.secret_key == DEV_SECRET_KEY
    check_serve_safety(cfg)  # localhost public_url: the dev key is allowed


def test_defaults_match_the_documented_ones(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, f'[server]\nsecret_key = "{"k" * 32}"\n'), env={})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.server.public_url == "http://localhost:8080"
    assert cfg.database.path == "resetd.db"
    assert cfg.reset.token_ttl == 600
    assert (cfg.dev_inbox.smtp_host, cfg.dev_inbox.smtp_port) == ("127.0.0.1", 8025)
    assert cfg.limits.mails_per_address == 3 and cfg.limits.requests_per_ip == 120
    assert (cfg.mail.timeout, cfg.mail.data_timeout) == (10.0, 600.0)


def test_resetd_env_overrides_and_tutorial_names(tmp_path: Path) -> None:
    path = write(tmp_path, f'[server]\nsecret_key = "{"k" * 32}"\n')
    cfg = load_config(
        path,
        env={
            "RESETD_MAIL_PORT": "2525",
            "RESETD_DEV_INBOX_ENABLED": "true",
            "MAIL_SERVER": "smtp.example.com",
            "MAIL_USE_TLS": "1",
            "MAIL_USERNAME": "bob",
            "MAIL_PASSWORD": "pw",
            "SECRET_KEY": "s" * 40,
        },
    )
    assert cfg.mail.port == 2525
    assert cfg.dev_inbox.enabled is True
    assert cfg.mail.server == "smtp.example.com" and cfg.mail.use_tls is True
    assert (cfg.mail.username, cfg.mail.password) == ("bob", "pw")
    assert cfg.server.secret_key == "s" * 40


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('[mail]\nport = "abc"\n', {}, "[mail] port: expected an integer, got 'abc'"),
        ("[mail]\nport = 70000\n", {}, "[mail] port: expected 0-65535, got 70000"),
        ("[mail]\nprot = 25\n", {}, "[mail] prot: unknown key"),
        ("[mail]\ndata_timeout = 0\n", {}, "[mail] data_timeout: expected a positive number"),
        ("[mial]\nport = 25\n", {}, "[mial]: unknown section"),
        ("[reset]\ntoken_ttl = 5\n", {}, "[reset] token_ttl: expected 30-86400"),
        ('[server]\npublic_url = "ftp://x"\n', {}, "[server] public_url: expected an absolute"),
        ("[dev_inbox]\nenabled = 1\n", {}, "[dev_inbox] enabled: expected true or false"),
        ("", {"RESETD_MAIL_PORT": "x25"}, "[mail] port: expected an integer, got 'x25'"),
        ("", {"RESETD_NOPE_KEY": "1"}, "RESETD_NOPE_KEY: unknown environment override"),
        ("[mail\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(
        tmp_path,
        f"{text}\n" if "[server]" in text else f'[server]\nsecret_key = "{"k" * 32}"\n{text}',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", env={})


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RESETD_", "MAIL_"))}
    full_env.pop("SECRET_KEY", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "resetd", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_bad_value_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, f'[server]\nsecret_key = "{"k" * 32}"\n[mail]\nport = "abc"\n')
    result = run_cli("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "resetd: [mail] port: expected an integer, got 'abc'"
    assert "Traceback" not in result.stderr


def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    result = run_cli("user", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "resetd.toml: config file not found" in result.stderr


def test_serve_refuses_dev_secret_on_a_public_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[server]\nsecret_key = "{DEV_SECRET_KEY}"\npublic_url = "https://auth.example.com"\n',
    )
    result = run_cli("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "[server] secret_key" in result.stderr and "development value" in result.stderr


def test_serve_refuses_inbox_on_a_non_loopback_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[server]\nsecret_key = "{"k" * 32}"\nhost = "0.0.0.0"\n[dev_inbox]\nenabled = true\n',
    )
    result = run_cli("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "[dev_inbox]" in result.stderr and "non-loopback" in result.stderr


def test_resetd_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\n[database]\npath = "{tmp_path / "x.db"}"\n'
    )
    result = run_cli("user", "list", cwd=tmp_path, env={"RESETD_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert "no users" in result.stdout
