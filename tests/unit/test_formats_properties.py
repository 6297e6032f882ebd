"""Property tests of the parser's invariants: one line in, one event out, never an exception."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder, alb, parse_line
from elb_log_shipper.formats._tokenizer import _split_slow, tokenize
from elb_log_shipper.formats.event import _parse_fields
from elb_log_shipper.samples import SAMPLE_OBJECTS
from tests.support.elastic import violations
from tests.support.events import field
from tests.unit.test_formats import DATE_FIELDS

SAMPLE_LINES = [line for sample in SAMPLE_OBJECTS for line in sample.lines]

# Text made of the characters that matter to the tokenizer, plus anything else a line decoded
# from UTF-8 can hold (so no lone surrogates).
elb_ish = st.text(
    alphabet=st.sampled_from(list(' "\\,:-.0123456789abcdefhpstwTZ\t'))
    | st.characters(exclude_categories=["Cs"]),
    max_size=200,
)


@st.composite
def mutated_sample(draw: st.DrawFn) -> str:
    """A real sample line with a slice cut out, replaced or duplicated."""
    line = draw(st.sampled_from(SAMPLE_LINES))
    start = draw(st.integers(0, len(line)))
    end = draw(st.integers(start, len(line)))
    insert = draw(st.sampled_from(["", '"', " ", "\\", "-", "::", line[start:end]]))
    return line[:start] + insert + line[end:]


@settings(max_examples=500)
@given(st.one_of(elb_ish, mutated_sample()))
@example("")
@example('"')
@example("http")
@example("tls 2.0")
@example("2015-05-13T23:39:43.945958Z")
def test_any_text_gives_one_event_that_is_one_json_line(line: str) -> None:
    event = parse_line(line)
    assert isinstance(event, dict)
    assert isinstance(event["@timestamp"], str)
    assert event["@timestamp"].endswith("Z")
    data = orjson.dumps(event)
    assert b"\n" not in data
    assert orjson.loads(data) == event
    if PARSE_FAILURE_TAG in event.get("tags", []):
        assert event["event"]["original"] == line
        assert event["error"]["message"]


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 2**40))
def test_any_bytes_give_one_located_event(raw: bytes, offset: int) -> None:
    event = EventBuilder(bucket="b", key="k").build(raw, offset)
    assert event is not None  # no drop filter: every line is an event
    assert event["log"]["offset"] == offset
    assert event["event"]["id"].endswith(f"-{offset}")
    assert b"\n" not in orjson.dumps(event)


@settings(max_examples=500)
@given(st.one_of(elb_ish, mutated_sample()))
# Lists of quoted items (NLB's ALPN list), which the fast path reads since session 16.
@example('h2 "h2","http/1.1" 2020-04-01T08:51:20')
@example('"h2","http/1.1"')
@example('a "x","y","z" b "q"')
@example('a "x","y""z" b')
@example('a "x","y",z b')
@example('a "x","y"z "w"')
@example('a "x","" "w",')
@example('a "x" ,"y" b')
@example(',"x" a')
def test_fast_tokenizer_agrees_with_the_character_loop(line: str) -> None:
    try:
        slow: list[str] | None = _split_slow(line)
    except ParseError:
        slow = None
    try:
        fast: list[str] | None = tokenize(line)
    except ParseError:
        fast = None
    assert fast == slow


def test_samples_parse_except_the_deliberate_failure() -> None:
    failures = [line for line in SAMPLE_LINES if "tags" in parse_line(line)]
    assert failures == ["this line is not an ELB log"]


# ALB lines of the common layout, which `alb.parse_quoted_parts` reads directly: the samples and
# AWS's documented examples (reference §3).
AWS_EXAMPLES = [
    "https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 "
    '10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "GET https://www.example.com:443/ HTTP/1.1" '
    '"curl/7.46.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:'
    "123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
    '"Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" '
    '"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" '
    '1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" "-" "-"',
    "http 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - "
    '0.000 0.001 0.000 502 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - '
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 "
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z "forward" '
    '"-" "LambdaInvalidResponse" "-" "-" "-" "-" TID_1234abcd5678ef90',
]
# 2025's layout (reference §3, fields 30-32), as every ALB writes it since: the three transform
# fields after the connection's trace id, `-` when no transform ran.
TRANSFORMED = f'{AWS_EXAMPLES[1]} "-" "-" "-"'
ALB_LINES = [
    line
    for line in [*SAMPLE_LINES, *AWS_EXAMPLES, TRANSFORMED]
    if alb.parse_quoted_parts(line.split('"')) is not None
]
# Mostly values that break a field's type but keep the layout; some that break the layout.
JUNK = ["", "-", "-1", "1.5", "abc", "0x1", "99999999999999999999", "é", ":", "a:b", "1:", "x y"]


@st.composite
def mutated_alb_line(draw: st.DrawFn) -> str:
    """A common-layout ALB line with some of its space-separated tokens replaced or added."""
    tokens = draw(st.sampled_from(ALB_LINES)).split(" ")
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(tokens) - 1))
        token = tokens[index]
        if '"' in token:
            tokens[index] = draw(st.sampled_from([token, f'"{token}"', token.replace('"', "")]))
        else:
            tokens[index] = draw(st.sampled_from([*JUNK, token + "x", "x" + token]))
    if draw(st.booleans()):
        # A token more (or a word inside a quoted value) shifts the fields after it.
        tokens.insert(draw(st.integers(0, len(tokens))), draw(st.sampled_from(JUNK)))
    if draw(st.booleans()):
        # A missing space: `57"GET ..."` or `"a""b"` is one token with quotes inside.
        index = draw(st.integers(0, len(tokens) - 2))
        tokens[index : index + 2] = [tokens[index] + tokens[index + 1]]
    if draw(st.booleans()):
        tokens += draw(st.lists(st.sampled_from(["TID_1", "-", "7", '"', ","]), max_size=6))
    return " ".join(tokens)


def _outcome(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except ParseError as error:
        return ("ParseError", str(error))


def test_the_alb_samples_take_the_fast_path() -> None:
    # Otherwise the property below would compare nothing: 2018's layout, 2025's (a sample with a
    # transform, and AWS's example with the transform fields added) and 2026's (a sample with
    # the load balancer node's address after them).
    assert len(ALB_LINES) == 8
    assert sum(len(line.split('"')) == 31 for line in ALB_LINES) == 3


@settings(max_examples=2000)
@given(mutated_alb_line())
def test_alb_fast_path_gives_what_the_tokenizer_path_gives(line: str) -> None:
    fast = _outcome(lambda: alb.parse_quoted_parts(line.split('"')))
    # About a third of the lines keep the layout; the others must take the general path.
    if fast is not None:
        assert fast == _outcome(lambda: _parse_fields(line, tokenize(line)))


@settings(max_examples=2000)
@given(mutated_alb_line())
def test_common_layout_is_the_layout_the_fast_path_reads(line: str) -> None:
    """``alb.common_layout`` (a drop filter's check, without the event) answers as
    ``parse_quoted_parts`` does: an event or a value's error for a line of the common layout,
    None for any other."""
    parts = line.split('"')
    fast = _outcome(lambda: alb.parse_quoted_parts(parts))
    assert alb.common_layout(parts) == (fast is not None)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('57 "GET', '57"GET'),  # no space before the first quoted field
        ('HTTP/1.1" "curl', 'HTTP/1.1""curl'),  # request and user agent back to back
        ('73e2d6bc24d8a067 "Root', '73e2d6bc24d8a067"Root'),
        ('259" "www', '259""www'),
        ('259" "www', '259" x "www'),
        ('.com" "arn', '.com""arn'),
        ('.com" "arn', '.com" - "arn'),
        ('012" 1 2018', '012" 1 2 2018'),
        ('364000Z "authenticate', '364000Z"authenticate'),
        ('"-" "-" "10.0', '"-" - "-" "10.0'),
        ("0 57", "0 57 1"),
        ("TLSv1.2 arn", "TLSv1.2 - arn"),
        ("https ", "tls "),
    ],
)
def test_a_line_off_the_common_layout_takes_the_general_path(old: str, new: str) -> None:
    line = AWS_EXAMPLES[0].replace(old, new, 1)
    assert line != AWS_EXAMPLES[0]
    assert alb.parse_quoted_parts(line.split('"')) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ef90 ", "ef90 x "),  # two fields where the trace id stands
        (' TID_1234abcd5678ef90 "', ' "'),  # none
        ('ef90 "-"', 'ef90"-"'),  # no space before the transformed host
        ('"-" "-" "-"', '"-""-" "-"'),
        ('"-" "-" "-"', '"-" "-" x "-"'),
        ('"-" "-" "-"', '"-" "-" "-" "-"'),  # a fourth quoted field
    ],
)
def test_a_transformed_line_off_its_layout_takes_the_general_path(old: str, new: str) -> None:
    assert alb.parse_quoted_parts(TRANSFORMED.split('"')) is not None
    line = TRANSFORMED[::-1].replace(old[::-1], new[::-1], 1)[::-1]
    assert line != TRANSFORMED
    assert alb.parse_quoted_parts(line.split('"')) is None


def test_a_transformed_line_reads_its_later_fields() -> None:
    line = TRANSFORMED.removesuffix('"-" "-" "-"') + (
        '"h.internal" "/v2?x=1" "TransformSuccess" 10.0.1.9'
    )
    event = alb.parse_quoted_parts(line.split('"'))
    assert event is not None
    elb = event["aws"]["elb"]
    assert elb["connection_trace_id"] == "TID_1234abcd5678ef90"
    assert (elb["transformed_host"], elb["transformed_uri"]) == ("h.internal", "/v2?x=1")
    assert elb["request_transform_status"] == "TransformSuccess"
    assert elb["extra_fields"] == ["10.0.1.9"]


@settings(max_examples=500)
@given(st.one_of(elb_ish, mutated_sample(), mutated_alb_line()))
def test_any_line_gives_an_event_that_fits_elastics_definitions(line: str) -> None:
    event = EventBuilder(bucket="b", key="k").build(line.encode(), 0)
    # Whatever the line holds, a damaged address included: a document Elasticsearch refuses
    # is a line lost after it was counted as delivered.
    assert violations(orjson.loads(orjson.dumps(event))) == []


# The text ELB writes for a date (reference sections 2-5): what the parser must take, all else it
# must refuse. Also the test's oracle, so it is written out here, not imported.
ELB_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z?")


def _is_elb_date(text: str) -> bool:
    if ELB_DATE.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text[:19])
    except ValueError:
        return False
    return True


@st.composite
def date_like(draw: st.DrawFn) -> str:
    """Text that reads as a date to someone: ISO 8601 forms other than RFC 3339 (reduced
    precision, offsets, week and ordinal dates, the basic format), the forms ELB writes, and any
    of these with some digits from other scripts."""
    when = draw(st.datetimes())
    year, week, weekday = when.isocalendar()
    text = draw(
        st.sampled_from(
            [
                when.isoformat(timespec=draw(st.sampled_from(["hours", "minutes", "seconds"]))),
                when.isoformat(timespec="microseconds") + "Z",
                when.isoformat(timespec="milliseconds"),
                f"{year:04}-W{week:02}-{weekday}T{when:%H:%M:%S}",
                f"{when:%Y-%jT%H:%M:%S}",
                f"{when:%Y%m%dT%H%M%S}",
                f"{when:%Y-%m-%dT%H%M%S}",
            ]
        )
    )
    text += draw(st.sampled_from(["", "", "Z", "+01", "-01:00", "+0100", "z"]))
    # A digit of another script in place of some ASCII digits (Unicode category Nd).
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(text) - 1))
        if text[index].isdigit():
            digit = draw(st.characters(categories=["Nd"]))
            text = text[:index] + digit + text[index + 1 :]
    return text


@settings(max_examples=1000)
@given(st.sampled_from(list(DATE_FIELDS)), date_like())
def test_a_date_field_gives_an_rfc_3339_date_or_a_failure_naming_it(name: str, date: str) -> None:
    template, reason, path = DATE_FIELDS[name]
    line = template.format(date)
    event = orjson.loads(orjson.dumps(parse_line(line)))
    assert violations(event) == []
    if _is_elb_date(date):
        assert PARSE_FAILURE_TAG not in event.get("tags", []), event["error"]
        assert field(event, path)[:19] == date[:19]
    else:
        assert event.get("tags") == [PARSE_FAILURE_TAG], field(event, path)
        assert event["error"]["message"].startswith(f"{reason}: ")
