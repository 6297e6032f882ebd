"""What an S3 object key says about the log inside it. Pure: a string in, a ``KeyInfo`` out.

Elastic Load Balancing writes every log under one layout (AWS ELB user guides, "access log
files", "connection log files", "health check log files")::

    [prefix/]AWSLogs/<account>/elasticloadbalancing/<region>/<yyyy>/<mm>/<dd>/<file>

    <file> = [conn_log_|health_check_log_]<account>_elasticloadbalancing_<region>_<lb>_
             <end-time>[_<node-ip>]_<random>.log[.gz]

- Classic: ``<lb>`` is the load balancer's name (letters, digits, hyphens), files end ``.log``.
- ALB: ``<lb>`` is ``app.<name>.<id>`` (the resource id ``app/<name>/<id>`` with ``/`` made
  ``.``), files end ``.log.gz``. Connection logs start ``conn_log_`` (with an underscore, whatever
  older docs said: their ``conn_log.`` is taken too), health-check logs ``health_check_log_``.
- NLB: ``<lb>`` is ``net.<name>.<id>``, ``.log.gz``, and no ``<node-ip>``.
- ``<end-time>`` (``20140215T2340Z``, UTC) ends the interval the file covers; ``<yyyy>/<mm>/<dd>``
  is the day the file was delivered, so a file ending at 23:55 can sit in the next day's folder.
- Enabling logging writes a test file, not a log: ``[prefix/]AWSLogs/<account>/`` then
  ``ELBAccessLogTestFile`` (access logs), ``ELBConnectionLogTestFile`` (connection logs: AWS,
  "Enable connection logs for your Application Load Balancer", step 4) or
  ``ELBHealthCheckLogTestFile`` (health check logs).

``parse_key`` never raises: a key it does not recognise is ``KeyKind.UNKNOWN``, with whatever the
folders did reveal (account, region, date) filled in.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["TEST_FILES", "KeyInfo", "KeyKind", "LoadBalancerType", "has_log_name", "parse_key"]


class KeyKind(StrEnum):
    """What kind of object a key names."""

    ACCESS = "access"
    CONNECTION = "connection"
    HEALTH_CHECK = "health_check"
    TEST_FILE = "test_file"
    # Another service's logs in the same layout (AWSLogs/<account>/CloudTrail/..., vpcflowlogs,
    # WAFLogs...): a central logging bucket holds them beside ELB's.
    OTHER_SERVICE = "other_service"
    UNKNOWN = "unknown"


class LoadBalancerType(StrEnum):
    """The load balancer type, as the ``<lb>`` part of a file name tells it."""

    CLASSIC = "classic"
    ALB = "alb"
    NLB = "nlb"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a key says. Fields the key does not reveal are ``None``.

    ``load_balancer`` is the ``<lb>`` part as written in the file name (``my-lb``,
    ``app.my-lb.50dc6c495c0c9188``); ``load_balancer_id`` turns it back into the resource id that
    the log lines themselves carry (``app/my-lb/50dc6c495c0c9188``), which is what an event
    should be tagged with. ``prefix`` is the user's prefix before ``AWSLogs/``, without the
    trailing slash ("" when there is none).

    >>> info = parse_key("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/"
    ...     "123456789012_elasticloadbalancing_us-east-1_app.my-lb.50dc6c495c0c9188_"
    ...     "20261128T2340Z_10.0.1.7_2a3b4c5d.log.gz")
    >>> (info.kind.value, info.lb_type.value, info.load_balancer_id)
    ('access', 'alb', 'app/my-lb/50dc6c495c0c9188')
    """

    key: str
    kind: KeyKind
    prefix: str = ""
    account: str | None = None
    region: str | None = None
    date: dt.date | None = None
    load_balancer: str | None = None
    lb_type: LoadBalancerType | None = None
    end_time: dt.datetime | None = None
    node_ip: str | None = None
    gzip_suffix: bool = False
    """The name ends ``.gz``. A hint only: readers must detect gzip by its magic bytes."""

    @property
    def load_balancer_id(self) -> str | None:
        """The load balancer as its log lines name it: ``app/<name>/<id>``, or the Classic name."""
        if self.load_balancer is None or self.lb_type is LoadBalancerType.CLASSIC:
            return self.load_balancer
        return self.load_balancer.replace(".", "/")

    @property
    def is_log(self) -> bool:
        """The key names a log file of a kind we know (access, connection or health check)."""
        return self.kind in (KeyKind.ACCESS, KeyKind.CONNECTION, KeyKind.HEALTH_CHECK)


# Accounts are always 12 digits; regions are lowercase words and digits joined by hyphens.
_ACCOUNT = r"[0-9]{12}"
_REGION = r"[a-z0-9]+(?:-[a-z0-9]+)+"

# The name of each test file ELB writes when a kind of log is enabled, and that kind.
TEST_FILES = {
    "ELBAccessLogTestFile": "access",
    "ELBConnectionLogTestFile": "connection",
    "ELBHealthCheckLogTestFile": "health check",
}

# Keys may hold any character, newlines included, hence DOTALL for the user's prefix.
_TEST_FILE = re.compile(
    rf"(?:(?P<prefix>.*)/)?AWSLogs/(?P<account>{_ACCOUNT})/(?:{'|'.join(TEST_FILES)})",
    re.DOTALL,
)

_FOLDERS = re.compile(
    rf"(?:(?P<prefix>.*)/)?AWSLogs/(?P<account>{_ACCOUNT})/elasticloadbalancing/"
    rf"(?P<region>{_REGION})/(?P<year>[0-9]{{4}})/(?P<month>[0-9]{{2}})/(?P<day>[0-9]{{2}})/"
    r"(?P<file>[^/]+)",
    re.DOTALL,
)

# Names are letters, digits and hyphens, so "_" separates the fields. The node IP is IPv4 or IPv6
# (colons), and is absent for NLBs.
_FILE = re.compile(
    rf"(?:(?P<log>conn_log|health_check_log)[._])?(?P<account>{_ACCOUNT})_elasticloadbalancing_"
    rf"(?P<region>{_REGION})_(?P<lb>[A-Za-z0-9.-]+)_"
    r"(?P<end>[0-9]{8}T[0-9]{4}Z)(?:_(?P<ip>[0-9A-Fa-f.:]+))?_(?P<random>[A-Za-z0-9]+)"
    r"\.log(?P<gz>\.gz)?"
)

# The last `AWSLogs/<account>/<folder>/` of a key: the folder names the service that wrote it.
_SERVICE = re.compile(rf"(?:.*/)?AWSLogs/{_ACCOUNT}/(?P<service>[^/]+)/", re.DOTALL)
_NOT_OTHER_SERVICES = frozenset({"elasticloadbalancing", *TEST_FILES})

_KIND_OF_PREFIX = {
    None: KeyKind.ACCESS,
    "conn_log": KeyKind.CONNECTION,
    "health_check_log": KeyKind.HEALTH_CHECK,
}


def parse_key(key: str) -> KeyInfo:
    """Read account, region, date, load balancer, log kind and interval end from an object key.

    Never raises: anything that is not an ELB log key is ``KeyKind.UNKNOWN``.

    >>> parse_key("logs/AWSLogs/123456789012/ELBAccessLogTestFile").kind
    <KeyKind.TEST_FILE: 'test_file'>
    >>> parse_key("AWSLogs/123456789012/ELBConnectionLogTestFile").kind
    <KeyKind.TEST_FILE: 'test_file'>
    >>> parse_key("AWSLogs/123456789012/elasticloadbalancing/eu-west-1/2024/02/07/"
    ...     "conn_log_123456789012_elasticloadbalancing_eu-west-1_app.web.5ede558f4b0e97a9_"
    ...     "20240207T0955Z_10.43.1.2_b38hdhc6.log.gz").end_time.isoformat()
    '2024-02-07T09:55:00+00:00'
    >>> parse_key("not/a/log.txt").kind
    <KeyKind.UNKNOWN: 'unknown'>
    >>> parse_key("AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/01/x.json.gz").kind
    <KeyKind.OTHER_SERVICE: 'other_service'>
    """
    test_file = _TEST_FILE.fullmatch(key)
    if test_file:
        return KeyInfo(
            key=key,
            kind=KeyKind.TEST_FILE,
            prefix=test_file["prefix"] or "",
            account=test_file["account"],
        )

    folders = _FOLDERS.fullmatch(key)
    if folders is None:
        service = _SERVICE.match(key)
        if (
            service is not None
            and service["service"] not in _NOT_OTHER_SERVICES
            # An ELB log's own name, in folders of someone's making (a copy, an archive).
            and _FILE.fullmatch(key.rpartition("/")[2]) is None
        ):
            return KeyInfo(key=key, kind=KeyKind.OTHER_SERVICE)
        return KeyInfo(key=key, kind=KeyKind.UNKNOWN)
    known = KeyInfo(
        key=key,
        kind=KeyKind.UNKNOWN,
        prefix=folders["prefix"] or "",
        account=folders["account"],
        region=folders["region"],
        date=_date(folders["year"], folders["month"], folders["day"]),
    )

    name = _FILE.fullmatch(folders["file"])
    # The file name repeats account and region; a name that disagrees with its folders was not
    # written there by ELB.
    if (
        name is None
        or known.date is None
        or name["account"] != known.account
        or name["region"] != known.region
    ):
        return known
    end_time = _end_time(name["end"])
    if end_time is None:
        return known
    lb = name["lb"]
    lb_type = _lb_type(lb)
    if lb_type is None:
        return known
    return KeyInfo(
        key=key,
        kind=_KIND_OF_PREFIX[name["log"]],
        prefix=known.prefix,
        account=known.account,
        region=known.region,
        date=known.date,
        load_balancer=lb,
        lb_type=lb_type,
        end_time=end_time,
        node_ip=name["ip"],
        gzip_suffix=name["gz"] is not None,
    )


def has_log_name(key: str) -> bool:
    """Whether ``key`` has a name ELB gives: a log file's (in any folders: a copy or an archive
    keeps it) or the test file's. Not S3 server access logs, CloudTrail's, CloudFront's, Athena's
    results or anything else a bucket holds beside ELB's logs.

    >>> has_log_name("backup/123456789012_elasticloadbalancing_us-east-1_my-lb_"
    ...     "20240301T0005Z_10.0.0.1_x1y2.log")
    True
    >>> has_log_name("logs/2024-03-01-00-05-12-ABCDEF0123456789")
    False
    """
    name = key.rpartition("/")[2]
    return _FILE.fullmatch(name) is not None or _TEST_FILE.fullmatch(key) is not None


def _lb_type(lb: str) -> LoadBalancerType | None:
    parts = lb.split(".")
    if not all(parts):
        return None
    if len(parts) == 1:
        return LoadBalancerType.CLASSIC
    if len(parts) == 3 and parts[0] == "app":
        return LoadBalancerType.ALB
    if len(parts) == 3 and parts[0] == "net":
        return LoadBalancerType.NLB
    return None


def _date(year: str, month: str, day: str) -> dt.date | None:
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def _end_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%dT%H%MZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
