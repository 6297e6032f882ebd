"""``make demo``, the README's first command: the installed entry point, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from elb_log_shipper.samples import SAMPLE_OBJECTS

# What `make demo` runs: the console script pip installed beside this interpreter.
ENTRY_POINT = Path(sys.executable).parent / "elb-log-shipper"


def test_demo_ships_every_sample_line_to_the_local_receiver() -> None:
    # No AWS and no Logstash: whatever the environment names must not matter.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOGSTASH_"))}
    run = subprocess.run(
        [str(ENTRY_POINT), "demo"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    expected = sum(len(sample.lines) for sample in SAMPLE_OBJECTS)
    assert f"received {expected} of {expected} events." in run.stdout
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert sorted(e["event"]["original"] for e in events) == sorted(
        line for sample in SAMPLE_OBJECTS for line in sample.lines
    )
    # One line per object, then the run's summary with its wall-clock rate.
    for sample in SAMPLE_OBJECTS:
        assert f"{sample.key}: {len(sample.lines)} lines, " in run.stdout
    summary = f"{len(SAMPLE_OBJECTS)} objects read (0 failed), 0 skipped: {expected} lines"
    assert summary in run.stdout
    assert "Traceback" not in run.stderr
