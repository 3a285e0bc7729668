"""``[webhooks]``: off by default, and each mistake one line naming its key, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resetd.config import ConfigError
from resetd.config_load import load_config

from .helpers import TEST_SECRET, ConfigFactory
from .processes import run_cli, write_config
from .webhook_receiver import WEBHOOK_SECRET


def webhooks(make_config: ConfigFactory, **keys: Any) -> Any:
    return make_config(webhooks={"secret": WEBHOOK_SECRET, **keys}).webhooks


def test_webhooks_are_off_by_default(make_config: ConfigFactory) -> None:
    cfg = make_config().webhooks
    assert not cfg.enabled
    assert cfg.events == ("password.changed",)
    assert cfg.timeout == 10


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/hooks/resetd",
        "https://app.example.com:8443/hooks?source=resetd",
        "http://127.0.0.1:5000/hooks/resetd",
        "http://localhost:5000/hooks/resetd",
        "http://[::1]:5000/hooks/resetd",
    ],
)
def test_https_urls_and_loopback_http_urls_are_accepted(
    make_config: ConfigFactory, url: str
) -> None:
    assert webhooks(make_config, url=url).url == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://app.example.com/hooks", "plain http is allowed to a loopback host only"),
        ("http://10.0.0.5/hooks", "plain http is allowed to a loopback host only"),
        ("ftp://app.example.com/hooks", "expected an absolute https:// URL"),
        ("/hooks/resetd", "expected an absolute https:// URL"),
        ("https://user:pw@app.example.com/hooks", "must not contain a user name or password"),
        ("https://app.example.com/hooks#x", "must not contain a fragment"),
        ("https://app.example.com/ho\nok", "expected printable ASCII"),
        ("https://app.example.com:99999/hooks", "not a valid port"),
    ],
)
def test_a_url_that_is_not_https_or_loopback_http_is_refused(
    make_config: ConfigFactory, url: str, why: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        webhooks(make_config, url=url)
    assert str(exc.value).startswith("[webhooks] url: ")
    assert why in str(exc.value)


def test_a_short_secret_is_refused_without_showing_it(make_config: ConfigFactory) -> None:
    short = "s3cr3t-but-too-short"
    with pytest.raises(ConfigError) as exc:
        make_config(webhooks={"url": "https://app.example.com/h", "secret": short})
    assert str(exc.value).startswith("[webhooks] secret: too short, use at least 32")
    assert short not in str(exc.value)


def test_a_url_without_a_secret_is_refused(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"^\[webhooks\] secret: missing"):
        make_config(webhooks={"url": "https://app.example.com/h"})


def test_a_secret_without_a_url_is_refused(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"^\[webhooks\] url: missing"):
        make_config(webhooks={"secret": WEBHOOK_SECRET})


def test_unknown_or_no_events_are_refused(make_config: ConfigFactory) -> None:
    url = "https://app.example.com/h"
    with pytest.raises(ConfigError, match=r"^\[webhooks\] events: unknown event 'user.deleted'"):
        webhooks(make_config, url=url, events=["password.changed", "user.deleted"])
    with pytest.raises(ConfigError, match=r"^\[webhooks\] events: expected one or more"):
        webhooks(make_config, url=url, events=[])
    both = webhooks(make_config, url=url, events=["password.changed", "reset.requested"])
    assert both.events == ("password.changed", "reset.requested")


@pytest.mark.parametrize("timeout", [0, -1, 61])
def test_an_unbounded_or_empty_timeout_is_refused(
    make_config: ConfigFactory, timeout: float
) -> None:
    with pytest.raises(ConfigError, match=r"^\[webhooks\] timeout: expected more than 0"):
        webhooks(make_config, url="https://app.example.com/h", timeout=timeout)


def test_the_secret_can_come_from_the_environment() -> None:
    cfg = load_config(
        None,
        env={
            "RESETD_SERVER_SECRET_KEY": TEST_SECRET,
            "RESETD_WEBHOOKS_URL": "https://app.example.com/h",
            "RESETD_WEBHOOKS_SECRET": WEBHOOK_SECRET,
            "RESETD_WEBHOOKS_EVENTS": "password.changed, reset.requested",
        },
    )
    assert cfg.webhooks.secret == WEBHOOK_SECRET
    assert cfg.webhooks.events == ("password.changed", "reset.requested")


async def test_the_cli_names_the_key_and_exits_2(tmp_path: Path) -> None:
    short = "x" * 31
    config = write_config(
        tmp_path / "resetd.toml",
        {
            "server": {"secret_key": TEST_SECRET},
            "database": {"path": str(tmp_path / "resetd.db")},
            "webhooks": {"url": "https://app.example.com/h", "secret": short},
        },
    )
    for command in (["serve"], ["outbox"]):
        code, out, err = await run_cli(*command, "--config", str(config))
        assert code == 2
        assert err.startswith("resetd: [webhooks] secret: too short")
        assert short not in err + out
