"""LineFramer, GzipInflater and LineDecoder: pure, so every case is bytes in, lines out."""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import os
import re
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elb_log_shipper.errors import SourceError
from elb_log_shipper.framing import (
    INFLATE_RATIO_FLOOR_BYTES,
    INFLATE_STEP_BYTES,
    MAX_GZIP_HEADER_BYTES,
    MAX_INFLATE_RATIO,
    MAX_LINE_BYTES,
    SALVAGE_PIECE_BYTES,
    Batch,
    CorruptGzipError,
    GzipInflater,
    LineDecoder,
    LineFramer,
    OversizedLine,
    SalvagingGzipInflater,
    gzip_header_end,
    is_gzip,
)
from tests.support.damaged import damaged_gzip

ALB_LINE = (
    b"h2 2024-03-01T00:00:01.123456Z app/web/50dc6c495c0c9188 192.0.2.10:51234 10.0.1.5:80 "
    b'0.001 0.002 0.000 200 200 34 366 "GET https://example.com:443/index.html HTTP/2.0" '
    b'"curl/8.4.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
    b"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/73e2d6bc24d8a067 "
    b'"Root=1-58337262-36d228ad5d99923122bbe354" "example.com" "arn:aws:acm:us-east-1:1:x" '
    b'0 2024-03-01T00:00:01.120000Z "forward" "-" "-" "10.0.1.5:80" "200" "-" "-" TID_1'
)

# Framing as a specification: split at \n, drop one trailing \r, skip empty lines, cut long ones.
Expected = list[tuple[int, bytes, int | None]]  # offset, line, full_length of an oversized line


def reference(data: bytes, max_line: int = MAX_LINE_BYTES, start: int = 0) -> Expected:
    out: Expected = []
    offset = 0
    for raw in data.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line and offset >= start:
            if len(line) > max_line:
                out.append((offset, line[:max_line], len(line)))
            else:
                out.append((offset, line, None))
        offset += len(raw) + 1
    return out


def flatten(batches: Iterable[Batch]) -> Expected:
    out: Expected = []
    for batch in batches:
        # An empty batch is a step that completed no line (blank lines, a long line): it lets a
        # reader check its deadline where no line comes out.
        for offset, line in batch:
            if type(line) is bytes:
                out.append((offset, line, None))
            else:
                assert isinstance(line, OversizedLine)
                out.append((offset, bytes(line), line.full_length))
    return out


def frame(chunks: Iterable[bytes], framer: LineFramer | None = None) -> Expected:
    framer = framer or LineFramer()
    batches = [framer.feed(chunk) for chunk in chunks]
    batches.append(framer.finish())
    return flatten(b for b in batches if b)


def decode(chunks: Iterable[bytes], decoder: LineDecoder | None = None) -> Expected:
    decoder = decoder or LineDecoder()
    batches: list[Batch] = []
    for chunk in chunks:
        batches.extend(decoder.feed(chunk))
    batches.append(decoder.finish())
    return flatten(b for b in batches if b)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def gzip_members(data: bytes, cuts: Iterable[int]) -> bytes:
    return b"".join(gzip.compress(part, mtime=0) for part in split_at(data, cuts) or [b""])


# Table-driven cases ------------------------------------------------------------------------------

CASES = [
    ("empty", b"", []),
    ("one line", b"a\n", [(0, b"a")]),
    ("no final newline", b"a\nbc", [(0, b"a"), (2, b"bc")]),
    ("crlf", b"a\r\nb\r\n", [(0, b"a"), (3, b"b")]),
    ("crlf without final newline", b"a\r\nb\r", [(0, b"a"), (3, b"b")]),
    ("empty lines skipped", b"\n\na\n\n\nb\n\n", [(2, b"a"), (6, b"b")]),
    ("only newlines", b"\n\r\n\n", []),
    ("a lone carriage return is kept inside", b"a\rb\n", [(0, b"a\rb")]),
    (
        "invalid utf-8 passes through",
        b"\xff\xfe\x80\n\x00\x01",
        [(0, b"\xff\xfe\x80"), (4, b"\0\1")],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_framing_examples(data: bytes, expected: list[tuple[int, bytes]]) -> None:
    for chunk_size in (1, 2, 3, len(data) or 1):
        chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
        assert frame(chunks) == [(o, line, None) for o, line in expected]


def test_batches_are_one_list_per_chunk_of_plain_bytes() -> None:
    framer = LineFramer()
    batch = framer.feed(ALB_LINE + b"\n" + ALB_LINE + b"\n" + ALB_LINE[:10])
    assert batch == [(0, ALB_LINE), (len(ALB_LINE) + 1, ALB_LINE)]
    assert all(type(line) is bytes for _, line in batch)
    assert framer.resume_offset == 2 * (len(ALB_LINE) + 1)
    assert framer.offset == 2 * (len(ALB_LINE) + 1) + 10


def test_resume_offset_moves_past_empty_lines_and_to_the_end_at_finish() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\n\n\nb") == [(0, b"a")]
    assert framer.resume_offset == 4
    assert framer.finish() == [(4, b"b")]
    assert framer.resume_offset == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abcdef\n", [(0, b"abcd", 6)]),
        (b"abcde\r\nxy\n", [(0, b"abcd", 5), (7, b"xy", None)]),
        (b"abcd\r\n", [(0, b"abcd", None)]),  # the \r does not count
        (b"abcdX\r\n", [(0, b"abcd", 5)]),
        (b"abcdefgh", [(0, b"abcd", 8)]),
        (b"abcdefg\r", [(0, b"abcd", 7)]),
        # Starting inside a chunk, after other lines: the length counts from the line's start.
        (b"ab\nabcdefghij\nxy\n", [(0, b"ab", None), (3, b"abcd", 10), (14, b"xy", None)]),
        (b"ab\n\nabcdefghij\r\n", [(0, b"ab", None), (4, b"abcd", 10)]),
        (b"ab\nabcdefghij", [(0, b"ab", None), (3, b"abcd", 10)]),
    ],
)
def test_oversized_lines_keep_their_beginning(data: bytes, expected: Expected) -> None:
    for chunk_size in (1, 2, 3, 5, len(data)):
        chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
        assert frame(chunks, LineFramer(max_line_bytes=4)) == expected


def test_oversized_line_is_bytes_with_its_full_length() -> None:
    line = OversizedLine(b"abc", 10)
    assert line == b"abc" and line.full_length == 10
    assert type(line) is not bytes
    assert OversizedLine(b"", 0) == b""


# Property: any chunking, any content -------------------------------------------------------------

line_bytes = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
documents = st.builds(
    lambda lines, ends, final: (
        b"".join(line + end for line, end in zip(lines, ends, strict=False)) + final
    ),
    st.lists(line_bytes, max_size=30),
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\r\n"]), min_size=30, max_size=30),
    st.sampled_from([b"", b"tail", b"tail\r", b"\r"]),
)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


@given(data=documents, cuts=cut_points, max_line=st.sampled_from([1, 5, 8, MAX_LINE_BYTES]))
def test_any_chunking_gives_the_same_lines_and_offsets(
    data: bytes, cuts: list[int], max_line: int
) -> None:
    lines = frame(split_at(data, cuts), LineFramer(max_line_bytes=max_line))
    assert lines == reference(data, max_line)
    for offset, line, full_length in lines:
        assert data[offset : offset + len(line)] == line
        if full_length is not None:
            assert len(line) == max_line < full_length


@given(data=documents, cuts=cut_points, members=cut_points)
@settings(max_examples=60)
def test_gzip_any_chunking_and_members_give_the_plain_lines(
    data: bytes, cuts: list[int], members: list[int]
) -> None:
    compressed = gzip_members(data, members)
    decoder = LineDecoder()
    assert decode(split_at(compressed, cuts), decoder) == reference(data)
    assert decoder.compressed is True
    assert decoder.bytes_out == len(data)
    assert decoder.bytes_in == len(compressed)


@given(data=documents, cuts=cut_points, pick=st.integers(min_value=0))
def test_resume_at_any_line_yields_exactly_the_suffix(
    data: bytes, cuts: list[int], pick: int
) -> None:
    # Every offset at which a line starts, emitted or empty, and the end of the data.
    starts = [0] + [i + 1 for i in range(len(data)) if data[i] == 0x0A]
    start = starts[pick % len(starts)]
    expected = reference(data, start=start)
    # Fed from the start (gzip is inflated and skipped this way)...
    assert frame(split_at(data, cuts), LineFramer(start_offset=start)) == expected
    assert decode(split_at(gzip.compress(data), cuts), LineDecoder(start_offset=start)) == expected
    # ...or from the \n before it (a ranged read of a plain object).
    if start:
        tail = data[start - 1 :]
        framer = LineFramer(start_offset=start, stream_offset=start - 1)
        assert frame(split_at(tail, cuts), framer) == expected


def test_resume_offset_inside_a_line_is_an_error() -> None:
    with pytest.raises(SourceError, match="resume offset 3 is not at the start of a line"):
        frame([b"abc\n", b"def\n"], LineFramer(start_offset=3))
    with pytest.raises(SourceError, match="not at the start of a line"):
        LineFramer(start_offset=5, stream_offset=4).feed(b"xdef\n")


def test_resume_offset_beyond_the_end_is_an_error() -> None:
    framer = LineFramer(start_offset=10)
    assert framer.feed(b"abc\n") == []
    with pytest.raises(SourceError, match="resume offset 10 is beyond the end of the data"):
        framer.finish()
    assert frame([b"abc\n"], LineFramer(start_offset=4)) == []  # resuming at the very end


@pytest.mark.parametrize("chunks", [[b"abc\nde"], [b"abc\n", b"de"], [b"abc\nd", b"e"]])
def test_resuming_at_the_end_of_a_last_line_without_newline_yields_nothing(
    chunks: list[bytes],
) -> None:
    # Where a hop resumes when every line of such an object was delivered: the reader's
    # resume_offset after the last line. It was refused as "not at the start of a line".
    whole = LineFramer()
    assert frame(chunks, whole) == [(0, b"abc", None), (4, b"de", None)]
    framer = LineFramer(start_offset=whole.resume_offset)
    assert frame(chunks, framer) == []
    assert framer.resume_offset == 6


def test_resuming_inside_the_last_line_is_still_an_error_when_more_follows() -> None:
    framer = LineFramer(start_offset=6)
    assert framer.feed(b"abc\nde") == []
    with pytest.raises(SourceError, match="resume offset 6 is not at the start of a line"):
        framer.feed(b"f\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_line_bytes": 0},
        {"stream_offset": -1},
        {"start_offset": 3, "stream_offset": 4},
        {"start_offset": 3, "stream_offset": 3},
    ],
)
def test_framer_rejects_impossible_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LineFramer(**kwargs)


def test_decoder_only_starts_late_in_plain_data() -> None:
    with pytest.raises(ValueError, match="only plain data"):
        LineDecoder(start_offset=5, stream_offset=4)


# Gzip, plain and garbage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "compressed"),
    [
        (b"", False),
        (b"\x1f", False),
        (b"\x1f\x8c rest\n", False),
        (os.urandom(4096).replace(b"\x1f\x8b", b"xx"), False),
        (gzip.compress(b"a\n"), True),
    ],
    ids=["empty", "one byte", "almost magic", "binary", "gzip"],
)
def test_gzip_is_told_by_magic_bytes(data: bytes, compressed: bool) -> None:
    decoder = LineDecoder()
    lines = decode([data[i : i + 1] for i in range(len(data))], decoder)
    assert decoder.compressed is compressed
    assert is_gzip(data) is compressed
    if not compressed:
        assert lines == reference(data)  # garbage is the parser's business, not ours


def zip_archive(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.log", data)
    return buffer.getvalue()


# A zstd frame (RFC 8878) with one raw block: magic, a header with a 1-byte content size, the
# block header (last block, raw, 15 bytes), the bytes. The standard library has no zstd before 3.14.
ZSTD_FRAME = b"\x28\xb5\x2f\xfd\x20\x0f" + (1 | 15 << 3).to_bytes(3, "little") + b"plain text log\n"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (bz2.compress(ALB_LINE), "bzip2"),
        (bz2.compress(b""), "bzip2"),
        (lzma.compress(ALB_LINE), "xz"),
        (zip_archive(ALB_LINE), "zip"),
        (ZSTD_FRAME, "zstd"),
    ],
)
@pytest.mark.parametrize("piece", [1, 3, 4096])
def test_compressions_elb_never_writes_are_refused_in_one_sentence(
    data: bytes, name: str, piece: int
) -> None:
    with pytest.raises(SourceError) as caught:
        decode(split_at(data, range(0, len(data), piece)), LineDecoder())
    assert str(caught.value) == (
        f"the data is {name}-compressed (by its first bytes), but ELB writes gzip or plain text: "
        "decompress it and ship the log itself"
    )
    assert not caught.value.transient


@pytest.mark.parametrize("text", [b"BZh9 is a line\n", b"PK\n", b"BZh91AY&S\n", b"\xfd7zX"])
def test_text_that_starts_like_a_magic_is_text(text: bytes) -> None:
    assert decode([text], LineDecoder()) == reference(text)


def test_zero_padding_between_and_after_members_is_ignored() -> None:
    data = gzip.compress(b"a\n") + b"\0" * 10 + gzip.compress(b"b\n") + b"\0" * 3
    inflater = GzipInflater()
    assert b"".join(p for c in split_at(data, range(0, 100, 3)) for p in inflater.feed(c)) == (
        b"a\nb\n"
    )
    inflater.finish()
    assert inflater.members == 2


def test_garbage_after_a_member_is_an_error_after_its_lines() -> None:
    decoder = LineDecoder()
    batches: list[Batch] = []
    with pytest.raises(SourceError, match="gzip data is corrupt in member 2"):
        for chunk in (gzip.compress(b"a\nb\n"), b"not gzip\n"):
            batches.extend(decoder.feed(chunk))
    assert flatten(batches) == [(0, b"a", None), (2, b"b", None)]


@pytest.mark.parametrize(
    ("flip", "what"),
    [(-8, "CRC-32"), (-1, "length")],
)
def test_a_wrong_gzip_trailer_is_an_error(flip: int, what: str) -> None:
    data = bytearray(gzip.compress(b"a\nb\n"))
    data[flip] ^= 0x01  # the trailer's CRC-32 or uncompressed length no longer matches
    with pytest.raises(SourceError, match="gzip data is corrupt in member 1"):
        decode([bytes(data)])


@pytest.mark.parametrize("chunk", [64 * 1024, 10**9])
def test_a_corrupt_block_is_placed_among_the_compressed_bytes_where_it_is_found(
    chunk: int,
) -> None:
    damage = damaged_gzip()
    inflater = GzipInflater()
    with pytest.raises(CorruptGzipError) as caught:
        for piece in split_at(damage.data, range(0, len(damage.data), chunk)):
            for _ in inflater.feed(piece):
                pass
    assert inflater.bytes_out >= INFLATE_STEP_BYTES
    found = re.search(r"in member 1, found in compressed bytes (\d+)-(\d+): ", str(caught.value))
    assert found, caught.value
    first, last = int(found[1]), int(found[2])
    assert first <= damage.at <= last < len(damage.data)
    assert last - first < chunk
    assert not caught.value.transient


@pytest.mark.parametrize("chunk", [64 * 1024, 10**9])
def test_isa_l_drops_at_most_a_step_of_text_before_the_damage(chunk: int) -> None:
    # Why a reader reads a corrupt object again (source.LineReader): ISA-L drops the output of
    # the call that fails, up to a step, and cannot say where in it it failed.
    damage = damaged_gzip()
    decoder = LineDecoder()
    batches: list[Batch] = []
    with pytest.raises(CorruptGzipError):
        for piece in split_at(damage.data, range(0, len(damage.data), chunk)):
            batches.extend(decoder.feed(piece))
    given = flatten(batches)
    assert given == reference(damage.text)[: len(given)]
    assert damage.intact - INFLATE_STEP_BYTES <= decoder.resume_offset < damage.intact


@pytest.mark.parametrize("chunk", [1, 1000, 64 * 1024, 10**9])
def test_the_salvaging_inflater_gives_all_the_text_before_the_damage_and_places_it(
    chunk: int,
) -> None:
    damage = damaged_gzip(4000 if chunk == 1 else 40_000)
    inflater = SalvagingGzipInflater()
    out: list[bytes] = []
    with pytest.raises(SourceError) as caught:
        for piece in split_at(damage.data, range(0, len(damage.data), chunk)):
            out.extend(inflater.feed(piece))
    assert b"".join(out) == damage.text[: damage.intact]
    assert str(caught.value) == (
        f"gzip data is corrupt in member 1 at compressed byte {damage.at}: "
        "Error -3 while decompressing data: invalid block type"
    )
    assert max(map(len, out)) <= INFLATE_STEP_BYTES + 1032 * SALVAGE_PIECE_BYTES


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=3000),
    member_cuts=st.lists(st.integers(0, 3000), max_size=3),
    chunk_cuts=st.lists(st.integers(0, 10_000), max_size=8),
    padding=st.integers(0, 3),
)
def test_the_salvaging_inflater_reads_good_gzip_as_isa_l_does(
    data: bytes, member_cuts: list[int], chunk_cuts: list[int], padding: int
) -> None:
    stream = gzip_members(data, member_cuts) + b"\0" * padding
    chunks = split_at(stream, chunk_cuts)
    salvaging, inflater = SalvagingGzipInflater(), GzipInflater()
    assert b"".join(p for c in chunks for p in salvaging.feed(c)) == data
    assert b"".join(p for c in chunks for p in inflater.feed(c)) == data
    salvaging.finish()
    assert (salvaging.members, salvaging.bytes_in, salvaging.bytes_out) == (
        inflater.members,
        inflater.bytes_in,
        inflater.bytes_out,
    )


def test_the_salvaging_inflater_keeps_the_limits_on_output() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)
    with pytest.raises(SourceError, match="inflates beyond 4194304 bytes"):
        for _ in SalvagingGzipInflater(max_output=4 * 1024 * 1024).feed(bomb):
            pass


@pytest.mark.parametrize("garbage", [b"x", b"PK\x03\x04"])
def test_the_salvaging_inflater_wants_the_magic_at_each_member(garbage: bytes) -> None:
    first = gzip.compress(b"a\n")
    with pytest.raises(SourceError, match=f"corrupt in member 2 at compressed byte {len(first)}"):
        for _ in SalvagingGzipInflater().feed(first + garbage):
            pass


@pytest.mark.parametrize("garbage", [b"x", b"\x1fx", b"PK\x03\x04"])
def test_a_member_must_start_with_the_gzip_magic(garbage: bytes) -> None:
    with pytest.raises(SourceError, match="corrupt in member 2 near compressed byte"):
        decode([gzip.compress(b"a\n") + garbage])


def test_truncated_gzip_ends_with_an_error_after_the_complete_lines() -> None:
    data = b"".join(b"line %d\n" % i for i in range(2000))
    compressed = gzip.compress(data)
    decoder = LineDecoder()
    batches: list[Batch] = []
    for chunk in split_at(compressed[: len(compressed) * 3 // 4], range(0, 10**6, 1000)):
        batches.extend(decoder.feed(chunk))
    with pytest.raises(SourceError, match="gzip data is truncated: it ends inside member 1"):
        decoder.finish()
    lines = flatten(batches)
    assert lines, "the lines before the cut come out"
    assert lines == reference(data)[: len(lines)]  # no partial last line


def gzip_member(data: bytes, flags: int) -> tuple[bytes, int]:
    """One gzip member of ``data`` whose header has the optional fields ``flags`` names (which
    the gzip module never writes): an extra field, a name, a comment, a header CRC; and the
    length of that header."""
    header = b"\x1f\x8b\x08" + bytes([flags]) + bytes(4) + b"\x00\xff"
    if flags & 0x04:
        header += struct.pack("<H", 6) + b"AB\x02\x00hi"
    if flags & 0x08:
        header += b"elb.log\0"
    if flags & 0x10:
        header += b"a comment\0"
    if flags & 0x02:
        header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data)), len(header)


@pytest.mark.parametrize(
    "flags",
    [0x08 | 0x10, 0x04 | 0x08, 0x02, 0x04 | 0x08 | 0x10 | 0x02],
    ids=["name-comment", "extra-name", "hcrc", "all"],
)
def test_a_member_header_with_optional_fields_split_anywhere_inflates(flags: int) -> None:
    # ISA-L misreads such a header given in parts (intel/isa-l#224): a valid file that gzip -t
    # accepts was refused as corrupt when a chunk boundary fell inside the second header.
    first = b"".join(b"line %d\n" % i for i in range(50))
    second = b"".join(b"more %d\n" % i for i in range(50))
    member, header_length = gzip_member(second, flags)
    assert gzip.decompress(member) == second  # the member is valid gzip
    data = gzip.compress(first) + member
    start = len(data) - len(member)
    for cut in range(start, start + header_length + 2):
        inflater = GzipInflater()
        out = b"".join(
            piece for chunk in (data[:cut], data[cut:]) for piece in inflater.feed(chunk)
        )
        inflater.finish()
        assert out == first + second, f"cut at byte {cut}"
        assert inflater.members == 2


def test_a_header_cut_before_its_end_is_truncated() -> None:
    inflater = GzipInflater()
    member, _ = gzip_member(b"a\n", 0x08)
    assert list(inflater.feed(member[:12])) == []
    with pytest.raises(SourceError, match="truncated"):
        inflater.finish()


def test_a_header_that_never_ends_is_corrupt_not_kept() -> None:
    # A member header is kept whole until it ends (intel/isa-l#224): a name with no NUL to end
    # it (a corrupt or hostile object) would otherwise be kept in memory to the end of the file.
    inflater = GzipInflater()
    first = gzip.compress(b"a\n")
    data = first + b"\x1f\x8b\x08\x08" + bytes(6) + b"n" * (MAX_GZIP_HEADER_BYTES + 1)
    out = b""
    with pytest.raises(
        SourceError,
        match=f"corrupt in member 2 near compressed byte {len(first)}: a header of over "
        f"{MAX_GZIP_HEADER_BYTES} bytes",
    ):
        for at in range(0, len(data), 64 * 1024):
            out += b"".join(inflater.feed(data[at : at + 64 * 1024]))
    assert out == b"a\n"


def test_gzip_cut_inside_its_header_is_truncated() -> None:
    with pytest.raises(SourceError, match="truncated"):
        decode([gzip.compress(b"a\n")[:5]])


def zeros_gzip(total: int, piece: int = 1024 * 1024) -> Iterator[bytes]:
    """A gzip member of ``total`` zero bytes, compressed as it is consumed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(piece)
    for _ in range(total // piece):
        out = compressor.compress(block)
        if out:
            yield out
    yield compressor.flush()


def test_gzip_bomb_ends_with_an_error_after_the_lines_before_it() -> None:
    good = b"".join(ALB_LINE + b"\n" for _ in range(1000))
    decoder = LineDecoder()
    batches: list[Batch] = []
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="refusing it as a gzip bomb") as caught:
            for chunk in itertools.chain([gzip.compress(good)], zeros_gzip(1024**3)):  # 1 GiB
                batches.extend(decoder.feed(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"more than {MAX_INFLATE_RATIO}:1" in str(caught.value)
    assert flatten(batches) == reference(good)
    # It stopped soon after the ratio floor, not after inflating the whole gigabyte...
    assert decoder.bytes_out < INFLATE_RATIO_FLOOR_BYTES + 2 * INFLATE_STEP_BYTES + len(good)
    # ...and held a step of input and of output at a time (plus zlib's state and the good lines),
    # not the 64 MiB it inflated.
    assert peak < 8 * 1024 * 1024


def test_output_limit_stops_inflation() -> None:
    decoder = LineDecoder(inflater=GzipInflater(max_output=1000, step=100))
    with pytest.raises(SourceError, match="inflates beyond 1000 bytes"):
        decode([gzip.compress(b"a\n" * 1000)], decoder)


def test_the_output_limit_takes_exactly_its_size() -> None:
    assert sum(map(len, GzipInflater(max_output=1000).feed(gzip.compress(bytes(1000))))) == 1000
    with pytest.raises(SourceError, match="inflates beyond 1000 bytes"):
        list(GzipInflater(max_output=1000).feed(gzip.compress(bytes(1001))))


def test_an_object_past_the_ratio_floor_within_the_ratio_is_inflated_whole() -> None:
    # About 48:1 (each 64 KiB, a KiB of noise that deflate's 32 KiB window cannot find again).
    block = os.urandom(1024) + bytes(63 * 1024)
    data = block * (INFLATE_RATIO_FLOOR_BYTES // len(block) + 16)
    inflater = GzipInflater()
    assert sum(map(len, inflater.feed(gzip.compress(data, compresslevel=1)))) == len(data)
    assert inflater.bytes_out == len(data) > INFLATE_RATIO_FLOOR_BYTES


def test_small_objects_may_compress_better_than_the_ratio() -> None:
    data = b"\n" * (4 * 1024 * 1024) + b"x\n"  # about 1000:1, but far below the floor
    assert decode([gzip.compress(data)]) == [(len(data) - 2, b"x", None)]


def test_inflate_steps_are_bounded() -> None:
    inflater = GzipInflater(step=1000)
    pieces = list(inflater.feed(gzip.compress(bytes(100_000))))
    assert max(map(len, pieces)) <= 1000
    assert sum(map(len, pieces)) == 100_000 == inflater.bytes_out


# Long lines in bounded memory --------------------------------------------------------------------


def long_line_stream(line_size: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """'before', a line of ``line_size`` bytes, 'after', in chunks, never whole in memory."""
    yield b"before\r\n"
    block = b"x" * chunk_size
    for _ in range(line_size // chunk_size):
        yield block
    yield b"x" * (line_size % chunk_size) + b"\nafter\n"


@pytest.mark.parametrize("megabytes", [10, 50])
def test_a_huge_line_is_cut_in_bounded_memory(megabytes: int) -> None:
    size = megabytes * 1024 * 1024
    framer = LineFramer()
    tracemalloc.start()
    try:
        lines = frame(long_line_stream(size), framer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [
        (0, b"before", None),
        (8, b"x" * MAX_LINE_BYTES, size),
        (8 + size + 1, b"after", None),
    ]
    assert peak < 3 * MAX_LINE_BYTES + 256 * 1024  # the kept head, one chunk, bookkeeping


def test_a_huge_line_in_gzip_is_cut_in_bounded_memory() -> None:
    size = 50 * 1024 * 1024
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    compressed = [compressor.compress(chunk) for chunk in long_line_stream(size)]
    compressed.append(compressor.flush())
    tracemalloc.start()
    try:
        lines = decode(c for c in compressed if c)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(o, len(line), n) for o, line, n in lines] == [
        (0, 6, None),
        (8, MAX_LINE_BYTES, size),
        (8 + size + 1, 5, None),
    ]
    assert peak < 3 * INFLATE_STEP_BYTES + 2 * MAX_LINE_BYTES


def test_a_huge_chunk_holding_a_long_line_is_cut() -> None:
    data = b"a\n" + b"y" * (3 * MAX_LINE_BYTES) + b"\nb\n" + b"z" * (2 * MAX_LINE_BYTES)
    assert frame([data]) == reference(data)


# --- Where a gzip member's header ends, against the standard library's reader. ----------------

_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16


def _member_header(flags: int, extra: bytes) -> bytes:
    header = b"\x1f\x8b\x08" + bytes([flags]) + bytes(4) + b"\x00\xff"
    if flags & _FEXTRA:
        header += struct.pack("<H", len(extra)) + extra
    if flags & _FNAME:
        header += b"access.log\0"
    if flags & _FCOMMENT:
        header += b"a comment\0"
    if flags & _FHCRC:
        header += b"\x12\x34"
    return header


@pytest.mark.parametrize("extra", [b"", b"AP\x02\x00hi"], ids=["empty extra", "extra"])
@pytest.mark.parametrize("flags", range(32))
def test_a_gzip_header_ends_where_the_gzip_module_reads_it_to(flags: int, extra: bytes) -> None:
    """Every combination of the optional fields, cut at every length around its end: None until
    the whole header is there (ISA-L must never be handed part of one: intel/isa-l#224), then
    its length, whatever follows."""
    member = _member_header(flags, extra) + zlib.compressobj(wbits=-15).compress(b"x") + bytes(8)
    reader = io.BytesIO(member)
    gzip._read_gzip_header(reader)  # type: ignore[attr-defined]  # the oracle: CPython's own
    length = reader.tell()
    for cut in range(len(member) + 1):
        expected = length if cut >= length else None
        assert gzip_header_end(member[:cut]) == expected, (flags, cut)
