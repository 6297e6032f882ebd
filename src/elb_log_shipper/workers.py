"""Run a function over items in worker processes: results in input order, progress summed,
Ctrl-C and SIGTERM passed on, a dead worker reported as a failed item.

Pure of S3 and Logstash: the caller brings a picklable ``function(item, context)`` and an
``initializer`` that builds what each process keeps for its life (an S3 client, a socket pool).
Parsing ALB lines is CPU-bound Python, so a backfill only uses more than one core from several
processes; this module is how the ``ship`` command gets them.

    stop = threading.Event()
    with StopSignals(stop).installed():
        run_in_processes(ship_planned, objects, report, jobs=usable_cpus(), stop=stop,
                         initializer=open_clients, initargs=(settings,))

What the parent sees:

- ``on_result(index, result)`` for each item started, in input order, exactly once: what
  ``function`` returned, or an ``ItemFailed`` when it raised or its process died (killed,
  segfault), with the last checkpoint the item posted (``context.set_checkpoint``: how far it
  got for good, which died with the process otherwise). The items handed back are always
  ``items[:n]``; that prefix is what makes a resume point exact.
- ``on_progress(count, size)`` with the increments the children post through
  ``context.add_progress`` (items of work done, and their size), summed by the caller.
- After ``stop`` is set (``StopSignals``: the first Ctrl-C or SIGTERM), no item starts, and
  ``context.should_stop()`` turns True in every child: a function that checks it between batches
  returns early, saying how far it got, and that result is handed back like any other; a
  worker whose item has not come back ``STOP_KILL_SECONDS`` after the stop (hung, or deaf to
  the flag) is killed, and its item fails. A second Ctrl-C raises KeyboardInterrupt out of
  ``run_in_processes``, which kills the workers first.
- ``on_silent({index: seconds})`` as the set changes and about every tick while it is not
  empty: the items whose worker has posted nothing (progress, a note, a checkpoint,
  ``context.keep_alive``) for ``SILENT_NOTE_SECONDS`` or more, and for how long (a stalled
  read, a deadlock, a process stopped by SIGSTOP all look alike from here). A worker silent
  for ``SILENT_KILL_SECONDS`` is killed, and its item fails from its checkpoint, as after the
  stop: a worker that will never answer must not hold the run forever.

Each worker talks to the parent over its own pipe, and the stop flag is a shared byte read
without a lock: no lock is shared between processes, so a worker killed at any moment cannot
leave one held, and nothing needs POSIX semaphores (which AWS Lambda lacks).

Start method: ``forkserver``, measured (``python -m bench.start_method_bench``: two workers
ready with the CLI imported and an S3 client each, best of 3 on this 2-core machine). ``fork``
takes 13-20 ms but copies whatever the parent's other threads hold at that moment (the progress
line's lock, boto3's and the logging module's locks, a Logstash writer mid-send); Python 3.12
warns about forking a threaded process, and 3.14 makes forkserver the default. ``spawn`` takes
0.29-0.31 s for every two workers: each imports boto3 and the pipeline again, CPU the other
workers need. ``forkserver`` starts one clean, single-threaded server that imports ``preload``
once (0.25 s for the first two workers); each further worker is a fork of it and pays only its
initializer (0.09 s for two: the S3 clients).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import multiprocessing
import os
import pickle
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing import connection, forkserver, resource_tracker
from types import FrameType
from typing import Any, Final, Generic, Protocol, TypeVar

__all__ = [
    "SILENT_KILL_SECONDS",
    "SILENT_NOTE_SECONDS",
    "START_METHOD",
    "STOP_KILL_SECONDS",
    "ItemFailed",
    "StopSignals",
    "WatchedTime",
    "WorkerContext",
    "WorkerStartError",
    "run_in_processes",
    "usable_cpus",
]

T = TypeVar("T")
R = TypeVar("R")

# See the module docstring for why not fork or spawn.
START_METHOD: Final = "forkserver"
# How often the parent wakes up without news (the progress line, the stop flag).
TICK_SECONDS = 0.2
# A child posts its progress increments at most this often: a line a few times a second is all
# the display needs, and a post per batch would be a pipe write every few hundred events.
PROGRESS_POST_SECONDS = 0.1
# Results that may wait for an earlier, slower item before being handed back, per job: enough to
# keep every worker busy behind one slow item, few enough that waiting output stays small.
REORDER_WINDOW_PER_JOB = 2
# A worker told to exit (after its finalizer) gets this long before it is killed.
EXIT_JOIN_SECONDS = 10.0
# After Ctrl-C or SIGTERM, how long an item in flight has to come back before its worker is
# killed (the item fails, from its checkpoint): the shipper's sender gives Logstash 5 s more
# (STOP_GRACE_SECONDS) and a batch takes a fraction of a second, while `docker stop` sends
# SIGKILL after 10 s, by when the command must have said how to resume.
STOP_KILL_SECONDS = 8.0
# A healthy worker posts at least every second: progress as it reads and parses, a changing note
# or ``keep_alive`` while it waits for Logstash. Silent for a minute (twice the S3 client's 30 s
# read timeout) it is worth a word on the progress line: a stalled read, a hang, a SIGSTOP.
SILENT_NOTE_SECONDS = 60.0
# Silent this long, a worker is killed and its item fails from its checkpoint (the printed
# command ships the rest). Five times what a stalled S3 read takes to fail on its own (a 30 s read
# timeout, then MAX_READ_RETRIES resumes that stall too: 2 minutes), so that only a worker that
# will never answer is killed; a worker that would have answered costs a failed object and the
# lines it sent beyond its checkpoint twice, one that never answers costs the whole run.
SILENT_KILL_SECONDS = 600.0
# A worker that waits (``keep_alive``) posts so at most this often.
KEEP_ALIVE_POST_SECONDS = 1.0
# Starting a worker takes descriptors in two processes, and running short midway kills the fork
# server, which prints its traceback on our stderr (``_descriptors_for_a_start`` checks first).
# The fork server holds 9 (stdio, a /dev/null, its listener, alive and signal pipes, selector),
# one per worker it has started (to report its exit), and takes 7 for a start (the connection,
# and the 6 descriptors passed over it); measured on CPython 3.11, and 3.13's loop is the same.
FORK_SERVER_DESCRIPTORS = 9
FORK_SERVER_START_DESCRIPTORS = 7
# The parent's for a start, once the worker's pipe is open and the fork server runs: a socket to
# the fork server and two pipes.
PARENT_START_DESCRIPTORS = 5
# Silence counts only while the parent watches: a parent held up longer than this between two
# looks (a slow stdout in ``on_result``; Ctrl-Z stops every process of the group) counts this
# much, not the whole gap, which would find every worker silent at once.
WATCH_STEP_SECONDS = 1.0


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the system has one (Linux: a
    container or ``taskset`` may allow fewer than the machine has), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS


@dataclass(frozen=True, slots=True)
class ItemFailed:
    """An item that did not return a result: its function raised, or its process died."""

    reason: str
    details: str = ""
    """The child's traceback, when there is one."""
    size: int = 0
    """The size its progress posted (``add_progress``) before it failed: the caller's count of
    it, which no result will take back."""
    checkpoint: int | None = None
    """The last checkpoint it posted (``set_checkpoint``) before it failed, or None."""

    def __str__(self) -> str:
        return self.reason


class WorkerStartError(RuntimeError):
    """A worker process could not start: its initializer raised, or it died before it was ready.
    Every item would fail the same way, so the run stops: no item starts, and the error is
    raised once the items in flight are handed back (a replacement for a worker that died
    mid-run must not cost the other workers' objects, nor the results that say how far the
    run got)."""

    def __init__(self, reason: str, *, out_of_descriptors: bool = False) -> None:
        super().__init__(f"a worker process could not start: {reason}")
        self.reason = reason
        """Why: the initializer's error, or how the process ended."""
        self.out_of_descriptors = out_of_descriptors
        """The descriptor limit (``ulimit -n``) was too low: the run's configuration."""


def _start_failure(error: BaseException) -> WorkerStartError:
    """Why a worker could not start, with the remedy when the process ran out of descriptors
    (each worker takes a few: its pipe, the fork server's socket, its own S3 and Logstash ones)."""
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return WorkerStartError(
            f"{error.strerror} (the limit is {soft}): raise it (ulimit -n) or ship with fewer "
            "--jobs",
            out_of_descriptors=True,
        )
    return WorkerStartError(repr(error))


def _descriptors_for_a_start(started: int) -> None:
    """Raise OSError(EMFILE) unless both this process and the fork server, which has
    ``started`` workers alive, have the descriptors a worker's start takes: one that runs out
    midway kills the fork server, which prints a traceback, and says only ``EOFError``."""
    # Started first (each keeps a descriptor of ours), where running short fails cleanly.
    resource_tracker.ensure_running()
    forkserver.ensure_running()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    too_many = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    if soft != resource.RLIM_INFINITY and (
        soft < FORK_SERVER_DESCRIPTORS + started + FORK_SERVER_START_DESCRIPTORS
    ):
        raise too_many
    taken: list[int] = []
    try:
        # extend appends each as it is opened: those opened before an EMFILE are closed too.
        taken.extend(os.open(os.devnull, os.O_RDONLY) for _ in range(PARENT_START_DESCRIPTORS))
    finally:
        for fd in taken:
            os.close(fd)


class ItemContext(Protocol):
    """What ``function`` may ask of the run while it works on an item."""

    def should_stop(self) -> bool:
        """True once the run is stopping: return early at the next safe point."""

    def add_progress(self, count: int, size: int = 0) -> None:
        """Add ``count`` things done, of ``size`` (say lines, and the bytes read for them), to the
        run's progress (summed over all workers in the parent)."""

    def set_note(self, note: str | None) -> None:
        """Say what this item waits for (the parent's ``on_note``), or that it no longer waits."""

    def set_checkpoint(self, checkpoint: int | None) -> None:
        """Say how far this item got for good (the shipper: the offset up to which Logstash
        confirmed its lines), for the ``ItemFailed`` the parent hands back if the process dies.
        Any thread of the item's may call it, until ``function`` returns."""

    def keep_alive(self) -> None:
        """Say this item is not hung though it makes no progress (it waits for Logstash): a
        worker that posts nothing for ``SILENT_KILL_SECONDS`` is killed. Cheap to call often."""


class WorkerContext:
    """The child side of ``ItemContext``: the shared stop flag and the pipe to the parent."""

    def __init__(self, conn: connection.Connection, stop_flag: Any) -> None:
        self._conn = conn
        # set_checkpoint may come from another thread of the item's (a Logstash writer, as an
        # ACK is read): one message at a time in the pipe.
        self._posting = threading.Lock()
        self._stop_flag = stop_flag
        self._unposted = 0
        self._unposted_size = 0
        self._posted_at = time.monotonic()
        self._note: str | None = None
        self._checkpoint: int | None = None
        self._alive_at = time.monotonic()

    def should_stop(self) -> bool:
        return bool(self._stop_flag.value)

    def add_progress(self, count: int, size: int = 0) -> None:
        self._unposted += count
        self._unposted_size += size
        now = time.monotonic()
        if now - self._posted_at >= PROGRESS_POST_SECONDS:
            self.flush()
            self._posted_at = now

    def set_note(self, note: str | None) -> None:
        if note != self._note:  # posted only when it changes: a few a second at most
            self._note = note
            self._post(("note", note))

    def set_checkpoint(self, checkpoint: int | None) -> None:
        with self._posting:  # it moves at each confirmation: a pipe write each
            if checkpoint != self._checkpoint:
                self._checkpoint = checkpoint
                # A broken pipe: the parent is gone (killed), and nobody is left to tell. Said
                # here it would end the thread that confirmed (a Logstash writer's) with a
                # traceback; the item's own thread finds out at its next post or read.
                with contextlib.suppress(OSError):
                    self._conn.send(("checkpoint", checkpoint))

    def keep_alive(self) -> None:
        now = time.monotonic()
        if now - self._alive_at >= KEEP_ALIVE_POST_SECONDS:
            self._alive_at = now
            self._post(("alive",))

    def start_item(self) -> None:
        """A new item: no checkpoint of the last one carries over."""
        with self._posting:
            self._checkpoint = None

    def flush(self) -> None:
        """Post the progress not posted yet (before a result, so the sums are complete)."""
        if self._unposted or self._unposted_size:
            self._post(("progress", self._unposted, self._unposted_size))
            self._unposted = self._unposted_size = 0

    def _post(self, message: tuple[Any, ...]) -> None:
        with self._posting:
            self._conn.send(message)


def _set_between_signals(stop: threading.Event) -> None:
    """``stop.set()`` with SIGINT and SIGTERM held back until it returns: ``StopSignals``'s
    handler sets ``stop`` too, and run inside this thread's ``set`` it would wait forever for
    the lock that ``set`` holds (an Event's lock is not reentrant)."""
    if threading.current_thread() is not threading.main_thread():
        stop.set()  # no handler runs on this thread
        return
    # The mask as it is (a query): a handler that runs when the mask changes and raises (the
    # second Ctrl-C) must not leave the signals blocked for the rest of the run.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, StopSignals.SIGNALS)
        stop.set()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class StopSignals:
    """SIGINT and SIGTERM while a run goes on: the first sets ``stop``, the second raises
    KeyboardInterrupt (quit at once).

    The handler only sets flags: printing from it could re-enter a write in progress.
    ``signal_name`` says which signal asked first, for the message that says so.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals for the duration of the ``with`` (main thread only: elsewhere
        Python delivers no signals, so there is nothing to install)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run_in_processes(
    function: Callable[[T, ItemContext], R],
    items: Sequence[T],
    on_result: Callable[[int, R | ItemFailed], None],
    *,
    jobs: int,
    stop: threading.Event,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    finalizer: Callable[[], None] | None = None,
    on_progress: Callable[[int, int], None] = lambda count, size: None,
    on_note: Callable[[str | None], None] = lambda note: None,
    on_tick: Callable[[], None] = lambda: None,
    is_fatal: Callable[[R | ItemFailed], bool] = lambda result: False,
    on_silent: Callable[[Mapping[int, float]], None] = lambda silent: None,
    preload: Sequence[str] = (),
    tick_seconds: float = TICK_SECONDS,
    silent_note_seconds: float | None = None,
    silent_kill_seconds: float | None = None,
) -> int:
    """Run ``function(item, context)`` on every item in up to ``jobs`` worker processes; return
    how many results were handed back (always a prefix of ``items``).

    ``function``, ``initializer``, ``finalizer``, the items and the results must be picklable
    (module-level functions, plain data). Each worker runs ``initializer(*initargs)`` once, then
    items one at a time, then ``finalizer()`` when told to exit; it sees the parent's
    environment as it is now (``os.environ``), not as it was when the fork server started.
    ``preload`` names modules the fork server imports once, so that workers start warm.

    ``on_result``, ``on_progress``, ``on_note`` (a worker's ``context.set_note``: the last one
    posted by any worker), ``on_tick`` (about every ``tick_seconds``) and ``on_silent`` (the
    items silent for ``silent_note_seconds`` or more, and for how long; a worker silent for
    ``silent_kill_seconds`` is killed, and its item fails) run in the calling thread. The two
    default to ``SILENT_NOTE_SECONDS`` and ``SILENT_KILL_SECONDS``. No item starts once
    ``stop`` is set or once a result ``is_fatal`` (judged as it arrives, even before the
    results ahead of it are handed back); the items in flight are told to stop
    (``context.should_stop()``) only when ``stop`` is set.
    A worker that dies is replaced while items remain. Raises WorkerStartError when a worker
    cannot start (after the items in flight are handed back, as after a fatal result),
    KeyboardInterrupt from a second Ctrl-C; either way the workers are gone.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    run = _Run(
        function=function,
        items=items,
        on_result=on_result,
        on_progress=on_progress,
        on_note=on_note,
        is_fatal=is_fatal,
        spec=_WorkerSpec(initializer, initargs, finalizer, dict(os.environ)),
        preload=preload,
        silence=_SilenceWatch(
            on_silent,
            SILENT_NOTE_SECONDS if silent_note_seconds is None else silent_note_seconds,
            SILENT_KILL_SECONDS if silent_kill_seconds is None else silent_kill_seconds,
            WatchedTime(max(WATCH_STEP_SECONDS, 2 * tick_seconds)),
        ),
    )
    try:
        return run.loop(jobs, stop, on_tick, tick_seconds)
    except BaseException:
        run.kill_all()
        raise
    finally:
        run.close_all()


@dataclass(slots=True)
class WatchedTime:
    """Time that counts only while someone watches: each ``step()`` is the time since the last
    look, at most ``longest`` (``WATCH_STEP_SECONDS``). A watcher held up between two looks (a
    slow stdout; Ctrl-Z stops every process of the group) counts that much of the gap, not all
    of it, which would find everything it watches silent at once.

    >>> clock = WatchedTime(longest=1.0)
    >>> 0.0 <= clock.step() < 1.0
    True
    """

    longest: float = WATCH_STEP_SECONDS
    _at: float = field(default_factory=time.monotonic)

    def step(self) -> float:
        now = time.monotonic()
        step = min(now - self._at, self.longest)
        self._at = now
        return step


@dataclass(slots=True)
class _SilenceWatch:
    """What ``_Run.watch_silence`` needs: the callback, the two bounds, the watcher's time."""

    on_silent: Callable[[Mapping[int, float]], None]
    note_seconds: float
    kill_seconds: float
    clock: WatchedTime
    told: bool = False  # on_silent last heard of some item: it must hear when none is left


@dataclass(frozen=True, slots=True)
class _WorkerSpec:
    initializer: Callable[..., None] | None
    initargs: tuple[Any, ...]
    finalizer: Callable[[], None] | None
    environ: Mapping[str, str]


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any) -> None:
        self.process = process
        self.conn: connection.Connection = conn
        self.ready = False
        self.index: int | None = None  # the item in flight
        self.posted_size = 0  # its progress's size so far
        self.note: str | None = None  # what it last said it waits for
        self.checkpoint: int | None = None  # the item's, for an ItemFailed
        self.silent = 0.0  # seconds the parent watched its item without a message from it
        self.killed: str | None = None  # why we killed it, its item's ItemFailed reason


class _Run(Generic[T, R]):
    def __init__(
        self,
        *,
        function: Callable[[T, ItemContext], R],
        items: Sequence[T],
        on_result: Callable[[int, R | ItemFailed], None],
        on_progress: Callable[[int, int], None],
        on_note: Callable[[str | None], None],
        is_fatal: Callable[[R | ItemFailed], bool],
        spec: _WorkerSpec,
        preload: Sequence[str],
        silence: _SilenceWatch,
    ) -> None:
        self.function = function
        self.items = items
        self.on_result = on_result
        self.on_progress = on_progress
        self.on_note = on_note
        self.is_fatal = is_fatal
        self.spec = spec
        self.silence = silence
        self.context = multiprocessing.get_context(START_METHOD)
        if preload:
            # Read when the server starts (the first run of this process); later runs reuse it.
            self.context.set_forkserver_preload(list(preload))
        # One byte in shared memory; children only read it, and a torn read of one byte cannot
        # happen, so it needs no lock.
        self.stop_flag = self.context.RawValue(ctypes.c_bool, False)
        self.workers: list[_Worker] = []
        self.waiting: dict[int, R | ItemFailed] = {}
        self.started = 0
        self.done = 0
        self.halted = False
        self.start_error: WorkerStartError | None = None  # a worker could not start: all stop
        self.stopped_at: float | None = None  # when the loop first saw ``stop`` set

    def loop(
        self, jobs: int, stop: threading.Event, on_tick: Callable[[], None], tick_seconds: float
    ) -> int:
        window = REORDER_WINDOW_PER_JOB * jobs
        while True:
            if self.stop_flag.value and not stop.is_set():  # a worker got SIGTERM: all stop
                _set_between_signals(stop)
            if stop.is_set():
                self.stop_flag.value = True
                if self.stopped_at is None:
                    self.stopped_at = time.monotonic()
            stopping = self.halted or stop.is_set()
            if not stopping:
                self.dispatch(jobs, window)
            if not any(w.index is not None for w in self.workers) and (
                stopping or self.started >= len(self.items)
            ):
                self.exit_all()
                if self.start_error is not None:
                    raise self.start_error
                return self.done
            # Idle workers too: one that dies while idle (OOM, kill) is replaced, not found
            # dead by the next send.
            workers = list(self.workers)
            ready = connection.wait([w.conn for w in workers], timeout=tick_seconds)
            for worker in workers:
                if worker.conn in ready:
                    self.read(worker, stopping)
            # After the reads: a result that came while the parent was busy is not killed.
            self.kill_the_stuck()
            self.watch_silence()
            self.hand_back()
            on_tick()

    def dispatch(self, jobs: int, window: int) -> None:
        wanted = min(len(self.items), self.done + window) - self.started
        starting = sum(1 for w in self.workers if not w.ready)
        idle = [w for w in self.workers if w.ready and w.index is None]
        for worker in idle:
            if wanted <= 0:
                break
            try:
                worker.conn.send((self.started, self.items[self.started]))
            except OSError:  # it died since the last wait: nothing was in flight
                self.forget(worker)
                continue
            worker.index = self.started
            worker.posted_size = 0
            worker.checkpoint = None
            worker.silent = 0.0
            self.started += 1
            wanted -= 1
        while wanted > starting and len(self.workers) < jobs and not self.halted:
            if (started := self.start_worker()) is not None:
                self.workers.append(started)
            starting += 1

    def kill_the_stuck(self) -> None:
        """Kill the workers whose item has not come back ``STOP_KILL_SECONDS`` after the stop
        (``read`` then finds each dead, and its item failed)."""
        if self.stopped_at is None or time.monotonic() - self.stopped_at < STOP_KILL_SECONDS:
            return
        for worker in self.workers:
            if worker.index is not None and worker.killed is None:
                worker.killed = (
                    f"its worker process had not stopped {STOP_KILL_SECONDS:g} s after the "
                    "stop, and was killed"
                )
                worker.process.kill()

    def watch_silence(self) -> None:
        """Count each item's silence; tell ``on_silent`` of those silent long enough, and kill
        the workers silent ``kill_seconds`` (``read`` then finds each dead, its item failed)."""
        watch = self.silence
        step = watch.clock.step()
        silent: dict[int, float] = {}
        for worker in self.workers:
            if worker.index is None:
                continue
            worker.silent += step
            if worker.silent >= watch.note_seconds:
                silent[worker.index] = worker.silent
            if worker.silent >= watch.kill_seconds and worker.killed is None:
                worker.killed = (
                    f"its worker process had made no progress for {watch.kill_seconds:g} s, "
                    "and was killed"
                )
                worker.process.kill()
        if silent or watch.told:
            watch.told = bool(silent)
            watch.on_silent(silent)

    def cannot_start(self, why: WorkerStartError) -> None:
        """A worker could not start: start no item, and raise once the items in flight are back
        (``loop``)."""
        if self.start_error is None:
            self.start_error = why
        self.halted = True

    def start_worker(self) -> _Worker | None:
        try:
            ours, theirs = self.context.Pipe()
        except OSError as error:
            self.cannot_start(_start_failure(error))
            return None
        try:
            _descriptors_for_a_start(len(self.workers))
        except OSError as error:
            ours.close()
            theirs.close()
            self.cannot_start(_start_failure(error))
            return None
        process = self.context.Process(
            target=_worker_main,
            args=(theirs, self.stop_flag, self.function, self.spec),
            name=f"elb-log-shipper-worker-{len(self.workers)}",
            daemon=True,
        )
        try:
            process.start()
        except (EOFError, OSError) as error:  # the fork server died (Ctrl-C as it started)
            ours.close()
            self.cannot_start(_start_failure(error))
            return None
        finally:
            theirs.close()
        return _Worker(process, ours)

    def read(self, worker: _Worker, stopping: bool) -> None:
        """Take every message the worker has sent; notice when it has died.

        A worker is gone when its end of the pipe is: only it holds that end. Its process
        sentinel would not do: a forkserver child's sentinel is a socket to the fork server,
        which reports a dead server (SIGTERM to the process group) as the death of every worker.
        """
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                worker.silent = 0.0
                kind = message[0]
                if kind == "progress":
                    worker.posted_size += message[2]
                    self.on_progress(message[1], message[2])
                elif kind == "note":
                    worker.note = message[1]
                    self.on_note(worker.note)
                elif kind == "checkpoint":
                    worker.checkpoint = message[1]
                elif kind == "result":
                    _, index, result = message
                    if isinstance(result, ItemFailed):
                        result = replace(
                            result, size=worker.posted_size, checkpoint=worker.checkpoint
                        )
                    self.arrived(index, result)
                    worker.index = None
                elif kind == "ready":
                    worker.ready = True
                elif kind == "alive":
                    pass  # it waits, and is not hung: its silence is over (above)
                else:  # "init failed": it returns, closing its end of the pipe
                    self.cannot_start(WorkerStartError(message[1]))
        except (EOFError, OSError):
            pass  # its end of the pipe is closed: it died, or is dying
        else:
            return
        self.forget(worker)
        if worker.note is not None:
            # Nobody waits for what a dead worker waited for: another worker's wait, if any.
            self.on_note(next((w.note for w in self.workers if w.note is not None), None))
        if not worker.ready and not stopping:
            exited = _describe_exit(worker.process.exitcode)
            self.cannot_start(WorkerStartError(f"it {exited} before it was ready"))
        if worker.index is not None:
            self.arrived(
                worker.index,
                ItemFailed(
                    worker.killed
                    or f"its worker process {_describe_exit(worker.process.exitcode)}",
                    size=worker.posted_size,
                    checkpoint=worker.checkpoint,
                ),
            )

    def forget(self, worker: _Worker) -> None:
        """Drop a worker that died (``dispatch`` starts a replacement when one is needed)."""
        worker.process.join(EXIT_JOIN_SECONDS)
        self.workers.remove(worker)
        worker.conn.close()

    def arrived(self, index: int, result: R | ItemFailed) -> None:
        # Judged on arrival, not on hand-back: a worker that finds Logstash down must not
        # start another object while an earlier one is still running.
        if self.is_fatal(result):
            self.halted = True
        self.waiting[index] = result

    def hand_back(self) -> None:
        while self.done in self.waiting:
            result = self.waiting.pop(self.done)
            self.done += 1
            self.on_result(self.done - 1, result)
            # Judged again: handing back can find what arriving could not (stdout failing as
            # the parent copies a spool), and no other object should start.
            if self.is_fatal(result):
                self.halted = True

    def exit_all(self) -> None:
        """Tell idle workers to run their finalizer and exit; wait for them."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        end = time.monotonic() + EXIT_JOIN_SECONDS
        for worker in self.workers:
            worker.process.join(max(0.0, end - time.monotonic()))

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
        for worker in self.workers:
            worker.process.join(EXIT_JOIN_SECONDS)

    def close_all(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(EXIT_JOIN_SECONDS)
            worker.conn.close()
        self.workers.clear()


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _worker_main(
    conn: connection.Connection,
    stop_flag: Any,
    function: Callable[[Any, ItemContext], Any],
    spec: _WorkerSpec,
) -> None:
    """The body of a worker process."""
    # Ctrl-C reaches the whole process group: the parent decides what it means (it sets the
    # stop flag). SIGTERM sent to a worker (systemd stops a whole cgroup) stops the whole run
    # the same way: the parent watches the flag.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(stop_flag, "value", True))
    os.environ.clear()
    os.environ.update(spec.environ)
    try:
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which stops the run
        conn.send(("init failed", f"{type(error).__name__}: {error}"))
        return
    context = WorkerContext(conn, stop_flag)
    try:
        conn.send(("ready",))
        while (message := conn.recv()) is not None:
            index, item = message
            context.start_item()
            result: Any
            try:
                result = function(item, context)
            except Exception as error:  # noqa: BLE001 - the item fails, the worker goes on
                result = ItemFailed(f"{type(error).__name__}: {error}", traceback.format_exc())
            context.flush()
            try:
                conn.send(("result", index, result))
            except (pickle.PicklingError, TypeError, AttributeError) as error:  # not picklable
                failed = ItemFailed(f"its result could not be sent back: {error}")
                conn.send(("result", index, failed))
    except (EOFError, BrokenPipeError):
        return  # the parent is gone (killed): nobody is left to report to
    if spec.finalizer is not None:
        spec.finalizer()
