"""S3 object or local file -> batches of decompressed lines with byte offsets, streaming.

The reading is I/O only; cutting lines and inflating gzip is ``framing.LineDecoder``. An object is
never held in memory: it is read in chunks of ``chunk_size`` bytes, inflated in bounded steps and
each batch is handed to the caller before the next chunk is read.

Resume (``ObjectRef.start_offset > 0``): a gzip object is inflated again from its start and the
lines before the offset dropped (deflate cannot seek); a plain object is read with a ranged GET
from one byte before the offset, so that the ``\\n`` there proves a line starts at the offset.
Every GET after the first carries ``If-Match`` with the first one's ETag, so a resumed or retried
read never mixes two versions of an object: a change raises ``ObjectChangedError``. An ETag or
version named by the event pins the first GET the same way: the object read is the one the event
names, or none.

Corrupt gzip: ISA-L drops the text of the step in which it meets the damage (up to 1 MiB), so the
object is read a second time (pinned the same way) and inflated from its start by the slower,
byte-exact ``framing.SalvagingGzipInflater``, for the lines from the first not yet given up to the
damage; the error that follows names the compressed byte. A local file is read again by the
descriptor of its first reading (the same file, whatever its name names by then), unless it was
written to since: its size or modification time changed.

Deadline (``should_stop``): the S3 reads then run in a thread one or two chunks ahead of the
caller, which overlaps the network with the parsing and lets a read that stalls be abandoned.
While a chunk is awaited, ``should_stop()`` is asked every ``READ_POLL_SECONDS``; when it answers
True the iteration ends early and ``stopped_at`` says where the next read resumes.

Every ``SourceError`` says whether a later read can succeed (``transient``), decided here, where
the S3 answer is known.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)

from elb_log_shipper.awssetup import (
    CREDENTIALS_REFUSED,
    NO_CREDENTIALS,
    RENEW_CREDENTIALS,
    region,
)
from elb_log_shipper.errors import (
    ArchivedObjectError,
    CredentialsError,
    ObjectChangedError,
    SourceError,
)
from elb_log_shipper.framing import (
    SNIFF_BYTES,
    Batch,
    CorruptGzipError,
    LineDecoder,
    SalvagingGzipInflater,
    sniff_compression,
)
from elb_log_shipper.refs import ObjectRef

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_READ_RETRIES",
    "READ_AHEAD_CHUNKS",
    "READ_POLL_SECONDS",
    "LineReader",
    "read_lines",
    "retry_note",
]

# Large enough that per-chunk Python work is noise next to framing (about 2000 ALB lines), small
# enough that the chunk, its inflated step and one batch stay a few MiB in a 128 MB Lambda.
DEFAULT_CHUNK_SIZE = 1024 * 1024

# S3 resets a streaming connection now and then; more resets than this in a row, each less than
# a chunk's progress after the one before, mean the network is failing, and the caller's hand-off
# or Lambda's retry is the better answer. A reset a chunk or more after the one before starts the
# count again: counted over the whole object, a network that resets every few hundred MiB failed a
# large object on every retry (each from the same start), until the dead-letter queue.
MAX_READ_RETRIES = 3

# How late a stalled read notices that ``should_stop`` answers True: small next to any deadline
# margin, and a poll is one clock read.
READ_POLL_SECONDS = 0.5

# Chunks read ahead of the parser when reads run in a thread: the next GET's bytes arrive while
# this chunk is parsed, and memory stays at a few chunks.
READ_AHEAD_CHUNKS = 2

# S3 answers that a later attempt can cure: throttling and S3's own faults (any 5xx counts too).
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)
_FIRST_SERVER_ERROR = 500
# What S3 answers when it throttles (503 SlowDown for reads), which the retry note names so.
_THROTTLED_S3_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException"})
# botocore's attempts of a request when its client's configuration names none (standard mode).
_BOTOCORE_DEFAULT_ATTEMPTS = 3
# The LineReader whose GET this thread is sending, for the retry hook (``_note_retry``): botocore
# retries on the thread that called, and the hook is the client's, shared by every reader.
_sending = threading.local()
_RETRY_HOOK_ID = "elb-log-shipper-retry-note"


class LineReader:
    """Read one object or local file as batches of ``(offset, line)``.

    ``open()`` sends the GET (or opens the file) and reads the first chunk, so ``etag``,
    ``version_id``, ``size`` and ``compressed`` are known before the first line; iterating opens
    it if needed. The S3 client is created on first use when none is given, so the standard
    ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL`` variables apply.

    With ``should_stop``, an S3 read that stalls (or keeps failing) while ``should_stop()``
    answers True ends the iteration early, with ``stopped_at`` set to the offset of the first
    line not yielded: hand that to a later read as ``start_offset``.

    >>> with LineReader(ObjectRef.local("alb.log.gz")) as reader:  # doctest: +SKIP
    ...     for batch in reader:
    ...         for offset, line in batch:
    ...             ...

    Raises SourceError (ObjectChangedError for an object other than the one named) with a message
    naming the object; the lines yielded before it are good.
    """

    def __init__(
        self,
        ref: ObjectRef,
        s3_client: S3Client | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        should_stop: Callable[[], bool] | None = None,
        on_retry_note: Callable[[str | None], None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self.ref = ref
        self.etag: str | None = ref.etag.strip('"') if ref.etag else None
        """The object's ETag without quotes (as S3 event notifications spell it); None for files."""
        self.version_id: str | None = ref.version_id
        """The version read, when the bucket is versioned."""
        self.size: int | None = None
        """Size of the whole object or file, in stored (compressed) bytes."""
        self.compressed: bool | None = None
        """Whether the object is gzip, known after ``open()``."""
        self.bytes_read = 0
        """Stored (compressed) bytes received."""
        self.retries = 0
        """Reads resumed after the connection broke mid-stream."""
        self.s3_retries = 0
        """S3 requests botocore sent again (S3 throttled, failed or did not answer)."""
        self._on_retry_note = on_retry_note
        self._noted = False  # on_retry_note last heard of a retry: it must hear it ended
        self._hooked = False
        self.salvaged = False
        """Whether a second reading of the object began, for the lines before a corrupt gzip
        block (``framing.SalvagingGzipInflater``)."""
        self.stopped_at: int | None = None
        """Set when ``should_stop`` ended the reading early: the offset of the first line not
        yielded (the ``start_offset`` of a hand-off)."""
        self._s3 = s3_client
        self._chunk_size = chunk_size
        self._should_stop = should_stop
        self._decoder: LineDecoder | None = None
        self._first = b""
        self._chunks: Generator[bytes, None, None] | None = None
        self._started = False
        self._stalled = False
        # Set when the reading thread's chunks are no longer wanted: it retries nothing more.
        self._halt = threading.Event()
        # Whether ``etag`` came from a GET rather than from the event: a mismatch then means the
        # object changed while it was being read, not that the event named another object.
        self._etag_learned = False
        # A local gzip file's descriptor, kept from its first opening for a second reading
        # (``_salvage``): the same file, whatever its name names by then. And its size and
        # modification time then, which the second reading must find unchanged.
        self._again: int | None = None
        self._written: tuple[int, int] | None = None

    @property
    def bytes_decompressed(self) -> int:
        """Decompressed bytes produced (for plain data, the bytes read)."""
        return self._decoder.bytes_out if self._decoder else 0

    @property
    def resume_offset(self) -> int:
        """Offset of the first line not yet yielded: the ``start_offset`` of a hand-off."""
        return self._decoder.resume_offset if self._decoder else self.ref.start_offset

    def open(self) -> LineReader:
        """Start reading: GET the object (or open the file) and learn what it is. Idempotent."""
        if self._chunks is None:
            try:
                if self.ref.is_local:
                    self._open_file()
                else:
                    self._open_s3()
            except SourceError as exc:
                named = self._named(exc)
                if named is exc:
                    raise
                raise named from exc
        return self

    def close(self) -> None:
        """Release the connection or file; safe to call twice."""
        self._halt.set()
        if self._chunks is not None:
            self._chunks.close()
        if self._again is not None:
            os.close(self._again)
            self._again = None

    def __enter__(self) -> LineReader:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Batch]:
        if self._started:
            raise RuntimeError("a LineReader can be iterated once")
        self._started = True
        self.open()
        decoder, chunks = self._decoder, self._chunks
        assert chunks is not None
        try:
            if decoder is None:  # stopped before S3 answered
                return
            try:
                if self._first:
                    yield from decoder.feed(self._first)
                    self._first = b""
                for chunk in chunks:
                    yield from decoder.feed(chunk)
            except CorruptGzipError:
                # ISA-L dropped the text of its last step before the damage: read it again.
                decoder = self._salvage(decoder.resume_offset)
                chunks = self._chunks
                assert chunks is not None
                for chunk in chunks:
                    yield from decoder.feed(chunk)
            if self._stalled:
                self.stopped_at = decoder.resume_offset
                return
            last = decoder.finish()
            if last:
                yield last
        except SourceError as exc:
            named = self._named(exc)
            if named is exc:
                raise
            raise named from exc
        finally:
            self.close()

    def _salvage(self, resume_offset: int) -> LineDecoder:
        """Start reading the object again for a ``SalvagingGzipInflater``, which gives the lines
        from ``resume_offset`` up to the damage that ISA-L found; the decoder, and the new chunks
        in ``_chunks``. The first reading stops; the second is pinned to the same ETag."""
        assert self._chunks is not None
        self.salvaged = True
        self._chunks.close()
        self._halt.set()
        self._halt = threading.Event()
        if self.ref.is_local:
            chunks = self._file_chunks(self._reopen_local())
        else:
            # The GET in the generator: with should_stop, the read-ahead thread sends it, so a
            # stalled or failing S3 hands off as for the first reading.
            chunks = self._chunks_again()
            if self._should_stop is not None:
                chunks = self._read_ahead(chunks, self._should_stop)
        self._chunks = chunks
        decoder = self._decoder = LineDecoder(
            start_offset=resume_offset, compressed=True, inflater=SalvagingGzipInflater()
        )
        return decoder

    def _chunks_again(self) -> Generator[bytes, None, None]:
        """The object's chunks from its start, by a second GET (pinned as the first)."""
        yield from self._stream(self._get(0)["Body"], 0)

    def _named(self, exc: SourceError) -> SourceError:
        """``exc``, or the same error with the object's name in front."""
        if self.ref.uri in str(exc):
            return exc
        return type(exc)(f"{self.ref.uri}: {exc}", transient=exc.transient, restart=exc.restart)

    # S3

    def _open_s3(self) -> None:
        chunks = self._s3_chunks()
        if self._should_stop is not None:
            chunks = self._read_ahead(chunks, self._should_stop)
        self._chunks = chunks
        self._first = next(chunks, b"")
        if self._decoder is None:
            # should_stop answered True before S3 did: nothing read, resume where we began.
            self.stopped_at = self.ref.start_offset

    def _s3_chunks(self) -> Generator[bytes, None, None]:
        """GET the object, learn what it is (setting the decoder), then yield its chunks."""
        ref = self.ref
        response = self._get(None)
        self.etag = response["ETag"].strip('"')
        self._etag_learned = True
        self.version_id = response.get("VersionId") or ref.version_id
        self.size = response["ContentLength"]
        chunks = self._stream(response["Body"], 0)
        try:
            first = next(chunks, b"")
            # A read cut short (S3 closing after a byte; the retry brings the rest) must not
            # decide the format from too few bytes: a lone 0x1f is no gzip header.
            while len(first) < SNIFF_BYTES and (more := next(chunks, b"")):
                first += more
            self.compressed = sniff_compression(first)
            if self.compressed or ref.start_offset == 0:
                self._decoder = LineDecoder(
                    start_offset=ref.start_offset, compressed=self.compressed
                )
                if first:
                    yield first
                yield from chunks
                return
        finally:
            chunks.close()
        if ref.start_offset > self.size:
            raise SourceError(
                f"resume offset {ref.start_offset} is beyond the end of {ref.uri} "
                f"({self.size} bytes)"
            )
        # From the \n before the resume point: the framer checks that a line starts there.
        stream_offset = ref.start_offset - 1
        self._decoder = LineDecoder(
            start_offset=ref.start_offset, stream_offset=stream_offset, compressed=False
        )
        yield from self._stream(self._get(stream_offset)["Body"], stream_offset)

    def _read_ahead(
        self, chunks: Generator[bytes, None, None], should_stop: Callable[[], bool]
    ) -> Generator[bytes, None, None]:
        """``chunks``, produced by a thread ahead of the caller; ends early (``_stalled``) when
        ``should_stop()`` answers True while a chunk is awaited or the reading failed.

        A stopped thread is left to finish its blocked read alone (the S3 client's read timeout
        ends it); it touches nothing but its own queue and connection, and retries nothing.
        """
        handoff: queue.Queue[bytes | Exception | None] = queue.Queue(READ_AHEAD_CHUNKS)
        halt = self._halt
        thread = threading.Thread(
            target=_pump, args=(chunks, handoff, halt), name="s3-read-ahead", daemon=True
        )
        thread.start()
        try:
            while True:
                try:
                    item = handoff.get(timeout=READ_POLL_SECONDS)
                except queue.Empty:
                    if should_stop():
                        self._stalled = True
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, Exception):
                    # A failure the next hop may not see is a hand-off, not a failure, once
                    # the deadline is near.
                    if isinstance(item, SourceError) and item.transient and should_stop():
                        self._stalled = True
                        return
                    raise item
                yield item
        finally:
            halt.set()

    def _client(self) -> S3Client:
        if self._s3 is None:
            # Imported here: a local file never needs boto3, which takes 0.1 s of CPU to load.
            import boto3  # noqa: PLC0415

            self._s3 = boto3.client("s3", region_name=region())
        if not self._hooked:
            # Once per client (the unique id): a second register is a no-op.
            self._s3.meta.events.register("needs-retry.s3", _note_retry, unique_id=_RETRY_HOOK_ID)
            self._hooked = True
        return self._s3

    def _get(self, range_start: int | None) -> GetObjectOutputTypeDef:
        ref = self.ref
        kwargs: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if self.etag:
            kwargs["IfMatch"] = f'"{self.etag}"'
        if ref.version_id:
            kwargs["VersionId"] = ref.version_id
        if range_start is not None:
            kwargs["Range"] = f"bytes={range_start}-"
        client = self._client()
        _sending.reader = self
        try:
            return client.get_object(**kwargs)
        except ClientError as exc:
            named_by_event = not self._etag_learned and ref.start_offset == 0
            raise _s3_error(exc, ref, self.etag, named_by_event=named_by_event) from exc
        except NO_CREDENTIALS as exc:
            raise CredentialsError(
                f"no usable AWS credentials to read {ref.uri}: {exc}; {RENEW_CREDENTIALS}",
                transient=True,
            ) from exc
        except BotoCoreError as exc:
            raise SourceError(f"cannot read {ref.uri}: {exc}", transient=True) from exc
        finally:
            _sending.reader = None
            if self._noted:
                self._noted = False
                if self._on_retry_note is not None:
                    self._on_retry_note(None)

    def _retried(self, note: str) -> None:
        """botocore sends this reader's GET again (``_note_retry``): count it and say why."""
        self.s3_retries += 1
        if self._on_retry_note is not None:
            self._noted = True
            self._on_retry_note(note)

    def _stream(self, body: StreamingBody, position: int) -> Generator[bytes, None, None]:
        """Chunks of the object from ``position``; a broken connection resumes where it broke."""
        # boto3 has loaded urllib3 already; imported here, a local file never loads it.
        from urllib3.exceptions import SSLError as TLSError  # noqa: PLC0415

        # What a body read raises when its connection broke, each cured by a ranged GET from the
        # bytes received: botocore wraps a reset or a timeout, but not a TLS record that fails
        # its check (a byte corrupted in transit, which TLS catches instead of TCP).
        broken_read = (HTTPClientError, IncompleteReadError, TLSError)
        halt = self._halt  # this reading's: a second one (see _salvage) has its own
        # Resets in a row with less than a chunk's progress between them, and where the last was.
        failing, reset_at = 0, position
        try:
            while True:
                try:
                    chunk = body.read(self._chunk_size)
                except FlexibleChecksumError as exc:
                    # Raised at the end of a whole-object GET, its lines yielded already: which of
                    # them hold the bad bytes cannot be told, so only a new read helps.
                    raise SourceError(
                        f"the bytes read do not match the object's S3 checksum ({exc}): lines "
                        "shipped from it may be corrupt; ship it again from its start",
                        transient=True,
                        restart=True,
                    ) from exc
                except broken_read as exc:
                    body.close()
                    if halt.is_set():
                        return  # nobody wants the rest: no new GET
                    if position - reset_at >= self._chunk_size:
                        failing = 0
                    reset_at = position
                    if failing >= MAX_READ_RETRIES:
                        raise SourceError(
                            f"reading {self.ref.uri} failed at byte {position} after "
                            f"{failing} retries without progress: {exc}",
                            transient=True,
                        ) from exc
                    failing += 1
                    self.retries += 1
                    body = self._get(position)["Body"]
                    continue
                if not chunk:
                    return
                position += len(chunk)
                self.bytes_read += len(chunk)
                yield chunk
        finally:
            body.close()

    # Local files

    def _open_local(self) -> IO[bytes]:
        try:
            return open(self.ref.key, "rb")  # closed by _file_chunks or close()
        except OSError as exc:
            raise _local_error(self.ref.key, exc) from exc

    def _reopen_local(self) -> IO[bytes]:
        """The file first read, from its start (``_salvage``), by the descriptor kept since: the
        same file, renamed, replaced or deleted since or not; if it was written to (its size or
        modification time differ), ObjectChangedError, as an S3 object's ETag would say, so that
        no reading mixes two contents."""
        descriptor, self._again = self._again, None
        assert descriptor is not None  # kept for every gzip file (only gzip is salvaged)
        file = os.fdopen(descriptor, "rb")
        try:
            file.seek(0)
            same = _written(os.fstat(descriptor)) == self._written
        except OSError as exc:
            file.close()
            raise _local_error(self.ref.key, exc) from exc
        if not same:
            file.close()
            raise ObjectChangedError(
                f"{self.ref.uri} changed since it was first read (written to: its size or "
                "modification time differs): ship it again from its start"
            )
        return file

    def _open_file(self) -> None:
        ref = self.ref
        file = self._open_local()
        try:
            status = os.fstat(file.fileno())
            self.size = status.st_size
            self._written = _written(status)
            first = file.read(self._chunk_size)
            self.bytes_read += len(first)
            self.compressed = sniff_compression(first)
            if self.compressed or ref.start_offset == 0:
                self._first = first
                self._decoder = LineDecoder(
                    start_offset=ref.start_offset, compressed=self.compressed
                )
            else:
                if ref.start_offset > self.size:
                    raise SourceError(
                        f"resume offset {ref.start_offset} is beyond the end of {ref.key} "
                        f"({self.size} bytes)"
                    )
                stream_offset = ref.start_offset - 1
                file.seek(stream_offset)
                self._decoder = LineDecoder(
                    start_offset=ref.start_offset, stream_offset=stream_offset, compressed=False
                )
        except OSError as exc:
            file.close()
            raise _local_error(ref.key, exc) from exc
        except BaseException:
            file.close()
            raise
        if self.compressed:
            try:
                self._again = os.dup(file.fileno())
            except OSError as exc:
                file.close()
                raise _local_error(ref.key, exc) from exc
        self._chunks = self._file_chunks(file)

    def _file_chunks(self, file: IO[bytes]) -> Generator[bytes, None, None]:
        with file:
            while True:
                try:
                    chunk = file.read(self._chunk_size)
                except OSError as exc:
                    raise _local_error(self.ref.key, exc) from exc
                if not chunk:
                    return
                self.bytes_read += len(chunk)
                yield chunk


# A local file's errors that its owner fixes (a permission) or that pass (a device's I/O error):
# the run's resume commands read it again, as for an S3 object access denied.
_LOCAL_TRANSIENT = frozenset({errno.EACCES, errno.EPERM, errno.EIO})


def _written(status: os.stat_result) -> tuple[int, int]:
    return status.st_size, status.st_mtime_ns


def _local_error(path: str, exc: OSError) -> SourceError:
    return SourceError(
        f"cannot read {path}: {exc.strerror or exc}", transient=exc.errno in _LOCAL_TRANSIENT
    )


def retry_note(cause: str, attempt: int, attempts: int, *, throttled: bool) -> str:
    """The progress line's note while botocore sends a GET again: ``cause`` is S3's error code
    or the exception, ``attempt`` the one about to be sent, of at most ``attempts``.

    >>> retry_note("SlowDown", 3, 8, throttled=True)
    'S3 throttles reads (SlowDown); retrying (attempt 3 of 8)'
    >>> retry_note("ReadTimeoutError", 2, 5, throttled=False)
    'S3 failed a read (ReadTimeoutError); retrying (attempt 2 of 5)'
    """
    said = "throttles reads" if throttled else "failed a read"
    return f"S3 {said} ({cause}); retrying (attempt {attempt} of {attempts})"


def _note_retry(
    response: tuple[Any, dict[str, Any]] | None,
    attempts: int,
    caught_exception: Exception | None,
    request_dict: dict[str, Any],
    **_: Any,
) -> None:
    """The S3 client's ``needs-retry`` hook: after each attempt of a request, before botocore
    decides. It tells the LineReader whose GET this thread sends (none: a listing, a HEAD) of
    an attempt that failed in a way standard mode retries, while attempts are left. Per
    request, never per line."""
    reader: LineReader | None = getattr(_sending, "reader", None)
    if reader is None:
        return
    throttled = False
    if caught_exception is not None:
        cause = type(caught_exception).__name__
    elif response is not None:
        code = response[1].get("Error", {}).get("Code", "")
        status = response[1].get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        throttled = code in _THROTTLED_S3_CODES
        if not (throttled or code in _TRANSIENT_S3_CODES or status >= _FIRST_SERVER_ERROR):
            return  # answered, or refused for good: no retry
        cause = code or str(status)
    else:
        return
    config = request_dict.get("context", {}).get("client_config")
    retries = (getattr(config, "retries", None) or {}) if config is not None else {}
    most = retries.get("total_max_attempts") or (
        retries["max_attempts"] + 1 if "max_attempts" in retries else _BOTOCORE_DEFAULT_ATTEMPTS
    )
    if attempts < most:
        reader._retried(retry_note(cause, attempts + 1, most, throttled=throttled))


def read_lines(
    ref: ObjectRef, s3_client: S3Client | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[Batch]:
    """Yield batches of ``(offset, line)`` from an S3 object or local file, streaming; a batch
    is empty when a step of reading completed no line (blank lines give none).

    The shortcut for ``LineReader(ref, s3_client, chunk_size=...)`` when the caller needs no
    ETag or counters.

    >>> for batch in read_lines(ObjectRef("logs", "AWSLogs/1/x.log.gz")):  # doctest: +SKIP
    ...     print(batch[:1])
    [(0, b'h2 2024-03-01T00:00:01.123456Z app/web/50dc6c495c0c9188 ...')]
    """
    return iter(LineReader(ref, s3_client, chunk_size=chunk_size))


def _pump(
    chunks: Generator[bytes, None, None],
    handoff: queue.Queue[bytes | Exception | None],
    halt: threading.Event,
) -> None:
    """The read-ahead thread: put each chunk, then None (the end) or the error, in ``handoff``."""
    try:
        for chunk in chunks:
            if not _offer(handoff, chunk, halt):
                return
        _offer(handoff, None, halt)
    except Exception as error:  # noqa: BLE001 - handed to the reading thread, which raises it
        _offer(handoff, error, halt)
    finally:
        chunks.close()


def _offer(
    handoff: queue.Queue[bytes | Exception | None],
    item: bytes | Exception | None,
    halt: threading.Event,
) -> bool:
    """Put ``item`` once there is room; False when the reader stopped wanting it."""
    while not halt.is_set():
        try:
            handoff.put(item, timeout=READ_POLL_SECONDS)
        except queue.Full:
            continue
        return True
    return False


def _s3_error(
    exc: ClientError, ref: ObjectRef, etag: str | None, *, named_by_event: bool
) -> SourceError:
    """One sentence saying what went wrong with the GET and what to do, and whether a later
    read can succeed. ``named_by_event``: the ETag and version pinned are the ones the object was
    named with (an event, a listing), not ones this shipper read."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    uri = ref.uri
    # The pins may come from an S3 event, a hand-written event or a listing (`ship s3://...`).
    hand_written = (
        "or the event was written by hand (leave eTag and versionId out of a hand-written "
        "event to ship the object as it is now)"
    )
    if code == "PreconditionFailed" or status == 412:
        if named_by_event:
            return ObjectChangedError(
                f"{uri} is not the object named (ETag {etag}): it was overwritten since the "
                f"event or listing named it, {hand_written}"
            )
        return ObjectChangedError(
            f"{uri} changed since it was first read (its ETag is no longer {etag}): "
            "ship the new object from its start"
        )
    if ref.version_id and (
        code == "NoSuchVersion" or (code == "InvalidArgument" and "version" in str(error).lower())
    ):
        return ObjectChangedError(
            f"{uri} has no version {ref.version_id} ({code}): it was deleted since the event "
            f"named it, {hand_written}"
        )
    if code in ("NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
        if not ref.key or ref.key.endswith("/"):
            # A folder that the command listed and found empty (a typo'd day or account): no
            # object was deleted.
            return SourceError(
                f"{uri} holds nothing ({code or status}): no object has this key or prefix; "
                "check the bucket and the path"
            )
        return SourceError(
            f"{uri} does not exist ({code or status}): it was deleted, or the bucket or key "
            "is wrong"
        )
    if code == "NoSuchBucket":
        return SourceError(f"the bucket of {uri} does not exist (NoSuchBucket)")
    if code in CREDENTIALS_REFUSED:
        # Before the 403 branch: no grant is missing, and every other read fails alike.
        return CredentialsError(
            f"S3 refused the credentials reading {uri} ({code}): they expired or are not valid, "
            f"or this machine's clock is off; {RENEW_CREDENTIALS}",
            transient=True,
        )
    if code == "InvalidObjectState":
        # A 403 too, but no grant is missing: lifecycle rules archive old logs, which a backfill
        # meets. Transient like a denial: once restored, the object reads. (Intelligent-Tiering
        # names its archive tier as well.)
        names = (error.get(field) for field in ("StorageClass", "AccessTier"))
        where = " ".join(str(name) for name in names if name) or "an archive"
        return ArchivedObjectError(
            f"{uri} is archived in {where}, which S3 does not read ({code}): restore it "
            "(aws s3api restore-object), then ship it again",
            transient=True,
        )
    if code == "AccessDenied" or status == 403:
        # A missing grant (with s3:ListBucket a deleted object answers 404, not 403), which
        # people fix: transient, so the event is kept and, after Lambda's retries, waits in
        # the dead-letter queue.
        return SourceError(
            f"access to {uri} is denied ({code or status}): grant s3:GetObject on it (and "
            "s3:GetObjectVersion for versioned reads, kms:Decrypt for SSE-KMS) to the role or "
            "user reading it; without s3:ListBucket, S3 also answers 403 for a key that does not "
            "exist",
            transient=True,
        )
    if code == "InvalidRange" or status == 416:
        return SourceError(f"resume offset {ref.start_offset} is beyond the end of {uri}")
    message = error.get("Message", "")
    transient = code in _TRANSIENT_S3_CODES or status >= _FIRST_SERVER_ERROR
    return SourceError(
        f"cannot read {uri}: {code or status} {message}".rstrip(), transient=transient
    )
