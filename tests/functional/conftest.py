"""Fixtures shared by the functional tests: the stand-ins for S3 and Logstash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elb_log_shipper.config import ENV
from tests.support.certs import CertBundle, make_certs
from tests.support.lambda_harness import Container, start_container, stop_container
from tests.support.receiver import JsonLinesReceiver, receiver
from tests.support.s3server import DUMMY_ENVIRON, MotoServer, moto_server


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """A moto S3/SQS/Lambda server on 127.0.0.1, one per test module (use a new bucket per test)."""
    with moto_server() as server:
        yield server


@pytest.fixture
def logstash() -> Iterator[JsonLinesReceiver]:
    """A json_lines receiver standing in for Logstash's tcp input, one per test."""
    with receiver() as server:
        yield server


@pytest.fixture
def user_environment(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a user would set: dummy credentials and the standard S3 endpoint variable
    (no LOGSTASH_* or other setting of ours, no AWS_ENDPOINT_URL)."""
    for name in vars(ENV).values():
        if isinstance(name, str) and name.isupper():
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in DUMMY_ENVIRON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint_url)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """A test CA with server (127.0.0.1, localhost) and client certificates, as files."""
    return make_certs(Path(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def container_for(monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> Iterator[Any]:
    """Start a Lambda container against a given receiver (and settings); close it afterwards."""

    def start(server: JsonLinesReceiver, **settings: str) -> Container:
        return start_container(monkeypatch, moto, server.port, **settings)

    yield start
    stop_container()
