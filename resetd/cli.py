"""``resetd`` command line: serve, user, outbox, audit, db. Thin: parse, call, print.

Exit codes: 0 success, 1 a refused operation (duplicate user, nothing to retry),
2 a configuration or usage error (one clear line, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from . import sendmail
from .config import Config, ConfigError
from .config_load import load_config
from .config_rules import check_serve_safety, validate
from .db_url import UrlError, parse_url, redacted_url
from .logs import clean_text, setup_logging
from .mail_headers import clean
from .passwords import Hasher, check_policy
from .serve import serve
from .storage import Storage
from .storage.open import open_storage
from .storage.requests import FAILED_KEPT
from .users import DuplicateUser, username_problem

log = logging.getLogger("resetd")
T = TypeVar("T")


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or os.environ.get("RESETD_CONFIG") or "resetd.toml"
    return load_config(path)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _with_storage(cfg: Config, fn: Callable[[Storage], Awaitable[T]]) -> T:
    """Open the storage ``cfg`` names, run ``fn`` on it, close it."""
    storage = await open_storage(cfg.database)
    try:
        return await fn(storage)
    finally:
        await storage.close()


# --- user --------------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        raise SystemExit("resetd: the two passwords do not match")
    return first


def _own_store_only(cfg: Config) -> int | None:
    if cfg.users.store != "resetd":
        print(
            f"resetd: [users] store is {cfg.users.store!r}: accounts live in the application's "
            f"table ({cfg.users.path}); manage them there",
            file=sys.stderr,
        )
        return 1
    return None


async def _user_add(cfg: Config, email: str, username: str, password: str) -> int:
    from email_validator import EmailNotValidError, validate_email

    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        print(f"resetd: --email: {exc}", file=sys.stderr)
        return 2
    problems = check_policy(cfg.passwords, password, password, username, email)
    if problems:
        print(f"resetd: password: {problems[0].message}", file=sys.stderr)
        return 1
    password_hash = await Hasher(cfg.passwords).hash(password)

    async def add(db: Storage) -> int:
        try:
            user = await db.users.add(email, username, password_hash)
        except DuplicateUser as exc:
            print(f"resetd: {exc}", file=sys.stderr)
            return 1
        print(f"added user {user.id}: {user.username} <{user.email}>")
        return 0

    return await _with_storage(cfg, add)


async def _user_list(cfg: Config) -> int:
    users = await _with_storage(cfg, lambda db: db.users.list())
    if not users:
        print("no users (add one with: resetd user add --email E --username U)")
    for u in users:
        # Cleaned: an account added before usernames were checked may hold
        # control characters, which would drive the terminal.
        print(f"{u.id:>5}  {clean(u.username):<24} {clean(u.email)}")
    return 0


# --- outbox & audit ----------------------------------------------------------


async def _outbox_list(cfg: Config, show_sent: bool) -> int:
    async def run(db: Storage) -> int:
        store = db.outbox
        counts = await store.counts()
        entries = await store.list(include_sent=show_sent)
        print(
            f"outbox: {counts['pending']} pending, {counts['failed']} failed, {counts['sent']} sent"
        )
        relay = await db.outbox.relay_status.load()
        if relay is not None and not relay[1].healthy:
            address, status = relay
            print(f"relay {address}: {status.state} since {_when(status.since)}: {status.error}")
            if status.hint:
                print(f"        hint: {status.hint}")
        for e in entries:
            when = {
                "pending": f"next={_when(e.next_attempt_at)}",
                "sent": f"sent={_when(e.sent_at)}",
            }.get(e.status, "")
            # A webhook event goes to [webhooks] url, shown without its query.
            to = "url" if e.channel == "webhook" else "to"
            print(
                f"{e.id:>6}  {e.status:<8} {e.kind:<16} attempts={e.attempts:<3} "
                f"created={_when(e.created_at)}  {when:<25} {to}={clean_text(e.recipient)}"
            )
            if e.last_error:  # a relay's (or the app's) reply: text from outside
                print(f"        last error: {clean_text(e.last_error)}")
        aside = await db.requests.failed(await db.now() - FAILED_KEPT)
        if aside:
            print(f"reset requests set aside (no mail made; kept {FAILED_KEPT // 86400} days):")
        for r in aside:
            print(f"{r.id:>6}  request  failed={_when(r.done_at)}  created={_when(r.created_at)}")
            print(f"        reason: {clean(r.failure)}")
        return 0

    return await _with_storage(cfg, run)


async def _outbox_retry(cfg: Config, mail_id: int | None) -> int:
    async def run(db: Storage) -> int:
        store = db.outbox
        queued, expired = await store.retry(mail_id)
        if queued:
            print(f"{queued} mail(s) queued again; a running resetd sends them within a second")
        if expired:
            print(
                f"{expired} reset mail(s) left failed: their links have expired, so the "
                "users have to ask for a new link",
                file=sys.stderr if not queued else sys.stdout,
            )
        if queued:
            return 0
        if expired:
            return 1
        if mail_id is None:
            print("resetd: nothing to retry: no failed mail", file=sys.stderr)
            return 1
        entry = await store.get(mail_id)
        why = f"no mail {mail_id}" if entry is None else f"mail {mail_id} is {entry.status}"
        print(f"resetd: nothing to retry: {why}, only failed mail can be retried", file=sys.stderr)
        return 1

    return await _with_storage(cfg, run)


async def _audit(cfg: Config, limit: int) -> int:
    events = await _with_storage(cfg, lambda db: db.audit.recent(limit))
    for ev in reversed(events):
        print(
            f"{_when(ev.at)}  {ev.event:<16} {ev.outcome:<28} user={ev.user_id or '-':<6} "
            f"ip={ev.client_ip or '-'}  ua={clean_text((ev.user_agent or '-')[:60])}"
        )
    if not events:
        print("audit trail is empty")
    return 0


# --- db ------------------------------------------------------------------------


def _copy_target(cfg: Config, to: str, schema: str | None) -> Config:
    """``cfg`` as it will be once ``[database] url`` is ``to``: checked whole, as
    the next start will check it. Raises ConfigError."""
    if cfg.database.engine != "sqlite":
        raise ConfigError(
            f"[database] url: {cfg.database.redacted_url()}: db copy reads resetd's SQLite "
            "database; run it with the configuration that names the SQLite file"
        )
    try:
        target = parse_url(to)
    except UrlError as exc:
        raise ConfigError(f"db copy --to: {exc}") from None
    if target.engine != "postgresql":
        raise ConfigError(f"db copy --to: expected a postgresql:// url, got {redacted_url(to)!r}")
    database = replace(cfg.database, url=to, schema=schema or cfg.database.schema or "public")
    moved = replace(cfg, database=database)
    validate(moved)
    return moved


async def _db_copy(cfg: Config, target: Config, replace_rows: bool) -> int:
    from .storage.postgres.copy import CopyError, TargetNotEmpty, copy_to_postgres

    to = target.database
    try:
        copied = await copy_to_postgres(
            cfg.database.path, to.url, schema=to.schema, replace=replace_rows
        )
    except TargetNotEmpty as exc:
        print(f"resetd: db copy: {exc}; give --replace to delete them first", file=sys.stderr)
        return 2
    except CopyError as exc:
        print(f"resetd: db copy: {exc}", file=sys.stderr)
        return 2
    for c in copied:
        print(f"{c.table:<16} {_rows(c.rows):>14} copied")
    print(
        f"copied {_rows(sum(c.rows for c in copied))} from {cfg.database.path} to "
        f"{to.redacted_url()} schema {to.schema}; set [database] url to it, then start resetd"
    )
    return 0


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


# --- entry point ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $RESETD_CONFIG or ./resetd.toml)",
    )
    p = argparse.ArgumentParser(
        prog="resetd",
        description="Self-hosted password reset with a built-in dev inbox.",
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", parents=[common], help="run the HTTP server (and the dev inbox)")
    sub.add_parser(
        "sendmail", add_help=False, help="hand a message on stdin to the dev inbox (sendmail -t)"
    )

    user = sub.add_parser("user", parents=[common], help="manage accounts")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = usub.add_parser("add", parents=[common], help="create an account")
    add.add_argument("--email", required=True)
    add.add_argument("--username", required=True)
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    usub.add_parser("list", parents=[common], help="list accounts")

    outbox = sub.add_parser("outbox", parents=[common], help="show pending and failed mail")
    outbox.add_argument("--all", action="store_true", help="include sent mail")
    osub = outbox.add_subparsers(dest="outbox_command", metavar="ACTION")
    retry = osub.add_parser("retry", parents=[common], help="queue failed mail again")
    retry.add_argument("id", nargs="?", type=int, help="outbox id to retry")
    retry.add_argument("--all-failed", action="store_true", help="retry every failed mail")

    audit = sub.add_parser("audit", parents=[common], help="show the audit trail")
    audit.add_argument("--limit", type=int, default=100)

    db = sub.add_parser("db", parents=[common], help="resetd's database: move it to PostgreSQL")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    copy = dsub.add_parser(
        "copy",
        parents=[common],
        help="copy resetd's SQLite database into PostgreSQL",
        description=(
            "Copy every table of resetd's SQLite database ([database] path, migrated to the "
            "newest version first) into the PostgreSQL database at URL (migrated too), ids "
            "included, in one transaction. Stop resetd first; afterwards set [database] url "
            "to URL. The dev inbox's database is not copied: it stays on SQLite, one per "
            "instance; neither is an application's users table ([users] path)."
        ),
    )
    copy.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://user:password@host/dbname"
    )
    copy.add_argument(
        "--schema",
        metavar="NAME",
        help="the schema to copy into, as [database] schema will name it (default: public)",
    )
    copy.add_argument(
        "--replace",
        action="store_true",
        help="delete the rows resetd's tables already hold there (default: refuse)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; its exit code. A reader that goes away early
    (``resetd outbox | head``) ends the command quietly with 1."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
    except BrokenPipeError:
        # As Python's documentation advises (signal module, "Note on SIGPIPE"):
        # point stdout at /dev/null, or the interpreter's own flush at exit
        # fails again and prints its complaint.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def _global_options(given: list[str]) -> list[str]:
    """The ``--config PATH`` (or ``--config=PATH``) options before the command."""
    n = 0
    while n < len(given):
        if given[n] == "--config" and n + 1 < len(given):
            n += 2
        elif given[n].startswith("--config="):
            n += 1
        else:
            break
    return given[:n]


def _main(argv: Sequence[str] | None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    lead = _global_options(given)
    if given[len(lead) : len(lead) + 1] == ["sendmail"]:
        # sendmail's own flags (-oi, -odi, -bm) are not argparse's: its module parses
        # them, the global --config included.
        return sendmail.run([*lead, *given[len(lead) + 1 :]])
    args = build_parser().parse_args(argv)
    try:
        cfg = _config(args)
        if args.command == "serve":
            check_serve_safety(cfg)
    except ConfigError as exc:
        print(f"resetd: {exc}", file=sys.stderr)
        return 2
    setup_logging(os.environ.get("RESETD_LOG_LEVEL", "INFO"))
    try:
        if args.command == "serve":
            return asyncio.run(serve(cfg))
        if args.command == "user":
            refused = _own_store_only(cfg)
            if refused is not None:
                return refused
            if args.user_command == "add":
                # Checked before the password prompt, so nobody types one for nothing.
                problem = username_problem(args.username)
                if problem is not None:
                    print(f"resetd: --username: {problem}", file=sys.stderr)
                    return 2
                password = _read_password(args)
                return asyncio.run(_user_add(cfg, args.email, args.username.strip(), password))
            return asyncio.run(_user_list(cfg))
        if args.command == "outbox":
            if args.outbox_command == "retry":
                if (args.id is None) == (not args.all_failed):
                    print("resetd: outbox retry: give an ID or --all-failed", file=sys.stderr)
                    return 2
                return asyncio.run(_outbox_retry(cfg, None if args.all_failed else args.id))
            return asyncio.run(_outbox_list(cfg, args.all))
        if args.command == "audit":
            return asyncio.run(_audit(cfg, args.limit))
        if args.command == "db":
            target = _copy_target(cfg, args.to, args.schema)
            return asyncio.run(_db_copy(cfg, target, args.replace))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"resetd: {exc}", file=sys.stderr)
        return 2
    return 2
