"""The HMAC key of ``CLIENT_IP=hash``: read from SSM Parameter Store through Powertools.

The key is never a setting of its own: ``CLIENT_IP_HASH_KEY_PARAMETER`` names an SSM parameter
(a SecureString; ``/aws/reference/secretsmanager/NAME`` reads a Secrets Manager secret through
SSM), and Powertools' parameters utility fetches it and caches it for ``HASH_KEY_MAX_AGE_SECONDS``,
so a warm Lambda container asks SSM at most once in that time. Both entry points (the handler,
the command line) build their privacy rules here.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import ClientAddress, PrivacyRules

__all__ = ["HASH_KEY_MAX_AGE_SECONDS", "fetch_hash_key", "privacy_rules"]

# A rotated key reaches warm containers within this time; until then they hash with the old one.
HASH_KEY_MAX_AGE_SECONDS = 300


def fetch_hash_key(name: str) -> bytes:
    """The key stored in SSM parameter ``name`` (decrypted), from Powertools' cache when fresh.

    Raises ConfigurationError when it cannot be read.

    >>> fetch_hash_key("/elb-log-shipper/client-ip-hash-key")  # doctest: +SKIP
    b'...'
    """
    try:
        value = parameters.get_parameter(name, decrypt=True, max_age=HASH_KEY_MAX_AGE_SECONDS)
    except GetParameterError as error:
        raise ConfigurationError(
            f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}={name} could not be read ({error}): create it "
            "as a SecureString and grant ssm:GetParameter on it"
        ) from None
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def privacy_rules(settings: Settings) -> PrivacyRules | None:
    """The privacy rules of ``settings``, with the hash key fetched when ``CLIENT_IP=hash``;
    None when they change nothing. Raises ConfigurationError."""
    key = None
    if settings.client_ip is ClientAddress.HASH and settings.client_ip_hash_key_parameter:
        key = fetch_hash_key(settings.client_ip_hash_key_parameter)
    return settings.privacy_rules(key)
