"""Progress of a ``ship`` command on stderr: a redrawn line on a terminal, plain lines otherwise.

On a terminal the line is redrawn in place (``\\r`` and erase-to-end-of-line) a few times a
second; in a log file or a CI job a plain ``progress:`` line is written every ``interval``
seconds instead, which reads well and does not fill the log with carriage returns. No
dependency: one line of text is all either needs. ``Progress`` may be told and drawn from any
thread: with one job, the command's own thread ships and a watcher draws while it is held
(``cli``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from elb_log_shipper.report import format_bytes, printable

if TYPE_CHECKING:
    from elb_log_shipper.logstash import Retrying

__all__ = [
    "DEFAULT_INTERVAL_SECONDS",
    "ObjectNotes",
    "Progress",
    "Snapshot",
    "format_duration",
    "render",
    "silence_note",
    "unread_note",
    "wait_note",
]

# A plain progress line this often when stderr is not a terminal: often enough to show a backfill
# is alive, rarely enough that an hour-long run writes a few hundred lines.
DEFAULT_INTERVAL_SECONDS = 10.0
# Redraws per second on a terminal: smooth enough to read, cheap enough not to matter.
_REDRAW_SECONDS = 0.2
_ERASE_LINE = "\r\x1b[K"
# A wait for Logstash's acknowledgement, or for it to read a write, shorter than this is a round
# trip, not news for the progress line; a longer one is a busy or blocked pipeline (beats
# keep-alives: it may last hours; json_lines: until the stall timeout breaks the connection).
ACK_WAIT_NOTE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters at one moment. Bytes are stored (compressed) bytes: of finished objects, and
    those read so far of the objects being shipped."""

    objects_done: int
    objects_total: int
    lines: int
    bytes_done: int
    bytes_total: int
    seconds: float
    verb: str = "shipped"
    note: str | None = None
    """What the command is waiting for, when it waits (``Progress.set_note``)."""
    failed: int = 0
    """Objects done that failed (or were not queued): not among ``objects_done``."""
    silent: str | None = None
    """The objects that have made no progress for a while (``Progress.set_silent``)."""


def format_duration(seconds: float) -> str:
    """``1:02:03``, ``2:03`` or ``3 s``.

    >>> format_duration(3.4), format_duration(123), format_duration(3723)
    ('3 s', '2:03', '1:02:03')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def wait_note(
    waiting_for_ack: float | None,
    retrying: Retrying | None = None,
    not_reading: float | None = None,
) -> str | None:
    """The progress line's note while a ``LogstashSender`` waits (its ``on_wait``): for a
    connection that keeps failing (``retrying``), for Logstash to read what a write (or
    json_lines' confirmation) holds (``not_reading`` seconds since it last did: a tcp input
    whose pipeline is blocked stops reading, until the stall timeout), or for Logstash's
    acknowledgement (``waiting_for_ack`` seconds); None when there is nothing to say.

    >>> wait_note(0.2) is None, wait_note(75.0)
    (True, 'waiting for Logstash to acknowledge (1:15)')
    >>> wait_note(None, None, 12.0)
    'Logstash has not read for 12 s; a write waits for it'

    A refusal (nothing listens: Logstash down or restarting) is said at once, with how long the
    retries may go on:

    >>> from elb_log_shipper.logstash import Retrying
    >>> wait_note(None, Retrying(1, 0.0, "refused", "logstash:5044", 60.0))
    'Logstash at logstash:5044 refuses connections; retrying for up to 1:00'
    """
    if retrying is not None and retrying.refused_by is not None:
        return (
            f"Logstash at {retrying.refused_by} refuses connections; retrying for up to "
            f"{format_duration(retrying.gives_up_in)}"
        )
    if retrying is not None and retrying.seconds >= ACK_WAIT_NOTE_SECONDS:
        return (
            f"Logstash failed {retrying.failures} times in a row for "
            f"{format_duration(retrying.seconds)}, retrying (last: {retrying.last})"
        )
    if not_reading is not None and (note := unread_note("Logstash", not_reading)):
        return note
    if waiting_for_ack is None or waiting_for_ack < ACK_WAIT_NOTE_SECONDS:
        return None
    return f"waiting for Logstash to acknowledge ({format_duration(waiting_for_ack)})"


def unread_note(reader: str, seconds: float) -> str | None:
    """The progress line's note while a write waits for ``reader`` (Logstash, or whoever reads
    stdout), which has read nothing of it for ``seconds``; None for a wait too short to say.

    >>> unread_note("the reader of standard output", 75.0)
    'the reader of standard output has not read for 1:15; a write waits for it'
    """
    if seconds < ACK_WAIT_NOTE_SECONDS:
        return None
    return f"{reader} has not read for {format_duration(seconds)}; a write waits for it"


def silence_note(silent: Sequence[tuple[str, float]]) -> str | None:
    """The progress line's note for objects that have made no progress for ``seconds``
    (``workers.SILENT_NOTE_SECONDS`` or more: their worker process posted nothing, or with one
    job the command's thread read and sent nothing); None when there are none.

    >>> silence_note([("s3://logs/a.log.gz", 75.0), ("s3://logs/b.log.gz", 61.0)])
    'no progress from s3://logs/a.log.gz for 1:15, s3://logs/b.log.gz for 1:01'
    """
    if not silent:
        return None
    named = ", ".join(f"{printable(name)} for {format_duration(s)}" for name, s in silent)
    return f"no progress from {named}"


def render(snap: Snapshot) -> str:
    """One line of progress; time left is estimated from the stored bytes done so far.

    >>> render(Snapshot(10, 40, 2000, 1024**2, 4 * 1024**2, 5.0))
    '10/40 objects shipped, 2,000 lines, 1.00 MiB of 4.00 MiB, 205 KiB/s, about 15 s left'
    >>> render(Snapshot(0, 1, 64, 0, 1024, 9.0, note="waiting for Logstash"))
    '0/1 objects shipped, 64 lines, 0 B of 1.00 KiB, 0 KiB/s; waiting for Logstash'
    >>> render(Snapshot(3, 5, 64, 1024, 1024, 1.0, failed=2))
    '3/5 objects shipped, 2 failed, 64 lines, 1.00 KiB of 1.00 KiB, 1 KiB/s'
    >>> render(Snapshot(0, 2, 64, 0, 1024, 9.0, silent="no progress from b.log for 1:01"))
    '0/2 objects shipped, 64 lines, 0 B of 1.00 KiB, 0 KiB/s; no progress from b.log for 1:01'
    """
    rate = snap.bytes_done / snap.seconds if snap.seconds > 0 else 0.0
    failed = f"{snap.failed:,} failed, " if snap.failed else ""
    text = (
        f"{snap.objects_done}/{snap.objects_total} objects {snap.verb}, {failed}"
        f"{snap.lines:,} lines, {format_bytes(snap.bytes_done)} of "
        f"{format_bytes(snap.bytes_total)}, {rate / 1024:,.0f} KiB/s"
    )
    if rate > 0 and snap.bytes_done < snap.bytes_total:
        text += f", about {format_duration((snap.bytes_total - snap.bytes_done) / rate)} left"
    if snap.note:
        text += f"; {snap.note}"
    if snap.silent:
        text += f"; {snap.silent}"
    return text


class ObjectNotes:
    """The note of the object being shipped, from two sources that speak on their own threads:
    the sender's waits (``wait_note``, or stdout's reader) and S3's retries (``LineReader``'s
    ``on_retry_note``). Each sets and clears its own part; ``show`` hears them joined, or None.

    >>> notes = ObjectNotes(print)
    >>> notes.s3("S3 throttles reads (SlowDown); retrying (attempt 2 of 8)")
    S3 throttles reads (SlowDown); retrying (attempt 2 of 8)
    >>> notes.wait(None); notes.s3(None)
    S3 throttles reads (SlowDown); retrying (attempt 2 of 8)
    None
    """

    def __init__(self, show: Callable[[str | None], None]) -> None:
        self._show = show
        self._parts: dict[str, str | None] = {"wait": None, "s3": None}
        self._lock = threading.Lock()

    def wait(self, note: str | None) -> None:
        self._set("wait", note)

    def s3(self, note: str | None) -> None:
        self._set("s3", note)

    def _set(self, part: str, note: str | None) -> None:
        with self._lock:
            self._parts[part] = note
            self._show("; ".join(n for n in self._parts.values() if n) or None)


class Progress:
    """Counts what a command did and shows it on ``stream``.

    Any thread may call any method; someone calls ``tick`` often (``fan_out`` does, and a
    watcher thread while the command's thread is held). ``print`` writes a line of its own
    without tearing the progress line.

    >>> import io
    >>> progress = Progress(io.StringIO(), objects=2, bytes_total=100, interactive=False)
    >>> progress.add(5); progress.object_done(50)
    >>> progress.snapshot().lines, progress.snapshot().objects_done
    (5, 1)
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        objects: int,
        bytes_total: int,
        interactive: bool,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        verb: str = "shipped",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._objects = objects
        self._bytes_total = bytes_total
        self._interactive = interactive
        self._interval = _REDRAW_SECONDS if interactive else interval
        self._verb = verb
        self._clock = clock
        self._started = clock()
        self._last_shown = self._started
        self._lock = threading.Lock()
        self._lines = 0
        self._objects_done = 0
        self._objects_failed = 0
        self._bytes_done = 0
        self._bytes_reading = 0  # read of the objects not done yet
        self._note: str | None = None
        self._silent: str | None = None
        self._drawn = False
        # Held while writing to the stream: the command's thread and a watcher draw.
        self._drawing = threading.RLock()

    def add(self, lines: int = 0, read: int = 0) -> None:
        """``lines`` more lines, and ``read`` more stored bytes read of objects not done yet: the
        bytes and the time left move while a large object is shipped, not only when it ends."""
        with self._lock:
            self._lines += lines
            self._bytes_reading += read

    def object_done(self, size: int, *, failed: bool = False, read: int = 0) -> None:
        """An object of ``size`` stored bytes is done with: shipped (queued), or ``failed``;
        ``read`` is what ``add`` was told of it (its result's ``bytes_read``)."""
        with self._lock:
            if failed:
                self._objects_failed += 1
            else:
                self._objects_done += 1
            self._bytes_done += size
            self._bytes_reading -= read

    def set_note(self, note: str | None) -> None:
        """Say what the command waits for (shown after the counters), or nothing (None)."""
        self._note = note

    def set_silent(self, note: str | None) -> None:
        """Say which objects have made no progress for a while (``silence_note``), or none."""
        self._silent = note

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._objects_done,
                self._objects,
                self._lines,
                min(self._bytes_done + max(self._bytes_reading, 0), self._bytes_total),
                self._bytes_total,
                self._clock() - self._started,
                self._verb,
                self._note,
                self._objects_failed,
                self._silent,
            )

    def tick(self) -> None:
        """Show progress if it is due."""
        if self._clock() - self._last_shown < self._interval:
            return
        with self._drawing:
            now = self._clock()
            if now - self._last_shown < self._interval:
                return  # drawn by another thread meanwhile
            self._last_shown = now
            text = render(self.snapshot())
            if self._interactive:
                self._stream.write(_ERASE_LINE + text)
                self._drawn = True
            else:
                self._stream.write(f"progress: {text}\n")
            self._stream.flush()

    def print(self, text: str) -> None:
        """Write a line of text, its characters that are not printable escaped (``printable``:
        it names objects); the progress line is drawn again on the next tick."""
        with self._drawing:
            self.clear()
            self._stream.write(printable(text) + "\n")

    def clear(self) -> None:
        with self._drawing:
            if self._drawn:
                self._stream.write(_ERASE_LINE)
                self._drawn = False
                self._last_shown = 0.0
