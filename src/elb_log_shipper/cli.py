"""The ``elb-log-shipper`` command: ship files, S3 objects or whole S3 prefixes, and a demo.

    elb-log-shipper ship SOURCE... --to -                  # JSON lines on stdout
    elb-log-shipper ship s3://bucket/key --to tcp://logstash:5044
    elb-log-shipper ship s3://bucket/AWSLogs/ --since 2024-03-01 --until 2024-03-07 \\
        --to tls://logstash:5044 --ca-file ca.pem           # a backfill
    elb-log-shipper ship s3://bucket/AWSLogs/ --via-lambda elb-log-shipper --dry-run
    elb-log-shipper demo

A SOURCE is a local file (plain or gzip, told by its magic bytes), a directory (every file under
it, in name order), ``s3://bucket/key`` naming one object, or ``s3://bucket/prefix/`` (a trailing
``/``, or a key that names no object): every object listed under it, in key order. Which objects
a prefix covers, and the date filter, are ``backfill.plan_sources``'s business; this module parses
the command line, runs the objects through ``ship_one`` in worker processes (``workers``: one per
usable CPU by default, each with its own S3 client and Logstash pool), or makes one Lambda
invocation each on a few threads, and reports.

Settings shared with the Lambda function (``LOGSTASH_POOL_SIZE``, ``KEEP_ORIGINAL``, …) come from
the same environment variables; flags override them. The standard ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL_LAMBDA`` / ``AWS_ENDPOINT_URL`` variables apply. Reports, progress and the
summary go to stderr. Exit status: 0 all shipped, 1 some object failed, 2 usage or configuration
error, 130 interrupted by Ctrl-C or SIGTERM (after printing how to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from elb_log_shipper.backfill import (
    DateRange,
    ListingError,
    Plan,
    PlannedObject,
    fan_out,
    parse_date,
    plan_sources,
)
from elb_log_shipper.config import ENV, Settings
from elb_log_shipper.errors import ConfigurationError, DeliveryError
from elb_log_shipper.hashkey import privacy_rules
from elb_log_shipper.logstash import LogstashSender, SocketPool, parse_destination
from elb_log_shipper.pipeline import EventSink, ObjectReport, ship_object
from elb_log_shipper.privacy import ClientAddress, PrivacyRules, QueryRedaction
from elb_log_shipper.progress import DEFAULT_INTERVAL_SECONDS, Progress, format_bytes
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import classify, make_continuation
from elb_log_shipper.workers import (
    ItemContext,
    ItemFailed,
    StopSignals,
    WorkerStartError,
    run_in_processes,
    usable_cpus,
)

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

__all__ = ["main"]

PROG = "elb-log-shipper"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Lambda invocations queued at once when --jobs is not given: each waits on one HTTP request.
# (Shipping defaults to a worker process per usable CPU: parsing is CPU-bound.)
DEFAULT_INVOKE_JOBS = 4
MAX_JOBS = 64
# What the worker processes' fork server imports once, so that each worker starts warm.
WORKER_PRELOAD = ("elb_log_shipper.cli",)
# With --to - and several jobs, an object's JSON lines wait in a spool file until the objects
# before it are written; the first MiBs stay in memory.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


class StdoutSink:
    """JSON lines to a binary stream, in input order."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def send(self, batch: bytes, events: int) -> None:
        self._stream.write(batch)


class _CountingSink:
    """Passes batches on and tells ``count`` how many events went (for the progress line)."""

    def __init__(self, sink: EventSink, count: Callable[[int], None]) -> None:
        self._sink = sink
        self._count = count

    def send(self, batch: bytes, events: int) -> None:
        self._sink.send(batch, events)
        self._count(events)


@dataclass(slots=True)
class ObjectResult:
    """One object's report plus what the destination confirmed."""

    report: ObjectReport
    events_sent: int
    skipped: str | None = None
    error: str | None = None
    # Logstash is unreachable: later objects would fail the same way, so the command stops.
    delivery_failed: bool = False
    # Ctrl-C stopped it at a batch boundary (report.next_offset); a resume ships it again.
    stopped: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship Elastic Load Balancing logs (Classic, ALB, NLB, connection logs) as "
        "ECS JSON events to Logstash or stdout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ship = commands.add_parser(
        "ship",
        help="ship files, directories, S3 objects or S3 prefixes",
        description="Parse each line of each SOURCE into one JSON event and ship it. ELB test "
        "files and health-check logs are skipped. Ctrl-C stops after the objects in progress "
        "and prints the command that resumes.",
        # Abbreviated options would slip past the resume command's rewriting of --start-after.
        allow_abbrev=False,
    )
    ship.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a local file or directory, s3://bucket/key, or s3://bucket/prefix/ (every object "
        "under it; a key that names no object is a prefix too)",
    )
    target = ship.add_mutually_exclusive_group()
    target.add_argument(
        "--to",
        metavar="DEST",
        help="'-' for JSON lines on stdout, tcp://host:port or tls://host:port for Logstash",
    )
    target.add_argument(
        "--via-lambda",
        metavar="FUNCTION",
        help="instead of shipping, invoke FUNCTION asynchronously once per S3 object",
    )
    chosen = ship.add_argument_group("choosing objects under a prefix or directory")
    chosen.add_argument(
        "--since",
        type=_date_argument,
        metavar="YYYY-MM-DD",
        help="only objects delivered on or after this UTC day (the yyyy/mm/dd folders of the "
        "key); keys without such folders are then left out",
    )
    chosen.add_argument(
        "--until",
        type=_date_argument,
        metavar="YYYY-MM-DD",
        help="only objects delivered on or before this UTC day",
    )
    chosen.add_argument(
        "--start-after",
        metavar="KEY",
        help="only S3 keys after KEY (S3 StartAfter): the resume point printed after Ctrl-C",
    )
    chosen.add_argument(
        "--start-offset",
        type=int,
        metavar="BYTES",
        help="with a SOURCE naming one object: start at this byte offset of its decompressed "
        "lines (printed after Ctrl-C for an object it stopped part-way)",
    )
    chosen.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be shipped and skipped, with sizes, without reading any object",
    )
    running = ship.add_argument_group("running")
    running.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes, each shipping one object at a time with its own S3 client and "
        "Logstash pool (default: one per usable CPU); with --via-lambda, invocations in flight "
        f"(default: {DEFAULT_INVOKE_JOBS})",
    )
    running.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="report only failed objects, not each one",
    )
    running.add_argument(
        "--progress-every",
        type=float,
        default=DEFAULT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default: "
        f"{DEFAULT_INTERVAL_SECONDS:g})",
    )
    logstash = ship.add_argument_group("Logstash")
    logstash.add_argument("--ca-file", help="CA bundle to verify Logstash's certificate (tls://)")
    logstash.add_argument("--client-cert", help="client certificate for Logstash (tls://)")
    logstash.add_argument("--client-key", help="key of the client certificate")
    logstash.add_argument("--pool-size", type=int, help="most connections to Logstash at once")
    logstash.add_argument(
        "--no-original",
        action="store_true",
        help="drop event.original from parsed lines (always kept for parse failures)",
    )
    private = ship.add_argument_group(
        "privacy and volume (the function's settings of the same names; README, Privacy)"
    )
    private.add_argument(
        "--redact-query",
        choices=[choice.value for choice in QueryRedaction],
        help=f"{ENV.REDACT_QUERY}: keep query strings, redact their values, or drop them",
    )
    private.add_argument(
        "--client-ip",
        choices=[choice.value for choice in ClientAddress],
        help=f"{ENV.CLIENT_IP}: keep client addresses, truncate them (/24, /48) or hash them",
    )
    private.add_argument(
        "--client-ip-hash-key-parameter",
        metavar="NAME",
        help=f"{ENV.CLIENT_IP_HASH_KEY_PARAMETER}: the SSM parameter holding the HMAC key of "
        "--client-ip hash (read with your AWS credentials; the function's key gives the "
        "function's pseudonyms)",
    )
    for flag, name, example in (
        ("--drop-user-agent-prefixes", ENV.DROP_USER_AGENT_PREFIXES, "ELB-HealthChecker/"),
        ("--drop-methods", ENV.DROP_METHODS, "OPTIONS,HEAD"),
        ("--drop-status", ENV.DROP_STATUS, "2xx,304"),
        ("--drop-path-prefixes", ENV.DROP_PATH_PREFIXES, "/static/"),
        ("--drop-path-suffixes", ENV.DROP_PATH_SUFFIXES, ".png,.css"),
    ):
        private.add_argument(
            flag, metavar="LIST", help=f"{name}: drop the lines that match, e.g. {example}"
        )
    commands.add_parser(
        "demo",
        help="ship the bundled sample logs through the real pipeline to a local receiver",
    )
    return parser


def _date_argument(text: str) -> Any:
    try:
        return parse_date(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        if args.command == "demo":
            # Imported here: demo imports this module for its formatting.
            from elb_log_shipper.demo import run_demo  # noqa: PLC0415

            return run_demo(sys.stdout)
        return _ship(args, argv, sys.stdout.buffer, sys.stderr)
    except (ConfigurationError, ListingError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except WorkerStartError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {
        "ca_file": args.ca_file,
        "client_cert_file": args.client_cert,
        "client_key_file": args.client_key,
        "pool_size": args.pool_size,
    }
    if args.no_original:
        overrides["keep_original"] = False
    if args.to not in (None, "-"):
        host, port, tls = parse_destination(args.to)
        overrides.update(host=host, port=port, tls=tls)
    # The privacy flags are read as their variables are, so they are checked the same way.
    environ = dict(os.environ)
    for name in _PRIVACY_VARIABLES:
        value = getattr(args, name.lower())
        if value is not None:
            environ[name] = value
    return Settings.from_env(environ, **overrides)


_PRIVACY_VARIABLES = (
    ENV.REDACT_QUERY,
    ENV.CLIENT_IP,
    ENV.CLIENT_IP_HASH_KEY_PARAMETER,
    ENV.DROP_USER_AGENT_PREFIXES,
    ENV.DROP_METHODS,
    ENV.DROP_STATUS,
    ENV.DROP_PATH_PREFIXES,
    ENV.DROP_PATH_SUFFIXES,
)


def _check_usage(args: argparse.Namespace) -> None:
    if args.to is None and args.via_lambda is None and not args.dry_run:
        raise ConfigurationError("say where to ship: --to -, --to tcp://host:port or --via-lambda")
    if args.via_lambda is not None:
        local = [source for source in args.sources if not source.startswith("s3://")]
        if local:
            raise ConfigurationError(
                f"{local[0]}: --via-lambda ships S3 objects only, name them as s3://bucket/key"
            )
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        raise ConfigurationError(f"--jobs {args.jobs} is out of range: use 1 to {MAX_JOBS}")
    if args.start_offset is not None and args.start_offset < 0:
        raise ConfigurationError("--start-offset needs a byte offset of 0 or more")
    if args.progress_every <= 0:
        raise ConfigurationError("--progress-every needs a positive number of seconds")


def _ship(args: argparse.Namespace, argv: list[str], stdout: IO[bytes], stderr: TextIO) -> int:
    _check_usage(args)
    settings = _settings(args)
    jobs = args.jobs or (DEFAULT_INVOKE_JOBS if args.via_lambda is not None else usable_cpus())
    s3 = _LazyS3(jobs)
    plan = plan_sources(
        args.sources,
        s3.get,
        dates=DateRange(args.since, args.until),
        start_after=args.start_after,
    )
    for source in plan.empty_prefixes:
        print(f"{PROG}: no objects under {source}", file=stderr)
    if args.start_offset:
        _start_at(plan, args.start_offset)
    if args.dry_run:
        stdout.write(format_plan(plan, args.via_lambda).encode())
        stdout.flush()
        return EXIT_OK
    run = _Run(args, argv, plan, stderr, jobs)
    if args.via_lambda is not None:
        return run.invoke_all(_lambda_client(jobs), args.via_lambda)
    privacy = privacy_rules(settings)
    destination = settings.require_destination() if args.to != "-" else None
    if jobs > 1 and len(plan.to_ship) > 1:
        return run.ship_in_processes(
            _WorkerSetup(destination or settings, None, privacy),
            stdout,
            to_stdout=destination is None,
        )
    pool = SocketPool(destination) if destination is not None else None
    try:
        return run.ship_all(settings, pool, stdout, s3.client, privacy)
    finally:
        stdout.flush()
        if pool is not None:
            pool.close()


def _start_at(plan: Plan, offset: int) -> None:
    """Make the plan's one object start at ``offset`` (``--start-offset``)."""
    if len(plan.objects) != 1 or plan.objects[0].listed:
        raise ConfigurationError(
            "--start-offset needs one SOURCE naming one object (s3://bucket/key or a file)"
        )
    obj = plan.objects[0]
    plan.objects[0] = replace(obj, ref=replace(obj.ref, start_offset=offset))


class _LazyS3:
    """One S3 client for the whole command (clients are thread-safe), made on first use."""

    def __init__(self, jobs: int) -> None:
        self._jobs = jobs
        self.client: S3Client | None = None

    def get(self) -> S3Client:
        if self.client is None:
            # A connection per job, plus the listing's.
            config = Config(max_pool_connections=max(10, self._jobs + 2))
            self.client = boto3.client("s3", config=config)
        return self.client


def _lambda_client(jobs: int) -> LambdaClient:
    # Standard retries back off on throttling (429), which a burst of invocations can meet.
    config = Config(
        max_pool_connections=max(10, jobs + 2), retries={"mode": "standard", "max_attempts": 5}
    )
    return boto3.client("lambda", config=config)


@dataclass(slots=True)
class Invocation:
    """One asynchronous invocation: queued, or the error that prevented it."""

    obj: PlannedObject
    queued: bool = False
    error: str | None = None


class _Run:
    """One ``ship`` run over a plan: the fan-out, the reports, the resume hint."""

    def __init__(
        self, args: argparse.Namespace, argv: list[str], plan: Plan, stderr: TextIO, jobs: int
    ) -> None:
        self.args = args
        self.argv = argv
        self.plan = plan
        self.stderr = stderr
        self.jobs = jobs
        self.stop = threading.Event()
        self.interrupt = StopSignals(self.stop)
        self.announced = False
        self.forced = False
        self.progress = Progress(
            stderr,
            objects=len(plan.to_ship),
            bytes_total=plan.bytes_to_ship,
            interactive=stderr.isatty(),
            interval=args.progress_every,
            verb="queued" if args.via_lambda else "shipped",
        )
        self.started = time.monotonic()

    def _tick(self) -> None:
        if self.stop.is_set() and not self.announced:
            self.announced = True
            self.progress.print(
                f"{PROG}: {self.interrupt.signal_name or 'SIGTERM'}: stopping the objects in "
                "progress at their next batch (Ctrl-C again to quit at once)"
            )
        self.progress.tick()

    def _run(
        self,
        work: Callable[[PlannedObject], Any] | _WorkerSetup,
        on_done: Callable[[int, Any], None],
        is_fatal: Callable[[Any], bool],
    ) -> int:
        """Fan the plan out: ``work`` on threads, or ``_ship_in_worker`` in worker processes
        set up with ``work``. Return how many objects were handed back (a prefix of the plan)."""
        done = 0

        def counted(index: int, result: Any) -> None:
            nonlocal done
            done = index + 1
            on_done(index, result)

        with self.interrupt.installed():
            try:
                if not isinstance(work, _WorkerSetup):
                    fan_out(
                        self.plan.objects,
                        work,
                        counted,
                        jobs=self.jobs,
                        stop=self.stop,
                        is_fatal=is_fatal,
                        on_tick=self._tick,
                    )
                else:
                    run_in_processes(
                        _ship_in_worker,
                        self.plan.objects,
                        counted,
                        jobs=self.jobs,
                        stop=self.stop,
                        initializer=_start_worker,
                        initargs=(work,),
                        finalizer=_stop_worker,
                        on_progress=self.progress.add_lines,
                        on_tick=self._tick,
                        is_fatal=is_fatal,
                        preload=WORKER_PRELOAD,
                    )
            except KeyboardInterrupt:
                self.forced = True
            finally:
                self.progress.clear()
        return done

    # Shipping.

    def ship_in_processes(self, setup: _WorkerSetup, stdout: IO[bytes], *, to_stdout: bool) -> int:
        """Ship the plan in worker processes; with ``to_stdout`` each object's JSON lines come
        back through a spool file, copied to ``stdout`` in plan order."""
        with tempfile.TemporaryDirectory(prefix="elb-log-shipper-") as spool_dir:
            if to_stdout:
                setup = replace(setup, spool_dir=spool_dir)
            return self._ship(setup, stdout)

    def ship_all(
        self,
        settings: Settings,
        pool: SocketPool | None,
        stdout: IO[bytes],
        s3_client: S3Client | None,
        privacy: PrivacyRules | None = None,
    ) -> int:
        spool = pool is None and self.jobs > 1

        def task(obj: PlannedObject) -> tuple[ObjectResult, IO[bytes] | None]:
            if obj.skip_reason is not None:
                return ObjectResult(ObjectReport(uri=obj.ref.uri), 0, skipped=obj.skip_reason), None
            buffer: IO[bytes] | None = (
                # Closed by on_done, once copied to stdout.
                tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
                if spool
                else None
            )
            outcome = ship_one(
                obj.ref,
                settings,
                pool=pool,
                stdout=buffer or stdout,
                s3_client=s3_client,
                should_stop=self.stop.is_set,
                on_events=self.progress.add_lines,
                privacy=privacy,
            )
            return outcome, buffer

        return self._ship(task, stdout)

    def _ship(
        self,
        work: Callable[[PlannedObject], tuple[ObjectResult, IO[bytes] | None]] | _WorkerSetup,
        stdout: IO[bytes],
    ) -> int:
        outcomes: list[ObjectResult] = []

        def on_done(
            index: int, result: tuple[ObjectResult, IO[bytes] | str | None] | ItemFailed
        ) -> None:
            obj = self.plan.objects[index]
            if isinstance(result, ItemFailed):
                result = ObjectResult(ObjectReport(uri=obj.ref.uri), 0, error=str(result)), None
            outcome, spooled = result
            if isinstance(spooled, str):  # a worker process's spool file
                with open(spooled, "rb") as buffer:
                    shutil.copyfileobj(buffer, stdout)
                os.unlink(spooled)
            elif spooled is not None:
                with spooled:
                    spooled.seek(0)
                    shutil.copyfileobj(spooled, stdout)
            outcomes.append(outcome)
            if obj.skip_reason is None:
                self.progress.object_done(obj.size)
            if outcome.error or not (self.args.quiet or obj.quiet):
                self.progress.print(format_outcome(outcome))

        def is_fatal(result: tuple[ObjectResult, object] | ItemFailed) -> bool:
            return not isinstance(result, ItemFailed) and result[0].delivery_failed

        done = self._run(work, on_done, is_fatal)
        stdout.flush()
        # Objects stopped part-way by Ctrl-C or SIGTERM: each resumes where it stopped.
        stopped = [
            (self.plan.objects[index], outcome.report.next_offset)
            for index, outcome in enumerate(outcomes)
            if outcome.stopped and outcome.report.next_offset is not None
        ]
        not_shipped = len(self.plan.objects) - done + len(stopped)
        print(
            format_table(
                outcomes,
                not_shipped=not_shipped,
                excluded=self.plan.excluded,
                listed_by_date=self.plan.listed_by_date,
                seconds=time.monotonic() - self.started,
            ),
            file=self.stderr,
        )
        print(format_summary(outcomes), file=self.stderr)
        if self._interrupted(done, stopped):
            return EXIT_INTERRUPTED
        if not_shipped:
            print(
                f"{PROG}: stopped because Logstash could not be reached; {not_shipped} objects "
                "were not shipped: check the destination and run the command again",
                file=self.stderr,
            )
        failed = not_shipped or any(o.error for o in outcomes)
        return EXIT_FAILED if failed else EXIT_OK

    # Invoking.

    def invoke_all(self, client: LambdaClient, function: str) -> int:
        invocations: list[Invocation] = []
        queued = Counter[str]()

        def task(obj: PlannedObject) -> Invocation:
            if obj.skip_reason is not None:
                return Invocation(obj)
            return invoke_async(client, function, obj)

        def on_done(index: int, invocation: Invocation) -> None:
            invocations.append(invocation)
            obj = invocation.obj
            if obj.skip_reason is None:
                self.progress.object_done(obj.size)
            if invocation.queued:
                queued["objects"] += 1
                queued["bytes"] += obj.size
            if invocation.error is not None:
                self.progress.print(f"{obj.ref.uri}: not queued: {invocation.error}")
            elif not self.args.quiet and not obj.quiet:
                if obj.skip_reason is not None:
                    self.progress.print(f"skipped {obj.ref.uri}: {obj.skip_reason}")
                else:
                    self.progress.print(f"queued {obj.ref.uri} ({obj.size} bytes)")

        def first_failed(invocation: Invocation) -> bool:
            # Nothing queued yet and this failed: a wrong name or permission fails them all.
            return invocation.error is not None and not queued["objects"]

        done = self._run(task, on_done, first_failed)
        errors = sum(1 for i in invocations if i.error is not None)
        skipped = sum(1 for i in invocations if i.obj.skip_reason is not None)
        not_started = len(self.plan.objects) - done
        print(
            f"queued {queued['objects']} objects ({format_bytes(queued['bytes'])}, "
            f"{queued['bytes']} bytes) for {function}; {errors} not queued, {skipped} skipped, "
            f"{not_started} not tried, {sum(self.plan.excluded.values())} outside the dates "
            f"in {time.monotonic() - self.started:.1f} s",
            file=self.stderr,
        )
        if self.plan.listed_by_date:
            print(_listed_by_date(self.plan.listed_by_date), file=self.stderr)
        if self._interrupted(done):
            return EXIT_INTERRUPTED
        return EXIT_FAILED if errors or not_started else EXIT_OK

    # Resuming.

    def _interrupted(
        self, finished: int, stopped: Sequence[tuple[PlannedObject, int]] = ()
    ) -> bool:
        """After Ctrl-C with objects left: print how to resume and return True."""
        if not (self.stop.is_set() or self.forced):
            return False
        if finished >= len(self.plan.objects) and not stopped:
            return False
        commands = resume_commands(self.argv, self.args, self.plan.objects, finished, stopped)
        print(
            f"{PROG}: interrupted; {finished - len(stopped)} of {len(self.plan.objects)} objects "
            "done. To resume, run:",
            file=self.stderr,
        )
        for command in commands:
            print(f"  {shlex.join([PROG, *command])}", file=self.stderr)
        return True


def resume_commands(
    argv: Sequence[str],
    args: argparse.Namespace,
    objects: Sequence[PlannedObject],
    finished: int,
    stopped: Sequence[tuple[PlannedObject, int]] = (),
) -> list[list[str]]:
    """The ``ship`` command lines (without the program name) that go on from ``objects[finished]``,
    after one per object of ``stopped`` (an object before ``finished`` that Ctrl-C stopped
    part-way, with the offset of its first line not shipped) that ships the rest of it
    (``--start-offset``).

    Sources whose objects are all done are dropped. When the first object left was listed under
    an S3 prefix after others of it were done, that prefix resumes with ``--start-after`` the
    last key done, in a command of its own (``--start-after`` applies to every prefix of a
    command); the sources after it follow in a second command.

    Objects after the resume point are never skipped, and objects done out of order do not exist
    (results are handed back in order), so nothing done is shipped twice.
    """
    options = _options_without_start_after(argv)
    commands = [
        ["ship", obj.ref.uri, *options, "--start-offset", str(offset)] for obj, offset in stopped
    ]
    if finished >= len(objects):
        return commands
    sources: list[str] = list(args.sources)
    first = objects[finished]
    before = objects[finished - 1] if finished else None
    if first.listed and before is not None and before.source == first.source:
        commands.append(["ship", sources[first.source], *options, "--start-after", before.ref.key])
        rest = sources[first.source + 1 :]
    else:
        rest = sources[first.source :]
    if rest:
        original = ["--start-after", args.start_after] if args.start_after else []
        commands.append(["ship", *rest, *options, *original])
    return commands


# Options that say where a run starts: each resume command sets its own.
_RESUME_OPTIONS = ("--start-after", "--start-offset")
# Options of `ship` that take a value, for telling options from sources in argv.
_VALUE_OPTIONS = frozenset(
    {
        "--to",
        "--via-lambda",
        "--since",
        "--until",
        "--jobs",
        "--progress-every",
        "--ca-file",
        "--client-cert",
        "--client-key",
        "--pool-size",
    }
)


def _options_without_start_after(argv: Sequence[str]) -> list[str]:
    args = list(argv[argv.index("ship") + 1 :])
    options: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            break  # only sources follow
        if arg in _RESUME_OPTIONS:
            index += 2
            continue
        if arg.startswith(tuple(f"{option}=" for option in _RESUME_OPTIONS)):
            index += 1
            continue
        if arg in _VALUE_OPTIONS:
            options += args[index : index + 2]
            index += 2
            continue
        if arg.startswith("-") and arg != "-":
            options.append(arg)
        index += 1
    return options


def invoke_async(client: LambdaClient, function: str, obj: PlannedObject) -> Invocation:
    """Invoke ``function`` with ``InvocationType=Event`` for one object.

    The payload is ``triggers.make_continuation(ref)``: the shape the function accepts as a
    direct invocation, with the listed ETag (the read is pinned to it) and size.
    """
    payload = json.dumps(make_continuation(obj.ref)).encode()
    try:
        response = client.invoke(FunctionName=function, InvocationType="Event", Payload=payload)
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code", "error")
        return Invocation(obj, error=f"{code}: {details.get('Message', error)}")
    except BotoCoreError as error:
        return Invocation(obj, error=str(error))
    status = response.get("StatusCode")
    if status != 202:
        return Invocation(obj, error=f"Lambda answered {status}, not 202 Accepted")
    return Invocation(obj, queued=True)


def ship_one(
    ref: ObjectRef,
    settings: Settings,
    *,
    pool: SocketPool | None,
    stdout: IO[bytes] | None = None,
    s3_client: S3Client | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_events: Callable[[int], None] | None = None,
    privacy: PrivacyRules | None = None,
) -> ObjectResult:
    """Ship one object to ``stdout`` (when ``pool`` is None) or Logstash, confirming delivery.

    ``should_stop`` is asked between batches (see ``ship_object``): an object stopped part-way
    comes back with ``stopped`` set, its delivered lines confirmed. ``on_events`` is told how
    many events each batch handed on (for progress; confirmation comes at the end).
    """
    decision = classify(ref)
    if not decision.ship:
        return ObjectResult(ObjectReport(uri=ref.uri), 0, skipped=decision.skip_reason)
    if pool is None:
        if stdout is None:
            raise ValueError("ship_one needs a pool or a stdout stream")
        sink: EventSink = StdoutSink(stdout)
        report = ship_object(
            ref,
            sink if on_events is None else _CountingSink(sink, on_events),
            keep_original=settings.keep_original,
            privacy=privacy,
            s3_client=s3_client,
            should_stop=should_stop,
        )
        error = None if report.error is None else str(report.error)
        return ObjectResult(
            report, report.events, error=error, stopped=report.next_offset is not None
        )
    sender = LogstashSender(pool)
    try:
        report = ship_object(
            ref,
            sender if on_events is None else _CountingSink(sender, on_events),
            keep_original=settings.keep_original,
            privacy=privacy,
            batch_bytes=settings.batch_bytes,
            s3_client=s3_client,
            should_stop=should_stop,
        )
        stats = sender.finish()
    except DeliveryError as error:
        sender.abort()
        report = ObjectReport(uri=ref.uri)
        return ObjectResult(report, 0, error=f"delivery failed: {error}", delivery_failed=True)
    error_text = None if report.error is None else str(report.error)
    return ObjectResult(
        report, stats.events_confirmed, error=error_text, stopped=report.next_offset is not None
    )


# Worker processes (see ``workers``): what each keeps for its life, set by ``_start_worker``.


@dataclass(frozen=True, slots=True)
class _WorkerSetup:
    """What a worker process needs to ship objects: the settings, where to spool JSON lines for
    stdout (None when shipping to Logstash), and the privacy rules (read once, in the parent:
    the hash key comes from SSM)."""

    settings: Settings
    spool_dir: str | None
    privacy: PrivacyRules | None = None


@dataclass(slots=True)
class _WorkerState:
    setup: _WorkerSetup
    s3_client: S3Client
    pool: SocketPool | None


_worker_state: _WorkerState | None = None


def _start_worker(setup: _WorkerSetup) -> None:
    """Initializer of a worker process: its own S3 client and its own Logstash pool, so a run
    holds at most LOGSTASH_POOL_SIZE connections per process."""
    global _worker_state  # noqa: PLW0603 - one per process, by design
    pool = SocketPool(setup.settings) if setup.spool_dir is None else None
    _worker_state = _WorkerState(setup, _LazyS3(1).get(), pool)


def _stop_worker() -> None:
    if _worker_state is not None and _worker_state.pool is not None:
        _worker_state.pool.close()


def _ship_in_worker(obj: PlannedObject, context: ItemContext) -> tuple[ObjectResult, str | None]:
    """Ship one object in a worker process: the pipeline runs here, the parent only reports."""
    state = _worker_state
    if state is None:
        raise RuntimeError("_ship_in_worker runs in a worker process started by _start_worker")
    if obj.skip_reason is not None:
        return ObjectResult(ObjectReport(uri=obj.ref.uri), 0, skipped=obj.skip_reason), None
    spool = state.setup.spool_dir
    with (
        tempfile.NamedTemporaryFile(dir=spool, delete=False)
        if spool is not None
        else contextlib.nullcontext()
    ) as buffer:
        outcome = ship_one(
            obj.ref,
            state.setup.settings,
            pool=state.pool,
            stdout=buffer,
            s3_client=state.s3_client,
            should_stop=context.should_stop,
            on_events=context.add_progress,
            privacy=state.setup.privacy,
        )
    return outcome, None if buffer is None else buffer.name


def format_outcome(outcome: ObjectResult) -> str:
    report = outcome.report
    if outcome.skipped:
        return f"skipped {report.uri}: {outcome.skipped}"
    text = (
        f"{report.uri}: {report.lines} lines, {report.events} events, "
        f"{report.parse_failures} parse failures, {outcome.events_sent} sent, "
        f"{report.bytes_read} bytes read, {report.seconds:.2f} s"
    )
    if report.dropped:
        text += f"; {report.dropped} lines dropped by filters"
    if outcome.stopped:
        text += f"; stopped by Ctrl-C before offset {report.next_offset}"
    if outcome.error:
        text += f"; error: {outcome.error}"
    return text


def format_summary(outcomes: Sequence[ObjectResult]) -> str:
    shipped = [o for o in outcomes if not o.skipped]
    lines = sum(o.report.lines for o in shipped)
    seconds = sum(o.report.seconds for o in shipped)
    rate = lines / seconds if seconds > 0 else 0.0
    dropped = sum(o.report.dropped for o in shipped)
    summary = (
        f"{len(shipped)} objects ({len(outcomes) - len(shipped)} skipped, "
        f"{sum(1 for o in shipped if o.error)} failed): {lines} lines, "
        f"{sum(o.report.events for o in shipped)} events, "
        f"{sum(o.report.parse_failures for o in shipped)} parse failures, "
        f"{sum(o.events_sent for o in shipped)} sent, "
        f"{sum(o.report.bytes_read for o in shipped)} bytes in {seconds:.2f} s "
        f"({rate:,.0f} lines/s)"
    )
    return summary + (f"; {dropped} lines dropped by filters" if dropped else "")


def format_table(
    outcomes: Sequence[ObjectResult],
    *,
    not_shipped: int = 0,
    excluded: Counter[str] | None = None,
    listed_by_date: Sequence[str] = (),
    seconds: float = 0.0,
) -> str:
    """The summary table printed at the end of ``ship``: one row per fate of an object.

    ``not_shipped`` counts the objects left by Ctrl-C or a dead Logstash (stopped or never
    started); ``excluded`` the listed objects outside --since/--until, by reason;
    ``listed_by_date`` the prefixes of which only the day folders in range were listed.
    """
    header = ("", "objects", "lines", "events", "parse failures", "sent", "bytes read")
    rows: list[tuple[str, ...]] = [header]
    for name, group in (
        ("shipped", [o for o in outcomes if not o.skipped and not o.error and not o.stopped]),
        ("failed", [o for o in outcomes if o.error]),
    ):
        rows.append(
            (
                name,
                f"{len(group):,}",
                f"{sum(o.report.lines for o in group):,}",
                f"{sum(o.report.events for o in group):,}",
                f"{sum(o.report.parse_failures for o in group):,}",
                f"{sum(o.events_sent for o in group):,}",
                format_bytes(sum(o.report.bytes_read for o in group)),
            )
        )
    skipped = Counter(o.skipped for o in outcomes if o.skipped)
    notes = [("skipped", sum(skipped.values()), _reasons(skipped))]
    if not_shipped:
        notes.append(("left", not_shipped, "stopped or not started: resume them"))
    if excluded:
        notes.append(("excluded", sum(excluded.values()), _reasons(excluded)))
    rows += [(name, f"{count:,}") for name, count, _ in notes]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        )
        for row in rows[: len(rows) - len(notes)]
    ]
    text += [
        f"{name:<{widths[0]}}  {count:>{widths[1]},}  {why}".rstrip() for name, count, why in notes
    ]
    if listed_by_date:
        text.append(_listed_by_date(listed_by_date))
    lines = sum(o.report.lines for o in outcomes)
    rate = lines / seconds if seconds > 0 else 0.0
    text.append(f"in {seconds:.1f} s ({rate:,.0f} lines/s)")
    return "\n".join(text)


def _listed_by_date(sources: Sequence[str]) -> str:
    return (
        f"listed by delivery date: only the yyyy/mm/dd folders from --since to --until under "
        f"{', '.join(sources)}"
    )


def _reasons(counts: Counter[Any]) -> str:
    return "; ".join(f"{reason}: {n:,}" for reason, n in counts.most_common())


def format_plan(plan: Plan, function: str | None = None) -> str:
    """What ``--dry-run`` prints: each object with its stored size, skips with their reason,
    then the totals. Nothing here reads an object: sizes come from the listing.

    >>> plan = Plan([PlannedObject(ObjectRef("b", "k.log"), 0, 2048)])
    >>> print(format_plan(plan), end="")
            2048  s3://b/k.log
    would ship 1 objects, 2.00 KiB (2048 bytes); skip 0; 0 outside the dates
    """
    out = []
    for obj in plan.objects:
        if obj.skip_reason is None:
            out.append(f"{obj.size:>12}  {obj.ref.uri}\n")
        else:
            out.append(f"{'skip':>12}  {obj.ref.uri}  ({obj.skip_reason})\n")
    skipped = Counter(o.skip_reason for o in plan.objects if o.skip_reason)
    verb = "would ship" if function is None else f"would invoke {function} for"
    total = plan.bytes_to_ship
    summary = (
        f"{verb} {len(plan.to_ship)} objects, {format_bytes(total)} ({total} bytes); "
        f"skip {sum(skipped.values())}"
    )
    if skipped:
        summary += f" ({_reasons(skipped)})"
    summary += f"; {sum(plan.excluded.values())} outside the dates"
    if plan.excluded:
        summary += f" ({_reasons(plan.excluded)})"
    out.append(summary + "\n")
    if plan.listed_by_date:
        out.append(_listed_by_date(plan.listed_by_date) + "\n")
    return "".join(out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
