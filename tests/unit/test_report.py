"""The one result type and how it reads: per-object lines, the end-of-run table and summary."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import ObjectResult, Outcome, format_result, format_run, shell_word

REF = ObjectRef("logs", "a.log")


def shipped(lines: int, seconds: float = 10.0) -> ObjectResult:
    return ObjectResult(
        REF,
        lines=lines,
        events_sent=lines,
        events_confirmed=lines,
        bytes_read=lines * 100,
        seconds=seconds,
    )


def test_the_summary_rate_is_wall_clock_whatever_the_objects_took() -> None:
    # Issue 12 item 5: four objects of 10 s each, in parallel, in a 10 s run.
    text = format_run([shipped(1000) for _ in range(4)], seconds=10.0)
    summary = text.splitlines()[-1]
    assert summary.endswith("in 10.00 s wall clock (400 lines/s)")
    assert summary.startswith("4 objects read (0 failed), 0 skipped: 4000 lines, ")


def test_the_summary_says_how_many_events_were_resent_only_when_some_were() -> None:
    resent = shipped(1000)
    resent.events_resent = 250
    assert "resent" not in format_run([shipped(1000)], seconds=1.0).splitlines()[-1]
    summary = format_run([resent, shipped(10)], seconds=1.0).splitlines()[-1]
    assert summary.endswith("; 250 events resent after a connection failed (may arrive twice)")


@pytest.mark.parametrize(
    ("result", "row", "count"),
    [
        (shipped(5), "shipped", 1),
        (ObjectResult(REF, Outcome.FAILED, error="x"), "failed", 1),
        (ObjectResult(REF, Outcome.REJECTED, error="gone"), "failed", 1),
        (ObjectResult(REF, Outcome.SKIPPED, skip_reason="test file"), "skipped", 1),
    ],
)
def test_each_outcome_has_its_row(result: ObjectResult, row: str, count: int) -> None:
    rows = {
        line.split()[0]: line.split()[1] for line in format_run([result], seconds=1).splitlines()
    }
    assert rows[row] == str(count)


def test_left_and_excluded_objects_and_the_date_listing_are_noted() -> None:
    text = format_run(
        [shipped(1)],
        seconds=1.0,
        not_shipped=3,
        excluded=Counter({"before --since": 2}),
        listed_by_date=["s3://b/AWSLogs/"],
    )
    # What to do about them is the caller's to say: resume commands after Ctrl-C, none after
    # Logstash failed (the command is run again).
    assert "left            3  stopped or not started\n" in text
    assert "excluded        2  before --since: 2" in text
    assert "only the yyyy/mm/dd folders within --since/--until under s3://b/AWSLogs/" in text


def test_the_rows_add_up_to_the_summary_with_objects_stopped_part_way() -> None:
    stopped = ObjectResult(
        REF, Outcome.HANDED_OFF, lines=50, events_sent=50, events_confirmed=40, next_offset=900
    )
    failed = ObjectResult(REF, Outcome.FAILED, lines=7, parse_failures=1, error="x")
    text = format_run([shipped(100), stopped, failed], seconds=1.0, not_shipped=1)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:4]}
    assert rows["stopped"][:4] == ["1", "50", "0", "40"]
    assert sum(int(row[1]) for row in rows.values()) == 157
    assert sum(int(row[3]) for row in rows.values()) == 140
    assert text.splitlines()[-1].startswith(
        "3 objects read (1 failed), 0 skipped: 157 lines, 1 parse failures, 140 sent, "
    )
    # No row for a fate no object had.
    assert "stopped" not in format_run([shipped(1)], seconds=1.0)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            ObjectResult(REF, Outcome.SKIPPED, skip_reason="health check"),
            "skipped s3://logs/a.log: health check",
        ),
        (
            ObjectResult(REF, Outcome.HANDED_OFF, lines=2, next_offset=80),
            "; stopped before offset 80",
        ),
        (ObjectResult(REF, Outcome.FAILED, error="boom"), "; error: boom"),
        # Named once: the line starts with the object's URI.
        (
            ObjectResult(REF, Outcome.REJECTED, error=f"{REF.uri} does not exist (NoSuchKey)"),
            "; error: does not exist (NoSuchKey)",
        ),
        (ObjectResult(REF, oversized_events=2), ", 2 events truncated to MAX_EVENT_BYTES"),
        (ObjectResult(REF, unserialisable=1), ", 1 events not serialisable (kept as failures)"),
    ],
)
def test_a_line_per_object(result: ObjectResult, expected: str) -> None:
    assert expected in format_result(result)


def test_the_handoff_is_the_rest_of_the_object_pinned_to_the_version_read() -> None:
    result = ObjectResult(
        ObjectRef("logs", "a.log", hop=2),
        Outcome.HANDED_OFF,
        next_offset=500,
        etag="e1",
        version_id="v1",
    )
    assert result.handoff == ObjectRef("logs", "a.log", "v1", "e1", start_offset=500, hop=3)
    assert ObjectResult(REF).handoff is None
    assert result.as_dict()["next_offset"] == 500


@pytest.mark.parametrize(
    ("version_id", "etag", "version"), [("v3", "e1", "v3"), (None, "e1", "e1"), (None, None, None)]
)
def test_the_result_dict_of_the_handler_and_its_log_lines(
    version_id: str | None, etag: str | None, version: str | None
) -> None:
    """Every field the function returns and logs, by name (mutation testing: 43 changes of names
    or values there passed the tests)."""
    ref = ObjectRef("logs", "a.log", version_id=version_id, etag=etag, hop=2, start_offset=100)
    result = ObjectResult(
        ref,
        Outcome.HANDED_OFF,
        lines=20,
        parse_failures=3,
        dropped=4,
        oversized_events=5,
        unserialisable=6,
        events_sent=7,
        events_confirmed=7,
        bytes_read=8,
        retries=9,
        s3_retries=12,
        reconnects=10,
        events_resent=11,
        seconds=1.23456,
        newest_timestamp="2026-11-28T23:39:01.186641Z",
        next_offset=500,
        error="e",
    )
    assert result.as_dict() == {
        "bucket": "logs",
        "key": "a.log",
        "version": version,
        "outcome": "handed_off",
        "hop": 2,
        "start_offset": 100,
        "next_offset": 500,
        "lines": 20,
        "parsed": 13,
        "parse_failures": 3,
        "dropped": 4,
        "oversized_events": 5,
        "unserialisable_events": 6,
        "events_sent": 7,
        "bytes_read": 8,
        "retries": 9,
        "s3_retries": 12,
        "reconnects": 10,
        "events_resent": 11,
        "seconds": 1.235,
        "newest_timestamp": "2026-11-28T23:39:01.186641Z",
        "error": "e",
    }


@pytest.mark.parametrize(
    "word",
    [
        "a\u2028b.log",  # a line separator: not printable, below U+10000
        "a\U000e0001b.log",  # a language tag: not printable, above U+FFFF
        "a\x1b[2J'\\b.log",
        b"caf\xe9.log".decode("utf-8", "surrogateescape"),
    ],
    ids=["bmp", "astral", "ascii control", "not utf-8"],
)
def test_a_word_with_unprintable_characters_is_one_bash_reads_back(word: str) -> None:
    # The resume commands print object keys as words a shell reads back as the same bytes.
    quoted = shell_word(word)
    assert quoted.isprintable() and quoted.isascii()
    printed = subprocess.run(
        ["bash", "-c", f"printf %s {quoted}"],
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout
    assert printed == word.encode("utf-8", "surrogateescape")
