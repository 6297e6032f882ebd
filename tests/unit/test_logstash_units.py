"""The Logstash sink's pure parts: destinations, settings checks, API misuse. No network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from elb_log_shipper.config import Settings
from elb_log_shipper.errors import ConfigurationError, DeliveryError
from elb_log_shipper.logstash import LogstashSender, SocketPool, parse_destination
from elb_log_shipper.logstash.confirmed import ConfirmedProgress
from elb_log_shipper.logstash.connection import build_ssl_context, wait_slice


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://logstash.internal:5000", ("logstash.internal", 5000, False, "json_lines")),
        ("tls://logstash.internal:6514", ("logstash.internal", 6514, True, "json_lines")),
        ("tcp://127.0.0.1", ("127.0.0.1", 5044, False, "json_lines")),
        ("tls://[::1]:5000", ("::1", 5000, True, "json_lines")),
        ("  tcp://host:1/ ", ("host", 1, False, "json_lines")),
        ("beats://logstash:5044", ("logstash", 5044, False, "beats")),
        ("beats+tls://logstash", ("logstash", 5044, True, "beats")),
    ],
)
def test_parse_destination(url: str, expected: tuple[str, int, bool, str]) -> None:
    destination = parse_destination(url)
    assert (destination.host, destination.port, destination.tls, destination.protocol) == expected
    assert Settings.from_env({}, **destination.settings()).protocol == expected[3]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("logstash:5000", "scheme"),
        ("http://logstash:5000", "scheme"),
        ("beats+tcp://logstash:5000", "scheme"),
        ("tcp://:5000", "no host"),
        ("tcp://host:notaport", "has no port from 1 to 65535"),
        ("tcp://host:70000", "has no port from 1 to 65535"),
        ("tcp://host:0", "port 0"),
        ("tcp://host:5000/path", "more than"),
        ("tcp://user@host:5000", "more than"),
        # As LOGSTASH_HOST takes it, but a URL needs the brackets.
        ("beats://2001:db8::1:5044", r"without brackets: write it as beats://\[address\]:port"),
        ("tcp://[2001:db8::1:5044", "invalid"),
        ("tcp://2001:db8::1]:5044", "invalid"),
    ],
)
def test_parse_destination_rejects(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_destination(url)


def test_pool_needs_a_host() -> None:
    with pytest.raises(ConfigurationError, match="LOGSTASH_HOST"):
        SocketPool(Settings())


def test_unreadable_tls_files_are_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    settings = Settings(host="127.0.0.1", tls=True, ca_file=str(bad))
    with pytest.raises(ConfigurationError) as raised:
        build_ssl_context(settings)
    assert str(raised.value).startswith(f"cannot load LOGSTASH_CA_FILE={bad} (--ca-file): ")
    assert str(raised.value).endswith("check it is a PEM CA bundle")


def test_tls_context_verifies_hostnames() -> None:
    context = build_ssl_context(Settings(host="127.0.0.1", tls=True))
    assert context.check_hostname


@pytest.mark.parametrize(
    ("protocol", "batch"),
    [("json_lines", b'{"a":1}'), ("beats", b'{"a":1}\n')],
    ids=["json-lines-without-newline", "beats-given-json-lines"],
)
def test_a_batch_in_another_format_is_refused(protocol: str, batch: bytes) -> None:
    sender = LogstashSender(SocketPool(Settings(host="127.0.0.1", port=9, protocol=protocol)))
    with pytest.raises(ValueError, match=f"format, {protocol}"):
        sender.send(batch, 1)
    sender.abort()


def test_send_after_finish_is_a_bug() -> None:
    pool = SocketPool(Settings(host="127.0.0.1", port=9))
    sender = LogstashSender(pool)
    stats = sender.finish(time.monotonic() + 1)
    assert stats.events_sent == 0
    assert pool.open_connections == 0
    with pytest.raises(RuntimeError):
        sender.send(b"{}\n", 1)


def testwait_slice_raises_after_the_deadline() -> None:
    assert wait_slice(None, "x") > 0
    assert 0 < wait_slice(time.monotonic() + 10, "x") <= 10
    with pytest.raises(DeliveryError, match="deadline"):
        wait_slice(time.monotonic() - 1, "writing")


def test_confirmed_progress_is_the_longest_confirmed_prefix() -> None:
    progress = ConfirmedProgress()
    first, second, third = progress.issue(10), progress.issue(20), progress.issue(30)
    third.confirm()
    assert progress.offset is None
    first.confirm()
    assert progress.offset == 10
    second.split(2)
    second.confirm()
    assert progress.offset == 10  # one of its two parts is still out
    second.confirm()
    assert progress.offset == 30


def test_confirmed_progress_tells_each_new_offset_once_in_order() -> None:
    """What a worker process posts as its checkpoint, as each confirmation comes."""
    heard: list[int] = []
    progress = ConfirmedProgress(heard.append)
    first, second, third = progress.issue(10), progress.issue(20), progress.issue(30)
    untracked = progress.issue(None)
    third.confirm()
    second.split(2)
    second.confirm()
    assert heard == []  # nothing of the prefix yet
    first.confirm()
    second.confirm()
    untracked.confirm()  # no offset of its own: nothing new
    assert heard == [10, 30]


def test_open_bytes_count_from_the_oldest_unconfirmed_batch() -> None:
    """What a retry from the confirmed offset sends again, which the sender's lag bound keeps
    below a limit: the bytes of the oldest unconfirmed batch and of every later one."""
    progress = ConfirmedProgress()
    first, second, third = progress.issue(10, 100), progress.issue(20, 200), progress.issue(30, 400)
    third.confirm()
    assert progress.open_bytes == 700  # confirmed, but after an unconfirmed one
    first.confirm()
    assert progress.open_bytes == 600
    assert progress.wait_below(600, 0)  # at most the limit
    assert not progress.wait_below(599, 0)
    second.confirm()
    assert progress.open_bytes == 0


def test_a_divided_batch_gives_its_bytes_back_with_its_last_part() -> None:
    progress = ConfirmedProgress()
    parts = progress.issue(900, 1_000).divide([300, 600])
    assert progress.open_bytes == 1_000
    for part in parts[:-1]:
        part.confirm()
    assert progress.offset == 600
    assert progress.open_bytes == 1_000  # the last part, unconfirmed, is sent again with its batch
    parts[-1].confirm()
    assert (progress.offset, progress.open_bytes) == (900, 0)


def test_untracked_batches_still_hold_the_prefix_back() -> None:
    progress = ConfirmedProgress()
    untracked, tracked = progress.issue(None), progress.issue(50)
    tracked.confirm()
    assert progress.offset is None
    untracked.confirm()
    assert progress.offset == 50
