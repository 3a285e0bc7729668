"""resetd's exceptions, and what becomes of each.

The whole tree; classes are defined here unless another module is named,
next to the code that raises them::

    Exception
    ├── FormError                 400 error page: a form that cannot be read at all
    ├── BadSearch                 400: an inbox search it will not run (inbox/search.py)
    │   └── SearchTooLarge        … because it is too long
    ├── CsrfFailure               400 error page: "this form has expired…"
    ├── TokenInvalid              400 invalid-link page, audited      (reset/tokens.py)
    ├── SigninRefused             429/503 sign-in page + Retry-After  (login_guard.py)
    ├── ApiError                  the JSON API's 4xx/5xx: {"errors": [{"code", "message"}]}
    ├── HashingBusy               no hashing place: 503 + Retry-After (hash_queue.py)
    ├── ConfigError               "resetd: [section] key: …", exit 2  (config.py)
    ├── DuplicateUser             "resetd user add" says which, exit 1 (users.py)
    ├── PermanentFailure          the mail is failed, not retried     (outbox/failures.py)
    ├── TemporaryFailure          the mail is retried with back-off   (outbox/failures.py)
    │   └── SessionRefused        the same, logged as an ERROR with a hint
    │       └── CertificateRefused    the relay's state shows tls_error
    └── ValueError
        └── UnsendableAddress     a request set aside; a [mail] sender refused

The first five reach a request handler's boundary, and ``errors_middleware``
(:mod:`resetd.middlewares`) is the one place that answers them, as it does
aiohttp's ``HTTPException`` (an error page with its status, JSON under
``/dev/inbox/api/`` and ``/api/v1/``) and anything unexpected (logged with its traceback, a
plain 500 page that reveals nothing). The others never reach a request: the
CLI, the outbox worker and the request processor handle them where they
happen. ``HashingBusy`` is answered by the handler that asked for the hash:
a sign-in turns it into ``SigninRefused``, the new-password form shows it with
its 503, and the hash upgrade after a sign-in waits for the next sign-in.
"""

from __future__ import annotations


class FormError(Exception):
    """A submitted form could not be read at all (not a field-level error)."""


class CsrfFailure(Exception):
    """The form's CSRF token is missing or wrong."""


class ApiError(Exception):
    """A JSON API request refused: its status and what was wrong, for machines
    (``code``: ``token_invalid``, ``password_too_short`` …) and for people.

    ``problems`` are ``{"code", "message"[, "field"]}`` objects; ``headers``
    go on the answer (``Retry-After``)."""

    def __init__(
        self,
        status: int,
        problems: list[dict[str, str]],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(", ".join(p["code"] for p in problems))
        self.status = status
        self.problems = problems
        self.headers = headers or {}

    @classmethod
    def one(
        cls,
        status: int,
        code: str,
        message: str,
        *,
        field: str = "",
        headers: dict[str, str] | None = None,
    ) -> ApiError:
        problem = {"code": code, "message": message}
        if field:
            problem["field"] = field
        return cls(status, [problem], headers)


class UnsendableAddress(ValueError):
    """A stored address resetd cannot put in an envelope or a header (see
    :func:`resetd.mail_headers.check_address`); the message says why, never the
    address."""


class BadSearch(Exception):
    """A dev-inbox search the inbox will not run: an unknown filter, a value a
    filter cannot use, or one too large (a 400 saying why)."""


class SearchTooLarge(BadSearch):
    """A dev-inbox search has more terms or characters than the inbox runs (a 400)."""


class SpoolBusy(Exception):
    """No spool file for large DATA became free in time (the sink answers 451)."""


class NotStored(Exception):
    """The inbox could not store a message someone waits for (the sink answers 451)."""
