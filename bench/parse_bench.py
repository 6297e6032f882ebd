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

``--formats`` measures only ours, parse only, over lines of each log format (ALB, Classic, NLB,
connection logs) with the defaults and with the privacy rules (``formats_table``).

The corpus is generated (bench/corpus.py, fixed seed): realistic ALB lines of 30 fields.

The privacy rules (issue 14) are measured in the same run: ``REDACT_QUERY=values`` with
``CLIENT_IP=truncate`` against the defaults (per line), and a drop filter removing the 30 % of
lines that are health checks, and the README's GDPR settings (both rules and drop filters),
against the defaults on that same corpus (end to end). The lines
are cut into slices of about the MiB the pipeline parses at once (``--slice``), the slices are
paired, and the two configurations of a comparison run over the two slices of a pair back to
back: each change is the median of those pairs' ratios, runs milliseconds apart over data that
is in cache as a batch is (a busy machine's speed swings between runs seconds apart by half on
some days). See ``privacy_table``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
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

from bench.corpus import (
    alb_2025_lines,
    alb_2026_lines,
    alb_lines,
    classic_lines,
    connection_lines,
    nlb_lines,
    with_health_checks,
)
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
# CLIENT_IP=hash's key: any 32 bytes (in production it comes from SSM Parameter Store).
REDACT_AND_HASH = PrivacyRules(
    redact_query=QueryRedaction.VALUES, client_ip=ClientAddress.HASH, hash_key=b"bench-key" * 4
)
DROP_HEALTH_CHECKS = PrivacyRules(drop=DropRules(user_agent_prefixes=("ELB-HealthChecker/",)))
# The README's GDPR-minded deployment (its "Privacy" section): both rules and the drop filters.
GDPR_SETTINGS = PrivacyRules(
    redact_query=QueryRedaction.VALUES,
    client_ip=ClientAddress.TRUNCATE,
    drop=DropRules(
        user_agent_prefixes=("ELB-HealthChecker/", "kube-probe/"), methods=frozenset({"OPTIONS"})
    ),
)
# The privacy comparison runs over slices of this many lines (1.4 MB of the corpus): about the
# MiB of log the pipeline reads and parses at once, so that a slice stays in the CPU's caches as
# a batch does. Over a list of 30,000 lines (21 MB) the defaults spent a third more time a line,
# waiting for memory, and the rules' cost, the same in absolute terms, read as a smaller share.
SLICE_LINES = 2_000

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
    parser.add_argument(
        "--formats",
        action="store_true",
        help="measure only ours, parse only, per log format, with and without the privacy rules",
    )
    parser.add_argument(
        "--slice",
        type=int,
        default=SLICE_LINES,
        help="lines of each slice that the privacy comparison runs both configurations over",
    )
    args = parser.parse_args(argv)
    if args.privacy_only:
        print(privacy_table(list(alb_lines(args.lines)), args.repeat, args.slice))
        return 0
    if args.formats:
        print(formats_table(args.lines, args.repeat))
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
    print(privacy_table(texts, args.repeat, args.slice))
    return 0


def privacy_table(texts: list[str], repeat: int, slice_lines: int = SLICE_LINES) -> str:
    """Ours with the privacy rules against the defaults, as a markdown table.

    The lines are cut into slices of ``slice_lines`` and the slices paired: in each pair, one
    configuration of a comparison runs over one slice and the other over the other, back to back
    (the roles and the order swap from pair to pair and round to round), ``repeat`` times. Each
    ratio then compares runs milliseconds apart, over data of the size the pipeline handles at
    once and that neither run has parsed just before (the parser's memos would remember it), and
    the table gives the median of those ratios with the middle half of them.
    """
    slices = [texts[start : start + slice_lines] for start in range(0, len(texts), slice_lines)]
    if len(slices) < 2 or len(slices[-1]) < slice_lines:
        raise SystemExit(
            f"--lines must be a multiple of --slice ({slice_lines}), at least twice it"
        )
    pairs = {
        "parse private": "parse",
        "file private": "file",
        "health dropped": "health",
        "health gdpr": "health",
    }
    seconds: dict[str, list[float]] = {
        name: [0.0] * repeat for pair in pairs.items() for name in pair
    }
    counted: dict[str, list[int]] = {name: [0] * repeat for name in seconds}
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    with tempfile.TemporaryDirectory() as folder:
        runs: list[dict[str, Callable[[], int]]] = []
        data_of: list[list[tuple[int, bytes]]] = []
        for number, lines in enumerate(slices):
            path = os.path.join(folder, f"alb-{number}.log")
            checked = os.path.join(folder, f"health-{number}.log")
            for name, written in ((path, lines), (checked, list(with_health_checks(lines)))):
                with open(name, "w", encoding="utf-8") as file:
                    file.writelines(text + "\n" for text in written)
            data = with_offsets([text.encode() for text in lines])
            runs.append(_slice_runs(data, path, checked))
            data_of.append(data)
        # The slices' lines are set aside from the garbage collector, as the pipeline has no such
        # heap: a full collection traversing them in one run of a pair moved its ratio by tens
        # of percent.
        gc.collect()
        gc.freeze()
        for round_ in range(repeat):
            for pair in range(len(slices) // 2):
                first, second = 2 * pair, 2 * pair + 1
                if round_ % 2:
                    first, second = second, first
                for changed, base in pairs.items():
                    order = [(base, first), (changed, second)]
                    if pair % 2:
                        order.reverse()
                    per_line = {}
                    for name, number in order:
                        if name.startswith("parse"):
                            # The pipeline parses a batch it has just inflated: in cache.
                            touch(data_of[number])
                        started = time.process_time()
                        count = runs[number][name]()
                        took = time.process_time() - started
                        seconds[name][round_] += took
                        counted[name][round_] += count
                        per_line[name] = took / count
                    ratios[changed].append(per_line[changed] / per_line[base])
    gc.unfreeze()
    rates = {
        name: max(count / took for count, took in zip(counted[name], values, strict=True))
        for name, values in seconds.items()
    }

    def change(name: str) -> str:
        # Per line: the ratio of CPU times a line, less one.
        quartiles = (
            statistics.quantiles(ratios[name], n=4)
            if len(ratios[name]) > 1
            else [ratios[name][0]] * 3
        )
        low, median, high = ((value - 1) * 100 for value in quartiles)
        return f"{median:+.1f} % time per line; middle half {low:+.1f} to {high:+.1f} %"

    return "\n".join(
        [
            f"Privacy rules, {len(slices) // 2 * 2 * slice_lines:,} lines in slices of "
            f"{slice_lines:,}, {repeat} rounds; "
            "the two configurations of a comparison run over the two slices of a pair back to "
            "back (CPU time); lines/s of the best round, the change as the median of the pairs' "
            "ratios:",
            "",
            "| elb-log-shipper | parse only (lines/s) | file -> JSON lines (lines/s) |",
            "|---|---:|---:|",
            f"| defaults | {rates['parse']:,.0f} | {rates['file']:,.0f} |",
            f"| REDACT_QUERY=values, CLIENT_IP=truncate | {rates['parse private']:,.0f} "
            f"({change('parse private')}) | "
            f"{rates['file private']:,.0f} ({change('file private')}) |",
            f"| 30 % health checks, defaults | | {rates['health']:,.0f} |",
            f"| 30 % health checks, DROP_USER_AGENT_PREFIXES=ELB-HealthChecker/ | | "
            f"{rates['health dropped']:,.0f} lines read/s ({change('health dropped')}) |",
            "| 30 % health checks, the README's GDPR settings (REDACT_QUERY=values, "
            "CLIENT_IP=truncate, DROP_USER_AGENT_PREFIXES=ELB-HealthChecker/,kube-probe/, "
            f"DROP_METHODS=OPTIONS) | | {rates['health gdpr']:,.0f} lines read/s "
            f"({change('health gdpr')}) |",
        ]
    )


FORMATS: dict[str, Callable[[int], Iterable[str]]] = {
    "ALB": alb_lines,
    "ALB, 2025 layout": alb_2025_lines,
    "ALB, 2026 layout (node address)": alb_2026_lines,
    "Classic": classic_lines,
    "NLB": nlb_lines,
    "ALB connection log": connection_lines,
}


def formats_table(count: int, repeat: int) -> str:
    """Ours, parse only, over ``count`` generated lines of each format (bench/corpus.py), with the
    defaults, with ``REDACT_QUERY=values`` and ``CLIENT_IP=truncate``, and with
    ``REDACT_QUERY=values`` and ``CLIENT_IP=hash``, as a markdown table: lines/s of CPU time,
    the best of ``repeat`` runs, the three configurations alternating. Every client of the
    corpus is a new one, so hashing misses its memo on every line (its worst case)."""
    rows = []
    configs = (("defaults", None), ("rules", REDACT_AND_TRUNCATE), ("hash", REDACT_AND_HASH))
    for name, make in FORMATS.items():
        data = with_offsets([text.encode() for text in make(count)])
        best = dict.fromkeys(("defaults", "rules", "hash"), 0.0)
        for _ in range(repeat):
            for config, privacy in configs:
                started = time.process_time()
                ours_parse(data, privacy)
                rate = len(data) / (time.process_time() - started)
                best[config] = max(best[config], rate)
        change = (best["defaults"] / best["rules"] - 1) * 100
        hashed = (best["defaults"] / best["hash"] - 1) * 100
        rows.append(
            f"| {name} | {best['defaults']:,.0f} | {best['rules']:,.0f} | {change:+.0f} % "
            f"| {best['hash']:,.0f} | {hashed:+.0f} % |"
        )
    return "\n".join(
        [
            f"{count:,} lines of each format, parse only, best of {repeat} (CPU time), Python "
            f"{platform.python_version()}:",
            "",
            "| format | defaults (lines/s) | REDACT_QUERY=values, CLIENT_IP=truncate (lines/s) "
            "| time per line with the rules | REDACT_QUERY=values, CLIENT_IP=hash (lines/s) "
            "| time per line with hashing |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )


def touch(lines: list[tuple[int, bytes]]) -> int:
    """Read every byte of ``lines``, bringing them into the CPU's caches."""
    return len(b"".join(raw for _, raw in lines))


def _slice_runs(
    data: list[tuple[int, bytes]], path: str, checked: str
) -> dict[str, Callable[[], int]]:
    """The runs that ``privacy_table`` compares, over one slice."""
    return {
        "parse": lambda: ours_parse(data),
        "parse private": lambda: ours_parse(data, REDACT_AND_TRUNCATE),
        "file": lambda: ours_file(path),
        "file private": lambda: ours_file(path, REDACT_AND_TRUNCATE),
        "health": lambda: ours_file(checked),
        "health dropped": lambda: ours_file(checked, DROP_HEALTH_CHECKS),
        "health gdpr": lambda: ours_file(checked, GDPR_SETTINGS),
    }


if __name__ == "__main__":
    sys.exit(main())
