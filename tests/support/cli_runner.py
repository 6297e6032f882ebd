"""Running the command line in-process, as a user would type it, and keeping what it printed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from elb_log_shipper import cli


@dataclass
class Run:
    """The exit status and what went to stdout and stderr."""

    status: int
    out: str
    err: str


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """``elb-log-shipper *argv``, in this process."""
    capsys.readouterr()
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)
