"""Ship one object's batches over the pool: worker threads, resend on loss, confirm at the end."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NoReturn

from elb_log_shipper.config import ENV, PROTOCOL_BEATS
from elb_log_shipper.errors import DeliveryError
from elb_log_shipper.logstash.beats import BEATS_FRAMES, PIPELINED_WINDOWS
from elb_log_shipper.logstash.confirmed import ConfirmedProgress
from elb_log_shipper.logstash.connection import (
    JSON_LINES,
    WAIT_SLICE_SECONDS,
    Batch,
    Connection,
    ConnectionLostError,
)
from elb_log_shipper.logstash.pool import SocketPool

__all__ = ["DeliveryStats", "LogstashSender"]

# Batches waiting per connection: one being written and one ready keeps each socket busy; more
# only holds memory while the caller is blocked anyway.
QUEUE_BATCHES_PER_CONNECTION = 2
# Full-jitter exponential backoff between reconnects: first wait up to 50 ms, never above 2 s.
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
# A connection the peer drops after confirming on it (a beats input that resets after each ACK, a
# proxy cutting connections) is no sign the peer is down, but reconnecting at once, again and again,
# ran at hundreds of connections a second: such losses wait as reconnects do (the same backoff,
# never giving up), until a connection lasts this long.
CHURN_RESET_SECONDS = 10.0
# Give up when connections keep failing without confirming anything: at least this many
# failures, spread over at least this many stall timeouts (a restart takes seconds; a Logstash
# that refuses or never reads for longer is down, and the caller's time is better spent retrying
# the object later).
GIVE_UP_AFTER_FAILURES = 3
GIVE_UP_AFTER_STALL_TIMEOUTS = 3.0
# How long abort() waits for its workers; each wakes at least every WAIT_SLICE_SECONDS.
ABORT_JOIN_SECONDS = 2.0
# Once the caller asks to stop (Ctrl-C, SIGTERM), how long delivery may still go on: enough for a
# healthy Logstash to confirm what it was sent, short enough to end, print the resume commands
# and exit within the 10 s a container's stop (docker stop) allows before SIGKILL, also while
# Logstash is down (the retries would otherwise go on until they give up).
STOP_GRACE_SECONDS = 5.0
# How far the other connections may run ahead of the oldest batch not yet confirmed, as a multiple
# of what a healthy pool holds in flight (each connection's unconfirmed batches, and the queue):
# a hand-off or a retry resumes from the confirmed offset, so whatever was sent after that batch
# is sent again. One connection stuck while the others go on (a Logstash node whose pipeline is
# blocked, behind a load balancer) sent the rest of the object, to send it again the next hop.
LAG_IN_FLIGHTS = 2


@dataclass(slots=True)
class DeliveryStats:
    """Counters of one sender, for metrics.

    ``events_confirmed`` can exceed ``events_sent`` when this sender confirmed batches that an
    earlier sender left unconfirmed on a pooled connection (``finish(confirm=False)``).
    """

    events_sent: int = 0
    bytes_sent: int = 0
    events_confirmed: int = 0
    bytes_confirmed: int = 0
    events_resent: int = 0
    retries: int = 0
    reconnects: int = 0
    connections_opened: int = 0
    rotations: int = 0


class _StoppedError(Exception):
    """A worker noticed abort(); it leaves quietly."""


class _Flush:
    """What ``next_batch`` answers an idle worker while the caller waits for the oldest batch in
    flight to be confirmed: confirm what your connection holds (``confirm_current``)."""


_FLUSH = _Flush()


@dataclass(frozen=True, slots=True)
class Retrying:
    """A connection to Logstash failing in a row, as ``on_wait`` hears of it."""

    failures: int
    seconds: float
    """Since the first of them."""
    last: str
    """What the last one said."""
    refused_by: str | None = None
    """``host:port`` when the last one was refused there (nothing listens: Logstash down or
    restarting), else None."""
    gives_up_in: float = 0.0
    """At most how long the retries go on from now before delivery gives up."""


class LogstashSender:
    """Deliver the batches of one object, at least once.

    ``send()`` queues a batch for the worker threads (one per pooled connection in use, started
    as the queue fills) and blocks while the queue is full. ``finish()`` waits for the queue to
    drain and confirms every connection used; ``abort()`` stops without confirming. While either
    blocks, ``on_wait`` (if given) is called on the caller's thread about every
    ``WAIT_SLICE_SECONDS`` with ``waiting_for_ack``, ``retrying`` and ``not_reading``, and with
    None for each once the wait is over, so that a display can say what it waits for.
    ``on_confirmed`` hears each new ``confirmed_offset`` as it is confirmed, on whichever thread
    confirms it (a writer's, as an ACK is read), in order.

    >>> sender = LogstashSender(pool, deadline=time.monotonic() + 60)  # doctest: +SKIP
    >>> sender.send(b'{"a":1}\\n{"a":2}\\n', events=2)  # doctest: +SKIP
    >>> sender.finish(deadline=time.monotonic() + 90).events_confirmed  # doctest: +SKIP
    2
    """

    def __init__(
        self,
        pool: SocketPool,
        deadline: float | None = None,
        *,
        on_wait: Callable[[float | None, Retrying | None, float | None], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_confirmed: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self.deadline = deadline
        self._on_wait = on_wait
        # Asked while the caller waits: once true, delivery ends STOP_GRACE_SECONDS later at the
        # latest (_stop_by), whatever deadline send() or finish() has.
        self._should_stop = should_stop
        self._stop_by: float | None = None
        self._told_wait = False
        size = pool.settings.pool_size
        self._queue: queue.Queue[Batch | None] = queue.Queue(
            maxsize=QUEUE_BATCHES_PER_CONNECTION * size
        )
        self._workers: list[_Worker] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = DeliveryStats()
        self._failure: DeliveryError | None = None
        self._finished = False
        self._progress = ConfirmedProgress(on_confirmed)
        # Set while send() waits for confirmations (LAG_IN_FLIGHTS): idle workers confirm what
        # they hold (json_lines closes only when it must, beats reads ACKs only when it writes).
        self._flush = threading.Event()
        self._largest_batch = 0
        self.confirm_on_finish = True
        self.batch_format = BEATS_FRAMES if pool.settings.protocol == PROTOCOL_BEATS else JSON_LINES
        """How ``send`` takes batches: the pipeline builds them so (``ship_object``)."""

    def send(
        self,
        batch: bytes,
        events: int,
        end_offset: int | None = None,
        line_offsets: list[int] | None = None,
    ) -> None:
        """Queue a batch in ``batch_format`` (complete JSON lines, or beats ``J`` frames) for
        delivery; blocks while the queue is full.

        ``end_offset`` is the byte offset in the source object just past the batch's last line
        (the offset of the next line to read). The pipeline always passes it: it is what
        ``confirmed_offset`` reports once this batch and every earlier one are confirmed. Callers
        that resume nothing may leave it out. ``line_offsets``, the offset of each event's line,
        lets a part of the batch (a beats window smaller than it) advance ``confirmed_offset``
        on its own.

        Raises DeliveryError when delivery has already failed or the deadline passes while
        waiting, ValueError when ``batch`` is not in ``batch_format``.
        """
        if self._finished:
            raise RuntimeError("send() after finish() or abort()")
        self._raise_failure()
        if not batch:
            return
        if not self.batch_format.holds(batch):
            raise ValueError(
                f"a batch must be in the sink's format, {self.batch_format.name} "
                "(the pipeline builds it with batch_format.join)"
            )
        self._wait_for_the_oldest(len(batch), events)
        item = Batch(batch, events, self._progress.issue(end_offset, len(batch)), line_offsets)
        if not self._workers or (
            self._queue.qsize() > 0 and len(self._workers) < self._pool.settings.pool_size
        ):
            self._start_worker()
        try:
            self._put(item)
        except DeliveryError as error:
            raise self._as_stopped(error) from error
        with self._lock:
            self._stats.events_sent += events
            self._stats.bytes_sent += len(batch)

    def finish(self, deadline: float | None = None, *, confirm: bool = True) -> DeliveryStats:
        """Write everything queued, then confirm each connection used by closing it gracefully.

        ``deadline`` (a ``time.monotonic()`` value) replaces the send deadline: flushing and
        closing may use the time the caller kept in reserve. With ``confirm=False`` the
        connections go back to the pool open, still holding their unconfirmed batches; a later
        ``finish()`` (or ``LogstashSender(pool).finish(deadline)``) confirms them, and nothing
        counts as delivered until then. A confirming finish also confirms such idle pooled
        connections. Raises DeliveryError when delivery fails or the deadline passes.
        """
        if self._finished:
            raise RuntimeError("finish() called twice, or after abort()")
        self._finished = True
        self.deadline = _sooner(deadline, self._stop_by)
        self.confirm_on_finish = confirm
        self._notice_stop()
        try:
            for _ in self._workers:
                self._put(None)
            for worker in self._workers:
                self._join(worker)
                if worker.is_alive():
                    raise DeliveryError("a Logstash writer did not finish by the deadline")
            self._raise_failure()
            self._raise_if_aborted()
            if confirm:
                self._confirm_idle_pooled()
        except DeliveryError as error:
            self.abort()
            raise self._as_stopped(error) from error
        except BaseException:
            self.abort()
            raise
        with self._lock:
            return replace(self._stats)

    def abort(self) -> None:
        """Stop the workers and close their connections; nothing they carry counts as delivered.
        A ``send`` or ``finish`` running in another thread meanwhile raises DeliveryError."""
        self._finished = True
        self._stop.set()
        for worker in self._workers:
            worker.interrupt()
        end = time.monotonic() + ABORT_JOIN_SECONDS
        for worker in self._workers:
            worker.join(max(0.0, end - time.monotonic()))

    @property
    def confirmed_offset(self) -> int | None:
        """The ``end_offset`` of the longest prefix of this sender's batches, in send order, that
        is confirmed (json_lines: the connection that carried it closed gracefully), or None
        while none is. A retry resumes there. Correct even when another sender confirms the
        batches (a later ``LogstashSender(pool).finish()`` after ``finish(confirm=False)``);
        safe to read from any thread."""
        return self._progress.offset

    @property
    def progress(self) -> ConfirmedProgress:
        """What ``confirmed_offset`` reads, to keep past the sender: it stays correct while
        another sender confirms the batches, without keeping this one's queue and threads."""
        return self._progress

    @property
    def stopping(self) -> bool:
        """Whether the caller asked to stop (``should_stop``): delivery ends within the stop's
        grace."""
        return self._stop_by is not None

    @property
    def stats(self) -> DeliveryStats:
        """A snapshot of the counters so far."""
        with self._lock:
            return replace(self._stats)

    @property
    def waiting_for_ack(self) -> float | None:
        """Seconds the longest-waiting of this sender's connections has been waiting for Logstash
        to acknowledge what it wrote (beats: keep-alives do not end the wait), or None when none
        is waiting. Safe to read from any thread."""
        return _seconds_since(conn.waiting_since for conn in self._connections())

    @property
    def not_reading(self) -> float | None:
        """Seconds since Logstash last read from the longest-blocked of this sender's
        connections, while a write (or json_lines' confirmation) waits for it to read, or None
        when none waits so. Safe to read from any thread."""
        return _seconds_since(conn.unread_since for conn in self._connections())

    def _connections(self) -> list[Connection]:
        """The connections this sender's workers hold now (any thread)."""
        return [conn for worker in self._workers if (conn := worker.conn) is not None]

    @property
    def retrying(self) -> Retrying | None:
        """The connection that has failed longest in a row, reconnecting (any thread); None when
        none is."""
        found = [state for worker in self._workers if (state := worker.retrying()) is not None]
        return max(found, key=lambda state: state.seconds) if found else None

    # Called by workers.

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def fail(self, error: DeliveryError) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = error
        self._stop.set()

    def next_batch(self, while_idle: Callable[[], None]) -> Batch | _Flush | None:
        """The next batch, or None when finish() says there are no more; ``_FLUSH`` while none
        comes because send() waits for confirmations. ``while_idle`` is called after every wait
        slice without one (the worker tends its connection)."""
        while True:
            if self._stop.is_set():
                raise _StoppedError
            try:
                return self._queue.get(timeout=WAIT_SLICE_SECONDS)
            except queue.Empty:
                if self._flush.is_set():
                    return _FLUSH
                while_idle()

    @property
    def pool(self) -> SocketPool:
        return self._pool

    @property
    def stopped(self) -> threading.Event:
        return self._stop

    # Internals.

    def _start_worker(self) -> None:
        worker = _Worker(self, name=f"logstash-writer-{len(self._workers)}")
        self._workers.append(worker)
        worker.start()

    def _lag_limit(self, size: int, events: int) -> int:
        """How many bytes may be in flight from the oldest batch not yet confirmed, with a batch
        of ``size`` bytes and ``events`` events to send: ``LAG_IN_FLIGHTS`` times what the pool
        holds when healthy (each connection's windows or carry, and the queue's batches)."""
        largest = self._largest_batch = max(self._largest_batch, size)
        if self._pool.settings.protocol == PROTOCOL_BEATS:
            window = min(largest, self._pool.window * size // max(events, 1))
            per_connection = PIPELINED_WINDOWS * window
        else:
            per_connection = self._pool.confirm_within + largest
        queued = QUEUE_BATCHES_PER_CONNECTION * largest
        return LAG_IN_FLIGHTS * self._pool.settings.pool_size * (per_connection + queued)

    def _wait_for_the_oldest(self, size: int, events: int) -> None:
        """Before a batch of ``size`` bytes goes out: wait while the bytes in flight from the
        oldest batch not yet confirmed would pass ``_lag_limit``, the idle workers confirming
        what they hold; DeliveryError at the deadline, as a full queue gives."""
        limit = self._lag_limit(size, events) - size
        progress = self._progress
        if progress.open_bytes <= limit:
            return
        self._flush.set()
        try:
            while not progress.wait_below(limit, WAIT_SLICE_SECONDS):
                self._raise_failure()
                self._raise_if_aborted()
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise DeliveryError(
                        "Logstash did not confirm the oldest batch in flight before the deadline"
                    )
                self._waited()
        except DeliveryError as error:
            raise self._as_stopped(error) from error
        finally:
            self._flush.clear()
            self._wait_over()

    def _put(self, item: Batch | None) -> None:
        try:
            while True:
                self._raise_failure()
                self._raise_if_aborted()
                try:
                    self._queue.put(item, timeout=WAIT_SLICE_SECONDS)
                    return
                except queue.Full:
                    if self.deadline is not None and time.monotonic() >= self.deadline:
                        raise DeliveryError(
                            "Logstash did not take the batches before the deadline"
                        ) from None
                    self._waited()
        finally:
            self._wait_over()

    def _join(self, worker: _Worker) -> None:
        """Wait for ``worker`` to end, at most until a little past the deadline (which a stop
        may bring closer while waiting)."""
        started = time.monotonic()
        try:
            while True:
                end = _join_end(self.deadline, started)
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return
                worker.join(WAIT_SLICE_SECONDS if left is None else min(WAIT_SLICE_SECONDS, left))
                if not worker.is_alive():
                    return
                self._waited()
        finally:
            self._wait_over()

    def _as_stopped(self, error: DeliveryError) -> DeliveryError:
        """``error``, said as what it is once the caller asked to stop: the stop's grace, not
        Logstash, ended the delivery (a deadline the caller never set)."""
        if self._stop_by is None:
            return error
        return DeliveryError(
            f"stopped (Ctrl-C or SIGTERM) before Logstash confirmed every batch: {error}"
        )

    def _notice_stop(self) -> None:
        """Once the caller asks to stop, end delivery STOP_GRACE_SECONDS from now at the latest:
        the workers give up then (``deadline``), and what they had not confirmed is not counted
        as delivered."""
        if self._stop_by is None and self._should_stop is not None and self._should_stop():
            self._stop_by = time.monotonic() + STOP_GRACE_SECONDS
            self.deadline = _sooner(self.deadline, self._stop_by)

    def _waited(self) -> None:
        """The caller's thread waited a slice for the workers: tell ``on_wait``."""
        self._notice_stop()
        if self._on_wait is not None:
            self._told_wait = True
            self._on_wait(self.waiting_for_ack, self.retrying, self.not_reading)

    def _wait_over(self) -> None:
        """The caller's thread stopped waiting: tell ``on_wait`` (None) if it was told."""
        if self._told_wait and self._on_wait is not None:
            self._told_wait = False
            self._on_wait(None, None, None)

    def _raise_failure(self) -> None:
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise DeliveryError(str(failure)) from failure

    def _raise_if_aborted(self) -> None:
        """DeliveryError when ``abort`` ran meanwhile, from another thread (called after
        ``_raise_failure``, which names a writer's failure first): its writers left quietly,
        confirming nothing, and a ``finish`` that returned would count their batches as
        delivered."""
        if self._stop.is_set():
            raise DeliveryError("delivery was aborted")

    def _confirm_idle_pooled(self) -> None:
        """Confirm connections earlier senders left unconfirmed in the pool, in this thread."""
        worker = _Worker(self, name="logstash-confirm")
        while True:
            self._raise_if_aborted()
            self._notice_stop()
            conn = self._pool.take_unconfirmed_idle(self.deadline, self._stop)
            if conn is None:
                return
            worker.adopt(conn)
            try:
                worker.confirm_current()
                worker.hand_back()
            except _StoppedError:
                self._raise_failure()
                raise DeliveryError("delivery was aborted") from None
            finally:
                worker.drop_connection()
            self._raise_failure()


class _Worker(threading.Thread):
    """Writes batches on one pooled connection; on loss, resends what it had not confirmed."""

    def __init__(self, sender: LogstashSender, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._sender = sender
        self._pool = sender.pool
        self._conn: Connection | None = None
        self._failures = 0
        self._first_failure = 0.0
        self._last_failure = ""
        self._last_refused = False  # the last failure: nothing listened (ECONNREFUSED)
        self._churn = 0  # connections lost in a row soon after confirming on them

    def run(self) -> None:
        try:
            while True:
                batch = self._sender.next_batch(self._tend)
                if batch is None:
                    break
                if isinstance(batch, _Flush):
                    # Confirm, and give the connection back: a beats one stays open, and another
                    # worker may hold the oldest batch, waiting for a slot (the pool capped).
                    if self._conn is not None and self._conn.has_unconfirmed():
                        self.confirm_current()
                    self.hand_back()
                    continue
                self._deliver(batch)
            if self._sender.confirm_on_finish:
                self.confirm_current()
            self.hand_back()
        except DeliveryError as error:
            self._sender.fail(error)
        except _StoppedError:
            pass
        except Exception as error:  # a bug must still unblock the caller, with the cause
            self._sender.fail(DeliveryError(f"Logstash writer crashed: {error!r}"))
            raise
        finally:
            self.drop_connection()

    def retrying(self) -> Retrying | None:
        """Failures in a row of this worker's connections, while it has none and reconnects (any
        thread): a connection that came back is not news until it fails."""
        failures = self._failures
        if not failures or self._conn is not None:
            return None
        settings = self._pool.settings
        seconds = time.monotonic() - self._first_failure
        return Retrying(
            failures,
            seconds,
            self._last_failure,
            refused_by=f"{settings.host}:{settings.port}" if self._last_refused else None,
            gives_up_in=max(0.0, GIVE_UP_AFTER_STALL_TIMEOUTS * settings.stall_timeout - seconds),
        )

    @property
    def conn(self) -> Connection | None:
        """The connection it writes on now, or None (any thread: for progress displays)."""
        return self._conn

    def interrupt(self) -> None:
        """Close the socket under a blocked write or read (from another thread) so it returns."""
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    def adopt(self, conn: Connection) -> None:
        self._conn = conn

    def hand_back(self) -> None:
        """Return the current connection to the pool for reuse: a beats connection after its
        windows were acknowledged, or any one with ``finish(confirm=False)``. One that
        ``SocketPool.close`` shut down meanwhile is closed (``drop_connection``)."""
        conn = self._conn
        if conn is None:
            return
        if conn.interrupted:
            self.drop_connection()
            return
        self._conn = None
        self._pool.release(conn)

    def drop_connection(self) -> None:
        """Close the current connection (if any): nothing unconfirmed on it counts as delivered,
        but what its last ACKs confirmed does (beats reads the ACKs that arrived as it closes)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.discard(conn)
            self._confirmed(conn.take_confirmed())

    def confirm_current(self) -> None:
        """Confirm everything on the current connection; on loss resend its batches elsewhere
        and repeat. A json_lines connection is closed by its confirmation, a beats one stays."""
        while self._conn is not None:
            conn = self._conn
            lost = self._counting_confirmed(conn, conn.confirm)
            if lost is not None:
                self._resend(self._lose(lost))
                continue
            if conn.closed:
                self._pool.discard(conn)
                self._conn = None
            return

    def _tend(self) -> None:
        """While no batch comes (the source stalls): let the connection read its ACKs and probe
        its windows in flight (``Connection.while_idle``); on loss, resend them elsewhere."""
        conn = self._conn
        if conn is None:
            return
        lost = self._counting_confirmed(conn, conn.while_idle)
        if lost is not None:
            self._resend(self._lose(lost))

    def _counting_confirmed(
        self, conn: Connection, action: Callable[[float | None], None]
    ) -> ConnectionLostError | None:
        """Run ``action`` (a method of ``conn``) until the deadline and count what it confirmed,
        also when it fails (it moves the offset); the loss, if the connection broke."""
        try:
            action(self._sender.deadline)
        except ConnectionLostError as error:
            return error
        finally:
            self._confirmed(conn.take_confirmed())
        return None

    def _confirmed(self, batches: list[Batch]) -> None:
        """Count confirmed batches: their senders' progress, our stats, the pool's limits."""
        if not batches:
            return
        self._failures = 0
        for batch in batches:
            batch.confirmed()
        self._pool.confirmed(batches)
        self._sender.count(
            events_confirmed=sum(batch.events for batch in batches),
            bytes_confirmed=sum(len(batch.data) for batch in batches),
        )

    def _deliver(self, batch: Batch) -> None:
        self._resend([batch])

    def _resend(self, batches: list[Batch]) -> None:
        """Write ``batches`` in order, reconnecting (and resending) until all are written.

        json_lines: a connection is confirmed before it would carry more than the pool's current
        limit, and a batch larger than the limit is cut at line boundaries, so that a peer which
        closes connections after some bytes still gets everything, a confirmed part at a time.
        Beats: a batch with more events than the current window is cut into windows.
        """
        pending = batches
        while pending:
            if self._sender.stopped.is_set():
                # Aborted (or another writer failed) while this one reconnected or wrote: a
                # connection that opened after `abort` gave up waiting for this thread must
                # carry nothing, or the peer reads batches already counted as not delivered.
                raise _StoppedError
            if self._conn is None:
                self._connect(pending)
                continue
            conn = self._conn
            parts = self._pool.fit(pending[0])
            if len(parts) > 1:
                pending[:1] = parts
            batch = pending[0]
            if conn.must_confirm_before(batch, self._pool.confirm_within):
                self._sender.count(rotations=1)
                self.confirm_current()
                continue
            try:
                conn.write(batch, self._sender.deadline)
            except ConnectionLostError as error:
                # The batch that failed is already among the connection's unconfirmed.
                pending = self._lose(error) + pending[1:]
                continue
            finally:
                self._confirmed(conn.take_confirmed())
            pending = pending[1:]

    def _connect(self, pending: list[Batch]) -> None:
        inherited: list[Batch] = []
        settled: list[Batch] = []
        try:
            self._conn = self._pool.acquire(
                self._sender.deadline, inherited, self._sender.stopped, settled
            )
        except ConnectionLostError as error:
            if not error.capped:
                self._back_off(error)
            return
        finally:
            # Batches a dead pooled connection still held go first, like any unconfirmed ones,
            # and count as resent (the peer may have read them before the connection died);
            # those its last ACKs confirmed count as confirmed.
            pending[:0] = inherited
            self._confirmed(settled)
            if inherited:
                self._sender.count(
                    retries=len(inherited),
                    events_resent=sum(batch.events for batch in inherited),
                )
        if self._conn.times_lent == 1:
            self._sender.count(connections_opened=1)

    def _lose(self, error: ConnectionLostError) -> list[Batch]:
        """Drop the broken connection; return the batches it had not confirmed (_StoppedError
        once the sender stopped)."""
        conn = self._conn
        assert conn is not None
        self._conn = None
        if self._sender.stopped.is_set():
            # Our own `abort` shut the socket (or another writer failed): no news of the peer,
            # whose limits (connections, window) must not shrink for it, and nothing to resend.
            self._pool.discard(conn)
            raise _StoppedError
        conn.close()
        capped = self._pool.lost_unconfirmed(conn)
        batches = conn.take_unconfirmed()
        self._pool.discard(conn)
        self._sender.count(
            reconnects=1,
            retries=len(batches),
            events_resent=sum(batch.events for batch in batches),
        )
        # Turned away at a cap, the pool now opens fewer: no reason to wait. Dropped after
        # confirming on it, the peer is alive: no reason to give up, but a reason to wait when it
        # keeps happening.
        if conn.made_progress:
            self._wait_after_churn(conn)
        elif not capped:
            self._back_off(error)
        return batches

    def _wait_after_churn(self, conn: Connection) -> None:
        """Wait before replacing ``conn``, lost after confirming on it: not at all if it lasted
        ``CHURN_RESET_SECONDS``, else longer for each such loss in a row (full jitter, as
        ``_back_off``); DeliveryError when the deadline comes first, as ``_back_off`` does, so
        that the time left goes to the hand-off, not to a wait."""
        now = time.monotonic()
        if now - conn.opened_at >= CHURN_RESET_SECONDS:
            self._churn = 0
            return
        self._churn += 1
        delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**self._churn))
        deadline = self._sender.deadline
        if deadline is not None and deadline - now <= delay:
            raise DeliveryError(
                f"{conn.peer} keeps closing connections after acknowledging, and the deadline "
                "is near"
            )
        if self._sender.stopped.wait(delay):
            raise _StoppedError

    def _back_off(self, error: ConnectionLostError) -> None:
        """Wait before reconnecting (full jitter); DeliveryError once it is time to give up."""
        now = time.monotonic()
        if self._failures == 0:
            self._first_failure = now
        self._last_failure = str(error)
        self._last_refused = error.no_listener
        self._failures += 1
        stall = self._pool.settings.stall_timeout
        failing_for = now - self._first_failure
        gave_up_ago = self._pool.gave_up_lately() if error.outage else None
        check = (
            f"check the host name ({ENV.LOGSTASH_HOST}, the host of --to) and this machine's DNS"
            if error.unresolved
            else "check that it is up and its pipeline is not blocked"
        )
        if gave_up_ago is not None:
            # Down still (no connection, or a stall), as when delivery last gave up on it: no
            # second minute of retries. A reset or a close is no such sign: retried as ever.
            raise DeliveryError(
                f"Logstash at {self._pool.settings.host}:{self._pool.settings.port} still fails "
                f"(last: {error}), as it did when delivery gave up on it {gave_up_ago:.0f}s ago; "
                f"{check}"
            ) from error
        if (
            self._failures >= GIVE_UP_AFTER_FAILURES
            and failing_for >= GIVE_UP_AFTER_STALL_TIMEOUTS * stall
        ):
            self._pool.gave_up()
            raise DeliveryError(
                f"Logstash at {self._pool.settings.host}:{self._pool.settings.port} failed "
                f"{self._failures} times in {failing_for:.1f}s without reading our events "
                f"(last: {error}); {check}{self._mismatch_hint(error)}"
            ) from error
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**self._failures)
        delay = random.uniform(0, ceiling)
        deadline = self._sender.deadline
        if deadline is not None and deadline - now <= delay:
            self._unreachable(error, near=not self._sender.stopping)
        # In slices: a stop asked meanwhile ends the retries of a Logstash that is down at once.
        # The stop's grace is for a Logstash that confirms what it holds; one that refuses, or
        # that no connection reaches, holds nothing of ours, and may stay down for minutes.
        end = now + delay
        while True:
            if error.outage and self._sender.stopping:
                self._unreachable(error, near=False)
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._sender.stopped.wait(min(left, WAIT_SLICE_SECONDS)):
                raise _StoppedError

    @staticmethod
    def _unreachable(error: ConnectionLostError, *, near: bool) -> NoReturn:
        """Give up on a Logstash that cannot be reached: the deadline is ``near``, or a stop was
        asked (not ``near``: ``_as_stopped`` says it was the stop; the command has no deadline)."""
        near_text = " and the deadline is near" if near else ""
        raise DeliveryError(f"Logstash is unreachable{near_text} (last: {error})") from error

    def _mismatch_hint(self, error: ConnectionLostError) -> str:
        """For a peer that took connections and dropped them (not refused, not a stall): the
        port may speak another protocol or TLS setting than the destination names, which the
        same drops give (a beats input closes at a TLS hello or a JSON line, a TLS port at
        plain bytes)."""
        if error.outage:
            return ""
        settings = self._pool.settings
        beats = settings.protocol == PROTOCOL_BEATS
        what = "a beats input" if beats else "a tcp input (json_lines)"
        what += " with TLS" if settings.tls else " without TLS"
        return (
            f"; or the port is not {what}, as the destination says ({ENV.LOGSTASH_PROTOCOL} and "
            f"{ENV.LOGSTASH_TLS}, the scheme of --to): a port of another input or TLS setting "
            "drops every connection so"
        )


def _sooner(first: float | None, second: float | None) -> float | None:
    """The earlier of two deadlines, either of which may be None (none)."""
    if first is None:
        return second
    return first if second is None else min(first, second)


def _join_end(deadline: float | None, started: float) -> float | None:
    """When to stop waiting for a worker, since ``started``: workers check the deadline
    themselves, and waiting a little past it (or past ``started``, when it has gone by) lets
    them report why."""
    if deadline is None:
        return None
    return max(deadline, started) + 2 * WAIT_SLICE_SECONDS + 1.0


def _seconds_since(times: Iterable[float | None]) -> float | None:
    """Seconds since the earliest of ``times`` (``time.monotonic()`` readings; None: none), or
    None when there is none."""
    since = [moment for moment in times if moment is not None]
    return time.monotonic() - min(since) if since else None
