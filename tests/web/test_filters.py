"""The filters page (issue 17 §4, first part): the raw Sieve editor refuses a script that does not
compile and shows the error at its line; the out-of-office form stores a vacation script that
compiles, quotes the user's text safely and makes the evaluator answer with a Vacation action."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re

import httpx

from mailhouse.sieve import SimpleContext, Vacation, compile_script, evaluate
from mailhouse.web.filters import VacationForm, quoted, vacation_script
from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import login, page_csrf

MSG = b"From: someone@remote.test\r\nTo: {to}\r\nSubject: Hello\r\nMessage-ID: <1@remote.test>\r\n\r\nHi.\r\n"


def _post(c: httpx.Client, **data: str) -> httpx.Response:
    return c.post("/filters", data={"csrf": page_csrf(c, "/filters"), **data})


def _script(c: httpx.Client, name: str) -> str:
    page = c.get("/filters", params={"script": name}).text
    m = re.search(r'<textarea name="content"[^>]*>(.*?)</textarea>', page, re.S)
    assert m, "no editor on the page"
    return html.unescape(m.group(1))


def _names(c: httpx.Client) -> list[str]:
    return re.findall(r'<input type="hidden" name="name" value="([^"]*)">', c.get("/filters").text)


def _vacation_for(script: str, user: str, now: dt.datetime | None = None) -> list[Vacation]:
    ctx = SimpleContext(
        MSG.replace(b"{to}", user.encode()),
        envelope_from="someone@remote.test",
        envelope_to=user,
        user_addresses=(user,),
        **({"now": now} if now else {}),
    )
    result = asyncio.run(evaluate(compile_script(script), ctx))
    assert result.error is None
    return [a for a in result.actions if isinstance(a, Vacation)]


def test_settings_link_and_bad_script_refused_at_its_line(web_mh: MailhouseProcess) -> None:
    user = "sieveedit@example.org"
    web_mh.add_user(user)
    c = login(web_mh, user)
    assert 'href="/filters"' in c.get("/settings").text
    bad = 'require "fileinto";\nif true {\n    fileinto "x"\n}\n'  # line 4: ";" missing before "}"
    r = _post(c, action="save", name="mine", content=bad)
    assert r.status_code == 400
    assert re.search(r"line 4, column \d+: ", html.unescape(r.text)), r.text
    assert "fileinto &#34;x&#34;" in r.text or 'fileinto "x"' in html.unescape(r.text)  # the text stays
    assert _names(c) == []  # nothing stored
    unknown = 'require "nosuchext";\nkeep;\n'
    r = _post(c, action="save", name="mine", content=unknown)
    assert r.status_code == 400 and "line 1, column" in r.text and _names(c) == []
    good = 'require "fileinto";\nif header :contains "subject" "x" {\n    fileinto "Junk";\n}\n'
    r = _post(c, action="save", name="mine", content=good)
    assert r.status_code == 303 and r.headers["location"] == "/filters?done=saved&script=mine"
    assert _script(c, "mine") == good and _names(c) == ["mine"]
    r = _post(c, action="activate", name="mine")
    assert r.status_code == 303 and "(active)" in c.get("/filters").text
    r = _post(c, action="delete", name="mine")  # RFC 5804 §2.10: not the active one
    assert r.status_code == 400 and "active script" in html.unescape(r.text) and _names(c) == ["mine"]
    r = _post(c, action="deactivate", name="mine")
    assert r.status_code == 303 and "(active)" not in c.get("/filters").text
    # no CSRF token: refused
    r = c.post("/filters", data={"action": "save", "name": "x", "content": "keep;"})
    assert r.status_code == 403 and _names(c) == ["mine"]


def test_vacation_on_stores_an_active_script_that_replies(web_mh: MailhouseProcess) -> None:
    user = "away@example.org"
    web_mh.add_user(user)
    c = login(web_mh, user)
    text = 'I am away.\nSay "hi" to C:\\temp\\ and "\\" too.'
    r = _post(c, action="vacation", on="1", subject='Away "now"', text=text)
    assert r.status_code == 303, r.text
    page = c.get("/filters").text
    assert "(active)" in page and 'id="vacation-on" checked' in page
    script = _script(c, "vacation")
    (v,) = _vacation_for(script, user)
    assert (
        v.skip_reason is None
        and v.reason == text
        and v.subject == 'Away "now"'
        and v.to == "someone@remote.test"
    )
    # with dates: today inside the range replies, after the last day does not
    today = dt.date.today()
    r = _post(
        c,
        action="vacation",
        on="1",
        subject="Away",
        text=text,
        first=str(today),
        last=str(today + dt.timedelta(3)),
    )
    assert r.status_code == 303, r.text
    script = _script(c, "vacation")
    assert 'require ["vacation", "date", "relational"];' in script
    assert len(_vacation_for(script, user)) == 1
    later = dt.datetime.now(dt.UTC).astimezone() + dt.timedelta(days=10)
    assert _vacation_for(script, user, later) == []
    r = _post(c, action="vacation", on="1", text="x", first="2026-13-01")
    assert r.status_code == 400 and "First day" in r.text
    # off: no script active, the vacation script stays for next time
    r = _post(c, action="vacation", subject="Away", text=text)
    assert r.status_code == 303 and "(active)" not in c.get("/filters").text and "vacation" in _names(c)


def test_vacation_does_not_silently_replace_another_active_script(web_mh: MailhouseProcess) -> None:
    user = "busy@example.org"
    web_mh.add_user(user)
    c = login(web_mh, user)
    assert _post(c, action="save", name="rules", content="keep;\n").status_code == 303
    assert _post(c, action="activate", name="rules").status_code == 303
    page = c.get("/filters").text
    assert "“rules” is active" in page
    r = _post(c, action="vacation", on="1", text="Away.")
    assert r.status_code == 409 and "replace it" in r.text
    assert _names(c) == ["rules"]  # nothing stored, "rules" still active
    r = _post(c, action="vacation", on="1", text="Away.", replace="1")
    assert r.status_code == 303
    assert re.search(r"vacation</a> <strong>\(active\)", c.get("/filters").text)


def test_vacation_does_not_silently_overwrite_a_handwritten_vacation_script(web_mh: MailhouseProcess) -> None:
    user = "handmade@example.org"
    web_mh.add_user(user)
    c = login(web_mh, user)
    own = 'require "vacation";\nvacation :days 2 "My own words.";\n'
    assert _post(c, action="save", name="vacation", content=own).status_code == 303
    assert 'id="vacation-replace"' in c.get("/filters").text
    r = _post(c, action="vacation", on="1", text="Away.")
    assert r.status_code == 409 and "yourself" in r.text and _script(c, "vacation") == own
    r = _post(c, action="vacation", on="1", text="Away.", replace="1")
    assert r.status_code == 303 and "Away." in _script(c, "vacation")
    assert _post(c, action="vacation", on="1", text="Back soon.").status_code == 303  # ours now: no question


def test_quoting_cannot_break_out() -> None:
    assert quoted('a"b\\c') == '"a\\"b\\\\c"'
    evil = '";\ndiscard;\nvacation "'
    script = vacation_script(VacationForm(on=True, subject="\\", text=evil))
    (v,) = _vacation_for(script, "me@example.org")
    assert v.reason == evil and v.subject == "\\"
