"""The Sieve evaluator per extension (RFC 5228 base and the extensions of issue 17 §1)."""

from __future__ import annotations

import pytest

from mailhouse.sieve import (
    AddHeader,
    DeleteHeader,
    Discard,
    FileInto,
    Keep,
    Notify,
    Redirect,
    Reject,
    SieveLimits,
    Vacation,
    apply_header_edits,
    compile_script,
)
from mailhouse.sieve.script import Location
from tests.sieve.helpers import MSG, ctx, run


def test_empty_script_implicit_keep() -> None:
    r = run("")
    assert r.actions == () and r.implicit_keep and r.error is None


def test_rfc5228_example_if_elsif_else() -> None:
    r = run(
        'require "fileinto";\n'
        'if header :contains "from" "coyote" { discard; }\n'
        'elsif header :contains ["subject"] ["$$$"] { discard; }\n'
        'elsif header :contains "subject" "hello" { fileinto "hi"; }\n'
        'else { fileinto "INBOX"; }'
    )
    assert r.actions == (FileInto("hi"),) and not r.implicit_keep


def test_fileinto_copy_keeps_implicit_keep_and_duplicates_merge() -> None:
    r = run(
        'require ["fileinto", "copy"];\nfileinto :copy "A";\nfileinto :copy "A";\nredirect "x@y.org"; redirect "X@y.org";'
    )
    assert r.actions == (FileInto("A", copy=True), Redirect("x@y.org"))
    assert not r.implicit_keep


def test_stop_and_discard() -> None:
    r = run("discard; stop; keep;")
    assert r.actions == (Discard(),) and not r.implicit_keep


def test_reject_and_ereject() -> None:
    assert run('require "reject"; reject "no";').actions == (Reject("no"),)
    assert run('require "ereject"; ereject "no";').actions == (Reject("no", ereject=True),)
    r = run('require ["reject", "fileinto"]; fileinto "A"; reject "no";')
    assert r.error is not None and r.actions == () and r.implicit_keep


@pytest.mark.parametrize(
    ("test", "expect"),
    [
        ('address :domain "from" "example.org"', True),
        ('address :localpart "from" "alice+news"', True),
        ('address :all :is "to" "carol@example.net"', True),
        ('address :all :is ["to", "cc"] "dave@example.com"', True),
        ('address :user "from" "alice"', True),
        ('address :detail "from" "news"', True),
        ('address :detail "to" ""', False),
        ('envelope :domain "from" "EXAMPLE.org"', True),
        ('envelope :detail "to" "sieve"', True),
        ('envelope :user "to" "bob"', True),
        ('header :contains "subject" "café"', True),
        ('header :is "subject" "hello world café"', True),
        ('header :comparator "i;octet" :is "subject" "hello world café"', False),
        ('header :matches "subject" "Hello*"', True),
        ('header :matches "subject" "H?llo *"', True),
        ('exists ["subject", "date"]', True),
        ('exists ["subject", "x-nope"]', False),
        ("size :over 100", True),
        ("size :under 10", False),
        ('body :contains "caf\u00e9"', True),
        ('body :content "text/html" :contains "<b>"', True),
        ('body :text :contains "<b>"', False),
        ('body :raw :contains "caf=C3=A9"', True),
        ('header :regex "subject" "^hel+o [a-z]+"', True),
        ('header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "2"', True),
        ('header :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "2"', True),
        ('address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "3"', True),
        ('date :is "date" "date" "2026-12-08"', True),
        ('date :originalzone :is "date" "hour" "10"', True),
        ('date :zone "+0000" :is "date" "time" "09:11:12"', True),
        ('date :is "received" "year" "2026"', True),
        ('currentdate :is "weekday" "2"', True),
        ('currentdate :value "ge" "iso8601" "2026-12-08T12:30:45+01:00"', True),
        ('currentdate :zone "-0500" :is "hour" "06"', True),
        ('header :index 1 :last :contains "to" "carol"', True),
        ('environment :is "name" "Mailhouse"', True),
        ('environment :is "domain" "example.com"', True),
        ('environment :is "x-unknown" ""', False),
        ('ihave ["fileinto", "date"]', True),
        ('ihave "x-nope"', False),
        ('valid_notify_method "mailto:alice@example.org"', True),
        ('valid_notify_method "xmpp:alice@example.org"', False),
        ('notify_method_capability "mailto:a@example.org" "online" "maybe"', True),
        ('mailboxexists "INBOX"', True),
        ('mailboxexists ["INBOX", "Nope"]', False),
    ],
)
def test_tests(test: str, expect: bool) -> None:
    script = (
        'require ["envelope", "subaddress", "body", "regex", "relational", "comparator-i;ascii-numeric",'
        ' "date", "index", "environment", "ihave", "enotify", "mailbox"];\n'
        f"if {test} {{ discard; }}"
    )
    r = run(script)
    assert r.error is None, r.error
    assert (r.actions == (Discard(),)) is expect


def test_variables_and_modifiers() -> None:
    r = run(
        'require ["variables", "fileinto"];\n'
        'set "a" "Hello"; set :upper "b" "${a}"; set :lowerfirst "c" "${a}"; set :length "d" "${a}";\n'
        'set :quotewildcard "e" "a*b?"; set :upperfirst :lower "f" "wORLD";\n'
        'if header :matches "from" "* <*@*>" { set "who" "${2}"; }\n'
        'if string :is "${b}-${c}-${d}-${e}-${f}-${who}" "HELLO-hello-5-a\\\\*b\\\\?-World-alice+news" { fileinto "ok.${unknown}x"; }'
    )
    assert r.actions == (FileInto("ok.x"),), r


def test_match_variables_only_change_on_success() -> None:
    r = run(
        'require ["variables", "fileinto"];\n'
        'if header :matches "subject" "* *" {}\n'
        'if header :matches "subject" "nomatch*" {}\n'
        'fileinto "${1}/${0}";'
    )
    assert r.actions == (FileInto("Hello/Hello World café"),)


def test_imap4flags() -> None:
    r = run(
        'require ["imap4flags", "fileinto", "variables"];\n'
        'setflag "\\\\Seen"; addflag ["\\\\Flagged Junk", "\\\\seen"]; removeflag "junk";\n'
        'if hasflag :contains "flag" { fileinto "A"; }\n'
        'fileinto :flags "x y" "B";\n'
        'addflag "v" "one two"; if hasflag "v" "two" { keep; }'
    )
    assert r.actions == (
        FileInto("A", ("\\Seen", "\\Flagged")),
        FileInto("B", ("x", "y")),
        Keep(("\\Seen", "\\Flagged")),
    )
    assert r.implicit_keep_flags == ("\\Seen", "\\Flagged")


def test_vacation_parameters_and_rfc3834() -> None:
    r = run(
        'require ["vacation-seconds"];\nvacation :seconds 60 :subject "Away" :from "bob@example.com" :handle "h" "gone";'
    )
    assert r.actions == (
        Vacation("gone", "Away", "bob@example.com", (), 60, "h", False, "alice+news@example.org", None),
    )
    assert r.implicit_keep
    r = run('require "vacation"; vacation "gone";')
    v = r.actions[0]
    assert isinstance(v, Vacation) and v.seconds == 7 * 86400 and v.subject == "Auto: Hello World café"
    for extra, why in [
        (b"Auto-Submitted: auto-replied\r\n", "auto-submitted"),
        (b"List-Id: <l.example.org>\r\n", "mailing-list"),
        (b"Precedence: bulk\r\n", "bulk"),
    ]:
        v = run('require "vacation"; vacation "x";', ctx(extra + MSG)).actions[0]
        assert isinstance(v, Vacation) and v.skip_reason and why in v.skip_reason
    v = run('require "vacation"; vacation "x";', ctx(envelope_from="")).actions[0]
    assert isinstance(v, Vacation) and v.skip_reason and "null" in v.skip_reason
    v = run(
        'require "vacation"; vacation "x";',
        ctx(user_addresses=("zed@example.com",), envelope_to="zed@example.com", original_recipient=""),
    ).actions[0]
    assert isinstance(v, Vacation) and v.skip_reason and "not named" in v.skip_reason
    v = run(
        'require "vacation"; vacation :addresses "carol@example.net" "x";',
        ctx(user_addresses=(), envelope_to="z@x.org", original_recipient=""),
    ).actions[0]
    assert isinstance(v, Vacation) and v.skip_reason is None
    assert run('require "vacation"; vacation "a"; vacation "b";').error is not None


def test_editheader() -> None:
    r = run(
        'require ["editheader", "variables"];\n'
        'addheader "X-One" "1"; addheader :last "X-Two" "2";\n'
        'deleteheader :index 2 "to"; deleteheader "received";\n'
        'if header :is "x-one" "1" { addheader "X-Seen" "yes"; }\n'
        'deleteheader :contains "cc" "dave";'
    )
    assert r.actions == (
        AddHeader("X-One", "1"),
        AddHeader("X-Two", "2", last=True),
        AddHeader("X-Seen", "yes"),
        DeleteHeader("cc", (0,)),
    )
    out = apply_header_edits(MSG, r.header_edits)
    assert out.startswith(b"X-Seen: yes\r\nX-One: 1\r\nReturn-Path")
    assert b"X-Two: 2\r\n\r\n--b1" in out and b"\r\nCc:" not in out and b"Received:" in out
    assert run('require "editheader"; addheader "Bad Name" "x";').error is not None


def test_notify() -> None:
    r = run('require "enotify";\nnotify :importance "1" :message "hi" "mailto:bob@example.com?subject=x";')
    assert r.actions == (Notify("mailto:bob@example.com?subject=x", None, "1", (), "hi"),)
    assert run('require "enotify"; notify "xmpp:a@b.c";').error is not None


def test_spamtest_virustest() -> None:
    base = 'require ["spamtest", "spamtestplus", "virustest", "relational", "comparator-i;ascii-numeric"];\n'
    s = base + 'if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { discard; }'
    assert run(s, ctx(spam_percent=80)).actions == (Discard(),)
    assert run(s, ctx(spam_percent=10)).actions == ()
    s = base + 'if spamtest :percent :value "gt" :comparator "i;ascii-numeric" "50" { discard; }'
    assert run(s, ctx(spam_percent=51)).actions == (Discard(),)
    s = base + 'if spamtest :is "0" { discard; }'
    assert run(s, ctx(spam_percent=None)).actions == (Discard(),)
    s = base + 'if virustest :value "ge" :comparator "i;ascii-numeric" "4" { discard; }'
    assert run(s, ctx(virus_level=5)).actions == (Discard(),)


def test_duplicate() -> None:
    s = 'require "duplicate";\nif duplicate :seconds 60 { discard; }'
    c = ctx()
    r = run(s, c)
    assert r.actions == () and r.duplicate_keys == (("\0<m1@example.org>", 60),)
    c.seen_keys.add("\0<m1@example.org>")
    assert run(s, c).actions == (Discard(),)
    r = run('require "duplicate";\nif duplicate :handle "h" :uniqueid "u" { discard; }')
    assert r.duplicate_keys == (("h\0u", 7 * 86400),)


def test_include_once_optional_return_globals() -> None:
    inc = compile_script(
        'require ["include", "variables", "fileinto"];\nglobal "box";\nfileinto "${box}"; return; discard;'
    )
    main = compile_script(
        'require ["include", "variables"];\nglobal "box"; set "box" "Lists";\n'
        'include :personal "lists"; include :once "lists"; include :once "lists";\n'
        'include :optional :global "nothing";'
    )
    assert main.includes == ((Location.PERSONAL, "lists"), (Location.GLOBAL, "nothing"))
    r = run(main, includes={(Location.PERSONAL, "lists"): inc})
    assert r.actions == (FileInto("Lists"),), r
    r = run(main, includes={})
    assert r.error is not None and "not found" in r.error.message


def test_include_loop_and_depth() -> None:
    a = compile_script('require "include"; include "b";')
    b = compile_script('require "include"; include "a";')
    r = run(a, includes={(Location.PERSONAL, "a"): a, (Location.PERSONAL, "b"): b})
    assert r.error is not None and "loop" in r.error.message
    chain = {
        (Location.PERSONAL, str(i)): compile_script(f'require "include"; include "{i + 1}";')
        for i in range(10)
    }
    r = run(chain[(Location.PERSONAL, "0")], includes=chain)
    assert r.error is not None and "too deep" in r.error.message


def test_pathological_regex_is_bounded() -> None:
    body = "a" * 5000 + "!"
    msg = b"Subject: " + body.encode() + b"\r\n\r\nx\r\n"
    r = run(
        'require "regex";\nif header :regex "subject" "^(a+)+$" { discard; }',
        ctx(msg),
        limits=SieveLimits(regex_timeout=0.05),
    )
    assert r.error is not None and "too long" in r.error.message and r.implicit_keep
    assert r.error.line == 2


def test_too_many_actions_and_redirects() -> None:
    script = 'require ["fileinto"];\n' + "".join(f'fileinto "f{i}";' for i in range(40))
    r = run(script)
    assert (
        r.error is not None and "too many actions" in r.error.message and r.actions == () and r.implicit_keep
    )
    r = run("".join(f'redirect "u{i}@example.org";' for i in range(5)))
    assert r.error is not None and "redirects" in r.error.message


def test_cpu_budget() -> None:
    # a zero budget trips at the first check after any work: no timing in the assertion
    script = 'require "variables";\n' + 'if header :matches "subject" "*a*" { set "x" "y"; }\n' * 3
    r = run(script, limits=SieveLimits(max_cpu_seconds=0.0))
    assert r.error is not None and "ran too long" in r.error.message


def test_error_command() -> None:
    r = run('require "ihave";\nif not ihave "x-foo" { error "need x-foo"; }')
    assert r.error is not None and r.error.message.endswith("need x-foo") and r.error.line == 2


def test_redirect_invalid_address() -> None:
    r = run('redirect "not an address";')
    assert r.error is not None and (r.error.line, r.error.column) == (1, 1)


def test_mailboxid_and_create() -> None:
    r = run(
        'require ["fileinto", "mailbox", "mailboxid"];\nif mailboxidexists "M1" { fileinto :mailboxid "M1" :create "A"; }',
        ctx(mailboxids={"M1"}),
    )
    assert r.actions == (FileInto("A", (), True, False, "M1"),)
