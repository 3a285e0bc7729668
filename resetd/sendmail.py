"""``resetd sendmail``: a sendmail-compatible entry point that hands mail to the dev inbox.

PHP's ``mail()`` (``sendmail_path = "/path/resetd sendmail -t -i"``), cron and
scripts pipe a message into ``sendmail``; this reads it from stdin and sends
it over SMTP to the inbox at ``[dev_inbox] smtp_host:smtp_port`` (or
``-S``/``--smtp-addr host:port``, as Mailpit's ``mailpit sendmail -S``).

Recipients are the arguments; with ``-t``, or when none is given, also the
message's To, Cc and Bcc (the Bcc field is then taken out, as sendmail does).
The envelope sender is ``-f`` (``-r``), else the From address, else
``user@host``. The flags PHP and other callers pass and that mean nothing
here are accepted and ignored: ``-i``, ``-oi``, ``-odi`` and any ``-o…``,
``-v``, ``-bm``, ``-F name``, ``-B type``, ``-e x``, ``-N dsn``, ``-R ret``,
``-V envid``. Mailpit's ``MP_SENDMAIL_SMTP_ADDR`` and ``MP_SENDMAIL_FROM``
are honoured too. Exit codes follow sysexits.h: 64 usage, 65 bad message,
69 the inbox cannot be reached, 75 it refused the mail for now, 2 a bad
config file.
"""

from __future__ import annotations

import getpass
import os
import smtplib
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import BinaryIO, TextIO

from .config import ConfigError, DevInboxConfig
from .config_load import load_config
from .raw_headers import without_fields

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL = 64, 65, 69, 75
# Flags that take a value and mean nothing here (the value may be attached: -Fname).
IGNORED_WITH_VALUE = set("FBeNRVX")
IGNORED = set("itvUmG")
TIMEOUT = 30.0

USAGE = """usage: resetd sendmail [-t] [-f from] [-S host:port] [recipient …] < message

Hands the message on stdin to the dev inbox over SMTP.
  -t               also send to the message's To, Cc and Bcc (Bcc is removed)
  -f, -r ADDRESS   envelope sender (default: the From address)
  -S, --smtp-addr HOST:PORT   the inbox's SMTP address (default: [dev_inbox] smtp_host:smtp_port)
  --config PATH    resetd.toml to read [dev_inbox] from
  -i, -oi, -odi, -o…, -v, -bm, -F NAME, -B, -e, -N, -R, -V   accepted and ignored
"""


class UsageError(ValueError):
    """A flag sendmail callers would not pass, or one missing its value."""


@dataclass
class Options:
    sender: str = ""
    smtp_addr: str = ""
    config: str = ""
    headers: bool = False  # -t
    recipients: list[str] = field(default_factory=list)
    help: bool = False


def parse_args(argv: Sequence[str]) -> Options:
    """sendmail's command line, which argparse cannot take (``-oi``, ``-odi``, ``-bm``)."""
    opts = Options()
    args = list(argv)
    n = 0

    def value(rest: str, flag: str) -> str:
        nonlocal n
        if rest:
            return rest
        n += 1
        if n >= len(args):
            raise UsageError(f"option -{flag} needs a value")
        return args[n]

    while n < len(args):
        arg = args[n]
        if arg == "--":
            opts.recipients.extend(args[n + 1 :])
            break
        if arg.startswith("--"):
            name, eq, given = arg[2:].partition("=")
            if name in ("help",):
                opts.help = True
            elif name in ("smtp-addr", "from", "config"):
                got = given if eq else value("", name)
                setattr(opts, {"smtp-addr": "smtp_addr", "from": "sender"}.get(name, name), got)
            else:
                raise UsageError(f"unknown option {arg}")
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            i = 0
            while i < len(letters):
                flag, rest = letters[i], letters[i + 1 :]
                if flag == "h":
                    opts.help = True
                elif flag == "t":
                    opts.headers = True
                elif flag in ("f", "r"):
                    opts.sender = value(rest, flag)
                    break
                elif flag == "S":
                    opts.smtp_addr = value(rest, flag)
                    break
                elif flag == "o":
                    break  # -oi, -odi, -oem, -oQ…: queue and delivery options
                elif flag == "b":
                    mode = value(rest, flag)
                    if mode != "m":
                        raise UsageError(f"-b{mode}: only -bm (deliver mail) is supported")
                    break
                elif flag in IGNORED_WITH_VALUE:
                    value(rest, flag)
                    break
                elif flag in IGNORED:
                    pass
                else:
                    raise UsageError(f"unknown option -{flag}")
                i += 1
        else:
            opts.recipients.append(arg)
        n += 1
    return opts


def _inbox_address(opts: Options, env: dict[str, str] | os._Environ[str]) -> tuple[str, int]:
    text = opts.smtp_addr or env.get("MP_SENDMAIL_SMTP_ADDR", "")
    if text:
        host, colon, port = text.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"-S {text!r}: expected host:port")
        return host.strip("[]") or "127.0.0.1", int(port)
    path = opts.config or env.get("RESETD_CONFIG") or "resetd.toml"
    if opts.config or os.path.exists(path):
        inbox = load_config(path).dev_inbox
    else:
        inbox = DevInboxConfig()
    return inbox.smtp_host, inbox.smtp_port


def _default_sender() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "nobody"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def run(
    argv: Sequence[str],
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """The command; its exit code."""
    err = stderr or sys.stderr
    environ = os.environ if env is None else env
    try:
        opts = parse_args(argv)
        if opts.help:
            print(USAGE, file=sys.stdout)
            return 0
        host, port = _inbox_address(opts, environ)
    except UsageError as exc:
        print(f"resetd sendmail: {exc}\n\n{USAGE}", file=err)
        return EX_USAGE
    except ConfigError as exc:
        print(f"resetd sendmail: {exc}", file=err)
        return 2
    limit = DevInboxConfig.max_message_size
    raw = (stdin or sys.stdin.buffer).read(limit + 1)
    if len(raw) > limit:
        print(f"resetd sendmail: the message is over {limit} bytes", file=err)
        return EX_DATAERR
    head = BytesHeaderParser(policy=compat32).parsebytes(raw)
    recipients = list(opts.recipients)
    if opts.headers or not recipients:
        fields = [*head.get_all("To", []), *head.get_all("Cc", []), *head.get_all("Bcc", [])]
        recipients += [addr for _, addr in getaddresses([str(f) for f in fields]) if addr]
        raw = without_fields(raw, (b"bcc",))
    if not recipients:
        print("resetd sendmail: no recipients (give some, or To/Cc/Bcc with -t)", file=err)
        return EX_DATAERR
    sender = (
        opts.sender
        or environ.get("MP_SENDMAIL_FROM", "")
        or parseaddr(str(head.get("From", "")))[1]
        or _default_sender()
    )
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            smtp.sendmail(sender, recipients, raw)
    except smtplib.SMTPRecipientsRefused as exc:
        print(f"resetd sendmail: recipients refused: {exc.recipients}", file=err)
        return EX_DATAERR
    except smtplib.SMTPResponseException as exc:
        code = EX_TEMPFAIL if 400 <= exc.smtp_code < 500 else EX_DATAERR
        print(f"resetd sendmail: {exc.smtp_code} {exc.smtp_error!r}", file=err)
        return code
    except (OSError, smtplib.SMTPException) as exc:
        print(f"resetd sendmail: cannot reach the dev inbox at {host}:{port}: {exc}", file=err)
        return EX_UNAVAILABLE
    return 0
