"""A Logstash ``beats`` input (lumberjack v2) on 127.0.0.1 for tests, with faults to inject.

It parses frames as logstash-input-beats' ``BeatsParser`` does (``2W`` window, ``2C`` zlib
frames holding more frames, ``2J`` JSON events; the standard library's zlib inflates, so the
client's ISA-L streams are checked for compatibility) and answers each complete window with the
final ``2A seq`` ACK, the way ``BeatsHandler`` does. ``Faults`` makes it misbehave in the ways a
real server or network can: slow or missing ACKs, keep-alives, partial ACKs, closes, garbage.

Every window is recorded with its events and whether it was acknowledged, so a test can check
that duplicates come only from windows that were never acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.receiver import JOIN_SECONDS, ConnectionRecord, JsonLinesReceiver

__all__ = ["BeatsServer", "Faults", "WindowRecord", "ack"]

_ACK = struct.Struct(">2sI")


@dataclass(frozen=True)
class Faults:
    """How the server misbehaves; the defaults make a healthy beats input."""

    ack_delay: float = 0.0  # seconds before each final ACK (a slow pipeline)
    keepalive_interval: float | None = None  # send 'A 0' this often while delaying or holding
    partial_ack_every: int = 0  # ACK every this many events before the final ACK
    never_ack: bool = False  # only keep-alives, never a final ACK (a blocked pipeline)
    # The first n connections acknowledge ``acks_before_keepalives_only`` windows each, then only
    # send keep-alives (a pipeline that blocks part-way); later connections are healthy.
    keepalives_only_connections: int = 0
    acks_before_keepalives_only: int = 0
    drop_every_nth_window: int = 0  # close instead of acknowledging every nth window (global)
    close_without_ack_connections: int = 0  # the first n connections close after one window
    close_mid_window_connections: int = 0  # the first n connections close halfway into one
    garbage_reply: bool = False  # answer a window with bytes that are no ACK
    ack_beyond_window: bool = False  # the final ACK names an event past the window's count
    # The first n connections acknowledge one window, read a little of the next, then reset
    # (SO_LINGER 0) or, with ``stall_after_ack``, stop reading: a client blocked writing that
    # next window has the ACK unread in its socket.
    break_after_ack_connections: int = 0
    stall_after_ack: bool = False
    # The first n connections close right after their first final ACK (Logstash's
    # client_inactivity_timeout striking as the ACK goes out); with ``reset_on_close``, as
    # Logstash's beats input closes every connection (SO_LINGER 0: a reset, not a FIN).
    close_after_ack_connections: int = 0
    reset_on_close: bool = False
    # Keep-alives as Logstash's beats input sends them (with ``ack_delay`` for its blocked
    # pipeline, ``keepalive_interval`` for its 5 s writer-idle timer): windows are read as they
    # arrive and processed one after another on another thread, and a keep-alive goes out only
    # while a flag is set that every read sets and the end of every window's processing clears
    # (logstash-input-beats: ``ConnectionHandler.channelRead`` and ``userEventTriggered``,
    # ``BeatsHandler.channelRead0``). A window read while the one before it was processing is
    # processed with the flag cleared: no keep-alive until the client writes again.
    logstash_keepalives: bool = False
    # An empty window (``2W`` of 0) is answered with ``ACK 0``, in order, as current Logstash does
    # (its BeatsParser passes an empty batch on, BeatsHandler acknowledges it with seq 0); by
    # default it is only a size that the next window's replaces, as in earlier versions.
    empty_window_ack: bool = False
    # With ``logstash_keepalives``: close the connection (a reset) once nothing was read from it
    # or written to it for this long, whatever it still processes, as Logstash's beats input
    # does with ``client_inactivity_timeout`` (logstash-input-beats: ``Server.BeatsInitializer``
    # gives Netty's ``IdleStateHandler`` that timeout as its all-idle time, and
    # ``ConnectionHandler.userEventTriggered`` closes on ``ALL_IDLE`` without looking at pending
    # batches; ``Server`` sets ``SO_LINGER`` 0). Its keep-alives are writes that hold it off; a
    # window processed with the keep-alive flag cleared has none.
    client_inactivity_timeout: float | None = None
    # Bytes that are no frame (json_lines from a client set for the tcp input) are met as
    # Logstash's beats input meets them: it closes the connection at its first byte, having read
    # what had arrived within this many seconds (Netty reads what is there): a small batch, with
    # the client's close_notify and FIN when they came that soon, so that it closes gracefully.
    # None: a test failure (AssertionError), as for any other protocol error.
    close_on_garbage_after: float | None = None
    # The first connection does it this much later (a pause of Logstash's, once).
    first_close_on_garbage_after: float | None = None
    # A script that answers every window instead (for the rest of the faults above): given the
    # socket, the connection's number, the window's number on it and its events, it writes what
    # it likes (``ack(seq)``) and returns False to end the connection. It marks nothing
    # acknowledged (``unacknowledged_ids`` does not apply).
    reply: Callable[[socket.socket, int, int, list[dict[str, Any]]], bool] | None = None


def ack(seq: int) -> bytes:
    """An ACK frame of ``seq``, for ``Faults.reply`` scripts."""
    return _ACK.pack(b"2A", seq)


# Linux's TCP state while our FIN is not yet acknowledged (`tcp_info.tcpi_state`).
_TCP_FIN_WAIT1 = 4


def _read_what_came(sock: socket.socket, seconds: float) -> None:
    """Read, without waiting, what arrives within ``seconds`` (TLS: to the peer's close_notify)."""
    time.sleep(seconds)
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # BlockingIOError, SSLWantReadError, a reset: all read
        while sock.recv(64 * 1024):
            pass


def _close_once_the_client_has_the_fin(sock: socket.socket, timeout: float = 2.0) -> None:
    """Half-close, then wait until the client's kernel has acknowledged our FIN (the socket left
    FIN_WAIT1), before the caller closes. Logstash's idle close comes long before the client
    uses the connection again; a client checking it right after ``wait_idle`` must likewise find
    it closed, however loaded the machine is (its kernel may process the FIN late)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_WR)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != _TCP_FIN_WAIT1:
                return
            time.sleep(0.005)


@dataclass
class WindowRecord:
    """One window the server read completely."""

    connection: int
    events: list[dict[str, Any]] = field(default_factory=list)
    acked: bool = False


class _NotAFrameError(Exception):
    pass


class _ClosedError(Exception):
    """The client closed, or the server is stopping."""


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.bytes_read = 0
        self.on_read: Callable[[], None] | None = None

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = self.sock.recv(64 * 1024)
            if not data:
                raise _ClosedError
            if self.on_read is not None:
                self.on_read()
            self.bytes_read += len(data)
            self.buffer += data
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out


class BeatsServer(JsonLinesReceiver):
    """A beats input. ``faults`` changes its behaviour; ``windows`` records what it read."""

    def __init__(self, ssl_context: Any = None, *, faults: Faults | None = None, **kwargs: Any):
        self.faults = faults or Faults()
        self.windows: list[WindowRecord] = []
        self.windows_completed = 0
        self.empty_windows = 0
        self.keepalives_sent = 0
        self.inactivity_closes = 0
        super().__init__(ssl_context, **kwargs)

    # Inspection.

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of every window read completely (acknowledged or not)."""
        with self._lock:
            return [event for window in self.windows for event in window.events]

    def event_ids(self) -> list[Any]:
        return [_event_id(event) for event in self.events]

    def unacknowledged_ids(self) -> list[Any]:
        """Ids of the events of windows read but never acknowledged: the only ones a correct
        client may send twice."""
        with self._lock:
            windows = [window for window in self.windows if not window.acked]
        return [_event_id(event) for window in windows for event in window.events]

    # Protocol.

    def serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        # As Netty, so Logstash, does: ACKs go out at once, not after the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        if self.faults.logstash_keepalives:
            self._serve_as_logstash(sock, reader, record)
            return
        with contextlib.suppress(_ClosedError):
            while True:
                try:
                    window = self._read_window(reader, record)
                except _NotAFrameError:
                    first = record.index == 0 and self.faults.first_close_on_garbage_after
                    _read_what_came(sock, first or self.faults.close_on_garbage_after or 0.0)
                    return
                if window is None:
                    return  # closed on purpose
                if not window.events:
                    sock.sendall(_ACK.pack(b"2A", 0))  # an empty window, with empty_window_ack
                    continue
                if not self._answer(sock, window, record):
                    return
                if record.index < self.faults.close_after_ack_connections:
                    if self.faults.reset_on_close:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    else:
                        _close_once_the_client_has_the_fin(sock)
                    return
                if record.index < self.faults.break_after_ack_connections:
                    self._break(sock, reader)
                    return

    def _read_window(self, reader: _Reader, record: ConnectionRecord) -> WindowRecord | None:
        count = 0
        while count == 0:
            # An empty window is only a size, which the next window's replaces, as in earlier
            # versions of logstash-input-beats' BeatsParser; with ``empty_window_ack``, a
            # window without events (not recorded), answered with ``ACK 0`` as current ones do.
            header = reader.exactly(2)
            if header != b"2W":
                if self.faults.close_on_garbage_after is not None:
                    raise _NotAFrameError
                raise AssertionError(f"expected a window frame, got {header!r}")
            (count,) = struct.unpack(">I", reader.exactly(4))
            if count == 0:
                with self._lock:
                    self.empty_windows += 1
                if self.faults.empty_window_ack:
                    return WindowRecord(connection=record.index)
        window = WindowRecord(connection=record.index)
        if record.index < self.faults.close_mid_window_connections:
            reader.exactly(8)  # a little of the window, then gone
            return None
        while len(window.events) < count:
            kind = reader.exactly(2)
            if kind == b"2C":
                (length,) = struct.unpack(">I", reader.exactly(4))
                inner = zlib.decompress(reader.exactly(length))
                self._parse_plain(inner, window)
            elif kind == b"2J":
                seq, length = struct.unpack(">II", reader.exactly(8))
                self._add_event(window, seq, reader.exactly(length))
            else:
                raise AssertionError(f"unknown frame {kind!r}")
        if len(window.events) != count:
            raise AssertionError(f"window of {count} carried {len(window.events)} events")
        with self._lock:
            self.windows.append(window)
            self.windows_completed += 1
            record.bytes_read = reader.bytes_read
        return window

    def _parse_plain(self, data: bytes, window: WindowRecord) -> None:
        offset = 0
        while offset < len(data):
            kind = data[offset : offset + 2]
            if kind != b"2J":
                raise AssertionError(f"unexpected frame {kind!r} in a compressed frame")
            seq, length = struct.unpack_from(">II", data, offset + 2)
            start = offset + 10
            self._add_event(window, seq, data[start : start + length])
            offset = start + length

    @staticmethod
    def _add_event(window: WindowRecord, seq: int, payload: bytes) -> None:
        if seq != len(window.events) + 1:
            raise AssertionError(f"sequence {seq} after {len(window.events)} events")
        window.events.append(json.loads(payload))

    def _answer(self, sock: socket.socket, window: WindowRecord, record: ConnectionRecord) -> bool:
        """ACK ``window`` (or misbehave); False when the connection is to end."""
        faults = self.faults
        count = len(window.events)
        if faults.reply is not None:
            with self._lock:
                number = sum(1 for w in self.windows if w.connection == record.index) - 1
            return faults.reply(sock, record.index, number, window.events)
        if record.index < faults.close_without_ack_connections:
            return False
        if faults.drop_every_nth_window:
            with self._lock:
                nth = self.windows_completed
            if nth % faults.drop_every_nth_window == 0:
                return False
        if faults.garbage_reply:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return False
        if faults.ack_beyond_window:
            sock.sendall(_ACK.pack(b"2A", count + 1))
            return True
        if faults.partial_ack_every:
            for seq in range(faults.partial_ack_every, count, faults.partial_ack_every):
                sock.sendall(_ACK.pack(b"2A", seq))
        if faults.never_ack or (
            record.index < faults.keepalives_only_connections
            and self._acked_on(record.index) >= faults.acks_before_keepalives_only
        ):
            self._hold(sock, None)
            return False
        if faults.ack_delay:
            self._hold(sock, time.monotonic() + faults.ack_delay)
        sock.sendall(_ACK.pack(b"2A", count))
        with self._lock:
            window.acked = True
        return True

    def _break(self, sock: socket.socket, reader: _Reader) -> None:
        """Read a little of the next window, then reset, or stop reading until the server
        stops."""
        reader.exactly(8)
        if self.faults.stall_after_ack:
            self._stopping.wait()
            return
        time.sleep(0.2)  # the client is blocked writing by now
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _serve_as_logstash(
        self, sock: socket.socket, reader: _Reader, record: ConnectionRecord
    ) -> None:
        """``Faults.logstash_keepalives``: this thread reads windows as they arrive (each read
        sets the keep-alive flag); one thread processes them in order, each for ``ack_delay``,
        then ACKs it and clears the flag; one sends ``ACK 0`` after ``keepalive_interval`` of
        its own silence while the flag is set, and closes the connection after
        ``client_inactivity_timeout`` without a read or a write."""
        interval = self.faults.keepalive_interval or 5.0
        inactivity = self.faults.client_inactivity_timeout
        windows: queue.Queue[WindowRecord | None] = queue.Queue()
        flag = threading.Event()  # logstash-input-beats' CHANNEL_SEND_KEEP_ALIVE
        done = threading.Event()
        send_lock = threading.Lock()
        last_write = [time.monotonic()]
        # The last read or write, for the all-idle close (last_write also moves when the
        # writer-idle timer fires with nothing to send).
        last_exchange = [time.monotonic()]
        closed = threading.Event()  # closed as idle: later writes fail

        def write(data: bytes) -> None:
            with send_lock:
                if closed.is_set():  # Netty fails a write to a closed channel
                    raise OSError("the connection was closed as idle")
                sock.sendall(data)
                last_write[0] = last_exchange[0] = time.monotonic()

        def read() -> None:
            flag.set()  # ConnectionHandler.channelRead
            with send_lock:
                last_exchange[0] = time.monotonic()

        def close_idle() -> None:
            """ConnectionHandler's ALL_IDLE close, a reset (SO_LINGER 0); shutting the read side
            wakes the reading thread, whose return closes the socket."""
            with send_lock:
                closed.set()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.shutdown(sock, socket.SHUT_RD)
            with self._lock:
                self.inactivity_closes += 1

        def process() -> None:
            while (window := windows.get()) is not None:
                # An empty batch has no event to wait for the pipeline with.
                if window.events and self._stopping.wait(self.faults.ack_delay):
                    return
                try:
                    write(_ACK.pack(b"2A", len(window.events)))
                except OSError:
                    return  # the client has gone: the window stays unacknowledged
                with self._lock:
                    window.acked = True
                flag.clear()  # BeatsHandler.channelRead0's finally

        def keep_alive() -> None:
            while not done.wait(0.01) and not self._stopping.is_set():
                with send_lock:
                    now = time.monotonic()
                    idle = now - last_write[0] >= interval
                    inactive = inactivity is not None and now - last_exchange[0] >= inactivity
                if inactive:
                    with contextlib.suppress(OSError):
                        close_idle()
                    return
                if idle and flag.is_set():
                    try:
                        write(_ACK.pack(b"2A", 0))
                    except OSError:
                        return
                    with self._lock:
                        self.keepalives_sent += 1
                elif idle:
                    with send_lock:
                        last_write[0] = time.monotonic()  # Netty's idle timer fires again later

        reader.on_read = read
        threads = [threading.Thread(target=f, daemon=True) for f in (process, keep_alive)]
        for thread in threads:
            thread.start()
        try:
            with contextlib.suppress(_ClosedError, OSError):
                while True:
                    window = self._read_window(reader, record)
                    assert window is not None  # no close_mid_window fault here
                    windows.put(window)
        finally:
            windows.put(None)
            done.set()
            for thread in threads:
                thread.join(timeout=JOIN_SECONDS)

    def _acked_on(self, connection: int) -> int:
        """How many windows this server acknowledged on connection number ``connection``."""
        with self._lock:
            return sum(1 for w in self.windows if w.connection == connection and w.acked)

    def _hold(self, sock: socket.socket, until: float | None) -> None:
        """Wait (until ``until``, or until stopped), sending keep-alives if configured."""
        interval = self.faults.keepalive_interval
        while until is None or time.monotonic() < until:
            if self._stopping.is_set():
                raise _ClosedError
            step = interval if interval is not None else 0.05
            if until is not None:
                step = min(step, max(0.0, until - time.monotonic()))
            time.sleep(step)
            if interval is not None:
                sock.sendall(_ACK.pack(b"2A", 0))


def _event_id(event: dict[str, Any]) -> Any:
    """``event.id`` of a pipeline event, or the top-level ``id`` of a test event."""
    nested = event.get("event")
    return nested["id"] if isinstance(nested, dict) else event.get("id")
