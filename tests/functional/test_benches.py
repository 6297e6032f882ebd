"""The benchmarks still run and still check what they measure: a small run of each.

Their figures are not judged here (timed tests are flaky); what is judged is that they work:
``ship_bench`` fails unless the receiver counted every line the object holds (beats: every
``event.id`` exactly once, over no more connections than the pool holds), over each transport,
``timbersnake_bench`` the same against timbersnake's server, and ``floor_bench`` prints its
table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def run(*argv: str) -> str:
    process = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


@pytest.mark.parametrize("transport", ["tcp", "tls", "beats", "beats+tls"])
def test_ship_bench_ships_every_line(tmp_path: Path, transport: str) -> None:
    argv = ["bench/ship_bench.py", "--lines", "3000", "--runs", "1", "--pool", "2", "--cores", "1"]
    argv += ["--cache", str(tmp_path), "--transport", transport]
    out = run(*argv)
    assert f"S3 (moto) -> {transport.upper()} receiver" in out
    assert re.search(
        rf"^\| 3,000 \| 1 \| 2 \| [\d,]+ \|.* \| {re.escape(transport)} \|$", out, re.M
    )
    assert "peak RSS < 150 MB: met" in out


def test_timbersnake_bench_ships_every_event_once_to_timbersnake(tmp_path: Path) -> None:
    # The bench fails unless timbersnake's server, in a process of its own, received every
    # event.id exactly once over no more connections than the pool of 4.
    out = run("-m", "bench.timbersnake_bench", "--lines", "3000", "--cache", str(tmp_path))
    for transport in ("beats", "beats\\+tls"):
        row = rf"^\| {transport} \| 3,000 \| 3,000 \| 0 \| [1-4] \(4\) \| [\d.]+ \|"
        assert re.search(row, out, re.M), out


def test_backfill_bench_ships_every_line_once_with_each_jobs(tmp_path: Path) -> None:
    argv = ["bench/backfill_bench.py", "--objects", "3", "--lines", "2000", "--runs", "1"]
    out = run(*argv, "--cache", str(tmp_path))
    assert "every line arrived exactly once (event.id counted) in every run" in out
    assert re.search(r"^\| 1 \| [\d,]+ \| 1\.00x \|", out, re.M), out
    assert re.search(r"^\| 2 \| [\d,]+ \| [\d.]+x \|", out, re.M), out
    assert "peak RSS per process < 150 MB: met" in out


def test_start_method_bench_times_each_start_method() -> None:
    out = run("-m", "bench.start_method_bench", "--runs", "1")
    for method in ("fork", "forkserver", "spawn"):
        assert re.search(rf"^\| {method} \| \d+\.\d{{3}} \| \d+\.\d{{3}} \|$", out, re.M), out


def test_ship_bench_runs_a_baseline_tree_beside_this_one(tmp_path: Path) -> None:
    argv = ["bench/ship_bench.py", "--lines", "3000", "--runs", "1", "--pool", "2", "--cores", "1"]
    argv += ["--cache", str(tmp_path), "--transport", "beats", "--transport", "tcp"]
    out = run(*argv, "--baseline", str(ROOT))
    assert re.search(r"^\| 3,000 \| 1 \| 2 \| .* \| beats \|$", out, re.M), out
    assert re.search(r"^\| 3,000 \| 1 \| 2 \| .* \| beats \(baseline\) \|$", out, re.M), out
    # Each tree's beats against the same tree's json_lines.
    assert "pool 2, beats vs json_lines" in out and "beats (baseline) vs json_lines" in out


def test_ship_bench_pairs_the_runs_of_each_round(tmp_path: Path) -> None:
    argv = ["bench/ship_bench.py", "--lines", "3000", "--runs", "2", "--pool", "2", "--cores", "1"]
    argv += ["--cache", str(tmp_path), "--transport", "tcp", "--transport", "beats"]
    out = run(*argv)
    assert re.search(
        r"beats vs json_lines: .* lines/s [\d.]+x best against best .*; paired rounds: "
        r"median [\d.]+x \([\d.]+-[\d.]+, 2 rounds\)",
        out,
    ), out


def test_ship_bench_measures_the_privacy_rules_end_to_end(tmp_path: Path) -> None:
    argv = ["bench/ship_bench.py", "--lines", "3000", "--runs", "2", "--pool", "2", "--cores", "1"]
    argv += ["--cache", str(tmp_path), "--transport", "beats", "--transport", "tcp", "--privacy"]
    # The beats receiver fails the run if a query value arrives unredacted with the rules on, or
    # none arrives without them: the rules are seen to be applied, not only configured.
    out = run(*argv)
    for label in ("tcp", "beats", "tcp \\+ rules", "beats \\+ rules"):
        assert re.search(rf"^\| 3,000 \| 1 \| 2 \| .* \| {label} \|$", out, re.M), out
    for transport in ("tcp", "beats"):
        assert re.search(
            rf"^- 3,000 lines, 1 core\(s\), pool 2, {transport} \+ rules: CPU time a line "
            r"[+-][\d.]+ % \(paired rounds: median [+-][\d.]+ %, .*, 2 rounds\), end-to-end "
            r"lines/s [+-][\d.]+ %$",
            out,
            re.M,
        ), out


def test_ship_bench_refuses_a_baseline_that_is_no_source_tree(tmp_path: Path) -> None:
    argv = ["bench/ship_bench.py", "--quick", "--cache", str(tmp_path), "--baseline", str(tmp_path)]
    process = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert process.returncode != 0
    assert "is no source tree" in process.stderr


def test_floor_bench_prints_the_floor_and_the_parser() -> None:
    out = run("-m", "bench.floor_bench", "--lines", "2000", "--repeat", "1")
    assert re.search(r"^\| \*\*floor\*\*: .* \| \*\*\d+\.\d\d\*\* \| [\d,]+ \|$", out, re.M), out
    assert re.search(r"^\| full - floor: parsing in place \| -?\d+\.\d\d \| \|$", out, re.M), out


def test_cli_bench_compares_the_command_with_the_pipeline(tmp_path: Path) -> None:
    out = run("-m", "bench.cli_bench", "--lines", "2000", "--runs", "1", "--cache", str(tmp_path))
    assert re.search(r"^\| pipeline \(ship_object\) \| \d+\.\d\d \| [\d,]+ \|$", out, re.M), out
    assert re.search(r"^\| CLI \(ship FILE --to -\) \| \d+\.\d\d \| [\d,]+ \|$", out, re.M), out
    assert re.search(r"^CLI CPU per line: [+-]\d+\.\d% of the pipeline's", out, re.M), out


def test_cap_bench_ships_exactly_once_to_both_receivers() -> None:
    out = run("-m", "bench.cap_bench", "--lines", "5000", "--runs", "1", "--pool", "6")
    assert re.search(r"^\| capped \| [\d.]+ \| [\d,]+ \| \d+ \| \d+ \|$", out, re.M), out


def test_beats_codec_bench_checks_every_codec_inflates() -> None:
    out = run("-m", "bench.beats_codec_bench", "--events", "300", "--repeat", "1")
    assert re.search(r"^\| isal 1 \| [\d,]+ \| \d+\.\d \| \d+\.\d\d \|$", out, re.M), out
    assert re.search(
        r"^\| beats: `encode_window`, compression 3 \| sender \| \d+\.\d\d \|$", out, re.M
    )


def test_parse_bench_pairs_the_privacy_rounds() -> None:
    out = run(
        "-m", "bench.parse_bench", "--privacy-only", "--lines", "2000", "--slice", "500",
        "--repeat", "2",
    )  # fmt: skip
    assert "2,000 lines in slices of 500, 2 rounds" in out
    change = r"[+-]\d+\.\d % time per line; middle half [+-]\d+\.\d to [+-]\d+\.\d %"
    assert re.search(
        rf"^\| REDACT_QUERY=values, CLIENT_IP=truncate \| [\d,]+ \({change}\) \| "
        rf"[\d,]+ \({change}\) \|$",
        out,
        re.M,
    ), out
    assert re.search(rf"ELB-HealthChecker/ \| \| [\d,]+ lines read/s \({change}\) \|$", out, re.M)
    assert re.search(
        rf"DROP_METHODS=OPTIONS\) \| \| [\d,]+ lines read/s \({change}\) \|$", out, re.M
    )


def test_parse_bench_measures_every_format_with_and_without_the_rules() -> None:
    out = run("-m", "bench.parse_bench", "--formats", "--lines", "300", "--repeat", "1")
    for name in ("ALB", "ALB, 2025 layout", "Classic", "NLB", "ALB connection log"):
        row = rf"^\| {name} \| [\d,]+ \| [\d,]+ \| [+-]\d+ % \| [\d,]+ \| [+-]\d+ % \|$"
        assert re.search(row, out, re.M), out


def test_parse_bench_refuses_slices_it_cannot_pair() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "bench.parse_bench", "--privacy-only", "--lines", "900"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode != 0
    assert "--lines must be a multiple of --slice" in process.stderr
