"""A bounded pool of Logstash connections that outlives senders (and warm Lambda invocations).

The pool is where the protocol is chosen (``Settings.protocol``: json_lines or beats) and where
the limits that adapt to the peer live: the confirmation size (json_lines), the window (beats)
and how many connections may be open.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

from elb_log_shipper.config import PROTOCOL_BEATS, Settings
from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.logstash.beats import BeatsConnection, split_events
from elb_log_shipper.logstash.connection import (
    WAIT_SLICE_SECONDS,
    Address,
    Batch,
    Connection,
    ConnectionLostError,
    InputProof,
    JsonLinesConnection,
    build_ssl_context,
    split_batch,
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
# A receiver that turns connections away at a cap (syslog-ng accepts 10, load balancers and
# Logstash have limits too) is saying "fewer connections", not "smaller batches": the pool then
# opens no more than were working, and tries one more after this long without a refusal, so a
# cap that was lifted is found again within a minute or so.
REGROW_CONNECTIONS_AFTER_SECONDS = 10.0
# An address of the host that failed while another worked is tried last for this long, then in
# the resolver's order again: a node that came back gets its share of connections within a
# minute, and a dead one costs a share of LOGSTASH_CONNECT_TIMEOUT once a minute.
AVOID_UNREACHABLE_SECONDS = 60.0
# After delivery gave up on Logstash (refused, or never reading, for three stall timeouts: a
# minute by default), a later sender of the same pool gives up at its first failure of the same
# kind (no connection, or a stall; not a reset) for this long: in a warm Lambda container during
# an outage, every object (each notification, each of SQS's retries) otherwise billed the same
# minute of retries before its hand-off. The first confirmation ends it; only a full give-up
# starts it again.
REMEMBER_OUTAGE_SECONDS = 300.0
# Beats windows start small and grow by half on every acknowledged window that filled them, up to
# ``beats_window_max``; a loss halves them (libbeat's slow start: libbeat/outputs/logstash/
# window.go starts at 10 and grows by 1.5x). A pipeline batch of ALB events holds ~100.
BEATS_WINDOW_START = 16
BEATS_WINDOW_MIN = 1
# How long ``close`` waits for the pool's tender to give back the connections it was tending
# (it shuts them down first, so their reads and writes return within a wait slice).
TENDER_RETURN_SECONDS = 2.0


@dataclass(slots=True)
class PoolCounters:
    """What the pool did, for tests and benchmarks (read under no lock: approximate)."""

    connections_opened: int = 0
    dead_connections_replaced: int = 0
    refusals: int = 0


class SocketPool:
    """At most ``settings.pool_size`` open connections to one Logstash, shared by senders.

    Keep one per process (a module-level pool survives warm Lambda invocations). A connection
    handed back with unconfirmed batches keeps them: whoever takes it next confirms or resends
    them, so none is dropped. Meanwhile (beats) a thread of the pool tends it as its writer
    did (``Connection.while_idle``): it reads the ACKs and probes windows in flight after a
    silence, so that Logstash does not close it as idle while the next object's first read
    stalls (``_tend_idle``).

    >>> pool = SocketPool(Settings(host="127.0.0.1", port=5000))
    >>> pool.open_connections
    0
    """

    def __init__(self, settings: Settings, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.settings = settings.require_destination()
        self.rotate_bytes = rotate_bytes
        self._context = build_ssl_context(settings) if settings.tls else None
        self._connection_class: type[Connection] = (
            BeatsConnection if settings.protocol == PROTOCOL_BEATS else JsonLinesConnection
        )
        self._cond = threading.Condition()
        self._idle: list[Connection] = []
        self._lent: set[Connection] = set()
        # Idle connections out of ``_idle`` for a moment, tended by ``_tend_idle``, and whether
        # that thread runs.
        self._tending: set[Connection] = set()
        self._tender: threading.Thread | None = None
        self._connecting = 0
        # The limits in force, changed under the lock from every worker's thread:
        # rotate_bytes or less while connections break before confirmation, and pool_size or
        # fewer connections while the receiver turns connections away.
        self._confirm_within = rotate_bytes
        self._window = min(BEATS_WINDOW_START, settings.beats_window_max)
        self._connection_limit = settings.pool_size
        self._last_refusal = 0.0
        # Whether a connection has opened (and, over TLS 1.3, passed the server's verdict on our
        # client certificate, which is the same for every later one).
        self._opened_once = False
        # The host's addresses that failed while another took the connection, and when: tried
        # last for a while, so a dead one among them (an unreachable AAAA record, a node down)
        # costs one connection a while, not every one.
        self._unreachable: dict[Address, float] = {}
        # When delivery last gave up on Logstash, until something is confirmed again.
        self._gave_up_at: float | None = None
        # Whether the peer has yet to show it is a tcp input (JsonLinesConnection.confirm).
        self._input_proof = InputProof()
        self.counters = PoolCounters()

    @property
    def connections_opened(self) -> int:
        return self.counters.connections_opened

    @property
    def dead_connections_replaced(self) -> int:
        return self.counters.dead_connections_replaced

    @property
    def confirm_within(self) -> int:
        """Confirm a connection before it carries more than this many bytes."""
        with self._cond:
            return self._confirm_within

    @property
    def window(self) -> int:
        """Events per beats window now (slow start, up to ``beats_window_max``)."""
        with self._cond:
            return self._window

    def fit(self, batch: Batch) -> list[Batch]:
        """``batch``, or its parts when it exceeds the limit in force: ``confirm_within`` bytes
        (json_lines) or the window's events (beats)."""
        if self.settings.protocol == PROTOCOL_BEATS:
            return split_events(batch, self.window)
        limit = self.confirm_within
        return [batch] if len(batch.data) <= limit else split_batch(batch, limit)

    @property
    def connection_limit(self) -> int:
        """How many connections may be open now (``pool_size``, or fewer after refusals)."""
        with self._cond:
            return self._connection_limit

    def lost_unconfirmed(self, conn: Connection) -> bool:
        """A connection broke before its confirmation: turned away at a connection cap while
        others are open, open fewer (and return True); else the peer closes after some bytes,
        confirm sooner (beats: smaller windows, unless some were acknowledged on it)."""
        with self._cond:
            others = sum(1 for other in self._lent if other is not conn and not other.closed)
            # A beats connection on which windows were acknowledged was admitted: a cap turns a
            # connection away before it carries anything.
            if conn.turned_away() and not conn.made_progress and others:
                self._refused(others + len(self._idle) + len(self._tending))
                return True
            if isinstance(conn, BeatsConnection):
                if not conn.made_progress:
                    # Windows of this size were acknowledged on a connection lost after them:
                    # the size is not why.
                    self._window = max(BEATS_WINDOW_MIN, self._window // 2)
            elif conn.carried_bytes:
                floor = min(MIN_ROTATE_BYTES, self.rotate_bytes)
                within = min(self._confirm_within, conn.carried_bytes) // 2
                self._confirm_within = max(floor, within)
            return False

    def gave_up(self) -> None:
        """Delivery gave up on Logstash (``REMEMBER_OUTAGE_SECONDS``)."""
        with self._cond:
            self._gave_up_at = time.monotonic()

    def gave_up_lately(self) -> float | None:
        """Seconds since delivery last gave up on Logstash, when that was within
        ``REMEMBER_OUTAGE_SECONDS`` and nothing was confirmed since; else None."""
        with self._cond:
            if self._gave_up_at is None:
                return None
            ago = time.monotonic() - self._gave_up_at
            return ago if ago < REMEMBER_OUTAGE_SECONDS else None

    def confirmed(self, batches: list[Batch]) -> None:
        """Batches were confirmed (a connection closed gracefully, or beats windows were
        acknowledged): let the limits grow back, and forget an outage."""
        with self._cond:
            self._gave_up_at = None
            if self.settings.protocol == PROTOCOL_BEATS:
                for batch in batches:
                    if batch.events >= self._window:
                        self._window = min(
                            self.settings.beats_window_max, -(-self._window * 3 // 2)
                        )
            self._confirm_within = min(
                self.rotate_bytes, self._confirm_within + self._confirm_within // 8
            )
            now = time.monotonic()
            if (
                self._connection_limit < self.settings.pool_size
                and now - self._last_refusal >= REGROW_CONNECTIONS_AFTER_SECONDS
            ):
                self._connection_limit += 1
                self._last_refusal = now  # the next one after as long again
                self._cond.notify_all()

    @property
    def open_connections(self) -> int:
        """Sockets open now (idle, in use, or being opened)."""
        with self._cond:
            lent = sum(1 for conn in (*self._lent, *self._idle, *self._tending) if not conn.closed)
            return lent + self._connecting

    def acquire(
        self,
        deadline: float | None,
        inherited: list[Batch],
        stop: threading.Event | None = None,
        settled: list[Batch] | None = None,
    ) -> Connection:
        """A live connection: an idle one that passes a non-blocking check, else a new one.

        Waits for a free slot when ``pool_size`` connections are in use. Batches left
        unconfirmed on a dead idle connection are appended to ``inherited`` (before anything
        can fail), for the caller to resend, and those its last ACKs confirmed to ``settled``,
        for the caller to count. Raises ConnectionLostError when opening fails and
        DeliveryError when the deadline passes or ``stop`` is set.
        """
        while True:
            conn = self._take_slot(deadline, stop)
            if conn is None:
                break
            try:
                alive = conn.is_alive()
            except BaseException:
                self.discard(conn)  # a fatal TLS alert: its slot is free again
                if settled is not None:
                    settled.extend(conn.take_confirmed())
                raise
            if alive:
                conn.times_lent += 1
                return conn
            inherited.extend(conn.take_unconfirmed())
            if settled is not None:
                settled.extend(conn.take_confirmed())
            self.discard(conn)
            with self._cond:
                self.counters.dead_connections_replaced += 1
        with self._cond:
            others = len(self._idle) + len(self._lent) + self._connecting - 1
            # A handshake unanswered is a plaintext port only if none ever succeeded here: once
            # one did, the port speaks TLS, and the peer is busy (or capped).
            alone = others == 0 and not self._opened_once
            await_verdict = not self._opened_once
            now = time.monotonic()
            self._unreachable = {
                address: since
                for address, since in self._unreachable.items()
                if now - since < AVOID_UNREACHABLE_SECONDS
            }
            avoid = set(self._unreachable)
        try:
            conn = self._connection_class.open(
                self.settings,
                deadline,
                self._context,
                alone=alone,
                await_verdict=await_verdict,
                avoid=avoid,
            )
        except ConnectionLostError as error:
            with self._cond:
                self._connecting -= 1
                open_now = len(self._idle) + sum(1 for c in self._lent if not c.closed)
                if error.refused and open_now:
                    self._refused(open_now)
                    error.capped = True
                elif error.no_listener:
                    # Refused by the TCP stack with none open: nothing listens (a restart), no
                    # cap. The refusals met while its connections were dying, unnoticed, were the
                    # same outage: once it is back, the pool may open as many as before. (A cap
                    # accepts, then turns away; shared with other clients, it may turn away a pool
                    # that holds none: what the pool learned from it stays.)
                    self._connection_limit = self.settings.pool_size
                self._cond.notify_all()
            raise
        except BaseException:
            with self._cond:
                self._connecting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._connecting -= 1
            self._lent.add(conn)
            self._opened_once = True
            failed_at = time.monotonic()
            self._unreachable.update((address, failed_at) for address in conn.unreachable)
            self.counters.connections_opened += 1
        if isinstance(conn, JsonLinesConnection):
            conn.input_proof = self._input_proof
        conn.times_lent += 1
        return conn

    def take_unconfirmed_idle(
        self, deadline: float | None, stop: threading.Event | None = None
    ) -> Connection | None:
        """Lend an idle connection that carries unconfirmed batches, or batches confirmed while
        it was tended in the pool and not yet counted, if there is one (waiting for the tender
        to give back those it tends); None when none does.

        Raises DeliveryError when ``deadline`` passes, or ``stop`` is set, while the tender
        still holds a connection: the tender may be blocked for a stall timeout on a Logstash
        that reads nothing, and what it holds is not confirmed (the connection stays the pool's).
        """
        with self._cond:
            while True:
                for conn in self._idle:
                    if conn.has_unconfirmed() or conn.confirmed:
                        self._idle.remove(conn)
                        self._lent.add(conn)
                        return conn
                if not self._tending:
                    return None
                if stop is not None and stop.is_set():
                    raise DeliveryError("delivery was stopped")
                self._wait_slice(
                    deadline,
                    f"the windows in flight on {len(self._tending)} connection(s) left in the "
                    "pool were not confirmed by the deadline: Logstash did not read them (the "
                    "pool's tender is still writing to it)",
                )

    def release(self, conn: Connection) -> None:
        """Give a connection back for reuse (closed ones just free their slot, and those shut
        down by ``close`` are closed)."""
        if conn.interrupted:
            self.discard(conn)
            return
        with self._cond:
            self._lent.discard(conn)
            if not conn.closed:
                self._idle.append(conn)
                if (
                    self._tender is None
                    and self.settings.protocol == PROTOCOL_BEATS
                    and conn.has_unconfirmed()
                ):
                    self._tender = threading.Thread(
                        target=self._tend_idle, name="logstash-pool-tender", daemon=True
                    )
                    self._tender.start()
            self._cond.notify_all()

    def _tend_idle(self) -> None:
        """Every wait slice, while idle connections hold windows in flight (``finish(confirm=
        False)``: the objects of an invocation leave theirs in the pool, and the next object's
        writers start at its first batch, after its first S3 read): take them out of the idle
        list for a moment and let each read its ACKs and probe a silence
        (``Connection.while_idle``). Without it Logstash, its pipeline blocked, closed such a
        connection as idle (``client_inactivity_timeout``) while the next read stalled, and the
        window already in its queue was sent again.

        A connection lost meanwhile goes back closed, with its batches: whoever takes it next
        finds it dead and resends them (``acquire``, ``take_unconfirmed_idle``), as for one that
        Logstash closed while idle. The thread ends when no idle connection holds windows."""
        try:
            while True:
                time.sleep(WAIT_SLICE_SECONDS)
                with self._cond:
                    due = [c for c in self._idle if c.has_unconfirmed() and not c.closed]
                    if not due:
                        self._tender = None  # under the lock: a release now starts another
                        return
                    self._idle = [conn for conn in self._idle if conn not in due]
                    self._tending.update(due)
                try:
                    for conn in due:
                        # Lost (closed) or broken (a protocol error, a fatal TLS alert): the next
                        # user meets it as a dead connection, and a new one meets the same peer.
                        with contextlib.suppress(ConnectionLostError, DeliveryError):
                            conn.while_idle(None)
                finally:
                    with self._cond:
                        self._tending.difference_update(due)
                        for conn in due:
                            if conn.interrupted:
                                conn.close()  # shut down by ``close``, which takes it
                            else:
                                self._idle.append(conn)
                        self._cond.notify_all()
        finally:
            with self._cond:  # ended by a bug: the next release starts another
                if self._tender is threading.current_thread():
                    self._tender = None

    def discard(self, conn: Connection) -> None:
        """Close a connection and free its slot."""
        conn.close()
        with self._cond:
            self._lent.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._cond.notify_all()

    def close(self) -> list[Batch]:
        """Close every idle socket and shut down those lent (process exit, tests). Unconfirmed
        batches on them are dropped; confirm first (``LogstashSender(pool).finish(deadline)``)
        to keep them. The pool stays usable and opens new connections when asked.

        Returns the batches that the idle connections' last ACKs confirmed (beats: ACKs that
        arrived while a connection waited in the pool, read as it closes), each confirmed to
        the sender that queued it: a window Logstash acknowledged counts, and is not handed off
        again (``pipeline.ship_objects`` closes the pool after a delivery error, then reads each
        sender's confirmed offset).

        A lent connection is only shut down (``Connection.interrupt``): its writer, if it still
        runs, may be between a check and a system call on its descriptor, which closing would
        free for the next socket opened (an S3 read's, another connection's) to receive its
        bytes. The writer's own ``discard`` closes it.
        """
        with self._cond:
            idle, lent, tending = [*self._idle], [*self._lent], [*self._tending]
            self._idle.clear()
            self._lent.clear()
            # Those the tender holds: shut down, its calls on them return at once, and it
            # leaves them to this close (``_tend_idle``); then they are idle ones like the others.
            for conn in tending:
                conn.interrupt()
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: not self._tending.intersection(tending), TENDER_RETURN_SECONDS
            )
            idle += [conn for conn in tending if conn not in self._tending]
        settled: list[Batch] = []
        for conn in idle:
            conn.close()
            settled += conn.take_confirmed()
        for conn in lent:
            conn.interrupt()
        for batch in settled:
            batch.confirmed()
        if settled:
            self.confirmed(settled)
        return settled

    def _refused(self, working: int) -> None:
        """Called under the lock: the receiver turned a connection away while ``working`` were
        open; open no more than those for a while."""
        self.counters.refusals += 1
        self._connection_limit = max(1, min(self._connection_limit, working))
        self._last_refusal = time.monotonic()

    def _take_slot(self, deadline: float | None, stop: threading.Event | None) -> Connection | None:
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
                # One the tender holds comes back within a moment: no new connection for it.
                if (
                    not self._tending
                    and len(self._lent) + self._connecting < self._connection_limit
                ):
                    self._connecting += 1
                    return None
                self._wait_slice(
                    deadline,
                    f"all {self.settings.pool_size} connections to Logstash stayed busy until "
                    "the deadline",
                )

    def _wait_slice(self, deadline: float | None, late: str) -> None:
        """Called under the lock: wait a slice for a change, at most until ``deadline``;
        DeliveryError saying ``late`` once it has passed."""
        wait = WAIT_SLICE_SECONDS
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise DeliveryError(late)
        self._cond.wait(wait)
