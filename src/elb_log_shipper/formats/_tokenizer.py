"""Split one ELB log line into its fields.

ELB lines are space-separated; some fields are wrapped in double quotes and may contain spaces.
The rules (shared/reference/elb-log-formats.md, section 1):

- Inside quotes a backslash escapes the next character. ``\\"`` becomes ``"`` and ``\\\\`` becomes
  ``\\``; any other escape (ALB's ``\\x22`` for a quote inside a URL) is kept verbatim, so the value
  is what the load balancer wrote.
- A token that is one quoted span loses its outer quotes. A closing quote ends the field even when
  no space follows (real ALB lines contain ``"-"1``).
- Quotes in the middle of an unquoted token are toggles: ``"h2","http/1.1"`` (the NLB ALPN list) is
  one field, kept with its quotes for the format module to split.
- A quote that never closes makes the line unparseable.

Two implementations give the same answer: a fast path built on ``str.split`` (C speed) for the
lines without backslashes (NLB's ALPN list included: most TLS lines have one), and a character
loop for the rest. (The common ALB layout skips even
the fast path: ``alb.parse_quoted_parts`` reads its fields straight from ``line.split('"')``.)
"""

from __future__ import annotations

from elb_log_shipper.errors import LineSyntaxError

__all__ = ["tokenize", "tokenize_split"]


def tokenize(line: str) -> list[str]:
    """Return the fields of ``line``, quotes removed.

    >>> tokenize('200 "GET http://a:80/ HTTP/1.1" "-"1')
    ['200', 'GET http://a:80/ HTTP/1.1', '-', '1']

    Raises LineSyntaxError when a quote does not close.
    """
    if "\\" not in line:
        return tokenize_split(line, line.split('"'))
    return _split_slow(line)


def tokenize_split(line: str, parts: list[str]) -> list[str]:
    """``tokenize(line)`` for a line without backslashes, given ``parts = line.split('"')``."""
    if len(parts) & 1:
        fields = _split_fast(parts)
        if fields is not None:
            return fields
    return _split_slow(line)


def _split_fast(parts: list[str]) -> list[str] | None:
    """Fields from ``line.split('"')``: even parts are unquoted text, odd parts quoted values.

    Quoted items joined by commas (NLB's ALPN list, ``"h2","http/1.1"``) make one field, kept with
    its quotes, as the slow path keeps it. Returns None when a quote opens in the middle of a
    token, which the slow path handles.
    """
    fields: list[str] = []
    last = len(parts) - 1
    listed = False  # whether the last field is a list of quoted items, kept quoted
    for i in range(0, last, 2):
        text = parts[i]
        if text == " ":
            # The common case between two quoted fields: nothing to split.
            fields.append(parts[i + 1])
            listed = False
            continue
        if text == "," and i:
            # `"a","b"`: the next item of a list (a line without backslashes, so the items need
            # no escaping).
            if not listed:
                fields[-1] = f'"{fields[-1]}"'
                listed = True
            fields[-1] += f',"{parts[i + 1]}"'
            continue
        listed = False
        # A quote may only open at the start of the line or after a space.
        if text:
            if text[-1] != " ":
                return None
            fields.extend(text.split())
        elif i:
            # Two quoted spans back to back: `"a""b"` is a token with quotes inside.
            return None
        fields.append(parts[i + 1])
    tail = parts[last]
    if tail:
        if tail[0] == ",":
            return None  # `"h2","http/1.1"`: quoted items joined by commas form one field
        fields.extend(tail.split())
    return fields


def _split_slow(line: str) -> list[str]:
    fields: list[str] = []
    n = len(line)
    i = 0
    while i < n:
        c = line[i]
        if c.isspace():
            # The same separators as str.split() in the fast path.
            i += 1
            continue
        if c == '"':
            value, i = _read_quoted(line, i + 1)
            # `"a","b"`: more quoted items joined by commas make one list field, kept quoted.
            if i < n and line[i] == "," and i + 1 < n and line[i + 1] == '"':
                start = i
                while i < n and line[i] == "," and i + 1 < n and line[i + 1] == '"':
                    _, i = _read_quoted(line, i + 2)
                fields.append('"' + _escape(value) + '"' + line[start:i])
            else:
                fields.append(value)
            continue
        # An unquoted token; quotes inside it toggle quoting and are kept, and a backslash is
        # plain text (NLB writes its ALPN list as `\"h2\",\"http/1.1\"` too).
        start = i
        quoted = False
        while i < n:
            c = line[i]
            if c == '"':
                quoted = not quoted
            elif not quoted and c.isspace():
                break
            i += 1
        if quoted:
            raise LineSyntaxError(f"unclosed quote in field starting at column {start}")
        fields.append(line[start:i])
    return fields


def _read_quoted(line: str, i: int) -> tuple[str, int]:
    """Read a quoted value whose opening quote is just before ``i``; return it and the index
    after its closing quote."""
    n = len(line)
    start = i
    chunks: list[str] = []
    while True:
        q = line.find('"', i)
        b = line.find("\\", i, q if q >= 0 else n)
        if b >= 0:
            chunks.append(line[i:b])
            if b + 1 >= n:
                raise LineSyntaxError(f"unclosed quote in field starting at column {start - 1}")
            nxt = line[b + 1]
            chunks.append(nxt if nxt in '"\\' else line[b : b + 2])
            i = b + 2
            continue
        if q < 0:
            raise LineSyntaxError(f"unclosed quote in field starting at column {start - 1}")
        chunks.append(line[i:q])
        return "".join(chunks), q + 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
