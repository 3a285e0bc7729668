"""``resetd.toml`` + environment → a checked, frozen :class:`~resetd.config.Config`."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import SECRET_KEYS, SECTIONS, Config, ConfigError, DatabaseConfig, UsersConfig
from .config_rules import validate
from .db_url import UrlError, parse_url, redacted_url, sqlite_url

# The Flask Mega-Tutorial's variable names, honoured so its .env files work.
TUTORIAL_ENV = {
    "SECRET_KEY": ("server", "secret_key"),
    "MAIL_SERVER": ("mail", "server"),
    "MAIL_PORT": ("mail", "port"),
    "MAIL_USE_TLS": ("mail", "use_tls"),
    "MAIL_USERNAME": ("mail", "username"),
    "MAIL_PASSWORD": ("mail", "password"),
}

# RESETD_* variables that steer the process rather than name a config key
# (RESETD_TEST_POSTGRES: the test suite's PostgreSQL server, see tests/pg.py).
PROCESS_ENV = {"RESETD_CONFIG", "RESETD_LOG_LEVEL", "RESETD_LOOP_STATS", "RESETD_TEST_POSTGRES"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def shown(section: str, key: str, raw: Any) -> str:
    """How an error message names a value it refuses: ``repr`` of it, except for
    a secret key, whose value is never printed (only its kind)."""
    if (section, key) not in SECRET_KEYS:
        return repr(raw)
    kind = _KINDS.get(type(raw), "a list" if isinstance(raw, list) else "a table")
    return f"{kind} (value not shown)"


def _coerce(section: str, key: str, typ: Any, raw: Any, from_env: bool) -> Any:
    where = f"[{section}] {key}"
    got = shown(section, key, raw)
    if typ == "bool" or typ is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {got}")
    if typ == "int" or typ is int:
        return _number(where, got, raw, from_env, int, (int,), "an integer")
    if typ == "float" or typ is float:
        return _number(where, got, raw, from_env, float, (int, float), "a number")
    if typ == "str" or typ is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{where}: expected a string, got {got}")
    if typ == "tuple[str, ...]":
        if from_env and isinstance(raw, str):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return tuple(raw)
        raise ConfigError(f"{where}: expected a list of strings, got {got}")
    raise AssertionError(f"unsupported config type {typ!r}")  # pragma: no cover


def _number(
    where: str,
    got: str,
    raw: Any,
    from_env: bool,
    convert: type[int] | type[float],
    accepted: tuple[type[int] | type[float], ...],
    what: str,
) -> int | float:
    """An integer or a number: from TOML as is (never a boolean), from the
    environment parsed from its text."""
    if not isinstance(raw, bool):
        if isinstance(raw, accepted):
            return convert(raw)
        if from_env and isinstance(raw, str):
            try:
                return convert(raw.strip())
            except ValueError:
                pass
    raise ConfigError(f"{where}: expected {what}, got {got}")


def _build_section(section: str, values: Mapping[str, tuple[Any, bool]]) -> Any:
    cls = SECTIONS[section]
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (raw, from_env) in values.items():
        if key not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"[{section}] {key}: unknown key (known keys: {choices})")
        kwargs[key] = _coerce(section, key, known[key].type, raw, from_env)
    return cls(**kwargs)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read ``path`` (must exist), apply env overrides, validate, return a frozen Config.

    ``overrides`` (section → key → value) is applied last; tests use it instead of
    writing files. Raises ConfigError with a one-line message.
    """
    env = os.environ if env is None else env
    source = "<defaults>" if path is None else str(Path(path))
    values = _file_values({} if path is None else _read_toml(Path(path)))
    _add_env_values(values, env)
    for section, table in (overrides or {}).items():
        for key, value in table.items():
            values[section][key] = (value, False)

    built = {name: _build_section(name, vals) for name, vals in values.items()}
    built["database"] = _resolve_database(
        built["database"],
        url_level=_level(values, overrides, "database", "url"),
        path_level=_level(values, overrides, "database", "path"),
    )
    built["users"] = _resolve_users(built["users"], built["database"])
    cfg = Config(**built, source=source)
    validate(cfg)
    return cfg


# section → key → (value, whether it came from the environment)
Values = dict[str, dict[str, tuple[Any, bool]]]


def _level(
    values: Values, overrides: Mapping[str, Mapping[str, Any]] | None, section: str, key: str
) -> int | None:
    """Where a key's value came from: 2 the caller's overrides, 1 the environment,
    0 the file; None when it was not given."""
    if key in (overrides or {}).get(section, {}):
        return 2
    if key not in values[section]:
        return None
    return 1 if values[section][key][1] else 0


def _resolve_database(
    db: DatabaseConfig, *, url_level: int | None, path_level: int | None
) -> DatabaseConfig:
    """``[database] url`` and ``path`` made one: url is the whole answer, and path
    the SQLite file (the older spelling, still honoured).

    A spelling from a later source wins over the other from an earlier one (an
    environment's RESETD_DATABASE_URL over the file's path); both from one
    source must name the same SQLite file. Raises ConfigError.
    """
    if url_level is None:
        return replace(db, url=sqlite_url(db.path))
    try:
        parsed = parse_url(db.url)
    except UrlError as exc:
        raise ConfigError(f"[database] url: {exc}") from None
    if path_level is not None and path_level >= url_level:
        if path_level > url_level:
            return replace(db, url=sqlite_url(db.path))
        if parsed.engine != "sqlite" or parsed.sqlite_path != db.path:
            raise ConfigError(
                f"[database] url: {redacted_url(db.url)!r} and [database] path {db.path!r} "
                "name different databases; set only url (path is its older spelling)"
            )
    if parsed.engine == "sqlite":
        return replace(db, path=parsed.sqlite_path)
    return replace(db, schema=db.schema or "public")


def _resolve_users(users: UsersConfig, db: DatabaseConfig) -> UsersConfig:
    """``[users] url`` for ``store = "postgresql"``: as given, else resetd's own
    ``[database] url`` when that is PostgreSQL (the app's table in the same
    database); ``schema`` "public" unless given. Raises ConfigError."""
    if users.store != "postgresql":
        return users
    url = users.url
    if not url:
        if db.engine != "postgresql":
            raise ConfigError(
                '[users] url: required when store = "postgresql" and [database] url is '
                "not PostgreSQL (the app's database: postgresql://user:password@host/dbname)"
            )
        url = db.url
    try:
        parsed = parse_url(url)
    except UrlError as exc:
        raise ConfigError(f"[users] url: {exc}") from None
    if parsed.engine != "postgresql":
        raise ConfigError(
            '[users] url: store = "postgresql" needs a postgresql:// url, '
            f"got {redacted_url(url)!r}"
        )
    return replace(users, url=url, schema=users.schema or "public")


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (use --config PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: config file is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def _file_values(raw: dict[str, Any]) -> Values:
    """The file's values by section; an unknown section is an error."""
    values: Values = {name: {} for name in SECTIONS}
    for section, table in raw.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"[{section}]: unknown section (known: {', '.join(sorted(SECTIONS))})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: expected a table")
        for key, value in table.items():
            values[section][key] = (value, False)
    return values


def _add_env_values(values: Values, env: Mapping[str, str]) -> None:
    """The tutorial's variables (SECRET_KEY, MAIL_SERVER…), then ``RESETD_<SECTION>_<KEY>``,
    over what the file says."""
    for name, (section, key) in TUTORIAL_ENV.items():
        if name in env:
            values[section][key] = (env[name], True)
    for name, value in env.items():
        if not name.startswith("RESETD_") or name in PROCESS_ENV:
            continue
        rest = name[len("RESETD_") :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                values[section][rest[len(section) + 1 :]] = (value, True)
                break
        else:
            raise ConfigError(f"{name}: unknown environment override (no such section)")
