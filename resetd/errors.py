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


class SearchTooLarge(Exception):
    """A dev-inbox search has more terms or characters than the inbox runs (a 400)."""


class SpoolBusy(Exception):
    """No spool file for large DATA became free in time (the sink answers 451)."""


class NotStored(Exception):
    """The inbox could not store a message someone waits for (the sink answers 451)."""
