"""Sieve parser + validator (RFC 5228 §3.2 require, §8.2 grammar): errors with precise positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhouse.proto.sieve import (
    SieveLimitError,
    SieveLimits,
    SieveSyntaxError,
    SieveValidationError,
    parse_and_validate,
)


def test_valid_script() -> None:
    v = parse_and_validate(
        'require ["fileinto", "copy"];\nif header :contains "subject" "x" { fileinto :copy "A"; }'
    )
    assert v.commands[0].name == "if"
    assert v.commands[0].block is not None and v.commands[0].block[0].tags == {"copy": None}
    assert "fileinto" in v.requires


@pytest.mark.parametrize(
    ("script", "pos", "needle"),
    [
        ('fileinto "x";', (1, 1), "requires the 'fileinto' extension"),
        ('require "nosuch";', (1, 9), "unknown extension"),
        ('require ["fileinto"];\nkeep;\nrequire "copy";', (3, 1), "require must come before"),
        ("if true { keep }", (1, 16), "expected ';'"),
        ("keep :copy;", (1, 6), "unknown tag :copy"),
        ('if header :is :contains "a" "b" { keep; }', (1, 15), "conflicts with :is"),
        ('if header :regex "a" "b" { keep; }', (1, 11), "'regex' extension"),
        ("else { keep; }", (1, 1), "without a preceding 'if'"),
        ('if header "a" { keep; }', (1, 4), "takes a string list"),
        ('require "relational";\nif header :value "xx" "a" "b" { keep; }', (2, 18), "relational operator"),
        ('if header :comparator "i;ascii-numeric" "a" "b" {keep;}', (1, 23), "must be required"),
        ("nosuch;", (1, 1), "unknown command"),
        ("if nosuch { keep; }", (1, 4), "unknown test"),
        ("if true { keep; ", (1, 17), "missing '}'"),
        ("keep", (1, 5), "expected ';'"),
        ('redirect ["a", "b"];', (1, 1), "takes a string"),
    ],
)
def test_errors_with_positions(script: str, pos: tuple[int, int], needle: str) -> None:
    with pytest.raises((SieveSyntaxError, SieveValidationError)) as e:
        parse_and_validate(script)
    assert (e.value.line, e.value.column) == pos, e.value
    assert needle in e.value.message


def test_one_megabyte_script_is_a_limit_error() -> None:
    with pytest.raises(SieveLimitError) as e:
        parse_and_validate("keep;\n" * ((1 << 20) // 6 + 1))
    assert "too large" in e.value.message


def test_nesting_and_command_limits() -> None:
    deep = "if true {" * 40 + "keep;" + "}" * 40
    with pytest.raises(SieveLimitError):
        parse_and_validate(deep)
    with pytest.raises(SieveLimitError):
        parse_and_validate("keep;" * 50, SieveLimits(max_commands=10))
    with pytest.raises(SieveLimitError):
        parse_and_validate("if not " * 40 + "true {keep;}")


def test_encoded_character() -> None:
    v = parse_and_validate(
        'require ["encoded-character", "fileinto"];\nfileinto "${hex:41 42}${unicode:263a}${hex:zz}";'
    )
    assert v.commands[0].positional[0].values == ("AB\u263a${hex:zz}",)  # type: ignore[union-attr]
    with pytest.raises(SieveValidationError):
        parse_and_validate('require "encoded-character";\nredirect "${unicode:D800}";')
    # not required: left as written (RFC 5228 §2.4.2.4)
    v = parse_and_validate('redirect "${hex:41}";')
    assert v.commands[0].positional[0].values == ("${hex:41}",)  # type: ignore[union-attr]


def test_ihave_block_with_unknown_extension_is_not_validated() -> None:
    v = parse_and_validate(
        'require "ihave";\nif ihave "x-unknown" { x_unknown_command :foo; } else { keep; }'
    )
    assert v.commands[0].block == ()
    v = parse_and_validate('require "ihave";\nif ihave "fileinto" { fileinto "A"; }')
    assert v.commands[0].block is not None and v.commands[0].block[0].name == "fileinto"


def test_non_utf8_script_position() -> None:
    with pytest.raises(SieveValidationError) as e:
        parse_and_validate(b"keep;\n# \xff\n")
    assert (e.value.line, e.value.column) == (2, 3)


_words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.lists(_words, min_size=1, max_size=5), st.booleans())
def test_string_round_trip(values: list[str], multiline: bool) -> None:
    """Any string quoted (or as text:) parses back to the same value."""
    if multiline and all("\n" not in v and "\r" not in v for v in values):
        body = "".join(("." + v if v.startswith(".") else v) + "\r\n" for v in values)
        v = parse_and_validate(f'require "fileinto";\nfileinto text:\r\n{body}.\r\n;')
        assert v.commands[0].positional[0].values == ("".join(x + "\r\n" for x in values),)  # type: ignore[union-attr]
    quoted = ", ".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in values)
    v = parse_and_validate(f'if header :is [{quoted}] "k" {{ keep; }}')
    assert v.commands[0].tests[0].positional[0].values == tuple(values)  # type: ignore[union-attr]
