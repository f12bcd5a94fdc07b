from hypothesis import given
from hypothesis import strategies as st

from mailhouse.store.crlf import to_crlf


def test_examples() -> None:
    assert to_crlf(b"") == b""
    assert to_crlf(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert to_crlf(b"a\nb") == b"a\r\nb\r\n"
    assert to_crlf(b"a\rb\r") == b"a\r\nb\r\n"
    assert to_crlf(b"a\r\r\nb") == b"a\r\n\r\nb\r\n"


@given(st.binary(max_size=200))
def test_only_crlf_line_endings(data: bytes) -> None:
    out = to_crlf(data)
    assert out.count(b"\r") == out.count(b"\r\n") == out.count(b"\n")
    assert not out or out.endswith(b"\r\n")
    assert to_crlf(out) == out
