"""Property tests of the parser's invariants: one line in, one event out, never an exception."""

from __future__ import annotations

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from elb_log_shipper.errors import ParseError
from elb_log_shipper.formats import PARSE_FAILURE_TAG, EventBuilder, parse_line
from elb_log_shipper.formats._tokenizer import _split_slow, tokenize
from elb_log_shipper.samples import SAMPLE_OBJECTS

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
    assert event["log"]["offset"] == offset
    assert event["event"]["id"].endswith(f"-{offset}")
    assert b"\n" not in orjson.dumps(event)


@settings(max_examples=500)
@given(st.one_of(elb_ish, mutated_sample()))
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
