"""Bounds on a Sieve script and on one run of it (issue 17 §1 "Limits").

The defaults are what an administrator would pick for a shared server: they let any hand-written or
generated (webmail rules) script through and stop a hostile one early.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SieveLimits"]


@dataclass(frozen=True, slots=True)
class SieveLimits:
    max_script_size: int = 64 * 1024  # octets of script text (ManageSieve max_script_size default)
    max_nesting: int = 32  # depth of blocks and nested tests
    max_commands: int = 4096  # commands + tests in one script
    max_strings: int = 16384  # string literals (and list items) in one script
    max_actions: int = 32  # actions one run may produce (RFC 5228 §2.10.6 "too many actions")
    max_redirects: int = 4  # redirect actions per message
    max_include_depth: int = 5  # RFC 6609 §3.2 nesting of include
    max_cpu_seconds: float = 0.1  # run-time budget of one evaluation (checked between commands)
    max_regex_input: int = 64 * 1024  # characters a :regex or :matches test looks at
    regex_timeout: float = 0.05  # seconds one regex match may take (regex package timeout=)
    max_variable_size: int = 4096  # RFC 5229 §6: implementations may truncate variable values
    max_variables: int = 256  # distinct variable names per run
    max_body_size: int = 1024 * 1024  # octets of body a body test examines
