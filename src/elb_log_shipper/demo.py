"""``elb-log-shipper demo``: the whole flow on bundled sample data, with no AWS and no Logstash.

The sample objects (every log type, odd lines included) are written under a temporary
``AWSLogs/…`` tree as ELB writes them (gzip where ELB gzips), then shipped by the real pipeline
through the real socket pool to a stand-in for Logstash's tcp/json_lines input listening on
127.0.0.1. The demo prints the events the stand-in received and a per-object summary.
"""

from __future__ import annotations

import gzip
import os
import socket
import tempfile
import threading
import time
from typing import TextIO

import orjson

from elb_log_shipper.config import Settings
from elb_log_shipper.logstash import LogstashSender, SocketPool
from elb_log_shipper.pipeline import deliver_object
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.report import Outcome, format_result, format_run
from elb_log_shipper.samples import SAMPLE_OBJECTS

__all__ = ["LineReceiver", "run_demo"]


class LineReceiver:
    """A minimal stand-in for Logstash's tcp input with ``codec => json_lines``.

    Accepts connections on 127.0.0.1, reads newline-terminated JSON, and closes a connection
    when the client half-closes it, as Logstash does.
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.events: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                with self._lock:
                    self.events.extend(orjson.loads(line) for line in lines if line)

    def close(self) -> None:
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=5)


def run_demo(out: TextIO) -> int:
    """Ship the samples and print what arrived; return the exit status (0 when all arrived)."""
    receiver = LineReceiver()
    settings = Settings.from_env({}, host="127.0.0.1", port=receiver.port, pool_size=2)
    pool = SocketPool(settings)
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="elb-log-shipper-demo-") as root:
        for sample in SAMPLE_OBJECTS:
            path = os.path.join(root, sample.key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(gzip.compress(sample.data) if sample.gzip else sample.data)
        try:
            for sample in SAMPLE_OBJECTS:
                ref = ObjectRef.local(os.path.join(root, sample.key))
                results.append(deliver_object(ref, LogstashSender(pool), settings))
        finally:
            pool.close()
            receiver.close()
    for event in sorted(receiver.events, key=lambda e: str(e["@timestamp"])):
        out.write(orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode() + "\n")
    out.write("\n")
    for result in results:
        out.write(format_result(result).replace(root + "/", "") + "\n")
    out.write(format_run(results, seconds=time.monotonic() - started) + "\n")
    expected = sum(len(sample.lines) for sample in SAMPLE_OBJECTS)
    out.write(
        f"Logstash stand-in on 127.0.0.1:{receiver.port} received {len(receiver.events)} of "
        f"{expected} events.\n"
    )
    failed = any(result.outcome is not Outcome.SHIPPED for result in results)
    return 1 if failed or len(receiver.events) != expected else 0
