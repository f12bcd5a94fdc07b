"""Sieve parser (RFC 5228 §8.2 grammar) from tokens to :mod:`mailhouse.proto.sieve.ast`.

Invariants: an explicit stack, no recursion on the script's nesting (a hostile script cannot exhaust
the Python stack); nesting, command and string counts are bounded by :class:`SieveLimits` and reported
as :class:`SieveLimitError` at the position where the bound was crossed.
"""

from __future__ import annotations

from mailhouse.proto.sieve.ast import Argument, Command, Number, StringList, Tag, Test
from mailhouse.proto.sieve.errors import SieveLimitError, SieveSyntaxError
from mailhouse.proto.sieve.lexer import Kind, Token, tokenize
from mailhouse.proto.sieve.limits import SieveLimits

__all__ = ["parse"]


class _Parser:
    def __init__(self, tokens: list[Token], limits: SieveLimits) -> None:
        self.toks = tokens
        self.i = 0
        self.limits = limits
        self.nodes = 0
        self.strings = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not Kind.EOF:
            self.i += 1
        return t

    def is_punct(self, ch: str) -> bool:
        t = self.peek()
        return t.kind is Kind.PUNCT and t.value == ch

    def expect(self, ch: str, what: str) -> Token:
        t = self.peek()
        if not (t.kind is Kind.PUNCT and t.value == ch):
            raise SieveSyntaxError(t.line, t.column, f"expected {what} but found {_describe(t)}")
        return self.take()

    def count(self, t: Token, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_commands:
            raise SieveLimitError(
                t.line, t.column, f"too many commands and tests (limit {self.limits.max_commands})"
            )
        if depth > self.limits.max_nesting:
            raise SieveLimitError(t.line, t.column, f"nesting too deep (limit {self.limits.max_nesting})")

    def string(self) -> None:
        self.strings += 1
        if self.strings > self.limits.max_strings:
            t = self.peek()
            raise SieveLimitError(t.line, t.column, f"too many strings (limit {self.limits.max_strings})")

    # argument = string-list / number / tag
    def arguments(self) -> list[Argument]:
        args: list[Argument] = []
        while True:
            t = self.peek()
            if t.kind is Kind.STRING:
                self.take()
                self.string()
                args.append(StringList((str(t.value),), False, t.line, t.column))
            elif t.kind is Kind.NUMBER:
                self.take()
                args.append(Number(int(t.value), t.line, t.column))
            elif t.kind is Kind.TAG:
                self.take()
                args.append(Tag(str(t.value), t.line, t.column))
            elif t.kind is Kind.PUNCT and t.value == "[":
                self.take()
                values: list[str] = []
                while True:
                    s = self.peek()
                    if s.kind is not Kind.STRING:
                        raise SieveSyntaxError(
                            s.line, s.column, f"expected a string in list but found {_describe(s)}"
                        )
                    self.take()
                    self.string()
                    values.append(str(s.value))
                    if self.is_punct(","):
                        self.take()
                        continue
                    self.expect("]", "',' or ']'")
                    break
                args.append(StringList(tuple(values), True, t.line, t.column))
            else:
                return args

    # test = identifier arguments ; tests nest through an explicit stack of frames
    def test(self, depth: int) -> Test:
        # frame: [name token, args, child tests, expecting-list?]
        stack: list[tuple[Token, list[Argument], list[Test], bool]] = []
        result: Test | None = None
        while True:
            if result is None:
                t = self.peek()
                if t.kind is not Kind.IDENT:
                    raise SieveSyntaxError(t.line, t.column, f"expected a test but found {_describe(t)}")
                self.take()
                self.count(t, depth + len(stack))
                args = self.arguments()
                if self.peek().kind is Kind.IDENT:  # single test argument
                    stack.append((t, args, [], False))
                    continue
                if self.is_punct("("):
                    self.take()
                    stack.append((t, args, [], True))
                    continue
                result = Test(str(t.value), tuple(args), (), t.line, t.column)
            if not stack:
                return result
            tok, args, children, is_list = stack[-1]
            children.append(result)
            result = None
            if is_list:
                if self.is_punct(","):
                    self.take()
                    continue
                self.expect(")", "',' or ')' after test")
            stack.pop()
            result = Test(str(tok.value), tuple(args), tuple(children), tok.line, tok.column)

    def commands(self) -> tuple[Command, ...]:
        # frames of open blocks: (command token, args, tests, commands so far)
        stack: list[tuple[Token, list[Argument], tuple[Test, ...], list[Command]]] = []
        top: list[Command] = []
        while True:
            cur = stack[-1][3] if stack else top
            t = self.peek()
            if t.kind is Kind.EOF:
                if stack:
                    o = stack[-1][0]
                    raise SieveSyntaxError(
                        t.line, t.column, f"missing '}}' closing the block of {o.value!r} (line {o.line})"
                    )
                return tuple(top)
            if t.kind is Kind.PUNCT and t.value == "}":
                if not stack:
                    raise SieveSyntaxError(t.line, t.column, "unexpected '}'")
                self.take()
                tok, bargs, btests, body = stack.pop()
                (stack[-1][3] if stack else top).append(
                    Command(str(tok.value), tuple(bargs), btests, tuple(body), tok.line, tok.column)
                )
                continue
            if t.kind is not Kind.IDENT:
                raise SieveSyntaxError(t.line, t.column, f"expected a command but found {_describe(t)}")
            self.take()
            self.count(t, len(stack))
            args = self.arguments()
            tests: list[Test] = []
            if self.peek().kind is Kind.IDENT:
                tests.append(self.test(len(stack) + 1))
            elif self.is_punct("("):
                self.take()
                while True:
                    tests.append(self.test(len(stack) + 1))
                    if self.is_punct(","):
                        self.take()
                        continue
                    self.expect(")", "',' or ')' after test")
                    break
            nt = self.peek()
            if nt.kind is Kind.PUNCT and nt.value == ";":
                self.take()
                cur.append(Command(str(t.value), tuple(args), tuple(tests), None, t.line, t.column))
            elif nt.kind is Kind.PUNCT and nt.value == "{":
                self.take()
                if len(stack) + 1 > self.limits.max_nesting:
                    raise SieveLimitError(
                        nt.line, nt.column, f"nesting too deep (limit {self.limits.max_nesting})"
                    )
                stack.append((t, args, tuple(tests), []))
            else:
                raise SieveSyntaxError(nt.line, nt.column, f"expected ';' or '{{' but found {_describe(nt)}")


def _describe(t: Token) -> str:
    if t.kind is Kind.EOF:
        return "end of script"
    if t.kind is Kind.STRING:
        return "a string"
    if t.kind is Kind.TAG:
        return f"tag ':{t.value}'"
    return f"{t.kind.value} {str(t.value)!r}"


def parse(text: str, limits: SieveLimits = SieveLimits()) -> tuple[Command, ...]:
    """Parse a whole script into its top-level commands (RFC 5228 §8.2 ``start = commands``)."""
    return _Parser(tokenize(text), limits).commands()
