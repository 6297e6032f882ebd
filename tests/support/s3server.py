"""A moto server (S3 and the other moto services) over real HTTP on 127.0.0.1, for tests.

Clients talk to it through boto3 as they would to AWS: real requests, real streaming bodies, real
``Range`` and ``If-Match`` handling. Nothing leaves loopback: the endpoint is 127.0.0.1 and the
credentials are dummies, so boto3 never looks for real ones (nor asks the instance metadata).

A session-scoped fixture (in a ``conftest.py``)::

    @pytest.fixture(scope="session")
    def moto() -> Iterator[MotoServer]:
        with moto_server() as server:
            yield server

Moto keeps its state per process, not per server: give each test its own bucket
(``server.new_bucket()``) rather than relying on a fresh server. Note that ``moto.mock_aws`` used
elsewhere in the same process intercepts boto3 calls before they reach this server.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DUMMY_ENVIRON", "REGION", "MotoServer", "moto_server"]

REGION = "us-east-1"

# Credentials and settings that keep boto3 away from real accounts: no profile, no metadata service.
DUMMY_ENVIRON: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}

_bucket_numbers = itertools.count(1)


@dataclass
class MotoServer:
    """A running moto server; use ``moto_server()`` to start and stop one."""

    host: str
    port: int
    _server: ThreadedMotoServer = field(repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment for code that builds its own ``boto3.client("s3")``: dummy credentials and
        ``AWS_ENDPOINT_URL`` pointing here (set them with ``monkeypatch.setenv``)."""
        return {**DUMMY_ENVIRON, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client_kwargs(self, **config: Any) -> dict[str, Any]:
        """Arguments for ``boto3.client(service, **kwargs)`` of any moto service on this server,
        with dummy credentials; ``config`` goes to ``botocore.config.Config``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": DUMMY_ENVIRON["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_ENVIRON["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": DUMMY_ENVIRON["AWS_SESSION_TOKEN"],
            # A test wants to see the first failure, not three retries of it.
            "config": Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        }

    def client(self, **config: Any) -> S3Client:
        """An S3 client for this server (see ``client_kwargs``)."""
        return boto3.client("s3", **self.client_kwargs(**config))

    def new_bucket(self, prefix: str = "logs", *, versioned: bool = False) -> str:
        """Create a bucket with a name no other test in this process uses; return its name."""
        name = f"{prefix}-{next(_bucket_numbers)}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def put_object(
        self, bucket: str, key: str, data: bytes, *, compress: bool = False
    ) -> dict[str, str]:
        """Store ``data`` (gzip-compressed first when ``compress``); return ``ETag`` (without
        quotes) and ``VersionId`` (when the bucket is versioned)."""
        body = gzip.compress(data) if compress else data
        response = self.client().put_object(Bucket=bucket, Key=key, Body=body)
        stored = {"ETag": response["ETag"].strip('"')}
        if response.get("VersionId"):
            stored["VersionId"] = response["VersionId"]
        return stored

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Run a moto server on 127.0.0.1 on a free port for the duration of the ``with``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # werkzeug logs every request at INFO on stderr; a test run wants only its failures.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(host=host, port=port, _server=server)
    finally:
        server.stop()
        werkzeug_log.setLevel(level)
