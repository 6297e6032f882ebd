"""LineReader on local files: the same framing path as S3 objects."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from elb_log_shipper.errors import ObjectChangedError, SourceError
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.source import LineReader
from tests.support.damaged import damaged_gzip, reference_lines

LINES = [b"line %d \xff" % i for i in range(500)]  # invalid UTF-8 stays bytes
DATA = b"\r\n".join(LINES)  # no final newline
OFFSETS = [sum(len(line) + 2 for line in LINES[:i]) for i in range(len(LINES))]
EXPECTED = list(zip(OFFSETS, LINES, strict=True))


def read_all(reader: LineReader) -> list[tuple[int, bytes]]:
    return [line for batch in reader for line in batch]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "plain": tmp_path / "a.log",
        "gzip": tmp_path / "b.log",  # gzip without .gz: told by its bytes
        "members": tmp_path / "c.log.gz",
    }
    paths["plain"].write_bytes(DATA)
    paths["gzip"].write_bytes(gzip.compress(DATA))
    paths["members"].write_bytes(gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]))
    return paths


@pytest.mark.parametrize(
    ("kind", "compressed"), [("plain", False), ("gzip", True), ("members", True)]
)
def test_reads_plain_and_gzip_files(files: dict[str, Path], kind: str, compressed: bool) -> None:
    path = files[kind]
    with LineReader(ObjectRef.local(str(path)), chunk_size=777) as reader:
        assert (reader.compressed, reader.etag, reader.version_id) == (compressed, None, None)
        assert reader.size == path.stat().st_size
        assert read_all(reader) == EXPECTED
        assert reader.bytes_read == path.stat().st_size
        assert reader.bytes_decompressed == len(DATA)


@pytest.mark.parametrize("kind", ["plain", "gzip", "members"])
def test_resume_at_any_line(files: dict[str, Path], kind: str) -> None:
    for index in [*range(0, len(LINES), 41), len(LINES) - 1]:
        ref = ObjectRef("", str(files[kind]), start_offset=OFFSETS[index])
        assert read_all(LineReader(ref, chunk_size=500)) == EXPECTED[index:]


def test_plain_resume_seeks_instead_of_reading(files: dict[str, Path]) -> None:
    ref = ObjectRef("", str(files["plain"]), start_offset=OFFSETS[400])
    reader = LineReader(ref, chunk_size=100)
    assert read_all(reader) == EXPECTED[400:]
    assert reader.bytes_read == 100 + len(DATA) - OFFSETS[400] + 1


def test_resume_inside_a_line_names_the_file(files: dict[str, Path]) -> None:
    ref = ObjectRef("", str(files["gzip"]), start_offset=OFFSETS[4] + 1)
    with pytest.raises(SourceError, match=f"{files['gzip']}: resume offset .* not at the start"):
        read_all(LineReader(ref))


def test_a_plain_file_resumed_past_its_end_is_a_source_error(files: dict[str, Path]) -> None:
    # The file was cut (or replaced by a shorter one) since the offset was saved: nothing is
    # read from an offset that is not in it.
    path = files["plain"]
    ref = ObjectRef("", str(path), start_offset=len(DATA) + 10)
    with pytest.raises(
        SourceError,
        match=f"^resume offset {len(DATA) + 10} is beyond the end of {path} "
        f"[(]{len(DATA)} bytes[)]$",
    ):
        read_all(LineReader(ref))


@pytest.mark.parametrize("name", ["missing.log", "."])
def test_unreadable_paths_are_source_errors(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(SourceError, match=f"cannot read {path}"):
        LineReader(ObjectRef.local(path)).open()


def test_a_truncated_gzip_file_yields_its_complete_lines_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "cut.log.gz"
    compressed = gzip.compress(DATA)
    path.write_bytes(compressed[: len(compressed) // 2])
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(SourceError, match=f"{path}: gzip data is truncated"):
        for batch in LineReader(ObjectRef.local(str(path)), chunk_size=64):
            lines.extend(batch)
    assert lines and lines == EXPECTED[: len(lines)]


@pytest.mark.parametrize("chunk", [4096, 1024 * 1024])
def test_a_corrupt_gzip_file_gives_every_line_before_the_damage_once(
    tmp_path: Path, chunk: int
) -> None:
    damage = damaged_gzip()
    path = tmp_path / "damaged.log.gz"
    path.write_bytes(damage.data)
    reader = LineReader(ObjectRef.local(str(path)), chunk_size=chunk)
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(SourceError) as caught:
        for batch in reader:
            lines.extend(batch)
    assert lines == reference_lines(damage.text[: damage.intact])
    assert str(caught.value) == (
        f"{path}: gzip data is corrupt in member 1 at compressed byte {damage.at}: "
        "Error -3 while decompressing data: invalid block type"
    )
    assert reader.salvaged


def read_changed_after_a_batch(
    path: Path, change: Callable[[], None]
) -> tuple[list[tuple[int, bytes]], SourceError]:
    """Read the corrupt gzip file ``path``, calling ``change`` once its first batch is read
    (before the second reading that its damage calls for): the lines, and the error it ends in."""
    lines: list[tuple[int, bytes]] = []
    with pytest.raises(SourceError) as caught:
        for batch in LineReader(ObjectRef.local(str(path)), chunk_size=4096):
            if not lines:
                change()
            lines.extend(batch)
    return lines, caught.value


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_corrupt_gzip_file_gone_from_its_name_is_read_again_from_its_first_opening(
    tmp_path: Path, change: str
) -> None:
    """Deleted, or another file under its name (a copy run again, a rotation), before the reader
    reads it a second time: it reads the file it first opened, by the descriptor it kept. (It
    reopened the name: a deleted file cost the lines of the last step before the damage, a
    replaced one gave another file's lines under the same name.)"""
    damage = damaged_gzip()
    path = tmp_path / "damaged.log.gz"
    path.write_bytes(damage.data)

    def replace() -> None:
        other = damaged_gzip(text=damage.text.replace(b" ", b"-"))
        (tmp_path / "new").write_bytes(other.data)
        (tmp_path / "new").replace(path)

    lines, error = read_changed_after_a_batch(path, path.unlink if change == "deleted" else replace)
    assert lines == reference_lines(damage.text[: damage.intact])
    assert str(error).startswith(
        f"{path}: gzip data is corrupt in member 1 at compressed byte {damage.at}:"
    )


def test_a_corrupt_gzip_file_written_to_before_its_second_reading_is_not_read_again(
    tmp_path: Path,
) -> None:
    """Rewritten in place (the same file, other bytes) before the second reading: the lines
    would come from two contents. As an S3 object's second reading is pinned by its ETag, the
    file's is by its size and modification time."""
    damage = damaged_gzip()
    other = damaged_gzip(text=damage.text.replace(b" ", b"-"))
    path = tmp_path / "damaged.log.gz"
    path.write_bytes(damage.data)

    def rewrite() -> None:
        # Past the clock's tick (Linux stamps files at a jiffy's resolution, 1-10 ms), so that
        # the write moves the modification time.
        time.sleep(0.05)
        with path.open("r+b") as file:
            file.write(other.data)

    lines, error = read_changed_after_a_batch(path, rewrite)
    assert isinstance(error, ObjectChangedError)
    assert str(error) == (
        f"{path} changed since it was first read (written to: its size or modification time "
        "differs): ship it again from its start"
    )
    assert lines == reference_lines(damage.text)[: len(lines)]


def test_a_reader_iterates_once(files: dict[str, Path]) -> None:
    reader = LineReader(ObjectRef.local(str(files["plain"])))
    assert read_all(reader) == EXPECTED
    with pytest.raises(RuntimeError):
        read_all(reader)
