"""What happened to each object, and how it reads: the one result type and its renderings.

``ObjectResult`` is what ``pipeline.deliver_object`` returns for one object, what the handler
logs and counts, and what the CLI and the demo print. This module turns results into text
(one line per object, the end-of-run table and summary, the ``--dry-run`` listing) and into
JSON-ready dicts (the handler's log lines and result). It is pure: it reads no clock, opens
nothing and prints nothing; callers pass the wall-clock seconds of their run and print what
these functions return.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from elb_log_shipper.refs import ObjectRef

if TYPE_CHECKING:  # only for a type: backfill lists S3, which this module must not import
    from elb_log_shipper.backfill import Plan

__all__ = [
    "ObjectResult",
    "Outcome",
    "format_bytes",
    "format_plan",
    "format_result",
    "format_run",
    "is_failed",
    "objects",
    "printable",
    "shell_word",
]


class Outcome(StrEnum):
    """What a run did with one object."""

    SHIPPED = "shipped"
    """Read to the end; every line sent (delivered once the confirmation passed)."""
    HANDED_OFF = "handed_off"
    """Stopped at a line (the deadline, Ctrl-C, or a delivery failure after some of the object
    was confirmed): ``next_offset`` is where the rest starts."""
    REJECTED = "rejected"
    """Cannot be shipped and retrying will not help (gone, changed, bad gzip): counted, logged,
    not retried. Its lines before the fault were sent."""
    FAILED = "failed"
    """Not shipped now, may be later (S3 or Logstash failing, hop budget spent): the invocation,
    or its SQS message, fails so that it is retried and in the end dead-lettered."""
    DEAD_LETTERED = "dead_lettered"
    """Past its hop budget and sent straight to the dead-letter queue (the handler does this when
    ``DEAD_LETTER_QUEUE_URL`` is set): nothing is retried; people replay it after a fix."""
    SKIPPED = "skipped"
    """Not read: the ELB test file or a health-check log (``skip_reason`` says which)."""


@dataclass(slots=True)
class ObjectResult:
    """What happened to one object in one run.

    ``lines`` were read; ``parse_failures`` of them became tagged failure events (every line
    gives one event); ``events_sent`` were handed to the sink; ``events_confirmed`` were
    confirmed by it (for Logstash, when this object's own finish confirmed them; an invocation
    confirms once for all its objects instead). ``next_offset`` is set when the object stopped
    part-way: the offset of the first line not shipped, where the ``handoff`` starts.
    ``etag`` and ``version_id`` are what the read found; they pin the rest of the object.
    """

    ref: ObjectRef
    outcome: Outcome = Outcome.SHIPPED
    lines: int = 0
    parse_failures: int = 0
    dropped: int = 0
    """Lines a drop filter matched: never events, never sent (``lines = parsed +
    parse_failures + dropped``)."""
    oversized_events: int = 0
    """Events larger than MAX_EVENT_BYTES, shipped with their longest texts truncated."""
    unserialisable: int = 0
    """Events the JSON encoder refused, shipped as tagged failure events with the raw line."""
    events_sent: int = 0
    events_confirmed: int = 0
    bytes_read: int = 0
    bytes_decompressed: int = 0
    retries: int = 0
    s3_retries: int = 0
    """S3 requests sent again by botocore (S3 throttled with 503 SlowDown, failed, or did not
    answer): a read that waited, not one resumed (``retries``)."""
    reconnects: int = 0
    events_resent: int = 0
    """Events written again after a connection was lost before they were confirmed: each may
    arrive twice (with the same ``event.id``, so that Elasticsearch keeps one)."""
    seconds: float = 0.0
    newest_timestamp: str | None = None
    next_offset: int | None = None
    offset_sent: int = 0
    """The offset just past the last line handed to the sink."""
    etag: str | None = None
    version_id: str | None = None
    error: str | None = None
    skip_reason: str | None = None
    quiet: bool = False
    """A skip not worth a line of its own (the ELB test file)."""
    hops_spent: bool = False
    """FAILED because the object was handed off more than ``max_hops`` times."""
    delivery_failed: bool = False
    """The sink failed (Logstash unreachable), for this object or one before it: later objects
    would fail the same way, and retrying the object later can succeed."""
    credentials_refused: bool = False
    """FAILED because S3 refused the credentials (expired, wrong): later objects would fail
    the same way until they are renewed."""
    archived: bool = False
    """FAILED because S3 holds the object in an archive (Glacier) and it is not restored: no
    retry within minutes can read it."""
    changed: bool = False
    """REJECTED because the object is not the one named (overwritten since it was listed or
    first read, a version deleted): named alone, the object as it is now can be shipped."""
    restart: bool = False
    """FAILED with the lines already read suspect (an S3 checksum that failed): a retry ships
    the object from its start."""

    @property
    def stops_run(self) -> bool:
        """Whether later objects would fail the same way: a run goes on with no other."""
        return self.delivery_failed or self.credentials_refused

    @property
    def events(self) -> int:
        """Events built: one per line, but for the lines a drop filter matched."""
        return self.lines - self.dropped

    @property
    def parsed(self) -> int:
        return self.lines - self.parse_failures - self.dropped

    @property
    def handoff(self) -> ObjectRef | None:
        """The rest of the object, one hop further, pinned to the version read; None when done.

        >>> ObjectResult(ObjectRef("logs", "a.log"), next_offset=10, etag="e").handoff
        ObjectRef(bucket='logs', key='a.log', version_id=None, etag='e', size=None, \
start_offset=10, hop=1)
        """
        if self.next_offset is None:
            return None
        ref = self.ref
        return replace(
            ref,
            start_offset=self.next_offset,
            hop=ref.hop + 1,
            etag=self.etag or ref.etag,
            version_id=self.version_id or ref.version_id,
        )

    def as_dict(self) -> dict[str, object]:
        """The result as a JSON-ready dict (log line, handler result); no log line content.

        >>> ObjectResult(ObjectRef("logs", "x.log"), lines=2).as_dict()["parsed"]
        2
        """
        ref = self.ref
        return {
            "bucket": ref.bucket,
            "key": ref.key,
            "version": ref.version_id or ref.etag,
            "outcome": self.outcome.value,
            "hop": ref.hop,
            "start_offset": ref.start_offset,
            "next_offset": self.next_offset,
            "lines": self.lines,
            "parsed": self.parsed,
            "parse_failures": self.parse_failures,
            "dropped": self.dropped,
            "oversized_events": self.oversized_events,
            "unserialisable_events": self.unserialisable,
            "events_sent": self.events_sent,
            "bytes_read": self.bytes_read,
            "retries": self.retries,
            "s3_retries": self.s3_retries,
            "reconnects": self.reconnects,
            "events_resent": self.events_resent,
            "seconds": round(self.seconds, 3),
            "newest_timestamp": self.newest_timestamp,
            "error": self.error,
        }


def objects(count: int) -> str:
    """``count`` objects, in English.

    >>> objects(1), objects(2)
    ('1 object', '2 objects')
    """
    return f"{count} object" if count == 1 else f"{count} objects"


def format_bytes(count: float) -> str:
    """Bytes in binary units, three significant digits.

    >>> format_bytes(512), format_bytes(1536), format_bytes(5 * 1024**3)
    ('512 B', '1.50 KiB', '5.00 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control characters, line breaks,
    terminal escapes) written as Python escapes it: a line printed for the user must stay one
    line and leave the terminal alone, and an S3 key, which anyone who may write to the bucket
    chooses, may hold any character.

    >>> print(printable("s3://logs/a\\x1b[2Jb\\nc.log"))
    s3://logs/a\\x1b[2Jb\\nc.log
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# Python's file names hold a byte 0x80-0xFF that is not UTF-8 as U+DC80-U+DCFF.
_SURROGATE_ESCAPES = 0xDC80


def shell_word(word: str) -> str:
    r"""``word`` quoted for a shell command the user copies: ``shlex.quote``'s, or, for a word
    with characters that are not printable (a key or a file name may hold any), bash's
    ``$'...'`` with those written as escapes, which bash and zsh read back to the same word and
    which leaves the terminal alone.

    >>> print(shell_word("s3://logs/a b.log"), shell_word("a\x1b[2J'\nb.log"))
    's3://logs/a b.log' $'a\x1b[2J\'\x0ab.log'

    A file name's byte that is not UTF-8, which Python holds as a surrogate, is that byte:

    >>> print(shell_word(b"caf\xe9.log".decode("utf-8", "surrogateescape")))
    $'caf\xe9.log'
    """
    if word.isprintable():
        return shlex.quote(word)
    out = []
    for char in word:
        code = ord(char)
        if char in "\\'":
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif _SURROGATE_ESCAPES <= code < _SURROGATE_ESCAPES + 0x80:
            out.append(f"\\x{code - _SURROGATE_ESCAPES + 0x80:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "$'" + "".join(out) + "'"


def format_result(result: ObjectResult) -> str:
    """One line per object, as ``ship`` prints it.

    >>> print(format_result(ObjectResult(ObjectRef("", "a.log"), lines=3, events_sent=3,
    ...     events_confirmed=3, bytes_read=300, seconds=0.5)))
    a.log: 3 lines, 0 parse failures, 3 sent, 300 bytes read, 0.50 s
    """
    uri = result.ref.uri
    if result.outcome is Outcome.SKIPPED:
        return f"skipped {uri}: {result.skip_reason}"
    text = (
        f"{uri}: {result.lines} lines, {result.parse_failures} parse failures, "
        f"{result.events_confirmed} sent, {result.bytes_read} bytes read, {result.seconds:.2f} s"
    )
    if result.dropped:
        text += f", {result.dropped} lines dropped by filters"
    if result.oversized_events:
        text += f", {result.oversized_events} events truncated to MAX_EVENT_BYTES"
    if result.unserialisable:
        text += f", {result.unserialisable} events not serialisable (kept as failures)"
    if result.outcome is Outcome.HANDED_OFF:
        text += f"; stopped before offset {result.next_offset}"
    if result.error:
        # Errors name their object for the function's log; this line already starts with it.
        error = result.error.removeprefix(f"{uri} ")
        text += f"; error: {error}"
    return text


def is_failed(result: ObjectResult) -> bool:
    """Whether ``result`` is a failure of its object: failed, rejected or dead-lettered."""
    return result.outcome in (Outcome.FAILED, Outcome.REJECTED, Outcome.DEAD_LETTERED)


def format_run(
    results: Sequence[ObjectResult],
    *,
    seconds: float,
    not_shipped: int = 0,
    excluded: Counter[str] | None = None,
    not_logs: int = 0,
    listed_by_date: Sequence[str] = (),
) -> str:
    """The end of a ``ship`` run: one row per fate of an object, then the one summary line.

    The rows add up to the summary: ``shipped``, ``stopped`` (objects stopped part-way, by
    Ctrl-C: what they read and sent before the stop; shown only when there are some) and
    ``failed`` (failed, rejected or dead-lettered). ``seconds`` is the run's wall-clock time,
    from which the rate is computed (per-object times overlap when objects run in parallel, so
    adding them up would overstate the time). ``not_shipped`` counts the objects left by Ctrl-C
    or a dead Logstash (stopped or never started): what to do about them is the caller's to say
    (resume commands, or run again); ``excluded`` the listed objects outside --since/--until, by
    reason; ``not_logs`` the listed objects not named like ELB's logs; ``listed_by_date`` the
    prefixes of which only the day folders in range were listed.

    >>> ok = ObjectResult(ObjectRef("", "a.log"), lines=4, events_sent=4, events_confirmed=4,
    ...     bytes_read=400, seconds=30.0)
    >>> print(format_run([ok, ok], seconds=2.0))
             objects  lines  parse failures  sent  bytes read
    shipped        2      8               0     8       800 B
    failed         0      0               0     0         0 B
    skipped        0
    2 objects read (0 failed), 0 skipped: 8 lines, 0 parse failures, 8 sent, 800 bytes in 2.00 s \
wall clock (4 lines/s)
    """
    header = ("", "objects", "lines", "parse failures", "sent", "bytes read")
    rows: list[tuple[str, ...]] = [header]
    stopped = [r for r in results if r.outcome is Outcome.HANDED_OFF]
    for name, group in (
        ("shipped", [r for r in results if r.outcome is Outcome.SHIPPED]),
        *([("stopped", stopped)] if stopped else []),
        ("failed", [r for r in results if is_failed(r)]),
    ):
        rows.append(
            (
                name,
                f"{len(group):,}",
                f"{sum(r.lines for r in group):,}",
                f"{sum(r.parse_failures for r in group):,}",
                f"{sum(r.events_confirmed for r in group):,}",
                format_bytes(sum(r.bytes_read for r in group)),
            )
        )
    skipped = Counter(r.skip_reason for r in results if r.outcome is Outcome.SKIPPED)
    notes = [("skipped", sum(skipped.values()), _reasons(skipped))]
    if not_shipped:
        notes.append(("left", not_shipped, "stopped or not started"))
    if excluded:
        notes.append(("excluded", sum(excluded.values()), _reasons(excluded)))
    if not_logs:
        notes.append(("not logs", not_logs, NOT_LOGS))
    rows += [(name, f"{count:,}") for name, count, _ in notes]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        )
        for row in rows[: len(rows) - len(notes)]
    ]
    text += [
        f"{name:<{widths[0]}}  {count:>{widths[1]},}  {why}".rstrip() for name, count, why in notes
    ]
    if listed_by_date:
        text.append(listed_by_date_note(listed_by_date))
    text.append(_summary(results, seconds))
    return "\n".join(text)


def _summary(results: Sequence[ObjectResult], seconds: float) -> str:
    read = [r for r in results if r.outcome is not Outcome.SKIPPED]
    lines = sum(r.lines for r in read)
    rate = lines / seconds if seconds > 0 else 0.0
    dropped = sum(r.dropped for r in read)
    summary = (
        f"{objects(len(read))} read ({sum(1 for r in read if is_failed(r))} failed), "
        f"{len(results) - len(read)} skipped: {lines} lines, "
        f"{sum(r.parse_failures for r in read)} parse failures, "
        f"{sum(r.events_confirmed for r in read)} sent, "
        f"{sum(r.bytes_read for r in read)} bytes in {seconds:.2f} s wall clock "
        f"({rate:,.0f} lines/s)"
    )
    resent = sum(r.events_resent for r in read)
    if dropped:
        summary += f"; {dropped} lines dropped by filters"
    if resent:
        summary += f"; {resent} events resent after a connection failed (may arrive twice)"
    return summary


NOT_LOGS = "listed, not named like ELB log files (--any-key reads them)"


def not_logs_note(count: int) -> str:
    """The summaries' clause for ``count`` listed objects not named like ELB's logs."""
    return f"; {count:,} not ELB log files (--any-key reads them)" if count else ""


def listed_by_date_note(sources: Sequence[str]) -> str:
    """The note that only the day folders in range were listed under ``sources``."""
    return (
        f"listed by delivery date: only the yyyy/mm/dd folders within --since/--until under "
        f"{', '.join(sources)}"
    )


def _reasons(counts: Counter[Any]) -> str:
    return "; ".join(f"{reason}: {n:,}" for reason, n in counts.most_common())


def format_plan(plan: Plan, function: str | None = None) -> str:
    """What ``--dry-run`` prints: each object with its stored size, skips with their reason,
    then the totals. Nothing here reads an object: sizes and archive classes come from the
    listing (an archived object may have been restored since; a run asks).

    >>> from elb_log_shipper.backfill import Plan, PlannedObject
    >>> plan = Plan([PlannedObject(ObjectRef("b", "k.log"), 0, 2048)])
    >>> print(format_plan(plan), end="")
            2048  s3://b/k.log
    would ship 1 object, 2.00 KiB (2048 bytes); skip 0; 0 outside the dates
    """
    out = []
    for obj in plan.objects:
        if obj.missing:
            out.append(f"{'not found':>12}  {printable(obj.ref.uri)}  (no such object or prefix)\n")
        elif obj.skip_reason is None and obj.ref.archive is not None:
            out.append(
                f"{obj.size:>12}  {printable(obj.ref.uri)}  (archived in {obj.ref.archive}: "
                "read only if restored)\n"
            )
        elif obj.skip_reason is None:
            out.append(f"{obj.size:>12}  {printable(obj.ref.uri)}\n")
        else:
            out.append(f"{'skip':>12}  {printable(obj.ref.uri)}  ({obj.skip_reason})\n")
    skipped = Counter(o.skip_reason for o in plan.objects if o.skip_reason)
    missing = sum(obj.missing for obj in plan.objects)
    verb = "would ship" if function is None else f"would invoke {function} for"
    total = plan.bytes_to_ship
    summary = f"{verb} {objects(len(plan.to_ship) - missing)}"
    archived = Counter(o.ref.archive for o in plan.to_ship if o.ref.archive is not None)
    if archived:
        summary += (
            f" ({sum(archived.values())} archived: {_reasons(archived)}; S3 reads them only once "
            "restored)"
        )
    summary += f", {format_bytes(total)} ({total} bytes); skip {sum(skipped.values())}"
    if skipped:
        summary += f" ({_reasons(skipped)})"
    summary += f"; {sum(plan.excluded.values())} outside the dates"
    if plan.excluded:
        summary += f" ({_reasons(plan.excluded)})"
    summary += not_logs_note(plan.not_logs)
    if missing:
        who = "a run fails" if function is None else f"{function} fails"
        summary += f"; {missing} not found ({who} on {'it' if missing == 1 else 'them'})"
    out.append(summary + "\n")
    if plan.listed_by_date:
        out.append(listed_by_date_note(plan.listed_by_date) + "\n")
    return "".join(out)
