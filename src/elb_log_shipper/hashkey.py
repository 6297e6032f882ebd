"""The HMAC key of ``CLIENT_IP=hash``: read from SSM Parameter Store through Powertools.

The key is never a setting of its own: ``CLIENT_IP_HASH_KEY_PARAMETER`` names an SSM parameter
(a SecureString; ``/aws/reference/secretsmanager/NAME`` reads a Secrets Manager secret through
SSM), and Powertools' parameters utility fetches it and caches it for ``HASH_KEY_MAX_AGE_SECONDS``,
so a warm Lambda container asks SSM at most once in that time. Both entry points (the handler,
the command line) build their privacy rules here.

A parameter of another type than SecureString is refused: a ``String`` or ``StringList`` is stored
unencrypted and shown in clear in the console, in the parameter's history and in CloudTrail, where
a pseudonymisation key must not be (AWS: no sensitive data in a String or StringList parameter).

SSM that does not answer (a function in a VPC without a route to it, throttling, an outage) costs
seconds, not botocore's minutes, and does not stop a container that read the key before: when a
refresh gets no answer, the key read last is used for up to ``HASH_KEY_STALE_LIMIT_SECONDS``
(SSM is asked again after ``HASH_KEY_RETRY_SECONDS``). An answer that refuses (no such parameter,
access denied) is never covered so: deleting the parameter stops the hashing at the next refresh,
and the key read before is forgotten, so that no later refresh SSM does not answer brings it back.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import BaseProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoRegionError
from botocore.exceptions import ConnectionError as BotoConnectionError

from elb_log_shipper.awssetup import (
    SET_UP_CREDENTIALS,
    client_setup,
    credentials_failed,
    region,
)
from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import ClientAddress, PrivacyRules

__all__ = [
    "HASH_KEY_MAX_AGE_SECONDS",
    "HASH_KEY_RETRY_SECONDS",
    "HASH_KEY_STALE_LIMIT_SECONDS",
    "SECRETS_MANAGER_REFERENCE",
    "SECURE_STRING",
    "SSM_CONNECT_TIMEOUT",
    "SSM_MAX_ATTEMPTS",
    "SSM_READ_TIMEOUT",
    "fetch_hash_key",
    "forget_hash_key_client",
    "privacy_rules",
]

# A rotated key reaches warm containers within this time; until then they hash with the old one.
HASH_KEY_MAX_AGE_SECONDS = 300
# How long a key read before is used when SSM does not answer a refresh: an outage of SSM (or of
# the route to it) shorter than this costs nothing; a longer one fails invocations, which Lambda
# and the continuation queue retry.
HASH_KEY_STALE_LIMIT_SECONDS = 3600
# While the stale key is in use, SSM is asked again after this long, not on every invocation
# (each unanswered request costs up to its timeouts).
HASH_KEY_RETRY_SECONDS = 60
# GetParameter answers in milliseconds. botocore's defaults (60 s to connect, 60 s to read, three
# attempts) made an unreachable endpoint cost three minutes of every invocation: at most
# 2 x (2 + 3) s here, and the message says what to look at.
SSM_CONNECT_TIMEOUT = 2.0
SSM_READ_TIMEOUT = 3.0
SSM_MAX_ATTEMPTS = 2

_log = logging.getLogger(__name__)
# The one parameter type that is encrypted at rest (KMS) and hidden in the console and history.
# GetParameter names a Secrets Manager secret read through /aws/reference/secretsmanager/ this too.
SECURE_STRING = "SecureString"
# SSM's reserved path that reads the Secrets Manager secret named after it (as the caller).
SECRETS_MANAGER_REFERENCE = "/aws/reference/secretsmanager/"


class _TypedParameters(BaseProvider):
    """Powertools' cache over SSM GetParameter, keeping each parameter's Type with its value.

    Powertools' own SSMProvider returns the value alone and drops the Type that the same
    GetParameter response carries. This is Powertools' documented way to bring another store
    (a BaseProvider with ``_get``): one GetParameter per parameter and ``max_age`` gives both,
    cached together, so checking the type costs no second call. DescribeParameters would: a
    second request per cold start, a grant on every parameter of the account (it takes no
    resource), and no answer for a Secrets Manager reference.
    """

    def __init__(self) -> None:
        self.client = boto3.client(
            "ssm",
            region_name=region(),
            config=Config(
                connect_timeout=SSM_CONNECT_TIMEOUT,
                read_timeout=SSM_READ_TIMEOUT,
                retries={"mode": "standard", "total_max_attempts": SSM_MAX_ATTEMPTS},
            ),
        )
        super().__init__(client=self.client)  # type: ignore[no-untyped-call]

    def _get(self, name: str, **sdk_options: Any) -> dict[str, str]:
        found = self.client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        parameter = {"Type": str(found["Type"]), "Value": str(found["Value"])}
        _answered[name] = (parameter, time.monotonic())
        return parameter

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        raise NotImplementedError("the hash key is one parameter")


# The last answer SSM gave for each parameter, and when (time.monotonic()): what a refresh that
# gets no answer falls back on. Kept for the process, as a container outlives its clients.
_answered: dict[str, tuple[dict[str, str], float]] = {}
# Parameter name -> when SSM may be asked again, while its stale key is in use.
_quiet_until: dict[str, float] = {}


def _unanswered(error: BaseException | None) -> bool:
    """Whether ``error`` says SSM gave no answer (no connection, a timeout, a connection closed
    mid-answer, throttling, a server error), as opposed to an answer that refuses."""
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or "Throttl" in code
    return False


@functools.cache
def _parameters() -> _TypedParameters:
    """The process's one provider, made at the first fetch (a container that does not hash never
    builds an SSM client); its cache lives as long as the container."""
    return _TypedParameters()


def forget_hash_key_client() -> None:
    """Close the SSM client and forget what it cached; the next fetch builds a new one from the
    environment then (tests that move from one SSM endpoint to another). SSM's last answers
    stay: they stand in for an answer SSM does not give, whichever client asked."""
    if _parameters.cache_info().currsize:
        _parameters().client.close()
    _parameters.cache_clear()


def fetch_hash_key(name: str) -> bytes:
    """The key stored in SSM parameter ``name`` (decrypted), from Powertools' cache when fresh.

    Raises ConfigurationError when it cannot be read, or when the parameter is not a
    SecureString.

    >>> fetch_hash_key("/elb-log-shipper/client-ip-hash-key")  # doctest: +SKIP
    b'...'
    """
    parameter = None
    if time.monotonic() < _quiet_until.get(name, 0.0):
        parameter = _stale(name)  # SSM did not answer a moment ago: not asked again yet
    if parameter is None:
        with client_setup("ssm"):
            try:
                provider = _parameters()
            except NoRegionError:
                raise ConfigurationError(
                    f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} cannot be read without an AWS "
                    "region: set AWS_REGION (or AWS_DEFAULT_REGION) to the parameter's region"
                ) from None
        try:
            fetched = provider.get(name, max_age=HASH_KEY_MAX_AGE_SECONDS)
            assert isinstance(fetched, dict), type(fetched)  # never the answer: it holds the key
            parameter = fetched
            _quiet_until.pop(name, None)
        except GetParameterError as error:
            # Powertools raises GetParameterError from within its handler of botocore's error.
            if credentials_failed(error.__context__):
                raise ConfigurationError(
                    f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} could not be read: no usable AWS "
                    f"credentials ({error}); {SET_UP_CREDENTIALS}"
                ) from None
            if not _unanswered(error.__context__):
                # A refusal (deleted, access denied) ends the key read before: a later refresh
                # that SSM does not answer must not bring it back.
                _answered.pop(name, None)
                raise ConfigurationError(
                    f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} could not be read ({error}): "
                    f"{_how_to_read(name)}"
                ) from None
            parameter = _stale(name)
            if parameter is None:
                raise ConfigurationError(
                    f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} could not be read: SSM did not "
                    f"answer ({error}). If it throttled, the next invocation asks again; a "
                    "function in a VPC reaches SSM through an interface endpoint "
                    "(com.amazonaws.REGION.ssm) or a NAT gateway"
                ) from None
            now = time.monotonic()
            _quiet_until[name] = now + HASH_KEY_RETRY_SECONDS
            _log.warning(
                "SSM did not answer for %s (%s): hashing with the key read %.0f s ago",
                name,
                error,
                now - _answered[name][1],
            )
    if parameter["Type"] != SECURE_STRING:
        raise ConfigurationError(
            f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} is a {parameter['Type']} parameter, not a "
            f"{SECURE_STRING}: its value, the key, is stored unencrypted and shown in clear in "
            "the console, the parameter's history and CloudTrail. Delete it (its history keeps "
            f"the key) and store a new random key under that name as a {SECURE_STRING}: aws ssm "
            f"put-parameter --type {SECURE_STRING} --name {name} "
            '--value "$(openssl rand -base64 32)"'
        )
    return str(parameter["Value"]).encode()


def _how_to_read(name: str) -> str:
    """What reading parameter ``name`` takes, for the message that says it was refused: a
    Secrets Manager reference is read from the secret, as the caller."""
    secret = name.removeprefix(SECRETS_MANAGER_REFERENCE)
    if secret == name:
        return (
            "create it as a SecureString and grant ssm:GetParameter on it, and kms:Decrypt on "
            "a customer managed key that encrypts it (the stack's ClientIpHashKeyKmsKeyArn)"
        )
    return (
        f"create the secret {secret} in Secrets Manager, its SecretString the key, and grant "
        f"ssm:GetParameter on {name} and secretsmanager:GetSecretValue on the secret, and "
        "kms:Decrypt through Secrets Manager on a customer managed key that encrypts it (the "
        "stack's ClientIpHashKeyKmsKeyArn)"
    )


def _stale(name: str) -> dict[str, str] | None:
    """SSM's last answer for ``name``, to stand in for one it did not give; None when there is
    none, or when it is older than ``HASH_KEY_STALE_LIMIT_SECONDS``."""
    answered = _answered.get(name)
    if answered is None or time.monotonic() - answered[1] > HASH_KEY_STALE_LIMIT_SECONDS:
        return None
    return answered[0]


def privacy_rules(settings: Settings) -> PrivacyRules | None:
    """The privacy rules of ``settings``, with the hash key fetched when ``CLIENT_IP=hash``;
    None when they change nothing. Raises ConfigurationError."""
    key = None
    if settings.client_ip is ClientAddress.HASH and settings.client_ip_hash_key_parameter:
        key = fetch_hash_key(settings.client_ip_hash_key_parameter)
    return settings.privacy_rules(key)
