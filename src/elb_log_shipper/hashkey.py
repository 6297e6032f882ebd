"""The HMAC key of ``CLIENT_IP=hash``: read from SSM Parameter Store through Powertools.

The key is never a setting of its own: ``CLIENT_IP_HASH_KEY_PARAMETER`` names an SSM parameter
(a SecureString; ``/aws/reference/secretsmanager/NAME`` reads a Secrets Manager secret through
SSM), and Powertools' parameters utility fetches it and caches it for ``HASH_KEY_MAX_AGE_SECONDS``,
so a warm Lambda container asks SSM at most once in that time. Both entry points (the handler,
the command line) build their privacy rules here.

A parameter of another type than SecureString is refused: a ``String`` or ``StringList`` is stored
unencrypted and shown in clear in the console, in the parameter's history and in CloudTrail, where
a pseudonymisation key must not be (AWS: no sensitive data in a String or StringList parameter).
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import BaseProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import ClientAddress, PrivacyRules

__all__ = [
    "HASH_KEY_MAX_AGE_SECONDS",
    "SECURE_STRING",
    "fetch_hash_key",
    "forget_hash_key_client",
    "privacy_rules",
]

# A rotated key reaches warm containers within this time; until then they hash with the old one.
HASH_KEY_MAX_AGE_SECONDS = 300
# The one parameter type that is encrypted at rest (KMS) and hidden in the console and history.
# GetParameter names a Secrets Manager secret read through /aws/reference/secretsmanager/ this too.
SECURE_STRING = "SecureString"


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
        self.client = boto3.client("ssm")
        super().__init__(client=self.client)  # type: ignore[no-untyped-call]

    def _get(self, name: str, **sdk_options: Any) -> dict[str, str]:
        found = self.client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        return {"Type": str(found["Type"]), "Value": str(found["Value"])}

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        raise NotImplementedError("the hash key is one parameter")


@functools.cache
def _parameters() -> _TypedParameters:
    """The process's one provider, made at the first fetch (a container that does not hash never
    builds an SSM client); its cache lives as long as the container."""
    return _TypedParameters()


def forget_hash_key_client() -> None:
    """Close the SSM client and forget what it cached; the next fetch builds a new one from the
    environment then (tests that move from one SSM endpoint to another)."""
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
    try:
        parameter = _parameters().get(name, max_age=HASH_KEY_MAX_AGE_SECONDS)
    except GetParameterError as error:
        raise ConfigurationError(
            f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} could not be read ({error}): create it "
            "as a SecureString and grant ssm:GetParameter on it"
        ) from None
    assert isinstance(parameter, dict), parameter
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


def privacy_rules(settings: Settings) -> PrivacyRules | None:
    """The privacy rules of ``settings``, with the hash key fetched when ``CLIENT_IP=hash``;
    None when they change nothing. Raises ConfigurationError."""
    key = None
    if settings.client_ip is ClientAddress.HASH and settings.client_ip_hash_key_parameter:
        key = fetch_hash_key(settings.client_ip_hash_key_parameter)
    return settings.privacy_rules(key)
