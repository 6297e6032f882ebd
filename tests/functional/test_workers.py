"""``elb_log_shipper.workers``: real worker processes, real signals, real deaths."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.corpus import alb_lines

from elb_log_shipper.config import Settings
from elb_log_shipper.pipeline import WorkerSetup, ship_in_worker, start_worker, stop_worker
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.workers import (
    KEEP_ALIVE_POST_SECONDS,
    SILENT_KILL_SECONDS,
    SILENT_NOTE_SECONDS,
    STOP_KILL_SECONDS,
    WATCH_STEP_SECONDS,
    ItemFailed,
    WorkerStartError,
    run_in_processes,
    usable_cpus,
)
from tests.support import worker_tasks as tasks

REPO = Path(__file__).resolve().parents[2]


def run(function: Any, items: list[Any], jobs: int = 2, **options: Any) -> list[tuple[int, Any]]:
    results: list[tuple[int, Any]] = []
    count = run_in_processes(
        function,
        items,
        lambda index, result: results.append((index, result)),
        jobs=jobs,
        stop=options.pop("stop", threading.Event()),
        **options,
    )
    assert count == len(results)
    return results


def test_results_come_back_once_each_in_input_order() -> None:
    # Later items are quicker, so workers finish them first.
    items = [(n, 0.05 * ((20 - n) % 4)) for n in range(20)]
    results = run(tasks.sleepy_square, items, jobs=3)
    assert results == [(n, n * n) for n in range(20)]


def test_progress_from_every_worker_is_summed() -> None:
    total = 0

    def add(count: int, size: int) -> None:
        nonlocal total
        total += count
        assert size == 0

    results = run(tasks.square, list(range(40)), on_progress=add)
    assert total == sum(range(40))
    assert [result for _, result in results] == [n * n for n in range(40)]


def test_each_worker_runs_its_initializer_once_and_items_share_it() -> None:
    results = run(tasks.pid_and_inits, list(range(12)), initializer=tasks.record_pid)
    pids = {pid for _, (pid, _) in results}
    assert 1 <= len(pids) <= 2
    assert all(inits == 1 for _, (_, inits) in results)
    assert os.getpid() not in pids


@pytest.mark.parametrize(
    ("fate", "reason"),
    [
        ("kill", "its worker process was killed by SIGKILL"),
        ("segfault", "its worker process was killed by SIGSEGV"),
        ("raise", "ValueError: asked to raise"),
    ],
)
def test_an_item_whose_worker_dies_or_raises_fails_alone(fate: str, reason: str) -> None:
    items = ["a", "b", fate, "c", "d", "e"]
    results = run(tasks.die_on, items)
    assert [index for index, _ in results] == list(range(6))
    failed = results[2][1]
    assert isinstance(failed, ItemFailed)
    assert str(failed) == reason
    # What its progress counted, which no result will take back (the progress line's bytes),
    # and how far it got for good, which died with the process.
    assert failed.size == tasks.DIE_SIZE
    assert failed.checkpoint == tasks.DIE_CHECKPOINT
    assert [result for index, result in results if index != 2] == ["a", "b", "c", "d", "e"]


def test_a_worker_killed_while_idle_is_replaced_and_no_item_fails() -> None:
    # Item 0 keeps one worker busy; the other takes items 1-3 (the reorder window of 2 jobs)
    # and is killed once idle. Items 4 and 5 go to the worker left and a replacement. Before,
    # the dead worker was found by the send of item 4: BrokenPipeError out of the run.
    items = [("a", 2.0, 0.0), ("b", 0.0, 0.5)] + [(name, 0.0, 0.0) for name in "cdef"]
    results = run(tasks.die_when_idle, items, jobs=2)
    assert results == list(enumerate("abcdef"))


def test_a_worker_that_dies_waiting_takes_its_note_with_it() -> None:
    # The progress line showed "waiting for Logstash to acknowledge (0:05)" for the rest of the
    # run: the worker that said so was dead, and the one left had nothing to wait for.
    notes: list[str | None] = []
    results = run(tasks.sleep_or_die, [("a", 1.0), ("kill", 0.0), ("b", 0.0)], on_note=notes.append)
    assert [index for index, _ in results] == [0, 1, 2]
    assert notes == [tasks.DYING_NOTE, None]


def test_an_item_silent_for_a_while_is_named_with_how_long_and_goes_on() -> None:
    """A worker that posts nothing (a stalled read) used to look like a slow one: nothing said
    which item, or for how long. ``on_silent`` names it once it has been silent for the bound,
    and hears that none is silent once it has come back."""
    heard: list[dict[int, float]] = []
    results = run(
        tasks.fall_silent,
        [("quiet", 1.5), ("busy", 0.0)],
        on_silent=lambda silent: heard.append(dict(silent)),
        silent_note_seconds=0.5,
        silent_kill_seconds=30.0,
    )
    assert results == [(0, "quiet"), (1, "busy")]
    assert heard, "no silence was reported"
    assert {index for silent in heard for index in silent} == {0}
    longest = max(silent[0] for silent in heard if silent)
    assert 0.5 <= longest < 2.5  # silent 1.5 s, as its result is read
    assert heard[-1] == {}


def test_a_worker_silent_past_the_bound_is_killed_and_its_item_fails_from_its_checkpoint() -> None:
    """A worker that never says another word used to hold the run forever, its item never
    handed back. Silent for the kill bound, it is killed: its item fails with what it had
    posted, the other items go on in a new worker."""
    results = run(
        tasks.fall_silent,
        [("hung", 60.0), ("a", 0.0), ("b", 0.0), ("c", 0.0)],
        silent_note_seconds=0.5,
        silent_kill_seconds=1.5,
    )
    assert [index for index, _ in results] == [0, 1, 2, 3]
    failed = results[0][1]
    assert isinstance(failed, ItemFailed)
    assert str(failed) == "its worker process had made no progress for 1.5 s, and was killed"
    assert (failed.size, failed.checkpoint) == (tasks.DIE_SIZE, tasks.DIE_CHECKPOINT)
    assert [result for _, result in results[1:]] == ["a", "b", "c"]


def test_a_worker_that_waits_saying_so_is_neither_named_nor_killed() -> None:
    """A wait for Logstash makes no progress, and the command has no deadline: ``keep_alive``
    (posted once a second) keeps such a worker from passing for a hung one."""
    heard: list[dict[int, float]] = []
    results = run(
        tasks.wait_saying_so,
        [4.0],
        jobs=1,
        on_silent=lambda silent: heard.append(dict(silent)),
        # The parent counts silence in its ticks: between two keep-alives it counted up to
        # 1.22 s under load (two busy loops a core), too close to the 1.5 s this bound was.
        silent_note_seconds=KEEP_ALIVE_POST_SECONDS * 2.5,
        silent_kill_seconds=KEEP_ALIVE_POST_SECONDS * 3,
    )
    assert results == [(0, 4.0)]
    assert heard == []


def test_a_worker_stopped_by_sigstop_is_killed_and_the_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP to a worker mid-item (a process that will never answer): it used to leave the
    run waiting forever, without a word. Its item fails once it has been silent for the bound,
    and the other worker's items all come back."""
    monkeypatch.setenv(tasks.PID_DIR_ENV, str(tmp_path))
    stopped: list[int] = []

    def stop_one(count: int, size: int) -> None:
        pids = [int(path.name) for path in tmp_path.iterdir()]
        if not stopped and len(pids) == 2:
            stopped.append(pids[0])
            os.kill(pids[0], signal.SIGSTOP)

    results = run(
        tasks.batches,
        [(index, 200) for index in range(4)],  # 2 s of batches each
        initializer=tasks.record_pid,
        on_progress=stop_one,
        silent_note_seconds=0.5,
        silent_kill_seconds=1.5,
    )
    assert stopped
    failed = [(index, r) for index, r in results if isinstance(r, ItemFailed)]
    assert len(failed) == 1, results
    assert str(failed[0][1]) == (
        "its worker process had made no progress for 1.5 s, and was killed"
    )
    assert [index for index, _ in results] == [0, 1, 2, 3]
    assert_gone(stopped)


def test_the_readme_gives_the_silence_bounds_the_code_takes() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())  # wrapped: compare the words
    assert f"had made no progress for {SILENT_KILL_SECONDS:g} s, and was killed" in readme
    assert f"Silent for {SILENT_KILL_SECONDS / 60:g} minutes" in readme
    assert SILENT_NOTE_SECONDS == 60
    assert "that has said nothing for a minute" in readme


def test_every_worker_dying_still_ends_the_run() -> None:
    results = run(tasks.die_on, ["kill"] * 5, jobs=2)
    assert len(results) == 5
    assert all(isinstance(result, ItemFailed) for _, result in results)


def test_a_result_that_cannot_be_sent_back_fails_its_item() -> None:
    (_, result), *_ = run(tasks.unpicklable, [1])
    assert isinstance(result, ItemFailed)
    assert "could not be sent back" in str(result)


def test_a_failing_initializer_stops_the_run() -> None:
    with pytest.raises(WorkerStartError, match="RuntimeError: no clients today"):
        run(tasks.square, [1, 2, 3], initializer=tasks.fail_to_start)


def test_a_replacement_that_cannot_start_stops_the_run_once_the_items_in_flight_are_back(
    tmp_path: Path,
) -> None:
    # Item 1 kills its worker while item 0 runs, and the replacement's initializer fails. The
    # run used to raise at once, killing item 0 half-way and handing back nothing: the command
    # then printed no summary and no command to resume, though objects had been shipped.
    items = [("a", 1.0), ("kill", 0.0), ("b", 0.0), ("c", 0.0)]
    results: list[tuple[int, Any]] = []
    with pytest.raises(WorkerStartError, match="RuntimeError: no more clients today"):
        run_in_processes(
            tasks.sleep_or_die,
            items,
            lambda index, result: results.append((index, result)),
            jobs=2,
            stop=threading.Event(),
            initializer=tasks.start_twice_only,
            initargs=(str(tmp_path),),
        )
    assert [index for index, _ in results] == [0, 1]
    assert results[0][1] == "a"
    assert isinstance(results[1][1], ItemFailed)
    assert str(results[1][1]) == "its worker process was killed by SIGKILL"


def test_a_fatal_result_starts_no_more_items() -> None:
    results = run(tasks.square, list(range(1, 30)), jobs=1, is_fatal=lambda result: result == 4)
    assert [result for _, result in results] == [1, 4]


def test_a_fatal_result_stops_new_items_before_the_results_ahead_of_it_are_back() -> None:
    # Item 1 is fatal and done while item 0 still sleeps: its worker must not take item 2.
    items = [(1, 1.0), (2, 0.0), (3, 0.0), (4, 0.0)]
    results = run(tasks.sleepy_square, items, jobs=2, is_fatal=lambda result: result == 4)
    assert results == [(0, 1), (1, 4)]


def test_a_stop_set_before_the_run_starts_nothing() -> None:
    stop = threading.Event()
    stop.set()
    assert run(tasks.square, [1, 2], stop=stop) == []


def test_workers_see_the_environment_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fork server keeps the environment it started with; each run passes on its own.
    monkeypatch.setenv("WORKERS_TEST_VALUE", "first")
    assert run(tasks.read_env, ["WORKERS_TEST_VALUE"]) == [(0, "first")]
    monkeypatch.setenv("WORKERS_TEST_VALUE", "second")
    assert run(tasks.read_env, ["WORKERS_TEST_VALUE"]) == [(0, "second")]


def test_usable_cpus_follows_the_affinity_mask() -> None:
    assert usable_cpus() == len(os.sched_getaffinity(0)) >= 1
    pinned = subprocess.run(
        [
            "taskset",
            "-c",
            str(min(os.sched_getaffinity(0))),
            sys.executable,
            "-c",
            "from elb_log_shipper.workers import usable_cpus; print(usable_cpus())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout == "1\n"


# Real signals to a real command.


class Command:
    """``tests.support.worker_tasks`` in its own session (a process group, like a terminal's
    foreground job), read line by line."""

    def __init__(
        self, tmp_path: Path, items: int, batches: int, mode: str, env: dict[str, str]
    ) -> None:
        self.pid_dir = tmp_path / "pids"
        self.pid_dir.mkdir()
        env = {**os.environ, tasks.PID_DIR_ENV: str(self.pid_dir), **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.worker_tasks", mode, str(items), str(batches)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self.lines: Iterator[str] = iter(self.process.stdout)
        self.records: list[dict[str, Any]] = []

    def read_until(self, key: str) -> dict[str, Any]:
        for line in self.lines:
            record: dict[str, Any] = json.loads(line)
            self.records.append(record)
            if key in record:
                return record
        raise AssertionError(f"the command ended without a {key!r} line: {self.records}")

    def wait_for_progress(self, at_least: int) -> None:
        while self.read_until("progress")["progress"] < at_least:
            pass

    def finish(self) -> int:
        for line in self.lines:
            self.records.append(json.loads(line))
        return self.process.wait(timeout=60)

    def results(self) -> list[dict[str, Any]]:
        return [record for record in self.records if "index" in record]

    def worker_pids(self) -> list[int]:
        return [int(path.name) for path in self.pid_dir.iterdir()]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Any]:
    started: list[Command] = []

    def start(
        items: int, batches: int, mode: str = "batches", env: dict[str, str] | None = None
    ) -> Command:
        started.append(Command(tmp_path, items, batches, mode, env or {}))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def assert_gone(pids: list[int]) -> None:
    """No worker runs any more. A worker whose fork server died first is left a zombie until
    PID 1 reaps it, which in a container may be never: a zombie counts as gone."""
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        assert state in {"Z", "X"}, f"worker {pid} is still running (state {state})"


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        (signal.SIGINT, True),
        (signal.SIGINT, False),
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),
    ],
    ids=["ctrl-c-to-the-group", "sigint-to-the-parent", "sigterm-to-the-parent", "sigterm-to-all"],
)
def test_a_signal_stops_items_in_flight_at_a_batch_boundary(
    command: Any, signum: signal.Signals, to_group: bool
) -> None:
    # Six items of 10,000 batches: far more than run before the signal lands.
    run_ = command(6, 10_000)
    run_.wait_for_progress(20)
    if to_group:
        os.killpg(run_.process.pid, signum)
    else:
        run_.process.send_signal(signum)
    assert run_.finish() == 0
    results = run_.results()
    # The two items in flight (and nothing after them) come back, stopped part-way, in order.
    assert [r["index"] for r in results] == [0, 1]
    for record in results:
        assert record["result"]["stopped"] is True
        assert 0 < record["result"]["batches"] < 10_000
    # Every batch done was posted as progress, and the parent summed both workers' posts.
    progress = max(r["progress"] for r in run_.records if "progress" in r)
    assert progress == sum(r["result"]["batches"] for r in results)
    assert run_.records[-1] == {"stopped_by": signum.name}
    assert_gone(run_.worker_pids())


def test_a_second_ctrl_c_quits_at_once_and_leaves_no_worker(command: Any) -> None:
    # Items deaf to the stop flag would run for minutes: the second Ctrl-C must not wait.
    run_ = command(6, 10_000, "stubborn")
    run_.wait_for_progress(20)
    os.killpg(run_.process.pid, signal.SIGINT)
    assert run_.read_until("stopping") == {"stopping": "SIGINT"}
    os.killpg(run_.process.pid, signal.SIGINT)
    assert run_.finish() == 130
    assert {"forced": True} in run_.records
    assert_gone(run_.worker_pids())


def test_a_worker_that_does_not_stop_is_killed_and_its_item_fails(command: Any) -> None:
    # Items deaf to the stop flag (a worker hung in a call that never returns, or stopped by
    # SIGSTOP): the run waited for them as long as they took, 100 s here, past the 10 s that
    # `docker stop` allows, whose SIGKILL then ended the command before it said how to resume.
    run_ = command(6, 10_000, "stubborn")
    run_.wait_for_progress(20)
    os.killpg(run_.process.pid, signal.SIGINT)
    assert run_.finish() == 0
    results = run_.results()
    assert [r["index"] for r in results] == [0, 1]
    reason = (
        f"its worker process had not stopped {STOP_KILL_SECONDS:g} s after the stop, and was killed"
    )
    assert [r["result"] for r in results] == [{"failed": reason}] * 2
    assert run_.records[-1] == {"stopped_by": "SIGINT"}
    assert_gone(run_.worker_pids())


def test_a_killed_worker_is_a_failed_item_not_a_hang(command: Any) -> None:
    run_ = command(3, 300)
    run_.wait_for_progress(20)
    victim = run_.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert run_.finish() == 0
    results = run_.results()
    assert [r["index"] for r in results] == [0, 1, 2]
    failed = [r for r in results if "failed" in r["result"]]
    assert [r["result"]["failed"] for r in failed] == ["its worker process was killed by SIGKILL"]
    assert all(r["result"]["batches"] == 300 for r in results if r not in failed)


# The shipper's task in a worker process.


class _Context:
    """What a worker process gives ``ship_in_worker`` (``workers.WorkerContext``), unwatched."""

    def should_stop(self) -> bool:
        return False

    def add_progress(self, count: int, size: int = 0) -> None:
        pass

    def set_note(self, note: str | None) -> None:
        pass

    def set_checkpoint(self, checkpoint: int | None) -> None:
        pass

    def keep_alive(self) -> None:
        pass


def test_a_spool_that_cannot_be_written_is_removed(tmp_path: Path) -> None:
    """An object whose JSON lines do not fit the spool's disk fails as a delivery does (the run
    stops), naming the spool's folder, and its partial spool goes: left until the run ends, on
    a small TMPDIR it failed every later object too, and copied to stdout it would have cut a
    line. The file size limit (RLIMIT_FSIZE, writes past it fail with EFBIG) stands in for a
    full disk."""
    log = tmp_path / "alb.log"
    log.write_text("".join(line + "\n" for line in alb_lines(2_000)))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    limit = 256 * 1024  # the events are some 1.4 MB of JSON lines
    start_worker(WorkerSetup(Settings(), str(spool_dir)))
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        result, spooled = ship_in_worker(ObjectRef.local(str(log)), _Context())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
        stop_worker()
    assert spooled is None
    assert result.delivery_failed
    assert (
        result.error == f"delivery to the spool folder {spool_dir} (TMPDIR) failed: File too large"
    )
    assert result.events_confirmed == 0
    assert list(spool_dir.iterdir()) == []


def test_a_run_stopped_whole_and_continued_kills_no_worker_for_the_pause(command: Any) -> None:
    """Ctrl-Z stops the command and its workers together; after ``fg`` the parent's first look
    must not count the whole pause as every worker's silence (after a lunch break, every
    object would fail). Each look counts at most WATCH_STEP_SECONDS."""
    assert WATCH_STEP_SECONDS * 2 == 2.0
    run = command(2, 300, env={tasks.SILENT_KILL_ENV: "2.0"})  # 3 s of batches each
    run.wait_for_progress(20)
    os.killpg(run.process.pid, signal.SIGSTOP)
    time.sleep(3.0)
    os.killpg(run.process.pid, signal.SIGCONT)
    assert run.finish() == 0
    assert [record["result"] for record in run.results()] == [
        {"item": index, "batches": 300, "stopped": False} for index in range(2)
    ]
