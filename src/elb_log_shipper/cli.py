"""The ``elb-log-shipper`` command: ship files, S3 objects or whole S3 prefixes, and a demo.

    elb-log-shipper ship SOURCE... --to -                  # JSON lines on stdout
    elb-log-shipper ship s3://bucket/key --to tcp://logstash:5044
    elb-log-shipper ship s3://bucket/AWSLogs/ --since 2024-03-01 --until 2024-03-07 \\
        --to tls://logstash:5044 --ca-file ca.pem           # a backfill
    elb-log-shipper ship s3://bucket/AWSLogs/ --via-lambda elb-log-shipper --dry-run
    elb-log-shipper demo

A SOURCE is a local file (plain or gzip, told by its magic bytes), a directory (every file under
it, in name order: a folder's files, then its folders), ``s3://bucket/key`` naming one object,
or ``s3://bucket/prefix/`` (a trailing ``/``, or a key that names no object): every object listed
under it, in key order.

This module only plans, runs and prints: ``backfill.plan_sources`` says which objects a command
covers, ``pipeline.deliver_object`` ships each one (``backfill.invoke_async`` queues it for the
function with ``--via-lambda``), and ``report`` turns the results into text. With one job the
objects run on this thread (``backfill.fan_out``); with ``--jobs N`` (default: one per usable
CPU) in N worker processes (``workers.run_in_processes`` running ``pipeline.ship_in_worker``,
each with its own S3 client and at most ``LOGSTASH_POOL_SIZE`` connections); invocations run on
N threads. Results come back in plan order, so a resume after Ctrl-C is exact.

Settings shared with the Lambda function (``LOGSTASH_POOL_SIZE``, ``KEEP_ORIGINAL``,
``MAX_EVENT_BYTES``, …) come from the same environment variables; flags override them. The
standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_LAMBDA`` / ``AWS_ENDPOINT_URL`` variables
apply. Reports, progress and the summary go to stderr. Exit status: 0 all shipped, 1 some object
failed, 2 usage or configuration error, 130 interrupted by Ctrl-C or SIGTERM (after printing how
to resume), even when an object failed before: the resume commands retry it, and they exit 1 if
it fails again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import itertools
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, TextIO

from elb_log_shipper import workers
from elb_log_shipper.backfill import (
    DateRange,
    Invocation,
    LazyClients,
    ListingError,
    ListingUnavailableError,
    Plan,
    PlannedObject,
    fan_out,
    invoke_async,
    not_restored,
    parse_date,
    plan_sources,
)
from elb_log_shipper.config import DEFAULT_POOL_SIZE, ENV, MAX_POOL_SIZE, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.logstash import LogstashSender, Retrying, SocketPool, parse_destination
from elb_log_shipper.pipeline import (
    ObjectSender,
    StdoutSender,
    WorkerSetup,
    deliver_object,
    file_position,
    resume_from_confirmed,
    ship_in_worker,
    start_worker,
    stop_worker,
    take_back,
)
from elb_log_shipper.privacy import ClientAddress, PrivacyRules, QueryRedaction
from elb_log_shipper.progress import (
    DEFAULT_INTERVAL_SECONDS,
    ObjectNotes,
    Progress,
    format_duration,
    silence_note,
    unread_note,
    wait_note,
)
from elb_log_shipper.report import (
    ObjectResult,
    Outcome,
    format_bytes,
    format_plan,
    format_result,
    format_run,
    is_failed,
    listed_by_date_note,
    not_logs_note,
    objects,
    printable,
    shell_word,
)
from elb_log_shipper.workers import (
    ItemFailed,
    StopSignals,
    WorkerStartError,
    run_in_processes,
    usable_cpus,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["build_parser", "main", "resume_commands", "ship_options", "ship_parser"]

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
WORKER_PRELOAD = ("elb_log_shipper.pipeline", "boto3")
# Options of `ship` that a resume command never repeats: the sources and the resume point are
# what it changes.
_NOT_REPEATED = frozenset({"help", "sources", "start_after", "start_offset"})
# Archived objects a resume command names at once: a month of a busy load balancer archived is
# thousands of them, each otherwise a command of its own; a hundred keys make a command line of
# about 20 KB, far below what a shell and the kernel take.
RESUME_OBJECTS_PER_COMMAND = 100


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: ``ship`` and ``demo``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship Elastic Load Balancing logs (Classic, ALB, NLB, connection logs) as "
        "ECS JSON events to Logstash or stdout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_ship_parser(commands)
    commands.add_parser(
        "demo",
        help="ship the bundled sample logs through the real pipeline to a local receiver",
    )
    return parser


def _add_ship_parser(commands: Any) -> argparse.ArgumentParser:
    ship: argparse.ArgumentParser = commands.add_parser(
        "ship",
        help="ship files, directories, S3 objects or S3 prefixes",
        description="Parse each line of each SOURCE into one JSON event and ship it. ELB test "
        "files and health-check logs are skipped. Ctrl-C (or SIGTERM) starts no new object, "
        "stops the objects in progress at their next batch, exits 130 and prints the commands "
        "that finish the run: one per object stopped part-way or failed before (--start-offset), "
        "then the objects not started (--start-after); run them all and every line arrives once.",
        # Abbreviated options would slip past the resume command's rewriting of --start-after.
        allow_abbrev=False,
    )
    ship.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a local file or directory, s3://bucket/key, or s3://bucket/prefix/ (every object "
        "under it named as ELB names its logs, see --any-key; a key that names no object is a "
        "prefix too)",
    )
    target = ship.add_mutually_exclusive_group()
    target.add_argument(
        "--to",
        metavar="DEST",
        help="'-' for JSON lines on stdout; tcp:// or tls:// (Logstash tcp input), beats:// or "
        "beats+tls:// (beats input), then host:port (port 5044 if left out; an IPv6 address in "
        "brackets). The whole destination: LOGSTASH_HOST, _PORT, _TLS and _PROTOCOL are the "
        "function's settings, not read here",
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
        help="only objects delivered on or before this UTC day (a day's last interval, 5 "
        "minutes, Classic's up to 60, is delivered in the next day's folder: for whole days of "
        "traffic, add a day and take the lines' @timestamp as the truth)",
    )
    chosen.add_argument(
        "--start-after",
        metavar="KEY",
        help="only S3 keys after KEY (S3 StartAfter) and, in a directory KEY is under, only "
        "the files after KEY in the order the directory is walked: the resume point printed "
        "after Ctrl-C",
    )
    chosen.add_argument(
        "--start-offset",
        type=int,
        metavar="BYTES",
        help="with a SOURCE naming one object: start at this byte offset of its decompressed "
        "lines (printed after Ctrl-C for an object it stopped part-way)",
    )
    chosen.add_argument(
        "--any-key",
        action="store_true",
        help="under an S3 prefix, also ship objects whose names are not ELB log file names "
        "(by default they are counted and left out: S3 server access logs, query results; "
        "other services' logs under AWSLogs/<account>/<service>/ stay skipped either way), and "
        "in a directory its dot-files (.DS_Store, .git/); an object named exactly is always "
        "shipped",
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
        "Logstash pool (default: one per usable CPU; with --to -, 1: more spool each object's "
        "JSON lines in TMPDIR until its turn); with --via-lambda, invocations in flight "
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
    logstash.add_argument(
        "--ca-file", help="CA bundle to verify Logstash's certificate (tls://, beats+tls://)"
    )
    logstash.add_argument(
        "--client-cert", help="client certificate for Logstash (tls://, beats+tls://)"
    )
    logstash.add_argument("--client-key", help="key of the client certificate")
    logstash.add_argument(
        "--pool-size",
        type=int,
        metavar="N",
        help=f"{ENV.LOGSTASH_POOL_SIZE}: most connections to Logstash at once, per worker process, "
        f"1 to {MAX_POOL_SIZE} (default: the variable, else {DEFAULT_POOL_SIZE})",
    )
    logstash.add_argument(
        "--no-original",
        action="store_true",
        help="drop event.original from parsed lines (always kept for parse failures)",
    )
    private = ship.add_argument_group(
        "privacy and volume (the function's settings of the same names; README, Privacy)"
    )
    # Lower-cased before the choices are checked, as the variables are read.
    private.add_argument(
        "--redact-query",
        type=str.lower,
        choices=[choice.value for choice in QueryRedaction],
        help=f"{ENV.REDACT_QUERY}: keep query strings, redact their values, or drop them",
    )
    private.add_argument(
        "--client-ip",
        type=str.lower,
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
    return ship


def ship_parser() -> argparse.ArgumentParser:
    """The parser of the ``ship`` command alone (what the resume command is rebuilt from)."""
    return _add_ship_parser(argparse.ArgumentParser(prog=PROG).add_subparsers())


def _date_argument(text: str) -> Any:
    try:
        return parse_date(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        if args.command == "demo":
            # Imported here: only the demo needs the samples.
            from elb_log_shipper.demo import run_demo  # noqa: PLC0415

            return run_demo(sys.stdout)
        return _ship(args, _buffered(sys.stdout.buffer), sys.stderr)
    except ListingUnavailableError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigurationError, ListingError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except WorkerStartError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        # Too low a descriptor limit is the run's configuration, as a wrong option is.
        return EXIT_USAGE if error.out_of_descriptors else EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our stdout went away (`| head`): stop quietly, as Unix tools do. What is
        # left in stdout's buffer goes nowhere, instead of failing again at exit.
        take_back(sys.stdout, None)
        return EXIT_FAILED


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {
        "ca_file": args.ca_file,
        "client_cert_file": args.client_cert,
        "client_key_file": args.client_key,
        "pool_size": args.pool_size,
    }
    if args.no_original:
        overrides["keep_original"] = False
    destination = None if args.to in (None, "-") else parse_destination(args.to)
    if destination is not None:
        overrides.update(destination.settings())
    # The function's own settings (the destination comes from --to) are not this run's: a
    # value the function would refuse must not stop a command that does not read it. Nor is a
    # variable that a flag replaces.
    environ = {name: value for name, value in os.environ.items() if name not in _FUNCTION_ONLY}
    for flag, name in _FLAG_VARIABLES:
        if getattr(args, flag) not in (None, False):
            environ.pop(name, None)
    if args.dry_run or args.via_lambda is not None or destination is None or not destination.tls:
        # No TLS connection to Logstash in this run (stdout, a dry run, the function's own, or
        # plain tcp:// or beats://): the function's TLS files in the environment are not this
        # run's settings, and would be refused as TLS files without TLS. The flags still are.
        for name in _TLS_FILE_VARIABLES:
            environ.pop(name, None)
    # The privacy flags are read as their variables are, so they are checked the same way.
    for name in _PRIVACY_VARIABLES:
        value = getattr(args, name.lower())
        if value is not None:
            environ[name] = value
    if (
        args.client_ip is not None
        and args.client_ip.strip().lower() != ClientAddress.HASH
        and args.client_ip_hash_key_parameter is None
    ):
        # --client-ip keep (or truncate) says no hashing: the function's key parameter, in the
        # environment, is not this run's.
        environ.pop(ENV.CLIENT_IP_HASH_KEY_PARAMETER, None)
    try:
        return Settings.from_env(environ, **overrides)
    except ConfigurationError as error:
        raise ConfigurationError(_with_flags(str(error))) from None


def _with_flags(message: str) -> str:
    """``message``, a configuration error that names privacy variables, with the flags that set
    them (``--drop-status`` for ``DROP_STATUS``): the user may have typed either.

    >>> _with_flags("CLIENT_IP=hash needs CLIENT_IP_HASH_KEY_PARAMETER: the name of ...")
    'CLIENT_IP=hash needs CLIENT_IP_HASH_KEY_PARAMETER: the name of ... (on the command line: \
--client-ip, --client-ip-hash-key-parameter)'
    """
    if "on the command line" in message:
        return message
    flags = [
        "--" + name.lower().replace("_", "-")
        for name in _PRIVACY_VARIABLES
        if re.search(rf"\b{name}(?![A-Z_])", message)
    ]
    return f"{message} (on the command line: {', '.join(flags)})" if flags else message


def _privacy_rules(settings: Settings) -> PrivacyRules | None:
    if settings.client_ip is ClientAddress.HASH:
        # Imported here: Powertools, which reads the key, takes 0.1 s of CPU to load.
        from elb_log_shipper.hashkey import privacy_rules  # noqa: PLC0415

        return privacy_rules(settings)
    return settings.privacy_rules()


_FUNCTION_ONLY = frozenset(
    {
        ENV.LOGSTASH_HOST,
        ENV.LOGSTASH_PORT,
        ENV.LOGSTASH_TLS,
        ENV.LOGSTASH_PROTOCOL,
        ENV.DEADLINE_MARGIN_SECONDS,
        ENV.CONTINUATION_QUEUE_URL,
        ENV.DEAD_LETTER_QUEUE_URL,
        ENV.MAX_HOPS,
        ENV.LOG_PREFIX,
        ENV.LOG_BUCKET,
    }
)
# The flags that replace a variable, by argparse name.
_FLAG_VARIABLES = (
    ("pool_size", ENV.LOGSTASH_POOL_SIZE),
    ("no_original", ENV.KEEP_ORIGINAL),
    ("ca_file", ENV.LOGSTASH_CA_FILE),
    ("client_cert", ENV.LOGSTASH_CLIENT_CERT_FILE),
    ("client_key", ENV.LOGSTASH_CLIENT_KEY_FILE),
)
_TLS_FILE_VARIABLES = (
    ENV.LOGSTASH_CA_FILE,
    ENV.LOGSTASH_CLIENT_CERT_FILE,
    ENV.LOGSTASH_CLIENT_KEY_FILE,
)
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


# How much of a worker's spool the parent copies to stdout at a time.
SPOOL_COPY_BYTES = 1 << 20

# The --to schemes that connect with TLS (logstash.parse_destination).
_TLS_SCHEMES = ("tls://", "beats+tls://")


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
    if args.start_after is not None and not isinstance(args.start_after, str):
        # argparse reads `--start-after=--` as no value at all ([]): it would list from the
        # start, shipping again what a resume command says is done.
        raise ConfigurationError("--start-after needs a key or path: `--` is none")
    tls_files = args.ca_file or args.client_cert or args.client_key
    if tls_files and not (args.to or "").strip().lower().startswith(_TLS_SCHEMES):
        # Settings would refuse it too, naming LOGSTASH_TLS, a variable the user did not set.
        raise ConfigurationError(
            "--ca-file, --client-cert and --client-key are for TLS: use --to tls:// or beats+tls://"
        )
    # Checked here, not by Settings: a flag's value is an override, which skips the variable's
    # range check, and a pool of 0 connections waits for one forever.
    if args.pool_size is not None and not 1 <= args.pool_size <= MAX_POOL_SIZE:
        raise ConfigurationError(
            f"--pool-size {args.pool_size} is out of range: use 1 to {MAX_POOL_SIZE}"
        )
    if args.start_offset is not None and args.start_offset < 0:
        raise ConfigurationError("--start-offset needs a byte offset of 0 or more")
    if not args.progress_every > 0:  # nan too: it compares false with every time
        raise ConfigurationError("--progress-every needs a positive number of seconds")


def _ship(args: argparse.Namespace, stdout: IO[bytes], stderr: TextIO) -> int:
    _check_usage(args)
    settings = _settings(args)
    if args.jobs:
        jobs = args.jobs
    elif args.via_lambda is not None:
        jobs = DEFAULT_INVOKE_JOBS
    elif args.to == "-":
        # JSON lines in plan order: from several processes each object's output would wait on
        # disk (TMPDIR, about four times its log's size) until its turn.
        jobs = 1
    else:
        jobs = usable_cpus()
    clients = LazyClients(jobs)
    plan = plan_sources(
        args.sources,
        clients.s3,
        dates=DateRange(args.since, args.until),
        start_after=args.start_after,
        any_key=args.any_key,
        on_listed=_listing_progress(stderr, args.progress_every),
    )
    within = _dates_named(args.since, args.until)
    for source in plan.empty_prefixes:
        print(f"{PROG}: no objects under {source}{within}", file=stderr)
    if args.start_offset is not None:
        _start_at(plan, args.start_offset)
    if args.dry_run:
        try:
            stdout.write(format_plan(plan, args.via_lambda).encode())
            stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            print(f"{PROG}: cannot write to stdout: {error.strerror or error}", file=stderr)
            _flush_written(stdout)
            return EXIT_FAILED
        return EXIT_OK
    # More jobs than objects would only start processes (or threads) with nothing to do.
    run = _Run(args, plan, stderr, max(1, min(jobs, len(plan.to_ship))))
    if args.via_lambda is not None:
        return run.invoke_all(clients, args.via_lambda)
    if args.to != "-":
        settings = settings.require_destination()
    try:
        return run.ship_all(settings, stdout, clients.s3, _privacy_rules(settings))
    finally:
        _flush_written(stdout)


def _listing_progress(stderr: TextIO, interval: float) -> Callable[[Plan], None]:
    """What ``plan_sources`` calls after each object listed: a line every ``interval`` seconds
    while the listing lasts (a month of a busy load balancer is tens of thousands of keys, a
    page of 1,000 at a time), which says why nothing ships yet."""
    started = time.monotonic()
    last = started

    def listed(plan: Plan) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < interval:
            return
        last = now
        count = len(plan.objects) + sum(plan.excluded.values()) + plan.not_logs
        print(
            f"{PROG}: listing: {count:,} objects listed ({len(plan.to_ship):,} to ship) in "
            f"{format_duration(now - started)}; nothing ships before the listing ends",
            file=stderr,
        )

    return listed


def _buffered(stdout: IO[bytes]) -> IO[bytes]:
    """``stdout`` buffered. Under ``PYTHONUNBUFFERED`` (CI, most container images) it is the
    raw file, whose ``write`` may write part of what it is given (a file size limit reached, a
    signal during a write to a pipe) and say so only in its return value: a batch would count
    as written with its end missing. A buffered writer writes all of it, or raises. Its own raw
    file, so that closing it leaves ``sys.stdout`` open."""
    if not isinstance(stdout, io.RawIOBase):
        return stdout
    return io.BufferedWriter(io.FileIO(stdout.fileno(), "wb", closefd=False))


def _flush_written(stdout: IO[bytes]) -> None:
    """Flush stdout at the end of a run. Every batch was flushed as it was written, so a flush
    that fails here fails on what a write that failed left in the buffer, and the object it
    belonged to was reported failed then (a broken pipe still ends the command quietly)."""
    try:
        stdout.flush()
    except BrokenPipeError:
        raise
    except OSError:
        # What is left cannot be written: to /dev/null with it, or the interpreter's own flush
        # at exit fails again ("Exception ignored", exit status 120).
        take_back(stdout, None)


def _dates_named(since: dt.date | None, until: dt.date | None) -> str:
    """The delivery dates a listing kept, as the end of a sentence; empty when all were kept.

    >>> _dates_named(dt.date(2024, 3, 1), None)
    ' delivered from 2024-03-01 on'
    """
    if since and until:
        return f" delivered from {since} to {until}"
    if since:
        return f" delivered from {since} on"
    if until:
        return f" delivered up to {until}"
    return ""


def _start_at(plan: Plan, offset: int) -> None:
    """Make the plan's one object start at ``offset`` (``--start-offset``)."""
    if len(plan.objects) != 1 or plan.objects[0].listed:
        raise ConfigurationError(
            "--start-offset needs one SOURCE naming one object (s3://bucket/key or a file)"
        )
    obj = plan.objects[0]
    plan.objects[0] = replace(obj, ref=replace(obj.ref, start_offset=offset))


class _Watch:
    """With one job each object ships on the command's own thread, which a read from S3 that
    stalls (or any call that hangs) holds: nothing drew the progress line, nor said which
    object made no progress. This thread draws it (``on_tick``, every ``workers.TICK_SECONDS``)
    and counts the time the object in hand (``begin``) goes without a sign from the command's
    thread (``stir``: bytes read, a batch handed on, a wait for Logstash, which says so
    itself), as ``workers`` counts a worker process's silence (``workers.WatchedTime``): at
    most ``workers.WATCH_STEP_SECONDS`` a look, so that a command stopped by Ctrl-Z and
    continued does not find its object silent for the pause. Past ``note_seconds`` it tells
    ``on_silent({index: seconds})``, and ``on_silent({})`` once the object stirs (at once,
    before the command's thread draws the line again) or ends. While ``waiting()`` is not None
    the command's thread waits for something it names (a write to a stdout that nobody reads:
    ``""`` while the wait is too short to say), which is no silence: ``on_note`` shows it
    instead, and hears None once the wait is over.
    Nothing is killed: the command's thread cannot be, and a read that stalls fails by itself
    (the S3 client's timeouts), or stops at Ctrl-C; a call that hangs, at a second Ctrl-C."""

    def __init__(
        self,
        on_silent: Callable[[Mapping[int, float]], None],
        on_tick: Callable[[], None],
        note_seconds: float,
        waiting: Callable[[], str | None] = lambda: None,
        on_note: Callable[[str | None], None] = lambda note: None,
    ) -> None:
        self._on_silent = on_silent
        self._on_tick = on_tick
        self._note_seconds = note_seconds
        self._waiting = waiting
        self._on_note = on_note
        self.noted = False  # on_note last heard of a wait: it must hear that it ended
        # Written by the command's thread only, read here without a lock: a stir is one
        # integer increment and a test, cheap enough for every batch.
        self.stirs = 0
        self.index: int | None = None
        self.told = False  # on_silent last heard of the object: it must hear that it stirred
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"{PROG}-watch", daemon=True)

    def begin(self, index: int | None) -> None:
        """The command's thread takes object ``index`` in hand (None: none)."""
        self.stirs += 1
        self.index = index

    def stir(self) -> None:
        self.stirs += 1
        if self.told:
            self.told = False
            self._on_silent({})
        if self.noted:
            self.noted = False
            self._on_note(None)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        seen: tuple[int | None, int] = (None, -1)
        silent = 0.0
        clock = workers.WatchedTime()
        while not self._done.wait(workers.TICK_SECONDS):
            step = clock.step()
            waiting = self._waiting()
            if waiting or self.noted:
                self.noted = bool(waiting)
                self._on_note(waiting or None)
            # The index first: ``begin`` stirs before it sets a new one.
            index = self.index
            looked = (index, self.stirs)
            if looked != seen or index is None or waiting is not None:
                seen, silent = looked, 0.0
            else:
                silent += step
            if index is not None and silent >= self._note_seconds:
                self.told = True
                self._on_silent({index: silent})
            elif self.told:
                self.told = False
                self._on_silent({})
            self._on_tick()


class _Run:
    """One ``ship`` run over a plan: the fan-out, the reports, the resume hint."""

    def __init__(self, args: argparse.Namespace, plan: Plan, stderr: TextIO, jobs: int) -> None:
        self.args = args
        self.plan = plan
        self.stderr = stderr
        self.jobs = jobs
        self.stop = threading.Event()
        self.signals = StopSignals(self.stop)
        # Set when stdout could not be written (--jobs N, --to -): the run stops.
        self._stdout_error: str | None = None
        # Set when a worker process could not start after objects were handed back: the run
        # stopped, and its report says so with the commands that ship the rest.
        self._start_error: str | None = None
        self.announced = False
        self.forced = False
        # The longest each object went without a word from its worker process (past
        # SILENT_NOTE_SECONDS), for the summary; and those whose worker then died or was killed,
        # which their own error line explains.
        self.silences: dict[int, float] = {}
        self.silent_then_failed: set[int] = set()
        # Read here only: a test lowers it (the objects of one job are watched as the workers).
        self.silent_note_seconds = workers.SILENT_NOTE_SECONDS
        # With one job a watcher thread ticks too: one of the two announces a stop.
        self._announcing = threading.Lock()
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
            with self._announcing:
                if not self.announced:
                    self.announced = True
                    stopping = (
                        "queueing no more objects"
                        if self.args.via_lambda
                        else "stopping the objects in progress at their next batch"
                    )
                    self.progress.print(
                        f"{PROG}: {self.signals.signal_name or 'SIGTERM'}: {stopping} (a second "
                        "Ctrl-C or SIGTERM quits at once)"
                    )
        self.progress.tick()

    def _on_silent(self, silent: Mapping[int, float]) -> None:
        """Objects that have made no progress for a while: on the progress line."""
        for index, seconds in silent.items():
            self.silences[index] = max(seconds, self.silences.get(index, 0.0))
        named = [(self.plan.objects[index].ref.uri, silent[index]) for index in sorted(silent)]
        self.progress.set_silent(silence_note(named))

    def _fan_out(
        self,
        run: Callable[[Callable[[int, Any], None]], object],
        on_done: Callable[[int, Any], None],
    ) -> int:
        """Run the plan with ``run(on_done)`` (``backfill.fan_out`` or
        ``workers.run_in_processes``); return how many objects were handed back (a prefix)."""
        done = 0

        def counted(index: int, result: Any) -> None:
            nonlocal done
            # Counted once handed on: a second Ctrl-C in the middle of on_done (copying a spool
            # to a slow stdout) leaves the object to the resume commands, not lost.
            on_done(index, result)
            done = index + 1

        with self.signals.installed():
            try:
                run(counted)
            except KeyboardInterrupt:
                self.forced = True
            except WorkerStartError as error:
                # Ctrl-C reaches the fork server too, which ignores it only once its preloads are
                # imported: a worker that could not start then is part of the stop. Before any
                # object was handed back nothing was shipped: the one sentence says it all.
                if not self.stop.is_set():
                    if not done:
                        raise
                    self._start_error = error.reason
            finally:
                self.progress.clear()
        return done

    # Shipping.

    def ship_all(
        self,
        settings: Settings,
        stdout: IO[bytes],
        s3_client: Callable[[], S3Client],
        privacy: PrivacyRules | None,
    ) -> int:
        """Ship the plan: in this process with one job, else in ``jobs`` worker processes (each
        with its own pool; for stdout each object's JSON lines come back in a spool file)."""
        results: list[ObjectResult] = []

        def on_done(index: int, done: tuple[ObjectResult, str | None] | ItemFailed) -> None:
            obj = self.plan.objects[index]
            if isinstance(done, ItemFailed):
                if index in self.silences:
                    self.silent_then_failed.add(index)
                # Its bytes read as its progress counted them, for object_done to take back.
                failed = ObjectResult(
                    obj.ref, Outcome.FAILED, error=str(done), bytes_read=done.size
                )
                # What Logstash confirmed before the worker died is not shipped again.
                resume_from_confirmed(failed, done.checkpoint)
                done = failed, None
            result, spooled = done
            if spooled is not None:  # a worker process's JSON lines, in plan order
                self._copy_spooled(spooled, stdout, result)
            # A stopped object (handed off) is neither shipped nor failed: its resume command
            # ships the rest.
            if obj.skip_reason is None and result.outcome is not Outcome.HANDED_OFF:
                self.progress.object_done(
                    obj.size, failed=is_failed(result), read=result.bytes_read
                )
            if result.error or not (self.args.quiet or result.quiet or obj.quiet):
                self.progress.print(format_result(result))
            results.append(result)  # last: an object is in results once it is done with

        def is_fatal(done: tuple[ObjectResult, str | None] | ItemFailed) -> bool:
            # Judged as results arrive: stdout failing is found as they are handed back.
            return self._stdout_error is not None or (
                not isinstance(done, ItemFailed) and done[0].stops_run
            )

        if self.jobs == 1:
            finished = self._ship_here(settings, stdout, s3_client, on_done, privacy)
        else:
            with self._spool() as spool_dir:
                setup = WorkerSetup(settings, spool_dir, privacy)
                finished = self._fan_out(
                    lambda counted: run_in_processes(
                        ship_in_worker,
                        [obj.ref for obj in self.plan.objects],
                        counted,
                        jobs=self.jobs,
                        stop=self.stop,
                        initializer=start_worker,
                        initargs=(setup,),
                        finalizer=stop_worker,
                        on_progress=self.progress.add,
                        on_note=self.progress.set_note,
                        on_tick=self._tick,
                        is_fatal=is_fatal,
                        on_silent=self._on_silent,
                        preload=WORKER_PRELOAD,
                        silent_note_seconds=self.silent_note_seconds,
                    ),
                    on_done,
                )
        _flush_written(stdout)
        return self._report(results, finished)

    def _spool(self) -> contextlib.AbstractContextManager[str | None]:
        """For ``--to -`` from worker processes, a temporary folder for each object's JSON lines
        until its turn; else none."""
        if self.args.to != "-":
            return contextlib.nullcontext()
        try:
            return tempfile.TemporaryDirectory(prefix=f"{PROG}-")
        except OSError as error:
            raise ConfigurationError(
                f"--jobs {self.jobs} with --to - keeps each object's JSON lines in a temporary "
                f"folder until its turn, and none could be made ({error}): set TMPDIR to a "
                "writable folder, or use --jobs 1"
            ) from error

    def _copy_spooled(self, spooled: str, stdout: IO[bytes], result: ObjectResult) -> None:
        """Copy a worker's spooled JSON lines to stdout; when stdout cannot be written (a full
        disk), this object and every later one fail as a delivery does, and the run stops."""
        start = file_position(stdout)
        try:
            with open(spooled, "rb") as spool:
                while self._stdout_error is None and (chunk := spool.read(SPOOL_COPY_BYTES)):
                    self._write_out(stdout, chunk)
            if self._stdout_error is None:
                self._write_out(stdout, b"")
            else:
                take_back(stdout, start)  # the object goes on from its start
        except BrokenPipeError:
            raise
        except OSError as error:  # the spool itself (not stdout): this object only
            result.outcome = Outcome.FAILED
            result.next_offset = None
            result.restart = True  # none of it, or part of it, reached stdout
            result.events_confirmed = 0
            result.error = f"its spooled events could not be read back: {error}"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(spooled)
        if self._stdout_error is None:
            return
        # Not all of its lines reached stdout: whatever became of it, it goes on from its start
        # (a rejected object too: the lines before its fault).
        result.events_confirmed = 0
        if result.outcome is Outcome.HANDED_OFF:
            result.next_offset = result.ref.start_offset
        elif result.outcome is not Outcome.SKIPPED:
            result.outcome = Outcome.FAILED
            result.delivery_failed = True
            result.next_offset = None
            result.error = f"delivery to stdout failed: {self._stdout_error}"

    def _write_out(self, stdout: IO[bytes], chunk: bytes) -> None:
        """Write ``chunk`` to stdout (flush it, for ``b""``); a failure other than a broken pipe
        (the reader gone: the command ends quietly, ``main``) stops the run."""
        try:
            if chunk:
                stdout.write(chunk)
            else:
                stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            self._stdout_error = str(error.strerror or error)

    def _ship_here(
        self,
        settings: Settings,
        stdout: IO[bytes],
        s3_client: Callable[[], S3Client],
        on_done: Callable[[int, Any], None],
        privacy: PrivacyRules | None,
    ) -> int:
        """One job: the objects one after the other on this thread (no process, no spool
        file), progress drawn between batches, and by a watcher (``_Watch``) while this thread
        is held."""
        pool = SocketPool(settings) if self.args.to != "-" else None
        to_stdout: list[StdoutSender] = []  # the object's sender, with --to -
        notes = ObjectNotes(self.progress.set_note)

        def unread_stdout() -> str | None:
            # Read by the watcher while this thread may be held in a write to stdout.
            since = to_stdout[-1].writing_since if to_stdout else None
            if since is None:
                return None
            return unread_note("the reader of standard output", time.monotonic() - since) or ""

        watch = _Watch(
            self._on_silent,
            self._tick,
            self.silent_note_seconds,
            waiting=unread_stdout,
            on_note=notes.wait,
        )

        def on_events(count: int) -> None:
            watch.stir()
            self.progress.add(lines=count)
            self._tick()

        read = [0]  # bytes of the current object its progress counted

        def on_read(size: int) -> None:
            watch.stir()
            read[0] += size
            self.progress.add(read=size)

        def on_wait(
            waiting_for_ack: float | None, retrying: Retrying | None, not_reading: float | None
        ) -> None:
            watch.stir()  # a wait for Logstash is no silence: the line says what it waits for
            notes.wait(wait_note(waiting_for_ack, retrying, not_reading))
            self._tick()

        def on_retry_note(note: str | None) -> None:
            # On the read-ahead thread, which may not stir the watch (the command's own): a
            # minute of retries is a silence too, said beside this note.
            notes.s3(note)
            self._tick()

        def task(obj: PlannedObject) -> tuple[ObjectResult, None] | ItemFailed:
            sender: ObjectSender
            if pool:
                sender = LogstashSender(pool, on_wait=on_wait, should_stop=self.stop.is_set)
            else:
                to_stdout[:] = [sender := StdoutSender(stdout)]
            read[0] = 0
            watch.begin(next(indexes))
            try:
                result = deliver_object(
                    obj.ref,
                    sender,
                    settings,
                    s3_client=None if obj.ref.is_local else s3_client(),
                    should_stop=self.stop.is_set,
                    on_events=on_events,
                    privacy=privacy,
                    on_read=on_read,
                    on_retry_note=on_retry_note,
                )
            except BrokenPipeError:
                raise  # stdout's reader is gone (`| head`): the run ends, quietly (`main`)
            except Exception as error:  # noqa: BLE001 - the object fails, the run goes on
                # As a worker process reports it (``workers``): one object's defect must not end
                # the run without its summary and the commands that ship what is left.
                return ItemFailed(f"{type(error).__name__}: {error}", size=read[0])
            finally:
                watch.begin(None)
            return result, None

        indexes = itertools.count()  # the objects are taken in plan order

        def run(counted: Callable[[int, Any], None]) -> int:
            with watch:  # gone before the progress line is cleared for the summary
                return fan_out(
                    self.plan.objects,
                    task,
                    counted,
                    jobs=1,
                    stop=self.stop,
                    is_fatal=lambda done: not isinstance(done, ItemFailed) and done[0].stops_run,
                    on_tick=self._tick,
                )

        try:
            return self._fan_out(run, on_done)
        finally:
            if pool is not None:
                pool.close()

    def _report(self, results: Sequence[ObjectResult], finished: int) -> int:
        # Objects stopped part-way by Ctrl-C or SIGTERM, and objects that failed: after an
        # interruption, the resume commands finish both, each from its first line not shipped.
        unfinished = [
            (self.plan.objects[index], offset)
            for index, result in enumerate(results)
            if (offset := _resume_offset(result)) is not None
        ]
        # Archived objects not read at all: restored, they ship whole, many to a command. So do
        # objects overwritten since the listing named them (a read is pinned to the listed
        # ETag): named alone, each is shipped as it is now.
        archived_at = [
            index
            for index, result in enumerate(results)
            if result.archived and _resume_offset(result) == 0
        ]
        changed_at = [
            index
            for index, result in enumerate(results)
            if result.outcome is Outcome.REJECTED and result.changed
        ]
        archived = [self.plan.objects[index] for index in archived_at]
        changed = [self.plan.objects[index] for index in changed_at]
        # By index, in plan order: a membership test of one list in the other compares objects
        # field by field, quadratic (78 s for 8,000 archived of 20,000 objects).
        whole = [self.plan.objects[index] for index in sorted({*archived_at, *changed_at})]
        stopped = sum(
            1 for r in results if r.outcome is Outcome.HANDED_OFF and r.next_offset is not None
        )
        not_shipped = len(self.plan.objects) - finished + stopped
        print(
            format_run(
                results,
                seconds=time.monotonic() - self.started,
                not_shipped=not_shipped,
                excluded=self.plan.excluded,
                not_logs=self.plan.not_logs,
                listed_by_date=self.plan.listed_by_date,
            ),
            file=self.stderr,
        )
        if archived:
            classes = Counter(obj.ref.archive or "an archive tier" for obj in archived)
            is_, was, them = ("is", "was", "it") if len(archived) == 1 else ("are", "were", "them")
            print(
                f"{PROG}: {objects(len(archived))} {is_} archived "
                f"({'; '.join(f'{name}: {n:,}' for name, n in classes.most_common())}) and {was} "
                f"not read: S3 reads {them} only once restored (aws s3api restore-object, or S3 "
                f"Batch Operations for many); restore {them}, then run the commands below",
                file=self.stderr,
            )
        if changed:
            print(
                f"{PROG}: changed while the command ran (overwritten, a version deleted), not "
                f"shipped whole: {objects(len(changed))}; the commands below ship each as it is "
                "now, from its start",
                file=self.stderr,
            )
        hung = "its worker process hung or stopped" if self.jobs > 1 else "a call that hung"
        for index, seconds in sorted(self.silences.items()):
            if index < len(results) and index not in self.silent_then_failed:
                print(
                    f"{PROG}: {printable(results[index].ref.uri)} made no progress for "
                    f"{format_duration(seconds)} at one point (a read that stalled, or {hung})",
                    file=self.stderr,
                )
        rejected = sum(1 for r in results if r.outcome is Outcome.REJECTED and not r.changed)
        if self._interrupted(
            finished,
            unfinished,
            stopped=stopped,
            rejected=rejected,
            whole=whole,
            changed=len(changed),
        ):
            return EXIT_INTERRUPTED
        stopped_by = next((r for r in results if r.stops_run), None)
        if stopped_by is not None or self._start_error is not None:
            # The objects that failed were not shipped either (not only those never tried), nor
            # those that changed, which the commands below ship as they are now.
            # Logstash not always unreachable: a certificate refused, a server that is no input.
            unsent = (
                not_shipped + sum(1 for r in results if r.outcome is Outcome.FAILED) + len(changed)
            )
            destination = "writing the events" if self.args.to == "-" else "delivery to Logstash"
            if stopped_by is None:
                why = f"a worker process could not start ({self._start_error})"
                remedy = "fix the cause"
            elif stopped_by.delivery_failed:
                why, remedy = f"{destination} failed (the error above says why)", "fix the cause"
            else:
                why, remedy = "S3 refused the credentials (the error above says why)", "renew them"
            print(
                f"{PROG}: stopped because {why}; {objects(unsent)} "
                f"{'was' if unsent == 1 else 'were'} not shipped: {remedy}, then run:",
                file=self.stderr,
            )
            self._print_commands(finished, unfinished, whole)
            return EXIT_FAILED
        if unfinished or changed:
            # Failed objects (a read that failed for good, an archived or changed object): the
            # whole command again would ship every other object twice.
            failed = len(unfinished) + len(changed)
            print(
                f"{PROG}: {objects(failed)} failed (the errors above say why); to ship "
                f"{'it' if failed == 1 else 'them'} once the cause is fixed, each from "
                "its first line not shipped, run:",
                file=self.stderr,
            )
            self._print_commands(finished, unfinished, whole)
        failed = any(r.outcome in (Outcome.FAILED, Outcome.REJECTED) for r in results)
        return EXIT_FAILED if failed or not_shipped else EXIT_OK

    # Invoking.

    def invoke_all(self, clients: LazyClients, function: str) -> int:
        invocations: list[Invocation] = []
        queued: list[int] = []  # sizes
        client = clients.lambda_client()

        def task(obj: PlannedObject) -> Invocation:
            if obj.skip_reason is not None:
                return Invocation(obj)
            if obj.missing:  # the function would only fail to read it
                return Invocation(obj, error=f"no such object or prefix in {obj.ref.bucket}")
            if obj.ref.archive is not None and (why := not_restored(clients.s3(), obj.ref)):
                # The function would fail to read it, and dead-letter it; a HEAD asks first.
                return Invocation(obj, error=why, archived=True)
            return invoke_async(client, function, obj)

        def on_done(index: int, invocation: Invocation) -> None:
            invocations.append(invocation)
            obj = invocation.obj
            if invocation.queued:
                queued.append(obj.size)
            if obj.skip_reason is None:
                self.progress.object_done(obj.size, failed=invocation.error is not None)
            if invocation.error is not None:
                self.progress.print(f"{obj.ref.uri}: not queued: {invocation.error}")
            elif not self.args.quiet and not obj.quiet:
                if obj.skip_reason is not None:
                    self.progress.print(f"skipped {obj.ref.uri}: {obj.skip_reason}")
                else:
                    self.progress.print(f"queued {obj.ref.uri} ({obj.size} bytes)")

        def first_failed(invocation: Invocation) -> bool:
            # Nothing queued yet and this failed: a wrong name or permission fails them all.
            return (
                invocation.error is not None
                and not queued
                and not invocation.obj.missing
                and not invocation.archived
            )

        done = self._fan_out(
            lambda counted: fan_out(
                self.plan.objects,
                task,
                counted,
                jobs=self.jobs,
                stop=self.stop,
                is_fatal=first_failed,
                on_tick=self._tick,
            ),
            on_done,
        )
        errors = sum(1 for i in invocations if i.error is not None)
        skipped = sum(1 for i in invocations if i.obj.skip_reason is not None)
        print(
            f"queued {objects(len(queued))} ({format_bytes(sum(queued))}, {sum(queued)} bytes) "
            f"for {function}; {errors} not queued, {skipped} skipped, "
            f"{len(self.plan.objects) - done} not tried, "
            f"{sum(self.plan.excluded.values())} outside the dates"
            f"{not_logs_note(self.plan.not_logs)} in {time.monotonic() - self.started:.1f} s",
            file=self.stderr,
        )
        if self.plan.listed_by_date:
            print(listed_by_date_note(self.plan.listed_by_date), file=self.stderr)
        # An invocation not queued is queued again by the resume commands, from the same offset.
        not_queued = [(i.obj, i.obj.ref.start_offset) for i in invocations if i.error is not None]
        if self._interrupted(done, not_queued):
            return EXIT_INTERRUPTED
        if errors or done < len(self.plan.objects):
            # Running the whole command again would queue every other object a second time.
            print(
                f"{PROG}: {errors} not queued (the errors above say why); to queue "
                f"{'it' if errors == 1 else 'them'}"
                f"{' and the objects not tried' if done < len(self.plan.objects) else ''} "
                "once the cause is fixed, run:",
                file=self.stderr,
            )
            self._print_commands(done, not_queued)
            return EXIT_FAILED
        return EXIT_OK

    # Resuming.

    def _interrupted(
        self,
        finished: int,
        unfinished: Sequence[tuple[PlannedObject, int]],
        *,
        stopped: int = 0,
        rejected: int = 0,
        whole: Sequence[PlannedObject] = (),
        changed: int = 0,
    ) -> bool:
        """After Ctrl-C or SIGTERM left objects unstarted or ``stopped`` part-way: print how to
        resume and return True.

        ``unfinished`` are the objects handed back but not done (``stopped`` of them stopped
        part-way, the others failed), with the offset each goes on from: the resume commands
        finish them too, so that running them all ships every line. ``rejected`` objects are
        left out (running them again cannot help) but not counted as done. ``whole`` are shipped
        whole, many to a command (``resume_commands``): archived objects of ``unfinished``, and
        ``changed`` objects, rejected because they changed since they were listed.
        """
        if not (self.stop.is_set() or self.forced):
            return False
        if finished >= len(self.plan.objects) and not unfinished and not whole:
            # Every object was handed back, none left to go on with (stopped part-way, or
            # failed: the stop may have cut the confirmation of the last one short).
            return False
        failed = len(unfinished) - stopped
        done = finished - len(unfinished) - rejected - changed
        counts = [f"{done} of {len(self.plan.objects)} objects done"]
        if failed:
            counts.append(f"{failed} failed (retried by the commands below)")
        if changed:
            counts.append(
                f"{changed} changed while the command ran (the commands below ship them as they "
                "are now)"
            )
        if rejected:
            counts.append(f"{rejected} rejected (not retried: running them again cannot help)")
        print(f"{PROG}: interrupted; {', '.join(counts)}. To resume, run:", file=self.stderr)
        self._print_commands(finished, unfinished, whole)
        return True

    def _print_commands(
        self,
        finished: int,
        unfinished: Sequence[tuple[PlannedObject, int]],
        whole: Sequence[PlannedObject] = (),
    ) -> None:
        """The ``resume_commands`` from ``finished``, one a line, as a shell reads them; the
        objects of ``unfinished`` in ``whole`` are named many to a command."""
        together = {id(obj) for obj in whole}
        alone = [(obj, offset) for obj, offset in unfinished if id(obj) not in together]
        for command in resume_commands(self.args, self.plan.objects, finished, alone, whole):
            print(f"  {' '.join(map(shell_word, [PROG, *command]))}", file=self.stderr)


def _resume_offset(result: ObjectResult) -> int | None:
    """Where a resume command goes on with the object of ``result``: the first line not
    shipped of an object stopped part-way or failed; None for an object done or rejected.

    A failed read's lines before the fault were shipped (``offset_sent``), but for a checksum
    that failed at the end of the object, which makes them all suspect (``restart``). After a
    delivery failure only the confirmed lines count (``next_offset``, or none at all), and a
    worker that died reported nothing: they go on from where the object began.
    """
    if result.outcome is Outcome.HANDED_OFF:
        return result.next_offset
    if result.outcome is not Outcome.FAILED:
        return None
    if result.next_offset is not None:
        return result.next_offset
    if result.delivery_failed or result.restart:
        return result.ref.start_offset
    return max(result.offset_sent, result.ref.start_offset)


def resume_commands(
    args: argparse.Namespace,
    objects: Sequence[PlannedObject],
    finished: int,
    unfinished: Sequence[tuple[PlannedObject, int]] = (),
    whole: Sequence[PlannedObject] = (),
) -> list[list[str]]:
    """The ``ship`` command lines (without the program name) that go on from ``objects[finished]``,
    after one per object of ``unfinished`` (an object before ``finished`` that Ctrl-C stopped
    part-way, or that failed, with the offset of its first line not shipped) that ships the rest
    of it (``--start-offset``); and one per ``RESUME_OBJECTS_PER_COMMAND`` objects of ``whole``
    (objects before ``finished`` to ship from their start: archived ones, not read at all),
    named together.

    Sources whose objects are all done are dropped. When the first object left was listed under
    an S3 prefix or in a directory after others of it were done, that source resumes with
    ``--start-after`` the last key (or path) done, in a command of its own (``--start-after``
    applies to every source of a command); the sources after it follow in a second command. The
    options are rebuilt from ``args`` and the parser (``ship_options``), so every option the
    user gave carries over.

    Objects after the resume point are never skipped, and objects done out of order do not exist
    (results are handed back in order), so nothing done is shipped twice.
    """
    options = ship_options(args)
    commands = [
        ["ship", obj.ref.uri, *options, "--start-offset", str(offset)] for obj, offset in unfinished
    ]
    for start in range(0, len(whole), RESUME_OBJECTS_PER_COMMAND):
        named = whole[start : start + RESUME_OBJECTS_PER_COMMAND]
        commands.append(["ship", *(obj.ref.uri for obj in named), *options])
    if finished >= len(objects):
        return commands
    sources: list[str] = list(args.sources)
    first = objects[finished]
    before = objects[finished - 1] if finished else None
    if first.listed and before is not None and before.source == first.source:
        commands.append(["ship", sources[first.source], *options, _start_after(before.ref.key)])
        rest = sources[first.source + 1 :]
    else:
        rest = sources[first.source :]
    if rest:
        original = [_start_after(args.start_after)] if args.start_after else []
        commands.append(["ship", *rest, *options, *original])
    return commands


def _start_after(key: str) -> str:
    """``--start-after`` with ``key`` in one argument: a key that starts with ``-`` would be read
    as an option of its own.

    >>> _start_after("-a.log")
    '--start-after=-a.log'
    """
    return f"--start-after={key}"


def ship_options(args: argparse.Namespace) -> list[str]:
    """The options of a parsed ``ship`` command, as arguments that parse back to the same
    values (the sources and ``--start-after`` left out).

    >>> ship_options(build_parser().parse_args(["ship", "x", "--to", "-", "-q", "--jobs", "2"]))
    ['--to', '-', '--jobs', '2', '--quiet']
    """
    options: list[str] = []
    # argparse has no public list of a parser's actions; _actions is the one it keeps.
    for action in ship_parser()._actions:
        if action.dest in _NOT_REPEATED or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if action.nargs == 0:  # store_true
            options.append(flag)
        else:
            options += [flag, str(value)]
    return options


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
