"""Settings: the one place the environment is read.

Resolution order, as in Powertools: explicit argument > environment variable > default. The Lambda
handler calls ``Settings.from_env()`` once at cold start; the command line passes its flags as
overrides to the same function, so both validate settings the same way.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import (
    MIN_HASH_KEY_BYTES,
    ClientAddress,
    DropRules,
    PrivacyRules,
    QueryRedaction,
    parse_status_filter,
)

__all__ = [
    "ENV",
    "MAX_POOL_SIZE",
    "MIN_DEADLINE_MARGIN",
    "PROTOCOLS",
    "PROTOCOL_BEATS",
    "PROTOCOL_JSON_LINES",
    "Protocol",
    "Settings",
    "is_host",
]


class ENV:
    """Names of the environment variables the shipper reads."""

    LOGSTASH_HOST = "LOGSTASH_HOST"
    LOGSTASH_PORT = "LOGSTASH_PORT"
    LOGSTASH_TLS = "LOGSTASH_TLS"
    LOGSTASH_PROTOCOL = "LOGSTASH_PROTOCOL"
    LOGSTASH_BEATS_WINDOW_MAX = "LOGSTASH_BEATS_WINDOW_MAX"
    LOGSTASH_BEATS_COMPRESSION = "LOGSTASH_BEATS_COMPRESSION"
    LOGSTASH_CA_FILE = "LOGSTASH_CA_FILE"
    LOGSTASH_CLIENT_CERT_FILE = "LOGSTASH_CLIENT_CERT_FILE"
    LOGSTASH_CLIENT_KEY_FILE = "LOGSTASH_CLIENT_KEY_FILE"
    LOGSTASH_POOL_SIZE = "LOGSTASH_POOL_SIZE"
    LOGSTASH_CONNECT_TIMEOUT = "LOGSTASH_CONNECT_TIMEOUT"
    LOGSTASH_STALL_TIMEOUT = "LOGSTASH_STALL_TIMEOUT"
    LOGSTASH_BATCH_BYTES = "LOGSTASH_BATCH_BYTES"
    DEADLINE_MARGIN_SECONDS = "DEADLINE_MARGIN_SECONDS"
    CONTINUATION_QUEUE_URL = "CONTINUATION_QUEUE_URL"
    DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
    MAX_HOPS = "MAX_HOPS"
    LOG_PREFIX = "LOG_PREFIX"
    LOG_BUCKET = "LOG_BUCKET"
    KEEP_ORIGINAL = "KEEP_ORIGINAL"
    REDACT_QUERY = "REDACT_QUERY"
    CLIENT_IP = "CLIENT_IP"
    CLIENT_IP_HASH_KEY_PARAMETER = "CLIENT_IP_HASH_KEY_PARAMETER"
    DROP_USER_AGENT_PREFIXES = "DROP_USER_AGENT_PREFIXES"
    DROP_METHODS = "DROP_METHODS"
    DROP_STATUS = "DROP_STATUS"
    DROP_PATH_PREFIXES = "DROP_PATH_PREFIXES"
    DROP_PATH_SUFFIXES = "DROP_PATH_SUFFIXES"

    MAX_EVENT_BYTES = "MAX_EVENT_BYTES"
    DEPLOYMENT_ENVIRONMENT = "DEPLOYMENT_ENVIRONMENT"


class Protocol(StrEnum):
    """The wire protocols: json_lines for Logstash's tcp input (confirmed by a graceful close),
    beats for its beats input (acknowledged, compressed, connections kept open)."""

    JSON_LINES = "json_lines"
    BEATS = "beats"


PROTOCOL_JSON_LINES = Protocol.JSON_LINES
PROTOCOL_BEATS = Protocol.BEATS
PROTOCOLS = tuple(Protocol)

# Defaults, each with its reason.
DEFAULT_LOGSTASH_PORT = 5044
# libbeat's bulk_max_size: Logstash's beats input takes windows this large without strain.
DEFAULT_BEATS_WINDOW_MAX = 2048
# libbeat's compression_level default; 0 sends plain JSON frames.
DEFAULT_BEATS_COMPRESSION = 3
# Logstash's tcp input handles a few connections per client well; more only costs file descriptors
# on both sides, and a 1-vCPU Lambda cannot fill more than a few sockets anyway.
DEFAULT_POOL_SIZE = 4
# Far more than one process can fill; a larger pool only holds sockets open on Logstash.
MAX_POOL_SIZE = 64
DEFAULT_CONNECT_TIMEOUT = 5.0
# A connection that accepts no byte for this long is dead; a slow reader that keeps reading is not.
DEFAULT_STALL_TIMEOUT = 20.0
# Hundreds of KB per write: big enough to amortise syscalls, small enough that decompressed text
# plus JSON plus the resend buffer stay a few MB.
DEFAULT_BATCH_BYTES = 256 * 1024
# A beats batch is a window, whose cost on the sender threads is per window (a queue hand-over,
# the compression call, a write, an ACK read: each gives the GIL to the parsing thread and takes
# it back): four times the json_lines batch (~400 ALB events, libbeat sends up to 2048) makes those
# four times rarer per event, and still holds only a few MB in flight.
DEFAULT_BEATS_BATCH_BYTES = 1024 * 1024
# Time left at which the function stops reading and hands the rest of the object off.
DEFAULT_DEADLINE_MARGIN = 30.0
# The least margin that can work: the last 5 s send the hand-off messages (two SQS attempts of
# 2.5 s, pipeline.HANDOFF_RESERVE_SECONDS), and the 5 s before them finish the batch being read
# (a stalled S3 read is abandoned within 0.5 s), send it and confirm delivery (a reconnect alone
# may take LOGSTASH_CONNECT_TIMEOUT, 5 s). Less, and an object too big for one invocation times
# out on every attempt instead of being handed off.
MIN_DEADLINE_MARGIN = 10.0
MAX_DEADLINE_MARGIN = 900.0
# Below syslog-ng's default log-msg-size (64 KiB), with room for its framing, so that an event is
# never split into invalid JSON there; Logstash's tcp input has no limit, rsyslog's is 8 KiB.
# An event is about three times its line (the URL is in event.original, url.original and more).
DEFAULT_MAX_EVENT_BYTES = 60 * 1024
# An event cut below this would lose its short fields; above it, one event would be a batch.
MIN_MAX_EVENT_BYTES = 4 * 1024
MAX_MAX_EVENT_BYTES = 64 * 1024 * 1024
# An object that needs more hand-offs than this is failing, not slow: stop and dead-letter it.
DEFAULT_MAX_HOPS = 100
# S3's longest key, in UTF-8 bytes: a longer prefix can match no object.
MAX_KEY_BYTES = 1024

_Choice = TypeVar("_Choice", bound=StrEnum)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings of one shipper process.

    >>> Settings.from_env({"LOGSTASH_HOST": "logstash.internal", "LOGSTASH_TLS": "true"}).port
    5044
    """

    host: str | None = None
    port: int = DEFAULT_LOGSTASH_PORT
    tls: bool = False
    protocol: str = PROTOCOL_JSON_LINES
    beats_window_max: int = DEFAULT_BEATS_WINDOW_MAX
    """At most this many events per beats window (windows start small and grow on ACKs)."""
    beats_compression: int = DEFAULT_BEATS_COMPRESSION
    """zlib level of beats windows, 1-9; 0 sends plain JSON frames."""
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    batch_bytes: int = DEFAULT_BATCH_BYTES
    """How large a batch the pipeline hands the sink, in serialised bytes (``from_env``:
    ``DEFAULT_BEATS_BATCH_BYTES`` for beats unless ``LOGSTASH_BATCH_BYTES`` is set)."""
    deadline_margin: float = DEFAULT_DEADLINE_MARGIN
    continuation_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    """Where an object past ``max_hops`` goes at once (else its message fails until SQS
    dead-letters it after ``maxReceiveCount`` receives)."""
    max_hops: int = DEFAULT_MAX_HOPS
    log_prefix: str | None = None
    """The function ships only keys that start with this (the template's ``LogPrefix``, the
    keys its role may read) and skips others with a reason; ``None`` ships every key."""
    log_bucket: str | None = None
    """The function ships only objects of this bucket (the template's ``LogBucketName``, the
    one its role may read) and skips others with a reason; ``None`` ships from any bucket."""
    keep_original: bool = True
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """Events larger than this ship with their longest texts cut (tagged ``_elbtruncated``)."""
    environment: str | None = None
    """The deployment (blue, green): the ``environment`` dimension of the Lambda's metrics."""
    redact_query: QueryRedaction = QueryRedaction.NONE
    client_ip: ClientAddress = ClientAddress.KEEP
    client_ip_hash_key_parameter: str | None = None
    """SSM parameter (a SecureString, or ``/aws/reference/secretsmanager/NAME`` for a Secrets
    Manager secret) holding the HMAC key of ``CLIENT_IP=hash``. The key itself is never a
    setting: the entry points fetch it."""
    drop_user_agent_prefixes: tuple[str, ...] = ()
    drop_methods: tuple[str, ...] = ()
    drop_status: tuple[str, ...] = ()
    """Codes (``304``) and classes (``2xx``) as configured."""
    drop_path_prefixes: tuple[str, ...] = ()
    drop_path_suffixes: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises ConfigurationError naming the variable when a value is invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "host": _host(env, ENV.LOGSTASH_HOST),
            "port": _int(env, ENV.LOGSTASH_PORT, DEFAULT_LOGSTASH_PORT, 1, 65535),
            "tls": _bool(env, ENV.LOGSTASH_TLS, False),
            "protocol": _choice(env, ENV.LOGSTASH_PROTOCOL, Protocol, Protocol.JSON_LINES),
            "beats_window_max": _int(
                env, ENV.LOGSTASH_BEATS_WINDOW_MAX, DEFAULT_BEATS_WINDOW_MAX, 1, 65536
            ),
            "beats_compression": _int(
                env, ENV.LOGSTASH_BEATS_COMPRESSION, DEFAULT_BEATS_COMPRESSION, 0, 9
            ),
            "ca_file": _text(env, ENV.LOGSTASH_CA_FILE),
            "client_cert_file": _text(env, ENV.LOGSTASH_CLIENT_CERT_FILE),
            "client_key_file": _text(env, ENV.LOGSTASH_CLIENT_KEY_FILE),
            "pool_size": _int(env, ENV.LOGSTASH_POOL_SIZE, DEFAULT_POOL_SIZE, 1, MAX_POOL_SIZE),
            "connect_timeout": _float(
                env, ENV.LOGSTASH_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, 0.1, 60
            ),
            "stall_timeout": _float(
                env, ENV.LOGSTASH_STALL_TIMEOUT, DEFAULT_STALL_TIMEOUT, 0.1, 600
            ),
            "batch_bytes": _int(
                env, ENV.LOGSTASH_BATCH_BYTES, DEFAULT_BATCH_BYTES, 1024, 16 * 1024 * 1024
            ),
            "deadline_margin": _float(
                env, ENV.DEADLINE_MARGIN_SECONDS, DEFAULT_DEADLINE_MARGIN, 0, MAX_DEADLINE_MARGIN
            ),
            "continuation_queue_url": _text(env, ENV.CONTINUATION_QUEUE_URL),
            "dead_letter_queue_url": _text(env, ENV.DEAD_LETTER_QUEUE_URL),
            "max_hops": _int(env, ENV.MAX_HOPS, DEFAULT_MAX_HOPS, 1, 10_000),
            # Not stripped: a key may start or end with a space.
            "log_prefix": env.get(ENV.LOG_PREFIX) or None,
            "log_bucket": _text(env, ENV.LOG_BUCKET),
            "keep_original": _bool(env, ENV.KEEP_ORIGINAL, True),
            "max_event_bytes": _int(
                env,
                ENV.MAX_EVENT_BYTES,
                DEFAULT_MAX_EVENT_BYTES,
                MIN_MAX_EVENT_BYTES,
                MAX_MAX_EVENT_BYTES,
            ),
            "environment": _text(env, ENV.DEPLOYMENT_ENVIRONMENT),
            "redact_query": _choice(env, ENV.REDACT_QUERY, QueryRedaction, QueryRedaction.NONE),
            "client_ip": _choice(env, ENV.CLIENT_IP, ClientAddress, ClientAddress.KEEP),
            "client_ip_hash_key_parameter": _text(env, ENV.CLIENT_IP_HASH_KEY_PARAMETER),
            "drop_user_agent_prefixes": _list(env, ENV.DROP_USER_AGENT_PREFIXES),
            "drop_methods": _list(env, ENV.DROP_METHODS),
            "drop_status": _list(env, ENV.DROP_STATUS),
            "drop_path_prefixes": _list(env, ENV.DROP_PATH_PREFIXES),
            "drop_path_suffixes": _list(env, ENV.DROP_PATH_SUFFIXES),
        }
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
        if (
            values["protocol"] == Protocol.BEATS
            and _text(env, ENV.LOGSTASH_BATCH_BYTES) is None  # unset or blank: the default
            and overrides.get("batch_bytes") is None
        ):
            values["batch_bytes"] = DEFAULT_BEATS_BATCH_BYTES
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check the relations between settings; raise ConfigurationError when they conflict."""
        if self.deadline_margin < MIN_DEADLINE_MARGIN:
            raise ConfigurationError(
                f"{ENV.DEADLINE_MARGIN_SECONDS}={self.deadline_margin:g} is too small: use at "
                f"least {MIN_DEADLINE_MARGIN:g} s, 5 s to send the hand-off and 5 s to confirm "
                "what was sent, or large objects time out instead of being handed off"
            )
        if self.protocol not in PROTOCOLS:
            raise ConfigurationError(
                f"{ENV.LOGSTASH_PROTOCOL}={self.protocol!r} is unknown: use "
                + " or ".join(PROTOCOLS)
            )
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ConfigurationError(
                f"set both {ENV.LOGSTASH_CLIENT_CERT_FILE} and {ENV.LOGSTASH_CLIENT_KEY_FILE} "
                "(--client-cert and --client-key on the command line) for a client certificate, "
                "or neither"
            )
        if (self.ca_file or self.client_cert_file) and not self.tls:
            raise ConfigurationError(
                f"{ENV.LOGSTASH_CA_FILE} and client certificates need {ENV.LOGSTASH_TLS}=true"
            )
        for path, name, flag in (
            (self.ca_file, ENV.LOGSTASH_CA_FILE, "--ca-file"),
            (self.client_cert_file, ENV.LOGSTASH_CLIENT_CERT_FILE, "--client-cert"),
            (self.client_key_file, ENV.LOGSTASH_CLIENT_KEY_FILE, "--client-key"),
        ):
            if path is not None and not os.path.isfile(path):
                raise ConfigurationError(
                    f"{name}={path} is not a readable file (on the command line: {flag})"
                )
        prefix_bytes = len((self.log_prefix or "").encode(errors="surrogateescape"))
        if prefix_bytes > MAX_KEY_BYTES:
            raise ConfigurationError(
                f"{ENV.LOG_PREFIX} is {prefix_bytes} bytes long: S3 keys are at "
                f"most {MAX_KEY_BYTES}, so it matches no object; set the prefix the load "
                "balancers write under, such as AWSLogs/"
            )
        if self.log_prefix is not None and self.log_prefix.startswith("/"):
            raise ConfigurationError(
                f"{ENV.LOG_PREFIX}={self.log_prefix!r} starts with '/', which no key ELB writes "
                "does: set it as the load balancers' prefix reads, such as AWSLogs/"
            )
        if self.log_bucket is not None and ("/" in self.log_bucket or ":" in self.log_bucket):
            raise ConfigurationError(
                f"{ENV.LOG_BUCKET}={self.log_bucket!r} is no bucket name: set the name alone "
                "(logs, not s3://logs/)"
            )
        self.drop_rules()
        if self.client_ip is ClientAddress.KEEP and self.client_ip_hash_key_parameter:
            raise ConfigurationError(
                f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER} is set but {ENV.CLIENT_IP} is keep, so client "
                f"addresses ship in full: set {ENV.CLIENT_IP}=hash to hash them, or unset the "
                "parameter (on the command line: --client-ip hash, or --client-ip keep to ship "
                "them in full)"
            )
        if self.client_ip is ClientAddress.HASH and not self.client_ip_hash_key_parameter:
            raise ConfigurationError(
                f"{ENV.CLIENT_IP}=hash needs {ENV.CLIENT_IP_HASH_KEY_PARAMETER}: the name of the "
                "SSM parameter that holds the HMAC key"
            )

    def drop_rules(self) -> DropRules:
        """The drop filters; raise ConfigurationError naming the variable of an invalid one."""
        for prefix in self.drop_path_prefixes:
            if not prefix.startswith("/"):
                raise ConfigurationError(
                    f"{ENV.DROP_PATH_PREFIXES}: {prefix!r} is not a path: start it with /"
                )
        for method in self.drop_methods:
            if not method.isascii() or not method.isalpha():
                raise ConfigurationError(
                    f"{ENV.DROP_METHODS}: {method!r} is not an HTTP method such as OPTIONS"
                )
        try:
            status = parse_status_filter(self.drop_status)
        except ValueError as error:
            raise ConfigurationError(
                f"{ENV.DROP_STATUS}: {str(error)!r} is neither a status code (304) nor a class "
                "(2xx)"
            ) from None
        return DropRules(
            user_agent_prefixes=self.drop_user_agent_prefixes,
            methods=frozenset(method.upper() for method in self.drop_methods),
            status=status,
            path_prefixes=self.drop_path_prefixes,
            path_suffixes=self.drop_path_suffixes,
        )

    def privacy_rules(self, hash_key: bytes | None = None) -> PrivacyRules | None:
        """The privacy rules these settings describe, or None when they change nothing.

        ``hash_key`` is the HMAC key (fetched from ``client_ip_hash_key_parameter``), needed for
        ``CLIENT_IP=hash`` only. Raises ConfigurationError when it is missing or too short.

        >>> Settings(client_ip=ClientAddress.TRUNCATE).privacy_rules().client_ip.value
        'truncate'
        """
        if self.client_ip is ClientAddress.HASH and (
            hash_key is None or len(hash_key) < MIN_HASH_KEY_BYTES
        ):
            raise ConfigurationError(
                f"the HMAC key in {ENV.CLIENT_IP_HASH_KEY_PARAMETER}="
                f"{self.client_ip_hash_key_parameter} is shorter than {MIN_HASH_KEY_BYTES} bytes: "
                "store a longer random value"
            )
        rules = PrivacyRules(
            redact_query=self.redact_query,
            client_ip=self.client_ip,
            hash_key=hash_key if self.client_ip is ClientAddress.HASH else None,
            drop=self.drop_rules(),
        )
        return None if rules.changes_nothing else rules

    def require_destination(self) -> Settings:
        """Return self, or raise ConfigurationError when no Logstash host is set."""
        if not self.host:
            raise ConfigurationError(
                f"{ENV.LOGSTASH_HOST} is not set: set it to the host of Logstash's tcp input"
                " (or beats input)"
            )
        return self

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some settings changed, validated."""
        settings = replace(self, **changes)
        settings.validate()
        return settings


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


# A DNS name (letters, digits, '-', '.', and '_' as some private zones use) or an IPv4 address;
# IPv6 addresses are told by ipaddress. Anything else (a port, a scheme, a path, a space) cannot
# be resolved: taken, it failed each invocation after a minute of retries, as if Logstash were down.
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def is_host(text: str) -> bool:
    """Whether ``text`` is a host name or an IP address (IPv6 without brackets).

    >>> is_host("logstash.internal"), is_host("fe80::1%eth0"), is_host("bad host")
    (True, True, False)
    """
    if _HOST_NAME.fullmatch(text):
        return True
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _host(env: Mapping[str, str], name: str) -> str | None:
    """A host name or an IP address (IPv6 without brackets)."""
    value = _text(env, name)
    if value is not None and not is_host(value):
        raise ConfigurationError(
            f"{name}={value!r} is not a host name or an IP address: give the port in "
            f"{ENV.LOGSTASH_PORT}, TLS in {ENV.LOGSTASH_TLS}, the protocol in "
            f"{ENV.LOGSTASH_PROTOCOL}, and an IPv6 address without brackets"
        )
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around items and empty items are ignored."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _choice(env: Mapping[str, str], name: str, choices: type[_Choice], default: _Choice) -> _Choice:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return choices(raw.lower())
    except ValueError:
        allowed = ", ".join(choice.value for choice in choices)
        raise ConfigurationError(f"{name}={raw!r} is not valid: use one of {allowed}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "")
    value = raw.strip().lower()
    if not value:  # unset or blank means the default, as for every other setting
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean: use true or false")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={value} is out of range: use {low} to {high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds") from None
    if math.isnan(value):
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds")
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={value:g} is out of range: use {low:g} to {high:g}")
    return value
