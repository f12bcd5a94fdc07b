"""Sieve errors with positions (RFC 5228 §2.10.5 compile errors, §2.10.6 run-time errors).

Invariant: every error carries a 1-based ``line`` and ``column`` (0, 0 when no position applies, e.g. a
run-time limit) and a human ``message``; ``str(err)`` is ``"line L, column C: message"``, which is what
ManageSieve CHECKSCRIPT returns to the client.
"""

from __future__ import annotations

__all__ = ["SieveError", "SieveSyntaxError", "SieveValidationError", "SieveLimitError", "SieveRuntimeError"]


class SieveError(Exception):
    """Base of every Sieve error: ``line``, ``column`` (1-based; 0 = unknown) and ``message``."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.message = message


class SieveSyntaxError(SieveError):
    """The script is not valid RFC 5228 §8 grammar (lexer or parser)."""


class SieveValidationError(SieveError):
    """Grammar is fine but a command, test, argument or extension is wrong (RFC 5228 §2.10.5, §3.2)."""


class SieveLimitError(SieveError):
    """A :class:`~mailhouse.proto.sieve.limits.SieveLimits` bound was exceeded (compile or run time)."""


class SieveRuntimeError(SieveError):
    """RFC 5228 §2.10.6: an error while running; the caller keeps the message (implicit keep to INBOX)."""
