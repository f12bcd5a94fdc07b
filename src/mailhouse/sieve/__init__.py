"""Sieve mail filtering (RFC 5228 and extensions): compile a script, run it on one delivery.

Public API (stable; the delivery, ManageSieve and webmail code use only these names):

- :func:`compile_script` ``(text, *, name="", limits=SieveLimits()) -> Script``: raises a
  :class:`SieveError` subclass (``.line``, ``.column``, ``.message``; ``str()`` is what
  ManageSieve CHECKSCRIPT returns). ``Script.includes`` lists the ``(Location, name)`` pairs the
  script includes (RFC 6609 names are constants), so the caller compiles those before running.
- :func:`evaluate` ``(script, ctx, *, includes={...}, limits=SieveLimits()) -> SieveResult``
  (async): ``ctx`` implements :class:`SieveContext` (:class:`SimpleContext` is a ready one).
  ``SieveResult.actions`` are the typed actions in order (:class:`Keep`, :class:`FileInto`,
  :class:`Redirect`, :class:`Discard`, :class:`Reject`, :class:`Vacation`, :class:`Notify`,
  :class:`AddHeader`, :class:`DeleteHeader`), ``implicit_keep`` (with ``implicit_keep_flags``),
  ``error`` (a run-time error: keep in INBOX, tell the user) and ``duplicate_keys`` to record.
- :func:`apply_header_edits` ``(raw, result.header_edits) -> bytes``: the editheader changes.
- :data:`EXTENSIONS`: the SIEVE capability list (ManageSieve, RFC 5804 §1.7).
"""

from mailhouse.proto.sieve.errors import (
    SieveError,
    SieveLimitError,
    SieveRuntimeError,
    SieveSyntaxError,
    SieveValidationError,
)
from mailhouse.proto.sieve.limits import SieveLimits
from mailhouse.proto.sieve.validate import EXTENSIONS
from mailhouse.sieve.actions import (
    Action,
    AddHeader,
    DeleteHeader,
    Discard,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)
from mailhouse.sieve.context import SieveContext, SimpleContext
from mailhouse.sieve.editheader import apply_header_edits
from mailhouse.sieve.evaluate import evaluate
from mailhouse.sieve.script import Location, Script, compile_script

__all__ = [
    "EXTENSIONS",
    "Action",
    "AddHeader",
    "DeleteHeader",
    "Discard",
    "FileInto",
    "Keep",
    "Location",
    "Notify",
    "Redirect",
    "Reject",
    "Script",
    "SieveContext",
    "SieveError",
    "SieveLimitError",
    "SieveLimits",
    "SieveResult",
    "SieveRuntimeError",
    "SieveSyntaxError",
    "SieveValidationError",
    "SimpleContext",
    "Vacation",
    "apply_header_edits",
    "compile_script",
    "evaluate",
]
