"""A Logstash-compatible ``tcp`` input with ``codec => json_lines``, on 127.0.0.1, for tests.

Like Logstash (Netty without ALLOW_HALF_CLOSURE) it reads each connection until the client's
FIN or TLS close_notify, then closes its side; the client sees that close as the confirmation.
Each connection's events are recorded in order, with a thread per connection.

Usage::

    with JsonLinesReceiver() as receiver:
        settings = Settings(host="127.0.0.1", port=receiver.port)
        ...
        assert receiver.event_ids() == [...]

``tests/support/faults.py`` subclasses it to misbehave in one way each.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from elb_log_shipper.logstash import BatchFormat

# A stall timeout for pool tests whose receiver is healthy: these receivers run in the test
# process, and a pause of it must not pass for a stall, after which the shipper rightly resends
# what the receiver may have read or acknowledged (a CI simulation saw 128 duplicates with 1 s).
POOL_NOT_A_STALL_TIMEOUT = 5.0

__all__ = ["ConnectionRecord", "JsonLinesReceiver", "ServerTls", "json_lines", "receiver"]

HOST = "127.0.0.1"
RECV_BYTES = 64 * 1024
# Stopping waits this long for each connection thread; they only block in recv or sleep.
JOIN_SECONDS = 5.0


@dataclass
class ConnectionRecord:
    """What one client connection delivered: complete lines only, in order."""

    index: int
    events: list[dict[str, Any]] = field(default_factory=list)
    partial: bytes = b""
    bytes_read: int = 0
    closed: bool = False
    error: str | None = None

    def feed(self, data: bytes) -> None:
        self.bytes_read += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line)


def json_lines(events: list[dict[str, Any]]) -> bytes:
    """Serialise events the way the pipeline does: one compact JSON object per line."""
    return b"".join(json.dumps(event, separators=(",", ":")).encode() + b"\n" for event in events)


def in_format(batch: bytes, batch_format: BatchFormat) -> bytes:
    """A batch of JSON lines as a sink of ``batch_format`` takes it, built the way the pipeline
    builds it: the format's ``@metadata`` in each event, the events joined by the format."""
    lines: list[bytes] = []
    for line in batch.splitlines():
        event = json.loads(line)
        if batch_format.metadata is not None:
            event["@metadata"] = batch_format.metadata
        lines.append(json.dumps(event, separators=(",", ":")).encode())
    return batch_format.join(lines)


class ServerTls(Protocol):
    """What a receiver's ``ssl_context`` must do: an ``ssl.SSLContext``, or a test's own TLS
    (``tests/support/faults.py``: ``FaultyTls``) whose connections ``serve`` reads and writes as
    it would an ``ssl.SSLSocket`` (``recv``, ``sendall``, ``setsockopt``, ``close``)."""

    def wrap_socket(self, sock: socket.socket, server_side: bool = ...) -> Any: ...


class JsonLinesReceiver:
    """A healthy json_lines server. Override ``serve`` to change how a connection is read."""

    def __init__(
        self,
        ssl_context: ServerTls | None = None,
        *,
        port: int = 0,
        rcvbuf: int | None = None,
        listen_now: bool = True,
    ) -> None:
        self.ssl_context = ssl_context
        self._rcvbuf = rcvbuf
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()
        self.records: list[ConnectionRecord] = []
        self.active = 0
        self.max_active = 0
        self.handshake_errors: list[str] = []
        self._listener: socket.socket | None = None
        self.port = port
        if listen_now:
            self.listen()

    # Lifecycle.

    def listen(self) -> None:
        """Bind (to ``self.port``, 0 for any free port) and start accepting."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._rcvbuf is not None:
            # Inherited by accepted sockets; small buffers make slow or absent reading visible.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
        listener.bind((HOST, self.port))
        listener.listen(128)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Stop accepting, close every connection, wait for the threads."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        self.close_client_connections()
        for thread in list(self._threads):
            thread.join(JOIN_SECONDS)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Inspection.

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self.records)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every complete event received, connection by connection."""
        with self._lock:
            return [event for record in self.records for event in record.events]

    def event_ids(self) -> list[Any]:
        return [event.get("id") for event in self.events]

    def close_client_connections(self) -> None:
        """Close the server side of every open connection (like an idle timeout or a restart)."""
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` connections have been accepted (the kernel accepts first)."""
        end = time.monotonic() + timeout
        while self.connection_count < count and time.monotonic() < end:
            time.sleep(0.01)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no connection is open on the server side."""
        end = time.monotonic() + timeout
        while self.active and time.monotonic() < end:
            time.sleep(0.01)

    # Behaviour, overridable.

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        """Read to EOF, then close (Logstash's reaction to a half-close)."""
        while True:
            data = sock.recv(RECV_BYTES)
            if not data:
                return
            self.feed(record, data)

    def feed(self, record: ConnectionRecord, data: bytes) -> None:
        with self._lock:
            record.feed(data)

    def admit(self, sock: socket.socket) -> bool:
        """Called on the acceptor thread right after accept; False turns the connection away
        (the subclass closes it) before anything is read."""
        return True

    # Machinery.

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            if not self.admit(sock):
                continue
            with self._lock:
                record = ConnectionRecord(index=len(self.records))
                self.records.append(record)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self._live.add(sock)
            self._spawn(self._handle, sock, record)

    def _handle(self, sock: socket.socket, record: ConnectionRecord) -> None:
        try:
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as error:
                    with self._lock:
                        self.handshake_errors.append(str(error))
                    return
                if isinstance(sock, socket.socket):  # a FaultyTls connection keeps the plain one
                    with self._lock:
                        self._live.add(sock)
            try:
                self.serve(sock, record)
            except (ssl.SSLError, OSError) as error:
                record.error = str(error)
        finally:
            # Close under the lock: the client may reconnect as soon as it sees our FIN, and
            # the acceptor must not count the new connection before this one is gone.
            with self._lock:
                with contextlib.suppress(OSError):
                    sock.close()
                record.closed = True
                self.active -= 1
                self._live = {s for s in self._live if s.fileno() != -1}


@contextlib.contextmanager
def receiver(ssl_context: ssl.SSLContext | None = None) -> Iterator[JsonLinesReceiver]:
    """A receiver for the duration of a ``with`` block (or a pytest yield fixture)."""
    server = JsonLinesReceiver(ssl_context)
    try:
        yield server
    finally:
        server.stop()
