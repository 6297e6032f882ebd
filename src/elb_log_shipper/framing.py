"""Bytes in, lines with their byte offsets out: no I/O, like h11's receive buffer.

Three pieces, each fed chunks of any size:

- ``LineFramer`` cuts a decompressed byte stream into lines and gives each the offset of its first
  byte. Offsets make resume points and deterministic event ids possible, so they are exact whatever
  the chunking, and the line buffer is bounded: a line longer than ``MAX_LINE_BYTES`` keeps its
  beginning and streams the rest away.
- ``GzipInflater`` inflates gzip (several members, as a ``.gz`` may hold) in bounded steps and stops
  a gzip bomb with ``SourceError``.
- ``LineDecoder`` joins them: it tells gzip from plain text by the magic bytes, never the name.

The per-line path decides the Lambda bill, so lines come out as one ``list[tuple[int, bytes]]``
per chunk, built by ``bytes.split`` and C iterators; Python loops over lines run only for the rare
chunks that hold a ``\\r`` or an oversized line.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from itertools import accumulate
from operator import itemgetter
from typing import cast

# ISA-L inflates gzip 3x faster than zlib (0.4 against 1.4 µs per ALB line, bench/README.md), with
# zlib's interface and wheels for x86_64 and arm64 alike.
from isal import isal_zlib

from elb_log_shipper.errors import SourceError

# isal's stub declares `error` as an instance; it is zlib.error's counterpart, a class.
_InflateError = cast("type[Exception]", isal_zlib.error)

__all__ = [
    "GZIP_MAGIC",
    "INFLATE_RATIO_FLOOR_BYTES",
    "INFLATE_STEP_BYTES",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_GZIP_HEADER_BYTES",
    "MAX_INFLATE_RATIO",
    "MAX_LINE_BYTES",
    "SALVAGE_PIECE_BYTES",
    "SNIFF_BYTES",
    "Batch",
    "CorruptGzipError",
    "GzipInflater",
    "Line",
    "LineDecoder",
    "LineFramer",
    "OversizedLine",
    "SalvagingGzipInflater",
    "gzip_header_end",
    "is_gzip",
    "sniff_compression",
]

# ALB caps a user agent at 8 KB and a request line at a few KB, so a real log line is a few KB at
# most; 256 KiB keeps every real line whole and still bounds the buffer a garbage object can fill.
MAX_LINE_BYTES = 256 * 1024

# Each inflate call returns at most this much, so one small compressed chunk cannot expand into
# gigabytes in memory; at 1 MiB the per-call overhead is noise next to the framing work.
INFLATE_STEP_BYTES = 1024 * 1024

# ELB logs gzip 8-20:1 and even a log of identical health checks stays far below 200:1, while
# zlib's ceiling (a bomb) is about 1030:1.
MAX_INFLATE_RATIO = 200

# The ratio is judged only past this much output: small objects may compress oddly well, and
# stopping a bomb after 64 MiB of output costs a fraction of a second.
INFLATE_RATIO_FLOOR_BYTES = 64 * 1024 * 1024

# ALB writes one object per node every 5 minutes; even 100k requests/s on one node is about 15 GB
# of text, so 32 GiB is only reached by a bomb that slipped under the ratio limit.
MAX_DECOMPRESSED_BYTES = 32 * 1024**3

# RFC 1952: every gzip member starts with these two bytes.
GZIP_MAGIC = b"\x1f\x8b"
# The longest gzip member header kept whole before inflating (a name, a comment and an extra
# field of this much are no log's); past it the data is corrupt.
MAX_GZIP_HEADER_BYTES = 1024 * 1024
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10

# Compressions ELB never writes, by their magic bytes, so that such an object is refused in one
# sentence instead of shipped as garbage parse failures. bzip2 is "BZh", a block-size digit and
# the magic of its first block (or of the end of an empty stream): no log line starts that way.
_FOREIGN_MAGIC = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
)
_BZIP2_MAGIC = b"BZh"
_BZIP2_BLOCK_MAGICS = (b"1AY&SY", b"\x17rE8P\x90")
_BZIP2_LEVELS = b"123456789"
# Enough of a stream's start to recognise every format above.
SNIFF_BYTES = 10

Line = tuple[int, bytes]
"""A line and the offset of its first byte in the decompressed stream."""
Batch = list[Line]
"""The lines one chunk completed."""

_NL = 0x0A
_CR = 0x0D
_plus_one = (1).__add__  # a C callable, so offsets accumulate without a Python frame per line
_line_text = itemgetter(1)


class OversizedLine(bytes):
    """The first ``MAX_LINE_BYTES`` of a longer line; ``full_length`` is the line's real length.

    A ``bytes`` subclass, so consumers treat it as a line, and the hot path tells it apart with a
    cheap ``type(line) is not bytes``.

    >>> line = OversizedLine(b"GET /aaaa", 300_000)
    >>> (bytes(line), line.full_length, type(line) is bytes)
    (b'GET /aaaa', 300000, False)
    """

    full_length: int

    def __new__(cls, head: bytes, full_length: int) -> OversizedLine:
        line = super().__new__(cls, head)
        line.full_length = full_length
        return line

    def __reduce__(self) -> tuple[type[OversizedLine], tuple[bytes, int]]:
        return (OversizedLine, (bytes(self), self.full_length))


def is_gzip(head: bytes) -> bool:
    """Whether a stream starting with ``head`` is gzip, by its magic bytes (never the name).

    >>> is_gzip(b"\\x1f\\x8b\\x08\\x00"), is_gzip(b"h2 2024-01-01T00:00:00Z")
    (True, False)
    """
    return head[:2] == GZIP_MAGIC


def sniff_compression(head: bytes) -> bool:
    """Whether a stream starting with ``head`` is gzip (True) or plain text (False).

    Raises SourceError, in one sentence, when the magic bytes say zstd, bzip2, xz or zip: ELB
    writes gzip or plain text, so such an object was recompressed by someone, and framing it as
    text would only give garbage parse failures. Give it at least ``SNIFF_BYTES`` bytes (or the
    whole stream when shorter).

    >>> sniff_compression(b"\\x1f\\x8b\\x08\\x00"), sniff_compression(b"h2 2024-01-01T00:00:00Z")
    (True, False)
    >>> sniff_compression(b"BZh91AY&SY")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    elb_log_shipper.errors.SourceError: the data is bzip2-compressed (by its first bytes), but ...
    """
    if head[:2] == GZIP_MAGIC:
        return True
    name = next((name for magic, name in _FOREIGN_MAGIC if head.startswith(magic)), None)
    if (
        name is None
        and head.startswith(_BZIP2_MAGIC)
        and head[3:4] in _BZIP2_LEVELS
        and head[4:10] in _BZIP2_BLOCK_MAGICS
    ):
        name = "bzip2"
    if name is not None:
        raise SourceError(
            f"the data is {name}-compressed (by its first bytes), but ELB writes gzip or plain "
            "text: decompress it and ship the log itself"
        )
    return False


class LineFramer:
    """Cut a byte stream into lines, each with the offset of its first byte.

    A line ends at ``\\n``; a ``\\r`` before it is dropped, empty lines are skipped (the offsets of
    later lines still count them), and the last line may lack its ``\\n``: ``finish()`` returns it.
    A line longer than ``max_line_bytes`` comes out as an ``OversizedLine`` holding its beginning.

    ``stream_offset`` is the offset of the first byte fed. With ``start_offset`` (a resume point)
    the bytes before it are dropped, and ``SourceError`` is raised unless it starts a line, which
    is why a resumed stream must begin at least one byte early: the ``\\n`` before the line.

    >>> framer = LineFramer()
    >>> framer.feed(b"first\\r\\nsec"), framer.feed(b"ond\\n\\nthird"), framer.finish()
    ([(0, b'first')], [(7, b'second')], [(15, b'third')])
    >>> LineFramer(start_offset=7, stream_offset=6).feed(b"\\nsecond\\n")
    [(7, b'second')]
    """

    __slots__ = (
        "_buf",
        "_full",
        "_head",
        "_last_byte",
        "_line_start",
        "_max",
        "_pos",
        "_skip_to",
        "_unended",
    )

    def __init__(
        self, *, start_offset: int = 0, stream_offset: int = 0, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        if not 0 <= stream_offset <= start_offset or 0 < start_offset == stream_offset:
            raise ValueError(
                f"stream_offset {stream_offset} must be before start_offset {start_offset} "
                "(at least one byte, to check that a line starts there), or both 0"
            )
        self._max = max_line_bytes
        self._skip_to = start_offset
        self._pos = stream_offset  # offset of the next byte to be fed
        self._line_start = start_offset  # offset of the line being assembled
        self._buf = bytearray()  # the start of that line, never more than max_line_bytes + 1
        self._head: bytes | None = None  # the kept beginning while an oversized line streams by
        self._full = 0  # raw length of the oversized line so far
        self._last_byte = 0  # last byte of the oversized line so far, to drop a final \r
        # The resume point came right after a byte that is no \n: only the end of the stream may
        # follow (a resume at the end of data whose last line has no \n leaves nothing).
        self._unended = False

    @property
    def offset(self) -> int:
        """Offset of the next byte to be fed."""
        return self._pos

    @property
    def resume_offset(self) -> int:
        """Offset of the first line not yet returned: where a later read resumes."""
        return self._line_start

    def feed(self, data: bytes) -> Batch:
        """Return the lines ``data`` completes, in order."""
        start = 0
        if self._pos < self._skip_to:
            start = self._skip(data)
            if start < 0:
                return []
        elif self._unended and data:
            raise self._not_a_line_start()
        self._pos += len(data) - start
        out: Batch = []
        if self._head is not None:
            nl = data.find(b"\n", start)
            if nl < 0:
                if len(data) > start:
                    self._full += len(data) - start
                    self._last_byte = data[-1]
                return out
            out.append(self._end_oversized(data, start, nl))
            start = nl + 1
        end = data.rfind(b"\n", start) + 1
        if not end:
            self._hold(data, start)
            return out
        if self._buf:
            block = b"".join((self._buf, memoryview(data)[start:end]))
            self._buf.clear()
        elif start == 0 and end == len(data):
            block = data
        else:
            block = data[start:end]
        self._frame(block, out)
        self._hold(data, end)
        return out

    def finish(self) -> Batch:
        """Return the last line when the stream does not end with ``\\n``; the stream is over.

        Raises SourceError when the stream ended before ``start_offset``.
        """
        if self._pos < self._skip_to:
            raise SourceError(
                f"resume offset {self._skip_to} is beyond the end of the data ({self._pos} bytes)"
            )
        out: Batch = []
        if self._head is not None:
            length = self._full - (self._last_byte == _CR)
            out.append((self._line_start, OversizedLine(self._head, length)))
            self._head = None
        elif self._buf:
            self._frame_slowly([bytes(self._buf)], out, self._line_start)
            self._buf.clear()
        self._line_start = self._pos
        return out

    def _skip(self, data: bytes) -> int:
        """Drop bytes before the resume point; return where the rest starts, or -1 if none."""
        need = self._skip_to - self._pos
        if len(data) < need:
            self._pos += len(data)
            return -1
        # need >= 1: the stream starts before the resume point, so the byte before it is here.
        if data[need - 1] != _NL:
            if need < len(data):
                raise self._not_a_line_start()
            # Unless more comes, the resume point is the end of data whose last line has no
            # \n: a hop that resumes after all of it was delivered (feed raises if more comes).
            self._unended = True
        self._pos = self._skip_to
        return need

    def _not_a_line_start(self) -> SourceError:
        return SourceError(
            f"resume offset {self._skip_to} is not at the start of a line: "
            "the object changed or the offset is wrong"
        )

    def _hold(self, data: bytes, start: int) -> None:
        """Keep ``data[start:]``, the start of an unfinished line, within the line limit."""
        size = len(data) - start
        if not size:
            return
        buf = self._buf
        # One byte over the limit fits a final \r; beyond that the line is oversized for sure.
        if len(buf) + size <= self._max + 1:
            buf += memoryview(data)[start:]
            return
        keep = self._max - len(buf)
        if keep > 0:
            self._head = bytes(buf) + data[start : start + keep]
        else:
            self._head = bytes(buf[: self._max])
        self._full = len(buf) + size
        self._last_byte = data[-1]
        buf.clear()

    def _end_oversized(self, data: bytes, start: int, nl: int) -> Line:
        raw_length = self._full + nl - start
        last = data[nl - 1] if nl > start else self._last_byte
        assert self._head is not None
        line = (self._line_start, OversizedLine(self._head, raw_length - (last == _CR)))
        self._head = None
        self._line_start += raw_length + 1
        return line

    def _frame(self, block: bytes, out: Batch) -> None:
        """Append the lines of ``block``, which ends with ``\\n``."""
        parts = block.split(b"\n")
        parts.pop()
        base = self._line_start
        self._line_start = base + len(block)
        # One-byte tests run at memchr speed; a two-byte search like b"\r\n" costs 20 times more.
        if b"\r" in block or (len(block) > self._max and max(map(len, parts)) > self._max):
            self._frame_slowly(parts, out, base)
            return
        # accumulate also yields the end of the block, one more than there are lines.
        offsets = accumulate(map(_plus_one, map(len, parts)), initial=base)
        lines = zip(offsets, parts, strict=False)
        if not all(parts):  # empty lines
            out.extend(filter(_line_text, lines))
        else:
            out.extend(lines)

    def _frame_slowly(self, parts: list[bytes], out: Batch, base: int) -> None:
        """The general case: strip ``\\r``, cut oversized lines."""
        limit = self._max
        offset = base
        for raw in parts:
            size = len(raw)
            line = raw[:-1] if size and raw[-1] == _CR else raw
            if line:
                if len(line) > limit:
                    line = OversizedLine(line[:limit], len(line))
                out.append((offset, line))
            offset += size + 1


def gzip_header_end(data: bytes) -> int | None:
    """Where the gzip member header that ``data`` starts with ends (RFC 1952: ten bytes, then
    the optional extra field, name, comment and header CRC its flags announce), or None when
    ``data`` holds only part of it.

    >>> import gzip
    >>> gzip_header_end(gzip.compress(b"a", mtime=0))
    10
    >>> gzip_header_end(b"\\x1f\\x8b\\x08\\x08" + bytes(6) + b"name, cut")  # FNAME: no end yet
    """
    if len(data) < 10:
        return None
    flags = data[3]
    end = 10
    if flags & _FEXTRA:
        if len(data) < end + 2:
            return None
        end += 2 + int.from_bytes(data[end : end + 2], "little")
    for field in (_FNAME, _FCOMMENT):
        if flags & field:
            zero = data.find(b"\0", end)
            if zero < 0:
                return None
            end = zero + 1
    if flags & _FHCRC:
        end += 2
    return end if end <= len(data) else None


class CorruptGzipError(SourceError):
    """ISA-L found a gzip member's deflate data or trailer corrupt, and dropped the output of the
    step that found it: up to ``INFLATE_STEP_BYTES`` of text before the damage, which
    ``SalvagingGzipInflater`` can give from a second reading of the object."""


class GzipInflater:
    """Inflate a gzip stream of one or more members in bounded steps.

    ``feed`` yields pieces of at most ``step`` bytes; consume each before asking for the next.
    Zero bytes between or after members are padding, as the ``gzip`` module accepts. Raises
    SourceError when the data is corrupt, when the output passes ``max_output`` bytes, or (past
    ``INFLATE_RATIO_FLOOR_BYTES``) ``max_ratio`` times the input; ``finish`` raises it when the
    stream stops inside a member.

    >>> import gzip
    >>> inflater = GzipInflater()
    >>> b"".join(inflater.feed(gzip.compress(b"a\\n") + gzip.compress(b"b\\n"))), inflater.members
    (b'a\\nb\\n', 2)
    """

    __slots__ = (
        "_header",
        "_max_output",
        "_max_ratio",
        "_member",
        "_step",
        "bytes_in",
        "bytes_out",
        "members",
    )

    def __init__(
        self,
        *,
        max_ratio: float = MAX_INFLATE_RATIO,
        max_output: int = MAX_DECOMPRESSED_BYTES,
        step: int = INFLATE_STEP_BYTES,
    ) -> None:
        self._max_ratio = max_ratio
        self._max_output = max_output
        self._step = step
        self._member: isal_zlib.Decompress | zlib._Decompress | None = None
        # The start of a member whose header has not all arrived (see feed).
        self._header = b""
        self.bytes_in = 0
        """Compressed bytes fed."""
        self.bytes_out = 0
        """Decompressed bytes produced."""
        self.members = 0
        """Complete gzip members read."""

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield the decompressed bytes of ``data``, in pieces of at most ``step`` bytes."""
        self.bytes_in += len(data)
        while data:
            member = self._member
            if member is None:
                if self._header:
                    data, self._header = self._header + data, b""
                data = self._member_start(data, self.bytes_in - len(data), "near")
                if not data:
                    return
                if gzip_header_end(data) is None:
                    # ISA-L misreads a header with optional fields (name and comment, extra
                    # field, header CRC) given in parts (intel/isa-l#224): it gets it whole.
                    if len(data) > MAX_GZIP_HEADER_BYTES:
                        raise SourceError(
                            f"gzip data is corrupt in member {self.members + 1} near compressed "
                            f"byte {self.bytes_in - len(data)}: a header of over "
                            f"{MAX_GZIP_HEADER_BYTES} bytes"
                        )
                    self._header = data
                    return
                member = self._member = isal_zlib.decompressobj(wbits=31)
            while True:
                try:
                    out = member.decompress(data, self._step)
                except _InflateError as exc:
                    # ISA-L does not say where: in the input of this call (a damaged byte can
                    # decode as other data and be found later, by the CRC-32 at the latest). The
                    # call's output is lost with it: ``SalvagingGzipInflater`` gets it back.
                    raise CorruptGzipError(
                        f"gzip data is corrupt in member {self.members + 1}, found in compressed "
                        f"bytes {self.bytes_in - len(data)}-{self.bytes_in - 1}: {exc}"
                    ) from exc
                data = member.unused_data if member.eof else member.unconsumed_tail
                if out:
                    self._count(len(out), self.bytes_in - len(data))
                    yield out
                if member.eof:
                    self.members += 1
                    self._member = None
                    break
                # A full step with no input left may still leave output inside zlib: ask again.
                if not data and len(out) < self._step:
                    return

    def _member_start(self, data: bytes, position: int, where: str) -> bytes:
        """``data``, which begins at compressed byte ``position`` between members, less the zero
        padding before the next member; SourceError when that member does not start with the
        gzip magic (said at once: ISA-L would wait for a whole header before finding fault)."""
        rest = data.lstrip(b"\0")
        if rest[:2] != GZIP_MAGIC[: len(rest[:2])]:
            raise SourceError(
                f"gzip data is corrupt in member {self.members + 1} {where} compressed byte "
                f"{position + len(data) - len(rest)}: no gzip header"
            )
        return rest

    def finish(self) -> None:
        """Raise SourceError if the stream ended inside a gzip member."""
        if self._member is not None or self._header:
            raise SourceError(
                f"gzip data is truncated: it ends inside member {self.members + 1} after "
                f"{self.bytes_in} compressed bytes"
            )

    def _count(self, size: int, consumed: int) -> None:
        self.bytes_out += size
        if self.bytes_out > self._max_output:
            raise SourceError(
                f"gzip data inflates beyond {self._max_output} bytes: refusing it as a gzip bomb"
            )
        if self.bytes_out > INFLATE_RATIO_FLOOR_BYTES and self.bytes_out > self._max_ratio * max(
            consumed, 1
        ):
            raise SourceError(
                f"gzip data inflates more than {self._max_ratio:g}:1 ({consumed} bytes to "
                f"{self.bytes_out}): refusing it as a gzip bomb"
            )


# What SalvagingGzipInflater gives zlib at a time: its output is at most ~1 MiB (zlib's ceiling
# is about 1030:1), and a copy of zlib's state (its 32 KiB window) for each is cheap beside it.
SALVAGE_PIECE_BYTES = 1024


class SalvagingGzipInflater(GzipInflater):
    """``GzipInflater`` for a second reading of an object found corrupt (``CorruptGzipError``):
    zlib, fed ``SALVAGE_PIECE_BYTES`` at a time from a copy of its state, and a byte at a time
    through the piece that fails, so that every byte that inflates before the damage comes out,
    as ``zcat`` gives it, and the damage is placed to the byte. Several times slower than ISA-L:
    for the objects that need it only. The same limits on output apply.

    >>> import gzip
    >>> data = bytearray(gzip.compress(b"a\\n" * 5000, mtime=0))
    >>> data[20] ^= 0xFF
    >>> inflater = SalvagingGzipInflater()
    >>> try:
    ...     out = b"".join(inflater.feed(bytes(data)))
    ... except SourceError as error:
    ...     print(str(error).replace(": ", ":\\n"))
    gzip data is corrupt in member 1 at compressed byte 28:
    Error -3 while decompressing data:
    invalid bit length repeat
    """

    __slots__ = ()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield the decompressed bytes of ``data``, in pieces of about ``step`` bytes; raise
        SourceError at the damage, after yielding all that came before it."""
        position = self.bytes_in
        self.bytes_in += len(data)
        pending: list[bytes] = []
        size = 0
        try:
            for start in range(0, len(data), SALVAGE_PIECE_BYTES):
                for out in self._inflate(
                    data[start : start + SALVAGE_PIECE_BYTES], position + start
                ):
                    pending.append(out)
                    size += len(out)
                    if size >= self._step:
                        yield b"".join(pending)
                        pending, size = [], 0
        except SourceError:
            if pending:
                yield b"".join(pending)
            raise
        if pending:
            yield b"".join(pending)

    def _inflate(self, data: bytes, position: int) -> Iterator[bytes]:
        """Inflate ``data``, which starts at compressed byte ``position``."""
        while data:
            member = self._member
            if member is None:
                rest = self._member_start(data, position, "at")
                position += len(data) - len(rest)
                data = rest
                if not data:
                    return
                member = self._member = zlib.decompressobj(wbits=31)
            member = cast("zlib._Decompress", member)  # this class makes only zlib's
            saved = member.copy()
            try:
                out = member.decompress(data)
            except zlib.error as exc:
                if len(data) == 1:
                    raise SourceError(
                        f"gzip data is corrupt in member {self.members + 1} at compressed byte "
                        f"{position}: {exc}"
                    ) from exc
                self._member = saved
                for at in range(len(data)):
                    yield from self._inflate(data[at : at + 1], position + at)
                return
            rest = member.unused_data if member.eof else b""
            position += len(data) - len(rest)
            if out:
                self._count(len(out), position)
                yield out
            if member.eof:
                self.members += 1
                self._member = None
            data = rest


class LineDecoder:
    """Lines with offsets from a raw object stream, gzip (told by its magic bytes) or plain.

    ``compressed=None`` decides from the first bytes (``sniff_compression``: gzip, plain, or
    refused as another compression), so the stream must then start at byte 0.
    ``start_offset`` and ``stream_offset`` are offsets in the decompressed stream, as for
    ``LineFramer``: a gzip stream is inflated from its start and the lines before the resume point
    dropped; a plain stream can start just before it (the ``\\n`` at ``start_offset - 1``).

    ``feed`` yields batches lazily (a bomb is inflated one step at a time): consume them all before
    the next ``feed``. Data that is neither gzip nor a known other compression is framed as text,
    whatever it holds.

    >>> import gzip
    >>> decoder = LineDecoder()
    >>> list(decoder.feed(gzip.compress(b"a\\nb"))), decoder.finish(), decoder.compressed
    ([[(0, b'a')]], [(2, b'b')], True)
    """

    __slots__ = ("_framer", "_inflater", "_sniffed", "bytes_in", "compressed")

    def __init__(
        self,
        *,
        start_offset: int = 0,
        stream_offset: int = 0,
        compressed: bool | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        inflater: GzipInflater | None = None,
    ) -> None:
        if stream_offset and compressed is not False:
            raise ValueError("only plain data can start after byte 0 (set compressed=False)")
        self._framer = LineFramer(
            start_offset=start_offset, stream_offset=stream_offset, max_line_bytes=max_line_bytes
        )
        self._inflater = inflater or GzipInflater()
        self._sniffed = b""
        self.compressed = compressed
        """True for gzip, False for plain; None until ``SNIFF_BYTES`` have been seen."""
        self.bytes_in = 0
        """Raw (compressed, for gzip) bytes fed."""

    @property
    def bytes_out(self) -> int:
        """Decompressed bytes produced (for plain data, the bytes fed)."""
        return self._inflater.bytes_out if self.compressed else self.bytes_in - len(self._sniffed)

    @property
    def resume_offset(self) -> int:
        """Offset of the first line not yet returned: where a later read resumes."""
        return self._framer.resume_offset

    def feed(self, data: bytes) -> Iterator[Batch]:
        """Yield the batches of lines that ``data`` completes: one for each step of inflation
        (or for ``data``, when plain) once the format is known, empty when the step completed no
        line, so that a reader can tell time passing where blank lines give no line at all."""
        self.bytes_in += len(data)
        if self.compressed is None:
            data = self._sniffed + data
            if len(data) < SNIFF_BYTES:
                self._sniffed = data
                return
            self._sniffed = b""
            self.compressed = sniff_compression(data)
        yield from self._decode(data)

    def finish(self) -> Batch:
        """Return the last line; raise SourceError if the gzip data is truncated."""
        lines: Batch = []
        if self.compressed is None:  # fewer than SNIFF_BYTES in all
            data, self._sniffed = self._sniffed, b""
            self.compressed = sniff_compression(data)
            lines = [line for batch in self._decode(data) for line in batch]
        if self.compressed:
            self._inflater.finish()
        return lines + self._framer.finish()

    def _decode(self, data: bytes) -> Iterator[Batch]:
        if self.compressed:
            feed_framer = self._framer.feed
            for piece in self._inflater.feed(data):
                yield feed_framer(piece)
        else:
            yield self._framer.feed(data)
