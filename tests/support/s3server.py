"""A moto server (S3 and the other moto services) over real HTTP on 127.0.0.1, for tests, and
``FaultyS3``, a real HTTP endpoint in front of it whose object reads fail or stall mid-body.

Clients talk to it through boto3 as they would to AWS: real requests, real streaming bodies, real
``Range`` and ``If-Match`` handling. Nothing leaves loopback: the endpoint is 127.0.0.1 and the
credentials are dummies, so boto3 never looks for real ones (nor asks the instance metadata).

A session-scoped fixture (in a ``conftest.py``)::

    @pytest.fixture(scope="session")
    def moto() -> Iterator[MotoServer]:
        with moto_server() as server:
            yield server

Moto keeps its state per process, not per server: give each test its own bucket
(``server.new_bucket()``) rather than relying on a fresh server. Note that ``moto.mock_aws`` used
elsewhere in the same process intercepts boto3 calls before they reach this server.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import itertools
import logging
import os
import re
import socket
import ssl
import struct
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DUMMY_ENVIRON", "REGION", "FaultyS3", "MotoServer", "moto_server"]

REGION = "us-east-1"

# Credentials and settings that keep boto3 away from real accounts: no profile, no metadata service.
DUMMY_ENVIRON: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}

_bucket_numbers = itertools.count(1)


@dataclass
class MotoServer:
    """A running moto server; use ``moto_server()`` to start and stop one."""

    host: str
    port: int
    _server: ThreadedMotoServer = field(repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment for code that builds its own ``boto3.client("s3")``: dummy credentials and
        ``AWS_ENDPOINT_URL`` pointing here (set them with ``monkeypatch.setenv``)."""
        return {**DUMMY_ENVIRON, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client_kwargs(self, **config: Any) -> dict[str, Any]:
        """Arguments for ``boto3.client(service, **kwargs)`` of any moto service on this server,
        with dummy credentials; ``config`` goes to ``botocore.config.Config``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": DUMMY_ENVIRON["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_ENVIRON["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": DUMMY_ENVIRON["AWS_SESSION_TOKEN"],
            # A test wants to see the first failure, not three retries of it.
            "config": Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        }

    def client(self, **config: Any) -> S3Client:
        """An S3 client for this server (see ``client_kwargs``)."""
        return boto3.client("s3", **self.client_kwargs(**config))

    def new_bucket(self, prefix: str = "logs", *, versioned: bool = False) -> str:
        """Create a bucket with a name no other test in this process uses; return its name."""
        name = f"{prefix}-{next(_bucket_numbers)}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def put_object(
        self, bucket: str, key: str, data: bytes, *, compress: bool = False
    ) -> dict[str, str]:
        """Store ``data`` (gzip-compressed first when ``compress``); return ``ETag`` (without
        quotes) and ``VersionId`` (when the bucket is versioned)."""
        body = gzip.compress(data) if compress else data
        response = self.client().put_object(Bucket=bucket, Key=key, Body=body)
        stored = {"ETag": response["ETag"].strip('"')}
        if response.get("VersionId"):
            stored["VersionId"] = response["VersionId"]
        return stored

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[MotoServer]:
    """Run a moto server on 127.0.0.1 (or ``host``, an address of this machine: the benchmarks'
    network namespace) on a free port for the duration of the ``with``."""
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    # werkzeug logs every request at INFO on stderr; a test run wants only its failures.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(host=host, port=port, _server=server)
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards one request to moto; misbehaves on object reads as its ``FaultyS3`` says."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test run wants only its failures."""

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def _forward(self) -> None:
        faults = self.server.faults
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # Path-style addressing (boto3 uses it for an IP endpoint): /bucket/key?versionId=...
        names_a_key = "/" in urlsplit(self.path).path.strip("/")
        is_object_read = self.command == "GET" and names_a_key
        faults.requests.append((self.command, self.path, self.headers.get("X-Amz-Target")))
        if is_object_read:
            faults.gets.append(self.path)
            faults.ranges.append(self.headers.get("Range"))
            if faults.stall_reads_after is not None and len(faults.gets) > faults.stall_reads_after:
                faults.stalls += 1
                faults.released.wait(60)
        if is_object_read and faults.before_read is not None:
            faults.before_read(unquote(urlsplit(self.path).path).lstrip("/").partition("/")[2])
        ranged = "Range" in self.headers
        if is_object_read and ranged and faults.before_ranged_read is not None:
            faults.before_ranged_read()
        if is_object_read and ranged and faults.range_errors_left > 0:
            faults.range_errors_left -= 1
            self._answer_error(*faults.range_error)
            return
        if names_a_key and self.command in ("GET", "HEAD") and faults.error is not None:
            _, _, key = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
            if faults.error_keys is None or key in faults.error_keys:
                faults.errors_answered[key] += 1
                if faults.error_times is None or faults.errors_answered[key] <= faults.error_times:
                    self._answer_error(*faults.error)
                    return
        if (
            not names_a_key
            and self.command == "GET"
            and faults.listing_error is not None
            and (faults.listing_errors_left is None or faults.listing_errors_left > 0)
        ):
            if faults.listing_errors_left is not None:
                faults.listing_errors_left -= 1
            self._answer_error(*faults.listing_error)
            return
        upstream = http.client.HTTPConnection(faults.moto.host, faults.moto.port, timeout=30)
        try:
            headers = {name: value for name, value in self.headers.items()}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        stall_after = faults.stall_after if is_object_read and response.status < 300 else None
        if stall_after is not None:
            # The stall is at a byte of the object: a ranged read (bytes=N-) reaches it sooner.
            stall_after = max(0, stall_after - _range_start(self.headers))
        if faults.corrupt_at is not None and is_object_read and response.status < 300:
            payload = _flip_byte(payload, faults.corrupt_at - _range_start(self.headers))
        garble_after = faults.garble_after if is_object_read and response.status < 300 else None
        cut_after = faults.cut_after if is_object_read and response.status < 300 else None
        if cut_after is not None:
            cut_after -= _range_start(self.headers)
        try:
            if cut_after is not None and 0 <= cut_after < len(payload) and faults.cuts_left > 0:
                faults.cuts_left -= 1
                self.wfile.write(payload[:cut_after])
                self.wfile.flush()
                if faults.cut_with_reset:
                    _reset(self.connection)
                self.close_connection = True
                return
            if garble_after is not None and garble_after < len(payload):
                faults.garble_after = None  # once: the ranged read that resumes is served
                self.wfile.write(payload[:garble_after])
                self.wfile.flush()
                self._send_garbled_record()
                return
            if stall_after is None or stall_after >= len(payload):
                self.wfile.write(payload)
                return
            self.wfile.write(payload[:stall_after])
            self.wfile.flush()
            faults.stalls += 1
            # Mid-body, the connection open and silent, until the test releases the object.
            faults.released.wait()
            self.wfile.write(payload[stall_after:])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on the stalled body

    def _send_garbled_record(self) -> None:
        """Write, under the TLS layer, an application-data record that fails its integrity check
        (a byte corrupted in transit, which TCP let through and TLS catches), and hang up."""
        record = b"\x17\x03\x03\x00\x40" + os.urandom(64)
        with socket.socket(fileno=os.dup(self.connection.fileno())) as raw:
            raw.sendall(record)
        self.close_connection = True

    def _answer_error(self, status: int, code: str) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{code} (FaultyS3)</Message>"
            "<RequestId>FAULTY</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _reset(sock: socket.socket) -> None:
    """Make the close that follows an RST (SO_LINGER 0), not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _range_start(headers: Any) -> int:
    """The first byte of the object a read asks for (``Range: bytes=N-``), or 0."""
    first_byte = re.match(r"bytes=(\d+)-", headers.get("Range", ""))
    return int(first_byte[1]) if first_byte else 0


def _flip_byte(payload: bytes, index: int) -> bytes:
    """``payload`` with one bit of byte ``index`` flipped, when it holds that byte."""
    if not 0 <= index < len(payload):
        return payload
    return payload[:index] + bytes([payload[index] ^ 1]) + payload[index + 1 :]


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    faults: FaultyS3

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hung up: they gave up on a stalled body, as intended."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class FaultyS3:
    """An S3 endpoint on 127.0.0.1 in front of a moto server: every request is forwarded, and
    object reads (GET of a key) misbehave as set.

    - ``error = (503, "SlowDown")``: object reads and HEADs get that S3 error answer (with
      ``error_keys``, only those of these keys: one object failing among others; with
      ``error_times = n``, only each key's first n reads and HEADs: S3 throttling a while);
    - ``listing_error = (403, "AccessDenied")``: so do bucket listings (with
      ``listing_errors_left = n``, only the next n of them: S3 throttling a while);
    - ``stall_after = n``: each object read sends its headers and its body up to the object's
      byte ``n`` (a ranged read from beyond it, none), then stays silent, the connection open,
      until ``released`` is set (``release()``);
    - ``stall_reads_after = n``: the object reads after the first n send nothing, not even
      their headers, until ``released`` is set;
    - ``corrupt_at = n``: each object read carries the object's byte ``n`` with a bit flipped
      (a corruption the transport let through; the client's checksum check finds it);
    - ``tls``: HTTPS with this server context (``CertBundle.server_context()``); and then
      ``garble_after = n``: the next object read sends its body up to byte ``n``, then a TLS
      record that fails its integrity check, and hangs up (once: the read that resumes is
      served).

    - ``cut_after = n``: the next ``cuts_left`` (1) object reads that reach the object's byte
      ``n`` send their headers (the whole Content-Length) and the body up to that byte, then
      close the connection (with ``cut_with_reset``, by a TCP reset): fewer bytes than promised;
    - ``range_errors_left = n``: the next n ranged object reads (``Range: bytes=N-``, a resume)
      get the S3 error ``range_error`` (503 SlowDown);
    - ``before_ranged_read``: called before each ranged object read is forwarded (to overwrite
      the object between a read and its resume).
    - ``before_read``: called with the key before each object read is forwarded (to overwrite
      an object between a listing and its read).

    Point a client at ``endpoint_url`` (boto3's ``AWS_ENDPOINT_URL_S3``); use it as a context
    manager, which stops it and releases every stalled response.
    """

    moto: MotoServer
    error: tuple[int, str] | None = None
    error_keys: frozenset[str] | None = None
    error_times: int | None = None
    errors_answered: Counter[str] = field(default_factory=Counter)
    """The reads and HEADs of each key that ``error`` applied to (answered with it or not)."""
    listing_error: tuple[int, str] | None = None
    listing_errors_left: int | None = None
    stall_after: int | None = None
    stall_reads_after: int | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    garble_after: int | None = None
    corrupt_at: int | None = None
    cut_after: int | None = None
    cuts_left: int = 1
    cut_with_reset: bool = False
    range_error: tuple[int, str] = (503, "SlowDown")
    range_errors_left: int = 0
    before_ranged_read: Callable[[], None] | None = field(default=None, repr=False)
    before_read: Callable[[str], None] | None = field(default=None, repr=False)
    released: threading.Event = field(default_factory=threading.Event)
    gets: list[str] = field(default_factory=list)
    """The paths of the object reads received."""
    ranges: list[str | None] = field(default_factory=list)
    """The ``Range`` header of each object read received (None for a whole-object read)."""
    stalls: int = 0
    """Object reads stalled so far."""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    """Every request forwarded or answered: method, path, and the JSON protocol's
    ``X-Amz-Target`` (the SQS action), None without it."""
    _server: _ProxyServer | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "use FaultyS3 as a context manager"
        host, port = self._server.server_address[:2]
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{host!s}:{port}"

    def client(self, *, verify: str | None = None, **config: Any) -> S3Client:
        """An S3 client for this endpoint (see ``MotoServer.client_kwargs``); ``verify`` is the
        CA file that signed the ``tls`` certificate."""
        kwargs = self.moto.client_kwargs(**config)
        kwargs["endpoint_url"] = self.endpoint_url
        if verify is not None:
            kwargs["verify"] = verify
        return boto3.client("s3", **kwargs)

    def release(self) -> None:
        """Let stalled bodies go on, and stop stalling new ones."""
        self.stall_after = None
        self.released.set()

    def __enter__(self) -> FaultyS3:
        server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.faults = self
        self._server = server
        threading.Thread(target=server.serve_forever, name="faulty-s3", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
