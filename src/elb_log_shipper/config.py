"""Settings: the one place the environment is read.

Resolution order, as in Powertools: explicit argument > environment variable > default. The Lambda
handler calls ``Settings.from_env()`` once at cold start; the command line passes its flags as
overrides to the same function, so both validate settings the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from elb_log_shipper.errors import ConfigurationError

__all__ = ["ENV", "MIN_DEADLINE_MARGIN", "Settings"]


class ENV:
    """Names of the environment variables the shipper reads."""

    LOGSTASH_HOST = "LOGSTASH_HOST"
    LOGSTASH_PORT = "LOGSTASH_PORT"
    LOGSTASH_TLS = "LOGSTASH_TLS"
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
    KEEP_ORIGINAL = "KEEP_ORIGINAL"
    DEPLOYMENT_ENVIRONMENT = "DEPLOYMENT_ENVIRONMENT"


# Defaults, each with its reason.
DEFAULT_LOGSTASH_PORT = 5044
# Logstash's tcp input handles a few connections per client well; more only costs file descriptors
# on both sides, and a 1-vCPU Lambda cannot fill more than a few sockets anyway.
DEFAULT_POOL_SIZE = 4
DEFAULT_CONNECT_TIMEOUT = 5.0
# A connection that accepts no byte for this long is dead; a slow reader that keeps reading is not.
DEFAULT_STALL_TIMEOUT = 20.0
# Hundreds of KB per write: big enough to amortise syscalls, small enough that decompressed text
# plus JSON plus the resend buffer stay a few MB.
DEFAULT_BATCH_BYTES = 256 * 1024
# Time left at which the function stops reading and hands the rest of the object off.
DEFAULT_DEADLINE_MARGIN = 30.0
# The least margin that can work: the last 5 s send the hand-off messages (two SQS attempts of
# 2.5 s, pipeline.HANDOFF_RESERVE_SECONDS), and the 5 s before them finish the batch being read
# (a stalled S3 read is abandoned within 0.5 s), send it and confirm delivery (a reconnect alone
# may take LOGSTASH_CONNECT_TIMEOUT, 5 s). Less, and an object too big for one invocation times
# out on every attempt instead of being handed off.
MIN_DEADLINE_MARGIN = 10.0
MAX_DEADLINE_MARGIN = 900.0
# An object that needs more hand-offs than this is failing, not slow: stop and dead-letter it.
DEFAULT_MAX_HOPS = 100

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings of one shipper process.

    >>> Settings.from_env({"LOGSTASH_HOST": "logstash.internal", "LOGSTASH_TLS": "true"}).port
    5044
    """

    host: str | None = None
    port: int = DEFAULT_LOGSTASH_PORT
    tls: bool = False
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    batch_bytes: int = DEFAULT_BATCH_BYTES
    deadline_margin: float = DEFAULT_DEADLINE_MARGIN
    continuation_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    """Where an object past ``max_hops`` goes at once (else its message fails until SQS
    dead-letters it after ``maxReceiveCount`` receives)."""
    max_hops: int = DEFAULT_MAX_HOPS
    keep_original: bool = True
    environment: str | None = None
    """The deployment (blue, green): the ``environment`` dimension of the Lambda's metrics."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises ConfigurationError naming the variable when a value is invalid.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "host": _text(env, ENV.LOGSTASH_HOST),
            "port": _int(env, ENV.LOGSTASH_PORT, DEFAULT_LOGSTASH_PORT, 1, 65535),
            "tls": _bool(env, ENV.LOGSTASH_TLS, False),
            "ca_file": _text(env, ENV.LOGSTASH_CA_FILE),
            "client_cert_file": _text(env, ENV.LOGSTASH_CLIENT_CERT_FILE),
            "client_key_file": _text(env, ENV.LOGSTASH_CLIENT_KEY_FILE),
            "pool_size": _int(env, ENV.LOGSTASH_POOL_SIZE, DEFAULT_POOL_SIZE, 1, 64),
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
            "keep_original": _bool(env, ENV.KEEP_ORIGINAL, True),
            "environment": _text(env, ENV.DEPLOYMENT_ENVIRONMENT),
        }
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
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
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ConfigurationError(
                f"set both {ENV.LOGSTASH_CLIENT_CERT_FILE} and {ENV.LOGSTASH_CLIENT_KEY_FILE} "
                "for a client certificate, or neither"
            )
        if (self.ca_file or self.client_cert_file) and not self.tls:
            raise ConfigurationError(
                f"{ENV.LOGSTASH_CA_FILE} and client certificates need {ENV.LOGSTASH_TLS}=true"
            )
        for path, name in (
            (self.ca_file, ENV.LOGSTASH_CA_FILE),
            (self.client_cert_file, ENV.LOGSTASH_CLIENT_CERT_FILE),
            (self.client_key_file, ENV.LOGSTASH_CLIENT_KEY_FILE),
        ):
            if path is not None and not os.path.isfile(path):
                raise ConfigurationError(f"{name}={path} is not a readable file")

    def require_destination(self) -> Settings:
        """Return self, or raise ConfigurationError when no Logstash host is set."""
        if not self.host:
            raise ConfigurationError(
                f"{ENV.LOGSTASH_HOST} is not set: set it to the host of Logstash's tcp input"
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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
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
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={value} is out of range: use {low} to {high}")
    return value
