"""Errors the engine raises for a caller's mistake; the API maps each to its JSON shape."""

from __future__ import annotations

from typing import Any


class DriplineError(Exception):
    """A request that cannot be done as asked; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(
        self, code: str, message: str, details: Any = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        if status is not None:
            self.status = status


class NotFound(DriplineError):
    """Raise when the thing the caller named does not exist."""

    status = 404


class Conflict(DriplineError):
    """Raise when the request clashes with the current state (an active enrollment...)."""

    status = 409


class Invalid(DriplineError):
    """Raise when the request is well-formed JSON but its content is wrong."""

    status = 422
