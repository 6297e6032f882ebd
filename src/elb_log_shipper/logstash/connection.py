"""One connection to Logstash's tcp input: connect, write with a progress watchdog, confirm.

A connection keeps every batch written on it since it was opened (``unconfirmed``) until
``confirm()`` has seen Logstash close its side after reading ours; see the package docstring for
what that proves. Nothing here retries: a broken or stalled connection raises
``ConnectionLostError`` and the sender decides what to resend where.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import termios
import time
from dataclasses import dataclass

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError, DeliveryError
from elb_log_shipper.logstash.confirmed import Ticket

__all__ = ["Batch", "ConnectionLostError", "LogstashConnection", "build_ssl_context"]

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
# Linux's largest default receive buffer (tcp_rmem max) is 6 MiB: a peer cannot hold more unread.
PEER_BUFFER_BYTES_CAP = 8 * 1024 * 1024


class ConnectionLostError(Exception):
    """The connection broke, or made no progress for the stall timeout; resend what it carried.

    Internal to the sink: the sender turns it into a retry, or into ``DeliveryError`` when it
    gives up, so callers never see it.
    """


@dataclass(frozen=True, slots=True)
class Batch:
    """Complete JSON lines (each ending in ``\\n``), how many events they hold, and the ticket
    that confirming them redeems (None for batches nobody tracks)."""

    data: bytes
    events: int
    ticket: Ticket | None = None

    def confirmed(self) -> None:
        """Tell the sender that queued this batch (whichever sender confirmed it)."""
        if self.ticket is not None:
            self.ticket.confirm()


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: system trust store or ``ca_file``, hostname checked, optional client
    certificate (Logstash ``ssl_client_authentication``).

    Raises ConfigurationError when a certificate or key file cannot be loaded.
    """
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.client_cert_file and settings.client_key_file:
            context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    except (ssl.SSLError, OSError) as error:
        raise ConfigurationError(
            f"cannot load the TLS files ({ENV.LOGSTASH_CA_FILE}, {ENV.LOGSTASH_CLIENT_CERT_FILE}, "
            f"{ENV.LOGSTASH_CLIENT_KEY_FILE}): {error}; check they are PEM files"
        ) from error
    # create_default_context already sets both; stated because hostname checking is a requirement.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Watchdog:
    """Decides when a connection is dead: nothing moved for ``stall_timeout`` seconds.

    Progress is any byte the kernel accepted from us, or our send queue shrinking (the peer
    acknowledged bytes, so it read some): never the total time a large write takes.
    """

    def __init__(self, sock: socket.socket, stall_timeout: float) -> None:
        self._sock = sock
        self._stall_timeout = stall_timeout
        self._last_progress = time.monotonic()
        self._last_queued = _send_queue_bytes(sock)

    def progressed(self) -> None:
        self._last_progress = time.monotonic()
        self._last_queued = _send_queue_bytes(self._sock)

    def check(self, allowance: float = 0.0) -> None:
        """Raise ConnectionLostError when stalled for longer than the timeout plus ``allowance``."""
        now = time.monotonic()
        queued = _send_queue_bytes(self._sock)
        if queued is not None and self._last_queued is not None and queued < self._last_queued:
            self._last_progress = now
        self._last_queued = queued
        if now - self._last_progress > self._stall_timeout + allowance:
            raise ConnectionLostError(
                f"no progress for {self._stall_timeout + allowance:.1f}s "
                f"({queued if queued is not None else '?'} bytes still queued)"
            )


def _send_queue_bytes(sock: socket.socket) -> int | None:
    """Bytes in our send queue not yet acknowledged by the peer (Linux SIOCOUTQ), or None."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    value: int = struct.unpack("i", raw)[0]
    return value


def _wait_slice(deadline: float | None, what: str) -> float:
    """How long the next blocking call may wait; DeliveryError once the deadline has passed."""
    if deadline is None:
        return WAIT_SLICE_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeliveryError(f"the deadline passed while {what}; the object will be retried")
    return min(WAIT_SLICE_SECONDS, left)


class LogstashConnection:
    """A TCP or TLS connection to Logstash with the batches it carries unconfirmed.

    Not thread-safe: one worker owns it at a time (the pool hands it over).
    """

    def __init__(self, sock: socket.socket, settings: Settings) -> None:
        self._sock = sock
        self._settings = settings
        self.peer = f"{settings.host}:{settings.port}"
        self.unconfirmed: list[Batch] = []
        self.unconfirmed_bytes = 0
        # Bytes written since opening, confirmed or not: the sender rotates on this.
        self.carried_bytes = 0
        # How many times the pool lent it out: 1 means its first user opened it.
        self.times_lent = 0
        self.closed = False
        self.interrupted = False

    @classmethod
    def open(
        cls, settings: Settings, deadline: float | None, context: ssl.SSLContext | None
    ) -> LogstashConnection:
        """Connect (and handshake) within ``connect_timeout``.

        Raises ConnectionLostError for a failure worth retrying (refused, timed out, reset) and
        DeliveryError for one that retrying cannot fix (the certificate does not verify).
        """
        host = settings.host
        if not host:
            raise ConfigurationError(f"{ENV.LOGSTASH_HOST} is not set")
        timeout = settings.connect_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise DeliveryError("the deadline passed before a connection to Logstash opened")
        peer = f"{host}:{settings.port}"
        try:
            sock = socket.create_connection((host, settings.port), timeout=timeout)
        except OSError as error:
            raise ConnectionLostError(f"cannot connect to {peer}: {error}") from error
        _set_keepalive(sock)
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as error:
                sock.close()
                raise DeliveryError(
                    f"the TLS certificate of Logstash at {peer} failed verification "
                    f"({error.verify_message}): set {ENV.LOGSTASH_CA_FILE} to the CA that signed "
                    "it, and use a host name the certificate names"
                ) from error
            except ssl.SSLError as error:
                sock.close()
                raise DeliveryError(
                    f"the TLS handshake with Logstash at {peer} failed ({error}): check the TLS "
                    "settings of the tcp input (ssl_enabled, ssl_client_authentication)"
                ) from error
            except OSError as error:
                sock.close()
                raise ConnectionLostError(f"TLS handshake with {peer} broke: {error}") from error
        return cls(sock, settings)

    def write(self, batch: Batch, deadline: float | None) -> None:
        """Write one batch completely, or raise; the batch counts as unconfirmed either way.

        Raises ConnectionLostError when the socket breaks or stalls (the connection must then be
        discarded: it may hold half a line), DeliveryError when the deadline passes.
        """
        self.unconfirmed.append(batch)
        self.unconfirmed_bytes += len(batch.data)
        self.carried_bytes += len(batch.data)
        view = memoryview(batch.data)
        chunk = TLS_WRITE_BYTES if isinstance(self._sock, ssl.SSLSocket) else len(view)
        watchdog = _Watchdog(self._sock, self._settings.stall_timeout)
        sent = 0
        try:
            while sent < len(view):
                self._sock.settimeout(_wait_slice(deadline, f"writing to {self.peer}"))
                try:
                    sent += self._sock.send(view[sent : sent + chunk])
                except TimeoutError:
                    watchdog.check()
                    continue
                watchdog.progressed()
        except OSError as error:
            self.close()
            raise ConnectionLostError(f"writing to {self.peer} failed: {error}") from error
        except (ConnectionLostError, DeliveryError):
            self.close()
            raise

    def confirm(self, deadline: float | None) -> list[Batch]:
        """Close gracefully and return the batches Logstash has now read; the socket is closed.

        Half-closes (TLS close_notify, then FIN), then reads until Logstash closes its side,
        which its tcp input does only after reading everything up to our FIN. Raises
        ConnectionLostError when the peer resets, closed before our FIN, stalls, or closes with
        our bytes unacknowledged; DeliveryError when the deadline passes.
        """
        try:
            if self._peer_has_closed():
                raise ConnectionLostError(f"{self.peer} closed the connection before we finished")
            self._half_close()
            self._read_until_eof(deadline)
            if self.interrupted:
                raise ConnectionLostError("delivery was stopped")
            queued = _send_queue_bytes(self._sock)
            if queued:
                raise ConnectionLostError(
                    f"{self.peer} closed with {queued} of our bytes unacknowledged"
                )
        except OSError as error:
            self.close()
            raise ConnectionLostError(f"closing {self.peer} failed: {error}") from error
        except (ConnectionLostError, DeliveryError):
            self.close()
            raise
        self.close()
        return self.take_unconfirmed()

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
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)

    def interrupt(self) -> None:
        """Wake a blocked write or read from another thread; the connection is then dead.

        shutdown() rather than close(): closing would free the descriptor number for reuse while
        the owning thread may still pass it to a system call.
        """
        self.interrupted = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def take_unconfirmed(self) -> list[Batch]:
        """Hand over the unconfirmed batches (for resending elsewhere) and forget them."""
        batches, self.unconfirmed = self.unconfirmed, []
        self.unconfirmed_bytes = 0
        return batches

    def close(self) -> None:
        """Close the socket at once; unconfirmed batches stay for the caller to take."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._sock.close()

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
        watchdog = _Watchdog(self._sock, self._settings.stall_timeout)
        unread_allowance = (
            min(self.carried_bytes, PEER_BUFFER_BYTES_CAP) / SLOWEST_LIVE_READER_BYTES_PER_SECOND
        )
        while True:
            self._sock.settimeout(_wait_slice(deadline, f"waiting for {self.peer} to read"))
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                queued = _send_queue_bytes(self._sock)
                # While our queue holds data the peer's window updates show its reading; once
                # all is acknowledged, give it time to read what it holds.
                watchdog.check(unread_allowance if not queued else 0.0)
                continue
            except ssl.SSLZeroReturnError:
                return  # Logstash's close_notify: its side is closed
            except ssl.SSLEOFError:
                # A FIN without close_notify (peers often skip it when they close): still a
                # close, not a reset. A peer that closes with our bytes unread makes its kernel
                # send a reset (ConnectionResetError) instead, and unacknowledged bytes are
                # checked after this returns.
                return
            if not data:
                return
            watchdog.progressed()  # Logstash sends nothing; any bytes only show it is alive


def _set_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
