"""The domain's exceptions; middlewares.py maps them to HTTP in one place."""

from __future__ import annotations


class FormError(Exception):
    """A submitted form could not be read at all (not a field-level error)."""


class CsrfFailure(Exception):
    """The form's CSRF token is missing or wrong."""


class SearchTooLarge(Exception):
    """A dev-inbox search has more terms or characters than the inbox runs (a 400)."""
