"""The ``elb-log-shipper`` command: ship files or S3 objects to stdout or Logstash, and a demo.

    elb-log-shipper ship SOURCE... --to -                  # JSON lines on stdout
    elb-log-shipper ship s3://bucket/key --to tcp://logstash:5044
    elb-log-shipper ship ./logs/ --to tls://logstash:5044 --ca-file ca.pem
    elb-log-shipper demo

A SOURCE is a local file (plain or gzip, told by its magic bytes), a directory (every file under
it, in name order), or ``s3://bucket/key``. Settings shared with the Lambda function
(``LOGSTASH_POOL_SIZE``, ``KEEP_ORIGINAL``, …) come from the same environment variables; flags
override them. The standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables apply to S3.
Per-object reports and a summary go to stderr; the exit status is 1 when any object failed and 2
for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TextIO

from elb_log_shipper.config import Settings
from elb_log_shipper.errors import ConfigurationError, DeliveryError
from elb_log_shipper.logstash import LogstashSender, SocketPool, parse_destination
from elb_log_shipper.pipeline import ObjectReport, ship_object
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import classify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class StdoutSink:
    """JSON lines to a binary stream, in input order."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def send(self, batch: bytes, events: int) -> None:
        self._stream.write(batch)


@dataclass(slots=True)
class Outcome:
    """One object's report plus what the destination confirmed."""

    report: ObjectReport
    events_sent: int
    skipped: str | None = None
    error: str | None = None
    # Logstash is unreachable: later objects would fail the same way, so the command stops.
    delivery_failed: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elb-log-shipper",
        description="Ship Elastic Load Balancing logs (Classic, ALB, NLB, connection logs) as "
        "ECS JSON events to Logstash or stdout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ship = commands.add_parser(
        "ship",
        help="ship files, directories or S3 objects",
        description="Parse each line of each SOURCE into one JSON event and ship it.",
    )
    ship.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a local file or directory, or s3://bucket/key",
    )
    ship.add_argument(
        "--to",
        required=True,
        metavar="DEST",
        help="'-' for JSON lines on stdout, tcp://host:port or tls://host:port for Logstash",
    )
    ship.add_argument("--ca-file", help="CA bundle to verify Logstash's certificate (tls://)")
    ship.add_argument("--client-cert", help="client certificate for Logstash (tls://)")
    ship.add_argument("--client-key", help="key of the client certificate")
    ship.add_argument("--pool-size", type=int, help="most connections to Logstash at once")
    ship.add_argument(
        "--no-original",
        action="store_true",
        help="drop event.original from parsed lines (always kept for parse failures)",
    )
    commands.add_parser(
        "demo",
        help="ship the bundled sample logs through the real pipeline to a local receiver",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            # Imported here: demo imports this module for its formatting.
            from elb_log_shipper.demo import run_demo  # noqa: PLC0415

            return run_demo(sys.stdout)
        return _ship(args, sys.stdout.buffer, sys.stderr)
    except ConfigurationError as error:
        print(f"elb-log-shipper: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("elb-log-shipper: interrupted", file=sys.stderr)
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {
        "ca_file": args.ca_file,
        "client_cert_file": args.client_cert,
        "client_key_file": args.client_key,
        "pool_size": args.pool_size,
    }
    if args.no_original:
        overrides["keep_original"] = False
    if args.to != "-":
        host, port, tls = parse_destination(args.to)
        overrides.update(host=host, port=port, tls=tls)
    return Settings.from_env(None, **overrides)


def _ship(args: argparse.Namespace, stdout: BinaryIO, stderr: TextIO) -> int:
    settings = _settings(args)
    refs = list(expand_sources(args.sources))
    pool = SocketPool(settings.require_destination()) if args.to != "-" else None
    outcomes: list[Outcome] = []
    try:
        for ref in refs:
            outcome = ship_one(ref, settings, pool=pool, stdout=stdout)
            outcomes.append(outcome)
            print(format_outcome(outcome), file=stderr)
            if outcome.delivery_failed:
                break
    finally:
        stdout.flush()
        if pool is not None:
            pool.close()
    print(format_summary(outcomes), file=stderr)
    failed = any(o.error for o in outcomes) or len(outcomes) < len(refs)
    return EXIT_FAILED if failed else EXIT_OK


def ship_one(
    ref: ObjectRef,
    settings: Settings,
    *,
    pool: SocketPool | None,
    stdout: BinaryIO | None = None,
    s3_client: S3Client | None = None,
) -> Outcome:
    """Ship one object to ``stdout`` (when ``pool`` is None) or Logstash, confirming delivery."""
    decision = classify(ref)
    if not decision.ship:
        return Outcome(ObjectReport(uri=ref.uri), 0, skipped=decision.skip_reason)
    if pool is None:
        if stdout is None:
            raise ValueError("ship_one needs a pool or a stdout stream")
        report = ship_object(
            ref, StdoutSink(stdout), keep_original=settings.keep_original, s3_client=s3_client
        )
        error = None if report.error is None else str(report.error)
        return Outcome(report, report.events, error=error)
    sender = LogstashSender(pool)
    try:
        report = ship_object(
            ref,
            sender,
            keep_original=settings.keep_original,
            batch_bytes=settings.batch_bytes,
            s3_client=s3_client,
        )
        stats = sender.finish()
    except DeliveryError as error:
        sender.abort()
        report = ObjectReport(uri=ref.uri)
        return Outcome(report, 0, error=f"delivery failed: {error}", delivery_failed=True)
    error_text = None if report.error is None else str(report.error)
    return Outcome(report, stats.events_confirmed, error=error_text)


def expand_sources(sources: Sequence[str]) -> Iterator[ObjectRef]:
    """Object references for the command's SOURCE arguments, in the order given."""
    for source in sources:
        if source.startswith("s3://"):
            bucket, _, key = source[5:].partition("/")
            if not bucket or not key:
                raise ConfigurationError(f"{source}: use s3://bucket/key")
            yield ObjectRef(bucket, key)
        elif os.path.isdir(source):
            for root, dirs, files in os.walk(source):
                dirs.sort()
                for name in sorted(files):
                    yield ObjectRef.local(os.path.join(root, name))
        elif os.path.exists(source):
            yield ObjectRef.local(source)
        else:
            raise ConfigurationError(f"{source}: no such file or directory")


def format_outcome(outcome: Outcome) -> str:
    report = outcome.report
    if outcome.skipped:
        return f"skipped {report.uri}: {outcome.skipped}"
    text = (
        f"{report.uri}: {report.lines} lines, {report.events} events, "
        f"{report.parse_failures} parse failures, {outcome.events_sent} sent, "
        f"{report.bytes_read} bytes read, {report.seconds:.2f} s"
    )
    if outcome.error:
        text += f"; error: {outcome.error}"
    return text


def format_summary(outcomes: Sequence[Outcome]) -> str:
    shipped = [o for o in outcomes if not o.skipped]
    lines = sum(o.report.lines for o in shipped)
    seconds = sum(o.report.seconds for o in shipped)
    rate = lines / seconds if seconds > 0 else 0.0
    return (
        f"{len(shipped)} objects ({len(outcomes) - len(shipped)} skipped, "
        f"{sum(1 for o in shipped if o.error)} failed): {lines} lines, "
        f"{sum(o.report.events for o in shipped)} events, "
        f"{sum(o.report.parse_failures for o in shipped)} parse failures, "
        f"{sum(o.events_sent for o in shipped)} sent, "
        f"{sum(o.report.bytes_read for o in shipped)} bytes in {seconds:.2f} s "
        f"({rate:,.0f} lines/s)"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
