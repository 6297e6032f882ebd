"""Faulty json_lines servers with real sockets, one misbehaviour each.

Each records, like the healthy receiver, only the complete lines it actually read, so a test can
check that every line arrived at least once, and count the duplicates.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

from tests.support.receiver import RECV_BYTES, ConnectionRecord, JsonLinesReceiver

__all__ = [
    "CapAtAccept",
    "CappedServer",
    "ClosingServer",
    "ConnectionFault",
    "FaultyTls",
    "FirstConnectionStuckServer",
    "HalfClosesUnreadServer",
    "MemoryTls",
    "NeverClosingServer",
    "NeverReadingServer",
    "RefusingServer",
    "ResettingServer",
    "ScheduledServer",
    "SlowHandshakeServer",
    "SlowReadingServer",
    "StopsReadingServer",
    "TlsFaultServer",
    "TlsLastWordsServer",
    "UnansweredAddress",
]


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST and drops whatever was unread."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _read_up_to(
    server: JsonLinesReceiver, sock: socket.socket, record: ConnectionRecord, count: int
) -> bool:
    """Read the connection's first ``count`` bytes; False when the client closed before."""
    while record.bytes_read < count:
        data = sock.recv(min(RECV_BYTES, count - record.bytes_read))
        if not data:
            return False
        server.feed(record, data)
    return True


class ResettingServer(JsonLinesReceiver):
    """Resets the first ``resets`` connections after reading ``after_bytes`` from each; with
    ``after_bytes=None``, after reading everything up to the client's FIN (a Logstash that read
    every event and crashed before it could close: the close that confirms never comes).
    ``wait_seconds``: wait this long before the reset, so the client has written everything
    (its kernel holds it, acknowledged and unread) and waits for the close (a Logstash that
    stopped reading and then crashed, or closed on a decoding error)."""

    def __init__(
        self,
        *,
        after_bytes: int | None,
        resets: int = 1,
        wait_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.after_bytes = after_bytes
        self.resets = resets
        self.wait_seconds = wait_seconds
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if record.index >= self.resets:
            super().serve(sock, record)
            return
        if self.after_bytes is None:
            super().serve(sock, record)  # to the client's FIN
            _reset(sock)
            return
        if not _read_up_to(self, sock, record, self.after_bytes):
            return
        self._stopping.wait(self.wait_seconds)
        _reset(sock)


def _tls_records(data: bytes) -> list[bytes]:
    """``data`` cut into TLS records (a 5-byte header whose last two bytes are the length)."""
    records = []
    while data:
        end = 5 + struct.unpack_from("!H", data, 3)[0]
        records.append(data[:end])
        data = data[end:]
    return records


class MemoryTls:
    """The server side of a TLS connection over memory BIOs, read and written as ``serve``
    reads and writes an ``ssl.SSLSocket`` (``recv``, ``sendall``), so that the test decides what
    goes on the wire: records corrupted or injected after the handshake, a close_notify, the
    verdict on the client's certificate held back.

    The constructor does the handshake, pausing ``verdict_delay`` seconds after sending the
    server's flight, before it reads the client's certificate and Finished: a TLS 1.3 server
    judges the certificate then, so its verdict (its session tickets, or its alert, which raises
    ``ssl.SSLError`` here after going out) comes that much after the client's handshake ended.
    What the handshake writes last (TLS 1.3 tickets) waits in ``outgoing`` for ``flush``.
    """

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext, *, verdict_delay: float = 0.0
    ) -> None:
        self.raw = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                if self.flush():
                    time.sleep(verdict_delay)  # our flight went out: the client's ends it
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionResetError("the client closed during the handshake") from None
                self.incoming.write(data)
            except ssl.SSLError:
                self.flush()  # the alert
                raise

    def flush(self) -> bool:
        """Send what the TLS layer wrote; whether it wrote anything."""
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)
        return bool(data)

    def recv(self, size: int) -> bytes:
        """Application data, waiting for it; ``b""`` at the client's close_notify or FIN."""
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                self.flush()  # what reading wrote (a renegotiation's handshake) must go out
                data = self.raw.recv(RECV_BYTES)
                if not data:
                    return b""
                self.incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self.flush()

    def sendall_corrupted(self, data: bytes) -> None:
        """``data`` in records whose last byte (of the authentication tag) is flipped, as a
        middlebox that damages a record would send them: the client finds a bad MAC."""
        self.tls.write(data)
        records = bytearray(self.outgoing.read())
        records[-1] ^= 1
        self.raw.sendall(records)

    def close_notify(self) -> None:
        """Send close_notify (without waiting for the client's)."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        self.flush()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.raw.setsockopt(level, option, value)

    def close(self) -> None:
        self.raw.close()


@dataclass(frozen=True)
class FaultyTls:
    """A receiver's ``ssl_context`` whose connections are ``MemoryTls``: ``serve`` (or a beats
    ``Faults.reply`` script) gets them to misbehave; ``verdict_delay`` holds back every
    connection's verdict on the client certificate."""

    context: ssl.SSLContext
    verdict_delay: float = 0.0

    def wrap_socket(self, sock: socket.socket, server_side: bool = True) -> MemoryTls:
        connection = MemoryTls(sock, self.context, verdict_delay=self.verdict_delay)
        connection.flush()
        return connection


class TlsFaultServer(JsonLinesReceiver):
    """A TLS tcp input (json_lines) whose first connection reads ``after_bytes``, then does
    ``fault`` to its ``MemoryTls`` and closes; later connections are healthy."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        fault: Callable[[MemoryTls], None],
        after_bytes: int,
        **kwargs: Any,
    ) -> None:
        self.fault = fault
        self.after_bytes = after_bytes
        super().__init__(FaultyTls(context), **kwargs)

    def serve(self, sock: Any, record: ConnectionRecord) -> None:
        if record.index > 0:
            super().serve(sock, record)
        elif _read_up_to(self, sock, record, self.after_bytes):
            self.fault(sock)


class TlsLastWordsServer(JsonLinesReceiver):
    """TLS over memory BIOs, so that it decides when each record goes out. Its first
    connection ends with TLS records that carry no data, ``last_words``: ``"close_notify"`` (a
    Logstash closing the channel: Netty sends close_notify, then closes) or ``"ticket"`` (a TLS
    1.3 session ticket held back since the handshake). ``reset``: it reads only ``after_bytes``,
    waits ``wait_seconds`` (the client has written everything and waits for the close), sends
    them and resets at once, our bytes unread (a pipeline stopping); otherwise it reads up to
    the client's close and closes after them (a FIN). Later connections are read to the end.
    ``last_words_sent`` is set just before they go out, ``reset_sent`` once the reset has.
    """

    def __init__(
        self,
        tls_context: ssl.SSLContext,
        *,
        last_words: Literal["close_notify", "ticket"],
        reset: bool,
        after_bytes: int = 0,
        wait_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.tls_context = tls_context
        self.last_words = last_words
        self.reset = reset
        self.after_bytes = after_bytes
        self.wait_seconds = wait_seconds
        self.last_words_sent = threading.Event()
        self.reset_sent = threading.Event()
        super().__init__(**kwargs)  # no ssl_context: serve() speaks TLS itself

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.tls_context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(RECV_BYTES)
                if not data:
                    return
                incoming.write(data)
        # TLS 1.3 writes its session tickets once the handshake is done: the first answers the
        # client's wait for a verdict on its certificate, the others can be last words.
        tickets = _tls_records(outgoing.read())
        kept = 1 if tls.version() == "TLSv1.3" else len(tickets)
        sock.sendall(b"".join(tickets[:kept]))
        last = record.index == 0
        resetting = last and self.reset
        while not resetting or record.bytes_read < self.after_bytes:
            try:
                plain = tls.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                incoming.write(data)
                continue
            if not plain:
                break  # the client's close_notify: it sent everything
            self.feed(record, plain)
        if not last:
            return
        self._stopping.wait(self.wait_seconds if resetting else 0.0)
        words = b"".join(tickets[kept:])  # held tickets go first either way: records are numbered
        if self.last_words == "close_notify":
            incoming.read()  # records received but never decrypted: unread, like the kernel's
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.unwrap()  # writes close_notify, then would wait for the client's
            words += outgoing.read()
        self.last_words_sent.set()
        sock.sendall(words)
        if resetting:
            _reset(sock)
            sock.close()
            self.reset_sent.set()


class ClosingServer(JsonLinesReceiver):
    """Closes every connection after reading ``after_bytes`` (a reset if more was waiting)."""

    def __init__(self, *, after_bytes: int, **kwargs: Any) -> None:
        self.after_bytes = after_bytes
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        _read_up_to(self, sock, record, self.after_bytes)


class SlowReadingServer(JsonLinesReceiver):
    """Reads ``bytes_per_second`` in eight small reads a second, to EOF: slow, but alive."""

    READS_PER_SECOND = 8

    def __init__(self, *, bytes_per_second: int = 64 * 1024, **kwargs: Any) -> None:
        self.chunk = max(1, bytes_per_second // self.READS_PER_SECOND)
        kwargs.setdefault("rcvbuf", 64 * 1024)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        while True:
            data = sock.recv(self.chunk)
            if not data:
                return
            self.feed(record, data)
            time.sleep(1 / self.READS_PER_SECOND)


class SlowHandshakeServer(JsonLinesReceiver):
    """Answers a connection's TLS handshake only ``delay`` seconds after accepting it (a busy
    Logstash), then serves it normally; with ``only``, just the connections of those indexes."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        delay: float,
        only: frozenset[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.delay = delay
        self.only = only
        super().__init__(ssl_context, **kwargs)

    def _handle(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if self.only is None or record.index in self.only:
            self._stopping.wait(self.delay)
        super()._handle(sock, record)


class NeverReadingServer(JsonLinesReceiver):
    """Accepts and never reads (a Logstash whose pipeline is blocked), until stopped."""

    def __init__(self, **kwargs: Any) -> None:
        self._release = threading.Event()
        self._reading = threading.Event()
        kwargs.setdefault("rcvbuf", 64 * 1024)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        while not self._release.wait(0.05):
            if self._stopping.is_set():
                return
            if self._reading.is_set():
                super().serve(sock, record)
                return

    def resume_reading(self) -> None:
        """Read every connection from now on, as a healthy receiver does (the pipeline
        unblocked)."""
        self._reading.set()

    def stop(self) -> None:
        self._release.set()
        super().stop()


class NeverClosingServer(JsonLinesReceiver):
    """Reads every connection to our FIN, but closes only its first ``closing`` connections and
    holds the later ones open until stopped (a Logstash that read every event and whose close,
    which confirms them, never comes)."""

    def __init__(self, *, closing: int, **kwargs: Any) -> None:
        self.closing = closing
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        super().serve(sock, record)
        if record.index >= self.closing:
            self._stopping.wait()


class HalfClosesUnreadServer(JsonLinesReceiver):
    """Never reads, and ``after`` seconds into each connection sends its FIN (``shutdown``),
    holding the socket open a while longer: our bytes sit unacknowledged behind a closed window
    when the peer's close arrives, which confirms nothing."""

    def __init__(self, *, after: float = 0.5, hold: float = 3.0, **kwargs: Any) -> None:
        self.after = after
        self.hold = hold
        kwargs.setdefault("rcvbuf", 4096)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if self._stopping.wait(self.after):
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        self._stopping.wait(self.hold)


class StopsReadingServer(NeverReadingServer):
    """Reads its first ``healthy`` connections to EOF, then never reads again (a Logstash whose
    pipeline blocked part-way through an object)."""

    def __init__(self, *, healthy: int, **kwargs: Any) -> None:
        self.healthy = healthy
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if record.index < self.healthy:
            JsonLinesReceiver.serve(self, sock, record)
        else:
            super().serve(sock, record)


class FirstConnectionStuckServer(JsonLinesReceiver):
    """The first connection is read for ``read_bytes``, then never again nor closed (one
    Logstash node blocked, behind a load balancer); every later one is healthy."""

    def __init__(self, *, read_bytes: int = 64 * 1024, **kwargs: Any) -> None:
        self.read_bytes = read_bytes
        kwargs.setdefault("rcvbuf", 64 * 1024)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if record.index != 0:
            super().serve(sock, record)
            return
        while record.bytes_read < self.read_bytes:
            data = sock.recv(RECV_BYTES)
            if not data:
                return
            self.feed(record, data)
        self._stopping.wait()


class RefusingServer(JsonLinesReceiver):
    """Refuses connections (port closed) for ``refuse_for`` seconds, then serves normally."""

    def __init__(self, *, refuse_for: float, **kwargs: Any) -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now: connects are refused
        super().__init__(port=port, listen_now=False, **kwargs)
        self.opened_at: float | None = None
        self._timer = threading.Timer(refuse_for, self._open)
        self._timer.daemon = True
        self._timer.start()

    def open_in(self, seconds: float) -> None:
        """Refuse for ``seconds`` from now, instead of until ``refuse_for`` after the start."""
        self._timer.cancel()
        self._timer = threading.Timer(seconds, self._open)
        self._timer.daemon = True
        self._timer.start()

    def _open(self) -> None:
        if not self._stopping.is_set():
            self.listen()
            self.opened_at = time.monotonic()

    def stop(self) -> None:
        self._timer.cancel()
        super().stop()


class CapAtAccept(JsonLinesReceiver):
    """Serves at most ``cap`` connections at a time and resets any other at accept, before
    reading a byte, as syslog-ng (``max-connections``, default 10) and proxies with a limit do.
    A mixin for any receiver of these tests (``BeatsServer`` too)."""

    def __init__(self, *args: Any, cap: int, **kwargs: Any) -> None:
        self.cap = cap
        self.turned_away = 0
        super().__init__(*args, **kwargs)

    def admit(self, sock: socket.socket) -> bool:
        with self._lock:
            if self.active < self.cap:
                return True
            self.turned_away += 1
        _reset(sock)
        sock.close()
        return False


class CappedServer(CapAtAccept):
    """``CapAtAccept`` for json_lines."""

    def __init__(self, *, cap: int, hold_seconds: float = 0.0, **kwargs: Any) -> None:
        """``hold_seconds``: each admitted connection waits this long before its first read (a
        busy receiver), so the client's writes back up and it reaches for more connections
        whatever the machine's speed."""
        self.hold_seconds = hold_seconds
        super().__init__(cap=cap, **kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        if self._stopping.wait(self.hold_seconds):
            return
        super().serve(sock, record)


class UnansweredAddress:
    """``host:port`` where a connect hangs until it times out, as at an unreachable address (a
    host down, a blackholed AAAA record): a listener whose backlog one connection fills, after
    which the kernel drops every SYN."""

    def __init__(self, host: str, port: int) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, port))
        self._listener.listen(0)
        self._filler = socket.create_connection((host, port), timeout=1.0)

    def close(self) -> None:
        self._filler.close()
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ConnectionFault:
    """What ``ScheduledServer`` does with one connection, after reading ``after_bytes`` of it:

    - ``"reset"``: reset it (SO_LINGER 0), what it had not read lost;
    - ``"close"``: close it (a reset when more was waiting), as ``ClosingServer`` does;
    - ``"reset_at_end"``: read to the client's FIN, then reset instead of closing (the close
      that confirms never comes: ``ResettingServer`` with ``after_bytes=None``);
    - ``"stall"``: stop reading for ``seconds``, then read to the end as a healthy one;
    - ``"slow"``: read the rest at ``bytes_per_second``, as ``SlowReadingServer`` does.
    """

    kind: Literal["reset", "close", "reset_at_end", "stall", "slow"]
    after_bytes: int = 0
    seconds: float = 0.0
    bytes_per_second: int = 256 * 1024


class ScheduledServer(JsonLinesReceiver):
    """The faults of this module in sequence: connection number ``i`` meets ``schedule[i]``
    (None: healthy), later ones are healthy. ``faulted`` holds the numbers of the connections
    that met a fault a client may take for a failure (all but ``"slow"``: it gives up on a
    stall too), whose lines it may send again; ``ended`` those read to the client's FIN and
    closed, as a healthy one is: what they carried is confirmed."""

    def __init__(self, schedule: list[ConnectionFault | None], **kwargs: Any) -> None:
        self.schedule = schedule
        self.faulted: set[int] = set()
        self.ended: set[int] = set()
        kwargs.setdefault("rcvbuf", 64 * 1024)
        super().__init__(**kwargs)

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        index = record.index
        fault = self.schedule[index] if index < len(self.schedule) else None
        if fault is None:
            self._to_the_end(sock, record)
            return
        if fault.kind != "slow":
            with self._lock:
                self.faulted.add(index)
        if fault.kind == "reset_at_end":
            super().serve(sock, record)
            _reset(sock)
            return
        if not _read_up_to(self, sock, record, fault.after_bytes):
            return
        if fault.kind == "reset":
            _reset(sock)
        elif fault.kind == "stall":
            if not self._stopping.wait(fault.seconds):
                self._to_the_end(sock, record)
        elif fault.kind == "slow":
            chunk = max(1, fault.bytes_per_second // SlowReadingServer.READS_PER_SECOND)
            while not self._stopping.is_set():
                data = sock.recv(chunk)
                if not data:
                    with self._lock:
                        self.ended.add(index)
                    return
                self.feed(record, data)
                time.sleep(1 / SlowReadingServer.READS_PER_SECOND)

    def _to_the_end(self, sock: socket.socket, record: ConnectionRecord) -> None:
        super().serve(sock, record)
        with self._lock:
            self.ended.add(record.index)
