"""A gzip member damaged far in, where an inflater meets the damage as such (not only at the
CRC-32): a block whose header holds the reserved type, right after a full flush."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

__all__ = ["DamagedGzip", "damaged_gzip", "reference_lines"]


@dataclass(frozen=True)
class DamagedGzip:
    text: bytes
    """All the lines the member was made of."""
    data: bytes
    """The member, damaged."""
    at: int
    """The damaged compressed byte."""
    intact: int
    """How many bytes of ``text`` come before the damage: the text any inflater can give."""


def damaged_gzip(
    lines: int = 40_000, *, text: bytes | None = None, fraction: float = 0.75
) -> DamagedGzip:
    """``text``, or ``lines`` lines of random hex (which deflate keeps long: many inflate steps of
    text before the damage), damaged after the line that ``fraction`` of the text falls in.

    >>> damage = damaged_gzip(2000)
    >>> zlib.decompressobj(wbits=31).decompress(damage.data[: damage.at]) == damage.text[
    ...     : damage.intact
    ... ]
    True
    """
    if text is None:
        rng = random.Random(7)
        text = b"".join(b"%d %x\n" % (i, rng.getrandbits(256)) for i in range(lines))
    intact = text.rfind(b"\n", 0, int(len(text) * fraction)) + 1
    deflate = zlib.compressobj(1, wbits=31)
    head = deflate.compress(text[:intact]) + deflate.flush(zlib.Z_FULL_FLUSH)
    at = len(head)  # a full flush ends byte-aligned: the next block's header bits start here
    data = bytearray(head + deflate.compress(text[intact:]) + deflate.flush())
    data[at] = 0b110  # BFINAL 0, BTYPE 11: reserved
    return DamagedGzip(text=text, data=bytes(data), at=at, intact=intact)


def reference_lines(text: bytes) -> list[tuple[int, bytes]]:
    """The ``(offset, line)`` pairs of ``text``, which holds no empty line and no ``\\r``."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    for line in text.split(b"\n"):
        if line:
            out.append((offset, line))
        offset += len(line) + 1
    return out
