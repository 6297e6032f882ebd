"""The beats framing without a network: windows that zlib and a frame parser read back, cut
windows renumbered and keeping their ticket, settings that name the variable when wrong."""

from __future__ import annotations

import json
import struct
import zlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from elb_log_shipper.config import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BEATS_BATCH_BYTES,
    ENV,
    Settings,
)
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.logstash.beats import (
    BEAT_NAME,
    BEATS_FRAMES,
    encode_window,
    frame_events,
    isal_level,
    split_events,
)
from elb_log_shipper.logstash.confirmed import ConfirmedProgress
from elb_log_shipper.logstash.connection import Batch


def decode(frames: bytes) -> list[dict[str, object]]:
    """Parse one window the way logstash-input-beats' BeatsParser does."""
    assert frames[:2] == b"2W"
    (count,) = struct.unpack_from(">I", frames, 2)
    body = frames[6:]
    if body[:2] == b"2C":
        (length,) = struct.unpack_from(">I", body, 2)
        assert len(body) == 6 + length
        body = zlib.decompress(body[6:])
    events: list[dict[str, object]] = []
    offset = 0
    while offset < len(body):
        assert body[offset : offset + 2] == b"2J"
        seq, length = struct.unpack_from(">II", body, offset + 2)
        assert seq == len(events) + 1
        events.append(json.loads(body[offset + 10 : offset + 10 + length]))
        offset += 10 + length
    assert len(events) == count
    return events


json_objects = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(), st.lists(st.booleans(), max_size=3)),
    max_size=5,
)


def pipeline_batch(events: list[dict[str, object]]) -> bytes:
    """The batch the pipeline builds for a beats sink: ``@metadata`` in each event, J frames."""
    assert BEATS_FRAMES.metadata is not None
    return BEATS_FRAMES.join(
        [orjson.dumps({**event, "@metadata": BEATS_FRAMES.metadata}) for event in events]
    )


@given(st.lists(json_objects, min_size=1, max_size=20), st.sampled_from([0, 1, 3, 6, 9]))
def test_windows_decode_to_the_events_plus_metadata(
    events: list[dict[str, object]], compression: int
) -> None:
    decoded = decode(encode_window(Batch(pipeline_batch(events), len(events)), compression))
    for original, received in zip(events, decoded, strict=True):
        metadata = received.pop("@metadata")
        assert metadata == {"beat": BEAT_NAME, "type": "_doc", "version": "0.1.0"}
        assert received == original


@given(st.lists(json_objects, min_size=1, max_size=30), st.integers(1, 12))
def test_cut_windows_are_numbered_from_one_and_keep_every_event_in_order(
    events: list[dict[str, object]], most: int
) -> None:
    parts = split_events(Batch(pipeline_batch(events), len(events)), most)
    assert all(0 < part.events <= most for part in parts)
    decoded = [event for part in parts for event in decode(encode_window(part, 3))]
    assert [{k: v for k, v in event.items() if k != "@metadata"} for event in decoded] == events


def test_frames_are_what_libbeat_writes() -> None:
    """Byte for byte: ``2J``, seq from 1, length, the JSON (go-lumber ``protocol/v2``)."""
    assert frame_events([b'{"a":1}', b"{}"]) == (
        b'2J\x00\x00\x00\x01\x00\x00\x00\x07{"a":1}2J\x00\x00\x00\x02\x00\x00\x00\x02{}'
    )


def test_a_batch_that_is_not_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="J frames"):
        split_events(Batch(b'{"a":1}\n{"b":2}\n', 2), 1)


def test_isal_levels_cover_zlib_levels() -> None:
    assert [isal_level(level) for level in range(1, 10)] == [1, 1, 2, 2, 2, 2, 3, 3, 3]


def test_cut_windows_share_the_ticket_and_count_once() -> None:
    progress = ConfirmedProgress()
    events: list[dict[str, object]] = [{"n": n} for n in range(10)]
    batch = Batch(pipeline_batch(events), 10, progress.issue(99))
    parts = split_events(batch, 4)
    assert [part.events for part in parts] == [4, 4, 2]
    for part in parts[:-1]:
        part.confirmed()
    assert progress.offset is None
    parts[-1].confirmed()
    assert progress.offset == 99


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({ENV.LOGSTASH_PROTOCOL: "lumberjack"}, ENV.LOGSTASH_PROTOCOL),
        ({ENV.LOGSTASH_BEATS_COMPRESSION: "10"}, ENV.LOGSTASH_BEATS_COMPRESSION),
        ({ENV.LOGSTASH_BEATS_WINDOW_MAX: "0"}, ENV.LOGSTASH_BEATS_WINDOW_MAX),
    ],
)
def test_bad_beats_settings_name_the_variable(environ: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(environ)


def test_beats_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            ENV.LOGSTASH_PROTOCOL: "Beats",
            ENV.LOGSTASH_BEATS_COMPRESSION: "0",
            ENV.LOGSTASH_BEATS_WINDOW_MAX: "512",
        }
    )
    assert (settings.protocol, settings.beats_compression, settings.beats_window_max) == (
        "beats",
        0,
        512,
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({ENV.LOGSTASH_PROTOCOL: "beats"}, DEFAULT_BEATS_BATCH_BYTES),
        ({ENV.LOGSTASH_PROTOCOL: "beats", ENV.LOGSTASH_BATCH_BYTES: "65536"}, 65536),
        ({}, DEFAULT_BATCH_BYTES),
    ],
    ids=["beats-default", "beats-set", "json-lines-default"],
)
def test_beats_batches_default_to_larger_windows(environ: dict[str, str], expected: int) -> None:
    assert Settings.from_env(environ).batch_bytes == expected


def test_the_command_line_destination_picks_the_beats_batch_default() -> None:
    """``--to beats://`` sets the protocol as an override, not in the environment."""
    assert Settings.from_env({}, protocol="beats").batch_bytes == DEFAULT_BEATS_BATCH_BYTES
