"""The domain's exceptions; middlewares.py maps them to HTTP in one place."""

from __future__ import annotations


class FormError(Exception):
    """A submitted form could not be read at all (not a field-level error)."""


class CsrfFailure(Exception):
    """The form's CSRF token is missing or wrong."""


class UnsendableAddress(ValueError):
    """A stored address resetd cannot put in an envelope or a header (see
    :func:`resetd.mail_headers.check_address`); the message says why, never the
    address."""
