"""Privacy and volume rules: redact query strings, anonymise client addresses, drop lines. Pure.

The rules work on the raw text of a line, before it is parsed: the event is then built from the
rewritten text, so every field derived from a value (``event.original``, ``url.*``,
``aws.elb.redirect_url``, ``source.*``, an error message quoting a field) holds only the
redacted form, whatever fields the parser emits. A line that matches a drop filter never becomes
an event: ``LinePrivacy.apply`` answers None for it.

The paths, from the cheapest: with ``CLIENT_IP=truncate`` or ``hash`` and no drop filter, the
common line of every format is rewritten in one regex match (``LinePrivacy.rewritten``, the
text then parsed as any line); other common ALB lines are redacted in the parser's own split
(``LinePrivacy.alb_parts``); any other line is read field by field (``LinePrivacy.apply``).
Each gives the same text.

Where the values live in a line, by format (shared/reference/elb-log-formats.md):

===========  ==========  ==========================================  ======  ==========
format       client      URLs (query redacted)                       status  user agent
===========  ==========  ==========================================  ======  ==========
ALB          3 ip:port   12 request, 23 redirect_url, 31 transformed  8       13
Classic      2 ip:port   11 request                                  7       12
NLB          5 ip:port   (none)                                      (none)  (none)
connection   1 ip        (none)                                      (none)  (none)
===========  ==========  ==========================================  ======  ==========

The format of a line is the parser's decision (``formats.detect_format``, handed to
``PrivacyRules.compile``: the rules sit below the parser and cannot import it), so the fields
rewritten are the ones the parser reads as the client and the URLs.

Off the common ALB layout, every field after the request but the user agent that holds a ``?``,
``#`` or ``@`` is taken as a URL, and every field after the ones the format documents (the
parser's later and extra fields: two lines run together put a second client there) is scrubbed
(every address anonymised, every ``?``/``#`` tail redacted), so that a line of an unusual
layout fails closed. A line cut short with another run into it before its last documented field
(a stray timestamp, an ALB field unquoted that is always quoted, a serial number that is not
hex: ``_second_line_within``) is scrubbed as a whole. A Classic line with more than its 15
fields has a field split in two (a raw quote in the request), so which one is the user agent is
unknown: it is scrubbed as a whole.

A line of no known format is scrubbed as a whole: every IP address in it is anonymised and
everything from its first ``?`` or ``#`` to its end is taken as a query, since nothing says which
value is the client's or where a URL ends. So is every line that fails to parse, whatever its
format, and the reason given for it (``LinePrivacy.redact``): the rewrite by field number assumed
a layout the line does not have.

With a query rule, the user information of a URL (``https://user:password@host/``) goes too: a
password is a secret and a user name a person's (``values`` writes ``REDACTED@``, ``all`` leaves
nothing).

The hash key is passed in as bytes: fetching it (SSM Parameter Store through Powertools) is the
entry points' business.

>>> from elb_log_shipper.formats import detect_format
>>> rules = PrivacyRules(redact_query=QueryRedaction.VALUES, client_ip=ClientAddress.TRUNCATE)
>>> line = rules.compile(detect_format)
>>> text = line.apply('2015-05-13T23:39:43.945958Z lb 192.168.131.39:2817 - -1 -1 -1 504 - 0 0 '
...                   '"GET http://a.com:80/p?user=jo&x=&y HTTP/1.1" "curl/7.38.0" - -')
>>> text.split('"')[0][28:]
'lb 192.168.131.0:2817 - -1 -1 -1 504 - 0 0 '
>>> text.split('"')[1]
'GET http://a.com:80/p?user=REDACTED&x=&REDACTED HTTP/1.1'
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TypeVar, overload

__all__ = [
    "MIN_HASH_KEY_BYTES",
    "REDACTED",
    "ClientAddress",
    "DropRules",
    "FormatDetector",
    "LinePrivacy",
    "PrivacyRules",
    "QueryRedaction",
    "parse_status_filter",
]

_T = TypeVar("_T")

FormatDetector = Callable[[list[str]], str | None]
"""The parser's decision of a line's format from its fields (``formats.detect_format``): ``alb``,
``nlb``, ``classic``, ``connection`` or None."""

# What replaces a redacted value: URL-safe, no quote or space, so the line keeps its shape.
REDACTED = "REDACTED"
# A shorter HMAC key could be guessed; 16 random bytes are 128 bits, as much as the digest we keep.
# Only the length is checked: a key of 16 guessable characters passes (README, Privacy).
MIN_HASH_KEY_BYTES = 16
# What follows the last quote of a common ALB line is ` TID_` and 32 hex digits (conn_trace_id),
# or nothing; but the parser keeps whatever stands there as later fields, and the common layout's
# paths (`rewritten`, `alb_parts`) do not rewrite it. So they take only a tail that the longer
# paths, which scrub every field after the documented ones, leave as it is: one without `.` or `:`
# (no address) and, with a query rule, without `?`, `#` or `@` (no query, fragment or user
# information). Later fields written unquoted, or another line run into this one (its
# timestamp), fail the same tests. An `in` a character: a C scan each, cheaper than a split or a
# regular expression.
# Memo of anonymised addresses: cleared when full, like the parser's memos.
_MEMO_LIMIT = 4096
# Pseudonymous addresses are RFC 4193 unique local IPv6 (fd00::/8): a valid `ip` for
# Elasticsearch's mapping of source.ip, routed nowhere, and never a real client on the Internet.
_PSEUDO_PREFIX = b"\xfd"
_PSEUDO_DIGEST_BYTES = 15
# The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 2.5.5.2).
_IPV4_MAPPED = bytes(10) + b"\xff\xff"
# GA-style truncation: IPv4 to /24, IPv6 to /48.
_IPV6_KEEP_MASK = ((1 << 48) - 1) << 80
# A 6to4 address (2002::/16, RFC 3056) carries an IPv4 address in bits 16-47: its /48 is that whole
# address, so it is kept to /40, the IPv4 address's /24.
_SIX_TO_FOUR = 0x2002
_SIX_TO_FOUR_KEEP_MASK = ((1 << 40) - 1) << 88
# An IPv6 address written in hex groups alone, as `ipaddress` accepts one: eight groups of one to
# four hex digits, or fewer (up to seven) around one `::`, by the count of groups on each side.
# The form `_ipv6_network` reads.
_HEX_GROUP = "[0-9A-Fa-f]{1,4}"
_IPV6_HEX = re.compile(
    rf"(?:{_HEX_GROUP}:){{7}}{_HEX_GROUP}"
    rf"|(?:{_HEX_GROUP}:){{1,7}}:"
    rf"|(?:{_HEX_GROUP}:){{1,6}}:{_HEX_GROUP}"
    rf"|(?:{_HEX_GROUP}:){{1,5}}(?::{_HEX_GROUP}){{1,2}}"
    rf"|(?:{_HEX_GROUP}:){{1,4}}(?::{_HEX_GROUP}){{1,3}}"
    rf"|(?:{_HEX_GROUP}:){{1,3}}(?::{_HEX_GROUP}){{1,4}}"
    rf"|(?:{_HEX_GROUP}:){{1,2}}(?::{_HEX_GROUP}){{1,5}}"
    rf"|{_HEX_GROUP}:(?::{_HEX_GROUP}){{1,6}}"
    rf"|:(?:(?::{_HEX_GROUP}){{1,7}}|:)"
)
# An IPv6 address's 16 bytes as its eight groups, and the groups written without `::`.
_EIGHT_GROUPS = struct.Struct(">8H")
# The colons of an IPv6 address of eight groups.
_IPV6_COLONS = 7
_EIGHT_HEX_GROUPS = ":".join(["%x"] * 8)

_ALB_TYPES = frozenset({"http", "https", "h2", "grpcs", "ws", "wss"})
# What those start with; none of the other formats' lines does (a digit, `tls`).
_ALB_INITIALS = frozenset("hgw")
# ASCII digits: `\d` would also take `٣`, which the parser refuses in an address (inet_pton).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# An IPv4 client and its port: the part truncation keeps, and the port.
_IPV4_PORT = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.){_OCTET}(:[0-9]+)")
# The head of an ALB line (before its first quote) whose client, the fourth field as str.split()
# reads it, is IPv4: up to the part that truncation keeps; then, after the last byte, the port.
# Printable ASCII fields (possessive: a field ends at its space) and ASCII digits: character
# ranges are the cheapest tests for the regex engine (`\S` and `\d` are Unicode categories);
# anything else takes the longer path. An octet (0 to 255, no leading zero) is told by its first
# digit where it can be, and a one- or two-digit octet is taken without backtracking: the regex
# engine enters every alternative it tries as a nested call, and the four octets are the costliest
# part of the match.
_ASCII_OCTET = r"(?:1[0-9][0-9]|2(?:[0-4][0-9]|5[0-5])|[1-9][0-9]?+|0)"
_ALB_IPV4_CLIENT = re.compile(
    rf"([!-~]++ [!-~]++ [!-~]++ {_ASCII_OCTET}\.{_ASCII_OCTET}\.{_ASCII_OCTET}\.)"
    rf"{_ASCII_OCTET}(:[0-9]+ )"
)
# The common ALB line as the parser reads it, for CLIENT_IP=truncate (`LinePrivacy.rewritten`;
# with hash, `_ALB_ANY_CLIENT` below reads every ALB line): an ALB type, then two fields of
# printable ASCII but the quote, one space after each (so they are the fields that `str.split()`
# and the tokenizer give), an IPv4 client and its port. The fields
# are matched as one character range (`[!-~]`, cheaper for the engine than the range and the `!`
# that leaving out the quote takes): a quote in them is looked for in the first group after the
# match. Groups: the line up to the byte that truncation zeroes, and the rest of the line from the
# port on (DOTALL: `.*+` takes the rest at once, whatever its length). Without a `?`, `#` or `@`
# in the line, or without a query rule, this is the whole rewrite.
_COMMON_HEAD = (
    rf"((?:https?|h2|grpcs|wss?) [!-~]++ [!-~]++ "
    rf"{_ASCII_OCTET}\.{_ASCII_OCTET}\.{_ASCII_OCTET}\.){_ASCII_OCTET}"
)
_COMMON_CLIENT = re.compile(rf"{_COMMON_HEAD}(:[0-9]++ .*+)", re.DOTALL)
# The same line whose request is the common one with a query, as `LinePrivacy._request` reads it
# in its first branch: the first quoted field after the client, `METHOD PATH?QUERY HTTP/x` (a
# path before the first `?`, a query without space or quote, then the version and the closing
# quote, so its space is the request's last); the line has no `#` or backslash (tested before).
# Groups: the line up to the byte that truncation zeroes; from the port to the request's opening
# quote; the path; the query from its `?`; the rest of the line from the space before the version.
# The path and the query are scanned up to one character (`[^?]`, `[^ ]`), the engine's cheapest
# scan: a quote in them is looked for after the match.
_COMMON_QUERY = re.compile(
    rf'{_COMMON_HEAD}(:[0-9]++ [^"]*+")([^?]++)(\?[^ ]*+)( HTTP/[^" ]*+".*+)', re.DOTALL
)
# The same two patterns for an ALB line whose client is not IPv4 as they read it (IPv6), which
# `_client_port` anonymises as the longer paths do (`LinePrivacy._rewritten_alb` refuses a client
# that is no address). Groups: the line up to the client; the client and its port; then as above.
_ALB_HEAD_FIELDS = r"((?:https?|h2|grpcs|wss?) [!-~]++ [!-~]++ )([0-9A-Fa-f.]*+:[0-9A-Fa-f:.]++)"
_ALB_ANY_CLIENT = re.compile(rf"{_ALB_HEAD_FIELDS}( .*+)", re.DOTALL)
_ALB_ANY_CLIENT_QUERY = re.compile(
    rf'{_ALB_HEAD_FIELDS}( [^"]*+")([^?]++)(\?[^ ]*+)( HTTP/[^" ]*+".*+)', re.DOTALL
)
# The short paths of the other formats (`LinePrivacy._rewritten_other`): a line each pattern
# reads is one that the path reading every field (`_by_fields`) gives only the client anonymised
# (and a Classic request's query redacted, a connection log's later fields scrubbed), so the
# rewrite is the same text for a fraction of the cost. Their fields are tokens of printable ASCII
# without a quote or a backslash (so the fields and their spans are the ones `_field_spans` and
# the tokenizer read), one space apart. What a pattern does not read (more or fewer fields, a
# field of another shape, a quote inside a token, any other whitespace) is left to the longer
# path, as is any line with a timestamp in a field that holds none (checked after the match:
# another line run into it).
_WORD = r"[!#-\[\]-~]++"


def _spaced(field: str, count: int) -> str:
    """``count`` fields of the pattern ``field``, each after a space: ``(?: field){count}``
    written out, which the regular expression engine matches without the state it keeps for
    each round of a counted repeat (NLB's 15 fields: 1.1 µs a line against 1.35)."""
    return f" {field}" * count


# A token that holds no URL mark either (`?`, `#`, `@`): fields that `_by_fields` takes as a URL
# when they have one.
_PLAIN_WORD = r"[!$->A-\[\]-~]++"
# The client: an IPv4 address and its port, in three groups (up to the byte that truncation
# zeroes, that byte, and the port), matched as the ALB line's is; or any other address and port,
# in a fourth (IPv6, or what is no address: `LinePrivacy._client_port` reads it, as `_by_fields`
# does). It has a colon, which makes a Classic line Classic (`formats.detect_format`).
_IPV4_NETWORK = rf"{_ASCII_OCTET}\.{_ASCII_OCTET}\.{_ASCII_OCTET}\."
_CLIENT_PORT = rf"(?:({_IPV4_NETWORK})({_ASCII_OCTET})(:[0-9]++)|([0-9A-Fa-f.]*+:[0-9A-Fa-f:.]++))"
# Classic, its 15 fields (12 in files before 2015): the time, the name, the client, eight numbers
# and addresses, the quoted request, then the quoted user agent, the TLS cipher and protocol.
# Groups: the time and the name; the client's three; from the client to the request's opening
# quote; the request; the rest.
_CLASSIC_LINE = re.compile(
    rf"([0-9]{{4}}-{_WORD} {_WORD} ){_CLIENT_PORT}"
    rf'({_spaced(_WORD, 8)} ")([^"\\]*+)'
    rf'("(?: "[^"\\]*+" {_PLAIN_WORD} {_PLAIN_WORD})?)'
)
# The same Classic line read in the parser's split (`LinePrivacy.classic_fields`): its head (the
# text before the request's quote: the time, the name, the client and the 8 numbers and
# addresses, one space after each), with the same groups as above but the request and the rest;
# and what follows the user agent (the TLS cipher and protocol).
_CLASSIC_HEAD = re.compile(rf"([0-9]{{4}}-{_WORD} {_WORD} ){_CLIENT_PORT}({_spaced(_WORD, 8)} )")
_CLASSIC_TAIL = re.compile(rf" {_PLAIN_WORD} {_PLAIN_WORD}")
# NLB, its 21 fields and the connection's creation time if written (22 documented): `tls`, the
# version, the time, the name, the listener, the client; then fields that may be quoted lists
# (`"h2","http/1.1"`). Groups: the line up to the client; the time; the client's three; the rest
# of the line; the creation time.
# Lists only in the three ALPN fields (18-20), as the path that reads every field takes them.
_NLB_VALUE = rf'(?:{_WORD}|"[^"\\]*+")'
_NLB_FIELD = rf'(?:{_WORD}|"[^"\\]*+"(?:,"[^"\\]*+")*+)'
_NLB_LINE = re.compile(
    rf"(tls [0-9]++\.[0-9]++ ({_WORD}) {_WORD} {_WORD} ){_CLIENT_PORT}"
    rf"({_spaced(_NLB_VALUE, 12)}{_spaced(_NLB_FIELD, 3)}(?: ({_WORD}))?)"
)
# An ALB connection log, its 11 documented fields, then any later ones (the trace id, the key
# exchange, the load balancer, its address): the time, the client (an address alone), its port,
# the listener's port, the TLS protocol, cipher and handshake latency, the quoted certificate
# subject, the validity, the serial number (hex), the verification status. Groups: the time; the
# client, IPv4 up to the byte that truncation zeroes, or any other; the documented rest; the
# validity; the later fields, each after a space, but for a last one that is an IPv4 address; that
# address up to the byte that truncation zeroes.
_CONNECTION_LINE = re.compile(
    rf"([0-9]{{4}}-{_WORD} )"
    rf"(?:({_IPV4_NETWORK}){_ASCII_OCTET}|([0-9A-Fa-f:.]++))"
    rf'( [0-9]++ {_WORD} {_WORD} {_WORD} {_WORD} "[^"\\]*+" ({_WORD}) [0-9A-Fa-f-]++ '
    rf"{_WORD})((?: {_WORD})*?)(?: ({_IPV4_NETWORK}){_ASCII_OCTET})?"
)
# In a query or fragment (`?...#...`): what follows a parameter's first `=`, and a parameter
# without `=`, which may well be the value itself (`?a3f9c2`). Parameters are separated by `&` or
# by `;` (HTML 4's recommendation, which some servers still read: `?a3f9c2;lang=en`).
_PARAMETER_VALUE = re.compile(r"=[^&#;]+")
_REDACTED_VALUE = f"={REDACTED}"
_BARE_PARAMETER = re.compile(r"(?<=[?&#;])[^=&#;]+(?=[&#;]|$)")
# The head of an ALB line up to its request (the first quoted field), with an IPv4 client split
# into the part that truncation keeps and its port. Fields are split at any whitespace, as the
# parser splits them (a no-break space too), so the client is the one the parser reads.
_ALB_HEAD = re.compile(
    r"(?:https?|h2|grpcs|wss?)\s+[^\s\"]+\s+[^\s\"]+\s+"
    rf"(?P<client>(?P<network>{_OCTET}\.{_OCTET}\.{_OCTET}\.){_OCTET}(?P<port>:[0-9]+)|[^\s\"]+)"
    r'\s[^"]*"(?P<request>[^"\\]*)"'
)
# One field, by the tokenizer's rules: a quoted value (backslash escapes; a closing quote ends it;
# `"a","b"` lists are one field), a quote that never closes (the rest of the line), or an
# unquoted token in which quotes toggle.
# The value of each alternative is its one group (``Match.lastindex``): inside the quotes for a
# quoted field (the first item's, for a list), the rest of the line for an unclosed quote. The
# loops are unrolled (a run of plain characters, then an escape or a quoted span and the next
# run): an alternation tried at every character cost some 600 instructions a character.
_FIELD = re.compile(
    r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"(?:,"[^"\\]*+(?:\\.[^"\\]*+)*+")*'
    r'|"(.*)'
    r'|([^\s"]++(?:"[^"]*+"[^\s"]*+)*+)',
    re.DOTALL,
)
# In a text scrubbed as a whole, whatever touches it: what may be an IPv6 address (two colons or
# more, with an IPv4 tail (`_IPV4`) or a zone), checked by ipaddress; then every IPv4 address
# (`_DOTTED_RUN`).
# The same texts' IPv4 candidates: four numbers with dots between them, taken whole (not next to
# another digit), whatever stands around them (`ip:203.0.113.7`, `cafe203.0.113.7:80`).
_DOTTED_RUN = re.compile(r"(?<![0-9])[0-9]+(?:\.[0-9]+){3}(?![0-9])")
# The first three bytes of an IPv4 address cut short after them (`203.0.113.` at the end of a
# line or before a space or quote); not a version number (`7.38.0`), which no dot ends.
_CUT_IPV4 = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){2}\.(?![0-9.])")
# The groups of an IPv6 address that truncation keeps (/48): a cut address with more colons
# than that holds more of it.
_KEPT_GROUPS = 3
# The last group is taken whole (`::1:51341`): an address anonymised before the rest of a group
# would give back the address with that rest (`::` and `1`).
_IPV6_LIKE = re.compile(
    rf"(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{_IPV4.pattern}|[0-9A-Fa-f]+)?"
    r"(?:%[0-9A-Za-z_.-]+)?"
)


class QueryRedaction(StrEnum):
    """``REDACT_QUERY``: what is left of a URL's query string (and fragment)."""

    NONE = "none"
    VALUES = "values"
    """Parameter names kept, each non-empty value replaced by ``REDACTED``; a parameter without
    ``=`` is taken as a value."""
    ALL = "all"
    """The query string and the fragment removed, ``?`` and ``#`` included."""


class ClientAddress(StrEnum):
    """``CLIENT_IP``: what is left of the client's address."""

    KEEP = "keep"
    TRUNCATE = "truncate"
    """IPv4 to its /24 (last byte 0), IPv6 to its /48."""
    HASH = "hash"
    """A keyed HMAC-SHA256 of the address, written as a unique local IPv6 address (fd00::/8)."""


def parse_status_filter(items: Iterable[str]) -> frozenset[str]:
    """The status codes that ``DROP_STATUS`` items (``304``, ``2xx``) name, as the log writes them.

    Raises ValueError naming the first item that is neither a code nor a class.

    >>> sorted(parse_status_filter(["304", "2xx"]))[:2], len(parse_status_filter(["2XX"]))
    (['200', '201'], 100)
    """
    codes: set[str] = set()
    for item in items:
        text = item.strip().lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            codes.update(f"{text[0]}{n:02d}" for n in range(100))
        elif len(text) == 3 and text.isascii() and text.isdigit() and text[0] in "12345":
            codes.add(text)
        else:
            raise ValueError(item)
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class DropRules:
    """Lines to drop: a line that matches any filter is dropped. All empty: nothing is dropped.

    ``status`` holds codes as the log writes them (see ``parse_status_filter``); the status is
    the load balancer's (``elb_status_code``). Paths are compared without query or fragment.
    """

    user_agent_prefixes: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    status: frozenset[str] = frozenset()
    path_prefixes: tuple[str, ...] = ()
    path_suffixes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.user_agent_prefixes
            or self.methods
            or self.status
            or self.path_prefixes
            or self.path_suffixes
        )

    def matches(self, status: str, request: str, user_agent: str) -> bool:
        """Whether a line with these raw fields is dropped.

        >>> DropRules(methods=frozenset({"OPTIONS"})).matches("204", "OPTIONS /a HTTP/1.1", "-")
        True
        """
        if self.status and status in self.status:
            return True
        if self.user_agent_prefixes and user_agent.startswith(self.user_agent_prefixes):
            return True
        if self.methods and request.partition(" ")[0] in self.methods:
            return True
        if self.path_prefixes or self.path_suffixes:
            path = request_path(request)
            if path and (path.startswith(self.path_prefixes) or path.endswith(self.path_suffixes)):
                return True
        return False


def request_path(request: str) -> str:
    """The path of a logged request line (``METHOD URL VERSION``), without query or fragment.

    >>> request_path("GET https://example.com:443/static/a.css?v=2 HTTP/1.1")
    '/static/a.css'
    """
    url = request[_url_start(request) : _url_end(request)]
    end = _first_mark(url)
    if end >= 0:
        url = url[:end]
    if url[:1] == "/":
        return url
    scheme = url.find("://")
    slash = url.find("/", scheme + 3) if scheme >= 0 else -1
    return url[slash:] if slash >= 0 else ""


def _url_start(request: str) -> int:
    space = request.find(" ")
    return space + 1 if space >= 0 else 0


def _url_end(request: str) -> int:
    """Where the URL of a request line ends: before a version word (``HTTP/1.1``, ``-``), as
    the parser reads it, or at the end of the field."""
    end = len(request.rstrip(" "))
    space = request.rfind(" ", 0, end)
    if space > 0 and request.find(" ") < space:
        version = request[space + 1 : end]
        if version == "-" or version.upper().startswith("HTTP/"):
            return space
    return end


def _first_mark(text: str) -> int:
    """Index of the first ``?`` or ``#``, or -1."""
    query = text.find("?")
    fragment = text.find("#")
    if query < 0:
        return fragment
    if fragment < 0:
        return query
    return min(query, fragment)


@dataclass(frozen=True)
class PrivacyRules:
    """What to redact, anonymise and drop. The defaults change nothing.

    ``hash_key`` is the HMAC key for ``ClientAddress.HASH`` (at least ``MIN_HASH_KEY_BYTES``).
    """

    redact_query: QueryRedaction = QueryRedaction.NONE
    client_ip: ClientAddress = ClientAddress.KEEP
    hash_key: bytes | None = field(default=None, repr=False)
    drop: DropRules = field(default_factory=DropRules)

    def __post_init__(self) -> None:
        if self.client_ip is ClientAddress.HASH and (
            self.hash_key is None or len(self.hash_key) < MIN_HASH_KEY_BYTES
        ):
            raise ValueError(f"CLIENT_IP=hash needs a key of {MIN_HASH_KEY_BYTES} bytes or more")

    @property
    def changes_nothing(self) -> bool:
        return (
            self.redact_query is QueryRedaction.NONE
            and self.client_ip is ClientAddress.KEEP
            and not self.drop
        )

    def compile(self, detect_format: FormatDetector) -> LinePrivacy | None:
        """The per-line function, or None when the rules change nothing (the free default).

        ``detect_format`` is the parser's decision of a line's format (``formats.detect_format``):
        the rules read a line by the format the parser will read it as.
        """
        if self.changes_nothing:
            return None
        # One per rules, so the address memo outlives an object (and a warm invocation).
        compiled = self._compiled.get(detect_format)
        if compiled is None:
            compiled = self._compiled[detect_format] = LinePrivacy(self, detect_format)
        return compiled

    @cached_property
    def _compiled(self) -> dict[FormatDetector, LinePrivacy]:
        return {}


class LinePrivacy:
    """The rules applied to one line of text: ``apply`` returns the text to parse, or None."""

    __slots__ = (
        "_addresses",
        "_anonymises",
        "_detect_format",
        "_drop",
        "_hashes",
        "_mac",
        "_node_tails",
        "_redacts",
        "_redacts_query",
        "_removes_query",
        "_short_path",
        "_truncates",
        "_truncates_alone",
        "_unfiltered",
    )

    def __init__(self, rules: PrivacyRules, detect_format: FormatDetector) -> None:
        self._detect_format = detect_format
        # The settings as flags: an enum member read from its class costs a lookup through the
        # enum type's `__getattr__` hook (~100 ns), several a line on the hot path.
        self._redacts_query = rules.redact_query is not QueryRedaction.NONE
        self._removes_query = rules.redact_query is QueryRedaction.ALL
        self._anonymises = rules.client_ip is not ClientAddress.KEEP
        self._truncates = rules.client_ip is ClientAddress.TRUNCATE
        self._hashes = rules.client_ip is ClientAddress.HASH
        self._truncates_alone = self._truncates and not rules.drop
        # With `REDACT_QUERY` alone, only without drop filters (which may drop a line that the
        # short path would answer).
        self._short_path = self._anonymises or (self._redacts_query and not rules.drop)
        # The keyed HMAC, copied for each address: its key is read once, not on every call as
        # `hmac.digest` reads it (OpenSSL 3 then looks the digest up again each time: about
        # 21,000 instructions a call, against some 15,000 for a copy, its update and digest).
        self._mac = hmac.new(rules.hash_key or b"", digestmod=hashlib.sha256)
        self._drop = rules.drop if rules.drop else None
        self._redacts = self._redacts_query or self._anonymises
        self._addresses: dict[str, str] = {}
        # The text after the last quote of 2026's lines (the load balancer node's address, one of
        # a few per load balancer), scrubbed (`_node_tail`).
        self._node_tails: dict[str, str | None] = {}
        # With drop filters and a rule that rewrites, the same rules without the filters: their
        # short path rewrites the ALB lines that `build` then filters itself (`unfiltered`).
        self._unfiltered = (
            LinePrivacy(replace(rules, drop=DropRules()), detect_format)
            if self._redacts and rules.drop
            else None
        )

    @property
    def drops(self) -> bool:
        """Whether the rules have drop filters: their short path then takes no ALB line (but
        ``unfiltered``'s does), and a Classic line only when no filter matches it
        (``rewritten``)."""
        return self._drop is not None

    @property
    def classic_split(self) -> Callable[[str, list[str]], tuple[str, list[str]] | None] | None:
        """``classic_fields``, for the rules that rewrite every line's client and have no drop
        filter; None for others (``CLIENT_IP=keep`` answers most lines as they are; drop
        filters read Classic lines on their own paths)."""
        return self.classic_fields if self._anonymises and self._drop is None else None

    @property
    def redacts(self) -> bool:
        """Whether the rules rewrite lines (a query rule or a client rule): not with drop filters
        alone."""
        return self._redacts

    @property
    def unfiltered(self) -> LinePrivacy | None:
        """With drop filters and a rule that rewrites, the same rules without the filters, whose
        short path (``rewritten``) takes the ALB lines that these rules' short path leaves to the
        longer paths: the caller drops the lines it settles as ``apply`` drops them
        (``common_dropped``) and reads any other as read. None for other rules (with drop
        filters alone, the caller reads the lines as they are)."""
        return self._unfiltered

    def common_dropped(self, text: str, parts: list[str]) -> bool | None:
        """For a line of the common ALB layout, as read or as ``unfiltered``'s short path rewrote
        it (``parts = text.split('"')``; the caller reads the layout: 25 or 31 parts, the agent
        ``parts[3]``; ``alb_parts`` and ``formats.EventBuilder`` ask):
        False when no drop filter matches it (``apply`` keeps it); True when one does, as
        ``apply`` drops it if the parser reads its layout (the caller's check,
        ``alb.common_layout``, as for ``alb_parts``); None when one does but, with a query rule,
        a URL mark follows the request: ``apply`` decides. The rewrite changes none of the
        fields the filters read (the status, the method, the path, the agent).

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(client_ip=ClientAddress.TRUNCATE,
        ...                      drop=DropRules(methods=frozenset({"OPTIONS"})))
        >>> line = 'h2 t a 192.0.2.0:80 - 1 1 1 204 - 0 0 "OPTIONS /p HTTP/2.0" "curl" x'
        >>> rules.compile(detect_format).common_dropped(line, line.split('"'))
        True
        """
        drop = self._drop
        assert drop is not None  # with drop filters only
        if not drop.matches(_field(parts[0], 8) if drop.status else "", parts[1], parts[3]):
            return False
        if self._redacts_query and _url_marks(text, len(parts[0]) + len(parts[1]) + 2):
            return None
        return True

    @property
    def common_line(self) -> Callable[[str], str | None] | None:
        """The short path of these rules for the common line, or None when they have none: a
        function that answers the line as ``apply`` rewrites it, or None when the line is not one
        it reads (take ``apply``, or the parser's own split with ``alb_parts``).

        The short path is ``CLIENT_IP=truncate`` or ``hash``, with any ``REDACT_QUERY``; with drop
        filters, it takes the lines they cannot drop (NLB lines and connection logs, which have
        no request, status or user agent) and the Classic lines that none matches. With
        ``REDACT_QUERY`` alone (no drop filter), it answers a line without a URL mark as it is
        and a Classic, NLB or connection-log line of the common shape as ``apply`` rewrites it.
        """
        return self.rewritten if self._short_path else None

    @overload
    def rewritten(self, text: str) -> str | None: ...

    @overload
    def rewritten(self, text: str, otherwise: _T) -> str | _T: ...

    def rewritten(self, text: str, otherwise: object = None) -> object:
        """A line of the common layout of its format, with ``CLIENT_IP=truncate`` or ``hash``,
        rewritten as ``apply`` rewrites it, or ``otherwise`` (None) for any other line (and,
        with drop filters, for any ALB line and a Classic line that a filter matches: the
        longer paths decide whether to drop them). An ALB line's client must be an address:
        with truncation, IPv4 in this match, any other in ``_rewritten_alb``'s; with hashing,
        any in ``_rewritten_alb``'s.

        One match reads and rewrites the line as the parser will read it; with a query to redact,
        only the common request (``METHOD PATH?QUERY HTTP/x``, no `?` after it, no `#` or `@` in
        the line: no user information in the URL or the redirect).

        This match reads only the line's head and its request: the caller parses the answer as
        the common ALB line (``alb.parse_quoted_parts``), and hands back to ``apply`` any line the
        parser does not read so, or with a `.` or `:` after its last quote (an address in a later
        field, another line run into this one); a `?`, `#` or `@` there this match refuses.

        A Classic, NLB or connection-log line is answered as ``apply`` rewrites it, which needs no
        such check (``_rewritten_other``).

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(QueryRedaction.VALUES, ClientAddress.TRUNCATE)
        >>> line = rules.compile(detect_format)
        >>> line.rewritten('http t app/a 192.0.2.7:80 1 "GET /p?u=jo HTTP/1.1" "-" 2')
        'http t app/a 192.0.2.0:80 1 "GET /p?u=REDACTED HTTP/1.1" "-" 2'
        """
        if not self._anonymises and self._drop is None:
            # `REDACT_QUERY` alone, without drop filters (`_short_path`). A line without a `?`,
            # `#` or `@` holds nothing the rules redact, whatever its layout: `apply` leaves it
            # as it is (nor does scrubbing it whole change it). Of the others, an ALB line is
            # redacted in the parser's split (`alb_parts`) and a line with a fragment, user
            # information or an escape by the longer paths.
            if "\\" in text:
                # An escape, which the tokenizer reads on its slow path: the longer paths.
                return otherwise
            if "?" not in text and "#" not in text and "@" not in text:
                return text
            if text[:1] in _ALB_INITIALS or "#" in text or "@" in text:
                return otherwise
            return self._rewritten_other(text, otherwise)
        if self._drop is not None and text[:4] != "tls " and not text[:1].isdigit():
            # Drop filters: not an ALB line (the longer paths decide whether to drop it), the
            # first thing told. An NLB line (`tls `) or a connection log they cannot drop; a
            # Classic line (a timestamp first, as a connection log) is taken if none matches it.
            return otherwise
        if not self._truncates or self._drop is not None:
            # Hashing, or drop filters: straight to the patterns that read any client
            # (`_rewritten_other` hands an ALB line to `_rewritten_alb`), after the refusals that
            # truncation makes below: with a query rule, a line with a `#` or `@`, or with a `?`
            # and a backslash.
            if self._redacts_query and (
                "#" in text or "@" in text or ("\\" in text and "?" in text)
            ):
                return otherwise
            return self._rewritten_other(text, otherwise)
        if not self._redacts_query or ("?" not in text and "#" not in text and "@" not in text):
            found = _COMMON_CLIENT.match(text)
            if found is None:
                return self._rewritten_other(text, otherwise)
            if '"' in (network := found[1]):
                return otherwise
            return f"{network}0{found[2]}"
        if "#" in text or "\\" in text or "@" in text:
            # A fragment or an escape, which `_request` reads on its longer branch, or user
            # information, in the URL or another URL field (a redirect): the longer paths read
            # them (and a line with an `@` elsewhere, which is rare, costs them no more).
            return otherwise
        found = _COMMON_QUERY.match(text)
        if found is None:
            return self._rewritten_other(text, otherwise)
        network, port_to_request, path, query, version_on = found.groups()
        if '"' in path or '"' in query or "?" in version_on or '"' in network:
            # The request is not the first quoted field, or another URL field (a redirect) may
            # hold a query: the longer paths read them.
            return otherwise
        if self._removes_query:
            return f"{network}0{port_to_request}{path}{version_on}"
        return f"{network}0{port_to_request}{path}{_query_values(query)}{version_on}"

    def _rewritten_other(self, text: str, otherwise: object) -> object:
        """A Classic, NLB or connection-log line of the common shape (``_CLASSIC_LINE``,
        ``_NLB_LINE``, ``_CONNECTION_LINE``), exactly as ``apply`` rewrites it; ``otherwise``
        for any other line. An IPv4 client is truncated in the match, any other anonymised as
        ``_by_fields`` does it. (An ALB line that ``rewritten``'s match refused is
        ``_rewritten_alb``'s.)

        Unlike an ALB line's, the answer needs no check by the caller: the pattern reads every
        field, and a timestamp outside the line's own time fields (``_second_line_within``, which
        would have the longer path scrub the whole line) sends the line there.

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(QueryRedaction.VALUES, ClientAddress.TRUNCATE)
        >>> line = rules.compile(detect_format)
        >>> text = line.rewritten('2015-05-13T23:39:43.945958Z lb 192.0.2.7:2817 - -1 -1 -1 504 - '
        ...                       '0 0 "GET http://h:80/p?u=jo HTTP/1.1" "curl" - -')
        >>> text[28:]
        'lb 192.0.2.0:2817 - -1 -1 -1 504 - 0 0 "GET http://h:80/p?u=REDACTED HTTP/1.1" "curl" - -'
        """
        if text[:1] in _ALB_INITIALS:
            return self._rewritten_alb(text, otherwise)
        # A connection log is tried before Classic: no line matches both (a Classic line's third
        # field is its client and port, a connection log's the port alone), and a connection
        # log, which nothing else rewrites, fails Classic's pattern late (0.26 µs); a Classic
        # line comes here only with drop filters or the query rule alone, and fails this one
        # early (its second or third field).
        if (found := _CONNECTION_LINE.fullmatch(text)) is not None:
            head, network, client, rest, _, later, last = found.groups()
            start, stop = found.span(5)
            if text.startswith("NotBefore=", start) and text.find(";NotAfter=", start, stop) > 0:
                # A well-formed validity holds two timestamps of the line's own.
                after = stop
            else:
                after = min(start + 11, stop)
            if (
                _RUN_IN_TIME.search(text, min(11, text.find(" ")), start) is not None
                or _RUN_IN_TIME.search(text, after) is not None
            ):
                return otherwise
            # What `_by_fields` does to the fields after the documented ones: every address
            # anonymised (the load balancer's, last, truncated here), every URL redacted; the
            # others it leaves as they are.
            if "." in later or ":" in later or (self._redacts_query and _url_marks(later, 0)):
                later = " ".join(map(self._scrub_field, later.split(" ")))
            if not self._anonymises:
                # `REDACT_QUERY` alone: the client and the last address as they are.
                last_address = "" if last is None else f" {text[found.start(7) :]}"
                return f"{head}{text[found.end(1) : found.start(4)]}{rest}{later}{last_address}"
            if last is not None and self._truncates:
                later = f"{later} {last}0"
            elif last is not None:
                later = f"{later} {self._address(text[found.start(7) :])}"
            if network is None:
                return f"{head}{self._address(client)}{rest}{later}"
            if self._truncates:
                return f"{head}{network}0{rest}{later}"
            return f"{head}{self._address(text[found.start(2) : found.start(4)])}{rest}{later}"
        if (found := _CLASSIC_LINE.fullmatch(text)) is not None:
            if not _alone(found):
                return otherwise
            head, network, octet, port, client, port_to_request, request, rest = found.groups()
            if self._drop is not None and _classic_dropped(found, self._drop):
                # The longer path drops it (`rewritten`).
                return otherwise
            if self._redacts_query and _url_marks(request, 0):
                request = self._request(request)
            client = self._matched_client(network, octet, port, client)
            return f"{head}{client}{port_to_request}{request}{rest}"
        if (found := _NLB_LINE.fullmatch(text)) is not None:
            head, _, network, octet, port, client, rest, created = found.groups()
            start, stop = found.span(2)
            end = len(text) if created is None else found.start(8)
            if _RUN_IN_TIME.search(text, min(start + 11, stop), end) is not None or (
                created is not None and _RUN_IN_TIME.search(text, min(end + 11, len(text)))
            ):
                return otherwise
            return f"{head}{self._matched_client(network, octet, port, client)}{rest}"
        return otherwise

    def classic_fields(self, text: str, parts: list[str]) -> tuple[str, list[str]] | None:
        """A Classic line of the common shape (as ``_rewritten_other`` reads it: a line of 15
        fields or 12, one space between them, tokens of printable ASCII, no other line's time
        in it) redacted in the parser's own split ``parts = text.split('"')``: the line as
        ``apply`` rewrites it (``rewritten``'s answer, where that answers: this also takes a
        request with a fragment or user information) and its fields as the tokenizer reads that
        line (the parser takes them without splitting the line again); None for any other line
        (take ``rewritten``). For the rules of ``classic_split``, which have no drop filter.

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(QueryRedaction.VALUES, ClientAddress.TRUNCATE)
        >>> line = ('2015-05-13T23:39:43.945958Z lb 192.0.2.7:2817 - -1 -1 -1 504 - 0 0 '
        ...         '"GET http://h:80/p?u=jo HTTP/1.1"')
        >>> text, fields = rules.compile(detect_format).classic_fields(line, line.split('"'))
        >>> text[28:]
        'lb 192.0.2.0:2817 - -1 -1 -1 504 - 0 0 "GET http://h:80/p?u=REDACTED HTTP/1.1"'
        >>> fields[2], fields[11]
        ('192.0.2.0:2817', 'GET http://h:80/p?u=REDACTED HTTP/1.1')
        """
        count = len(parts)
        if count == 5:
            # ` "user agent" cipher protocol`
            if parts[2] != " " or _CLASSIC_TAIL.fullmatch(parts[4]) is None:
                return None
        elif count != 3 or parts[2]:
            return None
        found = _CLASSIC_HEAD.fullmatch(parts[0])
        if (
            found is None
            or "\\" in text
            or _RUN_IN_TIME.search(text, min(11, text.find(" "))) is not None
        ):
            # Not the common shape, or another line's time in it (`_alone`): the longer paths.
            return None
        start, network, octet, port, client, numbers = found.groups()
        client = self._matched_client(network, octet, port, client)
        request = parts[1]
        if self._redacts_query and ("?" in request or "#" in request or "@" in request):
            request = self._request(request)
        fields = start.split()
        fields.append(client)
        fields += numbers.split()
        fields.append(request)
        if count == 3:
            return f'{start}{client}{numbers}"{request}"', fields
        fields.append(parts[3])
        fields += parts[4].split()
        return f'{start}{client}{numbers}"{request}" "{parts[3]}"{parts[4]}', fields

    def _rewritten_alb(self, text: str, otherwise: object) -> object:
        """``rewritten`` for an ALB line whose client is an address but not IPv4 as that match
        reads it, or any address with hashing (``_ALB_ANY_CLIENT``, ``_ALB_ANY_CLIENT_QUERY``):
        the same answer, with the client anonymised by ``_client_port`` as the longer paths do
        it, for the caller to check in the same way. A client that is no address is left to the
        longer paths, which may scrub the whole line."""
        if not self._redacts_query or ("?" not in text and "#" not in text and "@" not in text):
            found = _ALB_ANY_CLIENT.match(text)
            if found is None or '"' in (head := found[1]):
                return otherwise
            client = self._client_port(found[2])
            if client.startswith(REDACTED):
                return otherwise
            return f"{head}{client}{found[3]}"
        # `rewritten` has refused a line with a `#`, `@` or backslash.
        found = _ALB_ANY_CLIENT_QUERY.match(text)
        if found is None:
            return otherwise
        head, client, port_to_request, path, query, version_on = found.groups()
        if '"' in path or '"' in query or "?" in version_on or '"' in head:
            return otherwise
        client = self._client_port(client)
        if client.startswith(REDACTED):
            return otherwise
        query = "" if self._removes_query else _query_values(query)
        return f"{head}{client}{port_to_request}{path}{query}{version_on}"

    def _matched_client(
        self, network: str | None, octet: str | None, port: str | None, client: str | None
    ) -> str:
        """The client that ``_CLIENT_PORT`` matched, anonymised: IPv4 (``network`` up to its
        last byte, ``octet`` that byte, ``port`` with its colon) truncated or hashed, any other
        (``client``) read as ``_by_fields`` reads it; as it is without a client rule."""
        if not self._anonymises:
            return f"{network}{octet}{port}" if client is None else client
        if network is None:
            assert client is not None  # the other alternative matched
            return self._client_port(client)
        if self._truncates:
            return f"{network}0{port}"
        return self._client_port(f"{network}{octet}{port}")

    def node_line(self, text: str, parts: list[str]) -> str | None:
        """An ALB line of 2026's layout that the short path rewrote (``parts = text.split('"')``,
        31 parts: 2025's layout, and after the last quote the load balancer node's address) and
        that the short path would settle but for what follows the last quote (the caller's
        check: ``formats.event._unsettled``, which reads the other fields): the line with the
        address scrubbed as ``apply`` scrubs it, and ``parts[30]`` edited to match; None when
        that is no address alone.

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(client_ip=ClientAddress.TRUNCATE).compile(detect_format)
        >>> line = 'h2 ' + ' "x"' * 15 + ' 10.0.1.23'
        >>> parts = line.split('"')
        >>> rules.node_line(line, parts)[-12:], parts[30]
        ('"x" 10.0.1.0', ' 10.0.1.0')
        """
        if len(parts) != _TRANSFORMED_PARTS or text[:1] not in _ALB_INITIALS:
            return None
        tail = parts[30]
        node = self._node_tail(tail)
        if node is None:
            return None
        if node == tail:
            return text
        parts[30] = node
        return text[: len(text) - len(tail)] + node

    def _node_tail(self, tail: str) -> str | None:
        """``tail``, the text after the last quote of an ALB line of 2025's layout, scrubbed as
        the path that reads every field scrubs a field after the documented ones, when it is
        2026's load balancer node address (``_node_address``); None for any other text."""
        found = self._node_tails.get(tail, tail)
        if found is not tail:
            return found
        scrubbed = f" {self._scrub_field(tail[1:])}" if _node_address(tail) else None
        if len(self._node_tails) >= _MEMO_LIMIT:
            self._node_tails.clear()
        self._node_tails[tail] = scrubbed
        return scrubbed

    def redact(self, text: str) -> str:
        """A line that failed to parse (or that no parser reads: too long, not UTF-8), or the
        reason given for it, scrubbed as a whole; drop filters do not apply.

        The rewrite by field number assumed the layout of a format the line does not have, so
        nothing says which value is the client's or where a URL ends: every address goes, and
        everything from the first ``?`` or ``#`` to the end.

        >>> from elb_log_shipper.formats import detect_format
        >>> rules = PrivacyRules(QueryRedaction.VALUES, ClientAddress.TRUNCATE)
        >>> rules.compile(detect_format).redact('x ip:192.0.2.7 "GET /p?u=jo x" "-" 1.2.3.4')
        'x ip:192.0.2.0 "GET /p?u=REDACTED'
        """
        return self._scrub(text)

    def alb_parts(self, text: str, parts: list[str]) -> str | bool | None:
        """Redact an ALB line of the common layout in ``parts = text.split('"')`` (25 parts: the
        request is ``parts[1]``, the user agent ``parts[3]``, the redirect URL ``parts[13]``, after
        the last quote nothing that the rules would rewrite; or 31, 2025's layout, whose fields
        after the 12th quoted one hold nothing the rules would rewrite either, but for 2026's load
        balancer node address after the last quote, scrubbed as ``apply`` scrubs it), in place,
        and return the line they make; False when a drop filter matches it (drop filters alone);
        with rules that redact, None when one does: drop it if the parser reads its layout
        (``alb.common_layout``), else take ``apply``; True when the line is not one this can
        read (take ``apply``).

        The caller must use the edited parts only if the parser accepts the same layout
        (``alb.parse_quoted_parts``), which makes ``parts[13]`` the redirect URL.
        """
        head = parts[0]
        # What follows the 12th quoted field: the later fields, which the longer paths scrub.
        node = None
        if len(parts) == _ALB_PARTS:
            tail = parts[24]
        elif ("." in (last := parts[30]) or ":" in last) and (
            node := self._node_tail(last)
        ) is not None:
            # 2026's layout: the load balancer node's address after the last quote.
            tail = '"'.join(parts[24:30])
        else:
            tail = '"'.join(parts[24:])
        if (
            parts[2] != " "
            # Another line's head (its time, its client) in the last quoted field: a line cut
            # just after that field's opening quote, another cut after its first quote run in.
            or ":" in parts[23]
            # An address or a `:` in a later field, or more than one field after the last quote:
            # `apply` reads every field of such a line (`_documented_alb`), and may scrub it
            # whole (a line run in).
            or "." in tail
            or ":" in tail
            or len(parts[-1].split()) > 1
            or (self._redacts_query and ("?" in tail or "#" in tail or "@" in tail))
        ):
            return True
        request = parts[1]
        found = _ALB_IPV4_CLIENT.match(head) if self._truncates_alone else None
        if found is not None:
            # The common case, in one match (in a busy log nearly every client is a new one, so
            # no memo): the first four fields, as the parser splits them, and an IPv4 client.
            anonymised = f"{found[1]}0{head[found.start(2) :]}"
        else:
            # 12 fields, each followed by one space: the client is the fourth, the status the
            # ninth.
            tokens = head.split(" ", 4)
            if head.count(" ") != 12 or len(tokens) != 5 or tokens[0] not in _ALB_TYPES:
                # Not the common layout, or not an ALB line (which the parser then fails: a drop
                # filter must not drop it unread).
                return True
            dropped = False if self._drop is None else self.common_dropped(text, parts)
            if dropped is not False:
                # Dropped, as `apply` drops it, with drop filters alone. With rules that redact,
                # `apply` reads a line whose layout is off further on (a field split in two, a
                # tab) whole, and may keep it, scrubbed, since nothing says which field is the
                # agent or the status: dropped if the parser reads the layout (the caller's
                # check; `apply` then takes it as documented) and, with a query rule, no URL mark
                # follows the request (`common_dropped`); else `apply` decides.
                if not self._redacts:
                    return False
                return True if dropped is None else None
            if not self._redacts:
                return text
            anonymised = head
            client = tokens[3]
            if self._anonymises and head.split(None, 4)[:4] != tokens[:4]:
                # Other whitespace (a tab) in a field: the parser's client is elsewhere (the
                # fourth token here may be the target, `-`, the client run into the name).
                return True
            if self._anonymises and client != "-":
                network = _IPV4_PORT.fullmatch(client)
                if self._truncates and network is not None:
                    tokens[3] = f"{network[1]}0{network[2]}"
                else:
                    tokens[3] = self._client_port(client)
                anonymised = " ".join(tokens)
        redacted = request
        if self._redacts_query:
            if "?" in request or "#" in request or "@" in request:
                redacted = self._request(request)
            rest = text[len(head) + len(request) + 2 :]  # from the user agent on
            if ("?" in rest or "#" in rest or "@" in rest) and any(
                "?" in parts[index] or "#" in parts[index] or "@" in parts[index]
                for index in _ALB_OTHER_PARTS
            ):
                # A query or user information in a field other than the URLs (a trace id, a
                # domain, an error reason): the longer path takes it as a URL, failing closed.
                return True
            redirect = parts[13]
            if redirect != "-" and ("?" in redirect or "#" in redirect or "@" in redirect):
                # Rare: a redirect URL with a query, a fragment or user information. `apply`
                # reads every field of such a line (it may be a URL split by a raw quote,
                # `_url_split`, or a line run in, which it scrubs whole).
                return True
        if node is not None and node != parts[30]:
            # The node's address scrubbed, at the end of the line.
            text = text[: len(text) - len(parts[30])] + node
            parts[30] = node
        if anonymised is head and redacted is request:
            return text
        # The line rebuilt around the two edits: fewer steps than joining its 25 parts.
        parts[0] = anonymised
        parts[1] = redacted
        return f'{anonymised}"{redacted}{text[len(head) + len(request) + 1 :]}'

    def apply(self, text: str, *, drops: bool = True) -> str | None:
        """The line with its values redacted, or None when a drop filter matches it.

        Returns ``text`` itself when nothing changes. Thread-safe (the memo of addresses is a
        dict that threads may fill at once).
        """
        drop = self._drop if drops else None
        if not self._redacts:
            if drop is None:
                return text
            # Drop filters alone: an ALB line's request is its first quoted field, its status
            # the ninth field before it (split at any whitespace, as the parser splits it).
            space = text.find(" ")
            opened = text.find('"') + 1
            closed = text.find('"', opened)
            if (
                text[:space] in _ALB_TYPES
                and closed > opened > space
                and text.find("\\", opened, closed) < 0
            ):
                status = _field(text[: opened - 1], 8) if drop.status else ""
                request = text[opened:closed]
                agent = _quoted_after(text, closed + 1) if drop.user_agent_prefixes else ""
                return None if drop.matches(status, request, agent) else text
            if text[:4] == "tls ":
                # NLB (`formats.detect_format`): no request, status or user agent for a drop
                # filter to match, so kept, as `_by_fields` would keep it, without reading every
                # field. (A slice and a compare: `startswith` costs about 1,000 instructions,
                # its arguments parsed the old way.)
                return text
            if (found := _CLASSIC_LINE.fullmatch(text)) is not None and _alone(found):
                # As the short path (`_rewritten_other`) reads it.
                return None if _classic_dropped(found, drop) else text
            return self._by_fields(text, drop)
        # The common ALB line: one match finds its client and its request. When another URL
        # field may hold a query or user information (a `?`, `#` or `@` after the request), or
        # the fields after the request may not be the documented ones, the general path reads
        # every field.
        head = _ALB_HEAD.match(text)
        if (
            head is not None
            and (not self._redacts_query or not _url_marks(text, head.end()))
            and _documented_alb(text, self._anonymises)
        ):
            return self._alb(text, head, drop)
        return self._by_fields(text, drop)

    def _alb(self, text: str, head: re.Match[str], drop: DropRules | None) -> str | None:
        """An ALB line of a documented layout (``_documented_alb``) whose request, if any URL,
        holds a query; in 2026's layout, the load balancer node's address after the last quote
        is scrubbed as the path that reads every field scrubs a later field."""
        network, port, request = head.group("network", "port", "request")
        if drop is not None and drop.matches(
            # The status is the fifth field after the client.
            _field(text[head.end("client") : head.start("request") - 1], 4) if drop.status else "",
            request,
            _quoted_after(text, head.end()) if drop.user_agent_prefixes else "",
        ):
            return None
        start, end = head.span("client")
        client = None
        if self._truncates and network is not None:
            # The common case, and in a busy log nearly every client a new one: no memo.
            client = f"{network}0{port}"
        elif self._anonymises and text[start:end] != "-":
            client = self._client_port(text[start:end])
        tail = node = ""
        if self._anonymises:
            last = text.rfind('"') + 1
            if text.find(".", last) >= 0 or text.find(":", last) >= 0:
                # 2026's layout: an address alone after the last quote (`_documented_alb`).
                tail = text[last:]
                if (scrubbed := self._node_tail(tail)) is None:
                    return self._by_fields(text, drop)
                node = scrubbed
        if self._redacts_query and _url_marks(request, 0):
            request = self._request(request)
        elif client is None and node == tail:
            return text
        opened, closed = head.span("request")
        client = client or text[start:end]
        line = f"{text[:start]}{client}{text[end:opened]}{request}{text[closed:]}"
        return line[: len(line) - len(tail)] + node if node != tail else line

    def _by_fields(self, text: str, drop: DropRules | None) -> str | None:
        spans = _field_spans(text)
        values = [text[start:end] for start, end in spans]
        count = len(values)
        layout = _LAYOUTS.get(self._detect_format(values))
        if not self._redacts and (layout is None or layout.request < 0):
            # Drop filters alone, and a line without the request, status and user agent that
            # they read (a connection log, no known format): kept as it is, as below.
            return text
        if (
            layout is None
            or (layout.fixed and count > layout.documented)
            or 0 <= layout.shorter < count < layout.documented
            or ('","' in text and _list_outside(text, spans, layout))
            or _request_unquoted(text, spans, layout)
            or _second_line_within(text, spans, layout)
            or (self._redacts_query and layout is _ALB_LAYOUT and _url_split(text, spans, values))
        ):
            # No format the parser knows, a field split in two, a field lost or added before
            # the request, or another line run into this one before its last documented field:
            # nothing says which value is the client's, nor where the request ends.
            return self._scrub(text)

        def value(index: int) -> str:
            return values[index] if 0 <= index < count else "-"

        if drop is not None and layout.request >= 0:
            request = value(layout.request)
            if drop.matches(value(layout.status), request, value(layout.agent)):
                return None
        edits: list[tuple[int, str]] = []
        if self._anonymises and (address := value(layout.client)) != "-":
            anonymised = (
                self._address(address) if layout.bare_client else self._client_port(address)
            )
            edits.append((layout.client, anonymised))
        if self._redacts_query and layout.request >= 0:
            # The redirect URL (23) of ALB lines, and, failing closed for a line of an unusual
            # layout, any later documented field with a `?`, `#` or `@`: only the user agent is
            # never taken as a URL.
            for index in range(layout.request, min(count, layout.documented)):
                url = values[index]
                if index != layout.agent and _url_marks(url, 0):
                    redacted = self._request(url) if index == layout.request else self._url(url)
                    edits.append((index, redacted))
        # The fields after the documented ones (the parser's later and extra fields: the
        # transformed URI, an appended field, a second line run into this one): every address
        # and every URL's query in them.
        if (
            self._redacts_query
            and layout is _ALB_LAYOUT
            and any(
                text[spans[index][0] - 1] != '"' and _url_marks(values[index], 0)
                for index in range(layout.documented, count)
            )
        ):
            # ALB's later fields are quoted (2025's transform fields) or an address (2026's
            # node): an unquoted one with a URL mark is another line run in after a quote left
            # open (the line cut inside a later quoted field), whose request is now unquoted
            # tokens, a query with a space split among them. Its query runs on to the end of the
            # line: scrubbed whole.
            return self._scrub(text)
        for index in range(layout.documented, count):
            scrubbed = self._scrub_field(values[index])
            if scrubbed != values[index]:
                edits.append((index, scrubbed))
        if not edits:
            return text
        pieces: list[str] = []
        position = 0
        for index, replacement in sorted(edits):
            start, end = spans[index]
            pieces += (text[position:start], replacement)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def _scrub(self, text: str) -> str:
        """A text of no known layout: every address anonymised, everything from the first ``?``
        or ``#`` taken as a query (a URL may hold spaces and escaped quotes, and a raw quote
        may have split it), every URL's user information redacted."""
        if self._redacts_query:
            if "@" in text:
                text = self._userinfo(text)
            mark = _first_mark(text)
            if mark >= 0:
                text = text[:mark] + self._scrubbed_tail(text[mark:])
        if self._anonymises:
            text = self._anonymise_all(text)
        return text

    def _scrubbed_tail(self, tail: str) -> str:
        """The rest of a scrubbed text from its first ``?`` or ``#``, as the setting leaves a
        query: with ``values``, a name is kept only if it has no space or quote (the value
        before it ran on into other fields, and what ends in a later ``=`` is no name)."""
        if self._removes_query:
            return ""
        return _SCRUBBED_PARAMETER.sub(_scrubbed_parameter, tail)

    def _scrub_field(self, value: str) -> str:
        """One field of a line after the fields its format documents: every URL's query and
        user information, and every address."""
        if self._redacts_query and _url_marks(value, 0):
            value = self._url(value)
        if self._anonymises and ("." in value or ":" in value):
            value = self._anonymise_all(value)
        return value

    # --- query strings --------------------------------------------------------------------------

    def _request(self, request: str) -> str:
        """A request line (``METHOD URL VERSION``) with its URL's query and user information
        redacted."""
        end = request.rfind(" ")
        query = request.find("?")
        if (
            0 < query < end
            and request.startswith("HTTP/", end + 1)
            and request.find("?", end) < 0
            and "#" not in request
            and "\\" not in request
            and "@" not in request
        ):
            # The common request, `GET /path?query HTTP/1.1`, in fewer steps.
            if self._removes_query:
                return request[:query] + request[end:]
            return request[:query] + _query_values(request[query:end]) + request[end:]
        if "@" in request:
            request = self._userinfo(request)
        mark = _first_mark(request)
        if mark < 0:
            return request
        end = _url_end(request)
        if end <= mark:
            # The mark is not in the URL (a version word such as `HTTP/1.1?`): redact to the end.
            end = len(request)
        rest = request[end:]
        if (later := _first_mark(rest)) >= 0:
            # A mark in the version word too (`HTTP/1.1?t=...`, which the parser reads as the
            # version): redacted to the end, as when the URL has none.
            rest = _closed(rest[:later] + self._tail(rest[later:]))
        return _closed(request[:mark] + self._tail(request[mark:end])) + rest

    def _url(self, url: str) -> str:
        """A URL field (redirect, transformed URI) with its query and user information
        redacted."""
        if "@" in url:
            url = self._userinfo(url)
        mark = _first_mark(url)
        if mark < 0:
            return url
        return _closed(url[:mark] + self._tail(url[mark:]))

    def _userinfo(self, text: str) -> str:
        """``text`` with the user information of each URL in it (``user:password@``) replaced
        by ``REDACTED@`` (``values``) or removed (``all``)."""
        return _USERINFO.sub("" if self._removes_query else f"{REDACTED}@", text)

    def _tail(self, tail: str) -> str:
        """``?query#fragment`` (or ``#fragment``) as the setting leaves it."""
        if self._removes_query:
            return ""
        redacted = _PARAMETER_VALUE.sub(_REDACTED_VALUE, tail)
        # Each parameter with a value now holds one `=`; fewer `=` than parameters means some
        # have none (the costlier pass, rarely needed).
        parameters = tail.count("&") + tail.count(";") + tail.count("#") + (tail[0] == "?")
        if redacted.count("=") < parameters:
            redacted = _BARE_PARAMETER.sub(REDACTED, redacted)
        return redacted

    # --- client addresses -----------------------------------------------------------------------

    def _client_port(self, token: str) -> str:
        """``ip:port`` (IPv6 unbracketed: split at the last colon) with the address anonymised;
        a token that is no address becomes ``REDACTED``."""
        address, colon, port = token.rpartition(":")
        if not colon or not port.isdigit():
            return REDACTED
        if address[:1] == "[" and address[-1:] == "]":
            # `[2001:db8::1]:443`, which the parser reads too (its brackets removed).
            return f"[{self._address(address[1:-1])}]:{port}"
        return f"{self._address(address)}:{port}"

    def _address(self, address: str) -> str:
        found = self._addresses.get(address)
        if found is None:
            found = self._anonymise(address)
            if found is None:
                return REDACTED
            if len(self._addresses) >= _MEMO_LIMIT:
                self._addresses.clear()
            self._addresses[address] = found
        return found

    def _anonymise_all(self, text: str) -> str:
        """``text`` with every IP address in it anonymised, whatever stands next to it."""
        if ":" in text:
            pieces: list[str] = []
            position = 0
            search = 0
            while (found := _IPV6_LIKE.search(text, search)) is not None:
                within = _ipv6_within(found.group())
                if within is None:
                    if _damaged_ipv6(found.group()) or found.group().count(":") > _KEPT_GROUPS:
                        # An address run into more hex digits (`...:eeee:12342023-...`, a line
                        # cut after its client), or cut short with more groups than truncation
                        # keeps (`2001:db8:abcd:12:34:`): replaced whole, as a damaged IPv4 run
                        # is. (A time, `23:39:01`, has two colons.)
                        pieces += (text[position : found.start()], REDACTED)
                        position = search = found.end()
                        continue
                    # Not an address as matched: one may start inside it.
                    search = found.start() + 1
                    continue
                start, end = found.start() + within[0], found.start() + within[1]
                pieces += (text[position:start], self._address(text[start:end]))
                position = search = end
            pieces.append(text[position:])
            text = "".join(pieces)
        text = _DOTTED_RUN.sub(self._dotted, text)
        if self._hashes and "." in text:
            # Hashing keeps no byte of an address: nor the three of one cut short (`203.0.113.`),
            # which truncation would keep anyway.
            text = _CUT_IPV4.sub(REDACTED, text)
        return text

    def _dotted(self, match: re.Match[str]) -> str:
        """A run of four dot-separated numbers (``_DOTTED_RUN``) anonymised if it is an IPv4
        address, else replaced whole: a damaged address (a leading zero, a byte past 255) or one
        run into other digits. Matching octets inside it would leave the rest of a damaged
        address as it was (``203.0.113.099`` read as ``203.0.113.0`` then ``99``)."""
        run = match.group()
        return self._address(run) if _IPV4.fullmatch(run) else REDACTED

    def _digest(self, packed: bytes) -> bytes:
        """The HMAC-SHA256 of the address ``packed`` with the rules' key."""
        mac = self._mac.copy()
        mac.update(packed)
        return mac.digest()

    def _anonymise(self, address: str) -> str | None:
        if self._truncates:
            if _IPV4.fullmatch(address):
                return address[: address.rfind(".")] + ".0"
            if (network := _ipv6_network(address)) is not None:
                return network
        elif self._hashes and (packed := _packed(address)) is not None:
            digest = self._digest(packed)
            return _pseudonym(_PSEUDO_PREFIX + digest[:_PSEUDO_DIGEST_BYTES])
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if self._hashes:
            # An IPv4 address written as IPv4-mapped IPv6 (`::ffff:203.0.113.7`) is the same
            # client: the pseudonym of its IPv4 address.
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            digest = self._digest((mapped or ip).packed)
            return str(ipaddress.IPv6Address(_PSEUDO_PREFIX + digest[:_PSEUDO_DIGEST_BYTES]))
        if ip.version == 4:
            return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFF00))
        if int(ip) >> 112 == _SIX_TO_FOUR:
            return str(ipaddress.IPv6Address(int(ip) & _SIX_TO_FOUR_KEEP_MASK))
        return str(ipaddress.IPv6Address(int(ip) & _IPV6_KEEP_MASK))


@dataclass(frozen=True, slots=True)
class _Layout:
    """Field numbers of the values the rules touch in one log format (-1: none)."""

    client: int
    bare_client: bool
    """The client field is an address alone (connection logs), not ``address:port``."""
    documented: int
    """Fields whose meaning the rules rely on; those after them are scrubbed."""
    fixed: bool = False
    """The format never grows: a line with more fields than ``documented`` has one split."""
    shorter: int = -1
    """The field count of the format's older lines (Classic's before 2015, 12): a line with more
    fields than that and fewer than ``documented`` has one split (a raw quote in its request),
    so the field the layout calls the user agent is part of the request."""
    lists: range = range(0)
    """The fields that may be quoted lists (``"h2","http/1.1"``, one field to the parser)."""
    status: int = -1
    request: int = -1
    agent: int = -1
    times: tuple[int, ...] = ()
    """The fields that hold the line's own timestamps, in order: each starts with one, but the
    validity, which holds two."""
    validity: int = -1
    """The field that holds a certificate's validity (``NotBefore=...;NotAfter=...``)."""
    serial: int = -1
    """The field that holds a certificate's serial number: hex digits (or ``-``)."""
    texts: frozenset[int] = frozenset()
    """Free-text fields (URLs, user agents, certificate subjects), where a timestamp after a
    ``=`` or ``/`` is part of a value."""
    quoted: frozenset[int] = frozenset()
    """The fields that the format always writes quoted."""
    unquoted: frozenset[int] = frozenset()
    """The fields that the format never writes quoted."""


# By the parser's name of the format (`formats.detect_format`). Classic's 15 fields have not
# changed since 2015; AWS appends fields to the others (reference section 1).
_LAYOUTS: dict[str | None, _Layout] = {
    "alb": _Layout(
        client=3,
        bare_client=False,
        documented=29,
        status=8,
        request=12,
        agent=13,
        times=(1, 21),
        texts=frozenset({12, 13, 23}),
        quoted=frozenset({17, 19, 22, 23, 24, 27, 28}),
        # The TLS cipher and protocol, the target group, the rule's priority, the request's
        # creation time. (Not the connection's trace id: a line of before 2023 has later fields
        # of its own there, which may be quoted.)
        unquoted=frozenset({14, 15, 16, 20, 21}),
    ),
    "classic": _Layout(
        client=2,
        bare_client=False,
        documented=15,
        fixed=True,
        shorter=12,
        status=7,
        request=11,
        agent=12,
        times=(0,),
        texts=frozenset({11, 12}),
        # The user agent: unquoted, the request split at a raw quote, and a quote later (an
        # unclosed one) made the count up again.
        quoted=frozenset({12}),
        unquoted=frozenset({13, 14}),
    ),
    "nlb": _Layout(
        client=5,
        bare_client=False,
        documented=22,
        times=(2, 21),
        # The ALPN protocols, front and back end, and the client's preference list.
        lists=range(18, 21),
    ),
    "connection": _Layout(
        client=1,
        bare_client=True,
        documented=11,
        times=(0, 8),
        validity=8,
        serial=9,
        texts=frozenset({7}),
    ),
}
# ALB's, for the checks of its own (`_url_split`).
_ALB_LAYOUT = _LAYOUTS["alb"]
# A timestamp as the formats write one (`2026-11-28T23:39:01.186641Z`, NLB's without fraction or
# zone), found from its `T` (a literal the regex engine skips to). Another line run into this
# one brings its own, in its first three fields, before its client.
_RUN_IN_TIME = re.compile(r"T(?<=[0-9]{4}-[0-9]{2}-[0-9]{2}T)[0-9]{2}:[0-9]{2}:[0-9]{2}")
# A serial number's characters (`FEF257372D5C14D4`), and `-` for none.
_HEX = "0123456789ABCDEFabcdef-"
# No field's span (`_time_within`).
_NO_SPAN = (-1, -1)
# A token as `str.split()` reads one.
_TOKEN = re.compile(r"\S+")
# The longest token ``_is_address`` needs to read: a bracketed IPv6 address (45 characters with
# an IPv4 tail) with a zone and a port, with room to spare.
_LONGEST_ADDRESS_TOKEN = 128
# The parts of an ALB line's `text.split('"')` (25 parts) after its user agent, but the redirect
# URL's (13): the fields that `_by_fields` takes as a URL when they hold a `?`, `#` or `@`.
_ALB_OTHER_PARTS = tuple(index for index in range(4, 24) if index != 13)
# Quotes in an ALB line of a documented layout: 12 quoted fields, or 15 with 2025's transforms.
_DOCUMENTED_ALB_QUOTES = frozenset({24, 30})
_TRANSFORMED_QUOTES = 30
_TRANSFORMED_PARTS = _TRANSFORMED_QUOTES + 1
_ALB_PARTS = 25
# How many fields each unquoted part of such a line holds (`text.split('"')`, its even parts up to
# the last quote): the head's 12; none between two quoted fields; the TLS cipher and protocol and
# the target group; the rule's priority and the request's creation time; with the transforms,
# the connection's trace id (`TID_...`) before them.
_ALB_UNQUOTED_FIELDS = {
    24: (12, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 0),
    30: (12, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0),
}
# In a scrubbed text's query, one parameter: a name (no space or quote), its `=` and its value;
# or anything else up to the next `&` or `#`.
_SCRUBBED_PARAMETER = re.compile(r'(?<=[?&#;])(?:([^=&#;\s"]+=)([^&#;]*)|[^&#;]+)')
# A URL's user information, up to the last `@` of its authority, as the parser reads it: any
# character but `/`, `?`, `#` before it, spaces and backslashes too (`jo:pa ss@`, `jo:pw\@`),
# and an escaped quote (`\"`, which the parser reads as a quote in the name); a raw quote bounds
# it to its field.
_USERINFO = re.compile(r'(?<=://)(?:[^/?#"]|(?<=\\)")*@')


def _alone(found: re.Match[str]) -> bool:
    """Whether the Classic line that ``_CLASSIC_LINE`` read as ``found`` holds no other line's
    time (which would have the path that reads every field scrub it whole): the search starts
    after the `T` of the line's own timestamp, as ``_second_line_within`` does."""
    text = found.string
    return _RUN_IN_TIME.search(text, min(11, text.find(" "))) is None


def _classic_dropped(found: re.Match[str], drop: DropRules) -> bool:
    """Whether ``drop`` matches the Classic line that ``_CLASSIC_LINE`` read as ``found``: its
    status (the fifth field after the client), request and user agent (none, `-`, in a line of
    12 fields), as ``_by_fields`` reads them."""
    rest = found[8]
    agent = rest[3 : rest.find('"', 3)] if len(rest) > 1 else "-"
    return drop.matches(found[6].split(" ")[5], found[7], agent)


def _documented_alb(text: str, anonymises: bool) -> bool:
    """Whether an ALB line has the fields of a documented layout between its quoted ones, and at
    most one after the last, without an address or a timestamp (a trace id, or nothing), but for
    2026's layout (2025's and the load balancer node's address after it, ``_node_address``, which
    the rules scrub as a later field): the fields after its request are the documented ones, not
    a second line run into it (whose quotes may make up the count, and whose fields would stand
    where the layout has none). A second line run in brings its own quotes, so a line of 30 of
    them and an address alone after the last is no line run in: the first line would have to be
    cut before its request, its head then holding the other's fields too.

    With ``anonymises``, also that 2025's transformed host, URI and transform status (fields
    the rules take as later ones, with every address anonymised) hold no ``.`` or ``:``: an
    address there is the longer path's."""
    parts = text.split('"')
    quotes = len(parts) - 1
    if quotes not in _DOCUMENTED_ALB_QUOTES:
        return False
    tail = parts[quotes]
    if len(tail.split()) > 1 or (
        ("." in tail or ":" in tail) and (quotes != _TRANSFORMED_QUOTES or not _node_address(tail))
    ):
        return False
    if quotes == 30 and (
        "." in (trace := parts[24])
        or ":" in trace
        or (anonymises and any("." in parts[i] or ":" in parts[i] for i in (25, 27, 29)))
    ):
        return False
    if ":" in parts[quotes - 1]:
        # The last quoted field (a classification reason, a transform status) holds another
        # line's head: the first cut just after its opening quote, the second after its first.
        return False
    return list(map(len, map(str.split, parts[0:quotes:2]))) == list(_ALB_UNQUOTED_FIELDS[quotes])


@lru_cache(maxsize=64)
def _node_address(tail: str) -> bool:
    """Whether ``tail``, the text after the last quote of an ALB line of 2025's layout, is one
    address after one space: the 34th field of 2026's lines, the address of the load balancer
    node that handled the request (``10.0.1.23``; one of a few per load balancer, hence the
    memo). AWS has not documented it; the shipper keeps it in ``aws.elb.extra_fields``."""
    token = tail[1:]
    return tail[:1] == " " and token.split() == [token] and _is_address(token)


def _url_split(text: str, spans: list[tuple[int, int]], values: list[str]) -> bool:
    """Whether a raw ``" "`` seems to have split a URL field of an ALB line that holds a query,
    moving the query's rest into the next quoted field, which the rules do not take as a URL:
    after a redirect URL with a query, any error reason (a redirect the load balancer made has
    none); after a transformed URI with a query, a transform status that is no code, or a quoted
    field after the status (the status moved on by one). ALB writes a quote in a value as
    ``\\x22``, so only a forged line has one."""
    count = len(values)
    if count > 24 and values[24] != "-" and _first_mark(values[23]) >= 0:
        return True
    if count <= 32 or _first_mark(values[31]) < 0:
        return False
    if not _CODE.fullmatch(values[32]):
        return True
    return count > 33 and text[spans[33][0] - 1] == '"'


# A status or reason code as ALB writes one (`TransformSuccessful`, `AuthInvalidCookie`), or `-`.
_CODE = re.compile(r"[A-Za-z0-9_-]+")


def _list_outside(text: str, spans: list[tuple[int, int]], layout: _Layout) -> bool:
    """Whether a quoted list (``"a","b"``) stands where the format writes none: the rules read
    a list's first item (its span), and the parser may take all of it as the field's value (a
    request, a redirect URL, a later field), query and addresses included."""
    lists = layout.lists
    if not lists:
        # Any list: the caller found a `","`, which is rare here (an escaped one in a value).
        return any(text.startswith('","', end) for _, end in spans)
    # Lists only in their fields: no `","` before the first, nor from the field after the last.
    count = len(spans)
    if lists.start >= count:
        return True
    return text.find('","', 0, spans[lists.start][0]) >= 0 or (
        lists.stop < count and text.find('","', spans[lists.stop][0]) >= 0
    )


def _request_unquoted(text: str, spans: list[tuple[int, int]], layout: _Layout) -> bool:
    """Whether the line has a field where its format has the quoted request, and that field is
    not quoted: a field was added before it (or lost, with another), and the parser reads the
    request as the next field, the user agent, which the rules never take as a URL."""
    index = layout.request
    if not 0 <= index < len(spans):
        return False
    start = spans[index][0]
    return text[start - 1 : start] != '"'


def _field_spans(text: str) -> list[tuple[int, int]]:
    """The span of each field's value, as ``_FIELD`` reads them: inside the quotes for a quoted
    field (the first item's, for a list). A line without a backslash whose quotes all pair and
    open fields is read with ``str.split`` and ``str.find`` (C scans); any other, by ``_FIELD``."""
    if "\\" not in text:
        parts = text.split('"')
        if len(parts) & 1 and (spans := _split_spans(text, parts)) is not None:
            return spans
    return [match.span(match.lastindex or 0) for match in _FIELD.finditer(text)]


def _split_spans(text: str, parts: list[str]) -> list[tuple[int, int]] | None:
    """``_field_spans`` from ``parts = text.split('"')`` (an odd count): even parts are unquoted
    text, odd parts quoted values. None where a quote is inside an unquoted token (no whitespace
    before it), which ``_FIELD`` reads with the token."""
    spans: list[tuple[int, int]] = []
    start = 0  # where parts[index] starts in the text
    last = len(parts) - 1
    for index in range(0, last, 2):
        unquoted = parts[index]
        if unquoted == "," and index:
            # `"a","b"`: a list, one field (its span is the first item's, already taken).
            start += len(unquoted) + len(parts[index + 1]) + 2
            continue
        if unquoted:
            if not unquoted[-1].isspace():
                return None
            _add_token_spans(text, unquoted, start, spans)
        quoted = start + len(unquoted) + 1
        spans.append((quoted, quoted + len(parts[index + 1])))
        start = quoted + len(parts[index + 1]) + 1
    _add_token_spans(text, parts[last], start, spans)
    return spans


def _add_token_spans(text: str, unquoted: str, start: int, spans: list[tuple[int, int]]) -> None:
    """The spans of the whitespace-separated tokens of ``unquoted``, which starts at ``start``."""
    for token in unquoted.split():
        start = text.find(token, start)
        spans.append((start, start + len(token)))
        start += len(token)


def _second_line_within(text: str, spans: list[tuple[int, int]], layout: _Layout) -> bool:
    """Whether another line seems run into this one (the first cut short, a newline lost) before
    the last field that its format documents, where its client would pass for another value:
    a field the format always quotes not quoted, a certificate serial number that is no hex, or
    a timestamp anywhere in those fields but the line's own (a second line brings one before
    its client). The fields after the documented ones are scrubbed anyway."""
    count = len(spans)
    # A field is quoted when its quote follows whitespace (checked inline: this runs for every
    # line the longer path reads). A quoted value run into the token before it (`?q="x`, a
    # raw quote in a request) is no field of the layout's; a quoted field where the format writes
    # none means a field before it split in two and moved the others on.
    for index in layout.quoted:
        if index < count:
            start = spans[index][0]
            if not (start >= 2 and text[start - 1] == '"' and text[start - 2].isspace()):
                return True
    for index in layout.unquoted:
        if index < count:
            start = spans[index][0]
            if start >= 2 and text[start - 1] == '"' and text[start - 2].isspace():
                return True
    if 0 <= layout.serial < count and text[slice(*spans[layout.serial])].strip(_HEX):
        return True
    end = len(text) if layout.documented >= count else spans[layout.documented][0]
    # Searched between the line's own timestamps: from after the `T` of each (the timestamp
    # that starts the field; matches start at their `T`), past a well-formed validity.
    position = 0
    for index in layout.times:
        if index >= count:
            break
        start, stop = spans[index]
        if _time_within(text, position, start, spans, layout):
            return True
        position = min(start + 11, stop)
        if (
            index == layout.validity
            and text.startswith("NotBefore=", start)
            and text.find(";NotAfter=", start, stop) > 0
        ):
            position = stop
    return _time_within(text, position, end, spans, layout)


def _time_within(
    text: str, position: int, end: int, spans: list[tuple[int, int]], layout: _Layout
) -> bool:
    """Whether ``text[position:end]`` holds a timestamp, but for one in a free-text field with
    no address after it in that field: anywhere in a quoted one (``?since=...``,
    ``?range=...Z,2015-...``, ``MyApp (build 2015-...)``), after a ``=`` or ``/`` in an unquoted
    one. Another line run into a quoted field leaves its quote open, so the field runs on to the
    next quote, past the other line's client (only a type, the load balancer and a listener
    stand between its timestamp and its client, none quoted): a line cut in its user agent,
    with a Classic line or a connection log run in, is caught whatever character the cut left
    before the timestamp. In an unquoted field the other line's client is the next field."""
    count = len(spans)
    within = [spans[index] for index in layout.texts if index < count]
    # The start of the last address token of each field looked at (-1: none), found once: a
    # field of many timestamps would otherwise have its rest read again for each (a 40 KB user
    # agent of them took 15 s a line).
    last_address: dict[int, int] = {}
    while (found := _RUN_IN_TIME.search(text, position, end)) is not None:
        date = found.start() - 10
        start, stop = next(
            ((start, stop) for start, stop in within if start <= date < stop), _NO_SPAN
        )
        if stop < 0 or (text[start - 1 : start] != '"' and text[date - 1 : date] not in ("=", "/")):
            return True
        position = found.end()
        last = last_address.get(start)
        if last is None:
            last = last_address[start] = _last_address_token(text, start, stop)
        if last >= position:
            return True
        # The rest of the timestamp's own token (`...:43;192.0.2.7`), as a token of its own:
        # read no further than an address can be long, or a field of timestamps without a space
        # (a client's path or user agent) is read to its end for each (16 KB: 0.4 s a line).
        rest = _TOKEN.match(text, position, min(stop, position + _LONGEST_ADDRESS_TOKEN + 1))
        if (
            rest is not None
            and rest.end() - rest.start() <= _LONGEST_ADDRESS_TOKEN
            and _is_address(rest.group())
        ):
            return True
    return False


def _last_address_token(text: str, start: int, stop: int) -> int:
    """Where the last whitespace-separated token of ``text[start:stop]`` that is an address
    (``_is_address``) starts; -1 if none is."""
    last = -1
    for token in _TOKEN.finditer(text, start, stop):
        if _is_address(token.group()):
            last = token.start()
    return last


def _is_address(token: str) -> bool:
    """Whether ``token`` is an IP address, or one with a port, an IPv6 one bracketed or not
    (``[2001:db8::9]:2817``, which the parser reads as a client too)."""
    if "." not in token and ":" not in token:
        return False
    for candidate in (token, token.rpartition(":")[0]):
        try:
            ipaddress.ip_address(
                candidate[1:-1] if candidate[:1] == "[" and candidate[-1:] == "]" else candidate
            )
        except ValueError:
            continue
        return True
    return False


def _url_marks(text: str, start: int) -> bool:
    """Whether ``text`` from ``start`` holds what a URL's private part starts with: a query, a
    fragment, user information."""
    return text.find("?", start) >= 0 or text.find("#", start) >= 0 or text.find("@", start) >= 0


def _ipv6_within(candidate: str) -> tuple[int, int] | None:
    """The span of the longest IPv6 address in what ``_IPV6_LIKE`` matched: all of it, or
    without a colon taken from a neighbour (``ip:2001:db8::1``) or what follows a colon (a port,
    ``2001:db8::1:g``); None if it holds none."""
    starts = (0, 1) if candidate[:1] == ":" else (0,)
    colons = [index for index, char in enumerate(candidate) if char == ":"]
    ends = sorted({len(candidate), *colons, *(index + 1 for index in colons)}, reverse=True)
    for end in ends:
        if end < len(candidate) and candidate[end] != ":" and candidate[end - 1] == ":":
            # An address that ends in `::` with hex digits after it (`2001:db8::12340`): those
            # digits would join its anonymised form into an address again (`2001:db8::` and
            # `12340`). `_damaged_ipv6` tells what it is.
            continue
        for start in starts:
            text = candidate[start:end]
            if not _ipv6_shaped(text):
                continue
            try:
                ipaddress.IPv6Address(text)
            except ValueError:
                continue
            return start, end
    return None


def _damaged_ipv6(candidate: str) -> bool:
    """Whether ``candidate`` (an ``_IPV6_LIKE`` match that holds no address as a whole) starts
    with an IPv6 address cut inside its last group: an address with more hex digits run into it.
    Times (``23:39:01``) have too few colons for one, and are told without ``ipaddress``."""
    last = candidate.rfind(":")
    for start in (0, 1) if candidate[:1] == ":" else (0,):
        for end in range(last + 2, min(last + 6, len(candidate) + 1)):
            if not _ipv6_shaped(text := candidate[start:end]):
                continue
            try:
                ipaddress.IPv6Address(text)
            except ValueError:
                continue
            return True
    return False


def _ipv6_shaped(text: str) -> bool:
    """Whether ``text`` has the colons of an IPv6 address: eight groups, one ``::``, or six groups
    and an IPv4 tail, never ``:::``. Anything else is told without ipaddress: times such as
    ``23:39:01`` are common, and a run of colons would be tried at each of its characters."""
    doubled = text.count("::")
    if doubled > 1 or ":::" in text:
        return False
    count = text.count(":")
    return bool(doubled) or count == _IPV6_COLONS or (count == 6 and "." in text)


def _ipv6_network(address: str) -> str | None:
    """The /48 network of an IPv6 address of hex groups alone (no IPv4 tail, no zone), written as
    ``ipaddress`` writes it (RFC 5952: lower case, no leading zeros, the longest run of zero
    groups as ``::``), for a fifth of its cost; None for any other text (``ipaddress`` decides).

    >>> _ipv6_network("2001:DB8:0:12::9a"), _ipv6_network("::1"), _ipv6_network("1::2:3:4:5:6:7")
    ('2001:db8::', '::', '1:0:2::')
    """
    groups = _ipv6_groups(address)
    if groups is None:
        return None
    kept = [int(group, 16) for group in groups[:3]]
    if kept[0] == _SIX_TO_FOUR:
        # 6to4 (2002::/16): the /48 is the whole IPv4 address it carries; keep its /24.
        kept[2] &= 0xFF00
    # The five zero groups of the host part, with any zero groups before them: one `::`.
    while kept and not kept[-1]:
        kept.pop()
    return ":".join(map("{:x}".format, kept)) + "::"


def _ipv6_groups(address: str) -> list[str] | None:
    """The eight hex groups of an IPv6 address of hex groups alone (``_IPV6_HEX``), ``::``
    expanded; None for any other text."""
    if _IPV6_HEX.fullmatch(address) is None:
        return None
    head, double_colon, tail = address.partition("::")
    groups = head.split(":") if head else []
    if double_colon:
        later = tail.split(":") if tail else []
        groups += ["0"] * (8 - len(groups) - len(later)) + later
    return groups


def _packed(address: str) -> bytes | None:
    """The bytes of an IPv4 address (ASCII digits) or of an IPv6 address of hex groups alone,
    as ``ipaddress`` packs them, for a fraction of its cost; None for any other text (``ipaddress``
    decides: an IPv4 tail, a zone, no address)."""
    if address.isascii() and _IPV4.fullmatch(address):
        return bytes(map(int, address.split(".")))
    groups = _ipv6_groups(address)
    if groups is None:
        return None
    packed = _EIGHT_GROUPS.pack(*(int(group, 16) for group in groups))
    # IPv4-mapped (`::ffff:cb00:7107`): the IPv4 address's bytes, as for `::ffff:203.0.113.7`.
    return packed[12:] if packed.startswith(_IPV4_MAPPED) else packed


def _pseudonym(packed: bytes) -> str:
    """The IPv6 address of 16 bytes, written as ``ipaddress`` writes it: without a zero group,
    each group in lower-case hex without leading zeros (a zero group, 8 in 65,536 of these
    pseudonyms, goes to ``ipaddress``, which decides whether to write ``::``)."""
    groups = _EIGHT_GROUPS.unpack(packed)
    if 0 in groups:
        return str(ipaddress.IPv6Address(packed))
    return _EIGHT_HEX_GROUPS % groups


def _scrubbed_parameter(match: re.Match[str]) -> str:
    name, value = match.group(1, 2)
    if name is None:
        return REDACTED
    return f"{name}{REDACTED}" if value else name


def _query_values(query: str) -> str:
    """``REDACT_QUERY=values`` of a query without fragment (``?a=1&b``), from its ``?``."""
    redacted, values = _PARAMETER_VALUE.subn(_REDACTED_VALUE, query)
    # Fewer values than parameters means some have none, or no `=` (the costlier pass, rarely
    # needed).
    if values <= query.count("&") + query.count(";"):
        redacted = _BARE_PARAMETER.sub(REDACTED, redacted)
    return redacted


def _field(text: str, index: int) -> str:
    """Field ``index`` of unquoted ``text`` split at any whitespace, as the parser splits it
    (the status of an ALB line's head); empty if there is none."""
    fields = text.split(None, index + 1)
    return fields[index] if len(fields) > index else ""


def _quoted_after(text: str, after: int) -> str:
    """The quoted field that follows the one whose closing quote is just before ``after`` (the
    user agent after the request)."""
    if text[after : after + 2] != ' "':
        return ""
    return text[after + 2 : text.find('"', after + 2)]


def _closed(value: str) -> str:
    """A rewritten quoted value must not end in an escaping backslash (it would swallow the
    closing quote): drop one."""
    trailing = len(value) - len(value.rstrip("\\"))
    return value[:-1] if trailing % 2 else value
