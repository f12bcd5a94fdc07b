"""Message blobs in an S3-compatible object store (AWS S3, MinIO, Garage, Ceph RGW…).

Selected by ``postgresql://…?blobs=s3://bucket/optional/prefix``. The endpoint and the
credentials come from the standard environment variables: ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (default ``https://s3.<region>.amazonaws.com``), ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (default ``us-east-1``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and optionally ``AWS_SESSION_TOKEN``. Requests are path-style
(``endpoint/bucket/key``), which every S3-compatible server accepts.

Requests are signed with AWS Signature Version 4 (header form, signed payload hash).
This is a deliberately small stdlib client (http.client in a worker thread): Mailhouse
needs three calls — PUT, GET, DELETE of one object — and no S3 SDK is a dependency.

Invariants:
- `put` returns only after the server answered 200 to the PUT: S3 acknowledges a PUT only
  once the object is durably stored, so an index row committed afterwards never points at
  a missing object (DESIGN.md §Durability). The payload's SHA-256 is signed, so a corrupted
  upload is rejected by the server rather than stored.
- Keys are random and unique (`blobfiles.new_key`), never content hashes.
- A missing key raises FileNotFoundError, as the other blob stores do; deleting a missing
  key is not an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import http.client
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

from mailhouse.store.api import StoreError
from mailhouse.store.blobfiles import new_key

#: Octets per read when a spooled file is uploaded (`S3BlobStore.put_file`).
READ_CHUNK = 1024 * 1024
TIMEOUT = 60.0  # seconds per request; a message blob is at most tens of MB
_UNRESERVED = "-_.~"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_hash: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    now: dt.datetime,
    session_token: str = "",
) -> dict[str, str]:
    """Return HEADERS plus host, x-amz-date, x-amz-content-sha256 and Authorization (SigV4).

    PATH is the raw (unencoded) object path; it is URI-encoded once, as S3 requires.
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = now.strftime("%Y%m%d")
    out = {k.lower(): v for k, v in headers.items()}
    out["host"] = host
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash
    if session_token:
        out["x-amz-security-token"] = session_token
    canonical_query = "&".join(
        f"{quote(k, safe=_UNRESERVED)}={quote(v, safe=_UNRESERVED)}" for k, v in sorted(query.items())
    )
    names = sorted(out)
    canonical_headers = "".join(f"{n}:{' '.join(out[n].split())}\n" for n in names)
    signed = ";".join(names)
    creq = "\n".join(
        [
            method,
            quote(path, safe="/" + _UNRESERVED),
            canonical_query,
            canonical_headers,
            signed,
            payload_hash,
        ]
    )
    scope = f"{datestamp}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(creq.encode())])
    key = _hmac(("AWS4" + secret_key).encode(), datestamp)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
    return out


class S3BlobStore:
    """`BlobStore` on an S3-compatible service; see the module docstring."""

    def __init__(self, blob_url: str, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        u = urlsplit(blob_url)
        if u.scheme != "s3" or not u.netloc:
            raise ValueError(f"bad blob store url {blob_url!r} (expected s3://bucket[/prefix])")
        self.bucket = u.netloc
        self.prefix = u.path.strip("/")
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        endpoint = endpoint or f"https://s3.{self.region}.amazonaws.com"
        e = urlsplit(endpoint)
        if e.scheme not in ("http", "https") or not e.hostname:
            raise ValueError(f"bad S3 endpoint {endpoint!r}")
        self.secure = e.scheme == "https"
        self.host = e.netloc
        self.base_path = e.path.rstrip("/")
        self.access_key = env.get("AWS_ACCESS_KEY_ID", "")
        self.secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
        self.session_token = env.get("AWS_SESSION_TOKEN", "")
        if not (self.access_key and self.secret_key):
            raise ValueError("S3 blob store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")

    def _path(self, key: str) -> str:
        if not key.isalnum():
            raise ValueError(f"bad blob key {key!r}")
        obj = f"{self.prefix}/{key}" if self.prefix else key
        return f"{self.base_path}/{self.bucket}/{obj}"

    def _request(
        self,
        method: str,
        key: str,
        body: bytes | Iterable[bytes] = b"",
        *,
        length: int | None = None,
        payload_hash: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        path = self._path(key)
        if isinstance(body, bytes):
            length, payload_hash = len(body), _sha256(body)
        assert length is not None and payload_hash is not None
        signed = {"content-length": str(length)} if method == "PUT" else {}
        signed.update(extra or {})
        headers = sigv4_headers(
            method,
            self.host,
            path,
            {},
            signed,
            payload_hash,
            region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key,
            session_token=self.session_token,
            now=dt.datetime.now(dt.UTC),
        )
        cls = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
        conn = cls(self.host, timeout=TIMEOUT)
        try:
            conn.request(method, quote(path, safe="/" + _UNRESERVED), body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def put_sync(self, data: bytes) -> str:
        key = new_key()
        status, body = self._request("PUT", key, data)
        if status != 200:
            raise StoreError(f"S3 PUT {key} failed: {status} {body[:200]!r}")
        return key

    def get_sync(self, key: str) -> bytes:
        status, body = self._request("GET", key)
        if status == 404:
            raise FileNotFoundError(f"blob {key} does not exist")
        if status != 200:
            raise StoreError(f"S3 GET {key} failed: {status} {body[:200]!r}")
        return body

    def delete_sync(self, keys: Sequence[str]) -> None:
        for key in keys:
            status, body = self._request("DELETE", key)
            if status not in (200, 204, 404):
                raise StoreError(f"S3 DELETE {key} failed: {status} {body[:200]!r}")

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put_sync, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, key)

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await asyncio.to_thread(self.delete_sync, list(keys))

    # ------------------------------------------------------------ write side: from a file

    def put_file_sync(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        """One streaming PUT of PREFIX + LENGTH octets of PATH from OFFSET: the file is read twice
        in `READ_CHUNK` pieces (SHA-256 for the signed payload hash, then the upload)."""
        if length is None:
            length = os.stat(path).st_size - offset
        size = length

        def pieces() -> Iterator[bytes]:
            if prefix:
                yield prefix
            left = size
            with open(path, "rb") as f:
                f.seek(offset)
                while left > 0:
                    piece = f.read(min(left, READ_CHUNK))
                    if not piece:
                        raise OSError(f"{path} ended {left} octets early")
                    left -= len(piece)
                    yield piece

        h = hashlib.sha256()
        for piece in pieces():
            h.update(piece)
        key = new_key()
        status, body = self._request(
            "PUT", key, pieces(), length=len(prefix) + size, payload_hash=h.hexdigest()
        )
        if status != 200:
            raise StoreError(f"S3 PUT {key} failed: {status} {body[:200]!r}")
        return key

    async def put_file(
        self, path: Path, *, prefix: bytes = b"", offset: int = 0, length: int | None = None
    ) -> str:
        return await asyncio.to_thread(self.put_file_sync, path, prefix=prefix, offset=offset, length=length)

    # ---------------------------------------------------------------- read side (streaming)
    def read_range_sync(self, key: str, offset: int, length: int) -> bytes:
        """A ranged GET (RFC 9110 §14.1.2 ``Range: bytes=a-b``): only the slice crosses the wire."""
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        if length == 0:
            return b""
        status, body = self._request("GET", key, extra={"range": f"bytes={offset}-{offset + length - 1}"})
        if status == 404:
            raise FileNotFoundError(f"blob {key} does not exist")
        if status == 416:
            return b""  # RFC 9110 §15.5.17: the range starts past the end
        if status == 200:
            return body[offset : offset + length]  # a server that ignores Range sends it all
        if status != 206:
            raise StoreError(f"S3 GET {key} range failed: {status} {body[:200]!r}")
        return body

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self.read_range_sync, key, offset, length)
