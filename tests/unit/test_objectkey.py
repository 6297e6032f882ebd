"""parse_key: what an S3 key says about the ELB log inside it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elb_log_shipper.objectkey import KeyInfo, KeyKind, LoadBalancerType, has_log_name, parse_key

ACCOUNT = "123456789012"
DAY = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2026/11/28/"
FILE = f"{ACCOUNT}_elasticloadbalancing_us-east-1_"
END = dt.datetime(2026, 11, 28, 23, 40, tzinfo=dt.UTC)

CLASSIC = DAY + FILE + "my-classic-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log"
ALB = DAY + FILE + "app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_2a3b4c5d.log.gz"
NLB = DAY + FILE + "net.my-nlb.c6e77e28c25b2234_20261128T2340Z_9f8e7d6c.log.gz"
CONNECTION = (
    DAY + "conn_log_" + FILE + "app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_b38hdhc6.log.gz"
)
HEALTH = (
    DAY
    + "health_check_log_"
    + FILE
    + "app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_x1y2z3.log.gz"
)

# Expected fields for the recognised kinds; every case shares account, region and date.
PARSED: list[tuple[str, str, dict[str, Any]]] = [
    (
        "classic",
        CLASSIC,
        dict(
            kind=KeyKind.ACCESS,
            lb_type=LoadBalancerType.CLASSIC,
            load_balancer="my-classic-lb",
            node_ip="10.0.2.8",
            gzip_suffix=False,
        ),
    ),
    (
        "alb",
        ALB,
        dict(
            kind=KeyKind.ACCESS,
            lb_type=LoadBalancerType.ALB,
            load_balancer="app.my-alb.50dc6c495c0c9188",
            node_ip="10.0.1.7",
            gzip_suffix=True,
        ),
    ),
    (
        "nlb has no node ip",
        NLB,
        dict(
            kind=KeyKind.ACCESS,
            lb_type=LoadBalancerType.NLB,
            load_balancer="net.my-nlb.c6e77e28c25b2234",
            node_ip=None,
            gzip_suffix=True,
        ),
    ),
    (
        "alb connection log",
        CONNECTION,
        dict(kind=KeyKind.CONNECTION, lb_type=LoadBalancerType.ALB, node_ip="10.0.1.7"),
    ),
    (
        "alb health check log",
        HEALTH,
        dict(kind=KeyKind.HEALTH_CHECK, lb_type=LoadBalancerType.ALB, node_ip="10.0.1.7"),
    ),
    (
        "ipv6 node address",
        DAY + FILE + "app.my-alb.50dc6c495c0c9188_20261128T2340Z_2600:1f18:4c1:a800::7_ab12.log.gz",
        dict(kind=KeyKind.ACCESS, node_ip="2600:1f18:4c1:a800::7"),
    ),
]


@pytest.mark.parametrize(
    ("key", "expected"), [(k, e) for _, k, e in PARSED], ids=[i for i, *_ in PARSED]
)
def test_recognised_keys(key: str, expected: dict[str, Any]) -> None:
    info = parse_key(key)
    assert info.key == key
    assert info.prefix == ""
    assert (info.account, info.region, info.date) == (ACCOUNT, "us-east-1", dt.date(2026, 11, 28))
    assert info.end_time == END
    assert info.is_log
    for field, value in expected.items():
        assert getattr(info, field) == value, field


@pytest.mark.parametrize(
    "prefix", ["logs", "logs/prod/eu", "with space", "new\nline", "AWSLogs-not-really"]
)
def test_user_prefix_is_kept_and_ignored(prefix: str) -> None:
    info = parse_key(f"{prefix}/{ALB}")
    assert info.prefix == prefix
    assert info.kind is KeyKind.ACCESS
    assert info.load_balancer == "app.my-alb.50dc6c495c0c9188"


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        (f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile", ""),
        (f"my/logs/AWSLogs/{ACCOUNT}/ELBAccessLogTestFile", "my/logs"),
        # Enabling ALB connection logs writes its own test file (AWS, "Enable connection logs
        # for your Application Load Balancer", step 4), and health check logs theirs.
        (f"AWSLogs/{ACCOUNT}/ELBConnectionLogTestFile", ""),
        (f"conn/AWSLogs/{ACCOUNT}/ELBConnectionLogTestFile", "conn"),
        (f"health/AWSLogs/{ACCOUNT}/ELBHealthCheckLogTestFile", "health"),
    ],
)
def test_test_file(key: str, prefix: str) -> None:
    info = parse_key(key)
    assert info == KeyInfo(key=key, kind=KeyKind.TEST_FILE, prefix=prefix, account=ACCOUNT)
    assert not info.is_log


@pytest.mark.parametrize(
    ("key", "load_balancer_id"),
    [
        (CLASSIC, "my-classic-lb"),
        (ALB, "app/my-alb/50dc6c495c0c9188"),
        (NLB, "net/my-nlb/c6e77e28c25b2234"),
        ("garbage", None),
    ],
)
def test_load_balancer_id_is_the_resource_id_log_lines_carry(
    key: str, load_balancer_id: str | None
) -> None:
    assert parse_key(key).load_balancer_id == load_balancer_id


# ELB's names with an account of 11 or 13 digits, or a region without its hyphens, in both the
# folders and the file's name.
OUT_OF_SHAPE = [
    DAY.replace(ACCOUNT, account)
    + FILE.replace(ACCOUNT, account)
    + "my-lb_20261128T2340Z_1.2.3.4_a.log"
    for account in ("12345678901", "1234567890123")
] + [
    (DAY + FILE).replace("us-east-1", "useast1") + "my-lb_20261128T2340Z_1.2.3.4_a.log",
]

# Keys that are not ELB logs. The ones under a valid day folder keep what the folders say.
UNKNOWN_NOTHING = [
    "",
    "/",
    "AWSLogs",
    "x.log.gz",
    f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile/extra",
    f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile.txt",
    f"AWSLogs/{ACCOUNT}/ELBSomethingLogTestFile",
    f"AWSLogs/1234/elasticloadbalancing/us-east-1/2026/11/28/{FILE}x_20261128T2340Z_1.2.3.4_a.log",
    f"AWSLogs/{ACCOUNT}/elasticloadbalancing/US-EAST-1/2026/11/28/x.log",
    DAY + "sub/" + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
    *OUT_OF_SHAPE,
]

UNKNOWN_UNDER_DAY = [
    DAY + "notes.txt",
    DAY + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.txt",  # not .log
    DAY + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log.gz.tmp",
    DAY + FILE + "my-lb_20261328T2340Z_10.0.2.8_5f6g7h8j.log",  # month 13
    DAY + FILE + "my-lb_20261128T2460Z_10.0.2.8_5f6g7h8j.log",  # 24:60
    DAY + FILE + "gwy.my-gw.123_20261128T2340Z_10.0.2.8_5f6g7h8j.log",  # no such lb type
    DAY + FILE + "app.my-alb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",  # app without an id
    DAY + FILE + "my.lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",  # classic names have no dots
    DAY + FILE + "app..x_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
    DAY + "999999999999_elasticloadbalancing_us-east-1_my-lb_20261128T2340Z_1.2.3.4_a.log",
    DAY + f"{ACCOUNT}_elasticloadbalancing_eu-west-1_my-lb_20261128T2340Z_1.2.3.4_a.log",
    DAY + "access_log_" + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
]


@pytest.mark.parametrize("key", UNKNOWN_NOTHING)
def test_unknown_keys(key: str) -> None:
    assert parse_key(key) == KeyInfo(key=key, kind=KeyKind.UNKNOWN)


OTHER_SERVICES = [
    f"AWSLogs/{ACCOUNT}/cloudtrail/us-east-1/2026/11/28/x.json.gz",
    f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/28/x.json.gz",
    f"central/AWSLogs/{ACCOUNT}/vpcflowlogs/us-east-1/2026/11/28/x.log.gz",
    f"AWSLogs/{ACCOUNT}/elasticloadbalancing/x/AWSLogs/{ACCOUNT}/Config/us-east-1/x.json.gz",
]


@pytest.mark.parametrize("key", OTHER_SERVICES)
def test_other_services_folders_beside_elbs(key: str) -> None:
    assert parse_key(key) == KeyInfo(key=key, kind=KeyKind.OTHER_SERVICE)


@pytest.mark.parametrize(
    "folders",
    [f"AWSLogs/{ACCOUNT}/us-east-1/2026/11/28/", f"elb/AWSLogs/{ACCOUNT}/elb-archive/"],
    ids=["copied-without-its-service-folder", "archived"],
)
def test_an_elb_log_in_folders_of_someones_making_is_not_another_services(folders: str) -> None:
    key = folders + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log"
    assert parse_key(key).kind is KeyKind.UNKNOWN  # shipped, as any key not known to be other


@pytest.mark.parametrize("key", UNKNOWN_UNDER_DAY)
def test_unknown_file_in_a_day_folder_keeps_account_region_and_date(key: str) -> None:
    info = parse_key(key)
    assert info == KeyInfo(
        key=key,
        kind=KeyKind.UNKNOWN,
        account=ACCOUNT,
        region="us-east-1",
        date=dt.date(2026, 11, 28),
    )


def test_impossible_day_folder_gives_no_date_and_no_kind() -> None:
    key = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2026/02/30/{FILE}" + (
        "my-lb_20260230T2340Z_10.0.2.8_5f6g7h8j.log"
    )
    info = parse_key(key)
    assert (info.kind, info.account, info.date) == (KeyKind.UNKNOWN, ACCOUNT, None)


def test_delivery_day_can_follow_the_interval_end() -> None:
    key = (
        f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2026/11/29/"
        f"{FILE}my-lb_20261128T2355Z_10.0.2.8_5f6g7h8j.log"
    )
    info = parse_key(key)
    assert info.date == dt.date(2026, 11, 29)
    assert info.end_time == dt.datetime(2026, 11, 28, 23, 55, tzinfo=dt.UTC)


@given(st.text())
def test_never_raises_on_any_text(key: str) -> None:
    assert parse_key(key).key == key


_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,30}", fullmatch=True)
_hex_id = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
_noise = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
_KINDS = {
    "": KeyKind.ACCESS,
    "conn_log_": KeyKind.CONNECTION,
    "conn_log.": KeyKind.CONNECTION,  # as AWS's user guide once spelled it
    "health_check_log_": KeyKind.HEALTH_CHECK,
}


@st.composite
def real_keys(draw: st.DrawFn) -> tuple[str, KeyInfo]:
    """A key as ELB writes it, under any prefix, with the KeyInfo it must parse to."""
    prefix = draw(_noise)
    lb_kind = draw(st.sampled_from(["classic", "app", "net"]))
    name = draw(_name)
    lb = name if lb_kind == "classic" else f"{lb_kind}.{name}.{draw(_hex_id)}"
    log = "" if lb_kind != "app" else draw(st.sampled_from(sorted(_KINDS)))
    when = draw(
        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31))
    )
    end = when.replace(second=0, microsecond=0, tzinfo=dt.UTC)
    node_ip = None if lb_kind == "net" else draw(st.ip_addresses()).compressed
    suffix = ".log" if lb_kind == "classic" else ".log.gz"
    key = (
        f"{prefix}/AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/{end:%Y/%m/%d}/"
        f"{log}{FILE}{lb}_{end:%Y%m%dT%H%MZ}{'' if node_ip is None else '_' + node_ip}"
        f"_abc123{suffix}"
    )
    lb_type = {"classic": LoadBalancerType.CLASSIC, "app": LoadBalancerType.ALB}.get(
        lb_kind, LoadBalancerType.NLB
    )
    expected = KeyInfo(
        key=key,
        kind=_KINDS[log],
        prefix=prefix,
        account=ACCOUNT,
        region="us-east-1",
        date=end.date(),
        load_balancer=lb,
        lb_type=lb_type,
        end_time=end,
        node_ip=node_ip,
        gzip_suffix=suffix == ".log.gz",
    )
    return key, expected


@given(real_keys())
def test_real_keys_parse_back_to_their_parts(case: tuple[str, KeyInfo]) -> None:
    key, expected = case
    assert parse_key(key) == expected


@given(real_keys(), _noise, st.integers(min_value=0, max_value=300))
def test_any_damage_to_a_real_key_never_raises(
    case: tuple[str, KeyInfo], noise: str, at: int
) -> None:
    key = case[0][:at] + noise + case[0][at:]
    assert parse_key(key).key == key


# What a backfill under a prefix reads: names ELB gives, wherever they are; nothing else a
# logging bucket holds.
NAMED_LIKE_ELB = [
    CLASSIC,
    ALB,
    NLB,
    CONNECTION,
    CONNECTION.replace("/conn_log_", "/conn_log."),
    HEALTH,
    f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile",
    f"team/AWSLogs/{ACCOUNT}/ELBAccessLogTestFile",
    f"team/AWSLogs/{ACCOUNT}/ELBConnectionLogTestFile",
    f"AWSLogs/{ACCOUNT}/ELBHealthCheckLogTestFile",
    "backup/2026/" + CLASSIC.rpartition("/")[2],
    CLASSIC.rpartition("/")[2],
    DAY + "sub/" + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
]
NOT_NAMED_LIKE_ELB = [
    "",
    "AWSLogs/",
    DAY + "notes.txt",
    DAY + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.txt",
    DAY + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log.gz.tmp",
    DAY + "access_log_" + FILE + "my-lb_20261128T2340Z_10.0.2.8_5f6g7h8j.log",
    "s3-access/2026-11-28-23-40-12-ABCDEF0123456789",  # S3 server access logs
    "cloudfront/E2ABCDEFGHIJKL.2026-11-28-23.a1b2c3d4.gz",
    "athena/results/2026/11/28/3f2a.csv",
    *OTHER_SERVICES,
    f"AWSLogs/{ACCOUNT}/ELBAccessLogTestFile.txt",
    *OUT_OF_SHAPE,
]


@pytest.mark.parametrize("key", NAMED_LIKE_ELB)
def test_names_elb_gives_are_log_names(key: str) -> None:
    assert has_log_name(key)


@pytest.mark.parametrize("key", NOT_NAMED_LIKE_ELB)
def test_other_names_are_not(key: str) -> None:
    assert not has_log_name(key)


@given(st.sampled_from(NAMED_LIKE_ELB + NOT_NAMED_LIKE_ELB), st.text(max_size=20))
def test_every_key_parse_key_knows_as_elbs_has_a_log_name(key: str, prefix: str) -> None:
    for candidate in (key, f"{prefix}/{key}"):
        if parse_key(candidate).kind not in (KeyKind.UNKNOWN, KeyKind.OTHER_SERVICE):
            assert has_log_name(candidate)
