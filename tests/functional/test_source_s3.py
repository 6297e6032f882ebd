"""LineReader against a moto S3 server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import bz2
import gzip
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from botocore.hooks import HierarchicalEmitter

from elb_log_shipper.errors import ObjectChangedError, SourceError
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.source import MAX_READ_RETRIES, READ_POLL_SECONDS, LineReader, read_lines
from tests.support.certs import CertBundle
from tests.support.damaged import damaged_gzip, reference_lines
from tests.support.s3server import FaultyS3, MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import StorageClassType

pytestmark = pytest.mark.timeout(60)

KEY = "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2024/03/01/x.log"
LINES = [
    b"h2 2024-03-01T00:00:%02d.000000Z app/web/50dc6c495c0c9188 192.0.2.%d:443 10.0.1.5:80 0.001 "
    b'0.002 0.000 200 200 34 366 "GET https://example.com:443/p?q=%d HTTP/2.0" "curl/8.4.0"'
    % (i % 60, i % 250, i)
    for i in range(300)
]
DATA = b"\n".join(LINES) + b"\n"
OFFSETS = [sum(len(line) + 1 for line in LINES[:i]) for i in range(len(LINES))]
EXPECTED = list(zip(OFFSETS, LINES, strict=True))


@pytest.fixture(scope="module")
def s3(moto: MotoServer) -> S3Client:
    return moto.client()


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    bucket = moto.new_bucket()
    moto.put_object(bucket, "plain.log", DATA)
    moto.put_object(bucket, "plain.log.gz", DATA)  # the name lies: it is plain
    moto.put_object(bucket, "gzip.log", DATA, compress=True)
    halves = gzip.compress(DATA[: OFFSETS[100]]) + gzip.compress(DATA[OFFSETS[100] :])
    moto.put_object(bucket, "members.log.gz", halves)
    moto.put_object(bucket, "empty.log", b"")
    return bucket


def read_all(reader: LineReader) -> list[tuple[int, bytes]]:
    return [line for batch in reader for line in batch]


@pytest.mark.parametrize(
    ("key", "compressed"),
    [("plain.log", False), ("plain.log.gz", False), ("gzip.log", True), ("members.log.gz", True)],
)
def test_reads_plain_and_gzip_objects_by_their_content(
    s3: S3Client, bucket: str, key: str, compressed: bool
) -> None:
    reader = LineReader(ObjectRef(bucket, key), s3, chunk_size=1000).open()
    head = s3.head_object(Bucket=bucket, Key=key)
    # Known before the first line: the caller builds event ids from them.
    assert reader.compressed is compressed
    assert reader.etag == head["ETag"].strip('"')
    assert reader.size == head["ContentLength"]
    assert read_all(reader) == EXPECTED
    assert reader.bytes_read == head["ContentLength"]
    assert reader.bytes_decompressed == len(DATA)
    assert reader.resume_offset == len(DATA)


def test_batches_follow_the_chunks(s3: S3Client, bucket: str) -> None:
    batches = list(read_lines(ObjectRef(bucket, "plain.log"), s3, chunk_size=4096))
    assert len(batches) > 1
    assert [line for batch in batches for line in batch] == EXPECTED


def test_an_empty_object_has_no_lines(s3: S3Client, bucket: str) -> None:
    reader = LineReader(ObjectRef(bucket, "empty.log"), s3)
    assert read_all(reader) == []
    assert reader.compressed is False


@pytest.mark.parametrize("key", ["plain.log", "gzip.log", "members.log.gz"])
def test_resume_at_any_line_yields_exactly_the_suffix(s3: S3Client, bucket: str, key: str) -> None:
    for index in [*range(0, len(LINES), 37), len(LINES) - 1]:
        ref = ObjectRef(bucket, key, start_offset=OFFSETS[index])
        assert read_all(LineReader(ref, s3, chunk_size=3000)) == EXPECTED[index:]
    assert read_all(LineReader(ObjectRef(bucket, key, start_offset=len(DATA)), s3)) == []


class RecordingClient:
    """Passes calls to a real client and remembers the GetObject arguments."""

    def __init__(self, client: S3Client) -> None:
        self.client = client
        self.meta = client.meta  # its events: the reader hooks its retries there
        self.gets: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append(kwargs)
        return self.client.get_object(**kwargs)


def test_plain_resume_reads_a_range_pinned_by_the_etag(s3: S3Client, bucket: str) -> None:
    recorder = RecordingClient(s3)
    ref = ObjectRef(bucket, "plain.log", start_offset=OFFSETS[250])
    reader = LineReader(ref, cast("S3Client", recorder), chunk_size=1000)
    assert read_all(reader) == EXPECTED[250:]
    first, ranged = recorder.gets
    assert "Range" not in first
    assert ranged["Range"] == f"bytes={OFFSETS[250] - 1}-"
    assert ranged["IfMatch"] == f'"{reader.etag}"'
    # Only the first chunk and the range were transferred, not the lines before the offset.
    assert reader.bytes_read == 1000 + len(DATA) - OFFSETS[250] + 1


def test_gzip_resume_inflates_from_the_start_in_one_get(s3: S3Client, bucket: str) -> None:
    recorder = RecordingClient(s3)
    ref = ObjectRef(bucket, "gzip.log", start_offset=OFFSETS[250])
    assert read_all(LineReader(ref, cast("S3Client", recorder))) == EXPECTED[250:]
    assert len(recorder.gets) == 1 and "Range" not in recorder.gets[0]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_resume_after_a_last_line_without_newline_yields_nothing(
    moto: MotoServer, s3: S3Client, bucket: str, compress: bool
) -> None:
    # Where a hop resumes when all of such an object was delivered and the confirmation then
    # failed: it was refused ("not at the start of a line") and dead-lettered.
    key = f"no-final-newline-{compress}.log"
    moto.put_object(bucket, key, DATA.rstrip(b"\n"), compress=compress)
    whole = LineReader(ObjectRef(bucket, key), s3)
    assert read_all(whole) == EXPECTED
    rest = LineReader(ObjectRef(bucket, key, start_offset=whole.resume_offset), s3)
    assert read_all(rest) == []


@pytest.mark.parametrize("key", ["plain.log", "gzip.log"])
def test_resume_inside_a_line_is_an_error(s3: S3Client, bucket: str, key: str) -> None:
    ref = ObjectRef(bucket, key, start_offset=OFFSETS[5] + 3)
    with pytest.raises(SourceError, match=f"s3://{bucket}/{key}: .*not at the start of a line"):
        read_all(LineReader(ref, s3))


@pytest.mark.parametrize("key", ["plain.log", "gzip.log"])
def test_resume_beyond_the_end_is_an_error(s3: S3Client, bucket: str, key: str) -> None:
    ref = ObjectRef(bucket, key, start_offset=len(DATA) + 10)
    with pytest.raises(SourceError, match=f"resume offset {len(DATA) + 10} is beyond the end"):
        read_all(LineReader(ref, s3))


@pytest.mark.parametrize("compress", [False, True])
def test_an_object_changed_before_resume_is_an_error(
    moto: MotoServer, s3: S3Client, compress: bool
) -> None:
    bucket = moto.new_bucket()
    first = moto.put_object(bucket, "x.log", DATA, compress=compress)
    moto.put_object(bucket, "x.log", DATA + b"one more line\n", compress=compress)
    ref = ObjectRef(bucket, "x.log", etag=first["ETag"], start_offset=OFFSETS[10])
    with pytest.raises(ObjectChangedError, match=f"s3://{bucket}/x.log changed since") as caught:
        LineReader(ref, s3).open()
    assert isinstance(caught.value.__cause__, ClientError)
    assert not caught.value.transient


def test_etag_from_an_event_pins_the_first_read(moto: MotoServer, s3: S3Client) -> None:
    bucket = moto.new_bucket()
    etag = moto.put_object(bucket, "x.log", DATA)["ETag"]
    reader = LineReader(ObjectRef(bucket, "x.log", etag=etag), s3).open()
    assert reader.etag == etag
    assert read_all(reader) == EXPECTED


def test_a_version_is_read_as_it_was(moto: MotoServer, s3: S3Client) -> None:
    bucket = moto.new_bucket(versioned=True)
    old = moto.put_object(bucket, "x.log", DATA, compress=True)
    moto.put_object(bucket, "x.log", b"new\n", compress=True)
    ref = ObjectRef(bucket, "x.log", version_id=old["VersionId"], start_offset=OFFSETS[3])
    reader = LineReader(ref, s3).open()
    assert (reader.version_id, reader.etag) == (old["VersionId"], old["ETag"])
    assert read_all(reader) == EXPECTED[3:]
    assert LineReader(ObjectRef(bucket, "x.log"), s3).open().version_id not in (
        None,
        old["VersionId"],
    )


@pytest.mark.parametrize(
    ("bucket_name", "message"),
    [
        ("own", r"s3://{bucket}/missing.log does not exist \(NoSuchKey\)"),
        ("no-such-bucket-here", r"the bucket of s3://{bucket}/missing.log does not exist"),
    ],
)
def test_a_missing_object_is_a_clear_source_error(
    s3: S3Client, bucket: str, bucket_name: str, message: str
) -> None:
    name = bucket if bucket_name == "own" else bucket_name
    with pytest.raises(SourceError, match=message.format(bucket=name)) as caught:
        LineReader(ObjectRef(name, "missing.log"), s3).open()
    assert isinstance(caught.value.__cause__, ClientError)


def test_the_standard_endpoint_variable_works_with_a_default_client(
    moto: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint_url)
    assert boto3.client("s3").meta.endpoint_url == moto.endpoint_url
    assert read_all(LineReader(ObjectRef(bucket, "gzip.log"))) == EXPECTED


class BreakingBody:
    """A response body whose connection resets after ``limit`` bytes."""

    def __init__(self, body: Any, limit: int) -> None:
        self.body = body
        self.limit = limit

    def read(self, amt: int) -> bytes:
        if self.limit <= 0:
            raise ResponseStreamingError(error=ConnectionResetError("connection reset by peer"))
        data: bytes = self.body.read(min(amt, self.limit))
        self.limit -= len(data)
        return data

    def close(self) -> None:
        self.body.close()


class FlakyClient(RecordingClient):
    """The first ``failures`` responses break after ``limit`` bytes."""

    def __init__(self, client: S3Client, failures: int, limit: int) -> None:
        super().__init__(client)
        self.failures = failures
        self.limit = limit

    def get_object(self, **kwargs: Any) -> Any:
        response = super().get_object(**kwargs)
        if self.failures:
            self.failures -= 1
            response["Body"] = BreakingBody(response["Body"], self.limit)
        return response


@pytest.mark.parametrize("key", ["plain.log", "gzip.log"])
def test_a_connection_reset_mid_stream_resumes_with_a_range(
    s3: S3Client, bucket: str, key: str
) -> None:
    flaky = FlakyClient(s3, failures=2, limit=700)
    reader = LineReader(ObjectRef(bucket, key), cast("S3Client", flaky), chunk_size=1000)
    assert read_all(reader) == EXPECTED
    assert reader.retries == 2
    assert [get.get("Range") for get in flaky.gets] == [None, "bytes=700-", "bytes=1400-"]
    assert all(get["IfMatch"] == f'"{reader.etag}"' for get in flaky.gets[1:])


@pytest.mark.parametrize("start", [0, OFFSETS[150]], ids=["fresh", "resumed"])
def test_a_read_cut_after_its_first_byte_does_not_decide_the_format(
    s3: S3Client, bucket: str, start: int
) -> None:
    # S3 closing cleanly after one byte: the first chunk is b"\x1f" alone. Judged from it, the
    # gzip object was read as one line of binary (fresh), or refused as resumed beyond its end.
    flaky = FlakyClient(s3, failures=1, limit=1)
    ref = ObjectRef(bucket, "gzip.log", start_offset=start)
    reader = LineReader(ref, cast("S3Client", flaky), chunk_size=1000)
    assert read_all(reader) == [line for line in EXPECTED if line[0] >= start]
    assert reader.compressed is True
    assert reader.retries == 1


def test_too_many_resets_in_a_row_are_a_source_error_after_the_lines_read(
    s3: S3Client, bucket: str
) -> None:
    # Each read breaks after 600 bytes, less than a chunk (1000): the network is failing.
    flaky = FlakyClient(s3, failures=MAX_READ_RETRIES + 1, limit=600)
    reader = LineReader(ObjectRef(bucket, "plain.log"), cast("S3Client", flaky), chunk_size=1000)
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(
        SourceError, match=f"after {MAX_READ_RETRIES} retries without progress"
    ) as caught:
        for batch in reader:
            lines.extend(batch)
    assert caught.value.transient
    assert lines == EXPECTED[: len(lines)]
    assert lines[-1][0] + len(lines[-1][1]) <= 600 * (MAX_READ_RETRIES + 1)


def test_resets_a_chunk_or_more_apart_are_ridden_through(s3: S3Client, bucket: str) -> None:
    # Each read breaks after 3,000 bytes, three chunks: a network that resets now and then, not
    # a failing one. Counted over the whole object, the fourth reset failed it (and every retry
    # of it, each from the same start, until the dead-letter queue).
    failures = 4 * MAX_READ_RETRIES
    flaky = FlakyClient(s3, failures=failures, limit=3000)
    ref = ObjectRef(bucket, "plain.log")
    reader = LineReader(ref, cast("S3Client", flaky), chunk_size=1000)
    assert read_all(reader) == EXPECTED
    assert reader.retries == failures
    assert [get.get("Range") for get in flaky.gets[1:3]] == ["bytes=3000-", "bytes=6000-"]


@pytest.mark.parametrize("key", ["plain.log", "gzip.log"])
def test_a_tls_record_corrupted_mid_stream_resumes_with_a_range(
    moto: MotoServer, bucket: str, certs: CertBundle, key: str
) -> None:
    # A byte corrupted in transit fails its TLS record's check: urllib3 raises its SSLError,
    # which botocore passes on unwrapped (it wraps a reset). It escaped the reader, not retried.
    size = moto.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
    with FaultyS3(moto, tls=certs.server_context(), garble_after=size // 2) as faulty:
        client = faulty.client(verify=certs.ca_file)
        reader = LineReader(ObjectRef(bucket, key), client, chunk_size=1000)
        assert read_all(reader) == EXPECTED
    assert faulty.garble_after is None  # the record was sent
    assert reader.retries == 1
    assert len(faulty.gets) == 2


def test_bytes_that_do_not_match_the_s3_checksum_are_a_transient_source_error(
    moto: MotoServer, bucket: str
) -> None:
    # boto3 asks S3 for the object's checksum and checks the body against it at its end: a
    # mismatch raised botocore's FlexibleChecksumError, which escaped the reader.
    head = moto.client().head_object(Bucket=bucket, Key="plain.log", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32")
    with FaultyS3(moto, corrupt_at=OFFSETS[150] + 10) as faulty:
        reader = LineReader(ObjectRef(bucket, "plain.log"), faulty.client(), chunk_size=1000)
        lines: list[tuple[int, bytes]] = []
        with pytest.raises(SourceError, match="do not match the object's S3 checksum") as caught:
            for batch in reader:
                lines.extend(batch)
    assert caught.value.transient
    assert str(caught.value).startswith(f"s3://{bucket}/plain.log: ")
    assert len(lines) == len(EXPECTED)  # the check comes at the end, after every line


class DenyingClient:
    # Where a real client's hooks are (the reader registers its retry note's there).
    meta = SimpleNamespace(events=HierarchicalEmitter())

    def get_object(self, **kwargs: Any) -> Any:
        response: Any = {
            "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }
        raise ClientError(response, "GetObject")


def test_access_denied_is_a_clear_source_error() -> None:
    ref = ObjectRef("logs", "x.log")
    with pytest.raises(SourceError, match=r"access to s3://logs/x.log is denied") as caught:
        LineReader(ref, cast("S3Client", DenyingClient())).open()
    assert isinstance(caught.value.__cause__, ClientError)


# --- what a later read can cure: SourceError.transient, over real HTTP ---------------------------


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (503, "SlowDown", True),
        (503, "ServiceUnavailable", True),
        (500, "InternalError", True),
        (502, "BadGateway", True),
        (400, "RequestTimeout", True),
        (400, "Throttling", True),
        (403, "AccessDenied", True),
        (404, "NoSuchKey", False),
        (404, "NoSuchBucket", False),
        (416, "InvalidRange", False),
        (400, "InvalidRequest", False),
    ],
)
def test_s3_answers_are_classified_where_they_happen(
    moto: MotoServer, bucket: str, status: int, code: str, transient: bool
) -> None:
    with (
        FaultyS3(moto, error=(status, code)) as faulty,
        pytest.raises(SourceError, match=f"s3://{bucket}/plain.log") as caught,
    ):
        LineReader(ObjectRef(bucket, "plain.log"), faulty.client()).open()
    assert caught.value.transient is transient
    assert type(caught.value) is SourceError


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_an_archived_object_says_to_restore_it(
    moto: MotoServer, s3: S3Client, storage_class: StorageClassType
) -> None:
    # S3 answers 403 InvalidObjectState: it was reported as access denied, "grant s3:GetObject".
    bucket = moto.new_bucket()
    s3.put_object(Bucket=bucket, Key="old.log", Body=DATA, StorageClass=storage_class)
    with pytest.raises(SourceError) as caught:
        LineReader(ObjectRef(bucket, "old.log"), s3).open()
    assert str(caught.value) == (
        f"s3://{bucket}/old.log is archived in {storage_class}, which S3 does not read "
        "(InvalidObjectState): restore it (aws s3api restore-object), then ship it again"
    )
    assert caught.value.transient


def test_an_unreachable_s3_is_transient(moto: MotoServer) -> None:
    with FaultyS3(moto) as faulty:
        client = faulty.client(connect_timeout=1)
    # The endpoint is closed now: the connection is refused.
    with pytest.raises(SourceError, match=r"cannot read s3://logs/x\.log") as caught:
        LineReader(ObjectRef("logs", "x.log"), client).open()
    assert caught.value.transient


def test_bad_bytes_are_permanent(moto: MotoServer, s3: S3Client) -> None:
    bucket = moto.new_bucket()
    moto.put_object(bucket, "cut.log.gz", gzip.compress(DATA)[:-20])
    with pytest.raises(SourceError, match="truncated") as caught:
        read_all(LineReader(ObjectRef(bucket, "cut.log.gz"), s3))
    assert not caught.value.transient


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("start", [0, 1, 30_000])
def test_a_corrupt_gzip_object_gives_every_line_before_the_damage_once(
    moto: MotoServer, s3: S3Client, read_ahead: bool, start: int
) -> None:
    # ISA-L drops up to a step of text before the damage (tests/unit/test_framing.py): the
    # reader reads the object again, pinned to its ETag, for the lines from the first not yet
    # given up to the damage, then fails as before, placing the damage to the byte.
    damage = damaged_gzip()
    bucket = moto.new_bucket()
    moto.put_object(bucket, "damaged.log.gz", damage.data)
    expected = reference_lines(damage.text[: damage.intact])
    start_offset = expected[start][0] if start else 0
    ref = ObjectRef(bucket, "damaged.log.gz", start_offset=start_offset)
    reader = LineReader(
        ref, s3, chunk_size=256 * 1024, should_stop=(lambda: False) if read_ahead else None
    )
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(SourceError) as caught:
        for batch in reader:
            lines.extend(batch)
    assert lines == expected[start:]
    assert str(caught.value) == (
        f"s3://{bucket}/damaged.log.gz: gzip data is corrupt in member 1 at compressed byte "
        f"{damage.at}: Error -3 while decompressing data: invalid block type"
    )
    assert not caught.value.transient
    assert reader.salvaged
    assert reader.bytes_read > len(damage.data)  # read twice, in part


def test_a_second_reading_that_stalls_hands_off_when_asked(moto: MotoServer) -> None:
    # The second GET is the read-ahead thread's, as the first: a stalled S3 ends the reading
    # when should_stop says so, at the first line not given, for the next hop to go on from.
    damage = damaged_gzip()
    bucket = moto.new_bucket()
    moto.put_object(bucket, "damaged.log.gz", damage.data)
    asked_after: list[float] = []

    def should_stop() -> bool:
        if not asked_after:
            asked_after.append(time.monotonic())
        return True

    with FaultyS3(moto, stall_reads_after=1) as faulty:
        client = faulty.client(read_timeout=120)
        reader = LineReader(
            ObjectRef(bucket, "damaged.log.gz"),
            client,
            chunk_size=256 * 1024,
            should_stop=should_stop,
        )
        lines = read_all(reader)
        stopped = time.monotonic()
        assert faulty.stalls == 1
        faulty.release()
    assert reader.salvaged
    assert stopped - asked_after[0] < 2 * READ_POLL_SECONDS + 0.5
    expected = reference_lines(damage.text[: damage.intact])
    assert lines == expected[: len(lines)]
    assert reader.stopped_at == expected[len(lines)][0]


def test_a_corrupt_gzip_object_changed_before_its_second_reading_is_not_mixed(
    moto: MotoServer, s3: S3Client
) -> None:
    damage = damaged_gzip()
    bucket = moto.new_bucket()
    moto.put_object(bucket, "damaged.log.gz", damage.data)
    reader = LineReader(ObjectRef(bucket, "damaged.log.gz"), s3, chunk_size=256 * 1024)
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(ObjectChangedError):
        for batch in reader:
            if not lines:  # the first reading's stream goes on; the second GET meets the change
                moto.put_object(bucket, "damaged.log.gz", damage.data + b"\0")
            lines.extend(batch)
    assert reader.salvaged
    assert lines == reference_lines(damage.text)[: len(lines)]


# --- pins from the event ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version_id", "etag", "message"),
    [
        (None, "b1946ac92492d2347c6235b4d2611184", "is not the object named (ETag b1946"),
        ("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", None, "has no version IYV3p45BT0ac8hj"),
    ],
)
def test_a_pin_from_the_event_that_does_not_match_says_what_to_change(
    moto: MotoServer, s3: S3Client, version_id: str | None, etag: str | None, message: str
) -> None:
    bucket = moto.new_bucket(versioned=version_id is not None)
    moto.put_object(bucket, "x.log", DATA)
    with pytest.raises(ObjectChangedError) as caught:
        LineReader(ObjectRef(bucket, "x.log", version_id, etag), s3).open()
    assert str(caught.value).startswith(f"s3://{bucket}/x.log {message}")
    assert "leave eTag and versionId out of a hand-written event" in str(caught.value)
    assert not caught.value.transient


# --- another compression than ELB's ----------------------------------------------------------


def test_an_object_in_another_compression_is_refused_in_one_sentence(
    moto: MotoServer, s3: S3Client
) -> None:
    bucket = moto.new_bucket()
    moto.put_object(bucket, "x.log.bz2", bz2.compress(DATA))
    reader = LineReader(ObjectRef(bucket, "x.log.bz2"), s3)
    with pytest.raises(SourceError) as caught:
        read_all(reader)
    assert str(caught.value) == (
        f"s3://{bucket}/x.log.bz2: the data is bzip2-compressed (by its first bytes), but ELB "
        "writes gzip or plain text: decompress it and ship the log itself"
    )
    assert not caught.value.transient


# --- reads that stall, under a deadline ------------------------------------------------------


@pytest.mark.parametrize("key", ["plain.log", "gzip.log"])
def test_a_stalled_read_stops_when_asked_and_the_rest_resumes_exactly(
    moto: MotoServer, bucket: str, key: str
) -> None:
    size = moto.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
    asked: list[bool] = []

    def should_stop() -> bool:
        asked.append(True)
        return True

    with FaultyS3(moto, stall_after=size // 2) as faulty:
        # A read timeout far beyond the test: only should_stop can end the stall.
        client = faulty.client(read_timeout=120)
        reader = LineReader(ObjectRef(bucket, key), client, chunk_size=512, should_stop=should_stop)
        first = read_all(reader)
        assert faulty.stalls == 1
        assert asked
        assert reader.stopped_at is not None
        faulty.release()
        rest = read_all(LineReader(ObjectRef(bucket, key, start_offset=reader.stopped_at), client))
        # The abandoned read-ahead thread ends once its read returns: nothing is left behind.
        for thread in threading.enumerate():
            if thread.name == "s3-read-ahead":
                thread.join(timeout=30)
                assert not thread.is_alive()
    assert first + rest == EXPECTED
    assert first and rest
    assert rest[0][0] == reader.stopped_at


def test_a_read_that_breaks_after_the_reader_stopped_sends_no_new_get(
    moto: MotoServer, bucket: str
) -> None:
    # should_stop ended the reading while its read-ahead thread waited on a stalled body; that
    # read then breaks (the client's read timeout). Nobody wants the rest: the thread ends
    # without the ranged GET that a broken read otherwise sends to resume.
    size = moto.client().head_object(Bucket=bucket, Key="plain.log")["ContentLength"]
    with FaultyS3(moto, stall_after=size // 2) as faulty:
        client = faulty.client(read_timeout=1)
        reader = LineReader(
            ObjectRef(bucket, "plain.log"), client, chunk_size=512, should_stop=lambda: True
        )
        lines = read_all(reader)
        assert reader.stopped_at is not None
        for thread in threading.enumerate():
            if thread.name == "s3-read-ahead":
                thread.join(timeout=30)
                assert not thread.is_alive()
        assert faulty.ranges == [None], "a GET for a reading that had stopped"
    assert lines == EXPECTED[: len(lines)]


def test_a_read_that_fails_once_the_reader_must_stop_hands_off(
    moto: MotoServer, bucket: str
) -> None:
    # A transient S3 failure met when should_stop says the time is up is a hand-off at the
    # start, for the next hop to retry, not a failure of the object. should_stop says so only
    # once the client has S3's answer: the reader meets the failure, not a read still awaited
    # (the first request of a client can take longer than a poll).
    answered = threading.Event()
    with FaultyS3(moto, error=(503, "SlowDown")) as faulty:
        client = faulty.client()
        client.meta.events.register("after-call.s3.GetObject", lambda **_: answered.set())
        ref = ObjectRef(bucket, "plain.log", start_offset=OFFSETS[7])
        reader = LineReader(ref, client, should_stop=answered.is_set).open()
        assert faulty.gets
    assert reader.stopped_at == OFFSETS[7]
    assert read_all(reader) == []


def test_a_read_stalled_before_its_first_byte_stops_at_its_start(
    moto: MotoServer, bucket: str
) -> None:
    with FaultyS3(moto, stall_after=0) as faulty:
        client = faulty.client(read_timeout=120)
        ref = ObjectRef(bucket, "gzip.log", start_offset=OFFSETS[5])
        reader = LineReader(ref, client, should_stop=lambda: True).open()
        assert reader.stopped_at == OFFSETS[5]
        assert read_all(reader) == []


def test_read_ahead_yields_what_a_plain_read_yields(s3: S3Client, bucket: str) -> None:
    for key in ("plain.log", "gzip.log", "members.log.gz", "empty.log"):
        reader = LineReader(ObjectRef(bucket, key), s3, chunk_size=700, should_stop=lambda: False)
        assert read_all(reader) == read_all(LineReader(ObjectRef(bucket, key), s3)), key
        assert reader.stopped_at is None


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("read_ahead", [False, True], ids=["inline", "read-ahead"])
def test_an_object_overwritten_between_a_cut_and_its_resume_is_not_mixed(
    moto: MotoServer, compress: bool, read_ahead: bool
) -> None:
    # Over real HTTP: the body is cut at its middle and the object overwritten before the
    # ranged GET that resumes it. The lines given are the first version's, none of the second.
    bucket = moto.new_bucket()
    moto.put_object(bucket, "x.log", DATA, compress=compress)
    size = moto.client().head_object(Bucket=bucket, Key="x.log")["ContentLength"]

    def overwrite() -> None:
        moto.put_object(bucket, "x.log", DATA.replace(b"curl", b"wget"), compress=compress)

    with FaultyS3(moto, cut_after=size // 2, before_ranged_read=overwrite) as faulty:
        reader = LineReader(
            ObjectRef(bucket, "x.log"),
            faulty.client(),
            chunk_size=1000,
            should_stop=(lambda: False) if read_ahead else None,
        )
        lines: list[tuple[int, bytes]] = []
        with pytest.raises(ObjectChangedError, match="changed since it was first read"):
            for batch in reader:
                lines.extend(batch)
    assert faulty.ranges[0] is None
    assert faulty.ranges[1:] and all(r and r.startswith("bytes=") for r in faulty.ranges[1:])
    assert lines == EXPECTED[: len(lines)]
    assert reader.retries == 1
