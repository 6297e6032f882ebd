"""Backfills in worker processes (``ship --jobs N``): a real command in its own process group,
moto over HTTP, a json_lines receiver that reads slowly, and a real Ctrl-C to the whole group, as
a terminal sends it. Objects are a few hundred batches each, so Ctrl-C stops them part-way.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bench.corpus import alb_lines

from elb_log_shipper import cli, workers
from elb_log_shipper.logstash import beats
from tests.support.beats_server import BeatsServer, Faults
from tests.support.certs import CertBundle
from tests.support.cli_runner import (
    printed_resume_commands,
    run_command,
    run_resume_commands,
    run_resume_processes,
)
from tests.support.faults import SlowReadingServer
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import DUMMY_ENVIRON, FaultyS3, MotoServer

pytestmark = pytest.mark.timeout(180)

ACCOUNT = "123456789012"
FOLDER = f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/2024/03/01"
OBJECTS = 6
# About 14 MB of JSON each: more than a connection's socket buffers and queue hold, so that the
# reading, not the parsing, is still in an object when Ctrl-C comes.
LINES = 6_000
COMMAND = [sys.executable, "-m", "elb_log_shipper.cli"]


def log_key(n: int) -> str:
    return (
        f"{FOLDER}/{ACCOUNT}_elasticloadbalancing_us-east-1_app.web.50dc6c495c0c9188_"
        f"20240301T{n:02d}05Z_10.0.1.7_{n:03d}.log.gz"
    )


def every_line(lines: list[str]) -> list[int]:
    offsets, offset = [], 0
    for line in lines:
        offsets.append(offset)
        offset += len(line.encode()) + 1
    return offsets


def received(events: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    return Counter((e["aws"]["s3"]["object"]["key"], e["log"]["offset"]) for e in events)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def put_objects(moto: MotoServer, bucket: str, count: int) -> Counter[tuple[str, int]]:
    """Store ``count`` gzip objects of LINES lines; return every (key, offset) they hold."""
    expected: Counter[tuple[str, int]] = Counter()
    for n in range(count):
        lines = list(alb_lines(LINES, seed=n))
        data = "".join(line + "\n" for line in lines).encode()
        moto.client().put_object(Bucket=bucket, Key=log_key(n), Body=gzip.compress(data))
        expected.update((log_key(n), offset) for offset in every_line(lines))
    return expected


def start_two_workers(
    argv: list[str],
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    command: list[str] = COMMAND,
) -> tuple[subprocess.Popen[str], list[int]]:
    """``elb-log-shipper *argv --jobs 2 --pool-size 1`` as a process (``command``), once
    ``ready()`` holds (60 s at most): the process and its two workers' pids."""
    process = subprocess.Popen(
        [*command, *argv, "--jobs", "2", "--pool-size", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 60
    while not ready() and time.monotonic() < end and process.poll() is None:
        time.sleep(0.02)
    # The command's children are its fork server (and multiprocessing's resource tracker);
    # the workers are the fork server's children.
    workers = [pid for child in children(process.pid) for pid in children(child)]
    assert len(workers) == 2
    return process, workers


def largest_window(server: BeatsServer) -> int:
    """The most events a window the server read held."""
    return max(len(window.events) for window in list(server.windows))


def write_logs(folder: Path, count: int) -> Counter[tuple[str, int]]:
    """Write ``count`` ALB logs of LINES lines in ``folder``; return every (path, offset)."""
    folder.mkdir()
    expected: Counter[tuple[str, int]] = Counter()
    for n in range(count):
        lines = list(alb_lines(LINES, seed=n))
        path = folder / f"{n}.log"
        path.write_text("".join(line + "\n" for line in lines))
        expected.update((str(path), offset) for offset in every_line(lines))
    return expected


def user_env(moto: MotoServer) -> dict[str, str]:
    env = {**os.environ, **DUMMY_ENVIRON, "AWS_ENDPOINT_URL_S3": moto.endpoint_url}
    env.pop("AWS_ENDPOINT_URL", None)
    return env


def test_ctrl_c_during_a_two_job_backfill_then_the_resume_commands_ship_every_line_once(
    moto: MotoServer,
) -> None:
    bucket = moto.new_bucket("parallel")
    expected = put_objects(moto, bucket, OBJECTS)
    env = user_env(moto)
    # One connection per worker, each read at 512 KiB/s: the Ctrl-C lands inside the first two
    # objects; then the reader speeds up, for what was sent and for the resume commands.
    with SlowReadingServer(bytes_per_second=512 * 1024) as slow:
        argv = ["ship", f"s3://{bucket}/AWSLogs/", "--to", f"tcp://127.0.0.1:{slow.port}"]
        argv += ["--jobs", "2", "--pool-size", "1", "--progress-every", "0.2"]
        process = subprocess.Popen(
            [*COMMAND, *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        end = time.monotonic() + 60
        while len(slow.events) < 300 and time.monotonic() < end and process.poll() is None:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == cli.EXIT_INTERRUPTED, stderr
        assert "Traceback" not in stderr
        assert "SIGINT: stopping the objects in progress at their next batch" in stderr
        first = received(slow.events)
        resumes = printed_resume_commands(stderr)
        # The two objects in flight stopped part-way resume at their offsets, the rest after
        # the last object handed back.
        offsets = [r for r in resumes if "--start-offset" in r]
        assert len(offsets) == 2, stderr
        assert len(resumes) == 3, stderr
        assert 0 < sum(first.values()) < sum(expected.values())
        run_resume_processes(resumes, env, timeout=90)
        slow.wait_idle()
        both = received(slow.events)
    # Together, every line exactly once.
    assert both == expected


def test_a_worker_killed_mid_object_fails_that_object_alone(moto: MotoServer) -> None:
    bucket = moto.new_bucket("parallel")
    expected = put_objects(moto, bucket, 4)
    with SlowReadingServer(bytes_per_second=512 * 1024) as slow:
        argv = ["ship", f"s3://{bucket}/AWSLogs/", "--to", f"tcp://127.0.0.1:{slow.port}"]
        process, workers = start_two_workers(argv, lambda: len(slow.events) >= 100, user_env(moto))
        os.kill(workers[0], signal.SIGKILL)
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        _, stderr = process.communicate(timeout=90)
        slow.wait_idle()
        got = received(slow.events)
    assert process.returncode == cli.EXIT_FAILED, stderr
    assert "Traceback" not in stderr
    failed = [line for line in stderr.splitlines() if "error:" in line]
    assert len(failed) == 1, stderr
    assert failed[0].endswith("error: its worker process was killed by SIGKILL")
    victim = failed[0].split("s3://", 1)[1].split(":", 1)[0].split("/", 1)[1]
    # Every other object arrived whole, once.
    assert Counter({k: n for k, n in got.items() if k[0] != victim}) == Counter(
        {k: n for k, n in expected.items() if k[0] != victim}
    )


def test_privacy_rules_reach_every_worker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = {name: list(alb_lines(40, seed=n)) for n, name in enumerate(("a.log", "b.log"))}
    assert any("?" in line for batch in lines.values() for line in batch)
    for name, batch in lines.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in batch))
    run = run_command(
        capsys, "ship", str(tmp_path), "--to", "-", "--jobs", "2",
        "--redact-query", "all", "--client-ip", "truncate",
    )  # fmt: skip
    assert run.status == cli.EXIT_OK, run.err
    events = [json.loads(line) for line in run.out.splitlines()]
    # In plan order, every line, each one redacted by its worker.
    assert [e["log"]["file"]["path"].rsplit("/", 1)[1] for e in events] == ["a.log"] * 40 + [
        "b.log"
    ] * 40
    assert all("query" not in e.get("url", {}) for e in events)
    assert all(e["source"]["ip"].endswith(".0") for e in events)


def test_a_worker_that_cannot_be_replaced_stops_the_run_with_the_commands_to_resume(
    certs: CertBundle, tmp_path: Path
) -> None:
    """A worker dies mid-object (SIGKILL, as the OOM killer sends it) and its replacement cannot
    start: here the CA file is gone by then. The run used to end at once with that one sentence:
    the other worker's object cut off, no summary, no command to resume, though objects had been
    shipped. It stops as after a delivery failure: the object in flight finishes, and the printed
    commands ship the rest, the killed object from its start."""
    logs = tmp_path / "logs"
    expected = write_logs(logs, 4)
    ca_file = tmp_path / "ca.pem"
    shutil.copy(certs.ca_file, ca_file)
    with SlowReadingServer(bytes_per_second=512 * 1024, ssl_context=certs.server_context()) as slow:
        argv = ["ship", str(logs), "--to", f"tls://127.0.0.1:{slow.port}"]
        argv += ["--ca-file", str(ca_file)]
        process, workers = start_two_workers(argv, lambda: len(slow.events) >= 100)
        ca_file.unlink()
        os.kill(workers[0], signal.SIGKILL)
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == cli.EXIT_FAILED, stderr
        assert "Traceback" not in stderr
        assert "error: its worker process was killed by SIGKILL" in stderr
        stopped = [line for line in stderr.splitlines() if "stopped because" in line]
        assert len(stopped) == 1, stderr
        assert stopped[0].startswith(
            f"{cli.PROG}: stopped because a worker process could not start ("
        )
        assert stopped[0].endswith("); 3 objects were not shipped: fix the cause, then run:")
        resumes = printed_resume_commands(stderr)
        # The killed object from its start, then the two never started.
        assert len(resumes) == 2, stderr
        assert resumes[0][-2:] == ["--start-offset", "0"]
        assert resumes[1][-1] == f"--start-after={logs / '1.log'}"
        shutil.copy(certs.ca_file, ca_file)
        run_resume_processes(resumes, os.environ, timeout=90)
        slow.wait_idle()
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in slow.events)
    # Every line arrived; only the killed object's, which it had sent, more than once.
    assert set(got) == set(expected)
    victim = next(r for r in resumes if "--start-offset" in r)[1]
    assert {k: n for k, n in got.items() if k[0] != victim} == {
        k: n for k, n in expected.items() if k[0] != victim
    }


def test_a_worker_killed_mid_object_resumes_it_from_what_logstash_confirmed(
    tmp_path: Path,
) -> None:
    """SIGKILL (the OOM killer) to a worker half-way through an object whose windows a beats
    input has been acknowledging: the printed command goes on from the last line confirmed, as
    after a delivery failure. It used to start the object again from byte 0: every line already
    in Logstash was shipped twice, since what the worker knew died with it."""
    logs = tmp_path / "logs"
    expected = write_logs(logs, 2)
    # Each window's ACK a tenth of a second late: an object takes a second or two, its windows
    # confirmed one by one.
    with BeatsServer(faults=Faults(ack_delay=0.1)) as server:
        argv = ["ship", str(logs), "--to", f"beats://127.0.0.1:{server.port}"]

        def both_acknowledged() -> bool:
            acked = [w.connection for w in list(server.windows) if w.acked]
            return len(acked) >= 12 and len(set(acked)) == 2

        process, workers = start_two_workers(argv, both_acknowledged)
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == cli.EXIT_FAILED, stderr
        assert "Traceback" not in stderr
        failed = [line for line in stderr.splitlines() if "error:" in line]
        assert len(failed) == 1, stderr
        assert re.search(
            r"error: its worker process was killed by SIGKILL \(confirmed up to "
            r"byte \d+\)$",
            failed[0],
        ), stderr
        (resume,) = printed_resume_commands(stderr)
        victim, confirmed = resume[1], int(resume[resume.index("--start-offset") + 1])
        assert 0 < confirmed < max(offset for key, offset in expected if key == victim)
        first = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in server.events)
        run_resume_processes([resume], os.environ, timeout=90)
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in server.events)
    # Every line arrived; the killed object's lines before the offset once (they had been
    # acknowledged, and were not sent again), and the other object whole, once.
    assert set(got) == set(expected)
    assert all(n == 1 for (key, offset), n in got.items() if key != victim or offset < confirmed)
    assert any(offset < confirmed for key, offset in first if key == victim)


def test_a_worker_stopped_by_sigstop_is_killed_and_its_object_resumes_close_to_what_was_acked(
    tmp_path: Path,
) -> None:
    """SIGSTOP to a worker half-way through an object whose windows a beats input acknowledges
    one by one: silent past the bound (2 s here), the worker is killed, and the printed command
    ships the rest of its object from what the command last heard was confirmed, which is what
    the worker had read of the ACKs (it posts each confirmation as it comes). Only the windows
    in flight, whose ACKs had arrived unread, are shipped twice: 48 to 72 lines were measured
    here when the worker posted after each batch and while it waited, 48 since (a worker
    waiting for S3 lost far more: test_a_worker_silent_past_the_bound_...)."""
    logs = tmp_path / "logs"
    expected = write_logs(logs, 4)
    lowered = [
        sys.executable, "-c",
        "import sys; from elb_log_shipper import cli, workers; workers.SILENT_NOTE_SECONDS = 0.5; "
        "workers.SILENT_KILL_SECONDS = 2.0; sys.exit(cli.main())",
    ]  # fmt: skip
    with BeatsServer(faults=Faults(ack_delay=0.1)) as server:
        argv = ["ship", str(logs), "--to", f"beats://127.0.0.1:{server.port}"]

        def both_acknowledged() -> bool:
            acked = [w.connection for w in list(server.windows) if w.acked]
            return len(acked) >= 12 and len(set(acked)) == 2

        process, workers = start_two_workers(argv, both_acknowledged, command=lowered)
        os.kill(workers[0], signal.SIGSTOP)
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == cli.EXIT_FAILED, stderr
        assert "had made no progress for 2 s, and was killed (confirmed up to byte" in stderr
        (resume,) = printed_resume_commands(stderr)
        victim, confirmed = resume[1], int(resume[resume.index("--start-offset") + 1])
        acked = {
            (e["log"]["file"]["path"], e["log"]["offset"])
            for w in list(server.windows)
            if w.acked
            for e in w.events
        }
        run_resume_processes([resume], os.environ, timeout=90)
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in server.events)
    assert set(got) == set(expected)
    # Measured: 48 to 72 lines before, 48 since; only the windows in flight, whose ACKs had
    # arrived unread, at most.
    resent = sum(1 for key, offset in acked if key == victim and offset >= confirmed)
    assert resent <= beats.PIPELINED_WINDOWS * largest_window(server), resent


def test_workers_whose_command_was_killed_print_no_traceback_as_logstash_confirms(
    tmp_path: Path,
) -> None:
    """The command killed (SIGKILL, the OOM killer), its workers end quietly when their own
    thread next posts to (or reads) the pipe. Since each confirmation is posted from
    the Logstash writer thread that read it, the first ACK after the kill met the broken pipe
    there: each worker printed "Exception in thread logstash-writer-0" and a traceback."""
    logs = tmp_path / "logs"
    write_logs(logs, 4)
    with BeatsServer(faults=Faults(ack_delay=0.3)) as server:
        process, _ = start_two_workers(
            ["ship", str(logs), "--to", f"beats://127.0.0.1:{server.port}"],
            lambda: sum(1 for window in list(server.windows) if window.acked) >= 4,
        )
        assert process.poll() is None
        process.kill()
        # The workers hold the pipe: read until the last of them is gone.
        _, stderr = process.communicate(timeout=90)
    assert "Traceback" not in stderr, stderr


def test_sigterm_with_a_hung_worker_still_ends_the_run_with_the_commands_to_resume(
    tmp_path: Path,
) -> None:
    """A worker that cannot answer the stop (SIGSTOP here; a call that never returns alike):
    the command used to wait for it past the 10 s `docker stop` allows, whose SIGKILL then ended
    it before it printed how to resume. It kills that worker 8 s after the stop; the printed
    commands ship the rest, its object from what Logstash confirmed (here, nothing: its start)."""
    logs = tmp_path / "logs"
    expected = write_logs(logs, 4)
    with SlowReadingServer(bytes_per_second=512 * 1024) as slow:
        argv = ["ship", str(logs), "--to", f"tcp://127.0.0.1:{slow.port}"]
        process, workers = start_two_workers(argv, lambda: len(slow.events) >= 100)
        os.kill(workers[0], signal.SIGSTOP)
        process.send_signal(signal.SIGTERM)
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == cli.EXIT_INTERRUPTED, stderr
        assert "Traceback" not in stderr
        hung = [line for line in stderr.splitlines() if "had not stopped" in line]
        assert len(hung) == 1, stderr
        assert hung[0].endswith(
            "error: its worker process had not stopped 8 s after the stop, and was killed"
        )
        resumes = printed_resume_commands(stderr)
        victim = hung[0].split(":", 1)[0]
        # Both objects in flight go on from an offset (the other one stopped part-way).
        (hung_resume,) = [r for r in resumes if r[:2] == ["ship", victim]]
        assert hung_resume[-2:] == ["--start-offset", "0"]
        run_resume_processes(resumes, os.environ, timeout=90)
        slow.wait_idle()
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in slow.events)
    # Every line arrived; only the hung worker's, which it had sent, more than once.
    assert set(got) == set(expected)
    assert all(n == 1 for (key, _), n in got.items() if key != victim)


# A plain (not gzip) object of LINES lines is some 3.7 MB: a stall at this byte comes after the
# first 1 MiB chunk was read whole (its lines shipped), in the middle of the second.
STALL_AT = 3 * 1024 * 1024 // 2


def put_plain_objects(moto: MotoServer, bucket: str, count: int) -> Counter[tuple[str, int]]:
    """Store ``count`` plain ``.log`` objects of LINES lines (as Classic ELB names them); return
    every (key, offset) they hold."""
    expected: Counter[tuple[str, int]] = Counter()
    for n in range(count):
        key = log_key(n).removesuffix(".gz")
        lines = list(alb_lines(LINES, seed=n))
        data = "".join(line + "\n" for line in lines).encode()
        moto.client().put_object(Bucket=bucket, Key=key, Body=data)
        expected.update((key, offset) for offset in every_line(lines))
    return expected


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("progress: ")]


@pytest.mark.usefixtures("user_environment")
@pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "worker-processes"])
def test_an_object_whose_read_stalls_is_named_on_the_progress_line_and_in_the_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer, jobs: int
) -> None:
    """S3 stops answering in the middle of each object shipping at once, for a while. The
    progress line used to go on as for a slow read, naming nothing (with one job, the object
    shipping on the command's own thread, it was not drawn at all while the read stalled); it
    names each object silent past the bound (half a second here), and the summary names them,
    though they finished."""
    monkeypatch.setattr(workers, "SILENT_NOTE_SECONDS", 0.5)
    bucket = moto.new_bucket("stalls")
    expected = put_plain_objects(moto, bucket, jobs)
    with FaultyS3(moto, stall_after=STALL_AT) as s3, JsonLinesReceiver() as receiver:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url)
        release = threading.Timer(2.5, s3.release)
        release.start()
        run = run_command(
            capsys, "ship", f"s3://{bucket}/AWSLogs/", "--to", f"tcp://127.0.0.1:{receiver.port}",
            "--jobs", str(jobs), "--progress-every", "0.2",
        )  # fmt: skip
        release.join()
        receiver.wait_idle()
        got = received(receiver.events)
    assert run.status == cli.EXIT_OK, run.err
    assert got == expected
    uris = [f"s3://{bucket}/{key}" for key in sorted({key for key, _ in expected})]
    named = [line for line in progress_lines(run.err) if "; no progress from s3://" in line]
    assert named, run.err
    assert all(re.search(r"; no progress from s3://\S+ for \d s", line) for line in named)
    assert {uri for uri in uris for line in named if uri in line} == set(uris)
    summary = [line for line in run.err.splitlines() if "made no progress for" in line]
    assert [line.split(" made no")[0] for line in summary] == [f"{cli.PROG}: {u}" for u in uris]
    assert all(
        re.search(r"made no progress for \d s at one point \(a read that stalled", line)
        for line in summary
    )


@pytest.mark.usefixtures("user_environment")
def test_a_worker_silent_past_the_bound_is_killed_and_its_object_resumes_from_what_was_confirmed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    """S3 stops answering in the middle of both objects, and does not come back while the run
    goes on. The run used to wait (here for the S3 client's timeouts; a worker hung or stopped
    by SIGSTOP, forever). Silent past the bound (2 s here), each worker is killed, its object
    fails from what the beats input acknowledged of it, and the printed commands ship the rest:
    every line arrives, and none the input had acknowledged arrives twice."""
    monkeypatch.setattr(workers, "SILENT_NOTE_SECONDS", 0.5)
    monkeypatch.setattr(workers, "SILENT_KILL_SECONDS", 2.0)
    bucket = moto.new_bucket("hangs")
    expected = put_plain_objects(moto, bucket, 2)
    with FaultyS3(moto, stall_after=STALL_AT) as s3, BeatsServer() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url)
        argv = ["ship", f"s3://{bucket}/AWSLogs/", "--to", f"beats://127.0.0.1:{server.port}"]
        run = run_command(capsys, *argv, "--jobs", "2", "--progress-every", "0.2")
        assert run.status == cli.EXIT_FAILED, run.err
        assert "Traceback" not in run.err
        failed = [line for line in run.err.splitlines() if "error:" in line]
        assert len(failed) == 2, run.err
        assert all(
            re.search(
                r"error: its worker process had made no progress for 2 s, and was killed"
                r"( \(confirmed up to byte \d+\))?$",
                line,
            )
            for line in failed
        ), run.err
        # Named once: by its error, not again in the summary.
        assert "at one point" not in run.err
        resumes = printed_resume_commands(run.err)
        assert len(resumes) == 2, run.err
        confirmed = {
            command[1].removeprefix(f"s3://{bucket}/"): int(command[-1]) for command in resumes
        }
        assert any(offset > 0 for offset in confirmed.values()), run.err
        first = received(server.events)
        acked = received([e for w in list(server.windows) if w.acked for e in w.events])
        s3.release()
        run_resume_commands(capsys, resumes)
        got = received(server.events)
    assert set(got) == set(expected)
    # What the input had acknowledged was not sent again.
    assert all(n == 1 for (key, offset), n in got.items() if offset < confirmed[key])
    assert any(offset < confirmed[key] for key, offset in first)
    # Nor what it had acknowledged while the worker waited for S3, before it was killed: the
    # worker told the command of a confirmation only after a batch or while it waited for
    # Logstash, so that what came meanwhile was sent again (some 2,950 lines here); now the
    # ACKs that arrived unread, of the windows in flight, at most.
    resent = sum(1 for key, offset in acked if offset >= confirmed[key])
    assert resent <= beats.PIPELINED_WINDOWS * largest_window(server), resent


def test_with_one_job_a_wait_for_logstash_is_said_as_such_not_as_no_progress(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A beats input whose pipeline is slow acknowledges each window 1.2 s later, sending
    keep-alives meanwhile: the object shipping on the command's own thread reads, parses and
    confirms nothing for longer than the bound (half a second here), yet the command is waiting
    for Logstash, and its progress line says that, never that the object made no progress.
    (Worker processes: test_a_worker_that_waits_saying_so_is_neither_named_nor_killed.)"""
    monkeypatch.setattr(workers, "SILENT_NOTE_SECONDS", 0.5)
    (tmp_path / "a.log").write_text("".join(f"{line}\n" for line in alb_lines(60)))
    with BeatsServer(faults=Faults(ack_delay=1.2, keepalive_interval=0.2)) as server:
        run = run_command(
            capsys, "ship", str(tmp_path), "--to", f"beats://127.0.0.1:{server.port}",
            "--jobs", "1", "--progress-every", "0.2",
        )  # fmt: skip
    assert run.status == cli.EXIT_OK, run.err
    assert any("; waiting for Logstash to acknowledge" in line for line in progress_lines(run.err))
    assert "no progress" not in run.err


@pytest.mark.parametrize("limit", [12, 15, 16, 17])
def test_too_few_descriptors_for_the_workers_says_what_to_raise(tmp_path: Path, limit: int) -> None:
    """With `ulimit -n 12` a worker cannot start: the run stops with the limit and the remedy
    (it once said only ``OSError(24, 'Too many open files')``), not a trace, and exits as a
    configuration error does. At 15 to 17 a start once ran out midway, in the fork server (which
    printed its traceback, and the command said only ``EOFError``) or in the command itself
    (which killed the fork server, traceback and all). Where the limit is just enough (17 or
    18, as the descriptors the command inherits go) the run ships."""
    write_logs(tmp_path / "logs", 4)

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    done = subprocess.run(
        [*COMMAND, "ship", str(tmp_path / "logs"), "--to", "-", "--jobs", "2"],
        preexec_fn=few_descriptors,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if limit == 17 and done.returncode == cli.EXIT_OK:
        assert "Traceback" not in done.stderr
        return
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    assert done.stderr == (
        f"elb-log-shipper: a worker process could not start: Too many open files (the limit is "
        f"{limit}): raise it (ulimit -n) or ship with fewer --jobs\n"
    )
