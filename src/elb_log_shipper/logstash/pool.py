"""A bounded pool of Logstash connections that outlives senders (and warm Lambda invocations)."""

from __future__ import annotations

import threading
import time

from elb_log_shipper.config import Settings
from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.logstash.connection import (
    WAIT_SLICE_SECONDS,
    Batch,
    LogstashConnection,
    build_ssl_context,
)

__all__ = ["MIN_ROTATE_BYTES", "ROTATE_BYTES", "SocketPool"]

# Confirm (gracefully close and reopen) a connection after it carried this much. It bounds the
# resend buffer and the duplicates after a reset, and is above what the kernel buffers of both
# ends hold in flight on a fast link (a few MB), so a healthy connection is rarely rotated.
ROTATE_BYTES = 8 * 1024 * 1024
# When connections keep breaking before they are confirmed (a proxy or a Logstash that closes
# connections after some bytes), the pool confirms sooner: the limit halves on every loss, down
# to this floor (a few JSON lines), and grows back by an eighth on every confirmation, slowly,
# so that a peer with a byte limit costs one lost connection every several, not every other.
MIN_ROTATE_BYTES = 16 * 1024


class SocketPool:
    """At most ``settings.pool_size`` open connections to one Logstash, shared by senders.

    Keep one per process (a module-level pool survives warm Lambda invocations). A connection
    handed back with unconfirmed batches keeps them: whoever takes it next confirms or resends
    them, so none is dropped.

    >>> pool = SocketPool(Settings(host="127.0.0.1", port=5000))
    >>> pool.open_connections
    0
    """

    def __init__(self, settings: Settings, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.settings = settings.require_destination()
        self.rotate_bytes = rotate_bytes
        # The limit in force: rotate_bytes, or less while connections break before confirmation.
        self.confirm_within = rotate_bytes
        self._context = build_ssl_context(settings) if settings.tls else None
        self._cond = threading.Condition()
        self._idle: list[LogstashConnection] = []
        self._lent: set[LogstashConnection] = set()
        self._connecting = 0
        self.connections_opened = 0
        self.dead_connections_replaced = 0

    def lost_unconfirmed(self, carried: int) -> None:
        """A connection broke after carrying ``carried`` unconfirmed bytes: confirm sooner."""
        floor = min(MIN_ROTATE_BYTES, self.rotate_bytes)
        self.confirm_within = max(floor, min(self.confirm_within, max(carried, 1)) // 2)

    def confirmed(self) -> None:
        """A connection was confirmed: let the limit grow back towards ``rotate_bytes``."""
        self.confirm_within = min(self.rotate_bytes, self.confirm_within + self.confirm_within // 8)

    @property
    def open_connections(self) -> int:
        """Sockets open now (idle, in use, or being opened)."""
        with self._cond:
            lent = sum(1 for conn in self._lent if not conn.closed)
            return len(self._idle) + lent + self._connecting

    @property
    def idle_connections(self) -> int:
        with self._cond:
            return len(self._idle)

    def acquire(
        self,
        deadline: float | None,
        inherited: list[Batch],
        stop: threading.Event | None = None,
    ) -> LogstashConnection:
        """A live connection: an idle one that passes a non-blocking check, else a new one.

        Waits for a free slot when ``pool_size`` connections are in use. Batches left
        unconfirmed on a dead idle connection are appended to ``inherited`` (before anything
        can fail), for the caller to resend. Raises ConnectionLostError when opening fails and
        DeliveryError when the deadline passes or ``stop`` is set.
        """
        while True:
            conn = self._take_slot(deadline, stop)
            if conn is None:
                break
            if conn.is_alive():
                conn.times_lent += 1
                return conn
            inherited.extend(conn.take_unconfirmed())
            self.discard(conn)
            with self._cond:
                self.dead_connections_replaced += 1
        try:
            conn = LogstashConnection.open(self.settings, deadline, self._context)
        except BaseException:
            with self._cond:
                self._connecting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._connecting -= 1
            self._lent.add(conn)
            self.connections_opened += 1
        conn.times_lent += 1
        return conn

    def take_unconfirmed_idle(self) -> LogstashConnection | None:
        """Lend an idle connection that carries unconfirmed batches, if there is one."""
        with self._cond:
            for conn in self._idle:
                if conn.unconfirmed:
                    self._idle.remove(conn)
                    self._lent.add(conn)
                    return conn
        return None

    def release(self, conn: LogstashConnection) -> None:
        """Give a connection back for reuse (closed ones just free their slot)."""
        with self._cond:
            self._lent.discard(conn)
            if not conn.closed:
                self._idle.append(conn)
            self._cond.notify_all()

    def discard(self, conn: LogstashConnection) -> None:
        """Close a connection and free its slot."""
        conn.close()
        with self._cond:
            self._lent.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._cond.notify_all()

    def close(self) -> None:
        """Close every socket (process exit, tests). Unconfirmed batches on them are dropped;
        confirm first (``LogstashSender(pool).finish(deadline)``) to keep them. The pool stays
        usable and opens new connections when asked."""
        with self._cond:
            conns = [*self._idle, *self._lent]
            self._idle.clear()
            self._lent.clear()
            self._cond.notify_all()
        for conn in conns:
            conn.close()

    def _take_slot(
        self, deadline: float | None, stop: threading.Event | None
    ) -> LogstashConnection | None:
        """An idle connection (now lent), or None with a slot reserved for opening one."""
        with self._cond:
            while True:
                if stop is not None and stop.is_set():
                    raise DeliveryError("delivery was stopped")
                if self._idle:
                    # Most recently used first: the likeliest to be alive.
                    conn = self._idle.pop()
                    self._lent.add(conn)
                    return conn
                if len(self._lent) + self._connecting < self.settings.pool_size:
                    self._connecting += 1
                    return None
                wait = WAIT_SLICE_SECONDS
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise DeliveryError(
                            f"all {self.settings.pool_size} connections to Logstash stayed busy "
                            "until the deadline"
                        )
                self._cond.wait(wait)
