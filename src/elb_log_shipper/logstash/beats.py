"""The Beats (lumberjack v2) protocol for Logstash's ``beats`` input: framing and acknowledgement.

What differs from json_lines is only how a connection frames its batches and learns that they are
confirmed; the pool, the workers, deadlines, the confirmed-offset ledger and resending are shared
(``pool.py``, ``sender.py``).

Framing (``../shared/reference/beats-protocol.md``; elastic/go-lumber ``protocol/v2``,
logstash-input-beats ``BeatsParser``): a batch is one window or more, each a ``2W count`` frame
followed by one ``2C length zlib`` frame holding the window's ``2J seq length json`` frames, seq
counting from 1 in every window (compression 0: the ``J`` frames go plain). The pipeline
builds each batch as ``J`` frames (``BEATS_FRAMES``: libbeat's ``@metadata`` added to each event
before it is serialised, the headers made by C-level iteration), so that a batch is a window and
the sender threads only compress it, which releases the GIL; a window smaller than a batch (slow
start, after a loss) is cut from it and renumbered (``split_events``).

Confirmation: Logstash answers ``2A seq``. The final ACK of a window (seq = its count) means all
its events are in Logstash's pipeline queue; lower seqs (partial ACKs, and the ``seq 0``
keep-alives Logstash sends while its pipeline is blocked) only mean "alive, still working" and
reset the stall timer. ``PIPELINED_WINDOWS`` windows may wait for their ACKs at once. A connection
is never closed to confirm: it stays in the pool across objects and warm invocations; one that
Logstash closed while idle (``client_inactivity_timeout``) is found dead by ``is_alive`` and
replaced, its unacknowledged windows (if any) resent.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from typing import NoReturn

from isal import isal_zlib

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.logstash.connection import (
    RECV_BYTES,
    Batch,
    BatchFormat,
    Connection,
    ConnectionLostError,
    Watchdog,
    cut_batch,
    wait_slice,
)

__all__ = [
    "BEATS_FRAMES",
    "BEAT_NAME",
    "METADATA",
    "PIPELINED_WINDOWS",
    "PROBE_SILENCE_MAX_SECONDS",
    "SILENCE_PROBE",
    "BeatsConnection",
    "encode_window",
    "frame_events",
    "isal_level",
    "split_events",
]

# libbeat's names: pipelines route on [@metadata][beat] and name indices after it and version.
BEAT_NAME = "elb-log-shipper"
BEAT_VERSION = "0.1.0"
# Windows written before waiting for the oldest one's ACK: libbeat's ``pipelining`` default is 2;
# two keep the socket busy across the round trip (more were faster only on a loaded machine,
# bench/README.md). A connection that breaks reads the ACKs that had arrived before it closes
# (``last_words``: Linux keeps received bytes readable after a reset), so a window Logstash
# acknowledged is not sent twice, however many were in flight.
PIPELINED_WINDOWS = 2
# An empty window (``2W`` of 0 events), written when a connection with windows in flight has
# had no traffic either way for a while (``probe_after_silence``), whatever its writer waits for:
# ACKs, or its next batch (``BeatsConnection.while_idle``). Logstash's beats input sends its
# keep-alives (``ACK 0`` after ``LOGSTASH_KEEPALIVE_SECONDS`` of its own silence) only while a
# flag is set, which every read sets and the end of every batch clears (``ConnectionHandler``,
# ``BeatsHandler`` in logstash-input-beats): a window read while the one before it was still
# being processed, pipelined, is processed with the flag cleared, so it gets no keep-alive
# however long it waits in a blocked pipeline, and the stall timeout, or Logstash's idle close,
# would resend it (duplicates). The empty window is a read that sets the flag again. Current
# Logstash answers it, after the batches before it, with ``ACK 0`` (an empty batch); older
# versions only took its size; go-lumber's server skips it.
SILENCE_PROBE = b"2W\x00\x00\x00\x00"
# Logstash's writer-idle timer: a keep-alive comes at most this long after the flag is set.
LOGSTASH_KEEPALIVE_SECONDS = 5.0
# The longest silence a connection with windows in flight lets pass before it probes, whatever
# the stall timeout. Logstash closes a connection it has neither read from nor written to for its
# ``client_inactivity_timeout`` (default 60 s), even while a window read from it waits in its
# pipeline (``ConnectionHandler`` closes on Netty's all-idle event, pending batches or not): a
# window without keep-alives must be probed before then, or Logstash resets the connection and the
# window, already in its queue, is sent again. So the silence counts from the connection's last
# traffic in either direction, not from the start of a wait: a wait may start long after the last
# byte moved, and a writer waiting for its next batch (an S3 read that stalls) waits for no ACK.
# Twice the keep-alive interval: a Logstash whose flag is set has sent one by then.
PROBE_SILENCE_MAX_SECONDS = 2 * LOGSTASH_KEEPALIVE_SECONDS
# What a breaking connection reads at most for ACKs (``last_words``), in reads of RECV_BYTES: an
# ACK is 6 bytes, so one read is plenty; the bound stops a peer that floods us.
_LAST_READS = 16

_VERSION = b"2"
_WINDOW = struct.Struct(">2sI")  # '2W', count
_COMPRESSED = struct.Struct(">2sI")  # '2C', length of the zlib stream
_JSON = struct.Struct(">2sII")  # '2J', seq, length
_ACK = struct.Struct(">2sI")  # '2A', seq
_ACK_TAG = b"2A"
# libbeat's ``@metadata``, which the pipeline adds to every event before serialising it: Logstash
# pipelines written for Beats route on [@metadata][beat], and Logstash gives no output the
# @metadata of an event, so it is never stored.
METADATA = {"beat": BEAT_NAME, "type": "_doc", "version": BEAT_VERSION}
# zlib level (index) -> ISA-L level; see isal_level.
_ISAL_LEVELS = (0, 1, 1, 2, 2, 2, 2, 3, 3, 3)


def isal_level(compression: int) -> int:
    """The ISA-L level for a zlib-style ``compression`` level 1-9.

    ISA-L has levels 0-3 and is 5x faster than zlib at the same ratio: on the shipper's ALB
    events in 100-event windows, ISA-L 2 compresses 9.2:1 at ~1.5 GB/s where zlib 3 gives 9.2:1
    at ~300 MB/s (``bench/beats_codec_bench.py``, figures in bench/README.md). So the default 3
    maps to ISA-L 2; 1-2 to ISA-L 1 (9.1:1), 7-9 to ISA-L 3 (9.3:1, 3x slower).

    >>> [isal_level(level) for level in (1, 3, 6, 9)]
    [1, 2, 2, 3]
    """
    return _ISAL_LEVELS[compression]


def probe_after_silence(stall_timeout: float) -> float:
    """How long a connection with windows in flight has no traffic either way before it writes
    ``SILENCE_PROBE``: half the stall timeout, and early enough that Logstash's keep-alive
    (``LOGSTASH_KEEPALIVE_SECONDS`` after the probe, at most) arrives a second before the
    timeout; never more than ``PROBE_SILENCE_MAX_SECONDS``, so that Logstash's inactivity close
    does not come first.

    >>> [probe_after_silence(timeout) for timeout in (120.0, 20.0, 10.0, 5.0)]
    [10.0, 10.0, 4.0, 0.0]
    """
    return max(
        0.0,
        min(
            stall_timeout / 2,
            stall_timeout - LOGSTASH_KEEPALIVE_SECONDS - 1,
            PROBE_SILENCE_MAX_SECONDS,
        ),
    )


def frame_events(lines: list[bytes]) -> bytes:
    """The events ``lines`` (serialised JSON objects) as ``J`` frames, seq 1 to ``len(lines)``:
    one window's payload, before compression. ``BEATS_FRAMES.join``.

    The headers come from ``map`` over ``struct.pack`` and one join makes the payload, so no
    Python code runs per event: this runs on the pipeline's parsing thread, in place of the
    newline join json_lines needs, and leaves the sender threads only the compression (which
    releases the GIL).

    >>> frame_events([b'{"a":1}', b'{}'])
    b'2J\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x07{"a":1}2J\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x02{}'
    """
    headers = map(_JSON.pack, itertools.repeat(b"2J"), itertools.count(1), map(len, lines))
    return b"".join(itertools.chain.from_iterable(zip(headers, lines, strict=True)))


def _holds_frames(data: bytes) -> bool:
    return data[:2] == b"2J"


BEATS_FRAMES = BatchFormat("beats", frame_events, _holds_frames, METADATA)
"""Batches of ``J`` frames numbered from 1, each event carrying libbeat's ``@metadata``."""


def encode_window(batch: Batch, compression: int) -> bytes:
    """The frames of one window holding ``batch`` (``J`` frames numbered from 1, as
    ``frame_events`` makes them): the ``W`` frame, then the ``J`` frames in one ``C`` frame, or
    plain with ``compression`` 0 (1-9: see ``isal_level``).

    >>> frames = encode_window(Batch(frame_events([b'{"a":1}', b'{}']), 2), 0)
    >>> frames[:6], frames[6:12]  # window of 2; first J frame, seq 1
    (b'2W\\x00\\x00\\x00\\x02', b'2J\\x00\\x00\\x00\\x01')
    """
    window = _WINDOW.pack(b"2W", batch.events)
    if compression == 0:
        return window + batch.data
    compressed = isal_zlib.compress(batch.data, isal_level(compression))
    return b"".join((window, _COMPRESSED.pack(b"2C", len(compressed)), compressed))


def split_events(batch: Batch, most: int) -> list[Batch]:
    """``batch`` cut into windows of at most ``most`` events, each numbered from 1 again
    (tickets: ``cut_batch``). Only a window smaller than the pipeline's batch (slow start,
    after a loss) is cut, so the loop over its events runs rarely.

    >>> parts = split_events(Batch(frame_events([b"{}", b"[]", b"{}"]), 3), 2)
    >>> [part.data for part in parts]  # doctest: +NORMALIZE_WHITESPACE
    [b'2J\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02{}2J\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x02[]',
     b'2J\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02{}']
    """
    if batch.events <= most:
        return [batch]
    return _renumbered(batch, itertools.repeat(most))


def _renumbered(batch: Batch, sizes: Iterator[int]) -> list[Batch]:
    """``batch`` cut into windows of ``next(sizes)`` events each (the last one of what is left),
    each numbered from 1 again (tickets: ``cut_batch``)."""
    data = batch.data
    view = memoryview(data)
    chunks: list[tuple[bytes, int]] = []
    start = 0
    while start < len(data):
        parts: list[bytes | memoryview] = []
        seq = 0
        most = next(sizes)
        while seq < most and start < len(data):
            tag, _, length = _JSON.unpack_from(data, start)
            if tag != b"2J":
                raise ValueError(f"a beats batch must be J frames; found {tag!r}")
            seq += 1
            body = start + _JSON.size
            parts += (_JSON.pack(b"2J", seq, length), view[body : body + length])
            start = body + length
        chunks.append((b"".join(parts), seq))
    return cut_batch(batch, chunks)


class BeatsConnection(Connection):
    """One connection to a beats input: writes windows, reads ACKs, stays open when confirmed."""

    def __init__(self, sock: socket.socket, settings: Settings) -> None:
        super().__init__(sock, settings)
        # A window's last TLS record or segment must not wait for the peer's delayed ACK (Nagle):
        # each window waits for its answer. Go, and so libbeat, set this on every connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Windows written and not yet acknowledged, oldest first: Logstash acknowledges in order.
        self._in_flight: collections.deque[Batch] = collections.deque()
        self._received = bytearray()
        self.windows_acked = 0
        self.partial_acks = 0
        # The highest partial ACK of the oldest window in flight: its events up to this one are
        # in Logstash's queue (``last_words``).
        self._head_acked = 0
        # The peer broke the protocol: nothing it sent after that counts (``last_words``).
        self._broken = False
        self.keepalives = 0
        self._probe_after = probe_after_silence(settings.stall_timeout)
        # For the silence probe: when a byte last moved either way, as far as we can tell (our
        # writes exactly; the peer's bytes no earlier than the last read that found nothing
        # unread, ``_drained_at``, as a read may find them long after they came), and whether we
        # probed since the peer last spoke.
        self._last_traffic = self._drained_at = time.monotonic()
        self._probed = False

    def write(self, batch: Batch, deadline: float | None) -> None:
        """Frame ``batch`` as one window and write it, after waiting (reading ACKs) until fewer
        than ``PIPELINED_WINDOWS`` windows are unacknowledged."""
        frames = encode_window(batch, self._settings.beats_compression)
        try:
            self._await_acks(deadline, until=PIPELINED_WINDOWS - 1)
        except ConnectionLostError:
            self._in_flight.append(batch)  # never written, resent with the others
            raise
        self._in_flight.append(batch)
        self.carried_bytes += len(frames)
        # ACKs are read when the next window waits for room, or at confirm(): reading them here
        # too would cost a system call (and a GIL hand-over) per window for nothing. A window
        # usually fits the socket buffer: one system call writes it.
        self.send_all(frames, deadline, at_once=True)
        self._last_traffic = time.monotonic()
        self._probed = False  # a read for Logstash: its keep-alive flag is set again

    def confirm(self, deadline: float | None) -> None:
        """Wait for the final ACK of every window written; the connection stays open."""
        self._await_acks(deadline, until=0)

    def take_unconfirmed(self) -> list[Batch]:
        batches = list(self._in_flight)
        self._in_flight.clear()
        return batches

    def has_unconfirmed(self) -> bool:
        return bool(self._in_flight)

    def must_confirm_before(self, batch: Batch, limit: int) -> bool:
        """Never: windows are confirmed by their ACKs, not by closing."""
        return False

    def is_alive(self) -> bool:
        """Whether an idle pooled connection is still open, without blocking. ACKs that arrived
        while it was idle are kept for the next user to count; on a connection found closed they
        are applied, and ``take_confirmed()`` hands over the windows they confirm."""
        if self.closed:
            return False
        try:
            # To the end of what arrived: Logstash closes right after a final ACK when its
            # client_inactivity_timeout strikes, and the ACK must not hide the close.
            ended = self._read_arrived()
        except OSError as error:
            # Logstash closes with a reset (SO_LINGER 0): the ACKs read before it still count.
            self.close()
            return self.dead_unless_fatal(error)
        if ended:
            self.close()  # Logstash closed it (or went away); its ACKs still count
        return not ended

    def while_idle(self, deadline: float | None) -> None:
        """Read the ACKs that arrived, and probe (``SILENCE_PROBE``) windows in flight after
        ``probe_after_silence`` without traffic: Logstash closes a connection idle for its
        ``client_inactivity_timeout`` even while a window it read waits in its pipeline, and a
        pipelined window gets no keep-alive. Confirmed windows wait in ``take_confirmed()``.
        A read and a clock reading per wait slice, only while windows are in flight."""
        if not self._in_flight or self.closed:
            return
        try:
            ended = self._read_arrived()
        except OSError as error:
            self._lost(error, "reading ACKs from")
        if ended:
            self._arrived(b"")  # raises ConnectionLostError
        self._take_acks()
        if self._in_flight:
            self._probe_if_silent(deadline, None)

    def last_words(self) -> None:
        """Before the socket closes, the ACKs that arrived confirm their windows: a write that
        failed (reset) or stalled left them unread, and Linux keeps received bytes readable
        after a reset. Without this, a window Logstash acknowledged would be resent."""
        if not self._in_flight:
            return
        if not self._broken:
            with contextlib.suppress(OSError, ValueError):
                self._read_arrived()
            # A reply that is no ACK breaks the protocol: the next connection reports it.
            with contextlib.suppress(DeliveryError):
                self._take_acks()
        if self._head_acked and self._in_flight:
            # A partial ACK: the events up to it are in Logstash's queue, so they count as
            # confirmed and only the rest of the window is resent, as libbeat does
            # (``msgRef.callback`` in outputs/logstash: ``r.slice = r.slice[n:]``).
            head = self._in_flight.popleft()
            taken, rest = _renumbered(head, iter((self._head_acked, head.events)))
            self._head_acked = 0
            self.confirmed.append(taken)
            self._in_flight.appendleft(rest)

    def heard(self, data: bytes) -> None:
        self._received += data

    # Internals.

    def _read_arrived(self) -> bool:
        """Read what has arrived into the ACK buffer, without waiting (at most ``_LAST_READS``
        reads); True when the peer has closed. Raises OSError for a failed read."""
        sock = self._sock
        sock.settimeout(0.0)
        for _ in range(_LAST_READS):
            try:
                data = sock.recv(RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._drained_at = time.monotonic()
                return False
            if not data:
                return True
            self._peer_spoke()
            self._received += data
        return False

    def _await_acks(self, deadline: float | None, until: int) -> None:
        """Read ACKs until at most ``until`` windows are unacknowledged. Any ACK, partial or
        keep-alive, resets the stall timer."""
        self._take_acks()
        if len(self._in_flight) <= until:
            return
        if self.closed:
            # Lost while it waited in the pool (``SocketPool._tend_idle``): resend its windows.
            raise ConnectionLostError(
                f"the connection to {self.peer} was lost with {len(self._in_flight)} windows "
                "unacknowledged"
            )
        # While pipelining, the ACK waited for is usually in the socket already: read it at once.
        try:
            data = self.read_now()
        except OSError as error:
            self._lost(error, "reading ACKs from")
        if data is None:
            self._drained_at = time.monotonic()
        else:
            self._arrived(data)
            if len(self._in_flight) <= until:
                return
        watchdog = Watchdog(self._sock, self._settings.stall_timeout)
        self.waiting_since = time.monotonic()
        try:
            self._read_acks(deadline, until, watchdog)
        finally:
            self.waiting_since = None

    def _read_acks(self, deadline: float | None, until: int, watchdog: Watchdog) -> None:
        """The blocking part of ``_await_acks``. Silence on the connection is answered with an
        empty window (``_probe_if_silent``)."""
        while len(self._in_flight) > until:
            self.set_timeout(wait_slice(deadline, f"waiting for {self.peer} to acknowledge"))
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                self._drained_at = time.monotonic()
                self._probe_if_silent(deadline, watchdog)
                try:
                    watchdog.check()
                except ConnectionLostError as error:
                    self.close()
                    if self.windows_acked or self.partial_acks or self.keepalives:
                        raise
                    # Not a byte since we connected: a beats input acknowledges, or sends
                    # keep-alives while its pipeline is busy, within seconds.
                    raise ConnectionLostError(
                        f"{error}; {self.peer} has sent nothing since we connected, not even a "
                        "keep-alive: if it is Logstash's tcp input, not a beats input, set "
                        f"{ENV.LOGSTASH_PROTOCOL}=json_lines (tcp:// on the command line)",
                        outage=error.outage,
                    ) from error
                continue
            except OSError as error:
                self._lost(error, "reading ACKs from")
            self._arrived(data)
            watchdog.progressed()

    def _probe_if_silent(self, deadline: float | None, watchdog: Watchdog | None) -> None:
        """Write ``SILENCE_PROBE`` when no byte moved either way for ``probe_after_silence``
        (while the peer has not answered an earlier probe, for at least
        ``LOGSTASH_KEEPALIVE_SECONDS`` after it: a Logstash that read it has sent its keep-alive
        by then, and a stall timeout under 12 s gives no ``probe_after`` to wait): six bytes,
        which the socket takes at once unless the peer has stopped reading (then the stall
        timeout decides, as for a window). The peer's kernel acknowledging them is no sign of its
        Logstash: ``watchdog`` does not count it."""
        now = time.monotonic()
        silence = now - self._last_traffic
        if silence < self._probe_after or (deadline is not None and now >= deadline):
            return
        if self._probed and silence < LOGSTASH_KEEPALIVE_SECONDS:
            return
        self.carried_bytes += len(SILENCE_PROBE)
        if watchdog is not None:
            watchdog.queue_ours()
        self.send_all(SILENCE_PROBE, deadline)
        self._last_traffic = time.monotonic()
        self._probed = True

    def _peer_spoke(self) -> None:
        """A read returned bytes: they came after the last read that found none."""
        self._last_traffic = max(self._last_traffic, self._drained_at)
        self._drained_at = time.monotonic()
        self._probed = False

    def _arrived(self, data: bytes) -> None:
        """Take what a read returned: ACKs, or the end of the connection (``b""``)."""
        if not data:
            self.close()
            raise ConnectionLostError(
                f"{self.peer} closed the connection with {len(self._in_flight)} "
                "windows unacknowledged"
            )
        self._peer_spoke()
        self._received += data
        self._take_acks()

    def _take_acks(self) -> None:
        """Apply the complete ACK frames received so far: the windows they complete become
        confirmed."""
        received = self._received
        offset = 0
        while len(received) - offset >= _ACK.size:
            tag, seq = _ACK.unpack_from(received, offset)
            if tag != _ACK_TAG:
                found = bytes(received[offset : offset + 8])
                del received[:offset]  # the ACKs before it are applied, and only once
                self._protocol_error(f"answered with bytes that are no Beats ACK ({found!r})")
            offset += _ACK.size
            if not self._in_flight:
                continue  # a keep-alive between windows
            events = self._in_flight[0].events
            if seq == events:
                self.confirmed.append(self._in_flight.popleft())
                self.windows_acked += 1
                self.made_progress = True
                self._head_acked = 0
            elif seq == 0:
                self.keepalives += 1
            elif seq < events:
                self.partial_acks += 1
                self._head_acked = max(self._head_acked, seq)
            else:  # as elastic/go-lumber's client: "invalid sequence number received"
                del received[:offset]
                self._protocol_error(f"acknowledged event {seq} of a window of {events}")
        del received[:offset]

    def _protocol_error(self, what: str) -> NoReturn:
        """Close and raise the DeliveryError of a peer that breaks the protocol: a new connection
        would meet the same peer. What it sent after the fault confirms nothing: a peer that
        acknowledges events a window does not have may say anything next."""
        self._broken = True
        self._received.clear()
        self.close()
        raise DeliveryError(
            f"{self.peer} {what}: it is not a beats input; check "
            f"{ENV.LOGSTASH_PORT} and {ENV.LOGSTASH_PROTOCOL}"
        )

    def _lost(self, error: OSError, what: str) -> NoReturn:
        fatal = self.fatal_tls_error(error)
        self.close()
        if fatal is not None:
            raise fatal from error
        raise ConnectionLostError(f"{what} {self.peer} failed: {error}") from error
