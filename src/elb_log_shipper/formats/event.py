"""From a raw line to the event we emit (reference §7): detection, parsing, the object context.

The contract: one input line gives exactly one event and never an exception. A line that cannot
be parsed becomes an event tagged ``_elbparsefailure`` that keeps the raw text and says why.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats import alb, classic, connection, nlb
from elb_log_shipper.formats._tokenizer import tokenize, tokenize_split
from elb_log_shipper.formats._values import ECS, timestamp
from elb_log_shipper.framing import MAX_LINE_BYTES, Batch, OversizedLine

if TYPE_CHECKING:
    from elb_log_shipper.privacy import LinePrivacy, PrivacyRules

__all__ = [
    "DATASET",
    "PARSE_FAILURE_TAG",
    "TIMESTAMP_FORMAT",
    "EventBuilder",
    "detect_format",
    "parse_line",
]

DATASET = "aws.elb_logs"
PARSE_FAILURE_TAG = "_elbparsefailure"
# How every event's `@timestamp` is written, as `timestamp()` writes a line's: RFC 3339 UTC with
# microseconds and `Z`, 27 characters, so that the text sorts as the time it names.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Written once when logging is enabled (reference §6); a notice, not an access log.
TEST_LINE_PREFIX = "Enable AccessLog for ELB: "

Event = dict[str, Any]


def detect_format(fields: list[str]) -> str | None:
    """Name the format of a tokenised line: ``alb``, ``nlb``, ``classic``, ``connection``."""
    if not fields:
        return None
    first = fields[0]
    if first in alb.TYPES:
        return "alb"
    if first == "tls":
        return "nlb"
    if first[:1].isdigit() and len(fields) > 2:
        # Classic: `timestamp elb client:port ...`; connection log: `timestamp ip port ...` (a
        # port has no colon, whatever else is wrong with it).
        return "classic" if ":" in fields[2] else "connection"
    return None


_PARSERS: dict[str | None, Callable[[list[str]], Event]] = {
    "alb": alb.parse,
    "nlb": nlb.parse,
    "classic": classic.parse,
    "connection": connection.parse,
}


# Lines rewritten at a time by the privacy rules' short path, before they are parsed
# (``EventBuilder.prepared``): enough to keep the regex engine's code in cache over a run of
# lines, few enough (some 60 KB of text) that the texts are still in cache when parsed.
PREPARE_LINES = 64

# `line.split('"')` of an ALB line of the common layout: 12 quoted fields, or 15 with 2025's
# transform fields (`alb.parse_quoted_parts` reads both).
_ALB_PARTS = 25
_ALB_TRANSFORMED_PARTS = 31
_COMMON_ALB_PARTS = frozenset({_ALB_PARTS, _ALB_TRANSFORMED_PARTS})

# The first character of a line rewritten by the privacy rules' short path for a format other than
# ALB (`LinePrivacy.rewritten`): a Classic or connection log's timestamp, NLB's `tls`. No ALB type
# starts with one.
_SHORT_PATH_OTHER_FORMATS = frozenset("0123456789t")
# The first byte of an ALB line: its type's.
_ALB_INITIAL_BYTES = frozenset(kind[:1].encode() for kind in alb.TYPES)

# How a failure event's text holds a byte that is not UTF-8: as `\xNN` (ALB's own escape, and how an
# event shows a file name's), so that each stays visible and distinct: U+FFFD would make every such
# byte the same character.
_NOT_UTF8 = "backslashreplace"

# UTF-8's byte-order mark. ELB writes none, but an editor may put one before a local file's first
# line; the line is read without it (``EventBuilder.build``), at offset 0 still.
_BOM = "\ufeff"

# ALB and NLB lines are recognised by their first field alone.
_BY_FIRST_FIELD: dict[str, Callable[[list[str]], Event]] = {
    **dict.fromkeys(alb.TYPES, alb.parse),
    "tls": nlb.parse,
}


def _parse(text: str) -> Event:
    """The event fields of one line, or ParseError.

    The hot path: a common-layout ALB line is read from its quoted parts, and ALB and NLB lines
    are recognised by their first field before ``detect_format`` is asked.
    """
    if "\\" in text:
        fields = tokenize(text)
    else:
        parts = text.split('"')
        if ((count := len(parts)) == _ALB_PARTS or count == _ALB_TRANSFORMED_PARTS) and (
            event := alb.parse_quoted_parts(parts)
        ) is not None:
            return event
        fields = tokenize_split(text, parts)
    parser = _BY_FIRST_FIELD.get(fields[0]) if fields else None
    return parser(fields) if parser is not None else _parse_fields(text, fields)


def _reads_as_classic(raw: bytes) -> bool:
    """Whether ``raw`` would be read as a Classic line (``detect_format``: a digit first, a
    `:` in its third field)."""
    fields = raw.split(b" ", 3)
    return raw[:1].isdigit() and len(fields) > 2 and b":" in fields[2]


# What `_unsettled` finds: the short path settles the line, it does not, or it does but for an
# address alone after the last quote (2026's node address, `LinePrivacy.node_line`).
_SETTLED = 0
_UNSETTLED = 1
_SETTLED_BUT_THE_LAST = 2


def _as_it_is(text: str, _raw: bytes) -> str:
    """The short path of no rule (``EventBuilder.prepared`` with drop filters alone): the line as
    read, decoded, for ``build`` to filter (``EventBuilder._filtered``)."""
    return text


def _unsettled(parts: list[str]) -> int:
    """Whether the rules' short path cannot settle, as it rewrote it, a line of ``parts =
    line.split('"')`` (``_UNSETTLED``, ``_SETTLED``): not 25 parts, nor 31 with 2025's transform
    fields (no common ALB line; the parser tells the rest); an address or a `:` in a field after
    the documented ones (the trace id, the transform fields, a field after them), more than one
    field after the last quote, or a `:` in the classification reason (a line cut just after its
    opening quote, with another cut after its first quote run in, has that line's head there:
    its time, its client). ``apply`` reads such a line field by field, and may scrub it whole.
    (A query there the short path refused: ``LinePrivacy.rewritten``.) With 31 parts and a `.`
    or `:` only after the last quote, ``_SETTLED_BUT_THE_LAST``: 2026's node address, if
    ``LinePrivacy.node_line`` finds one there."""
    if (count := len(parts)) not in _COMMON_ALB_PARTS:
        return _UNSETTLED
    if count == _ALB_PARTS:
        later = parts[24]
        last = ""
    else:
        later = '"'.join(parts[24:30])
        last = parts[30]
    if ":" in parts[23] or "." in later or ":" in later or len(parts[-1].split()) > 1:
        return _UNSETTLED
    return _SETTLED_BUT_THE_LAST if "." in last or ":" in last else _SETTLED


def _parse_split(text: str, parts: list[str]) -> Event:
    """``_parse(text)`` for a line without backslashes that is no ALB line (its first character
    is in ``_SHORT_PATH_OTHER_FORMATS``, which no ALB type starts with), given
    ``parts = text.split('"')``: ALB's fast path, which answers only for an ALB type, is not
    tried.

    ``_parse`` keeps these lines inline rather than calling this: the call costs every line of
    the defaults 362 instructions (+0.4 %, callgrind over 5,000 ALB corpus lines)."""
    fields = tokenize_split(text, parts)
    parser = _BY_FIRST_FIELD.get(fields[0]) if fields else None
    return parser(fields) if parser is not None else _parse_fields(text, fields)


def _parse_fields(text: str, fields: list[str]) -> Event:
    parser = _PARSERS.get(detect_format(fields))
    if parser is not None:
        return parser(fields)
    if text.startswith(TEST_LINE_PREFIX):
        return _test_line(text)
    if not fields:
        raise ParseError("empty line")
    raise ParseError(f"not an ELB log line: unrecognised first field {fields[0][:40]!r}")


def _test_line(text: str) -> Event:
    name, _, when = text[len(TEST_LINE_PREFIX) :].rpartition(" at ")
    return {
        "@timestamp": timestamp(when.strip(), "test line time"),
        "ecs": ECS,
        "event": {
            "kind": "event",
            "category": ["configuration"],
            "action": "access-log-test",
            "dataset": DATASET,
            "outcome": "success",
        },
        "aws": {"elb": {"name": name.strip()}},
        "message": text,
    }


def _now() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def _failure(text: str, reason: str) -> Event:
    return {
        "@timestamp": _now(),
        "ecs": ECS,
        # ECS: an error met while ingesting the event, which holds the original.
        "event": {"kind": "pipeline_error", "dataset": DATASET, "original": text},
        "tags": [PARSE_FAILURE_TAG],
        "error": {"message": reason},
    }


# More digits than int() reads (sys.get_int_max_str_digits(), 4,300 by default). Each run of
# digits is matched once, from its first digit: linear in the line, whatever it holds.
_DIGITS = re.compile(r"[0-9]+")
_INT_MAX_DIGITS = 4300


def _unexpected(text: str, error: Exception) -> str:
    """Why a line failed that the parsers did not refuse with a ParseError of their own.

    A number too long for ``int()`` (which raises ValueError rather than take quadratic time)
    is said as such: it is out of range of every numeric field. Any other error is a parser bug.
    The per-line code catches neither: a ``try`` on its path would cost every line.
    """
    if isinstance(error, ValueError):
        for found in _DIGITS.finditer(text):
            if len(digits := found[0]) > _INT_MAX_DIGITS:
                start = text.rfind(" ", 0, found.start()) + 1
                return (
                    f"{text[start : start + 24]!r}...: a number of {len(digits):,} digits is out "
                    "of range of every numeric field"
                )
    return f"parser error: {error!r}"


def parse_line(text: str) -> Event:
    """Parse one line into an event without object context. Never raises.

    >>> parse_line("garbage")["tags"]
    ['_elbparsefailure']
    """
    try:
        return _parse(text)
    except ParseError as error:
        return _failure(text, str(error))
    except (ValueError, IndexError, KeyError) as error:
        return _failure(text, _unexpected(text, error))


class EventBuilder:
    """Builds the events of one object: parse each line and add where it came from.

    ``event.id`` is deterministic: a digest of (bucket, key, version or ETag) and the line's byte
    offset, so a line shipped twice (retry, hand-off, duplicate S3 event) has the same id and can be
    de-duplicated downstream (Logstash ``document_id``).

    ``privacy`` (redaction, anonymisation, drop filters) rewrites each line before it is parsed,
    so that every field holds only the redacted value; a line that a drop filter matches gives
    no event (``build`` returns None) and is counted in ``dropped``.

    >>> b = EventBuilder(bucket="logs", key="k.log", version="etag1")
    >>> b.build(b"garbage", 7)["event"]["id"] == b.build(b"garbage", 7)["event"]["id"]
    True
    """

    __slots__ = (
        "_classic",
        "_cloud",
        "_common_line",
        "_drops",
        "_file",
        "_filtering",
        "_id_prefix",
        "_keep_original",
        "_prepared_chunks",
        "_privacy",
        "_s3",
        "_short_path",
        "_unfiltered_line",
        "dropped",
        "failures",
        "too_long_lines",
    )

    def __init__(
        self,
        *,
        bucket: str = "",
        key: str = "",
        version: str | None = None,
        region: str | None = None,
        account: str | None = None,
        keep_original: bool = True,
        privacy: PrivacyRules | None = None,
    ) -> None:
        # A local file's name need not be UTF-8: Python holds its other bytes as surrogates
        # (U+DC80-U+DCFF), encoded back as they were; the name in an event shows them as \xNN.
        digest = hashlib.blake2b(
            f"{bucket}\n{key}\n{version or ''}".encode("utf-8", "surrogateescape"),
            digest_size=12,
        ).hexdigest()
        self._id_prefix = f"{digest}-"
        self._keep_original = keep_original
        # None unless a rule changes something: the default costs one test per line.
        self._privacy = None if privacy is None else privacy.compile(detect_format)
        # The rules' short path for the common line, if they have one: the line rewritten as text
        # in one step, then parsed as any line is.
        common_line = None if self._privacy is None else self._privacy.common_line
        # The same, for `prepared`: a line it does not rewrite is answered with its raw bytes.
        self._short_path: Callable[[str, bytes], str | bytes] | None = (
            None if common_line is None or self._privacy is None else self._privacy.rewritten
        )
        # With drop filters, the short path takes no ALB line: `prepared` offers it only batches
        # of other formats, and `build` does not ask it again. An ALB batch takes the short path
        # of the rules without the filters instead (with drop filters alone, it is decoded as it
        # is), and `build` filters the lines it settles (`_filtered`); `_filtering` says the
        # batch last prepared did.
        self._drops = self._privacy is not None and self._privacy.drops
        self._common_line = None if self._drops else common_line
        self._unfiltered_line: Callable[[str, bytes], str | bytes] | None = None
        if self._drops:
            assert self._privacy is not None
            unfiltered = self._privacy.unfiltered
            self._unfiltered_line = _as_it_is if unfiltered is None else unfiltered.rewritten
        self._filtering = False
        # A Classic line is redacted in the parser's split, which the parser then reads:
        # `prepared` leaves its batches as they are.
        self._classic = None if self._privacy is None else self._privacy.classic_split
        # The chunks of lines, as read, that `prepared` rewrote in the batch it was last given:
        # a line that the short path cannot settle is read again as read (`_as_read`).
        self._prepared_chunks: list[Batch] = []
        self.dropped = 0
        """Lines a drop filter matched: no event was built for them."""
        self.failures = 0
        """Events tagged ``_elbparsefailure`` built so far (too-long lines included)."""
        self.too_long_lines = 0
        """Lines longer than ``MAX_LINE_BYTES``, of which only the beginning was kept."""
        cloud: Event = {"provider": "aws"}
        if region:
            cloud["region"] = region
        if account:
            cloud["account"] = {"id": account}
        # Shared by every event of the object: built once, serialised many times.
        self._cloud = cloud
        self._s3: Event | None = (
            {"bucket": {"name": bucket}, "object": {"key": key}} if bucket else None
        )
        path = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        self._file: Event | None = None if bucket else {"path": path}

    def prepared(self, lines: Batch) -> Iterable[tuple[int, bytes | str]]:
        """``lines`` (offset, raw bytes) for ``build``, each line that the privacy rules' short
        path rewrites (``LinePrivacy.common_line``) already rewritten, as text; ``lines``
        themselves when the rules have no short path (the defaults), or when they have drop
        filters and the first line is not an NLB line or timestamped (Classic, a connection log),
        but for an ALB batch with a client rule: the short path of the rules without their drop
        filters rewrites it (``LinePrivacy.unfiltered``), and ``build`` filters it.

        The lines are rewritten ``PREPARE_LINES`` at a time, lazily, before they are parsed:
        the regular expression's code and data then stay in the CPU's caches for a run of lines,
        and so do the parser's, instead of displacing each other on every line (cachegrind's
        simulation: 22 % more instruction-cache and 27 % more data-cache misses a line than the
        defaults when the two alternate, 9 % and -4 % this way; bench/README.md, "Privacy").
        A chunk with a line that is not valid UTF-8 or too long is left for ``build`` as it is.
        Build the lines with this builder before it prepares the next batch: a line it cannot
        settle from the rewritten text is read again as read (``_as_read``).

        >>> from elb_log_shipper.privacy import ClientAddress, PrivacyRules
        >>> builder = EventBuilder(privacy=PrivacyRules(client_ip=ClientAddress.TRUNCATE))
        >>> line = b'http t app/a 192.0.2.7:80 1 "GET / HTTP/1.1"'
        >>> list(builder.prepared([(0, line), (48, b"x")]))
        [(0, 'http t app/a 192.0.2.0:80 1 "GET / HTTP/1.1"'), (48, b'x')]
        """
        if self._classic is not None and lines and _reads_as_classic(lines[0][1]):
            # Classic lines are redacted in `build`, in the parser's split.
            return lines
        short_path = self._short_path
        filtering = False
        if self._drops and lines and lines[0][1][:4] != b"tls " and not lines[0][1][:1].isdigit():
            # With drop filters, the short path takes no ALB line, and an object holds one
            # format: a batch whose first line is not NLB (`tls `) or timestamped (Classic, a
            # connection log) is left as it is, but for ALB lines, which the rules' short path
            # without the filters rewrites (or, with drop filters alone, decodes as they are)
            # and `build` filters.
            if lines[0][1][:1] not in _ALB_INITIAL_BYTES:
                return lines
            short_path, filtering = self._unfiltered_line, True
        if short_path is None:
            return lines
        self._filtering = filtering
        self._prepared_chunks = []
        starts = range(0, len(lines), PREPARE_LINES)
        return chain.from_iterable(map(self._prepare, repeat(lines), starts, repeat(short_path)))

    def _prepare(
        self, lines: Batch, start: int, short_path: Callable[[str, bytes], str | bytes]
    ) -> list[tuple[int, bytes | str]] | Batch:
        chunk = lines[start : start + PREPARE_LINES]
        offsets, raws = zip(*chunk, strict=True)
        if OversizedLine in map(type, raws):
            return chunk
        try:
            texts = list(map(short_path, map(bytes.decode, raws), raws))
        except UnicodeDecodeError:
            return chunk
        self._prepared_chunks.append(chunk)
        return list(zip(offsets, texts, strict=True))

    def build(self, raw: bytes | str, offset: int) -> Event | None:
        """The event of the line ``raw`` (no line terminator) found at byte ``offset``; None
        when a drop filter of ``privacy`` matches the line (never without one). ``raw`` is
        text only when ``prepared`` rewrote it."""
        # The hot path: one call per line, so the object context is inlined.
        try:
            if self._privacy is None:
                # Only `prepared` gives text, and only with privacy rules: this is bytes.
                text = raw.decode()  # type: ignore[union-attr]
                event = _parse(text)
            elif isinstance(raw, str):
                # Rewritten by the rules' short path in `prepared` (`_short_path_parsed`, inline).
                text = raw
                parts = text.split('"')
                if self._filtering:
                    # Rewritten without the drop filters: `build` filters it.
                    filtered = self._filtered(text, parts, offset)
                    if filtered is None:
                        self.dropped += 1
                        return None
                    text, event = filtered
                elif "\\" in text or (unsettled := _unsettled(parts)) == _UNSETTLED:
                    text, event = self._off_the_common_alb_layout(text, parts, offset)
                elif unsettled == _SETTLED_BUT_THE_LAST:
                    # 2026's ALB line (`_node_settled`), or off the common layout.
                    if (settled := self._node_settled(text, parts)) is None:
                        text, event = self._off_the_common_alb_layout(text, parts, offset)
                    else:
                        text, event = settled
                elif (event := alb.parse_quoted_parts(parts)) is None:  # type: ignore[assignment]
                    text, event = self._off_the_common_alb_layout(text, parts, offset)
            else:
                text = raw.decode()
                if (
                    (classic := self._classic) is not None
                    and text[:1].isdigit()
                    and (split := classic(text, text.split('"'))) is not None
                ):
                    # A Classic line, redacted in the parser's split: its fields are the ones
                    # the tokenizer reads from the line rewritten.
                    text, fields = split
                    event = _parse_fields(text, fields)
                elif (common := self._common_line) is not None and (
                    rewritten := common(text)
                ) is not None:
                    text, event = self._short_path_parsed(rewritten, text)
                else:
                    private = self._private(self._privacy, text)
                    if private is None:
                        self.dropped += 1
                        return None
                    text, parsed = private
                    event = _parse(text) if parsed is None else parsed
        except UnicodeDecodeError as error:
            assert isinstance(raw, bytes)  # text never fails to decode
            return self.failure(
                raw.decode(errors=_NOT_UTF8), offset, f"invalid UTF-8 at byte {error.start}"
            )
        except ParseError as error:
            # Only a line that fails pays for this test, and only the first. One mark: a second
            # fails the line.
            if (
                offset == 0
                and (line := self._line_as_read(raw, 0)).startswith(_BOM)
                and not line.startswith(_BOM, 1)
            ):
                return self.build(line[1:].encode(), 0)
            return self._parse_failure(raw, text, offset, str(error))
        except (ValueError, IndexError, KeyError) as error:
            return self._parse_failure(raw, text, offset, _unexpected(text, error))
        meta = event["event"]
        meta["id"] = self._id_prefix + str(offset)
        if self._keep_original:
            meta["original"] = text
        event["cloud"] = self._cloud
        if self._s3 is not None:
            event["aws"]["s3"] = self._s3
            event["log"] = {"offset": offset}
        else:
            event["log"] = {"offset": offset, "file": self._file}
        return event

    def _short_path_parsed(self, text: str, line: str) -> tuple[str, Event]:
        """``text``, the rules' short path's rewrite of ``line``, and its event: parsed as the
        common ALB line (as `_parse` parses it). A line the parser reads otherwise, or with a `.`
        or `:` after its last quote (an address in a later field, two lines run together) or a
        `:` in its last quoted field (another line's head), is
        read by the longer paths (``_reread``): the short path rewrites the client and the
        request alone. (A `?`, `#` or `@` there the short path has refused:
        ``LinePrivacy.rewritten``.)"""
        parts = text.split('"')
        if "\\" not in text:
            unsettled = _unsettled(parts)
            if unsettled == _SETTLED:
                if (event := alb.parse_quoted_parts(parts)) is not None:
                    return text, event
            elif (
                unsettled == _SETTLED_BUT_THE_LAST
                and (settled := self._node_settled(text, parts)) is not None
            ):
                return settled
        if text[:1] in _SHORT_PATH_OTHER_FORMATS:
            return text, _parse_split(text, parts)
        return self._reread(line)

    def _filtered(self, text: str, parts: list[str], offset: int) -> tuple[str, Event] | None:
        """A line that ``prepared`` rewrote with the short path of the rules without their drop
        filters (``LinePrivacy.unfiltered``; ``parts = text.split('"')``) and its event, or
        None when a filter drops it, as ``apply`` decides: a line settled as the common ALB
        layout (as ``_short_path_parsed`` settles it) is dropped or kept by its fields
        (``LinePrivacy.common_dropped``); any other is read as read by the longer paths, which
        drop it or rewrite it (``_private``)."""
        privacy = self._privacy
        assert privacy is not None  # only the rules have a short path
        if "\\" not in text:
            if not privacy.redacts:
                # Drop filters alone, which change no line: the parser's layout is all there is
                # to check.
                unsettled = _SETTLED if len(parts) in _COMMON_ALB_PARTS else _UNSETTLED
            elif (unsettled := _unsettled(parts)) == _SETTLED_BUT_THE_LAST:
                # 2026's layout: the node's address scrubbed (`_node_settled`).
                node = privacy.node_line(text, parts)
                if node is not None:
                    text, unsettled = node, _SETTLED
            if unsettled == _SETTLED:
                dropped = privacy.common_dropped(text, parts)
                if dropped is False:
                    if (event := alb.parse_quoted_parts(parts)) is not None:
                        return text, event
                elif dropped and alb.common_layout(parts):
                    return None
        # Not the common layout, or a filter matches and `apply` decides (`parts` may have been
        # edited): the longer paths, from the line as read.
        private = self._private(privacy, self._as_read(text, offset))
        if private is None:
            return None
        text, parsed = private
        return text, _parse(text) if parsed is None else parsed

    def _node_settled(self, text: str, parts: list[str]) -> tuple[str, Event] | None:
        """A line of 2026's ALB layout that the short path rewrote (no backslash; ``_unsettled``
        found it ``_SETTLED_BUT_THE_LAST``), with the load balancer node's address after its last
        quote scrubbed as ``apply`` scrubs it, and its event; None for any other line (an ALB
        line, which the caller reads again as read: ``parts`` may have been edited)."""
        assert self._privacy is not None  # only the rules have a short path
        node = self._privacy.node_line(text, parts)
        if node is None:
            return None
        event = alb.parse_quoted_parts(parts)
        if event is None:
            # Not the layout after all: no event, and the line goes to the longer paths as read
            # (an ALB line: `_off_the_common_alb_layout` rereads it from its offset).
            return None
        return node, event

    def _off_the_common_alb_layout(
        self, text: str, parts: list[str], offset: int
    ) -> tuple[str, Event]:
        """A line that ``prepared`` rewrote (``parts = text.split('"')``) that is not read as the
        common ALB line, and its event. The short path of the other formats answers a line as
        ``apply`` rewrites it (``LinePrivacy.rewritten``), without a backslash: it is parsed as
        it is. An ALB line is read by the longer paths (``_reread``) as it was read."""
        if text[:1] in _SHORT_PATH_OTHER_FORMATS:
            return text, _parse_split(text, parts)
        return self._reread(self._as_read(text, offset))

    def _reread(self, line: str) -> tuple[str, Event]:
        """A line as read that the short path rewrote but cannot settle, rewritten by the rules'
        paths that read every field, and its event: as if the short path had refused it."""
        assert self._privacy is not None  # only the rules have a short path
        rewritten = self._privacy.apply(line, drops=False)
        assert rewritten is not None  # no drop filter, so no drop
        return rewritten, _parse(rewritten)

    @staticmethod
    def _private(privacy: LinePrivacy, text: str) -> tuple[str, Event | None] | None:
        """The line as ``privacy`` leaves it and, for the common ALB layout, its event (None: parse
        the line); None when a drop filter matches.

        The common ALB layout is redacted in the parts the parser reads, so the line is split
        once; anything else is rewritten as text, then parsed.
        """
        if "\\" not in text:
            parts = text.split('"')
            if (count := len(parts)) == _ALB_PARTS or count == _ALB_TRANSFORMED_PARTS:
                kept = privacy.alb_parts(text, parts)
                if kept is False or (kept is None and alb.common_layout(parts)):
                    # A drop filter matches it (with rules that redact, in a layout the parser
                    # reads, which `apply` drops too).
                    return None
                if isinstance(kept, str):
                    try:
                        event = alb.parse_quoted_parts(parts)
                    except (ParseError, ValueError, IndexError, KeyError):
                        # Parsing the line again raises the same error, for the caller to report.
                        return kept, None
                    if event is not None:
                        return kept, event
                # Not the common layout after all (the edits to `parts` are dropped), or a line
                # a filter matches in a layout the parser does not read: `apply` decides.
        rewritten = privacy.apply(text)
        return None if rewritten is None else (rewritten, None)

    def _parse_failure(self, raw: bytes | str, text: str, offset: int, reason: str) -> Event:
        """The event of a line the parser refused: with privacy rules, the line as read and the
        reason (which may quote a field) scrubbed as a whole (``LinePrivacy.redact``), since
        their rewrite by field number assumed a layout the line does not have."""
        if self._privacy is None:
            return self._failure(text, offset, reason)
        return self.failure(self._line_as_read(raw, offset), offset, self._privacy.redact(reason))

    def _line_as_read(self, raw: bytes | str, offset: int) -> str:
        """The line at ``offset`` as read: ``raw`` decoded, or the line that ``prepared``
        rewrote as ``raw`` (``_as_read``)."""
        return self._as_read(raw, offset) if isinstance(raw, str) else raw.decode()

    def _as_read(self, text: str, offset: int) -> str:
        """The line at ``offset`` as read, for a line that ``prepared`` rewrote as ``text`` in the
        batch it was last given: what the longer paths and a failure event read, as for a line
        the short path refused (reading the rewritten line again can give another text: an IPv6
        client anonymised, then scrubbed with its port taken for part of the address). ``text``
        itself when this builder did not prepare the line in that batch. Only such lines look
        it up: one that fails to parse, an ALB line the short path cannot settle."""
        for chunk in self._prepared_chunks:
            if chunk[0][0] <= offset <= chunk[-1][0]:
                for at, raw in chunk:
                    if at == offset:
                        return raw.decode()
        return text

    def failure(self, text: str, offset: int, reason: str) -> Event:
        """The event of a line that cannot be parsed: the raw text is always kept (redacted as
        ``privacy`` says; ``reason`` must not quote the line)."""
        if self._privacy is not None:
            text = self._privacy.redact(text)
        return self._failure(text, offset, reason)

    def _failure(self, text: str, offset: int, reason: str) -> Event:
        self.failures += 1
        event = _failure(text, reason)
        event["event"]["id"] = self._id_prefix + str(offset)
        self._locate(event, offset)
        return event

    def too_long(self, raw: bytes, offset: int) -> Event:
        """The failure event of a line cut at ``MAX_LINE_BYTES``: its beginning, tagged.

        >>> b = EventBuilder()
        >>> b.too_long(OversizedLine(b"GET /aaaa", 300_000), 0)["error"]["message"][:29]
        'line of 300000 bytes is longe'
        >>> b.failures, b.too_long_lines
        (1, 1)
        """
        self.too_long_lines += 1
        full = raw.full_length if isinstance(raw, OversizedLine) else len(raw)
        return self.failure(
            raw.decode(errors=_NOT_UTF8),
            offset,
            f"line of {full} bytes is longer than the {MAX_LINE_BYTES}-byte limit; "
            "its beginning is kept",
        )

    def _locate(self, event: Event, offset: int) -> None:
        event["cloud"] = self._cloud
        if self._s3 is not None:
            event.setdefault("aws", {})["s3"] = self._s3
            event["log"] = {"offset": offset}
        else:
            event["log"] = {"offset": offset, "file": self._file}
