"""The Sieve language as ManageSieve needs it: validate a script (CHECKSCRIPT, PUTSCRIPT) with
line-numbered errors, and the extension list of the SIEVE capability (RFC 5804 §1.7, §2.6, §2.12).

The language itself is the ``sieve`` service's; this module only adapts its compile errors to
the ``"line N: ..."`` texts ManageSieve clients show next to the script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailhouse.sieve import EXTENSIONS, SieveError, SieveLimits, compile_script


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What compiling a script found: ERRORS (each "line N: ...") refuse it, WARNINGS do not."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class ScriptChecker(Protocol):
    """The Sieve language as ManageSieve needs it."""

    @property
    def extensions(self) -> tuple[str, ...]: ...  # the SIEVE capability (RFC 5804 §1.7)

    def check(self, script: str) -> CheckResult: ...


class SieveChecker:
    """The sieve service's compiler: errors as ``line L, column C: message`` (RFC 5804 §2.12)."""

    extensions: tuple[str, ...] = EXTENSIONS

    def __init__(self, limits: SieveLimits) -> None:
        self.limits = limits

    def check(self, script: str) -> CheckResult:
        try:
            compile_script(script, limits=self.limits)
        except SieveError as e:
            return CheckResult(errors=(str(e),))
        return CheckResult()
