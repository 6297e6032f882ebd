"""Making AWS clients: an AWS setup that cannot work is a configuration error in one sentence.

``boto3.client`` raises before any request when the setup itself is wrong: a profile that is not
in the config (``AWS_PROFILE``), no region where the service needs one, an endpoint URL that is
no URL. Those are the user's to fix, as a bad flag is, not failures to retry.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from elb_log_shipper.errors import ConfigurationError

__all__ = [
    "CREDENTIALS_REFUSED",
    "NO_CREDENTIALS",
    "RENEW_CREDENTIALS",
    "SET_UP_CREDENTIALS",
    "client_setup",
    "credentials_failed",
    "region",
]

# S3's answers to credentials that expired or are wrong, or to a request signed with a clock
# off: every other request with them fails the same way (the command stops at the first).
CREDENTIALS_REFUSED = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
    }
)
# botocore's errors for credentials it could not find or refresh (an SSO session over).
NO_CREDENTIALS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
    SSOTokenLoadError,
)
RENEW_CREDENTIALS = "renew them (aws sso login, a new session), then ship what is left"
# What to do when botocore found no usable credentials (NO_CREDENTIALS).
SET_UP_CREDENTIALS = "set them up or renew them (aws configure, aws sso login, AWS_PROFILE)"


def credentials_failed(error: BaseException | None) -> bool:
    """Whether ``error`` says our credentials are missing (``NO_CREDENTIALS``), expired or
    refused (``CREDENTIALS_REFUSED``): no grant is missing, and every request fails alike."""
    if isinstance(error, NO_CREDENTIALS):
        return True
    return (
        isinstance(error, ClientError)
        and error.response.get("Error", {}).get("Code", "") in CREDENTIALS_REFUSED
    )


def region() -> str | None:
    """``AWS_REGION`` when it is set, for ``boto3.client(..., region_name=region())``; else None
    (botocore's own order then: ``AWS_DEFAULT_REGION``, the profile's region).

    botocore reads ``AWS_DEFAULT_REGION`` and not ``AWS_REGION``, which the AWS CLI v2 and the
    other AWS SDKs read first, Lambda sets, and our messages name: with only ``AWS_REGION`` set,
    a client had no region.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"AWS_REGION": "eu-west-1"}):
    ...     region()
    'eu-west-1'
    """
    return os.environ.get("AWS_REGION") or None


@contextlib.contextmanager
def client_setup(service: str) -> Iterator[None]:
    """Around ``boto3.client(service, ...)``: its setup errors as ConfigurationError.

    >>> with client_setup("s3"):
    ...     raise ValueError("Invalid endpoint: notaurl")
    Traceback (most recent call last):
    ...
    elb_log_shipper.errors.ConfigurationError: cannot set up the AWS s3 client: Invalid \
endpoint: notaurl; check AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL
    """
    try:
        yield
    except NO_CREDENTIALS as error:  # a credential_process or SSO cache that failed
        raise ConfigurationError(
            f"no usable AWS credentials for the {service} client ({str(error).strip()}); "
            f"{SET_UP_CREDENTIALS}"
        ) from None
    except (BotoCoreError, ValueError) as error:
        raise ConfigurationError(
            f"cannot set up the AWS {service} client: {str(error).strip()}; check AWS_PROFILE, "
            "AWS_REGION and AWS_ENDPOINT_URL"
        ) from None
