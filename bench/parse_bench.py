"""Parser benchmark: elb-log-shipper vs aws-log-parser vs AWS's Athena regex, same lines, one run.

Two measures, each the best of ``--repeat`` runs of CPU time (``time.process_time``, so other
processes on the machine disturb it less than wall time):

- parse only: one line of text (or bytes, for us: that is what the pipeline has) to a structured
  object (our ECS event dict; aws-log-parser's dataclass; the regex's dict of groups);
- file -> JSON lines: read an uncompressed log file, parse every line, serialise each record as
  one JSON line, write them to /dev/null. Ours is the real pipeline (``pipeline.ship_object``:
  framing, offsets, event ids, batching). aws-log-parser's own file reader and
  ``json.dumps(asdict(entry), default=str)``; the regex with ``json.dumps``.

    make bench        # or: .venv/bin/python -m bench.parse_bench --lines 50000

The corpus is generated (bench/corpus.py, fixed seed): realistic ALB lines of 30 fields.

The privacy rules (issue 14) are measured in the same run, their runs interleaved with the
defaults' so that a change in the machine's load hits both: ``REDACT_QUERY=values`` with
``CLIENT_IP=truncate`` against the defaults (per line), and a drop filter removing the 30 % of
lines that are health checks against the defaults on that same corpus (end to end). Each change
is given best against best, then as the median of the rounds' own ratios: a busy machine's speed
swings between rounds (by half on some days), and the runs of one round are seconds apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.corpus import alb_lines, with_health_checks
from elb_log_shipper.formats import EventBuilder
from elb_log_shipper.pipeline import ship_object
from elb_log_shipper.privacy import (
    ClientAddress,
    DropRules,
    PrivacyRules,
    QueryRedaction,
)
from elb_log_shipper.refs import ObjectRef

REDACT_AND_TRUNCATE = PrivacyRules(
    redact_query=QueryRedaction.VALUES, client_ip=ClientAddress.TRUNCATE
)
DROP_HEALTH_CHECKS = PrivacyRules(drop=DropRules(user_agent_prefixes=("ELB-HealthChecker/",)))

# AWS's published regex for ALB access logs (Athena user guide, "Create the table for ALB access
# logs", the version with classification, classification_reason and conn_trace_id), as Python re.
ATHENA_ALB_REGEX = re.compile(
    r"([^ ]*) ([^ ]*) ([^ ]*) ([^ ]*):([0-9]*) ([^ ]*)[:-]([0-9]*) ([-.0-9]*) ([-.0-9]*) "
    r"([-.0-9]*) (|[-0-9]*) (-|[-0-9]*) ([-0-9]*) ([-0-9]*) \"([^ ]*) (.*) (- |[^ ]*)\" "
    r"\"([^\"]*)\" ([A-Z0-9-_]+) ([A-Za-z0-9.-]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" "
    r"\"([^\"]*)\" ([-.0-9]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" \"([^ ]*)\" \"([^\s]+?)\" "
    r"\"([^\s]+)\" \"([^ ]*)\" \"([^ ]*)\" ?([^ ]*)? ?( .*)?"
)
ATHENA_COLUMNS = [
    "type",
    "time",
    "elb",
    "client_ip",
    "client_port",
    "target_ip",
    "target_port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request_verb",
    "request_url",
    "request_proto",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "lambda_error_reason",
    "target_port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "extra",
]


class NullSink:
    def __init__(self) -> None:
        self.devnull = open(os.devnull, "wb")  # noqa: SIM115 - closed by close()

    def send(
        self, batch: bytes, events: int, end_offset: int, line_offsets: list[int] | None = None
    ) -> None:
        self.devnull.write(batch)

    def close(self) -> None:
        self.devnull.close()


def best_rate(run: Callable[[], int], repeat: int) -> float:
    """Lines per CPU second of the best of ``repeat`` runs."""
    best = 0.0
    for _ in range(repeat):
        started = time.process_time()
        count = run()
        elapsed = time.process_time() - started
        best = max(best, count / elapsed)
    return best


def interleaved_rates(runs: dict[str, Callable[[], int]], repeat: int) -> dict[str, list[float]]:
    """Lines per CPU second of each run in each of ``repeat`` rounds; a round runs each once,
    every other round in reverse order, so that the runs compared are seconds apart."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat):
        order = list(runs.items())
        for name, run in order if round_ % 2 == 0 else reversed(order):
            started = time.process_time()
            count = run()
            rates[name].append(count / (time.process_time() - started))
    return rates


def ours_parse(lines: list[tuple[int, bytes]], privacy: PrivacyRules | None = None) -> int:
    """Build the event of each of ``lines`` (offset, raw bytes) as the pipeline's loop does."""
    builder = EventBuilder(bucket="bench", key="bench.log", version="1", privacy=privacy)
    build = builder.build
    for offset, raw in builder.prepared(lines):
        build(raw, offset)
    return len(lines)


def with_offsets(data: list[bytes]) -> list[tuple[int, bytes]]:
    """``data`` (lines without terminator) as the pipeline's reader gives them: with offsets."""
    lines = []
    offset = 0
    for raw in data:
        lines.append((offset, raw))
        offset += len(raw) + 1
    return lines


def regex_parse(texts: list[str]) -> int:
    match = ATHENA_ALB_REGEX.match
    for text in texts:
        found = match(text)
        if found is not None:
            dict(zip(ATHENA_COLUMNS, found.groups(), strict=False))
    return len(texts)


def ours_file(path: str, privacy: PrivacyRules | None = None) -> int:
    sink = NullSink()
    try:
        return ship_object(ObjectRef.local(path), sink, privacy=privacy).lines
    finally:
        sink.close()


def regex_file(path: str) -> int:
    match, dumps = ATHENA_ALB_REGEX.match, json.dumps
    count = 0
    with open(path, encoding="utf-8") as file, open(os.devnull, "w") as out:
        for line in file:
            found = match(line.rstrip("\n"))
            if found is not None:
                out.write(dumps(dict(zip(ATHENA_COLUMNS, found.groups(), strict=False))) + "\n")
            count += 1
    return count


def _alp() -> Any:
    from aws_log_parser.interface import AwsLogParser
    from aws_log_parser.models import LogType

    return AwsLogParser(log_type=LogType.LoadBalancer)


def alp_parse(texts: list[str]) -> int:
    count = 0
    for _ in _alp().parse(texts):
        count += 1
    return count


def alp_file(path: str) -> int:
    count = 0
    dumps, asdict = json.dumps, dataclasses.asdict
    with open(os.devnull, "w") as out:
        for entry in _alp().read_file(path):
            out.write(dumps(asdict(entry), default=str) + "\n")
            count += 1
    return count


def table(rows: Iterable[tuple[str, float, float]], base: dict[str, float]) -> str:
    lines = [
        "| parser | parse only (lines/s) | file -> JSON lines (lines/s) | vs aws-log-parser | "
        "vs Athena regex |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, parse, to_json in rows:
        lines.append(
            f"| {name} | {parse:,.0f} | {to_json:,.0f} | "
            f"{to_json / base['aws-log-parser']:.1f}x | {to_json / base['athena']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--privacy-only", action="store_true", help="measure only ours with and without privacy"
    )
    args = parser.parse_args(argv)
    if args.privacy_only:
        print(privacy_table(list(alb_lines(args.lines)), args.repeat))
        return 0

    texts = list(alb_lines(args.lines))
    data = with_offsets([text.encode() for text in texts])
    missed = sum(1 for text in texts if ATHENA_ALB_REGEX.match(text) is None)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "alb.log")
        with open(path, "w", encoding="utf-8") as file:
            file.writelines(text + "\n" for text in texts)
        size = os.path.getsize(path)
        rates = {
            "elb-log-shipper": (
                best_rate(lambda: ours_parse(data), args.repeat),
                best_rate(lambda: ours_file(path), args.repeat),
            ),
            "aws-log-parser": (
                best_rate(lambda: alp_parse(texts), args.repeat),
                best_rate(lambda: alp_file(path), args.repeat),
            ),
            "athena": (
                best_rate(lambda: regex_parse(texts), args.repeat),
                best_rate(lambda: regex_file(path), args.repeat),
            ),
        }
    base = {name: to_json for name, (_, to_json) in rates.items()}
    names = {
        "elb-log-shipper": "elb-log-shipper (ECS event, orjson)",
        "aws-log-parser": "aws-log-parser 3 (+ json.dumps)",
        "athena": "AWS Athena regex (+ json.dumps)",
    }
    print(
        f"{args.lines:,} ALB lines ({size / args.lines:.0f} bytes each), best of {args.repeat}, "
        f"CPU time, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores; the regex missed {missed} lines"
    )
    print()
    print(table(((names[k], p, j) for k, (p, j) in rates.items()), base))
    print()
    print(privacy_table(texts, args.repeat))
    return 0


def privacy_table(texts: list[str], repeat: int) -> str:
    """Ours with the privacy rules against the defaults, interleaved, as a markdown table."""
    data = with_offsets([text.encode() for text in texts])
    checks = list(with_health_checks(texts))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "alb.log")
        checked = os.path.join(folder, "health.log")
        for name, lines in ((path, texts), (checked, checks)):
            with open(name, "w", encoding="utf-8") as file:
                file.writelines(text + "\n" for text in lines)
        rounds = interleaved_rates(
            {
                "parse": lambda: ours_parse(data),
                "parse private": lambda: ours_parse(data, REDACT_AND_TRUNCATE),
                "file": lambda: ours_file(path),
                "file private": lambda: ours_file(path, REDACT_AND_TRUNCATE),
                "health": lambda: ours_file(checked),
                "health dropped": lambda: ours_file(checked, DROP_HEALTH_CHECKS),
            },
            repeat,
        )
    rates = {name: max(values) for name, values in rounds.items()}

    def change(name: str, against: str) -> str:
        # Per line: time is 1/rate, so slower by old/new - 1. Best against best, then the median
        # of the rounds' own ratios (each pair ran seconds apart, which a busy machine's swings
        # between rounds do not reach).
        best = (rates[against] / rates[name] - 1) * 100
        paired = [old / new - 1 for new, old in zip(rounds[name], rounds[against], strict=True)]
        return (
            f"{best:+.1f} % time per line; paired median {statistics.median(paired) * 100:+.1f} %"
        )

    return "\n".join(
        [
            f"Privacy rules, {len(texts):,} lines, best of {repeat} interleaved rounds (CPU time):",
            "",
            "| elb-log-shipper | parse only (lines/s) | file -> JSON lines (lines/s) |",
            "|---|---:|---:|",
            f"| defaults | {rates['parse']:,.0f} | {rates['file']:,.0f} |",
            f"| REDACT_QUERY=values, CLIENT_IP=truncate | {rates['parse private']:,.0f} "
            f"({change('parse private', 'parse')}) | "
            f"{rates['file private']:,.0f} ({change('file private', 'file')}) |",
            f"| 30 % health checks, defaults | | {rates['health']:,.0f} |",
            f"| 30 % health checks, DROP_USER_AGENT_PREFIXES=ELB-HealthChecker/ | | "
            f"{rates['health dropped']:,.0f} lines read/s "
            f"({change('health dropped', 'health')}) |",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
