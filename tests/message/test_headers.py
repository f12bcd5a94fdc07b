from mailhouse.message.headers import (
    check_header_syntax,
    decode_words,
    ensure_message_id_and_date,
    get_header,
    get_headers,
    prepend_header,
    remove_header,
    split_header_block,
)

RAW = (
    b"From: a@example.com\r\n"
    b"Bcc: secret@example.com,\r\n"
    b"  other@example.com\r\n"
    b"Subject: hi\r\n"
    b"Received: one\r\n"
    b"Received: two\r\n"
    b"\r\n"
    b"Bcc: not a header\r\n"
)


def test_split_and_get():
    fields, spans, end = split_header_block(RAW)
    assert [n for n, _ in fields] == [b"From", b"Bcc", b"Subject", b"Received", b"Received"]
    assert fields[1][1] == b" secret@example.com,\r\n  other@example.com"
    assert RAW[spans[1][0] : spans[1][1]] == b"Bcc: secret@example.com,\r\n  other@example.com\r\n"
    assert RAW[end:] == b"Bcc: not a header\r\n"
    assert get_header(RAW, "bcc") == b"secret@example.com,  other@example.com"
    assert get_headers(RAW, b"RECEIVED") == [b"one", b"two"]
    assert get_header(RAW, "X-Missing") is None


def test_remove_and_prepend():
    out = remove_header(RAW, "Bcc")
    assert out == RAW.replace(b"Bcc: secret@example.com,\r\n  other@example.com\r\n", b"")
    assert out.endswith(b"\r\n\r\nBcc: not a header\r\n")  # body untouched
    assert remove_header(RAW, "X-None") is RAW
    assert prepend_header(RAW, "Received", b"from x\r\n\tby y") == b"Received: from x\r\n\tby y\r\n" + RAW
    lf = prepend_header(b"A: b\n\nbody\n", "X", "1")
    assert lf == b"X: 1\nA: b\n\nbody\n"


def test_check_syntax():
    assert check_header_syntax(RAW) == []
    bad = b" leading\r\nNo colon here\r\nBad Name: x\r\nX: " + b"y" * 1000 + b"\r\nA\xff: 1\r\n\r\nbody"
    problems = check_header_syntax(bad)
    assert any("line 1" in p and "continuation" in p for p in problems)
    assert any("line 2" in p and "no ':'" in p for p in problems)
    assert any("line 3" in p and "not printable" in p for p in problems)
    assert any("line 4" in p and "998" in p for p in problems)
    assert any("line 5" in p for p in problems)


def test_ensure_message_id_and_date():
    out = ensure_message_id_and_date(b"From: a@b\r\n\r\nx", "mail.example.org", now=0)
    names = [ln.split(b":")[0] for ln in out.split(b"\r\n")[:3]]
    assert names == [b"Date", b"Message-ID", b"From"]
    assert b"@mail.example.org>\r\n" in out
    full = b"Date: x\r\nMessage-ID: <a@b>\r\n\r\n"
    assert ensure_message_id_and_date(full, "h") == full


def test_decode_words():
    assert decode_words(b"=?UTF-8?B?SGVsbG8g?=\r\n =?UTF-8?B?V8O2cmxk?=") == "Hello Wörld"
    assert decode_words(b"a =?iso-8859-1?q?caf=E9?= b") == "a café b"
    # a multi-byte character split across two words survives
    assert decode_words(b"=?utf-8?q?=C3?= =?utf-8?q?=A9?=") == "é"
    assert decode_words(b"=?x-unknown?q?abc?=") == "abc"
    assert decode_words("Grüße".encode()) == "Grüße"
    assert decode_words(b"=?utf-8?b?broken") == "=?utf-8?b?broken"
