"""The Logstash sink, at least once, over TCP or TLS, in one of two protocols
(``Settings.protocol``): json_lines to Logstash's ``tcp`` input (this docstring) or Beats to its
``beats`` input (``beats.py``: windows, compressed, acknowledged). Both share the pool
(``pool.py``), the sender threads, deadlines, resending and the confirmed-offset ledger
(``sender.py``, ``confirmed.py``); only framing and confirmation differ (``connection.py``).

Wire format (json_lines): one JSON object per ``\\n``-terminated UTF-8 line
(``codec => json_lines``), many lines per write. A connection on which a write failed part-way is
closed, never reused, so half a line is never followed by another event.

What "delivered" means (json_lines)
-----------------------------------
Logstash's tcp input sends nothing back, so the only acknowledgement TCP offers is the close.
An event counts as delivered (``events_confirmed``) when the connection that carried it was
closed gracefully: we half-close (TLS ``close_notify``, then FIN), read until Logstash closes its
side, and find every byte we sent acknowledged by its kernel.

Why that proves Logstash read the bytes:

* logstash-plugins/logstash-input-tcp, ``src/main/java/org/logstash/tcp/InputLoop.java``: the
  server is a Netty ``ServerBootstrap`` whose child options set only ``SO_KEEPALIVE``, never
  ``ALLOW_HALF_CLOSURE``. Its ``DecoderAdapter.channelRead`` passes each chunk synchronously to
  the decoder (``lib/logstash/inputs/tcp.rb`` ``decode_buffer``: the codec decodes the lines and
  ``enqueue_decorated`` pushes each event with ``@output_queue << event``, which blocks while the
  pipeline's queue is full). A ``FlushOnCloseListener`` flushes the codec when the channel closes,
  so a last line without ``\\n`` would still become an event.
* netty/netty, ``transport/src/main/java/io/netty/channel/socket/DefaultSocketChannelConfig.java``:
  ``allowHalfClosure`` defaults to false. ``transport/src/main/java/io/netty/channel/nio/
  AbstractNioByteChannel.java``: ``NioByteUnsafe.read()`` fires ``channelRead`` for every byte
  read, and only when a read returns end-of-stream calls ``closeOnRead``, which, without half
  closure, closes the channel.

So Logstash closes its side only after its event loop has read every byte up to our FIN and
handed every line to the codec and the pipeline's queue. Seeing that close (EOF, not a reset),
with nothing of ours unacknowledged, means: every event was decoded and is in Logstash's queue.
It does NOT mean filters or outputs ran: with the default in-memory queue a Logstash crash can
still lose them; with ``queue.type: persisted`` they are in the queue's pages. A reset, an early
close, a stall or the deadline mean nothing on that connection is confirmed: its batches are
resent on another connection (so Logstash may receive duplicates, never fewer lines). When a
decode error makes Logstash close the channel early, unread bytes make its kernel send a reset,
which we treat as a failure; an error on the last bytes it had of ours (a line over the codec's
``decode_size_limit_bytes``) leaves nothing unread, and that close passes for a confirmation of
lines it dropped, which is why events must stay below that limit (README, "Receivers").
Another input on the port (a beats input, which closes at our first byte) may read a small
batch whole, our FIN with it, before it closes: that close would pass for
the tcp input's, so until the peer has shown it reads to our FIN (three confirmations so, or one
of a connection that carried 256 KiB; an early close or a reset starts it over: ``InputProof``),
a confirmation gives the peer time to close on our bytes before our FIN (``PROVE_INPUT_SECONDS``).

Each connection keeps the batches written since it opened; it is confirmed (closed and reopened)
at the end of each object and after carrying ``ROTATE_BYTES``, which bounds both the resend
buffer and the duplicates after a failure. A connection that breaks before its confirmation
makes the pool confirm sooner (``SocketPool.confirm_within`` halves, down to
``MIN_ROTATE_BYTES``, and grows back as confirmations succeed), so a peer that closes every
connection after some bytes still receives everything. A connection turned away before it
carried anything (refused, or reset at accept while other connections work: a receiver at its
connection cap) lowers the pool's connection limit instead, which grows back one connection per
``REGROW_CONNECTIONS_AFTER_SECONDS``. TLS failures that no retry can fix (certificate not
trusted, expired or for another name, a client certificate missing or rejected, a plaintext port)
fail at once with the setting to change.

Example::

    pool = SocketPool(settings)              # one per process; survives warm invocations
    sender = LogstashSender(pool, deadline=soft_deadline)
    sender.send(b'{"message":"a"}\\n', events=1, end_offset=512)
    stats = sender.finish(deadline=hard_deadline)
    sender.confirmed_offset                  # 512: a retry resumes from there

Confirmed progress: each batch carries a ticket of the sender that queued it
(``logstash/confirmed.py``); ``LogstashSender.confirmed_offset`` is the ``end_offset`` of the
longest prefix of its batches that is confirmed, whichever connection or later sender confirmed
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from elb_log_shipper.config import (
    DEFAULT_LOGSTASH_PORT,
    PROTOCOL_BEATS,
    PROTOCOL_JSON_LINES,
    is_host,
)
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.logstash.connection import JSON_LINES, BatchFormat
from elb_log_shipper.logstash.pool import ROTATE_BYTES, SocketPool
from elb_log_shipper.logstash.sender import DeliveryStats, LogstashSender, Retrying

__all__ = [
    "JSON_LINES",
    "ROTATE_BYTES",
    "BatchFormat",
    "DeliveryStats",
    "Destination",
    "LogstashSender",
    "Retrying",
    "SocketPool",
    "parse_destination",
]

# Scheme -> (TLS, protocol).
_SCHEMES = {
    "tcp": (False, PROTOCOL_JSON_LINES),
    "tls": (True, PROTOCOL_JSON_LINES),
    "beats": (False, PROTOCOL_BEATS),
    "beats+tls": (True, PROTOCOL_BEATS),
}


@dataclass(frozen=True, slots=True)
class Destination:
    """Where ``--to`` points: host, port, TLS or not, and the wire protocol."""

    host: str
    port: int
    tls: bool
    protocol: str

    def settings(self) -> dict[str, Any]:
        """The ``Settings`` fields this destination sets (``Settings.from_env`` overrides)."""
        return {"host": self.host, "port": self.port, "tls": self.tls, "protocol": self.protocol}


def parse_destination(url: str) -> Destination:
    """Parse ``tcp://``, ``tls://`` (json_lines for the tcp input), ``beats://`` or
    ``beats+tls://`` (the beats input) followed by ``host:port``.

    The port defaults to 5044; IPv6 hosts go in brackets.

    >>> parse_destination("tls://logstash.internal:5000")
    Destination(host='logstash.internal', port=5000, tls=True, protocol='json_lines')
    >>> parse_destination("beats+tls://[::1]").settings()
    {'host': '::1', 'port': 5044, 'tls': True, 'protocol': 'beats'}
    """
    hint = "use tcp://, tls://, beats:// or beats+tls:// followed by host:port"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        scheme, _, netloc = url.strip().partition("://")
        # An address with a port has at least three colons (`::1:5044`).
        if netloc.count(":") > 2 and "[" not in netloc and "]" not in netloc:
            raise ConfigurationError(
                f"destination {url!r} looks like an IPv6 address without brackets: write it "
                f"as {scheme}://[address]:port"
            ) from None
        if "Port" in str(error):  # urllib's "Port could not be cast..." or "out of range"
            raise ConfigurationError(
                f"destination {url!r} has no port from 1 to 65535: {hint}"
            ) from None
        raise ConfigurationError(f"destination {url!r} is invalid ({error}): {hint}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(f"destination {url!r} has no known scheme: {hint}")
    if not parts.hostname:
        raise ConfigurationError(f"destination {url!r} has no host: {hint}")
    if not is_host(parts.hostname):
        raise ConfigurationError(
            f"destination {url!r}: {parts.hostname!r} is not a host name or an IP address: {hint}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigurationError(f"destination {url!r} has more than a host and port: {hint}")
    if port == 0:
        raise ConfigurationError(f"destination {url!r} has port 0: {hint}")
    tls, protocol = _SCHEMES[parts.scheme]
    return Destination(
        parts.hostname, DEFAULT_LOGSTASH_PORT if port is None else port, tls, str(protocol)
    )
