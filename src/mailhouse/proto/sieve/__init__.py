"""Sieve language core, sans-IO (RFC 5228 and the extensions in :data:`validate.EXTENSIONS`).

``lexer`` → ``parser`` (AST in ``ast``) → ``validate`` (typed :class:`Node` tree, ``require`` rules);
the evaluator lives in the services layer (:mod:`mailhouse.sieve`).
"""

from mailhouse.proto.sieve.errors import (
    SieveError,
    SieveLimitError,
    SieveRuntimeError,
    SieveSyntaxError,
    SieveValidationError,
)
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.validate import EXTENSIONS, Node, ValidatedScript, parse_and_validate

__all__ = [
    "EXTENSIONS",
    "Node",
    "SieveError",
    "SieveLimitError",
    "SieveLimits",
    "SieveRuntimeError",
    "SieveSyntaxError",
    "SieveValidationError",
    "ValidatedScript",
    "parse_and_validate",
]
