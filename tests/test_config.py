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

from .helpers import ConfigFactory

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
    assert (cfg.dev_inbox.smtp_host, cfg.dev_inbox.smtp_port) == ("127.0.0.1", 1025)
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
        (
            "[limits]\nlogins_in_progress = 5000\n",
            {},
            "[limits] logins_in_progress: expected at most 1000, got 5000",
        ),
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


SECRET_DIGITS = "31415926535897932"


def refused_serve(path: Path) -> subprocess.CompletedProcess[str]:
    """``serve`` with a config it must refuse. Were the refusal missing, it would
    fail at its database (whose directory is a file) instead of listening, on a
    public interface even, on the fixed ports of the shipped config."""
    no_start = {
        "RESETD_DATABASE_PATH": str(path / "resetd.db"),
        "RESETD_SERVER_PORT": "0",
        "RESETD_MAIL_PORT": "0",
        "RESETD_DEV_INBOX_SMTP_PORT": "0",
    }
    return run_cli("serve", "--config", str(path), cwd=path.parent, env=no_start)


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("mail", f"password = {SECRET_DIGITS}"),
        ("dev_inbox", f"password = {SECRET_DIGITS}"),
        ("server", f"secret_key = {SECRET_DIGITS}"),
        ("server", f"secret_key_fallbacks = {SECRET_DIGITS}"),
        ("server", f"secret_key_fallbacks = [{SECRET_DIGITS}]"),
        ("server", f'secret_key_fallbacks = [{{k = "{SECRET_DIGITS}"}}]'),
    ],
)
def test_a_secret_value_is_never_printed(tmp_path: Path, section: str, line: str) -> None:
    server = [] if line.startswith("secret_key =") else [f'secret_key = "{"k" * 32}"']
    if section == "server":
        server.append(line)
        text = "[server]\n" + "\n".join(server) + "\n"
    else:
        text = "[server]\n" + "\n".join(server) + f"\n[{section}]\n{line}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith("[") and "value not shown" in message
    assert SECRET_DIGITS not in message
    result = refused_serve(path)
    assert result.returncode == 2
    assert SECRET_DIGITS not in result.stderr + result.stdout


def test_a_non_secret_value_is_still_quoted(tmp_path: Path) -> None:
    path = write(tmp_path, f'[server]\nsecret_key = "{"k" * 32}"\n[mail]\nusername = 1234\n')
    with pytest.raises(ConfigError, match="username: expected a string, got 1234"):
        load_config(path, env={})


def test_secret_key_minimum_is_the_32_the_message_names(tmp_path: Path) -> None:
    for length, ok in ((20, False), (31, False), (32, True)):
        path = write(tmp_path, f'[server]\nsecret_key = "{"k" * length}"\n')
        if ok:
            load_config(path, env={})
            continue
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert str(info.value) == (
            "[server] secret_key: too short, use at least 32 random characters"
        )


@pytest.mark.parametrize(
    ("server", "key"),
    [
        # Listening on every interface, even with a localhost public_url.
        (f'host = "0.0.0.0"\nsecret_key = "{DEV_SECRET_KEY}"', "[server] secret_key"),
        (f'host = "::"\nsecret_key = "{DEV_SECRET_KEY}"', "[server] secret_key"),
        (f'host = ""\nsecret_key = "{DEV_SECRET_KEY}"', "[server] secret_key"),
        # Still accepted as a previous key: tokens it signs would verify.
        (
            f'secret_key = "{"k" * 32}"\nsecret_key_fallbacks = ["{DEV_SECRET_KEY}"]\n'
            'public_url = "https://auth.example.com"',
            "[server] secret_key_fallbacks",
        ),
    ],
)
def test_serve_refuses_the_dev_secret_beyond_loopback(
    tmp_path: Path, server: str, key: str
) -> None:
    path = write(tmp_path, f"[server]\n{server}\n[dev_inbox]\nenabled = false\n")
    result = refused_serve(path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"resetd: {key}: still the development value")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_serve_refuses_the_shipped_inbox_once_public_url_is_public(tmp_path: Path) -> None:
    """The issue's set-up: the shipped resetd.toml, changed only in public_url,
    the secret and the host. A proxy in front would hand the inbox to anyone."""
    text = (REPO / "resetd.toml").read_text(encoding="utf-8")
    text = text.replace(
        'public_url = "http://localhost:8080"', 'public_url = "https://reset.example.com"'
    )
    text = text.replace(f'secret_key = "{DEV_SECRET_KEY}"', f'secret_key = "{"r" * 40}"')
    assert "https://reset.example.com" in text and DEV_SECRET_KEY not in text
    path = write(tmp_path, text)
    result = refused_serve(path)
    assert result.returncode == 2
    assert result.stderr.startswith("resetd: [dev_inbox] enabled: refusing to serve the dev inbox")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("public_url", "refused"),
    [
        ("https://reset.example.com", True),
        ("http://192.0.2.7:8080", True),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
        ("http://app.localhost:8080", False),
    ],
)
def test_the_inbox_needs_a_loopback_public_url(
    make_config: ConfigFactory, public_url: str, refused: bool
) -> None:
    cfg = make_config(server={"public_url": public_url})
    if refused:
        with pytest.raises(ConfigError, match=r"^\[dev_inbox\] enabled: .*public_url"):
            check_serve_safety(cfg)
    else:
        check_serve_safety(cfg)


def test_allow_remote_with_a_long_password_may_serve_a_public_inbox(
    make_config: ConfigFactory,
) -> None:
    cfg = make_config(
        server={"public_url": "https://reset.example.com", "host": "0.0.0.0"},
        dev_inbox={"allow_remote": True, "password": "p" * 16, "smtp_host": "0.0.0.0"},
    )
    check_serve_safety(cfg)


@pytest.mark.parametrize("password", ["", "short", "p" * 15])
def test_allow_remote_needs_a_password_of_16_characters(tmp_path: Path, password: str) -> None:
    path = write(
        tmp_path,
        f'[server]\nsecret_key = "{"k" * 32}"\n'
        f'[dev_inbox]\nenabled = true\nallow_remote = true\npassword = "{password}"\n',
    )
    result = refused_serve(path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "resetd: [dev_inbox] password: allow_remote = true needs a password of at least 16"
    )
    if password:
        assert password not in result.stderr
