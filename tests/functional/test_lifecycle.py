"""The function across the life of a Lambda execution environment: warm invocations separated by
a freeze (the process stopped, its clock jumping on thaw, its peer closing idle connections
meanwhile), run in a subprocess that is really stopped (SIGSTOP) and continued (SIGCONT)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elb_log_shipper.config import ENV, PROTOCOL_BEATS, PROTOCOL_JSON_LINES
from elb_log_shipper.errors import ConfigurationError, ShipperError
from tests.functional.test_deployable import DEPLOY_DOC, ROOT, template
from tests.functional.test_reliability import s3_event
from tests.support.beats_server import BeatsServer, Faults
from tests.support.lambda_harness import (
    NOT_A_STALL_TIMEOUT,
    expected,
    log_records,
    put_lines,
    received,
)
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import FaultyS3, MotoServer

pytestmark = pytest.mark.timeout(60)

# Longer than the receiver's idle timeout below: the environment is frozen past it.
IDLE_TIMEOUT_SECONDS = 1.0
FREEZE_SECONDS = 2.5
RESULT = "RESULT "

# One Lambda execution environment: cold start, then one invocation per line of stdin
# ({"event": ..., "budget": seconds}); each result (or the exception's type and message) is
# printed as one line starting with RESULT (Powertools prints its logs and metrics to stdout).
ENVIRONMENT_SCRIPT = """
import json, sys
from elb_log_shipper import handler
from tests.support.lambda_harness import FakeContext
handler.cold_start(json.loads(sys.stdin.readline()))
for line in sys.stdin:
    asked = json.loads(line)
    try:
        answer = {"result": handler.lambda_handler(asked["event"], FakeContext(asked["budget"]))}
    except Exception as error:
        answer = {"error": f"{type(error).__name__}: {error}"}
    print("RESULT " + json.dumps(answer), flush=True)
"""


class Environment:
    """A Lambda execution environment in a subprocess: ``invoke`` runs one invocation to its
    end, ``freeze`` stops every thread of it for a while, as Lambda does between invocations."""

    def __init__(self, moto: MotoServer, environ: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", ENVIRONMENT_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **moto.environ()},
            text=True,
        )
        self._ask(environ)

    def _ask(self, message: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def invoke(self, event: dict[str, Any], budget: float = 60.0) -> dict[str, Any]:
        self._ask({"event": event, "budget": budget})
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(RESULT):
                answer: dict[str, Any] = json.loads(line[len(RESULT) :])
                return answer
        raise AssertionError(f"the environment ended: {self.process.wait()}")

    def freeze(self, seconds: float) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def environment(
    moto: MotoServer, server: JsonLinesReceiver, **settings: str
) -> Iterator[Environment]:
    environ = {
        ENV.LOGSTASH_HOST: "127.0.0.1",
        ENV.LOGSTASH_PORT: str(server.port),
        ENV.LOGSTASH_POOL_SIZE: "2",
        ENV.LOGSTASH_CONNECT_TIMEOUT: "1",
        # Counts copies: a receiver starved of the CPU must not pass for a stall.
        ENV.LOGSTASH_STALL_TIMEOUT: NOT_A_STALL_TIMEOUT,
        **settings,
    }
    env = Environment(moto, environ)
    try:
        yield env
    finally:
        env.close()


def receiver_for(protocol: str) -> JsonLinesReceiver:
    if protocol == PROTOCOL_BEATS:
        # As Logstash's beats input: keep-alives, and a reset after its client_inactivity_timeout.
        return BeatsServer(
            faults=Faults(logstash_keepalives=True, client_inactivity_timeout=IDLE_TIMEOUT_SECONDS)
        )
    return JsonLinesReceiver()


@pytest.mark.parametrize("protocol", [PROTOCOL_JSON_LINES, PROTOCOL_BEATS])
def test_a_freeze_between_invocations_loses_nothing_and_sends_nothing_twice(
    moto: MotoServer, protocol: str
) -> None:
    """Warm invocations of several objects each (over beats the pool's tender keeps the windows
    that one object leaves in flight), a freeze longer than the receiver's idle timeout after
    the first (its connections closed meanwhile, the clock jumping), then the next invocation:
    both ship everything, every line arrives exactly once (the handler confirmed every window
    before it returned, so nothing was in flight across the freeze), and nothing fails."""
    bucket = moto.new_bucket()
    before = [put_lines(moto, 400, f"beforefreeze{n}", bucket=bucket) for n in range(3)]
    after = [put_lines(moto, 400, f"afterfreeze{n}", bucket=bucket) for n in range(3)]
    with receiver_for(protocol) as server:
        with environment(moto, server, **{ENV.LOGSTASH_PROTOCOL: protocol}) as env:
            first = env.invoke(s3_event(bucket, *(key for _, key, _ in before)))
            if protocol == PROTOCOL_JSON_LINES:
                server.close_client_connections()  # its idle connections, if it kept any
            env.freeze(FREEZE_SECONDS)
            second = env.invoke(s3_event(bucket, *(key for _, key, _ in after)))
        counts = received(server)
        if isinstance(server, BeatsServer):
            # Its connections, idle and kept by the pool, were reset during the freeze.
            assert server.inactivity_closes >= 1
    for answer in (first, second):
        assert "error" not in answer, answer
        outcomes = [ledger["outcome"] for ledger in answer["result"]["objects"]]
        assert outcomes == ["shipped"] * 3, answer
    wanted = set().union(*(expected(key, lines) for _, key, lines in [*before, *after]))
    assert set(counts) == wanted
    assert set(counts.values()) == {1}, "lines were sent twice across the freeze"


def test_a_tls_file_that_cannot_be_loaded_fails_every_invocation_saying_so(
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CA file that is no PEM is found at first use (loaded when the pool is made; init only
    checks that it is readable): every invocation fails with its sentence, and logs it as
    ``invalid configuration``, the line README's Troubleshooting tells a user to look for."""
    bucket, key, _ = put_lines(moto, 10, "badcafile")
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("not a certificate\n")
    container = container_for(
        logstash, **{ENV.LOGSTASH_TLS: "true", ENV.LOGSTASH_CA_FILE: str(not_pem)}
    )
    for _ in range(3):
        with pytest.raises(ConfigurationError, match="LOGSTASH_CA_FILE"):
            container.invoke(s3_event(bucket, key), budget=60)
    said = [
        record
        for record in log_records(caplog)
        # The invocations' lines (with the context's keys), not cold_start's.
        if record["message"] == "invalid configuration" and "cold_start" in record
    ]
    assert len(said) == 3, said
    assert logstash.connection_count == 0


def test_a_retried_asynchronous_event_ships_again_with_the_same_ids(
    moto: MotoServer,
    container_for: Any,
    logstash: JsonLinesReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lambda retries an asynchronous event whole (MaximumRetryAttempts): an event of which one
    object S3 refused fails, sends no continuation, and its retry ships both objects again,
    every line with the event.id it had the first time, so that Elasticsearch keeps one copy."""
    bucket, shipped, shipped_lines = put_lines(moto, 200, "retryshipped")
    _, denied, denied_lines = put_lines(moto, 50, "retrydenied", bucket=bucket)
    event = s3_event(bucket, shipped, denied)
    container = container_for(logstash)
    with FaultyS3(moto, error=(403, "AccessDenied"), error_keys=frozenset({denied})) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.endpoint_url)
        with pytest.raises(ShipperError, match="1 of 2 objects failed and the event is retried"):
            container.invoke(event)
        assert container.continuations() == []
        first = received(logstash)
        faulty.error = None  # the retry finds S3 answering
        result = container.invoke(event)
    assert [ledger["outcome"] for ledger in result["objects"]] == ["shipped", "shipped"]
    assert container.continuations() == []
    assert set(first) == expected(shipped, shipped_lines)
    counts = received(logstash)
    assert set(counts) == expected(shipped, shipped_lines) | expected(denied, denied_lines)
    ids: dict[tuple[str, int], set[str]] = {}
    for sent in logstash.events:
        where = (sent["aws"]["s3"]["object"]["key"], sent["log"]["offset"])
        ids.setdefault(where, set()).add(sent["event"]["id"])
    assert {len(found) for found in ids.values()} == {1}, "a line changed its id on the retry"


def test_the_docs_give_logstash_the_connections_the_template_allows() -> None:
    """Where Logstash is sized (docs/deploy.md, README's syslog-ng notes), the connections a
    stack may hold at once are ReservedConcurrency x LogstashPoolSize, with the template's
    defaults."""
    parameters = template()["Parameters"]
    copies = int(parameters["ReservedConcurrency"]["Default"])
    pool = int(parameters["LogstashPoolSize"]["Default"])
    deploy = " ".join(DEPLOY_DOC.read_text().split())
    assert f"({copies} x {pool} = {copies * pool} with the defaults)" in deploy
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`ReservedConcurrency` x `LogstashPoolSize`, {copies * pool} with" in readme
