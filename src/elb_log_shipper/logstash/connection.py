"""One connection to Logstash: connect (TLS diagnosed), write with a progress watchdog, confirm.

``Connection`` holds what both protocols share; ``JsonLinesConnection`` speaks json_lines to the
tcp input: it keeps every batch written since it opened until ``confirm()`` has seen Logstash
close its side after reading ours (the package docstring says what that proves). The beats
protocol is in ``beats.py``. Nothing here retries: a broken or stalled connection raises
``ConnectionLostError`` and the sender decides what to resend where.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import select
import socket
import ssl
import struct
import termios
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn, Self

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError, DeliveryError
from elb_log_shipper.logstash.confirmed import Ticket

__all__ = [
    "JSON_LINES",
    "Address",
    "Batch",
    "BatchFormat",
    "Connection",
    "ConnectionLostError",
    "JsonLinesConnection",
    "Watchdog",
    "build_ssl_context",
    "cut_batch",
    "split_batch",
    "wait_slice",
]

# NAT gateways drop idle flows after 350 s; probing from 60 s finds a vanished peer long before.
KEEPALIVE_IDLE_SECONDS = 60
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_PROBES = 3
# How often a blocked write or close wakes up to look at progress and the deadline.
WAIT_SLICE_SECONDS = 0.1
# One TLS record: a timed-out SSL write must be retried with the same bytes, so keep it small.
TLS_WRITE_BYTES = 16 * 1024
RECV_BYTES = 64 * 1024
# After our FIN the peer sends no more window updates (RFC 9293 receivers stop advertising once
# the stream is shut), so how fast it reads the bytes it already acknowledged is invisible. We
# allow it to read what it may hold at this rate before judging it dead; slower is "not reading".
SLOWEST_LIVE_READER_BYTES_PER_SECOND = 64 * 1024
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64, follows 104 bytes of u8/u32 fields and
# the two u64 pacing rates; Linux 4.1 and later fill it.
_TCPI_BYTES_ACKED_OFFSET = 120
_TCP_INFO_BYTES = 256
# What a peer's kernel may acknowledge before its application closes a connection it refuses: up
# to its receive buffer, 128 KiB by default on Linux (tcp_rmem), twice that for other kernels and
# slow acceptors. A peer that closes after reading more is limiting bytes, not connections.
FIRST_FLIGHT_BYTES = 256 * 1024
# TLS 1.3 servers judge our client certificate after the handshake, then send a session ticket
# or an alert about one round trip later. A pool's first connection waits this long for that
# verdict before writing (a server that sends no tickets costs this once per pool).
TLS13_VERDICT_SECONDS = 0.5
# A port of another input (a beats input, as 5044 usually is) closes at our first bytes, which it
# cannot decode; when it read a small batch whole, our FIN with it, that close would pass for the
# tcp input's. Until the peer has shown it is a tcp input (InputProof), a confirmation waits this
# long, plus two round trips, after the connection's first write before our FIN (only when the
# batches were written within that time: a small object's).
PROVE_INPUT_SECONDS = 0.05
PROVE_INPUT_MAX_SECONDS = 1.0
# What shows it: this many confirmations after that wait (one slow close, a pause of the peer's,
# cannot pass for it), or one of a connection that carried this much: such an input reads one
# buffer (64 KiB at most in Netty) before it closes, and a close with our bytes unread is a reset.
PROVE_INPUT_CONFIRMATIONS = 3
PROVE_INPUT_BYTES = 256 * 1024
# struct tcp_info: tcpi_rtt, the smoothed round-trip time in microseconds, a u32.
_TCPI_RTT_OFFSET = 68
# Linux's largest default receive buffer (tcp_rmem max) is 6 MiB: a peer cannot hold more unread.
PEER_BUFFER_BYTES_CAP = 8 * 1024 * 1024
# OpenSSL 3 reports the end of the stream without close_notify (a FIN) as an error of its own
# (SSL_R_UNEXPECTED_EOF_WHILE_READING, documented as fit for control flow), so an EOF error
# without a reason is a failed read: a reset. OpenSSL 1.1 reports both without a reason, so
# there a reset that the TLS layer meets first still passes for a close.
_TLS_EOF_HAS_A_REASON = ssl.OPENSSL_VERSION_INFO >= (3, 0)


# A socket address as getaddrinfo gives it: (host, port) or, for IPv6, (host, port, flow, scope).
Address = tuple[Any, ...]


class ConnectionLostError(Exception):
    """The connection broke, or made no progress for the stall timeout; resend what it carried.

    Internal to the sink: the sender turns it into a retry, or into ``DeliveryError`` when it
    gives up, so callers never see it. ``refused``: the peer turned the connection away before
    taking anything (refused, or reset or closed during the handshake), as a receiver at its
    connection cap does.
    """

    def __init__(
        self,
        message: str,
        *,
        refused: bool = False,
        no_listener: bool = False,
        outage: bool = False,
        unresolved: bool = False,
    ) -> None:
        super().__init__(message)
        # The host name did not resolve: a typo or this machine's DNS, not Logstash being down.
        self.unresolved = unresolved
        # No connection at all (refused, timed out, the name not resolved) or a stall: what a
        # Logstash that is down or blocked gives, not a reset of a working one.
        self.outage = outage or no_listener
        self.refused = refused or no_listener
        # Refused by the peer's TCP stack (ECONNREFUSED): nothing listens on the port, as while
        # Logstash restarts. A receiver at a cap accepts, then turns the connection away.
        self.no_listener = no_listener
        # Set by the pool when the refusal came while other connections worked: a cap.
        self.capped = False


# OpenSSL reasons (``ssl.SSLError.reason``) that retrying cannot fix, with the remedy for each.
_CLIENT_CERT_REMEDY = (
    f"set {ENV.LOGSTASH_CLIENT_CERT_FILE} and {ENV.LOGSTASH_CLIENT_KEY_FILE} (--client-cert and "
    "--client-key on the command line) to a client certificate signed by a CA in the input's "
    "ssl_certificate_authorities"
)
_PLAINTEXT_REMEDY = (
    f"the port does not speak TLS: set {ENV.LOGSTASH_TLS}=false (tcp:// on the command line), "
    "or enable ssl on the input"
)
_FATAL_TLS_REASONS = {
    # TLS 1.3 servers send this after the handshake, on the first read or write.
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "it requires a client certificate: " + _CLIENT_CERT_REMEDY,
    # TLS 1.2 servers answer a missing client certificate with a bare handshake failure.
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "it may require a client certificate: " + _CLIENT_CERT_REMEDY,
    "SSLV3_ALERT_BAD_CERTIFICATE": "it rejected our client certificate: " + _CLIENT_CERT_REMEDY,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "it rejected our client certificate: " + _CLIENT_CERT_REMEDY,
    "TLSV1_ALERT_UNKNOWN_CA": "it does not trust our client certificate: " + _CLIENT_CERT_REMEDY,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "our client certificate expired: " + _CLIENT_CERT_REMEDY,
    "TLSV1_ALERT_ACCESS_DENIED": "it denied our client certificate: " + _CLIENT_CERT_REMEDY,
    # A plaintext port: only in the handshake (_PLAINTEXT_REASONS).
    "WRONG_VERSION_NUMBER": _PLAINTEXT_REMEDY,
    "PACKET_LENGTH_TOO_LONG": _PLAINTEXT_REMEDY,
    "RECORD_LAYER_FAILURE": _PLAINTEXT_REMEDY,
    "TLSV1_ALERT_PROTOCOL_VERSION": "it speaks no TLS version we accept: enable TLS 1.2 or 1.3 "
    "on the input (ssl_supported_protocols)",
    "UNSUPPORTED_PROTOCOL": "it speaks no TLS version we accept: enable TLS 1.2 or 1.3 on the "
    "input (ssl_supported_protocols)",
}
# What OpenSSL makes of bytes that are no TLS record. In the handshake, the port speaks no TLS;
# once a handshake succeeded it does, and they are a record garbled on the way, or bytes a
# middlebox (a proxy's own answer) put into the stream: a new connection may carry on.
_PLAINTEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)
# OpenSSL verification codes (X509_V_ERR_*) with their remedies; any other code: the CA.
_EXPIRED, _NOT_YET_VALID, _HOSTNAME_MISMATCH, _IP_MISMATCH = 10, 9, 62, 64
_VERIFY_REMEDIES = {
    _EXPIRED: "renew the certificate of the input (its ssl_certificate)",
    _NOT_YET_VALID: "check the clocks, or the validity dates of the input's ssl_certificate",
    _HOSTNAME_MISMATCH: f"set {ENV.LOGSTASH_HOST} (the host of --to on the command line) to a "
    "name the certificate lists (or reissue the certificate for this name)",
    _IP_MISMATCH: f"set {ENV.LOGSTASH_HOST} (the host of --to on the command line) to a name the "
    "certificate lists (or reissue the certificate for this address)",
}


# Python 3.13's create_default_context verifies strictly (VERIFY_X509_STRICT: every certificate
# in the chain must follow RFC 5280's profile) and takes any CA of the CA file as a trust anchor,
# an intermediate too (VERIFY_X509_PARTIAL_CHAIN); earlier Pythons do neither. build_ssl_context
# sets both on every Python, so that the command on 3.11 accepts the certificates the function
# (python3.13) accepts, no more: a certificate tried with the command does not fail once deployed.
_VERIFY_FLAGS = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
# The codes strict mode adds (X509_V_ERR_INVALID_CA to X509_V_ERR_EC_KEY_EXPLICIT_PARAMS in
# OpenSSL 3), with the reissue that fixes the common ones. A CA reissued from its own key and
# subject keeps the input's certificate valid: only the CA files change.
_STRICT_CODES = range(79, 95)
_REISSUE_CA = "reissue the CA from its own key and subject (openssl req -x509 -key ca.key) with"
_STRICT_REMEDIES = {
    92: f"{_REISSUE_CA} -addext keyUsage=critical,keyCertSign,cRLSign",
    89: f"{_REISSUE_CA} -addext basicConstraints=critical,CA:TRUE",
    86: f"{_REISSUE_CA} -addext subjectKeyIdentifier=hash",
    85: "reissue the input's ssl_certificate with authorityKeyIdentifier=keyid,issuer in the "
    "extensions of openssl x509 -req",
}
_STRICT_REMEDY = "reissue the input's ssl_certificate and its CA as RFC 5280 asks"
_STRICT_WHY = (
    ", as the function's verification requires on every Python (docs/deploy.md, "
    '"TLS certificates")'
)


def tls_failure(error: ssl.SSLError, peer: str, *, handshake: bool = False) -> DeliveryError | None:
    """The DeliveryError, naming the setting to change, for a TLS failure that retrying cannot
    fix; None for one that may be transient (a reset or a close mid-handshake, a garbled record
    after it). ``handshake``: ``error`` ended the handshake, so bytes that are no TLS record
    mean a plaintext port; after it, they do not."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code in _STRICT_CODES:
            remedy = _STRICT_REMEDIES.get(code, _STRICT_REMEDY) + _STRICT_WHY
        else:
            remedy = _VERIFY_REMEDIES.get(
                code,
                f"set {ENV.LOGSTASH_CA_FILE} (--ca-file on the command line) to the CA that "
                "signed it",
            )
        return DeliveryError(
            f"the TLS certificate of Logstash at {peer} failed verification "
            f"({error.verify_message}): {remedy}"
        )
    reason = error.reason or ""
    fatal = _FATAL_TLS_REASONS.get(reason)
    if fatal is None or (reason in _PLAINTEXT_REASONS and not handshake):
        return None
    return DeliveryError(f"Logstash at {peer} ended the TLS session ({error.reason}): {fatal}")


@dataclass(frozen=True, slots=True)
class BatchFormat:
    """How a sink takes its batches, which the pipeline builds: ``metadata``, when set, is added
    to every event (as ``@metadata``) before it is serialised, and ``join`` makes one batch of
    the serialised events, in order. ``holds`` tells a batch of this format (a cheap check of
    its first or last bytes, against a caller that mixes formats up).

    >>> JSON_LINES.join([b'{"a":1}', b'{"b":2}'])
    b'{"a":1}\\n{"b":2}\\n'
    """

    name: str
    join: Callable[[list[bytes]], bytes]
    holds: Callable[[bytes], bool]
    metadata: dict[str, Any] | None = None


def _json_lines(lines: list[bytes]) -> bytes:
    # A newline after every line in one join (a join and a concatenation would copy twice).
    lines.append(b"")
    try:
        return b"\n".join(lines)
    finally:
        lines.pop()


JSON_LINES = BatchFormat("json_lines", _json_lines, lambda data: data.endswith(b"\n"))
"""One JSON object per line, each ending in a newline: Logstash's ``json_lines`` codec."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of events in its sink's ``BatchFormat`` (complete JSON lines, each ending in
    ``\\n``, or beats ``J`` frames), how many events it holds, and the ticket
    that confirming them redeems (None for batches nobody tracks); ``line_offsets``, when known,
    the offset in the source object of each event's line, so that a part cut from the batch can
    be confirmed up to its own last line (``cut_batch``)."""

    data: bytes
    events: int
    ticket: Ticket | None = None
    line_offsets: list[int] | None = None

    def confirmed(self) -> None:
        """Tell the sender that queued this batch (whichever sender confirmed it)."""
        if self.ticket is not None:
            self.ticket.confirm()


def split_batch(batch: Batch, limit: int) -> list[Batch]:
    """``batch`` cut at line boundaries into parts of at most ``limit`` bytes (a longer single
    line makes a part of its own); tickets as ``cut_batch`` gives them.

    >>> [part.data for part in split_batch(Batch(b"a\\nbb\\ncc\\n", 3), 5)]
    [b'a\\nbb\\n', b'cc\\n']
    """
    data = batch.data
    chunks: list[tuple[bytes, int]] = []
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + limit)
        if end < 0:
            end = data.find(b"\n", start)
        chunk = data[start : end + 1]
        chunks.append((chunk, chunk.count(b"\n")))
        start = end + 1
    return cut_batch(batch, chunks)


def cut_batch(batch: Batch, chunks: list[tuple[bytes, int]]) -> list[Batch]:
    """The parts of ``batch`` whose data and event counts are ``chunks``, in order.

    With ``line_offsets`` known, each part gets a ticket of its own that confirms up to the line
    after its last (``Ticket.divide``), so progress moves part by part; without, the parts share
    the batch's ticket, which counts once all are confirmed.

    >>> from elb_log_shipper.logstash.confirmed import ConfirmedProgress
    >>> progress = ConfirmedProgress()
    >>> batch = Batch(b"a\\nb\\nc\\n", 3, progress.issue(6), [0, 2, 4])
    >>> first, last = cut_batch(batch, [(b"a\\nb\\n", 2), (b"c\\n", 1)])
    >>> first.line_offsets, last.line_offsets
    ([0, 2], [4])
    >>> first.confirmed(); progress.offset  # up to the line after "b", before "c" is confirmed
    4
    """
    ticket, offsets = batch.ticket, batch.line_offsets
    if len(chunks) == 1:
        return [batch]
    if ticket is None or offsets is None or ticket.end_offset is None:
        if ticket is not None:
            ticket.split(len(chunks))
        return [Batch(data, events, ticket) for data, events in chunks]
    firsts = list(itertools.accumulate(events for _, events in chunks))
    tickets = ticket.divide([offsets[first] for first in firsts[:-1]])
    return [
        Batch(data, events, part_ticket, offsets[first - events : first])
        for (data, events), part_ticket, first in zip(chunks, tickets, firsts, strict=True)
    ]


def _unloadable(files: str, error: OSError, what: str) -> ConfigurationError:
    """The sentence for TLS ``files`` that could not be loaded, with what they must be."""
    if isinstance(error, ssl.SSLError) and error.reason == "KEY_VALUES_MISMATCH":
        why = "the key is not the certificate's key"
    elif isinstance(error, PermissionError):
        why = f"{error.filename or 'a file'} is not readable by this user: check its permissions"
    else:
        why = f"{error}; check it is {what}"
    return ConfigurationError(f"cannot load {files}: {why}")


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: system trust store or ``ca_file``, hostname checked, the chain
    verified as strictly as Python 3.13 does on every Python (``_VERIFY_FLAGS``), optional client
    certificate (Logstash ``ssl_client_authentication``).

    Raises ConfigurationError when a certificate or key file cannot be loaded.
    """
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as error:
        raise _unloadable(
            f"{ENV.LOGSTASH_CA_FILE}={settings.ca_file} (--ca-file)", error, "a PEM CA bundle"
        ) from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= _VERIFY_FLAGS
    if settings.client_cert_file and settings.client_key_file:
        try:
            context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
        except (ssl.SSLError, OSError) as error:
            raise _unloadable(
                f"{ENV.LOGSTASH_CLIENT_CERT_FILE}={settings.client_cert_file} with "
                f"{ENV.LOGSTASH_CLIENT_KEY_FILE}={settings.client_key_file} (--client-cert, "
                "--client-key)",
                error,
                "a PEM certificate and its own private key, not encrypted",
            ) from error
    # create_default_context already sets both; stated because hostname checking is a requirement.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Watchdog:
    """Decides when a connection is dead: nothing moved for ``stall_timeout`` seconds.

    Progress is any byte the kernel accepted from us, or our send queue shrinking (the peer
    acknowledged bytes, so it read some): never the total time a large write takes.

    The send queue is read (an ``ioctl``) only by ``check``, after a blocking call timed out: a
    write or read that completes at once, the common case, costs no system call here (each one
    hands the GIL to the parsing thread and waits to get it back). So shrinking is seen between
    two checks, a wait slice apart.
    """

    def __init__(self, sock: socket.socket, stall_timeout: float) -> None:
        self._sock = sock
        self._stall_timeout = stall_timeout
        self._last_progress = time.monotonic()
        self._last_queued: int | None = None
        # Bytes of ours whose acknowledgement proves nothing (a beats silence probe): the send
        # queue shrinking counts only below this level, the queue before they were written.
        self._floor: int | None = None

    @property
    def last_progress(self) -> float:
        """When the peer last took bytes of ours, as far as ``check`` has seen."""
        return self._last_progress

    def progressed(self) -> None:
        self._last_progress = time.monotonic()
        self._last_queued = None
        self._floor = None

    def queue_ours(self) -> None:
        """Bytes about to be written are no progress when the peer's kernel acknowledges them:
        until ``progressed``, the send queue shrinking counts only below its level now."""
        queued = _send_queue_bytes(self._sock)
        if queued is not None:
            self._floor = queued if self._floor is None else min(self._floor, queued)

    def check(self, allowance: float = 0.0) -> None:
        """Raise ConnectionLostError when stalled for longer than the timeout plus ``allowance``."""
        now = time.monotonic()
        queued = _send_queue_bytes(self._sock)
        if (
            queued is not None
            and self._last_queued is not None
            and queued < self._last_queued
            and (self._floor is None or queued < self._floor)
        ):
            self._last_progress = now
        self._last_queued = queued
        if now - self._last_progress > self._stall_timeout + allowance:
            raise ConnectionLostError(
                f"no progress for {self._stall_timeout + allowance:.1f}s "
                f"({queued if queued is not None else '?'} bytes still queued)",
                outage=True,
            )


def _send_queue_bytes(sock: socket.socket) -> int | None:
    """Bytes in our send queue not yet acknowledged by the peer (Linux SIOCOUTQ), or None."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    value: int = struct.unpack("i", raw)[0]
    return value


def _data_unacknowledged_after_fin(sock: socket.socket) -> int | None:
    """Bytes of data in our send queue not yet acknowledged, once our FIN is queued (after
    ``shutdown(SHUT_WR)``), or None. SIOCOUTQ counts the FIN too (it takes a sequence number),
    and a peer that closes as soon as it has read our last byte (a TLS server does on our
    close_notify) can have its FIN here before its ACK of ours: 1 alone is that FIN. ACKs are
    cumulative, so any byte of data unacknowledged leaves the FIN unacknowledged as well.
    """
    queued = _send_queue_bytes(sock)
    return None if queued is None else max(0, queued - 1)


def _acked_bytes(sock: socket.socket) -> int | None:
    """Bytes of ours the peer acknowledged since the connection opened (Linux tcpi_bytes_acked),
    or None where the kernel does not say."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    if len(raw) < _TCPI_BYTES_ACKED_OFFSET + 8:
        return None
    acked: int = struct.unpack_from("Q", raw, _TCPI_BYTES_ACKED_OFFSET)[0]
    return acked


def _round_trip_seconds(sock: socket.socket) -> float:
    """The kernel's smoothed round-trip time to the peer (Linux tcpi_rtt), or 0."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return 0.0
    if len(raw) < _TCPI_RTT_OFFSET + 4:
        return 0.0
    micros: int = struct.unpack_from("I", raw, _TCPI_RTT_OFFSET)[0]
    return micros / 1_000_000


@dataclass(slots=True)
class InputProof:
    """How far a pool's peer has shown that it is a tcp input (JsonLinesConnection's
    ``confirm``), shared by the pool's connections. A peer that closes or resets a connection
    before its confirmation starts it over. (Threads may race on the count: at worst one wait
    more.)"""

    confirmations: int = 0

    @property
    def needed(self) -> bool:
        return self.confirmations < PROVE_INPUT_CONFIRMATIONS

    def confirmed(self, carried_bytes: int, *, waited: bool) -> None:
        if carried_bytes >= PROVE_INPUT_BYTES:
            self.confirmations = PROVE_INPUT_CONFIRMATIONS
        elif waited:
            self.confirmations += 1

    def doubted(self) -> None:
        self.confirmations = 0


def wait_slice(deadline: float | None, what: str) -> float:
    """How long the next blocking call may wait; DeliveryError once the deadline has passed."""
    if deadline is None:
        return WAIT_SLICE_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeliveryError(f"the deadline passed while {what}; the object will be retried")
    return min(WAIT_SLICE_SECONDS, left)


class Connection:
    """A TCP or TLS connection to Logstash and the batches it carries unconfirmed: what both
    protocols share (opening, TLS diagnosis, writing under a watchdog, closing). Subclasses
    frame the batches and confirm them their own way.

    Not thread-safe: one worker owns it at a time (the pool hands it over).
    """

    def __init__(self, sock: socket.socket, settings: Settings) -> None:
        self._sock = sock
        # A plain TCP socket's descriptor, to write and read at once with os.write and os.read
        # (``send_all(at_once=True)``, ``read_now``): with a timeout set, the socket object polls
        # before every call, a second system call and a second hand-over of the GIL, which the
        # parsing thread pays for. The descriptor is non-blocking (a Python socket with a timeout
        # is, and ours never has none), so a call that would wait raises BlockingIOError and the
        # timed path takes over. None over TLS.
        self._fd = None if isinstance(sock, ssl.SSLSocket) else sock.fileno()
        self._settings = settings
        self.peer = f"{settings.host}:{settings.port}"
        # The host's addresses that ``open`` failed to connect to before this one worked.
        self.unreachable: list[Address] = []
        # Confirmed and not yet counted by the worker (see take_confirmed).
        self.confirmed: list[Batch] = []
        # Whether anything was confirmed on it while it stayed open (beats): a loss after that is
        # one dropped connection of a live peer, not a peer that is down.
        self.made_progress = False
        self.opened_at = time.monotonic()
        # What the peer had acknowledged after the handshake, and when the socket closed: a
        # connection turned away at a connection cap breaks with no more than the first flight
        # acknowledged (the kernel acknowledges what arrives before the close).
        self._acked_at_open = _acked_bytes(sock)
        self.acked_when_closed: int | None = None
        # Bytes written since opening, confirmed or not: the sender rotates on this.
        self.carried_bytes = 0
        # How many times the pool lent it out: 1 means its first user opened it.
        self.times_lent = 0
        self.closed = False
        self.interrupted = False
        # When it began waiting for the peer to confirm what it carries (beats: an ACK), while
        # it waits; read by other threads for progress displays.
        self.waiting_since: float | None = None
        # While a write (or json_lines' confirmation) waits for the peer to read: when it last
        # took bytes of ours. Read by other threads for progress displays.
        self.unread_since: float | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        deadline: float | None,
        context: ssl.SSLContext | None,
        *,
        alone: bool = True,
        await_verdict: bool = True,
        avoid: Collection[Address] = (),
    ) -> Self:
        """Connect (and handshake) within ``connect_timeout``, and never past ``deadline``.

        A host with several addresses (A and AAAA records, several Logstash nodes) has them
        tried in the resolver's order, those in ``avoid`` (which failed lately: ``unreachable``
        of an earlier connection) last, each within its share of the time left, so that an
        unreachable one neither costs every connection the whole timeout nor keeps the others
        from being tried.
        ``alone``: no other connection of the pool is open, so a TLS handshake that the peer
        leaves unanswered or closes cannot be a connection cap: it is a plaintext port.
        ``await_verdict``: after a TLS 1.3 handshake, wait for the server's verdict on our client
        certificate before returning (``_await_tls13_verdict``); a pool asks for it until one
        connection has opened, as the verdict is the same for all.

        Raises ConnectionLostError for a failure worth retrying (refused, timed out, reset;
        ``refused`` set when the peer turned the connection away) and DeliveryError for one
        that retrying cannot fix (the certificate does not verify, a plaintext port).
        """
        host = settings.require_destination().host
        assert host  # require_destination refuses no host (SocketPool has already asked)
        peer = f"{host}:{settings.port}"
        sock, unreachable = _connect_any(
            host, settings.port, _connect_budget(settings, deadline), avoid
        )
        _set_keepalive(sock)
        if context is not None:
            try:
                timeout = _connect_budget(settings, deadline)
            except DeliveryError:
                sock.close()
                raise
            sock.settimeout(timeout)
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLError as error:
                sock.close()
                raise tls_failure(error, peer, handshake=True) or ConnectionLostError(
                    f"TLS handshake with {peer} broke: {error}", refused=True
                ) from error
            except TimeoutError as error:
                sock.close()
                # Unanswered for the whole connect timeout, it is a plaintext port; cut short by
                # the deadline, it may be a busy TLS input: a retry (or the deadline) decides.
                if alone and timeout >= settings.connect_timeout:
                    raise DeliveryError(
                        f"{peer} accepted the connection but did not answer the TLS handshake "
                        f"in {timeout:.1f}s, as a plaintext input does: set {ENV.LOGSTASH_TLS}"
                        "=false (tcp:// on the command line), or enable ssl on the input"
                    ) from error
                raise ConnectionLostError(
                    f"TLS handshake with {peer} timed out after {timeout:.1f}s", outage=True
                ) from error
            except OSError as error:
                sock.close()
                raise ConnectionLostError(
                    f"TLS handshake with {peer} broke: {error}", refused=True
                ) from error
            if await_verdict and sock.version() == "TLSv1.3":
                _await_tls13_verdict(sock, peer, min(timeout, TLS13_VERDICT_SECONDS))
        conn = cls(sock, settings)
        conn.unreachable = unreachable
        return conn

    # What each protocol defines.

    def write(self, batch: Batch, deadline: float | None) -> None:
        """Write one batch completely, or raise; the batch counts as unconfirmed either way.
        Batches confirmed meanwhile (beats: acknowledged while waiting for room) wait in
        ``take_confirmed()``, even when this raises.

        Raises ConnectionLostError when the socket breaks or stalls (the connection must then be
        discarded: it may hold half a frame), DeliveryError when the deadline passes or the peer
        answers in a way no retry can fix.
        """
        raise NotImplementedError

    def confirm(self, deadline: float | None) -> None:
        """Confirm everything written so far (``take_confirmed()`` hands the batches over);
        ``closed`` then tells whether the connection can carry more (json_lines confirms by
        closing).

        Raises ConnectionLostError when the confirmation fails (resend what is unconfirmed),
        DeliveryError when the deadline passes.
        """
        raise NotImplementedError

    def take_unconfirmed(self) -> list[Batch]:
        """Hand over the unconfirmed batches (for resending elsewhere) and forget them."""
        raise NotImplementedError

    def take_confirmed(self) -> list[Batch]:
        """Hand over the batches confirmed since the last call, in confirmation order."""
        batches, self.confirmed = self.confirmed, []
        return batches

    def has_unconfirmed(self) -> bool:
        """Whether batches written on it still wait for their confirmation."""
        raise NotImplementedError

    def must_confirm_before(self, batch: Batch, limit: int) -> bool:
        """Whether to confirm before writing ``batch``, ``limit`` being the pool's
        ``confirm_within``."""
        raise NotImplementedError

    def is_alive(self) -> bool:
        """Whether a pooled connection can be reused, without blocking."""
        raise NotImplementedError

    def while_idle(self, deadline: float | None) -> None:
        """Called by the connection's writer about every wait slice while it has nothing to
        write (it waits for its next batch): beats reads the ACKs that arrived and probes
        windows in flight after a silence (``BeatsConnection.while_idle``); nothing for
        json_lines, which holds nothing open to the peer's timers. Raises as ``write`` does."""

    # Shared machinery.

    def send_all(self, data: bytes, deadline: float | None, *, at_once: bool = False) -> None:
        """Write ``data`` completely under the stall watchdog; on failure close and raise
        ConnectionLostError, or DeliveryError for the deadline or a fatal TLS alert.

        ``at_once``: over plain TCP, first write what the socket takes in one ``os.write`` (no
        poll before it), and wait only for the rest (beats: a window usually fits)."""
        view = memoryview(data)
        chunk = TLS_WRITE_BYTES if isinstance(self._sock, ssl.SSLSocket) else len(view)
        watchdog = Watchdog(self._sock, self._settings.stall_timeout)
        sent = 0
        try:
            if at_once and self._fd is not None and not self.closed:
                wait_slice(deadline, f"writing to {self.peer}")
                with contextlib.suppress(BlockingIOError):
                    sent = os.write(self._fd, view)
            while sent < len(view):
                self.set_timeout(wait_slice(deadline, f"writing to {self.peer}"))
                try:
                    sent += self._sock.send(view[sent : sent + chunk])
                except TimeoutError:
                    watchdog.check()
                    self.unread_since = watchdog.last_progress
                    continue
                watchdog.progressed()
        except OSError as error:
            fatal = self.fatal_tls_error(error)
            self.close()
            if fatal is not None:
                raise fatal from error
            raise ConnectionLostError(f"writing to {self.peer} failed: {error}") from error
        except (ConnectionLostError, DeliveryError):
            self.close()
            raise
        finally:
            self.unread_since = None

    def read_now(self) -> bytes | None:
        """What the peer sent and we have not read (``b""``: it closed), without waiting: None
        when nothing is there, or over TLS (where only a timed read reads). Raises OSError."""
        if self._fd is None or self.closed:
            return None
        try:
            return os.read(self._fd, RECV_BYTES)
        except BlockingIOError:
            return None

    def set_timeout(self, seconds: float) -> None:
        """Let the next blocking call wait ``seconds``. Only a change reaches the socket:
        ``settimeout`` is a system call or two that hand the GIL over, once per write or read."""
        if self._sock.gettimeout() != seconds:
            self._sock.settimeout(seconds)

    def interrupt(self) -> None:
        """Wake a blocked write or read from another thread; the connection is then dead.

        shutdown() rather than close(): closing would free the descriptor number for reuse while
        the owning thread may still pass it to a system call.
        """
        self.interrupted = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket at once; unconfirmed batches stay for the caller to take."""
        if not self.closed:
            self.closed = True
            self.last_words()
            acked = _acked_bytes(self._sock)
            if acked is not None and self._acked_at_open is not None:
                self.acked_when_closed = acked - self._acked_at_open
            with contextlib.suppress(OSError):
                self._sock.close()

    def last_words(self) -> None:
        """Called by ``close`` just before the socket closes: take what the peer sent that still
        counts. Nothing for json_lines (Logstash's tcp input never writes); beats reads the ACKs
        that arrived."""

    def heard(self, data: bytes) -> None:
        """Keep ``data``, bytes the peer sent that a read made for another purpose returned (a
        look for a TLS alert). Nothing for json_lines; beats keeps them as ACKs."""

    def turned_away(self) -> bool:
        """Whether the connection, closed, looks refused at a connection cap: lent once and
        broken before the peer acknowledged more than a first flight of our bytes."""
        acked = self.acked_when_closed
        return self.times_lent == 1 and acked is not None and acked <= FIRST_FLIGHT_BYTES

    def dead_unless_fatal(self, error: OSError) -> bool:
        """For ``is_alive``: False (the connection is dead), or the DeliveryError of a TLS alert
        in ``error`` that no new connection would avoid (a rejected client certificate)."""
        if isinstance(error, ssl.SSLError):
            fatal = tls_failure(error, self.peer)
            if fatal is not None:
                raise fatal from error
        return False

    def fatal_tls_error(self, error: OSError) -> DeliveryError | None:
        """The DeliveryError for a TLS alert that retrying cannot fix, found in ``error`` or
        waiting unread (a TLS 1.3 server rejects a client certificate after the handshake, so a
        write fails with a reset before we read its alert)."""
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket):
            return None
        if isinstance(error, ssl.SSLError):
            fatal = tls_failure(error, self.peer)
            if fatal is not None:
                return fatal
        with contextlib.suppress(OSError):
            sock.settimeout(0.0)
        try:
            data = sock.recv(RECV_BYTES)
        except ssl.SSLError as alert:
            return tls_failure(alert, self.peer)
        except OSError:
            return None
        self.heard(data)
        return None


class JsonLinesConnection(Connection):
    """json_lines for Logstash's tcp input: batches go out as they are and are confirmed by a
    graceful close (the package docstring says what that proves)."""

    def __init__(self, sock: socket.socket, settings: Settings) -> None:
        super().__init__(sock, settings)
        self.unconfirmed: list[Batch] = []
        # The pool's (SocketPool.acquire sets it); a connection of its own proves nothing.
        self.input_proof = InputProof()
        self._first_write_at: float | None = None

    def write(self, batch: Batch, deadline: float | None) -> None:
        self.unconfirmed.append(batch)
        if self._first_write_at is None:
            self._first_write_at = time.monotonic()
        self.carried_bytes += len(batch.data)
        try:
            self.send_all(batch.data, deadline)
        except ConnectionLostError:
            self.input_proof.doubted()
            raise

    def has_unconfirmed(self) -> bool:
        return bool(self.unconfirmed)

    def must_confirm_before(self, batch: Batch, limit: int) -> bool:
        """Whether ``batch`` would make it carry more than ``limit`` bytes unconfirmed."""
        return bool(self.carried_bytes) and self.carried_bytes + len(batch.data) > limit

    def confirm(self, deadline: float | None) -> None:
        """Close gracefully; the batches Logstash has now read become confirmed.

        Half-closes (TLS close_notify, then FIN), then reads until Logstash closes its side,
        which its tcp input does only after reading everything up to our FIN. Raises
        ConnectionLostError when the peer resets, closed before our FIN, stalls, or closes with
        our bytes unacknowledged; DeliveryError when the deadline passes.
        """
        proving = self.input_proof.needed
        try:
            if proving:
                self._give_time_to_close_early(deadline)
            if self._peer_has_closed():
                raise ConnectionLostError(f"{self.peer} closed the connection before we finished")
            self._half_close()
            self._read_until_eof(deadline)
            if self.interrupted:
                raise ConnectionLostError("delivery was stopped")
            queued = _data_unacknowledged_after_fin(self._sock)
            if queued:
                raise ConnectionLostError(
                    f"{self.peer} closed with {queued} of our bytes unacknowledged"
                )
        except OSError as error:
            fatal = self.fatal_tls_error(error)
            self.close()
            if fatal is not None:
                raise fatal from error
            self.input_proof.doubted()
            raise ConnectionLostError(f"closing {self.peer} failed: {error}") from error
        except ConnectionLostError:
            self.close()
            if not self.interrupted:
                self.input_proof.doubted()
            raise
        except DeliveryError:
            self.close()
            raise
        finally:
            self.unread_since = None  # set while the peer has not read (``_read_until_eof``)
        self.close()
        self.input_proof.confirmed(self.carried_bytes, waited=proving)
        self.confirmed += self.take_unconfirmed()

    def _give_time_to_close_early(self, deadline: float | None) -> None:
        """Before the FIN, while the pool's peer has not shown it is a tcp input (InputProof):
        wait until ``PROVE_INPUT_SECONDS`` and two round trips have passed since the first
        write. Raises ConnectionLostError when the peer closes or resets meanwhile (or delivery
        is stopped), DeliveryError when it answers or the deadline passes.

        A tcp input closes only after reading our FIN; a beats input closes at its first byte.
        A batch it read whole, our FIN with it, would end in a close like the tcp input's, so the
        FIN waits until such a peer would have closed.
        """
        if self._first_write_at is None:
            return
        grace = PROVE_INPUT_SECONDS + 2 * _round_trip_seconds(self._sock)
        until = self._first_write_at + min(grace, PROVE_INPUT_MAX_SECONDS)
        while (left := until - time.monotonic()) > 0:
            self.set_timeout(min(left, wait_slice(deadline, f"waiting for {self.peer}")))
            try:
                data = self._receive()
            except (TimeoutError, ssl.SSLWantReadError):
                continue  # nothing, or TLS records without data (a session ticket)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            if self.interrupted:
                raise ConnectionLostError("delivery was stopped")
            if data:
                self._not_a_tcp_input(data)
            raise ConnectionLostError(f"{self.peer} closed the connection before we finished")

    def is_alive(self) -> bool:
        """Whether a pooled connection can be reused, without blocking.

        Logstash never writes, so readable means closed, reset, or (TLS) protocol records such as
        session tickets, which the TLS layer consumes here.
        """
        if self.closed:
            return False
        sock = self._sock
        timeout = sock.gettimeout()
        # Non-blocking: with a timeout set, CPython first waits up to that timeout for data.
        sock.settimeout(0.0)
        try:
            try:
                pending = socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            if not pending or not isinstance(sock, ssl.SSLSocket):
                return False
            try:
                sock.recv(RECV_BYTES)
            except ssl.SSLWantReadError:
                return True  # only TLS records without application data
            return False  # EOF, or bytes Logstash never sends
        except OSError as error:
            return self.dead_unless_fatal(error)
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)

    def take_unconfirmed(self) -> list[Batch]:
        """Hand over the unconfirmed batches (for resending elsewhere) and forget them."""
        batches, self.unconfirmed = self.unconfirmed, []
        return batches

    def _peer_has_closed(self) -> bool:
        sock = self._sock
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        finally:
            sock.settimeout(timeout)

    def _half_close(self) -> None:
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket):
            # close_notify tells Logstash's SslHandler the stream ended on purpose. Non-blocking:
            # unwrap() would otherwise wait for Logstash's own close_notify, which it may never
            # send. The alert then goes out if the send buffer has room; if not, the FIN alone
            # still ends the stream after every complete record we wrote.
            sock.settimeout(0.0)
            # SSLEOFError: unwrap() sent our close_notify and then found Logstash's FIN without
            # a close_notify of its own (on loopback it can answer that fast); the close is
            # judged below like any other.
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError):
                sock.unwrap()
        # The plain socket's shutdown: SSLSocket.shutdown() would drop the TLS layer we still
        # need to read Logstash's alerts (a rejected client certificate arrives that way).
        socket.socket.shutdown(sock, socket.SHUT_WR)

    def _read_until_eof(self, deadline: float | None) -> None:
        watchdog = Watchdog(self._sock, self._settings.stall_timeout)
        unread_allowance = (
            min(self.carried_bytes, PEER_BUFFER_BYTES_CAP) / SLOWEST_LIVE_READER_BYTES_PER_SECOND
        )
        tls_closed = False
        while True:
            self.set_timeout(wait_slice(deadline, f"waiting for {self.peer} to read"))
            try:
                data = self._receive(tls_closed=tls_closed)
            except TimeoutError:
                queued = _data_unacknowledged_after_fin(self._sock)
                # While our queue holds data the peer's window updates show its reading; once
                # all is acknowledged, give it time to read what it holds.
                watchdog.check(unread_allowance if not queued else 0.0)
                self.unread_since = watchdog.last_progress
                continue
            except ssl.SSLWantReadError:
                watchdog.progressed()  # TLS records without data (a session ticket): alive
                continue
            except ssl.SSLZeroReturnError:
                # Logstash's close_notify says that it closes, not that it read everything: a
                # channel closed early (a pipeline stopping) sends it too, and then the kernel
                # resets for our unread bytes, right behind it. The TCP close decides.
                tls_closed = True
                watchdog.progressed()
                continue
            except ssl.SSLEOFError:
                # A FIN without close_notify (peers often skip it when they close): still a
                # close, not a reset. A peer that closes with our bytes unread makes its kernel
                # send a reset (ConnectionResetError) instead, and unacknowledged bytes are
                # checked after this returns.
                return
            if not data:
                return
            self._not_a_tcp_input(data)

    def _not_a_tcp_input(self, data: bytes) -> NoReturn:
        # Logstash's tcp input never writes: a peer that answers is another server (an HTTP
        # server's 400, a beats input's ACK), which may still close gracefully after reading
        # our bytes, and must not pass for a confirmation. Retrying cannot help.
        self.close()
        raise DeliveryError(
            f"{self.peer} answered with data ({bytes(data[:40])!r}), which Logstash's tcp "
            "input never sends: it is not a tcp input; check "
            f"{ENV.LOGSTASH_PORT} and {ENV.LOGSTASH_PROTOCOL} (on the command line, --to)"
        )

    def _receive(self, *, tls_closed: bool = False) -> bytes:
        """What the peer sends next (``b""``: it closed), waiting up to the socket's timeout.

        Over TLS the raw socket is asked first, and the TLS layer then reads only the records
        already there, without waiting: CPython's ssl module reports a reset as a bare EOF (its
        SSL_read_ex fails alike for both), which would pass for the close that confirms, so the
        TLS layer must never be the one to meet the end of the stream. The raw socket raises
        ConnectionResetError for a reset and gives ``b""`` for a FIN.

        A reset that arrives behind those records (a peer that sends one and resets at once)
        still meets the TLS layer, which consumes it: afterwards the socket shows nothing of it
        (no SO_ERROR, a peek gives ``b""``), so only the TLS layer's error tells. Python 3.13
        raises ConnectionResetError; before it, SSLEOFError without a reason, raised here as
        ConnectionLostError (on OpenSSL 3, which names the EOF of a FIN).

        ``tls_closed``: the peer's close_notify was read; only the raw socket is read after it.
        """
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket) or sock.pending():
            return sock.recv(RECV_BYTES)
        if tls_closed:
            return socket.socket.recv(sock, RECV_BYTES)
        if not socket.socket.recv(sock, 1, socket.MSG_PEEK):
            return b""
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        # recv() would return b"" for an SSLEOFError; its reason tells a FIN from a reset.
        sock.suppress_ragged_eofs = False  # type: ignore[attr-defined]  # typeshed omits it
        try:
            return sock.recv(RECV_BYTES)  # SSLWantReadError once the records are read
        except ssl.SSLEOFError as error:
            if error.reason is None and _TLS_EOF_HAS_A_REASON:
                raise ConnectionLostError(
                    f"{self.peer} reset the connection while we waited for its close ({error})"
                ) from error
            raise
        finally:
            sock.suppress_ragged_eofs = True  # type: ignore[attr-defined]
            sock.settimeout(timeout)


def _await_tls13_verdict(sock: ssl.SSLSocket, peer: str, timeout: float) -> None:
    """Wait up to ``timeout`` for a TLS 1.3 server's verdict on our client certificate: its
    session ticket (accepted) or its alert (rejected, raised as the DeliveryError naming the
    setting). Writing before the verdict races it: the server's reset for our unread bytes can
    overtake its alert, which is then lost and only the next connection learns why.

    Silence for ``timeout`` counts as accepted (a server that issues no tickets); a close counts
    as a turned-away connection. Closes the socket before raising.
    """
    end = time.monotonic() + timeout
    previous = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        while True:
            try:
                data = sock.recv(RECV_BYTES)
            except ssl.SSLWantReadError:
                # Nothing, or records without application data, such as the ticket.
                session = sock.session
                if session is not None and session.has_ticket:
                    break
                left = end - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                continue
            if data:  # neither protocol's server speaks first
                raise ConnectionLostError(f"{peer} sent data before any request")
            raise ConnectionLostError(
                f"{peer} closed the connection after the TLS handshake", refused=True
            )
    except ssl.SSLError as error:
        sock.close()
        raise tls_failure(error, peer) or ConnectionLostError(
            f"TLS session with {peer} broke: {error}", refused=True
        ) from error
    except ConnectionLostError:
        sock.close()
        raise
    except OSError as error:
        sock.close()
        raise ConnectionLostError(
            f"TLS session with {peer} broke: {error}", refused=True
        ) from error
    sock.settimeout(previous)


def _connect_budget(settings: Settings, deadline: float | None) -> float:
    """Seconds a connect or a TLS handshake may take: ``connect_timeout``, or less to end by
    ``deadline``; DeliveryError when the deadline has passed."""
    timeout = settings.connect_timeout
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise DeliveryError("the deadline passed before a connection to Logstash opened")
    return timeout


def _connect_any(
    host: str, port: int, timeout: float, avoid: Collection[Address]
) -> tuple[socket.socket, list[Address]]:
    """A TCP connection to one of ``host``'s addresses within ``timeout`` for them all, and the
    addresses that failed before it: in the resolver's order but those in ``avoid`` last,
    each attempt given an equal share of the time left. (``socket.create_connection`` gives
    every address the whole timeout: a dead first one cost each connection all of it, and
    several dead ones ran past the deadline.)

    Raises ConnectionLostError, ``refused`` when every address refused.
    """
    peer = f"{host}:{port}"
    end = time.monotonic() + timeout
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        # Retried as any outage (a resolver may fail for a moment), but said as what it is.
        raise ConnectionLostError(
            f"cannot resolve {host} ({error.strerror or error})", outage=True, unresolved=True
        ) from error
    except OSError as error:
        raise ConnectionLostError(f"cannot connect to {peer}: {error}", outage=True) from error
    infos.sort(key=lambda info: info[4] in avoid)  # stable: each group keeps its order
    errors: list[OSError] = []
    failed: list[Address] = []
    for tried, (family, kind, proto, _, address) in enumerate(infos):
        left = end - time.monotonic()
        if left <= 0:
            break
        sock: socket.socket | None = None
        try:
            # Inside: socket() itself fails when the process is out of descriptors (EMFILE).
            sock = socket.socket(family, kind, proto)
            sock.settimeout(left / (len(infos) - tried))
            sock.connect(address)
        except OSError as error:
            if sock is not None:
                sock.close()
            errors.append(error)
            failed.append(address)
            continue
        return sock, failed
    if not errors:
        errors.append(TimeoutError("timed out"))
    tried_all = f" ({len(errors)} of its {len(infos)} addresses)" if len(infos) > 1 else ""
    raise ConnectionLostError(
        f"cannot connect to {peer}{tried_all}: {errors[-1]}",
        no_listener=all(isinstance(error, ConnectionRefusedError) for error in errors),
        outage=True,
    ) from errors[-1]


def _set_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
