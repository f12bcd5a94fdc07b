"""The XSS corpus rendered by the webmail: nothing executable or fetching survives."""

from __future__ import annotations

import re

import pytest

from mailhouse.web.sanitize import sanitize_html
from tests.web.conftest import deliver, folder_ids, login
from tests.web.xss_corpus import CORPUS, FORBIDDEN, corpus_message


def _body(html: str) -> str:
    m = re.search(r'<div class="mailbody html" id="body">(.*?)</div>\s*(?:<section|</article>)', html, re.S)
    assert m, "no HTML body in the page"
    return m.group(1)


def test_corpus_rendered_without_active_content(web_mh):
    deliver(web_mh, "alice@example.org", corpus_message())
    c = login(web_mh, "alice@example.org")
    inbox = folder_ids(c)["INBOX"]
    html = c.get(f"/mail/{inbox}", params={"q": "subject:XSS corpus"}).text
    uid = re.search(rf'/mail/{inbox}/(\d+)"', html).group(1)
    r = c.get(f"/mail/{inbox}/{uid}")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "img-src 'self' data:" in csp and "https:" not in csp
    body = _body(r.text).lower()
    assert "corpus-end" in body
    for bad in FORBIDDEN:
        assert bad not in body, bad
    assert re.search(r"\son[a-z]+\s*=", body) is None
    assert "remote image" in r.text and "blocked" in r.text
    # allowing images widens img-src only; still no scripts
    r2 = c.get(f"/mail/{inbox}/{uid}", params={"images": "1"})
    csp2 = r2.headers["content-security-policy"]
    assert "img-src 'self' data: https: http:" in csp2 and "script-src 'self'" in csp2
    assert "https://evil.test/pixel.gif" in _body(r2.text)
    # whole page: the only scripts are the webmail's own
    assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/app.js" defer>']
    # plain text alternative is offered
    assert "plain version" in c.get(f"/mail/{inbox}/{uid}", params={"text": "1"}).text


@pytest.mark.parametrize("name,html", CORPUS, ids=[n for n, _ in CORPUS])
def test_each_case_sanitised(name, html):
    out = sanitize_html(html).html.lower()
    for bad in FORBIDDEN:
        assert bad not in out, (name, bad, out)
