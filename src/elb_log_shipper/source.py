"""S3 object or local file -> batches of decompressed lines with byte offsets, streaming.

The reading is I/O only; cutting lines and inflating gzip is ``framing.LineDecoder``. An object is
never held in memory: it is read in chunks of ``chunk_size`` bytes, inflated in bounded steps and
each batch is handed to the caller before the next chunk is read.

Resume (``ObjectRef.start_offset > 0``): a gzip object is inflated again from its start and the
lines before the offset dropped (deflate cannot seek); a plain object is read with a ranged GET
from one byte before the offset, so that the ``\\n`` there proves a line starts at the offset.
Every GET after the first carries ``If-Match`` with the first one's ETag, so a resumed or retried
read never mixes two versions of an object: a change raises ``ObjectChangedError``.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError

from elb_log_shipper.errors import ObjectChangedError, SourceError
from elb_log_shipper.framing import Batch, LineDecoder, is_gzip
from elb_log_shipper.refs import ObjectRef

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

__all__ = ["DEFAULT_CHUNK_SIZE", "MAX_READ_RETRIES", "LineReader", "read_lines"]

# Large enough that per-chunk Python work is noise next to framing (about 2000 ALB lines), small
# enough that the chunk, its inflated step and one batch stay a few MiB in a 128 MB Lambda.
DEFAULT_CHUNK_SIZE = 1024 * 1024

# S3 resets a streaming connection now and then; more resets than this in one object mean the
# network is failing, and the caller's hand-off or Lambda's retry is the better answer.
MAX_READ_RETRIES = 3


class LineReader:
    """Read one object or local file as batches of ``(offset, line)``.

    ``open()`` sends the GET (or opens the file) and reads the first chunk, so ``etag``,
    ``version_id``, ``size`` and ``compressed`` are known before the first line; iterating opens
    it if needed. The S3 client is created on first use when none is given, so the standard
    ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL`` variables apply.

    >>> with LineReader(ObjectRef.local("alb.log.gz")) as reader:  # doctest: +SKIP
    ...     for batch in reader:
    ...         for offset, line in batch:
    ...             ...

    Raises SourceError (ObjectChangedError for a changed object) with a message naming the object;
    the lines yielded before it are good.
    """

    def __init__(
        self,
        ref: ObjectRef,
        s3_client: S3Client | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
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
        self._s3 = s3_client
        self._chunk_size = chunk_size
        self._decoder: LineDecoder | None = None
        self._first = b""
        self._chunks: Generator[bytes, None, None] | None = None
        self._started = False

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
            if self.ref.is_local:
                self._open_file()
            else:
                self._open_s3()
        return self

    def close(self) -> None:
        """Release the connection or file; safe to call twice."""
        if self._chunks is not None:
            self._chunks.close()

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
        assert decoder is not None and chunks is not None
        try:
            if self._first:
                yield from decoder.feed(self._first)
                self._first = b""
            for chunk in chunks:
                yield from decoder.feed(chunk)
            last = decoder.finish()
            if last:
                yield last
        except SourceError as exc:
            if self.ref.uri not in str(exc):
                raise type(exc)(f"{self.ref.uri}: {exc}") from exc
            raise
        finally:
            self.close()

    # S3

    def _open_s3(self) -> None:
        ref = self.ref
        response = self._get(None)
        self.etag = response["ETag"].strip('"')
        self.version_id = response.get("VersionId") or ref.version_id
        self.size = response["ContentLength"]
        chunks = self._stream(response["Body"], 0)
        first = next(chunks, b"")
        self.compressed = is_gzip(first)
        if self.compressed or ref.start_offset == 0:
            self._first, self._chunks = first, chunks
            self._decoder = LineDecoder(start_offset=ref.start_offset, compressed=self.compressed)
            return
        chunks.close()
        if ref.start_offset > self.size:
            raise SourceError(
                f"resume offset {ref.start_offset} is beyond the end of {ref.uri} "
                f"({self.size} bytes)"
            )
        # From the \n before the resume point: the framer checks that a line starts there.
        stream_offset = ref.start_offset - 1
        self._chunks = self._stream(self._get(stream_offset)["Body"], stream_offset)
        self._decoder = LineDecoder(
            start_offset=ref.start_offset, stream_offset=stream_offset, compressed=False
        )

    def _client(self) -> S3Client:
        if self._s3 is None:
            self._s3 = boto3.client("s3")
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
        try:
            return self._client().get_object(**kwargs)
        except ClientError as exc:
            raise _s3_error(exc, ref, self.etag) from exc
        except BotoCoreError as exc:
            raise SourceError(f"cannot read {ref.uri}: {exc}") from exc

    def _stream(self, body: StreamingBody, position: int) -> Generator[bytes, None, None]:
        """Chunks of the object from ``position``; a broken connection resumes where it broke."""
        try:
            while True:
                try:
                    chunk = body.read(self._chunk_size)
                except (HTTPClientError, IncompleteReadError) as exc:
                    body.close()
                    if self.retries >= MAX_READ_RETRIES:
                        raise SourceError(
                            f"reading {self.ref.uri} failed at byte {position} after "
                            f"{self.retries} retries: {exc}"
                        ) from exc
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

    def _open_file(self) -> None:
        ref = self.ref
        try:
            file = open(ref.key, "rb")  # noqa: SIM115 - closed by _file_chunks or close()
        except OSError as exc:
            raise SourceError(f"cannot read {ref.key}: {exc.strerror or exc}") from exc
        try:
            self.size = os.fstat(file.fileno()).st_size
            first = file.read(self._chunk_size)
            self.bytes_read += len(first)
            self.compressed = is_gzip(first)
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
            raise SourceError(f"cannot read {ref.key}: {exc.strerror or exc}") from exc
        except BaseException:
            file.close()
            raise
        self._chunks = self._file_chunks(file)

    def _file_chunks(self, file: IO[bytes]) -> Generator[bytes, None, None]:
        with file:
            while True:
                try:
                    chunk = file.read(self._chunk_size)
                except OSError as exc:
                    raise SourceError(f"cannot read {self.ref.key}: {exc.strerror or exc}") from exc
                if not chunk:
                    return
                self.bytes_read += len(chunk)
                yield chunk


def read_lines(
    ref: ObjectRef, s3_client: S3Client | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[Batch]:
    """Yield batches of ``(offset, line)`` from an S3 object or local file, streaming.

    The shortcut for ``LineReader(ref, s3_client, chunk_size=...)`` when the caller needs no
    ETag or counters.

    >>> for batch in read_lines(ObjectRef("logs", "AWSLogs/1/x.log.gz")):  # doctest: +SKIP
    ...     print(batch[0])
    (0, b'h2 2024-03-01T00:00:01.123456Z app/web/50dc6c495c0c9188 ...')
    """
    return iter(LineReader(ref, s3_client, chunk_size=chunk_size))


def _s3_error(exc: ClientError, ref: ObjectRef, etag: str | None) -> SourceError:
    """One sentence saying what went wrong with the GET and what to do."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    uri = ref.uri
    if code == "PreconditionFailed" or status == 412:
        return ObjectChangedError(
            f"{uri} changed since it was first read (its ETag is no longer {etag}): "
            "ship the new object from its start"
        )
    if code in ("NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
        return SourceError(f"{uri} does not exist ({code or status}): it may have been deleted")
    if code == "NoSuchBucket":
        return SourceError(f"the bucket of {uri} does not exist (NoSuchBucket)")
    if code == "AccessDenied" or status == 403:
        return SourceError(
            f"access to {uri} is denied ({code or status}): grant s3:GetObject on it "
            "(and s3:GetObjectVersion for versioned reads, kms:Decrypt for SSE-KMS) to this role"
        )
    if code == "InvalidRange" or status == 416:
        return SourceError(f"resume offset {ref.start_offset} is beyond the end of {uri}")
    message = error.get("Message", "")
    return SourceError(f"cannot read {uri}: {code or status} {message}".rstrip())
