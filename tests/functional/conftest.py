"""Fixtures shared by the functional tests: the stand-ins for S3 and Logstash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receiver import JsonLinesReceiver, receiver
from tests.support.s3server import MotoServer, moto_server


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
