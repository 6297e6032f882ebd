"""timbersnake's lumberjack v2 server (PyPI), run on 127.0.0.1 in a thread, for tests.

Its connection handler is used as it is: it parses the window, compressed and JSON frames and
ACKs each compressed frame with the sequence number of its last event. It keeps no events, only
logs each one (``recv JSON: %s`` on the ``timbersnake`` logger, at DEBUG), so this wrapper
collects them from those log records (``collect``: a subclass that keeps less, such as the
benchmark's, which keeps only the ids of 1.5M events, overrides it). It counts no connections
either: this wrapper counts the TCP connections its listener accepts (``connections``), before
any TLS handshake, so that one whose handshake fails counts too.

Its plain ``J`` frame path calls ``json.parse``, which does not exist: it serves compressed
windows only (``LOGSTASH_BEATS_COMPRESSION`` 1-9).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, Self

from timbersnake.server import Server

__all__ = ["TimbersnakeServer"]

START_SECONDS = 5.0


class _Collector(logging.Handler):
    def __init__(self, collect: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__(logging.DEBUG)
        self._collect = collect

    def emit(self, record: logging.LogRecord) -> None:
        # logging keeps a lone mapping argument as ``args`` itself, not in a tuple.
        if record.msg == "recv JSON: %s" and isinstance(record.args, Mapping):
            self._collect(record.args)


class TimbersnakeServer:
    """``with TimbersnakeServer() as server:`` listens on ``server.port`` until the block ends."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._collector = _Collector(self.collect)
        self._logger = logging.getLogger("timbersnake")
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        # Read once the block has ended, or by the server's own thread.
        self.connections = 0

    def collect(self, event: Mapping[str, Any]) -> None:
        """Keep one event timbersnake received (called in the server's thread)."""
        with self._events_lock:
            self._events.append(dict(event))

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._events_lock:
            return list(self._events)

    def event_ids(self) -> list[Any]:
        return [event.get("id") for event in self.events]

    def __enter__(self) -> Self:
        self._logger.addHandler(self._collector)
        self._previous_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        # Not to the root handlers: one of timbersnake's debug calls ("recv WINDOW: %i" with a
        # tuple) cannot be formatted, and pytest's capture formats every record.
        self._logger.propagate = False
        self._thread.start()
        if not self._ready.wait(START_SECONDS):
            raise RuntimeError("timbersnake did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(START_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_SECONDS)
        self._logger.removeHandler(self._collector)
        self._logger.setLevel(self._previous_level)
        self._logger.propagate = True

    async def _shutdown(self) -> None:
        """Stop listening and end the connection handlers, inside the loop."""
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if not tasks:
            return
        # Handlers end by themselves once the client has closed; cancel only the stragglers.
        _, pending = await asyncio.wait(tasks, timeout=START_SECONDS / 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        handler = Server("127.0.0.1", 0, ssl=self._ssl)

        def accepted() -> asyncio.StreamReaderProtocol:
            # What asyncio.start_server's factory does, and a count of the connections.
            self.connections += 1
            reader = asyncio.StreamReader(loop=self._loop)
            return asyncio.StreamReaderProtocol(
                reader, handler.handle_client_callback, loop=self._loop
            )

        self._server = self._loop.run_until_complete(
            self._loop.create_server(accepted, "127.0.0.1", 0, ssl=self._ssl)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()
