"""A recording stand-in for the Lambda ``Invoke`` API on 127.0.0.1, for tests.

Moto's server accepts ``Invoke`` with ``InvocationType=Event`` for a function created from a zip
(202, after failing to start Docker), but keeps no record of the payloads. This server answers
``POST /2015-03-31/functions/<name>/invocations`` the way Lambda does for an asynchronous
invocation (202, empty body) and records each one, so a test can check what was queued. Point
boto3 at it with the standard ``AWS_ENDPOINT_URL_LAMBDA`` variable.

    with LambdaStub(functions={"shipper"}) as stub:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stub.endpoint_url)
        ...
        assert [call.payload for call in stub.calls] == [...]

An unknown function gets Lambda's 404 ``ResourceNotFoundException``; an invocation for an object
key in ``refused_keys`` gets 409 ``ResourceConflictException`` (which boto3 does not retry), and
``delay`` slows every answer (a command a test interrupts part-way).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote

__all__ = ["Invocation", "LambdaStub"]

_PATH_PREFIX = "/2015-03-31/functions/"
_PATH_SUFFIX = "/invocations"


@dataclass(frozen=True)
class Invocation:
    """One recorded ``Invoke`` call."""

    function: str
    invocation_type: str | None
    payload: Any


class LambdaStub:
    """Records asynchronous invocations of the ``functions`` it knows."""

    def __init__(
        self, functions: set[str], *, refused_keys: Iterable[str] = (), delay: float = 0.0
    ) -> None:
        self.functions = functions
        self.refused_keys = set(refused_keys)
        self.delay = delay
        self.calls: list[Invocation] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                if not (path.startswith(_PATH_PREFIX) and path.endswith(_PATH_SUFFIX)):
                    self._answer(400, "InvalidRequestContentException", f"unexpected {path}")
                    return
                function = unquote(path[len(_PATH_PREFIX) : -len(_PATH_SUFFIX)])
                if function not in stub.functions:
                    self._answer(
                        404, "ResourceNotFoundException", f"Function not found: {function}"
                    )
                    return
                time.sleep(stub.delay)
                call = Invocation(
                    function, self.headers.get("X-Amz-Invocation-Type"), json.loads(body)
                )
                if call.payload.get("key") in stub.refused_keys:
                    self._answer(409, "ResourceConflictException", "refused (LambdaStub)")
                    return
                with stub._lock:
                    stub.calls.append(call)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, status: int, error_type: str, message: str) -> None:
                data = json.dumps({"Type": "User", "message": message}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", error_type)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a test run wants only its failures

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
