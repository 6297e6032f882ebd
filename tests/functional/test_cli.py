"""``elb-log-shipper ship`` on local files, one S3 object, TCP and TLS; usage errors.

Run in-process through ``cli.main`` (a command that must be interrupted runs as a process); S3 is
moto over HTTP, Logstash the json_lines receiver or the beats server.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from bench.corpus import alb_lines

from elb_log_shipper import cli
from elb_log_shipper.config import ENV
from elb_log_shipper.samples import ALB_LINES, CLASSIC_LINES
from tests.support.beats_server import BeatsServer, Faults
from tests.support.certs import CertBundle
from tests.support.cli_runner import (
    COMMAND,
    Run,
    interrupt_command,
    printed_resume_commands,
    run_command,
    run_resume_commands,
)
from tests.support.faults import NeverReadingServer, RefusingServer, SlowReadingServer
from tests.support.receiver import JsonLinesReceiver
from tests.support.s3server import DUMMY_ENVIRON, MotoServer

pytestmark = pytest.mark.timeout(60)

S3_KEY = (
    "AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/123456789012_"
    "elasticloadbalancing_us-east-1_app.my-alb.50dc6c495c0c9188_20261128T2340Z_10.0.1.7_a1.log.gz"
)


PYTHON_CLI = [sys.executable, "-m", "elb_log_shipper.cli"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    return run_command(capsys, *argv)


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in vars(ENV).values():
        if isinstance(name, str) and name.isupper():
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A gzip file named .log, a plain file named .gz, in a directory with a subdirectory."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a-gzip.log").write_bytes(gzip.compress("\n".join(ALB_LINES).encode() + b"\n"))
    (tmp_path / "sub" / "b-plain.log.gz").write_bytes("\n".join(CLASSIC_LINES).encode())
    return tmp_path


@pytest.mark.parametrize(
    ("name", "lines"),
    [("a-gzip.log", ALB_LINES), ("sub/b-plain.log.gz", CLASSIC_LINES)],
    ids=["gzip-named-log", "plain-named-gz"],
)
def test_file_to_stdout_one_event_per_line_in_order(
    capsys: pytest.CaptureFixture[str], logs: Path, name: str, lines: tuple[str, ...]
) -> None:
    run = run_cli(capsys, "ship", str(logs / name), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    got = events(run.out)
    # Told by magic bytes, not the name: every line read back as written.
    assert [event["event"]["original"] for event in got] == list(lines)
    offsets = [event["log"]["offset"] for event in got]
    assert offsets == sorted(offsets)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_file_saved_with_a_byte_order_mark_ships_its_first_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, compress: bool
) -> None:
    # An editor's UTF-8 byte-order mark before the first line; ELB writes none.
    data = "\ufeff".encode() + "".join(line + "\n" for line in CLASSIC_LINES).encode()
    path = tmp_path / "saved.log"
    path.write_bytes(gzip.compress(data) if compress else data)
    run = run_cli(capsys, "ship", str(path), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    got = events(run.out)
    assert [event["event"]["original"] for event in got] == list(CLASSIC_LINES)
    # Every line parsed as it is without the mark (the samples hold one line that is no log).
    plain = tmp_path / "plain.log"
    plain.write_bytes(data[3:])
    reference = run_cli(capsys, "ship", str(plain), "--to", "-")
    assert "tags" not in got[0]
    assert [event.get("tags") for event in got] == [
        event.get("tags") for event in events(reference.out)
    ]
    assert got[0]["log"]["offset"] == 0
    # Offsets count the mark: resumed at the second line, the rest of the events as they were.
    second = str(got[1]["log"]["offset"])
    again = run_cli(capsys, "ship", str(path), "--to", "-", "--start-offset", second)
    assert again.status == cli.EXIT_OK, again.err
    # (A parse failure's @timestamp is when it was read, so ids and lines are compared.)
    resumed = events(again.out)
    assert [(e["event"]["id"], e["event"]["original"]) for e in resumed] == [
        (e["event"]["id"], e["event"]["original"]) for e in got[1:]
    ]


def test_lines_with_20_digit_integers_give_one_event_each_and_exit_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Issue 12 item 7: an integer past 2^64 in a status, a byte count or the URL's port.
    huge = "123456789012345678901"
    good = ALB_LINES[0]
    head, quote, rest = good.partition('"')
    fields = head.split(" ")
    fields[8] = huge
    poison = [" ".join(fields) + quote + rest, good.replace(":443/", f":{huge}/", 1)]
    lines = [good, *poison, *ALB_LINES[1:]]
    path = tmp_path / "poison.log"
    path.write_text("".join(line + "\n" for line in lines))
    run = run_cli(capsys, "ship", str(path), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    assert [e["event"]["original"] for e in events(run.out)] == lines
    assert "Traceback" not in run.err


def test_directory_ships_every_file_in_name_order(
    capsys: pytest.CaptureFixture[str], logs: Path
) -> None:
    run = run_cli(capsys, "ship", str(logs), "--to", "-", "--jobs", "2")
    assert run.status == cli.EXIT_OK, run.err
    assert [e["event"]["original"] for e in events(run.out)] == [*ALB_LINES, *CLASSIC_LINES]
    assert "2 objects read (0 failed), 0 skipped" in run.err


def test_stdout_is_written_by_one_process_by_default_with_no_spool(
    capsys: pytest.CaptureFixture[str], logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With several workers each object's JSON lines wait in TMPDIR until their turn (some four
    # times the log's size): where no temporary folder can be made, that fails at once.
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    run = run_cli(capsys, "ship", str(logs), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    assert [e["event"]["original"] for e in events(run.out)] == [*ALB_LINES, *CLASSIC_LINES]
    # Asked for: one sentence that says what to change, no traceback.
    run = run_cli(capsys, "ship", str(logs), "--to", "-", "--jobs", "2")
    assert run.status == cli.EXIT_USAGE
    assert "set TMPDIR to a writable folder, or use --jobs 1" in run.err
    assert "Traceback" not in run.err and run.out == ""


def test_a_link_to_nothing_in_a_directory_fails_alone(
    capsys: pytest.CaptureFixture[str], logs: Path
) -> None:
    # Planning the directory took the size of every file and raised FileNotFoundError.
    (logs / "gone.log").symlink_to(logs / "nowhere.log")
    run = run_cli(capsys, "ship", str(logs), "--to", "-")
    assert run.status == cli.EXIT_FAILED, run.err
    assert [e["event"]["original"] for e in events(run.out)] == [*ALB_LINES, *CLASSIC_LINES]
    assert f"{logs / 'gone.log'}: 0 lines" in run.err
    assert "No such file or directory" in run.err
    assert "3 objects read (1 failed), 0 skipped" in run.err


def _end_a_wait_on(fifo: Path, after: float) -> threading.Timer:
    """After ``after`` seconds, open ``fifo`` for writing and close it, which ends a reader's
    wait for a writer (its read then sees an empty file); nothing when no one reads it."""

    def write_nothing() -> None:
        with contextlib.suppress(OSError):  # ENXIO: no reader waits
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(after, write_nothing)
    timer.start()
    return timer


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_fifo_in_a_folder_is_skipped_not_waited_on(
    capsys: pytest.CaptureFixture[str], logs: Path, jobs: str
) -> None:
    # Opening a FIFO waits for a writer: the command hung there for good, past SIGTERM. (Were it
    # to open it, the timer would end the wait, and the test fail on what the command printed.)
    fifo = logs / "sub" / "c.fifo"
    os.mkfifo(fifo)
    timer = _end_a_wait_on(fifo, after=10.0)
    try:
        run = run_cli(capsys, "ship", str(logs), "--to", "-", "--jobs", jobs)
    finally:
        timer.cancel()
    assert run.status == cli.EXIT_OK, run.err
    assert [e["event"]["original"] for e in events(run.out)] == [*ALB_LINES, *CLASSIC_LINES]
    assert f"skipped {fifo}: not a regular file (a FIFO, a socket or a device)" in run.err
    assert "read (0 failed), 1 skipped" in run.err
    dry = run_cli(capsys, "ship", str(logs), "--dry-run")
    assert f"skip  {fifo}  (not a regular file" in dry.out + dry.err
    # Named alone, it is no source to ship: a usage error that says what it is.
    alone = run_cli(capsys, "ship", str(fifo), "--to", "-")
    assert alone.status == cli.EXIT_USAGE
    assert alone.err == (
        f"elb-log-shipper: {fifo}: not a regular file (a FIFO, a socket or a device); name a "
        "file, a folder or an s3:// object or prefix\n"
    )


def test_dot_files_in_a_folder_are_counted_and_left_out_unless_any_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A folder synced from a bucket on a Mac ships its .DS_Store, and one under git its .git/:
    # every line a parse failure (an S3 prefix leaves out what is not named as a log).
    root = tmp_path / "logs"
    written = write_tree(root, ["a.log", "sub/b.log", ".hidden/c.log"], 2)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    run = run_cli(capsys, "ship", str(root), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    shipped = [e["log"]["file"]["path"] for e in events(run.out)]
    assert shipped == [str(root / "a.log")] * 2 + [str(root / "sub" / "b.log")] * 2
    assert "\nnot logs        2  listed, not named like ELB log files (--any-key" in run.err
    dry = run_cli(capsys, "ship", str(root), "--dry-run")
    assert "would ship 2 objects" in dry.out
    assert "; 2 not ELB log files (--any-key reads them)" in dry.out
    everything = run_cli(capsys, "ship", str(root), "--to", "-", "--any-key")
    paths = {e["log"]["file"]["path"] for e in events(everything.out)}
    assert paths == {*written, str(root / ".DS_Store")}
    # Named, a dot-folder is read as any folder.
    hidden = run_cli(capsys, "ship", str(root / ".hidden"), "--to", "-")
    assert [e["log"]["file"]["path"] for e in events(hidden.out)] == [
        str(root / ".hidden" / "c.log")
    ] * 2


def test_links_to_folders_are_walked_each_folder_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The walk used to leave out every folder reached through a link, without a word.
    root = tmp_path / "logs"
    write_tree(root, ["a/x.log", "b/y.log"], 1)
    write_tree(tmp_path / "archive", ["z.log"], 1)
    (root / "c").symlink_to(tmp_path / "archive")  # elsewhere: walked
    (root / "d").symlink_to(root / "a")  # a folder walked already: not again
    (root / "b" / "up").symlink_to(root)  # a loop
    run = run_cli(capsys, "ship", str(root), "--to", "-")
    assert run.status == cli.EXIT_OK, run.err
    shipped = [e["log"]["file"]["path"] for e in events(run.out)]
    assert shipped == [str(root / name) for name in ("a/x.log", "b/y.log", "c/z.log")]


def _as_nobody(argv: list[str], out: Path, err: Path) -> int:
    """``cli.main(argv)`` in a forked child, as ``nobody`` when this process has root's right to
    read any folder: its exit status, its output written to ``out`` and ``err``. The command
    must fail before it starts worker processes (their modules are root's)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, which reports only through its exit status
        status = 99
        try:
            with out.open("w") as sys.stdout, err.open("w") as sys.stderr:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                status = cli.main(argv)
        finally:
            os._exit(status)
    _, waited = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(waited)


def tree_for_nobody(names: list[str], lines: int) -> tuple[Path, Path, dict[str, list[int]]]:
    """``write_tree`` under ``logs`` in a new folder of /tmp, all readable by ``nobody``
    (pytest's own folders are not): that folder (to remove), the root, and the lines."""
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    top.chmod(0o755)
    root = top / "logs"
    written = write_tree(root, names, lines)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.chmod(0o755)
    return top, root, written


def test_a_folder_that_cannot_be_listed_stops_the_command_before_anything_ships(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The walk used to skip such a folder without a word: its lines were never shipped, and the
    # command exited 0. The tree is readable by all but that folder (pytest's own is not).
    top, root, _ = tree_for_nobody(["a/x.log", "b/y.log", "c/z.log"], 1)
    try:
        (root / "b").chmod(0o000)
        out, err = tmp_path / "out", tmp_path / "err"
        status = _as_nobody(["ship", str(root), "--to", "-"], out, err)
        assert status == cli.EXIT_USAGE, err.read_text()
        assert err.read_text() == (
            f"elb-log-shipper: cannot list the folder {root / 'b'}: Permission denied; nothing "
            "was shipped (check its permissions, or name the folders to ship one by one)\n"
        )
        assert out.read_bytes() == b""
        # The folder readable again, the same tree ships whole (in this process: the child
        # could not start the command's worker processes, whose modules only root may read).
        (root / "b").chmod(0o755)
        run = run_cli(capsys, "ship", str(root), "--to", "-")
        assert run.status == cli.EXIT_OK, run.err
        assert len(events(run.out)) == 3
    finally:
        (top / "logs" / "b").chmod(0o755)
        shutil.rmtree(top)


def test_a_file_that_cannot_be_read_fails_and_the_printed_command_ships_it_once_readable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Counted as rejected ("reading it again cannot help"): no command to ship it, while a
    # chmod does help, as a grant does for an S3 object access denied.
    top, root, written = tree_for_nobody(["a.log", "b.log", "c.log"], 2)
    try:
        (root / "b.log").chmod(0o000)
        out, err = tmp_path / "out", tmp_path / "err"
        status = _as_nobody(["ship", str(root), "--to", "-", "--jobs", "1"], out, err)
        assert status == cli.EXIT_FAILED, err.read_text()
        assert f"cannot read {root / 'b.log'}: Permission denied" in err.read_text()
        commands = printed_resume_commands(err.read_text())
        assert commands == [
            ["ship", str(root / "b.log"), "--to", "-", "--jobs", "1", "--start-offset", "0"]
        ]
        (root / "b.log").chmod(0o644)
        run = run_cli(capsys, *commands[0])
        assert run.status == cli.EXIT_OK, run.err
        got = [e["log"]["file"]["path"] for e in events(out.read_text() + run.out)]
        assert Counter(got) == Counter(p for p, offsets in written.items() for _ in offsets)
    finally:
        shutil.rmtree(top)


def test_missing_file_is_a_usage_error_in_one_sentence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = run_cli(capsys, "ship", str(tmp_path / "nope.log"), "--to", "-")
    assert run.status == cli.EXIT_USAGE
    assert run.out == ""
    assert run.err == f"elb-log-shipper: {tmp_path / 'nope.log'}: no such file or directory\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ship", "x.log"], "say where to ship"),
        (["ship", "x.log", "--via-lambda", "f"], "--via-lambda ships S3 objects only"),
        (["ship", "s3://b/", "--to", "-", "--jobs", "0"], "--jobs 0 is out of range"),
        (["ship", "s3://b/k", "--to", "-", "--start-offset", "-1"], "a byte offset of 0 or more"),
        # Once accepted: a pool of 0 (or fewer) connections waited for one forever, SIGTERM too.
        (["ship", "x.log", "--to", "tcp://h:1", "--pool-size", "0"], "--pool-size 0 is out of"),
        (["ship", "x.log", "--to", "tcp://h:1", "--pool-size", "-2"], "use 1 to 64"),
        (["ship", "x.log", "--to", "tcp://h:1", "--pool-size", "65"], "--pool-size 65 is out of"),
        (
            ["ship", "s3://b/", "--to", "-", "--since", "2024-03-02", "--until", "2024-03-01"],
            "is after --until",
        ),
        (["ship", "s3://b/", "--to", "udp://x"], "no known scheme"),
        (["ship", "s3://Bad_Bucket!/x", "--to", "-"], "'Bad_Bucket!' is no S3 bucket name"),
        (["ship", "s3://b/", "--to", "tcp://bad host:5044"], "'bad host' is not a host name"),
        (["ship", "s3://b/", "--to", "tcp://h:abc"], "has no port from 1 to 65535"),
        (["ship", "s3://b/", "--to", "beats://h:70000"], "has no port from 1 to 65535"),
        (["ship", "x.log", "--to", "-", "--progress-every", "nan"], "a positive number of"),
        # argparse reads `--start-after=--` as no value: the listing would start again.
        (["ship", "s3://b/", "--to", "-", "--start-after=--"], "--start-after needs a key"),
        # Refused before, but for a variable the user had not set (LOGSTASH_TLS=true).
        (["ship", "x.log", "--to", "tcp://h:1", "--ca-file", "c.pem"], "use --to tls:// or"),
        (["ship", "x.log", "--to", "-", "--client-cert", "c.pem"], "are for TLS: use --to tls://"),
    ],
)
def test_usage_errors_exit_2_with_one_sentence(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    run = run_cli(capsys, *argv)
    assert run.status == cli.EXIT_USAGE
    assert message in run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "to",
    [["--to", "-"], ["--dry-run"], ["--to", "tcp://127.0.0.1:{port}"]],
    ids=["stdout", "dry run", "plain tcp"],
)
@pytest.mark.parametrize("tls", ["true", None], ids=["LOGSTASH_TLS=true", "LOGSTASH_TLS unset"])
def test_the_functions_tls_files_in_the_environment_do_not_stop_a_run_without_tls(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    to: list[str],
    tls: str | None,
) -> None:
    # With the function's environment exported (README: the command reads its settings), these
    # failed with 'LOGSTASH_CA_FILE and client certificates need LOGSTASH_TLS=true', which set
    # or not, --to tcp:// overrides: no way to preview a backfill or print its events.
    (tmp_path / "a.log").write_text(ALB_LINES[0] + "\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("not read\n")
    if tls is not None:
        monkeypatch.setenv(ENV.LOGSTASH_TLS, tls)
    monkeypatch.setenv(ENV.LOGSTASH_CA_FILE, str(ca))
    with JsonLinesReceiver() as receiver:
        argv = [part.format(port=receiver.port) for part in to]
        run = run_cli(capsys, "ship", str(tmp_path / "a.log"), *argv)
        assert run.status == cli.EXIT_OK, run.err
        if "--dry-run" not in to:
            receiver.wait_idle()
            shipped = events(run.out) + receiver.events
            assert [e["event"]["original"] for e in shipped] == [ALB_LINES[0]]


def test_the_functions_own_settings_and_variables_a_flag_replaces_are_not_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each stopped `ship ... --to -` with exit 2, though --help says the command does not read
    # the destination's variables, and a flag did not win over a variable it replaces.
    (tmp_path / "a.log").write_text(ALB_LINES[0] + "\n")
    for name, value in {
        ENV.LOGSTASH_HOST: "http://x",
        ENV.LOGSTASH_PORT: "abc",
        ENV.LOGSTASH_TLS: "maybe",
        ENV.LOGSTASH_PROTOCOL: "udp",
        ENV.DEADLINE_MARGIN_SECONDS: "5",
        ENV.MAX_HOPS: "0",
        ENV.LOG_PREFIX: "/AWSLogs/",
        ENV.LOG_BUCKET: "s3://logs",
        ENV.LOGSTASH_POOL_SIZE: "abc",
        ENV.KEEP_ORIGINAL: "nope",
    }.items():
        monkeypatch.setenv(name, value)
    run = run_cli(
        capsys, "ship", str(tmp_path / "a.log"), "--to", "-", "--pool-size", "2", "--no-original"
    )
    assert run.status == cli.EXIT_OK, run.err
    (event,) = events(run.out)
    assert "original" not in event["event"]
    # A variable the command reads, when no flag replaces it, is still checked.
    run = run_cli(capsys, "ship", str(tmp_path / "a.log"), "--to", "-", "--pool-size", "2")
    assert run.status == cli.EXIT_USAGE
    assert run.err == f"{cli.PROG}: KEEP_ORIGINAL='nope' is not a boolean: use true or false\n"


def ship_in_a_child(
    root: Path,
    jobs: str,
    stdout: IO[bytes] | int,
    environ: dict[str, str],
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``ship ROOT --to - --jobs JOBS`` in a child process writing to ``stdout``."""
    return subprocess.run(
        [*PYTHON_CLI, "ship", str(root), "--to", "-", "--jobs", jobs],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        env=environ,
        preexec_fn=preexec_fn,
    )


@pytest.mark.parametrize(("jobs", "lines"), [("1", 2_000), ("1", 1), ("2", 2_000)])
def test_stdout_that_cannot_be_written_stops_the_run_with_the_commands_for_every_object(
    tmp_path: Path, jobs: str, lines: int
) -> None:
    # A full disk failed every object alike, each with "OSError: [Errno 28] No space left on
    # device"; with small objects stdout's buffer counted their lines as sent and the run ended
    # in a traceback at its last flush; with --jobs 2 the parent's copy of a spool raised. Now
    # the run stops, every object among the commands that ship it again. Python's stdout is
    # buffered here as it is for an operator (no PYTHONUNBUFFERED).
    root = tmp_path / "logs"
    written = write_tree(root, ["a.log", "b.log", "c.log"], lines)
    # A gzip cut short: rejected at its fault, after lines that never reached stdout either.
    cut = gzip.compress((root / "a.log").read_bytes())
    (root / "b2.log.gz").write_bytes(cut[: len(cut) * 2 // 3])
    written[str(root / "b2.log.gz")] = []
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "wb") as full:
        run = ship_in_a_child(root, jobs, full, environ)
    assert run.returncode == cli.EXIT_FAILED, run.stderr
    assert "delivery to stdout failed: No space left on device" in run.stderr
    assert "stopped because writing the events failed" in run.stderr
    assert "Traceback" not in run.stderr
    covered: set[str] = set()
    for command in printed_resume_commands(run.stderr):
        if "--start-offset" in command:
            covered.add(command[1])  # one object, again
        else:
            after = [w.split("=", 1)[1] for w in command if w.startswith("--start-after=")]
            covered |= {path for path in written if not after or path > after[0]}
    assert covered == set(written), run.stderr


@pytest.mark.parametrize("append", [False, True], ids=[">", ">>"])
@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED", "buffered"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_size_limit_on_stdout_loses_no_line_once_the_printed_commands_ran(
    tmp_path: Path, unbuffered: bool, jobs: str, append: bool
) -> None:
    # Under PYTHONUNBUFFERED stdout is the raw file, whose write may write part of a batch and
    # say so only in its return value: 104 of 18,000 events were lost (a batch's end counted
    # as written), 8 with --jobs 2. The file size limit (EFBIG past it) makes writes partial.
    # The file ended with a cut line, which the printed commands' output, appended, ran into
    # (one line of invalid JSON), and with --jobs 2 the lines of the object being copied came
    # again: the file is now cut back to its last whole batch (object), so appending the
    # printed commands' output gives every event once.
    root = tmp_path / "logs"
    written = write_tree(root, [f"f{n}.log" for n in range(4)], 1_500)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        environ["PYTHONUNBUFFERED"] = "1"
    output = tmp_path / "events.json"

    # Appended to (>>), the file's earlier lines stay whatever is cut, even when the first
    # write fails (a file opened to append is at offset 0 until it is written).
    earlier = b'{"earlier": true}\n' * 3 if append else b""
    limit = len(earlier) + 100_000 if append else 6_000_000  # in the first batch, or object 2

    def limited() -> None:  # in the child: writes past the limit fail
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    output.write_bytes(earlier)
    # As a shell opens it: O_APPEND, at offset 0 (Python's open() would seek to the end).
    descriptor = os.open(output, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
    try:
        run = ship_in_a_child(root, jobs, descriptor, environ, limited)
    finally:
        os.close(descriptor)
    assert run.returncode == cli.EXIT_FAILED, run.stderr
    assert "Traceback" not in run.stderr
    assert output.read_bytes().startswith(earlier)
    assert output.read_bytes().endswith(b"}\n")
    with output.open("ab") as out:
        for command in printed_resume_commands(run.stderr):
            subprocess.run([*PYTHON_CLI, *command], stdout=out, check=True, env=environ)
    got = [
        (event["log"]["file"]["path"], event["log"]["offset"])
        for event in map(json.loads, output.read_bytes()[len(earlier) :].splitlines())
    ]
    assert sorted(got) == sorted(
        (path, offset) for path, offsets in written.items() for offset in offsets
    )


def test_client_ip_keep_sets_the_functions_hash_key_parameter_aside(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.log").write_text(ALB_LINES[0] + "\n")
    monkeypatch.setenv(ENV.CLIENT_IP_HASH_KEY_PARAMETER, "/elb/key")
    run = run_cli(capsys, "ship", str(tmp_path / "a.log"), "--to", "-")
    assert run.status == cli.EXIT_USAGE
    assert "CLIENT_IP_HASH_KEY_PARAMETER is set but CLIENT_IP is keep" in run.err
    for choice in ("keep", "truncate"):
        run = run_cli(capsys, "ship", str(tmp_path / "a.log"), "--to", "-", "--client-ip", choice)
        assert run.status == cli.EXIT_OK, run.err


def test_privacy_flags_take_any_case_as_their_variables_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDACT_QUERY=Values was taken and --redact-query Values refused (exit 2)."""
    (tmp_path / "a.log").write_text(ALB_LINES[0] + "\n")
    plain = run_cli(capsys, "ship", str(tmp_path), "--to", "-")
    privacy = ["--redact-query", "ALL", "--client-ip", "Truncate"]
    flags = run_cli(capsys, "ship", str(tmp_path), "--to", "-", *privacy)
    monkeypatch.setenv(ENV.REDACT_QUERY, "ALL")
    monkeypatch.setenv(ENV.CLIENT_IP, "Truncate")
    variables = run_cli(capsys, "ship", str(tmp_path), "--to", "-")
    assert (flags.status, variables.status) == (cli.EXIT_OK, cli.EXIT_OK), flags.err
    assert flags.out == variables.out != plain.out


def test_bad_date_and_both_targets_are_argparse_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # fromisoformat's other forms too: a typo of one digit can make 2024-W09-5 (2024-03-01).
    for text in (
        "March",
        "20240301",
        "2024-W09-5",
        "2024-03-01T00:00",
        "2024-3-1",
        "\uff12\uff10\uff12\uff14-03-01",
    ):
        run = run_cli(capsys, "ship", "s3://b/", "--to", "-", "--since", text)
        assert run.status == cli.EXIT_USAGE
        assert f"{text!r} is not a date: use YYYY-MM-DD" in run.err
    run = run_cli(capsys, "ship", "s3://b/", "--to", "-", "--via-lambda", "f")
    assert run.status == cli.EXIT_USAGE
    assert "not allowed with argument" in run.err


def test_tls_with_ca_file(
    capsys: pytest.CaptureFixture[str], logs: Path, certs: CertBundle
) -> None:
    with JsonLinesReceiver(certs.server_context()) as receiver:
        run = run_cli(
            capsys,
            "ship",
            str(logs),
            "--to",
            f"tls://127.0.0.1:{receiver.port}",
            "--ca-file",
            certs.ca_file,
        )
        receiver.wait_idle()
        got = receiver.events
    assert run.status == cli.EXIT_OK, run.err
    # A healthy receiver gets every line exactly once (a TLS peer that closes without its own
    # close_notify once made the confirmation fail and the batch go out again).
    assert sorted(e["event"]["original"] for e in got) == sorted([*ALB_LINES, *CLASSIC_LINES])
    assert receiver.handshake_errors == []


@pytest.mark.parametrize("client_cert", [True, False], ids=["client-cert", "no-client-cert"])
def test_beats_tls_takes_the_tls_flags_as_tls_does(
    capsys: pytest.CaptureFixture[str], logs: Path, certs: CertBundle, client_cert: bool
) -> None:
    """Issue 10: ``--to beats+tls://`` with ``--ca-file``, ``--client-cert`` and
    ``--client-key``, against a beats input that requires a client certificate."""
    with BeatsServer(certs.server_context(require_client_cert=True)) as server:
        argv = ["ship", str(logs), "--to", f"beats+tls://127.0.0.1:{server.port}"]
        argv += ["--ca-file", certs.ca_file]
        if client_cert:
            argv += ["--client-cert", certs.client_cert_file, "--client-key", certs.client_key_file]
        run = run_cli(capsys, *argv)
        got = server.events
    if not client_cert:
        assert run.status != cli.EXIT_OK
        assert "--client-cert and --client-key" in run.err, run.err
        assert got == []
        return
    assert run.status == cli.EXIT_OK, run.err
    assert sorted(e["event"]["original"] for e in got) == sorted([*ALB_LINES, *CLASSIC_LINES])
    assert server.handshake_errors == []


def test_one_s3_object_to_tcp_end_to_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    for name, value in DUMMY_ENVIRON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint_url)
    bucket = moto.new_bucket()
    data = "\n".join(ALB_LINES).encode() + b"\n"
    moto.put_object(bucket, S3_KEY, data, compress=True)
    # A longer key under the same name: naming the object exactly must not ship it too.
    moto.put_object(bucket, S3_KEY + ".copy", data)
    with JsonLinesReceiver() as receiver:
        run = run_cli(
            capsys, "ship", f"s3://{bucket}/{S3_KEY}", "--to", f"tcp://127.0.0.1:{receiver.port}"
        )
        receiver.wait_idle()
        got = receiver.events
    assert run.status == cli.EXIT_OK, run.err
    assert [e["event"]["original"] for e in got] == list(ALB_LINES)
    assert {e["aws"]["s3"]["object"]["key"] for e in got} == {S3_KEY}
    assert "1 object read (0 failed), 0 skipped" in run.err


def test_start_offset_ships_the_rest_of_one_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [line + "\n" for line in alb_lines(3)]
    (tmp_path / "a.log").write_text("".join(lines))
    offset = len(lines[0].encode())
    run = run_cli(
        capsys, "ship", str(tmp_path / "a.log"), "--to", "-", "--start-offset", str(offset)
    )
    assert run.status == cli.EXIT_OK, run.err
    assert [e["log"]["offset"] for e in map(json.loads, run.out.splitlines())] == [
        offset,
        offset + len(lines[1].encode()),
    ]
    (tmp_path / "b.log").write_text("".join(lines))
    run = run_cli(capsys, "ship", str(tmp_path), "--to", "-", "--start-offset", str(offset))
    assert run.status == cli.EXIT_USAGE
    assert "--start-offset needs one SOURCE naming one object" in run.err


def interrupted_once_it_shows(
    argv: list[str], shown_marker: str, **settings: str
) -> tuple[list[str], str, int]:
    """Run the command (``LOGSTASH_*`` unset but ``settings``) until its stderr shows a line
    with ``shown_marker``, then press Ctrl-C twice (the first stops at the next batch, which may
    never come): the stderr lines up to the first stop's message, the rest, and the exit code."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOGSTASH_")}
    env.update(settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "elb_log_shipper.cli", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        shown: list[str] = []
        for line in process.stderr:  # the test's timeout bounds the wait
            shown.append(line)
            if shown_marker in line:
                break
        assert process.poll() is None, "".join(shown)
        process.send_signal(signal.SIGINT)
        for line in process.stderr:
            shown.append(line)
            if "SIGINT: stopping" in line:
                break
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return shown, rest, process.returncode


@pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "worker-processes"])
def test_keepalives_only_beats_input_keeps_the_command_waiting_and_the_progress_line_says_so(
    tmp_path: Path, jobs: int
) -> None:
    """A beats input whose pipeline is blocked sends only keep-alives: the command has no deadline,
    so it keeps waiting (keep-alives are no stall), and its progress line says what for, whether
    the objects ship in the command's process or in worker processes. Two Ctrl-Cs end it (the
    first stops at the next batch, which never comes)."""
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text("".join(line + "\n" for line in alb_lines(2_000)))
    with BeatsServer(faults=Faults(never_ack=True, keepalive_interval=0.2)) as server:
        argv = ["ship", str(tmp_path), "--to", f"beats://127.0.0.1:{server.port}"]
        argv += ["--jobs", str(jobs), "--progress-every", "0.2"]
        shown, rest, returncode = interrupted_once_it_shows(
            argv, "waiting for Logstash to acknowledge"
        )
        acknowledged = [window for window in server.windows if window.acked]
    waiting = [line for line in shown if "waiting for Logstash to acknowledge" in line]
    assert waiting[0].startswith("progress: "), waiting
    if jobs == 1:
        # The bytes read of the object being shipped count before it ends (a worker process
        # posts them with its lines, at most every 0.1 s).
        assert " 0 B of " not in waiting[0], waiting
    assert returncode == cli.EXIT_INTERRUPTED, "".join(shown) + rest
    assert "Traceback" not in "".join(shown) + rest
    assert acknowledged == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "worker-processes"])
def test_a_tcp_input_that_stops_reading_is_named_on_the_progress_line_while_a_write_waits(
    tmp_path: Path, jobs: int
) -> None:
    """A tcp input whose pipeline is blocked stops reading: a write blocks until the stall
    timeout breaks the connection, and the progress line said nothing meanwhile (it spoke only
    of beats' wait for ACKs, and of failures in a row). It now says how long Logstash has not
    read, in the command's process or in worker processes."""
    # More JSON lines than the kernel buffers of both ends hold (about 2.6 KB an event).
    (tmp_path / "a.log").write_text("".join(line + "\n" for line in alb_lines(8_000)))
    with NeverReadingServer() as server:
        argv = ["ship", str(tmp_path), "--to", f"tcp://127.0.0.1:{server.port}"]
        argv += ["--jobs", str(jobs), "--progress-every", "0.2"]
        # A stall timeout that breaks no connection during the test.
        shown, rest, returncode = interrupted_once_it_shows(
            argv, "Logstash has not read for", **{ENV.LOGSTASH_STALL_TIMEOUT: "60"}
        )
    waiting = [line for line in shown if "Logstash has not read for" in line]
    assert waiting[0].startswith("progress: "), waiting
    assert re.search(r"Logstash has not read for \d+ s; a write waits for it", waiting[0]), waiting
    assert returncode == cli.EXIT_INTERRUPTED, "".join(shown) + rest
    assert "Traceback" not in "".join(shown) + rest


# A directory resumed after Ctrl-C.

# Walk order: a folder's files by name, then its folders by name. The root's files sort after
# its folders' names, so a resume point among them must not leave out the folders (as comparing
# the paths as text would).
WALK = ["f1.log", "f2.log", "a/c.log", "a/f.log", "a/d/e.log", "m/x.log"]


def write_tree(root: Path, names: list[str], lines: int) -> dict[str, list[int]]:
    """A file of ``lines`` ALB lines at each of ``names`` under ``root``: each path and the
    offsets of its lines."""
    written: dict[str, list[int]] = {}
    for n, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = [line + "\n" for line in alb_lines(lines, seed=n)]
        path.write_text("".join(text))
        offsets = [0]
        for line in text[:-1]:
            offsets.append(offsets[-1] + len(line.encode()))
        written[str(path)] = offsets
    return written


def test_start_after_in_a_directory_takes_the_files_after_it_in_walk_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "logs"
    write_tree(root, WALK, 1)

    def shipped(start_after: Path | str) -> list[str]:
        run = run_cli(capsys, "ship", str(root), "--to", "-", "--start-after", str(start_after))
        assert run.status == cli.EXIT_OK, run.err
        return [str(Path(e["log"]["file"]["path"]).relative_to(root)) for e in events(run.out)]

    whole = run_cli(capsys, "ship", str(root), "--to", "-")
    assert [e["log"]["file"]["path"] for e in events(whole.out)] == [str(root / n) for n in WALK]
    for n, name in enumerate(WALK):
        assert shipped(root / name) == WALK[n + 1 :], name
    # A file gone since resumes at its place; a path outside the directory takes it whole.
    assert shipped(root / "a" / "e.log") == ["a/f.log", "a/d/e.log", "m/x.log"]
    assert shipped(root / "b" / "x.log") == ["m/x.log"]
    assert shipped(tmp_path / "other" / "x.log") == WALK


def test_ctrl_c_in_a_directory_then_the_resume_commands_ship_every_line_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "logs"
    names = [f"f{n:02d}.log" for n in range(20)] + [f"a/{name}" for name in WALK]
    written = write_tree(root, names, 20)
    expected = Counter((path, offset) for path, offsets in written.items() for offset in offsets)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOGSTASH_")}
    # Two connections read at 256 KiB/s each: the run takes a few seconds.
    with SlowReadingServer(bytes_per_second=256 * 1024) as slow:
        argv = ["ship", str(root), "--to", f"tcp://127.0.0.1:{slow.port}"]
        argv += ["--jobs", "2", "--pool-size", "2", "--progress-every", "0.2"]
        first = interrupt_command(argv, env, when=lambda: len(slow.events) >= 60)
        assert first.status == cli.EXIT_INTERRUPTED, first.err
        resumes = printed_resume_commands(first.err)
        # The directory resumes after the last file done, which the walk had got past.
        (after,) = [
            word.removeprefix("--start-after=")
            for resume in resumes
            for word in resume
            if word.startswith("--start-after=")
        ]
        assert after in written, first.err
        assert after != str(root / names[-1]), first.err
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        run_resume_commands(capsys, resumes)
        slow.wait_idle()
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in slow.events)
    # Together, every line exactly once.
    assert got == expected


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_stop_while_logstash_refuses_ends_the_run_at_once_and_it_resumes_whole(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, jobs: str, stop_signal: signal.Signals
) -> None:
    # The stop waited for delivery to give up (three stall timeouts, a minute): a container's
    # stop (SIGTERM, then SIGKILL 10 s later) killed the command before it printed how to
    # resume. Delivery then ended STOP_GRACE_SECONDS after the signal, retrying a Logstash that
    # refused all along: Ctrl-C took 4 to 5 s. Now a stop ends the retries of a Logstash that
    # is down at once. The progress line said only after a second that connections failed
    # ("Logstash failed 5 times in a row for 1 s, retrying (last: ... Connection refused)");
    # it says at once that Logstash refuses, and how long the command retries.
    root = tmp_path / "logs"
    written = write_tree(root, ["a.log", "b.log"], 20)
    expected = Counter((path, offset) for path, offsets in written.items() for offset in offsets)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOGSTASH_")}
    # Refusing until after the stop, however long the command takes to start: signalled at a
    # fixed 2 s, a loaded machine's command had not tried Logstash yet (it started in 1 to
    # 2.5 s), and said nothing of it, or its workers were still starting (2 s to stop).
    with RefusingServer(refuse_for=120.0) as down:
        argv = ["ship", str(root), "--to", f"tcp://127.0.0.1:{down.port}", "--jobs", jobs]
        argv += ["--progress-every", "0.2"]
        # Stopped once it says that Logstash refuses (it retries for a minute).
        first = interrupt_command(
            argv, env, said=" refuses connections; ", stop_signal=stop_signal, within=30.0
        )
        assert down.opened_at is None, "Logstash was back before the stop"
        down.open_in(2.0)
        assert first.status == cli.EXIT_INTERRUPTED, first.err
        assert first.stopped_after is not None and first.stopped_after < 2.0, first.err
        # Said as a stop, not as a deadline the user never set.
        assert "stopped (Ctrl-C or SIGTERM) before Logstash confirmed every batch" in first.err
        assert "deadline is near" not in first.err
        # While it retried, the progress line said so (it said nothing, for a minute), from
        # its first line on.
        lines = [line for line in first.err.splitlines() if line.startswith("progress: ")]
        said = [n for n, line in enumerate(lines) if "Logstash" in line]
        assert said and said[0] <= 1, first.err
        refused = f"; Logstash at 127.0.0.1:{down.port} refuses connections; retrying for up to "
        assert all(re.search(re.escape(refused) + r"(\d+ s|\d+:\d\d)$", lines[n]) for n in said), (
            first.err
        )
        # Run once Logstash is back (the commands retry until it is): every line, once.
        run_resume_commands(capsys, printed_resume_commands(first.err))
        down.wait_idle()
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in down.events)
    assert got == expected


def test_names_that_are_not_printable_reach_the_terminal_escaped_and_resume_exactly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A file name (an S3 key alike) may hold terminal escapes and line breaks, and bytes that
    # are not UTF-8 (Latin-1's é): the report, the dry run and the resume commands must show
    # them as text, and the commands, read by bash, must still name the very files, so that
    # every line arrives once. Events show such a byte as \xNN.
    root = tmp_path / "logs"
    names = [f"f{n:02d}\x1b]0;owned\x07\x1b[2K\r\nx\\'.log" for n in range(16)]
    names += [os.fsdecode(b"g%02d-caf\xe9.log" % n) for n in range(4)]
    written = write_tree(root, names, 20)
    expected = Counter(
        (as_text(path), offset) for path, offsets in written.items() for offset in offsets
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOGSTASH_")}
    dry = run_cli(capsys, "ship", str(root), "--dry-run")
    assert dry.status == cli.EXIT_OK, dry.err
    assert dry.out.count("\n") == len(names) + 1
    with SlowReadingServer(bytes_per_second=256 * 1024) as slow:
        argv = ["ship", str(root), "--to", f"tcp://127.0.0.1:{slow.port}"]
        argv += ["--jobs", "2", "--pool-size", "2", "--progress-every", "0.2"]
        first = interrupt_command(argv, env, when=lambda: len(slow.events) >= 60)
        assert first.status == cli.EXIT_INTERRUPTED, first.err
        assert all(line.isprintable() for line in first.err.splitlines()), first.err
        printed = [line for line in first.err.splitlines() if line.startswith(f"  {cli.PROG} ")]
        assert printed, first.err
        resumes = []
        for line in printed:
            words = os.fsdecode(
                subprocess.run(
                    ["bash", "-c", "printf '%s\\0' " + line], capture_output=True, check=True
                ).stdout
            )
            resumes.append(words.split("\0")[1:-1])
        assert any(w.startswith("--start-after=") for r in resumes for w in r), first.err
        slow.chunk, slow.READS_PER_SECOND = 1024 * 1024, 1000
        run_resume_commands(capsys, resumes)
        slow.wait_idle()
        got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in slow.events)
    assert got == expected


def as_text(path: str) -> str:
    """A file name as events show it: a byte that is not UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_name_that_is_not_utf8_ships_with_the_others(tmp_path: Path, jobs: str) -> None:
    # Latin-1's é in a name: the one job's run stopped with a UnicodeEncodeError traceback
    # (the event id's digest), shipping no file after it.
    root = tmp_path / "logs"
    names = ["café-utf8.log", os.fsdecode(b"caf\xe9-latin1.log"), "zz-after.log"]
    written = write_tree(root, names, 3)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "elb_log_shipper.cli",
            "ship",
            str(root),
            "--to",
            "-",
            "--jobs",
            jobs,
        ],
        capture_output=True,
        check=False,
    )
    assert run.returncode == cli.EXIT_OK, run.stderr
    shipped = [json.loads(line) for line in run.stdout.splitlines()]
    got = Counter((e["log"]["file"]["path"], e["log"]["offset"]) for e in shipped)
    assert got == Counter(
        (as_text(p), offset) for p, offsets in written.items() for offset in offsets
    )
    assert f"{root}/caf\\xe9-latin1.log" in {path for path, _ in got}
    assert len({e["event"]["id"] for e in shipped}) == len(shipped)


def big_logs(root: Path, objects: int, lines: int) -> list[Path]:
    root.mkdir()
    paths = []
    for n in range(objects):
        path = root / f"f{n}.log"
        path.write_text("".join(line + "\n" for line in alb_lines(lines, seed=n)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_stdout_closed_by_its_reader_ends_quietly(tmp_path: Path, jobs: str) -> None:
    """``ship ... --to - | head -1``: the reader goes away, and the command stops with no
    traceback (it printed one, from the copy of a spool or from the sender)."""
    (path,) = big_logs(tmp_path / "logs", 1, 5_000)
    process = subprocess.Popen(
        [*COMMAND, "ship", str(path), "--to", "-", "--jobs", jobs, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert json.loads(process.stdout.readline())["event"]["id"]
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == cli.EXIT_FAILED
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_second_ctrl_c_while_an_object_is_copied_to_stdout_leaves_it_to_the_resume(
    tmp_path: Path,
) -> None:
    """With workers, the parent copies each object's spool to stdout. A second Ctrl-C during
    that copy (stdout's reader is slow) stopped it part-way, yet the object counted as done:
    no resume command shipped the rest of it."""
    paths = big_logs(tmp_path / "logs", 3, 3_000)  # some 2 MB of JSON lines each
    # The pipe is full: the parent is blocked copying the first object, nobody reading.
    process, read_end = _start_with_stdout_unread(
        [*COMMAND, "ship", str(tmp_path / "logs"), "--to", "-", "--jobs", "2", "--quiet"]
    )
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    with os.fdopen(read_end, "rb") as reader:
        first_out = reader.read()
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    shipped = Counter(_line_keys(first_out))
    for command in printed_resume_commands(err):
        resumed = subprocess.run([*COMMAND, *command], capture_output=True, check=True)
        shipped.update(_line_keys(resumed.stdout))
    expected = {(str(path), offset) for path in paths for offset in _line_offsets(path)}
    assert set(shipped) == expected, "lines were lost"


def _start_with_stdout_unread(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start ``argv`` with its stdout a pipe that nobody reads, and wait until the pipe is full
    (30 s at most): the process, and the pipe's read end, for the caller to read and close."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(argv, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    end = time.monotonic() + 30
    while _unread(read_end) < 60 * 1024 and time.monotonic() < end:
        time.sleep(0.02)
    return process, read_end


def _unread(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", raw)[0]
    return count


def _line_keys(out: bytes) -> list[tuple[str, int]]:
    """(file, offset) of each event in ``out``, but for a last line the interruption cut."""
    keys = []
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        keys.append((event["log"]["file"]["path"], event["log"]["offset"]))
    return keys


def _line_offsets(path: Path) -> list[int]:
    offsets, offset = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        offsets.append(offset)
        offset += len(line)
    return offsets


def test_stdout_that_is_not_read_is_said_as_such_not_as_no_progress(tmp_path: Path) -> None:
    """``ship ... --to - | reader`` with the reader stopped (Ctrl-Z, a pager): the write to
    stdout waits, which the progress line called ``no progress from <object>``, as if the read
    had stalled. It says that stdout is not read, as for a tcp input that does not read, and
    every line arrives once the reader reads again."""
    (path,) = big_logs(tmp_path / "logs", 1, 3_000)
    # The silence note's bound, lowered as tests of one job do (test_parallel_backfill).
    lowered = (
        "import sys; from elb_log_shipper import cli, workers; "
        "workers.SILENT_NOTE_SECONDS = 0.5; sys.exit(cli.main())"
    )
    argv = ["ship", str(path), "--to", "-", "--quiet", "--progress-every", "0.2"]
    process, read_end = _start_with_stdout_unread([sys.executable, "-c", lowered, *argv])
    time.sleep(2.5)  # blocked past both the silence bound and a second
    with os.fdopen(read_end, "rb") as reader:
        out = reader.read()
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_OK, err
    assert len(_line_keys(out)) == 3_000
    waits = [
        line
        for line in err.splitlines()
        if "; the reader of standard output has not read for " in line
    ]
    assert waits, err
    assert all(line.endswith(" s; a write waits for it") for line in waits), waits
    assert "no progress" not in err
