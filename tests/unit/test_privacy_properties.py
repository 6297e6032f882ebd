"""Properties of the privacy rules over generated lines of every format, parsed or not."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import assume, example, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from elb_log_shipper.formats import EventBuilder, detect_format
from elb_log_shipper.formats._tokenizer import tokenize
from elb_log_shipper.privacy import (
    _FIELD,
    ClientAddress,
    DropRules,
    PrivacyRules,
    QueryRedaction,
    _field_spans,
    _ipv6_network,
    _pseudonym,
)
from tests.support.events import strings
from tests.unit.test_privacy import (
    DROPPING,
    SHORT_PATH_RULES,
    TRANSFORMS_NONE,
    alb,
    built_both_ways,
    classic,
    connection,
    filtered_both_ways,
    nlb,
    shipped_as_the_longer_paths_ship_it,
)

# Query strings as clients send them, with the characters that matter: separators, a second `?`,
# fragments, ALB's `\x22` for a quote, percent-escapes.
queries = st.lists(
    st.sampled_from(
        ["a", "Z", "k9", "%40", "=", "&", "#", "?", ";", "\\x22", "-", ".", "/", "~", "+", "q="]
    ),
    min_size=3,
    max_size=12,
).map("".join)
addresses = st.ip_addresses().map(str)


@st.composite
def request_lines(draw: st.DrawFn, address: str, query: str) -> str:
    """A line of a format with a URL, holding ``address`` and ``?query``; parsed or failing."""
    url = f"https://www.example.com:443/p?{query}"
    kind = draw(st.sampled_from(["alb", "alb-redirect", "alb-escaped", "classic"]))
    status = draw(st.sampled_from(["200", "2x0"]))  # 2x0: a parse failure
    if kind == "classic":
        line = classic(address, f"GET {url} HTTP/1.1", status=status)
    elif kind == "alb-redirect":
        line = alb(address, url, status=status, redirect=url)
    elif kind == "alb-escaped":
        line = alb(address, url, status=status, agent=r"a \"b\"")
    else:
        line = alb(address, url, status=status)
    if draw(st.booleans()):
        # Cut inside the request's quotes, after the query: an unclosed quote.
        line = line[: line.index(url) + len(url)]
    return line


def event_strings(line: str, rules: PrivacyRules | None) -> list[str]:
    event = EventBuilder(bucket="b", key="k", privacy=rules).build(line.encode(), 0)
    assert event is not None
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(event))
    return list(strings(decoded))


@settings(max_examples=300, deadline=None)
@given(st.data(), addresses, queries)
def test_redact_query_all_leaves_nothing_of_the_query(
    data: st.DataObject, address: str, query: str
) -> None:
    line = data.draw(request_lines(address, query))
    # The query must be told apart from the rest of the event: not already in it without the query,
    # nor in the client's address (`aaa` in `2001:4:112:aaa0::`), which this rule keeps.
    assume(query not in address)
    assume(not any(query in text for text in event_strings(line.replace(query, ""), None)))
    texts = event_strings(line, PrivacyRules(redact_query=QueryRedaction.ALL))
    assert not [text for text in texts if query in text]


def truncates(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    host_bits = 8 if ip.version == 4 else 80
    return int(ip) & ((1 << host_bits) - 1) != 0


@st.composite
def client_lines(draw: st.DrawFn, address: str) -> str:
    """A line of any format with ``address`` as its client."""
    makers: list[Callable[[str], str]] = [alb, classic, nlb, connection]
    line = draw(st.sampled_from(makers))(address)
    if draw(st.booleans()):
        line = line.replace(" 200 ", " 2x0 ").replace(" 443 TLSv1.2", " x TLSv1.2")
    return line


@settings(max_examples=300, deadline=None)
@given(st.data(), addresses)
def test_client_ip_truncate_leaves_no_full_address(data: st.DataObject, address: str) -> None:
    assume(truncates(address))
    line = data.draw(client_lines(address))
    assume(address not in line.replace(address, "192.0.2.1", 1))
    for mode in (ClientAddress.TRUNCATE, ClientAddress.HASH):
        rules = PrivacyRules(client_ip=mode, hash_key=b"k" * 16)
        texts = event_strings(line, rules)
        assert not [text for text in texts if address in text], mode


@st.composite
def damaged_lines(draw: st.DrawFn, address: str) -> str:
    """A line of any format with ``address`` as its client (and, for ALB and Classic, a query
    with ``s3cr3tTok``), damaged as logs are: a field lost or added, a raw quote, another line
    run into it, the line run into another cut short, a client port that is no port, a short
    field appended (which an ALB line's common paths once took for its trace id)."""
    makers: list[Callable[[str], str]] = [alb, classic, nlb, connection]
    line = draw(st.sampled_from(makers))(address)
    fields = line.split(" ")
    at = draw(st.integers(0, len(fields) - 1))
    damage = draw(
        st.sampled_from(
            ["lost", "added", "quote", "run together", "cut, then run together", "port", "appended"]
        )
    )
    if damage == "appended":
        return f"{line} {draw(st.sampled_from([address, f'{address}:1', '/p?t=s3cr3tTok']))}"
    if damage == "lost":
        del fields[at]
    elif damage == "added":
        fields.insert(at, draw(st.sampled_from(["x", "-", '"', '"a b"', "192.0.2.1:80", "1"])))
    elif damage == "quote":
        fields[at] = draw(st.sampled_from(['"', "x"])) + fields[at] + '"'
    elif damage == "run together":
        other = draw(st.sampled_from(makers))(address)
        return line + draw(st.sampled_from(["", " "])) + other[: draw(st.integers(1, len(other)))]
    elif damage == "cut, then run together":
        # The newline lost with the end of the line before it: this address is the second's.
        first = draw(st.sampled_from(makers))("192.0.2.1")
        return first[: draw(st.integers(1, len(first)))] + draw(st.sampled_from(["", " "])) + line
    else:
        port = draw(st.sampled_from(["-", "+1", "1x", "", "٢", "99999"]))
        return (
            line.replace(":2817 ", f":{port} ")
            .replace(":51341 ", f":{port} ")
            .replace(" 36280 ", f" {port} ")
        )
    return " ".join(fields)


@settings(max_examples=400, deadline=None)
@given(st.data(), addresses)
def test_damaged_lines_keep_no_address_and_no_query_value(
    data: st.DataObject, address: str
) -> None:
    """Whatever field the parser ends up reading a value into, or if the line fails."""
    assume(truncates(address))
    # The address must be told apart from the rest of the lines (`0.0.0.1` is in `10.0.0.1`).
    assume(not any(address in make("192.0.2.1") for make in (alb, classic, nlb, connection)))
    line = data.draw(damaged_lines(address))
    for rules in (
        PrivacyRules(client_ip=ClientAddress.TRUNCATE),
        PrivacyRules(redact_query=QueryRedaction.VALUES, client_ip=ClientAddress.TRUNCATE),
        PrivacyRules(
            redact_query=QueryRedaction.ALL, client_ip=ClientAddress.HASH, hash_key=b"k" * 16
        ),
    ):
        gone = (
            (address, "s3cr3tTok") if rules.redact_query is not QueryRedaction.NONE else (address,)
        )
        for event in built_both_ways(line, rules):
            found = [(value, text) for value in gone for text in strings(event) if value in text]
            assert not found, rules


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from(list(QueryRedaction)), addresses)
def test_any_text_gives_one_event_under_every_rule(
    text: str, redaction: QueryRedaction, address: str
) -> None:
    rules = PrivacyRules(redact_query=redaction, client_ip=ClientAddress.TRUNCATE)
    for line in (text, f"http {address}:1 {text}"):
        assert event_strings(line, rules)


octets = st.one_of(
    st.integers(0, 255).map(str),
    st.sampled_from(["00", "01", "007", "256", "300", "999", "1000", "٣", ""]),
)
ipv4_like = st.one_of(
    st.ip_addresses(v=4).map(str), st.lists(octets, min_size=3, max_size=5).map(".".join)
)
# Queries as most clients send them: names and values, `=` and `&`, nothing to escape.
plain_queries = st.lists(
    st.sampled_from(["a", "k9", "=", "&", "%40", "-", ".", "jo", "Z"]), min_size=1, max_size=10
).map("".join)
# Whitespace that splits fields, and a quote, which ends the head the parser reads.
head_whitespace = st.sampled_from([" ", "  ", "\t", "\xa0", "\x1f", "\x0b", " \t", '"', ' "'])


@st.composite
def common_lines(draw: st.DrawFn) -> str:
    """ALB lines near the common one: odd addresses, ports, queries, agents, whitespace."""
    odd = st.integers(0, 5).map(lambda n: n == 0)
    client = draw(st.one_of(ipv4_like, addresses) if draw(odd) else st.ip_addresses(v=4).map(str))
    path = draw(st.sampled_from(["/p", "https://h:443/p", "", "https://h:443"]))
    query = draw(queries if draw(odd) else plain_queries)
    query = draw(st.sampled_from([f"?{query}", "", query]))
    line = alb(
        client,
        f"{path}{query}",
        agent=draw(
            st.sampled_from(["bot?v=1", "a#b", r"a \"b\"", "a?b HTTP/1.1"])
            if draw(odd)
            else st.just("-")
        ),
        redirect=draw(
            st.sampled_from(["https://h/cb?code=1", "https://h/cb"]) if draw(odd) else st.just("-")
        ),
    )
    # 2025's layout, as every ALB writes it since, with or without a transform.
    line += draw(
        st.sampled_from(
            [
                "",
                TRANSFORMS_NONE,
                f"{TRANSFORMS_NONE} 10.0.1.9",
                # 2026's: the load balancer node's address after 2025's layout.
                f"{TRANSFORMS_NONE} 2600:1f18:abcd:12::9",
                f"{TRANSFORMS_NONE} 10.0.1.9 ",
                ' "h.internal" "/v2?q=1" "TransformSuccessful"',
                ' "-" "/v2/198.51.100.9" "-" x',
            ]
        )
    )
    if draw(odd):
        line = line.replace(":2817 ", draw(st.sampled_from([":2817\t", ":x ", " ", ":٢ "])))
    if draw(odd):
        spaces = [i for i, char in enumerate(line[:90]) if char == " "]
        at = draw(st.sampled_from(spaces))
        line = f"{line[:at]}{draw(head_whitespace)}{line[at + 1 :]}"
    if draw(odd):
        line = line.replace(
            " HTTP/1.1", draw(st.sampled_from(["", " HTTP/1.1 ", " http/1.1", '" HTTP/1.1']))
        )
    return line


@settings(max_examples=500, deadline=None)
@given(common_lines(), st.sampled_from(list(QueryRedaction)), st.sampled_from(list(ClientAddress)))
def test_the_short_path_gives_the_line_of_the_longer_paths(
    line: str, redaction: QueryRedaction, client: ClientAddress
) -> None:
    """``CLIENT_IP=truncate``'s and ``hash``'s short path, and ``REDACT_QUERY``'s alone, gives
    the event of the longer paths, or leaves the line to them."""
    assume(client is not ClientAddress.KEEP or redaction is not QueryRedaction.NONE)
    assert shipped_as_the_longer_paths_ship_it(line, redaction, client)


# Drop filters that match some of `common_lines` and not others.
alb_drops = st.builds(
    DropRules,
    user_agent_prefixes=st.sampled_from([(), ("-",), ("bot",), ("Mozilla/",)]),
    methods=st.sampled_from([frozenset(), frozenset({"GET"}), frozenset({"OPTIONS"})]),
    status=st.sampled_from([frozenset(), frozenset({"200"}), frozenset({"2x0", "404"})]),
    path_prefixes=st.sampled_from([(), ("/p",), ("https://h",)]),
    path_suffixes=st.sampled_from([(), ("/p",), (".png",)]),
)


@settings(max_examples=500, deadline=None)
@given(
    common_lines(),
    st.sampled_from(list(QueryRedaction)),
    st.sampled_from(list(ClientAddress)),
    alb_drops,
)
def test_with_drop_filters_the_short_path_drops_and_keeps_as_the_longer_paths_do(
    line: str, redaction: QueryRedaction, client: ClientAddress, drop: DropRules
) -> None:
    """With drop filters, an ALB batch rewritten ahead by the short path of the rules without
    the filters (with drop filters alone, decoded as it is) gives, line by line, the event the
    longer paths give, or drops the line as they drop it."""
    rules = dataclasses.replace(
        SHORT_PATH_RULES.get((client, redaction), PrivacyRules()), drop=drop
    )
    (alone, ahead), dropped = filtered_both_ways(line, rules)
    label("dropped" if alone is None else "kept")
    assert ahead == alone
    assert dropped[0] == dropped[1]


# What a field of the other formats may be made into: a timestamp (another line's, or one in a
# URL), an address, a quote, a URL mark, whitespace, a list, nothing.
odd_fields = st.sampled_from(
    [
        "2026-11-28T23:38:49.364000Z",
        "2020-04-01T08:51:20",
        "?since=2026-11-28T23:38:49Z",
        "/p?q=s3cr3t",
        "198.51.100.9",
        "198.51.100.9:80",
        "2001:db8::9",
        '"',
        '"a b"',
        '"h2","http/1.1"',
        "#f",
        "u@h",
        "\\",
        "a\tb",
        "-",
        "",
        "FEF2",
        "x",
    ]
)


@st.composite
def other_format_lines(draw: st.DrawFn) -> str:
    """Classic, NLB and connection-log lines near the common ones: odd clients and queries, a
    field changed, added or lost, later fields, another line run in, whitespace."""
    odd = st.integers(0, 3).map(lambda n: n == 0)
    client = draw(st.one_of(ipv4_like, addresses) if draw(odd) else st.ip_addresses(v=4).map(str))
    kind = draw(st.sampled_from(["classic", "nlb", "connection"]))
    if kind == "classic":
        query = draw(st.sampled_from([f"?{draw(queries)}", f"?{draw(plain_queries)}", ""]))
        line = classic(
            client,
            f"GET http://www.example.com:80/p{query} HTTP/1.1",
            agent=draw(st.sampled_from(["curl/7.38.0", "bot?v=1", "-"])),
        )
    else:
        line = (nlb if kind == "nlb" else connection)(client)
    fields = line.split(" ")
    change = draw(st.sampled_from(["none", "replace", "insert", "delete", "append", "run in"]))
    at = draw(st.integers(0, len(fields) - 1))
    if change == "replace":
        fields[at] = draw(odd_fields)
    elif change == "insert":
        fields.insert(at, draw(odd_fields))
    elif change == "delete":
        del fields[at]
    elif change == "append":
        fields += draw(st.lists(odd_fields, min_size=1, max_size=3))
    line = " ".join(fields)
    if change == "run in":
        makers: list[Callable[[str], str]] = [alb, classic, nlb, connection]
        other = draw(st.sampled_from(makers))("192.0.2.1")
        cut = draw(st.integers(1, len(line)))
        line = line[:cut] + draw(st.sampled_from(["", " "])) + other
    if draw(odd):
        spaces = [i for i, char in enumerate(line) if char == " "]
        at = draw(st.sampled_from(spaces))
        line = f"{line[:at]}{draw(head_whitespace)}{line[at + 1 :]}"
    return line


@settings(max_examples=500, deadline=None)
@given(
    other_format_lines(),
    st.sampled_from(list(QueryRedaction)),
    st.sampled_from(list(ClientAddress)),
    st.sampled_from([None, DROPPING]),
)
@example(
    connection() + " x25519 app/my-alb/1 10.0.1.130",
    QueryRedaction.VALUES,
    ClientAddress.HASH,
    None,
)
@example(
    connection() + " x25519 app/my-alb/1 10.0.1.130",
    QueryRedaction.VALUES,
    ClientAddress.TRUNCATE,
    DROPPING,
)
@example(nlb() + " 2020-04-01T08:51:20", QueryRedaction.NONE, ClientAddress.TRUNCATE, None)
# The query rule alone with drop filters: answered as it was, though a filter drops it.
@example(
    classic(request="GET http://h:80/p HTTP/1.1"),
    QueryRedaction.VALUES,
    ClientAddress.KEEP,
    DROPPING,
)
@example(
    # A list outside NLB's ALPN fields, which the longer path scrubs whole (session 27).
    nlb().replace(" 5 2 98 ", ' "h2","http/1.1" 2 98 '),
    QueryRedaction.NONE,
    ClientAddress.TRUNCATE,
    None,
)
def test_the_short_path_of_the_other_formats_gives_the_line_of_the_longer_path(
    line: str, redaction: QueryRedaction, client: ClientAddress, drop: DropRules | None
) -> None:
    """For Classic, NLB and connection logs the short path answers ``apply``'s line itself (no
    caller reads it again), or leaves the line to it; the events are the same either way. With
    drop filters, it never takes a line that they drop."""
    assume(client is not ClientAddress.KEEP or redaction is not QueryRedaction.NONE)
    rules = SHORT_PATH_RULES[client, redaction]
    if drop is not None:
        rules = dataclasses.replace(rules, drop=drop)
    privacy = rules.compile(detect_format)
    assert privacy is not None
    short = privacy.rewritten(line)
    label("left to the longer path" if short is None else "taken")
    assert short is None or short == privacy.apply(line)
    assert shipped_as_the_longer_paths_ship_it(line, redaction, client)


# Drop filters that many lines match: every method but one, 2xx, agents starting with a letter
# or `-`, and common paths.
DROP_ALONE = PrivacyRules(
    drop=DropRules(
        user_agent_prefixes=("c", "M", "-"),
        methods=frozenset({"GET", "POST", "-"}),
        status=frozenset({"200", "204", "-"}),
        path_prefixes=("/p", "/api/"),
        path_suffixes=(".png",),
    )
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(other_format_lines(), st.text(max_size=60)))
@example(connection().replace(" 36280 ", ' "36280" '))
@example(classic().replace(" my-loadbalancer ", ' "my lb" '))
@example(connection().replace(" ", "\t", 2))
@example("2023-12-20T22:43:21Z 203.0.113.77")
@example("tls")
@example("tls\t1.0")
def test_drop_filters_alone_keep_a_line_without_a_request_as_reading_every_field_does(
    line: str,
) -> None:
    """With drop filters alone, an NLB line is kept without reading every field, and a line
    without a request (a connection log, no known format) once its format is known; any other
    line is decided by reading every field. The answer is the one that path gives."""
    privacy = DROP_ALONE.compile(detect_format)
    assert privacy is not None
    assume(line.split(" ", 1)[0] not in ("http", "https", "h2", "grpcs", "ws", "wss"))
    kept = privacy.apply(line)
    label("dropped" if kept is None else "kept")
    assert kept == privacy._by_fields(line, DROP_ALONE.drop)
    # Drop filters alone never change a line, and drop only lines with a request (as the
    # fields read: a first field of `"h2",...` is an ALB type).
    fields = [line[start:end] for start, end in _field_spans(line)]
    assert kept == line or (kept is None and detect_format(fields) in ("alb", "classic"))


def ipv6_network_by_ipaddress(text: str) -> str | None:
    """``CLIENT_IP=truncate``'s /48 of an IPv6 address as ``ipaddress`` gives it; None if it is
    not one."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    if address.scope_id is not None or "." in text:
        return None
    if address.sixtofour is not None:
        # A 6to4 address's /48 is the IPv4 address it carries: kept to that address's /24.
        return str(ipaddress.IPv6Address(int(address) & ((1 << 40) - 1) << 88))
    return str(ipaddress.IPv6Address(int(address) & ((1 << 48) - 1) << 80))


@st.composite
def ipv6_texts(draw: st.DrawFn) -> str:
    """An IPv6 address as it may be written: compressed or not, in either case, zeros
    shortened or padded, some groups zero."""
    groups = draw(st.lists(st.one_of(st.just(0), st.integers(0, 0xFFFF)), min_size=8, max_size=8))
    address = ipaddress.IPv6Address(sum(group << (16 * (7 - i)) for i, group in enumerate(groups)))
    # Written out here: Python 3.13 writes an IPv4-mapped address with its IPv4 tail
    # (`::ffff:0.0.0.0`), even exploded.
    exploded = ":".join(f"{group:04x}" for group in groups)
    compressed = str(address) if "." not in str(address) else exploded
    text = draw(st.sampled_from([compressed, exploded]))
    if draw(st.booleans()):
        text = text.upper()
    return text


@settings(max_examples=300, deadline=None)
@given(ipv6_texts())
@example("2002:cb00:714d::1")
@example("2002:CB00:71FF:12::")
@example("2002::1")
def test_ipv6_networks_are_written_as_ipaddress_writes_them(text: str) -> None:
    """The /48 that truncation keeps of an IPv6 address, read without ``ipaddress`` for speed,
    is exactly ``ipaddress``'s (RFC 5952 form), however the address is written."""
    assert _ipv6_network(text) == ipv6_network_by_ipaddress(text) is not None


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=st.sampled_from(list("0123456789abcdefABCDEF:")), max_size=45),
        st.lists(
            st.sampled_from(["", "0", "1", "ab", "ffff", "0000", "12345", "g"]), max_size=10
        ).map(":".join),
    )
)
@example("1:2:3:4:5:6:7::")
@example("::1:2:3:4:5:6:7")
@example("1::2:3:4:5:6:7")
@example(":::")
@example("1:2:3:4:5:6:7:8:9")
@example("1::2::3")
def test_text_that_is_no_ipv6_address_is_left_to_ipaddress(text: str) -> None:
    """Any other text is read the same, or left to ``ipaddress`` (an IPv4 tail, a zone, or no
    address at all)."""
    network = _ipv6_network(text)
    assert network is None or network == ipv6_network_by_ipaddress(text)


HASH_KEY = b"k" * 16


def pseudonym_by_ipaddress(text: str) -> str | None:
    """``CLIENT_IP=hash``'s pseudonym of an address as ``ipaddress`` reads and writes it (an
    IPv4-mapped IPv6 address hashed as its IPv4 address); None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    digest = hmac.digest(HASH_KEY, (mapped or address).packed, hashlib.sha256)
    return str(ipaddress.IPv6Address(b"\xfd" + digest[:15]))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        ipv6_texts(),
        st.text(alphabet=st.sampled_from(list("0123456789abcdefAF:.%٣")), max_size=30),
    )
)
@example("::ffff:203.0.113.7")
@example("fe80::1%eth0")
@example("203.0.113.07")
@example("٣.0.113.7")
@example("2001:db8::")
def test_hashed_addresses_are_the_pseudonyms_ipaddress_gives(text: str) -> None:
    """``CLIENT_IP=hash`` reads and writes addresses without ``ipaddress`` where it can, for
    speed: the pseudonym is ``ipaddress``'s, byte for byte, for any text."""
    privacy = PrivacyRules(client_ip=ClientAddress.HASH, hash_key=HASH_KEY).compile(detect_format)
    assert privacy is not None
    assert privacy._anonymise(text) == pseudonym_by_ipaddress(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 1, 0xABC, 0xFFFF]), min_size=7, max_size=7))
def test_pseudonyms_with_zero_groups_are_written_as_ipaddress_writes_them(
    groups: list[int],
) -> None:
    """A pseudonym's zero groups (rare in a digest, so drawn here) are written as ``ipaddress``
    writes them (``::`` for the longest run of two or more)."""
    packed = bytes.fromhex("fd00" + "".join(f"{group:04x}" for group in groups))
    assert _pseudonym(packed) == str(ipaddress.IPv6Address(packed))


# Text made of what splits fields (whitespace of every kind, quotes, commas, backslashes).
field_text = st.text(
    alphabet=st.sampled_from(list(' ",ab\\\t\n\x1c\x85\xa0\u2028\u3000-')), max_size=40
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(field_text, common_lines(), st.text(max_size=80)))
@example('a "b","c" d "e"f "g""h" ,"i"')
@example('x"y z"w "a"1')
def test_fields_are_read_by_split_as_the_field_expression_reads_them(text: str) -> None:
    """The longer path's fields, read with `str.split` where the line allows, are the spans
    that `_FIELD` gives (quoted values inside their quotes, a list as its first item)."""
    expected = [match.span(match.lastindex or 0) for match in _FIELD.finditer(text)]
    assert _field_spans(text) == expected


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(common_lines(), other_format_lines(), st.text()),
    st.sampled_from([QueryRedaction.VALUES, QueryRedaction.ALL]),
)
def test_query_rules_alone_leave_a_line_without_a_url_mark_as_it_is(
    line: str, redaction: QueryRedaction
) -> None:
    """What the short path of ``REDACT_QUERY`` alone answers at once: a line without a ``?``,
    ``#`` or ``@`` is the line ``apply`` gives, whatever its layout, parsed or not."""
    line = line.replace("?", "").replace("#", "").replace("@", "")
    privacy = PrivacyRules(redact_query=redaction).compile(detect_format)
    assert privacy is not None
    assert privacy.apply(line) == line
    assert privacy.redact(line) == line
    # The short path's answer, but for a line with an escape (the longer paths').
    assert privacy.rewritten(line) == (None if "\\" in line else line)


@settings(max_examples=500, deadline=None)
@given(
    other_format_lines(),
    st.sampled_from(list(QueryRedaction)),
    st.sampled_from([ClientAddress.TRUNCATE, ClientAddress.HASH]),
)
def test_a_classic_line_in_the_parsers_split_is_applys_line(
    line: str, redaction: QueryRedaction, client: ClientAddress
) -> None:
    """``classic_fields`` answers ``apply``'s line and the fields the tokenizer reads from it
    (the parser takes them without reading the line again), or leaves the line."""
    privacy = SHORT_PATH_RULES[client, redaction].compile(detect_format)
    assert privacy is not None
    split = privacy.classic_fields(line, line.split('"'))
    label("left" if split is None else "taken")
    if split is not None:
        text, fields = split
        assert text == privacy.apply(line)
        assert fields == tokenize(text)
