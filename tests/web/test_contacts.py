"""Issue 19 build 2: the webmail's address book over HTTP — contacts CRUD, another user's contact
answering 404, vCard 4.0 import/export and its limits, groups expanding in To, recipients
collected from sent mail, and the autocomplete endpoint (session and CSRF token required)."""

from __future__ import annotations

import re

import httpx
import pytest

from mailhouse.message import vcard
from tests.mailhouse_proc import MailhouseProcess
from tests.web.conftest import compose, folder_ids, login, page_csrf, wait_for

DORA = "dora@example.org"
ERIN = "erin@example.org"


@pytest.fixture(scope="module")
def users(web_mh: MailhouseProcess) -> tuple[httpx.Client, httpx.Client]:
    for u in (DORA, ERIN):
        web_mh.add_user(u)
    return login(web_mh, DORA), login(web_mh, ERIN)


def _save(c: httpx.Client, **fields: str) -> httpx.Response:
    return c.post("/contacts/save", data={"csrf": page_csrf(c, "/contacts"), **fields})


def _uid_of(c: httpx.Client, name: str) -> str:
    html = c.get("/contacts", params={"q": name}).text
    m = re.search(r'name="uid" value="([^"]+)"', html.split('id="contact-list"')[1])
    assert m, html
    return m.group(1)


def _suggest(c: httpx.Client, q: str) -> list[dict[str, str]]:
    r = c.get("/contacts/suggest", params={"q": q}, headers={"x-csrf-token": page_csrf(c, "/contacts")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    items: list[dict[str, str]] = r.json()["items"]
    return items


def test_contacts_crud_and_other_users_get_404(users: tuple[httpx.Client, httpx.Client]) -> None:
    dora, erin = users
    r = _save(
        dora,
        name="Fiona Apple",
        emails="fiona@example.net, fi@example.com",
        groups="Band",
        notes="met at a gig",
    )
    assert r.status_code == 303 and r.headers["location"] == "/contacts?saved=1"
    page = dora.get("/contacts").text
    assert "Fiona Apple" in page and "fi@example.com" in page and "Band" in page
    uid = _uid_of(dora, "Fiona")
    assert uid.startswith("urn:uuid:")
    edit = dora.get("/contacts/edit", params={"uid": uid})
    assert edit.status_code == 200 and "met at a gig" in edit.text
    r = _save(dora, uid=uid, name="Fiona A.", emails="fiona@example.net", groups="Band, Friends", notes="")
    assert r.status_code == 303
    page = dora.get("/contacts").text
    assert "Fiona A." in page and "fi@example.com" not in page
    # Erin cannot see, edit or delete Dora's contact: 404, and Dora's contact is unchanged
    assert erin.get("/contacts/edit", params={"uid": uid}).status_code == 404
    assert _save(erin, uid=uid, name="Hijack", emails="x@example.org").status_code == 404
    csrf = page_csrf(erin, "/contacts")
    assert erin.post("/contacts/delete", data={"csrf": csrf, "uid": uid}).status_code == 404
    assert "Fiona A." in dora.get("/contacts").text and "Fiona" not in erin.get("/contacts").text
    # a bad address is refused with the reason, nothing stored
    r = _save(dora, name="Bad", emails="not an address")
    assert r.status_code == 400 and "not an e-mail address" in r.text
    # the search box filters; delete removes
    assert "Fiona A." not in dora.get("/contacts", params={"q": "zzz"}).text
    csrf = page_csrf(dora, "/contacts")
    assert dora.post("/contacts/delete", data={"csrf": csrf, "uid": uid}).status_code == 303
    assert dora.get("/contacts/edit", params={"uid": uid}).status_code == 404
    # without the CSRF token nothing changes
    assert dora.post("/contacts/save", data={"name": "x", "emails": "x@example.org"}).status_code == 403


VCF = (
    "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:0b5a8b0e-1\r\nFN:Gil Scott\\, Jr.\r\nEMAIL:gil@example.net\r\n"
    "CATEGORIES:Poets,Band\r\nNOTE:line one\\nline two\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Heron;Hana;;;\r\nEMAIL;TYPE=INTERNET:hana@example.net\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Phone Only\r\nTEL:+1 555 0100\r\nEND:VCARD\r\n"
)


def _import(c: httpx.Client, data: bytes) -> httpx.Response:
    csrf = page_csrf(c, "/contacts")
    return c.post("/contacts/import", data={"csrf": csrf}, files={"file": ("c.vcf", data, "text/vcard")})


def test_vcard_import_export_round_trip_and_limits(users: tuple[httpx.Client, httpx.Client]) -> None:
    _, erin = users
    r = _import(erin, VCF.encode())
    assert r.status_code == 200, r.text
    assert "Imported 2 contact(s), skipped 1 without an e-mail address." in r.text
    exported = erin.get("/contacts/export.vcf")
    assert exported.headers["content-type"].startswith("text/vcard")
    body = exported.content
    assert body.count(b"BEGIN:VCARD\r\nVERSION:4.0\r\n") == 2
    assert b"UID:urn:uuid:0b5a8b0e-1\r\n" in body and b"FN:Gil Scott\\, Jr.\r\n" in body
    assert b"CATEGORIES:Band,Poets\r\n" in body or b"CATEGORIES:Poets,Band\r\n" in body
    assert b"NOTE:line one\\nline two\r\n" in body and b"FN:Hana Heron\r\n" in body
    # importing the export again replaces by UID: still two contacts, the same export
    assert _import(erin, body).status_code == 200
    assert erin.get("/contacts/export.vcf").content.count(b"BEGIN:VCARD") == 2
    # a bad file is refused whole, with the line
    r = _import(
        erin, b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:X\r\nEMAIL:x@example.org\r\nbroken line\r\nEND:VCARD\r\n"
    )
    assert r.status_code == 400 and "Nothing imported: line 5: not a vCard content line" in r.text
    # a card breaking a contact rule is named; the others are imported
    r = _import(erin, VCF.replace("hana@example.net", "hana at example").encode())
    assert r.status_code == 400 and "card at line 9: not an e-mail address" in r.text
    # too big: refused before parsing
    r = _import(erin, b"BEGIN:VCARD\r\n" + b"NOTE:" + b"x" * (2 * 1024 * 1024) + b"\r\n")
    assert r.status_code in (400, 413)
    # a file of 1200 cards (past the 64 KiB form limit of other routes) is read whole
    many = vcard.write([vcard.Card(f"bulk-{i}", f"Bulk {i}", [f"bulk{i}@example.net"]) for i in range(1200)])
    assert len(many) > 100 * 1024
    r = _import(erin, many)
    assert r.status_code == 200 and "Imported 1200 contact(s)." in r.text
    # another user's export is their own
    dora = users[0]
    assert b"gil@example.net" not in dora.get("/contacts/export.vcf").content


def test_suggest_groups_and_collected_recipients(
    web_mh: MailhouseProcess, users: tuple[httpx.Client, httpx.Client]
) -> None:
    dora, _ = users
    for name, addr in (("Alice Liddell", "alice@example.org"), ("Bob Marley", "bob@example.org")):
        assert _save(dora, name=name, emails=addr, groups="Wonderland").status_code == 303
    got = _suggest(dora, "lid")
    assert got == [
        {
            "kind": "contact",
            "name": "Alice Liddell",
            "address": "alice@example.org",
            "value": "Alice Liddell <alice@example.org>",
        }
    ]
    assert [i["kind"] for i in _suggest(dora, "wond")] == ["group"]
    assert _suggest(dora, "") == []
    # the endpoint wants the session and the CSRF token
    assert dora.get("/contacts/suggest", params={"q": "lid"}).status_code == 403
    anon = httpx.Client(base_url=str(dora.base_url))
    assert (
        anon.get("/contacts/suggest", params={"q": "lid"}, headers={"accept": "application/json"}).status_code
        == 401
    )
    # a group name in To expands to its members; the recipients are collected
    inbox = folder_ids(login(web_mh, "carol@example.org"))
    assert inbox
    r = compose(
        dora, {"to": "Wonderland", "cc": "carol@example.org", "subject": "Tea party", "body": "Six o'clock."}
    )
    assert r.status_code == 303, r.text
    alice = login(web_mh, "alice@example.org")
    assert wait_for(lambda: "Tea party" in alice.get("/", follow_redirects=True).text)
    bob = login(web_mh, "bob@example.org")
    assert wait_for(lambda: "Tea party" in bob.get("/", follow_redirects=True).text)
    got = _suggest(dora, "car")
    assert got == [
        {"kind": "collected", "name": "", "address": "carol@example.org", "value": "carol@example.org"}
    ]
    # "add to contacts" from a message prefills the form from its From
    page = dora.get("/contacts", params={"from": "Carol King <carol@example.org>"}).text
    assert 'value="Carol King"' in page and 'value="carol@example.org"' in page
