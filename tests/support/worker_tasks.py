"""Item functions for the tests of ``elb_log_shipper.workers``, and a command that runs them.

Worker processes import the function they run by name, so these live in a module, not in a test.
``python -m tests.support.worker_tasks batches|stubborn N BATCHES`` runs N items of BATCHES slow
batches each in two workers under ``StopSignals`` and prints, on stdout, one JSON line per event:
``{"progress": total}`` as progress arrives, ``{"stopping": signal}`` once stopping, and
``{"index": i, "result": ...}`` as results are handed back. Exit status 0 when the run ended
(stopped or not), 130 on a forced quit. The tests send it real signals.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from elb_log_shipper.workers import (
    PROGRESS_POST_SECONDS,
    SILENT_KILL_SECONDS,
    ItemContext,
    ItemFailed,
    StopSignals,
    run_in_processes,
)

# A slow batch: long enough that a signal lands mid-item, short enough that a stop is quick.
BATCH_SECONDS = 0.01
# Environment variable naming a directory where each worker's initializer leaves its pid.
PID_DIR_ENV = "WORKER_TASKS_PID_DIR"
# Environment variable giving the command's ``silent_kill_seconds`` (the module's default unset).
SILENT_KILL_ENV = "WORKER_TASKS_SILENT_KILL_SECONDS"

_state: dict[str, int] = {}


def square(item: int, context: ItemContext) -> int:
    """The square of ``item``, after posting ``item`` as progress in single steps."""
    for _ in range(item):
        context.add_progress(1)
    return item * item


def sleepy_square(item: tuple[int, float], context: ItemContext) -> int:
    """Like ``square`` after sleeping: items then finish out of order."""
    value, seconds = item
    time.sleep(seconds)
    return square(value, context)


DIE_SIZE = 7
DIE_CHECKPOINT = 4096


def die_on(item: str, context: ItemContext) -> str:
    """``kill`` kills its own process with SIGKILL, ``segfault`` reads address 0, ``raise``
    raises; anything else comes back unchanged. Each first posts progress of size ``DIE_SIZE``
    (posted at once: a post waits PROGRESS_POST_SECONDS after the last) and the checkpoint
    ``DIE_CHECKPOINT``."""
    context.set_checkpoint(DIE_CHECKPOINT)
    context.add_progress(0, DIE_SIZE)
    time.sleep(PROGRESS_POST_SECONDS * 1.5)
    context.add_progress(0, 0)
    if item == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if item == "segfault":
        ctypes.string_at(0)
    if item == "raise":
        raise ValueError("asked to raise")
    return item


def die_when_idle(item: tuple[str, float, float], context: ItemContext) -> str:
    """Sleep ``item[1]`` seconds and return ``item[0]``; with ``item[2]`` set, SIGKILL this
    process that many seconds later, when it is idle (as the OOM killer or ``kill`` may)."""
    name, seconds, die_after = item
    time.sleep(seconds)
    if die_after:
        threading.Timer(die_after, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return name


DYING_NOTE = "waiting for Logstash to acknowledge (0:05)"


def sleep_or_die(item: tuple[str, float], context: ItemContext) -> str:
    """Sleep ``item[1]`` seconds and return ``item[0]``; ``kill`` says it waits (``DYING_NOTE``),
    as a worker does while Logstash is slow, and SIGKILLs its own process."""
    name, seconds = item
    if name == "kill":
        context.set_note(DYING_NOTE)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return name


def fall_silent(item: tuple[str, float], context: ItemContext) -> str:
    """Post progress and the checkpoint ``DIE_CHECKPOINT``, then say nothing for ``item[1]``
    seconds (a read that stalls) and return ``item[0]``."""
    name, seconds = item
    context.set_checkpoint(DIE_CHECKPOINT)
    context.add_progress(1, DIE_SIZE)
    time.sleep(PROGRESS_POST_SECONDS * 1.5)
    context.add_progress(0, 0)  # posted at once: the last post was long enough ago
    time.sleep(seconds)
    return name


def wait_saying_so(item: float, context: ItemContext) -> float:
    """Make no progress for ``item`` seconds, calling ``keep_alive`` ten times a second (as the
    shipper's wait for Logstash does)."""
    end = time.monotonic() + item
    while time.monotonic() < end:
        context.keep_alive()
        time.sleep(0.1)
    return item


def unpicklable(item: int, context: ItemContext) -> object:
    return threading.Lock()


def record_pid() -> None:
    """Initializer: count the initializations of this process and note its pid."""
    _state["initialized"] = _state.get("initialized", 0) + 1
    pid_dir = os.environ.get(PID_DIR_ENV)
    if pid_dir:
        (Path(pid_dir) / str(os.getpid())).touch()


def fail_to_start() -> None:
    raise RuntimeError("no clients today")


def start_twice_only(directory: str) -> None:
    """Initializer: the first two processes start (each claims a file in ``directory``); every
    later one fails, as a replacement does when its S3 client or its TLS files cannot be had."""
    for slot in range(2):
        try:
            (Path(directory) / str(slot)).open("x").close()
        except FileExistsError:
            continue
        return
    raise RuntimeError("no more clients today")


def pid_and_inits(item: int, context: ItemContext) -> tuple[int, int]:
    return os.getpid(), _state.get("initialized", 0)


def read_env(name: str, context: ItemContext) -> str | None:
    return os.environ.get(name)


@dataclass(frozen=True)
class BatchesDone:
    """How far an item of ``batches`` got."""

    item: int
    batches: int
    stopped: bool


def batches(item: tuple[int, int], context: ItemContext) -> BatchesDone:
    """Work through ``count`` slow batches, stopping between two when asked."""
    index, count = item
    for done in range(count):
        if context.should_stop():
            return BatchesDone(index, done, stopped=True)
        time.sleep(BATCH_SECONDS)
        context.add_progress(1)
    return BatchesDone(index, count, stopped=False)


def stubborn_batches(item: tuple[int, int], context: ItemContext) -> BatchesDone:
    """Like ``batches``, deaf to the stop flag (an item stuck in a long read)."""
    index, count = item
    for _ in range(count):
        time.sleep(BATCH_SECONDS)
        context.add_progress(1)
    return BatchesDone(index, count, stopped=False)


FUNCTIONS = {"batches": batches, "stubborn": stubborn_batches}


def main(argv: list[str]) -> int:
    """See the module docstring."""
    name, items, count = argv
    stop = threading.Event()
    progress = 0
    announced = False

    def emit(record: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    def on_progress(increment: int, size: int) -> None:
        nonlocal progress
        progress += increment
        emit({"progress": progress})

    def on_result(index: int, result: BatchesDone | ItemFailed) -> None:
        shown = asdict(result) if isinstance(result, BatchesDone) else {"failed": str(result)}
        emit({"index": index, "result": shown})

    def on_tick() -> None:
        nonlocal announced
        if stop.is_set() and not announced:
            announced = True
            emit({"stopping": signals.signal_name})

    signals = StopSignals(stop)
    try:
        with signals.installed():
            run_in_processes(
                FUNCTIONS[name],
                [(index, int(count)) for index in range(int(items))],
                on_result,
                jobs=2,
                stop=stop,
                initializer=record_pid,
                on_progress=on_progress,
                on_tick=on_tick,
                silent_kill_seconds=float(os.environ.get(SILENT_KILL_ENV, SILENT_KILL_SECONDS)),
            )
    except KeyboardInterrupt:
        emit({"forced": True})
        return 130
    emit({"stopped_by": signals.signal_name})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
