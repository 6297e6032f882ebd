"""Running the command line in-process, as a user would type it, and keeping what it printed;
or as a process that a test stops part-way with a signal, as Ctrl-C would."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from elb_log_shipper import cli

# The command as a process of its own: what Ctrl-C (a signal to it) can stop part-way.
COMMAND = [sys.executable, "-m", "elb_log_shipper.cli"]


@dataclass
class Run:
    """The exit status and what went to stdout and stderr."""

    status: int
    out: str
    err: str
    stopped_after: float | None = None
    """Seconds from the stop signal to the process's end (``interrupt_command``)."""


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """``elb-log-shipper *argv``, in this process."""
    capsys.readouterr()
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


def interrupt_command(
    argv: list[str],
    env: Mapping[str, str],
    *,
    when: Callable[[], bool] = lambda: False,
    said: str | None = None,
    stop_signal: signal.Signals = signal.SIGINT,
    within: float = 30.0,
) -> Run:
    """``elb-log-shipper *argv`` as a process, sent ``stop_signal`` as soon as ``when()`` holds
    or its stderr has said ``said`` (or after ``within`` seconds); what it printed once it
    ended, and how long it took to end after the signal (``Run.stopped_after``)."""
    with tempfile.TemporaryDirectory() as folder:
        # A file, not a pipe, so that what it says can be read while it runs.
        err_path = Path(folder) / "stderr"
        with err_path.open("a") as err_file:
            process = subprocess.Popen(
                [*COMMAND, *argv], env=env, stdout=subprocess.PIPE, stderr=err_file, text=True
            )
        end = time.monotonic() + within
        while (
            not when()
            and not (said is not None and said in err_path.read_text())
            and time.monotonic() < end
            and process.poll() is None
        ):
            time.sleep(0.02)
        signalled = time.monotonic()
        process.send_signal(stop_signal)
        out, _ = process.communicate(timeout=60)
        stopped_after = time.monotonic() - signalled
        return Run(process.returncode, out, err_path.read_text(), stopped_after)


def printed_resume_commands(err: str) -> list[list[str]]:
    """The commands an interrupted run printed to resume, as arguments of ``cli.main``."""
    prefix = f"  {cli.PROG} "
    commands = [shlex.split(line)[1:] for line in err.splitlines() if line.startswith(prefix)]
    assert commands, err
    return commands


def run_resume_commands(capsys: pytest.CaptureFixture[str], commands: list[list[str]]) -> None:
    """Run each command an interrupted run printed, in this process: each must finish (exit 0)."""
    for command in commands:
        run = run_command(capsys, *command)
        assert run.status == cli.EXIT_OK, (command, run.err)


def run_resume_processes(
    commands: list[list[str]], env: Mapping[str, str], timeout: float = 60.0
) -> None:
    """Run each command an interrupted run printed (``printed_resume_commands``) as a process of
    its own, as a user runs them: each must finish (exit 0)."""
    for command in commands:
        result = subprocess.run(
            [*COMMAND, *command],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == cli.EXIT_OK, (command, result.stderr)
