"""Backfill: which objects a ``ship`` command covers, and running one task per object in order.

``plan_sources`` turns the command's SOURCE arguments into ``PlannedObject``s, in the order they
will be shipped:

- ``s3://bucket/key`` naming an existing object is that object, whatever the filters say.
- ``s3://bucket/prefix/`` (a trailing ``/``, an empty key, or a key that names no object) is
  every object listed under the prefix whose name is one ELB gives its logs (all of them with
  ``any_key``), in key order, after ``start_after`` when given. A key (a prefix too, but the
  bucket's root) under which nothing at all is listed is planned as the object it names, so
  shipping it reports that it does not exist; one with keys but none in the dates is an empty
  prefix (``Plan.empty_prefixes``).
- A directory is every file under it in walk order (``walk_directory``), after ``start_after``
  when that names a path under it; a file is that file.

The date filter (``DateRange``) selects among listed objects (prefixes and directories) by the
``yyyy/mm/dd`` folders ELB writes them under: the delivery date, in UTC, both bounds inclusive. A
key without such a date is excluded when a bound is given (we cannot tell whether it is in
range) and included otherwise. With a bound, a prefix is not listed whole: ``list_dated``
walks ELB's folders and lists only the day folders in the range (above ``AWSLogs/``, it finds
each ``AWSLogs/`` folder first). Objects named exactly are never filtered.
``triggers.classify`` then marks the ELB test file and health-check logs as skipped, as the
Lambda function does.

``fan_out`` runs a task per object (on worker threads when there are several jobs) and hands the
results back to the calling thread in listing order, so the finished objects are always a prefix
of the listing: what a resume (``--start-after``) needs, and what keeps stdout ordered.
``invoke_async`` is the task of ``ship --via-lambda``: one asynchronous invocation per object.
``LazyClients`` makes the command's AWS clients on first use, so that shipping local files never
loads boto3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import json
import os
import queue
import re
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from elb_log_shipper.awssetup import (
    CREDENTIALS_REFUSED,
    NO_CREDENTIALS,
    SET_UP_CREDENTIALS,
    client_setup,
    region,
)
from elb_log_shipper.errors import ConfigurationError, ShipperError
from elb_log_shipper.objectkey import has_log_name, parse_key
from elb_log_shipper.refs import ObjectRef
from elb_log_shipper.triggers import classify, make_continuation

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef, PaginatorConfigTypeDef

__all__ = [
    "NOT_A_FILE",
    "DateRange",
    "Invocation",
    "LazyClients",
    "ListingError",
    "ListingUnavailableError",
    "Plan",
    "PlannedObject",
    "fan_out",
    "invoke_async",
    "list_dated",
    "list_prefix",
    "not_a_file",
    "parse_date",
    "parse_s3_uri",
    "plan_sources",
]

# Keys per ListObjectsV2 page: the most S3 returns.
LIST_PAGE_SIZE = 1000
# Attempts of each S3 request of the command (the first and its retries): throttling lasts. The
# function's, fewer to fit its deadline margin, are handler.S3_MAX_ATTEMPTS.
S3_MAX_ATTEMPTS = 8
_SERVER_ERROR = 500
_THROTTLED = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"})
# Results that may wait for an earlier, slower object before being handed back, per job: enough
# to keep every job busy behind one slow object, few enough that spooled stdout stays small.
REORDER_WINDOW_PER_JOB = 2
# HeadObject answers without a body, so only the status tells these apart.
_BAD_REQUEST = 400
_FORBIDDEN = 403
_NOT_FOUND = 404

T = TypeVar("T")
R = TypeVar("R")


class ListingError(ShipperError):
    """An S3 prefix could not be listed (no such bucket, no permission, no network), or a folder
    under a directory SOURCE (no permission)."""


class ListingUnavailableError(ListingError):
    """S3 throttled or failed a listing past the retries: nothing to fix but to wait."""


def parse_date(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date, as ``--since`` and ``--until`` take it.

    >>> parse_date("2024-03-01")
    datetime.date(2024, 3, 1)

    Only that form: ``date.fromisoformat`` also takes ``20240301`` and the week date
    ``2024-W09-5``, which a typo can turn into another valid day.
    """
    try:
        if _ISO_DAY.fullmatch(text) is None:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: use YYYY-MM-DD") from None


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (the key may be empty or a prefix).

    >>> parse_s3_uri("s3://logs/AWSLogs/")
    ('logs', 'AWSLogs/')
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ConfigurationError(f"{uri}: use s3://bucket/key or s3://bucket/prefix/")
    if _BUCKET_NAME.fullmatch(bucket) is None and not bucket.startswith("arn:"):
        raise ConfigurationError(
            f"{uri}: {bucket!r} is no S3 bucket name (letters, digits, '.', '-' and '_')"
        )
    return bucket, key


# What botocore accepts as a bucket name (its own check, before any request): names of today's
# rules, and the upper case and underscores of buckets made in us-east-1 before 2018. An access
# point's ARN (arn:aws:s3:<region>:<account>:accesspoint:<name>) is left to botocore.
_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


@dataclass(frozen=True, slots=True)
class DateRange:
    """Delivery dates to keep, both bounds inclusive; ``None`` is open.

    >>> days = DateRange(dt.date(2024, 3, 2), dt.date(2024, 3, 3))
    >>> days.exclusion("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2024/03/03/x.log")
    >>> days.exclusion("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2024/03/04/x.log")
    'delivered after --until'
    """

    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ConfigurationError(
                f"--since {self.since} is after --until {self.until}: swap them"
            )

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def may_hold(self, year: int, month: int | None = None, day: int | None = None) -> bool:
        """Whether the folder ``yyyy[/mm[/dd]]`` can hold keys in the range.

        >>> since = DateRange(dt.date(2024, 3, 2))
        >>> since.may_hold(2024, 2), since.may_hold(2024, 3, 1), since.may_hold(2024)
        (False, False, True)
        """
        first = (year, month or 1, day or 1)
        last = (year, month or 12, day or 31)
        since, until = self.since, self.until
        return (since is None or last >= (since.year, since.month, since.day)) and (
            until is None or first <= (until.year, until.month, until.day)
        )

    def exclusion(self, key: str) -> str | None:
        """Why a listed key is outside the range, or ``None`` when it is in."""
        if not self.bounded:
            return None
        date = parse_key(key).date
        if date is None:
            return "no yyyy/mm/dd delivery date in the key"
        if self.since is not None and date < self.since:
            return "delivered before --since"
        if self.until is not None and date > self.until:
            return "delivered after --until"
        return None


@dataclass(frozen=True, slots=True)
class PlannedObject:
    """One object of the plan. ``source`` is the index of the SOURCE argument it came from;
    ``size`` is in stored bytes (0 when unknown); ``listed`` is True for objects found under a
    prefix, which ``--start-after`` can resume; ``missing`` is True for a key that named neither
    an object nor a prefix when planned (its read reports it, as a failure)."""

    ref: ObjectRef
    source: int
    size: int = 0
    listed: bool = False
    skip_reason: str | None = None
    quiet: bool = False
    missing: bool = False


@dataclass(slots=True)
class Plan:
    """The objects to go through, in order, and how many listed objects the filter left out."""

    objects: list[PlannedObject] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    # Objects listed under S3 prefixes that are not named like ELB's logs, left out.
    not_logs: int = 0
    empty_prefixes: list[str] = field(default_factory=list)
    # S3 prefixes listed by delivery date (only the yyyy/mm/dd folders in range were listed).
    listed_by_date: list[str] = field(default_factory=list)

    @property
    def to_ship(self) -> list[PlannedObject]:
        return [obj for obj in self.objects if obj.skip_reason is None]

    @property
    def bytes_to_ship(self) -> int:
        return sum(obj.size for obj in self.to_ship)


def plan_sources(
    sources: Sequence[str],
    s3_client: Callable[[], S3Client],
    *,
    dates: DateRange | None = None,
    start_after: str | None = None,
    any_key: bool = False,
    on_listed: Callable[[Plan], None] | None = None,
) -> Plan:
    """The objects the SOURCE arguments name, in shipping order (see the module docstring).

    ``s3_client`` is called once, on the first S3 source. Objects listed under an S3 prefix
    whose keys are not named like ELB's logs (``has_log_name``), and dot-files under a folder
    (``.DS_Store``, ``.git/``), are counted in ``Plan.not_logs`` and left out, unless
    ``any_key``. Raises ConfigurationError for a missing local path or a malformed S3 URI,
    ListingError when a prefix cannot be listed. ``on_listed`` is called with the plan after each
    object listed under an S3 prefix (a listing of thousands takes a while: progress).
    """
    dates = dates or DateRange()
    plan = Plan()
    listed = on_listed or _ignore
    for index, source in enumerate(sources):
        if source.startswith("s3://"):
            _plan_s3(
                plan,
                index,
                source,
                s3_client(),
                dates=dates,
                start_after=start_after,
                any_key=any_key,
                on_listed=listed,
            )
        elif os.path.isdir(source):
            found = False
            for ref in walk_directory(source, start_after):
                found = True
                if not any_key and _hidden(os.path.relpath(ref.key, source)):
                    # A dot-file (.DS_Store) or what a dot-folder holds (.git/): no log ELB
                    # delivered, and every line of it a parse failure.
                    plan.not_logs += 1
                    continue
                _add_listed(plan, index, ref, _file_size(ref.key), dates)
            if not found:
                plan.empty_prefixes.append(source)
        elif os.path.isfile(source):
            _add(plan, PlannedObject(ObjectRef.local(source), index, _file_size(source)))
        elif os.path.exists(source):
            raise ConfigurationError(
                f"{source}: {NOT_A_FILE}; name a file, a folder or an s3:// object or prefix"
            )
        else:
            raise ConfigurationError(f"{source}: no such file or directory")
    return plan


def _ignore(plan: Plan) -> None:
    """No progress to tell (``plan_sources`` without ``on_listed``)."""


def _hidden(path: str) -> bool:
    """Whether ``path``, relative to a folder SOURCE, is a dot-file or under a dot-folder.

    >>> _hidden(".DS_Store"), _hidden("logs/.git/HEAD"), _hidden("2024/03/01/x.log.gz")
    (True, True, False)
    """
    return any(part.startswith(".") for part in path.split(os.sep))


# A FIFO, a socket or a device found in a folder is not read: opening a FIFO waits for a writer,
# forever if none comes (and past Ctrl-C: the open is not interrupted), and a device may never
# end. ELB logs are files.
NOT_A_FILE = "not a regular file (a FIFO, a socket or a device)"


def not_a_file(path: str) -> bool:
    """Whether ``path`` is there but no regular file (after links). A path that cannot be read
    at all is left to shipping, which reports it for that file alone."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _file_size(path: str) -> int:
    """The size of the file ``path``; 0 when it cannot be read (a link to nothing, a file gone
    since it was listed), which shipping it then reports for that file alone."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def walk_directory(root: str, start_after: str | None = None) -> Iterator[ObjectRef]:
    """Every file under ``root`` as local references, in walk order: a folder's files in name
    order, then its folders in name order, each the same way. With ``start_after``, a path
    under ``root`` (the resume point printed after Ctrl-C), only the files after it in that
    order, and the folders wholly before it are not read; a path outside ``root`` changes
    nothing.

    The order is by position, not by the text of the path (``root/z.log`` comes before
    ``root/a/x.log``), so a resume point whose file has gone since resumes at the same place.

    Links to folders are followed, each folder walked once, where the walk first reaches it.
    Raises ListingError for a folder that cannot be listed.
    """
    after = _resume_position(root, start_after) if start_after else None
    walked: set[tuple[int, int]] = set()
    _first_visit(root, walked)
    for folder, folders, files in os.walk(root, onerror=_unlistable, followlinks=True):
        here = _folder_position(os.path.relpath(folder, root))
        folders.sort()
        # A folder that a link leads to is walked too, once: not again through another link to
        # it (the same files under two names would be shipped twice, with two sets of ids), and
        # not round a loop of links.
        folders[:] = [name for name in folders if _first_visit(os.path.join(folder, name), walked)]
        if after is not None:
            # A folder wholly before the resume point (not on its way) holds nothing after it.
            folders[:] = [name for name in folders if (*here, (1, name)) >= after[: len(here) + 1]]
        for name in sorted(files):
            if after is None or (*here, (0, name)) > after:
                yield ObjectRef.local(os.path.join(folder, name))


def _unlistable(error: OSError) -> None:
    """A folder under a directory SOURCE that cannot be listed: the whole command stops before
    shipping anything, rather than leave that folder's files out without a word."""
    raise ListingError(
        f"cannot list the folder {error.filename}: {error.strerror}; nothing was shipped "
        "(check its permissions, or name the folders to ship one by one)"
    ) from error


def _first_visit(path: str, walked: set[tuple[int, int]]) -> bool:
    """Whether the folder ``path`` (or the folder a link there leads to) is not walked yet, and
    mark it walked. A link that leads nowhere is kept: walking it reports it (``_unlistable``)."""
    try:
        info = os.stat(path)
    except OSError:
        return True
    identity = (info.st_dev, info.st_ino)
    if identity in walked:
        return False
    walked.add(identity)
    return True


# Where a path comes in walk_directory's order: (1, name) for each folder on the way, (0, name)
# for the file. Where two paths part, a folder's files come before its folders, and names
# compare as sorted() compares them.
_Position = tuple[tuple[int, str], ...]


def _folder_position(relative: str) -> _Position:
    """The position of the folder ``relative`` (to the root; ``.`` is the root itself)."""
    if relative in ("", os.curdir):
        return ()
    return tuple((1, name) for name in relative.split(os.sep))


def _resume_position(root: str, path: str) -> _Position | None:
    """The position of the file ``path`` in ``root``'s walk, or None when it is not under it.

    >>> _resume_position("logs", "logs/z.log") < _resume_position("logs", "logs/a/x.log")
    True
    >>> _resume_position("logs", "other/x.log") is None
    True
    """
    relative = os.path.relpath(path, root)
    if relative in (os.curdir, os.pardir) or relative.startswith(os.pardir + os.sep):
        return None
    folder, name = os.path.split(relative)
    return (*_folder_position(folder), (0, name))


def list_prefix(
    s3: S3Client,
    bucket: str,
    prefix: str,
    start_after: str | None,
    *,
    files_only: bool = False,
) -> Iterator[ObjectRef]:
    """Every object under ``prefix``, in key order, as a reference pinned to its listed ETag;
    with ``files_only``, only those right in it (not in folders below it).

    Raises ListingError with one sentence naming the prefix and what to check.
    """
    paginator = s3.get_paginator("list_objects_v2")
    # An empty StartAfter is no StartAfter: the listing starts at the prefix.
    config: PaginatorConfigTypeDef = {"PageSize": LIST_PAGE_SIZE}
    if files_only:
        pages = paginator.paginate(
            Bucket=bucket,
            Prefix=prefix,
            StartAfter=start_after or "",
            Delimiter="/",
            PaginationConfig=config,
        )
    else:
        pages = paginator.paginate(
            Bucket=bucket, Prefix=prefix, StartAfter=start_after or "", PaginationConfig=config
        )
    with _listing_errors(bucket, prefix):
        for page in pages:
            for item in page.get("Contents", []):
                yield _listed(bucket, item)


# The storage classes whose objects S3 reads only once restored, which takes minutes to hours
# (Glacier Instant Retrieval reads as any other). An object in an archive tier of
# Intelligent-Tiering is listed as INTELLIGENT_TIERING: its read finds it.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def _archive(storage_class: str | None, restore: str | None = None) -> str | None:
    """``storage_class`` when S3 reads its objects only once restored and ``restore`` (a HEAD's
    ``Restore``, None from a listing) does not say that this one is; else None."""
    if storage_class not in ARCHIVE_CLASSES or 'ongoing-request="false"' in (restore or ""):
        return None
    return storage_class


def _listed(bucket: str, item: ObjectTypeDef) -> ObjectRef:
    """The object of a listing's ``item``, pinned to its ETag, with its archive class."""
    return ObjectRef(
        bucket,
        item["Key"],
        etag=item["ETag"].strip('"'),
        size=item["Size"],
        archive=_archive(item.get("StorageClass")),
    )


def not_restored(s3: S3Client, ref: ObjectRef) -> str | None:
    """Why S3 cannot read ``ref`` now, which a listing found archived (``ref.archive``): it is
    not restored, or its restore is still running; None when it is restored (or the HEAD that
    asks fails: the read then says what is wrong)."""
    if ref.archive is None:
        return None
    try:
        head = s3.head_object(Bucket=ref.bucket, Key=ref.key)
    except (BotoCoreError, ClientError):
        return None
    restore = head.get("Restore")
    storage_class = _archive(head.get("StorageClass"), restore)
    if storage_class is None:
        return None  # moved out of the archive since it was listed, or restored
    running = 'ongoing-request="true"' in (restore or "")
    state = "its restore is still running" if running else "not restored"
    return (
        f"archived in {storage_class}, {state}: S3 reads it only once restored "
        "(aws s3api restore-object)"
    )


@contextlib.contextmanager
def _listing_errors(bucket: str, prefix: str) -> Iterator[None]:
    """Turn boto3's errors from listing ``prefix`` into ListingError with one sentence."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        if _unavailable(error):
            raise ListingUnavailableError(
                f"cannot list s3://{bucket}/{prefix} ({code}): S3 is throttling or failing "
                f"and still was after {S3_MAX_ATTEMPTS} attempts; run the command again later"
            ) from None
        if code in CREDENTIALS_REFUSED:
            raise ListingUnavailableError(
                f"cannot list s3://{bucket}/{prefix}: S3 refused the credentials ({code}): they "
                "expired or are not valid, or this machine's clock is off; renew them (aws sso "
                "login, a new session) and run the command again"
            ) from None
        raise ListingError(
            f"cannot list s3://{bucket}/{prefix} ({code}): check the bucket name, the "
            "credentials and their s3:ListBucket permission"
        ) from None
    except BotoCoreError as error:
        raise _botocore_error(f"cannot list s3://{bucket}/{prefix}", error) from None


def _unavailable(error: ClientError) -> bool:
    """Whether S3 answered a server error or throttled: a later run can succeed."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= _SERVER_ERROR or code in _THROTTLED


def _botocore_error(what: str, error: BotoCoreError) -> ListingError:
    """``what`` failed with ``error`` before S3 answered: no credentials (fix the setup), or
    the network or S3 not answering after the retries (run again later)."""
    if isinstance(error, NO_CREDENTIALS):
        return ListingError(f"{what}: no usable AWS credentials ({error}); {SET_UP_CREDENTIALS}")
    return ListingUnavailableError(f"{what}: {error}; run the command again later")


def _plan_s3(
    plan: Plan,
    index: int,
    source: str,
    s3: S3Client,
    *,
    dates: DateRange,
    start_after: str | None,
    any_key: bool,
    on_listed: Callable[[Plan], None],
) -> None:
    bucket, key = parse_s3_uri(source)
    if key and not key.endswith("/"):
        head = _head(s3, bucket, key)
        if head is not None:
            _add(plan, PlannedObject(head, index, head.size or 0))
            return
    refs = list_dated(s3, bucket, key, dates, start_after)
    by_date = refs is not None
    if refs is None:
        refs = list_prefix(s3, bucket, key, start_after)
    else:
        plan.listed_by_date.append(source)
    found = False
    for ref in refs:
        found = True
        # A bucket that holds ELB's logs often holds others too (S3 server access logs, other
        # services', query results): read, each would be all parse failures at 4x its size.
        if any_key or has_log_name(ref.key):
            _add_listed(plan, index, ref, ref.size or 0, dates)
        else:
            plan.not_logs += 1
        on_listed(plan)
    if found:
        return
    # Listed by date, nothing found says nothing of the keys outside the dates: a prefix with
    # none in the dates, unless one more listing finds no key under it at all.
    if key and not start_after and not (by_date and _lists_any(s3, bucket, key)):
        # Neither an object nor a prefix with anything under it (a folder's name ends with `/`):
        # plan it as the object it names, whose read then reports that it does not exist.
        _add(plan, PlannedObject(ObjectRef(bucket, key), index, missing=True))
    else:
        plan.empty_prefixes.append(source)


# A prefix at or below `AWSLogs/` (the last one, after any prefix of the user's), split there.
_UNDER_AWSLOGS = re.compile(r"(?P<root>(?:.*/)?AWSLogs/)(?P<rest>.*)", re.DOTALL)
# The folders below `AWSLogs/` down to the files: account, service, region, year, month, day.
_FOLDER_LEVELS = 6
_SERVICE = "elasticloadbalancing"
_ACCOUNT = re.compile(r"[0-9]{12}")
_AWSLOGS = "AWSLogs/"
_YEAR, _DAY = 3, 5


def list_dated(
    s3: S3Client, bucket: str, prefix: str, dates: DateRange, start_after: str | None
) -> Iterator[ObjectRef] | None:
    """The objects under ``prefix`` that can be in ``dates``, found by walking the folders ELB
    writes (``AWSLogs/<account>/elasticloadbalancing/<region>/<yyyy>/<mm>/<dd>/``) and listing
    only the day folders in the range; None when that cannot be done (no date bound, or a
    prefix inside a day folder), for a plain listing. Above ``AWSLogs/`` (the bucket root, ELB's
    own prefix), see ``_above_awslogs``.

    A month of logs under a region's prefix is about 9,000 keys per load-balancer node, so a
    week's backfill from a bucket that holds years lists a few thousand keys instead of
    millions. For every key ELB writes, the result is what ``list_prefix`` gives less the keys
    ``dates.exclusion`` rejects, in the same order: only folders that cannot hold a key in the
    range are left out, and the keys listed still go through the date filter.
    """
    if not dates.bounded:
        return None
    found = _UNDER_AWSLOGS.fullmatch(prefix)
    if found is None:
        return _above_awslogs(s3, bucket, prefix, dates, start_after)
    *complete, partial = found["rest"].split("/")
    if complete and not _ACCOUNT.fullmatch(complete[0]):
        return _above_awslogs(s3, bucket, prefix, dates, start_after)  # `AWSLogs/backup/`
    if len(complete) >= _FOLDER_LEVELS:
        return None
    for level, name in enumerate(complete):
        if not _may_hold(level, name, complete[:level], dates):
            return iter(())
    path = found["root"] + "".join(name + "/" for name in complete)
    return _DateWalk(s3, bucket, dates, start_after).walk(len(complete), path, partial, complete)


def _above_awslogs(
    s3: S3Client, bucket: str, prefix: str, dates: DateRange, start_after: str | None
) -> Iterator[ObjectRef]:
    """``list_dated`` above ``AWSLogs/``: one listing with ``AWSLogs/`` as S3's delimiter rolls
    every ``.../AWSLogs/`` folder up into one name, each then walked by date; the keys outside
    them come in key order among them when the date filter keeps them: none, unless the prefix
    ends inside the name ``AWSLogs/`` (``s3://bucket/AWS``), which S3 then looks for after it
    in vain, so that every key under it comes listed, as a plain listing would."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket,
        Prefix=prefix,
        Delimiter=_AWSLOGS,
        PaginationConfig={"PageSize": LIST_PAGE_SIZE},
    )
    with _listing_errors(bucket, prefix):
        for page in pages:
            keys = [(item["Key"], item) for item in page.get("Contents", [])]
            folders = [(common["Prefix"], None) for common in page.get("CommonPrefixes", [])]
            for name, item in heapq.merge(keys, folders, key=lambda pair: pair[0]):
                if item is not None:
                    # Dated only when the prefix cuts inside `AWSLogs/`; out of range, not listed.
                    if (not start_after or name > start_after) and dates.exclusion(name) is None:
                        yield _listed(bucket, item)
                elif start_after and name < start_after and not start_after.startswith(name):
                    continue  # every key in it sorts before the resume point
                elif _UNDER_AWSLOGS.fullmatch(name):
                    yield from _DateWalk(s3, bucket, dates, start_after).walk(0, name, "", [])
                else:  # `xAWSLogs/`: no folder of ELB's
                    listed = list_prefix(s3, bucket, name, start_after)
                    yield from (ref for ref in listed if dates.exclusion(ref.key) is None)


@dataclass(frozen=True, slots=True)
class _DateWalk:
    s3: S3Client
    bucket: str
    dates: DateRange
    start_after: str | None

    def walk(self, level: int, path: str, partial: str, names: list[str]) -> Iterator[ObjectRef]:
        """The objects under ``path + partial``, ``path`` being a folder at ``level``."""
        s3, bucket, start_after = self.s3, self.bucket, self.start_after
        if level == _FOLDER_LEVELS:
            # A day folder: its files (keys in deeper folders are not ELB's and out of range).
            yield from list_prefix(s3, bucket, path + partial, start_after, files_only=True)
            return
        for folder in _subfolders(s3, bucket, path + partial):
            name = folder[len(path) : -1]
            # Every key of a folder that sorts before start_after without holding it is before.
            if start_after and folder < start_after and not start_after.startswith(folder):
                continue
            if level == 0 and not _ACCOUNT.fullmatch(name):
                # No account: a copy's folder (`AWSLogs/backup/`), whose own `AWSLogs/` folders
                # hold keys ELB's layout dates (the last `AWSLogs/` of a key counts).
                yield from _above_awslogs(s3, bucket, folder, self.dates, start_after)
            elif _may_hold(level, name, names, self.dates):
                yield from self.walk(level + 1, folder, "", [*names, name])


def _may_hold(level: int, name: str, above: list[str], dates: DateRange) -> bool:
    """Whether folder ``name`` at ``level`` (below the folders ``above``) can hold keys in
    ``dates``; accounts and regions are not judged (the key filter does that)."""
    if level == 1:
        return name == _SERVICE
    if level < _YEAR:
        return True
    digits = 4 if level == _YEAR else 2
    if len(name) != digits or not name.isdigit() or not name.isascii():
        return False
    parts = [int(value) for value in [*above[_YEAR:level], name]]
    if level == _DAY:
        try:
            dt.date(*parts)
        except ValueError:
            return False  # not a date: the filter would exclude its keys
    return dates.may_hold(*parts)


def _subfolders(s3: S3Client, bucket: str, prefix: str) -> Iterator[str]:
    """The folders (common prefixes) right under ``prefix``, in key order."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": LIST_PAGE_SIZE}
    )
    with _listing_errors(bucket, prefix):
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"]


def _head(s3: S3Client, bucket: str, key: str) -> ObjectRef | None:
    """The object ``key`` names, or None when there is none.

    A 403 is the object as named, unpinned: S3 answers 403 for a key these credentials may not
    read and, without s3:ListBucket, for a missing one; reading it reports the denial and the
    grants to check, and counts as a failed object, not a usage error. But a grant of
    s3:GetObject on ``prefix/*`` denies the key ``prefix`` itself while s3:ListBucket lists what
    is under it: when a listing finds keys under ``key``, it is a prefix (None).
    """
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (_FORBIDDEN, _BAD_REQUEST):
            # A HEAD's answer has no body, so no error code: a 400 (expired credentials, a
            # clock off) is left to the object's read too, which names it.
            return None if _lists_more_than(s3, bucket, key) else ObjectRef(bucket, key)
        if status == _NOT_FOUND:
            return None
        if _unavailable(error):
            raise ListingUnavailableError(
                f"cannot look up s3://{bucket}/{key}: S3 is throttling or failing and still was "
                f"after {S3_MAX_ATTEMPTS} attempts ({error}); run the command again later"
            ) from None
        raise ListingError(f"cannot look up s3://{bucket}/{key}: {error}") from None
    except BotoCoreError as error:
        raise _botocore_error(f"cannot look up s3://{bucket}/{key}", error) from None
    return ObjectRef(
        bucket,
        key,
        version_id=head.get("VersionId"),
        etag=head["ETag"].strip('"'),
        size=head["ContentLength"],
        archive=_archive(head.get("StorageClass"), head.get("Restore")),
    )


def _lists_any(s3: S3Client, bucket: str, prefix: str) -> bool:
    """Whether any key starts with ``prefix``."""
    with _listing_errors(bucket, prefix):
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    return bool(page.get("Contents"))


def _lists_more_than(s3: S3Client, bucket: str, key: str) -> bool:
    """Whether ``key`` is a folder: keys under ``key/`` (False when the listing is denied too,
    or fails). Another key that only starts with ``key`` (``a.log.gz`` for ``a.log``) is not."""
    folder = f"{key}/"
    try:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in CREDENTIALS_REFUSED or _unavailable(error):
            # Not a denial of this listing: what the listing's own error says (renew, retry).
            with _listing_errors(bucket, folder):
                raise
        return False
    except BotoCoreError as error:
        if isinstance(error, NO_CREDENTIALS):
            raise _botocore_error(f"cannot list s3://{bucket}/{folder}", error) from None
        return False
    return bool(page.get("Contents"))


def _add_listed(plan: Plan, index: int, ref: ObjectRef, size: int, dates: DateRange) -> None:
    reason = dates.exclusion(ref.key)
    if reason is not None:
        plan.excluded[reason] += 1
        return
    _add(plan, PlannedObject(ref, index, size, listed=True))


def _add(plan: Plan, obj: PlannedObject) -> None:
    """Plan ``obj``, skipped for the reason shipping it would give (``deliver_object``, in the
    same order: its key first, then what the path is)."""
    decision = classify(obj.ref)
    if not decision.ship:
        obj = PlannedObject(
            obj.ref, obj.source, obj.size, obj.listed, decision.skip_reason, decision.quiet
        )
    elif obj.ref.is_local and not_a_file(obj.ref.key):
        obj = PlannedObject(obj.ref, obj.source, obj.size, obj.listed, NOT_A_FILE)
    plan.objects.append(obj)


# --- running ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _TaskFailed:
    """An exception a task raised, carried back to the calling thread to be raised there."""

    error: BaseException


def fan_out(
    items: Sequence[T],
    task: Callable[[T], R],
    on_done: Callable[[int, R], None],
    *,
    jobs: int,
    stop: threading.Event,
    is_fatal: Callable[[R], bool] = lambda result: False,
    on_tick: Callable[[], None] = lambda: None,
    tick_seconds: float = 0.2,
) -> int:
    """Run ``task`` on every item with up to ``jobs`` worker threads; return how many ran.

    ``on_done(index, result)`` is called on the calling thread in item order, so the items done
    are always ``items[:n]``. The first item runs alone: a wrong setting (a dead Logstash, a
    missing function) fails once, not ``jobs`` times. No item starts once ``stop`` is set or
    after a result ``is_fatal``; the items running then finish (tasks should watch ``stop``) and
    are handed back. ``on_tick`` is called about every ``tick_seconds`` (progress display).
    An exception from a task is raised here, after the running items finished.

    The workers are daemon threads: a second Ctrl-C (KeyboardInterrupt out of this function)
    must not wait for them.

    >>> done = []
    >>> fan_out([1, 2, 3], lambda n: n * n, lambda i, r: done.append(r),
    ...         jobs=2, stop=threading.Event())
    3
    >>> done
    [1, 4, 9]
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if jobs == 1:
        return _one_at_a_time(items, task, on_done, stop=stop, is_fatal=is_fatal, on_tick=on_tick)
    tasks: queue.Queue[tuple[int, T] | None] = queue.Queue()
    results: queue.Queue[tuple[int, R | _TaskFailed]] = queue.Queue()

    def work() -> None:
        while (entry := tasks.get()) is not None:
            index, item = entry
            try:
                result: R | _TaskFailed = task(item)
            except BaseException as error:  # noqa: BLE001 - raised again on the calling thread
                result = _TaskFailed(error)
            results.put((index, result))

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(jobs, len(items)))]
    for worker in workers:
        worker.start()
    window = REORDER_WINDOW_PER_JOB * jobs
    limit = 1
    started = done = running = 0
    halted = False
    failure: BaseException | None = None
    waiting: dict[int, R | _TaskFailed] = {}
    try:
        while True:
            while (
                not halted
                and not stop.is_set()
                and started < len(items)
                and running < limit
                and started < done + window
            ):
                tasks.put((started, items[started]))
                started += 1
                running += 1
            if running == 0:
                return done
            try:
                index, result = results.get(timeout=tick_seconds)
            except queue.Empty:
                on_tick()
                continue
            running -= 1
            waiting[index] = result
            while done in waiting:
                result = waiting.pop(done)
                done += 1
                if isinstance(result, _TaskFailed):
                    failure = failure or result.error
                    halted = True
                    continue
                on_done(done - 1, result)
                if is_fatal(result):
                    halted = True
                elif failure is None:
                    limit = jobs
            on_tick()
            if failure is not None and running == 0:
                raise failure
    finally:
        for _ in workers:
            tasks.put(None)


def _one_at_a_time(
    items: Sequence[T],
    task: Callable[[T], R],
    on_done: Callable[[int, R], None],
    *,
    stop: threading.Event,
    is_fatal: Callable[[R], bool],
    on_tick: Callable[[], None],
) -> int:
    """``fan_out`` with one job, on the calling thread: no thread, no queue per object."""
    for index, item in enumerate(items):
        if stop.is_set():
            return index
        result = task(item)
        on_done(index, result)
        on_tick()
        if is_fatal(result):
            return index + 1
    return len(items)


# --- clients and invocations ---------------------------------------------------------------------


class LazyClients:
    """The command's S3 and Lambda clients (thread-safe), each made on first use."""

    def __init__(self, jobs: int) -> None:
        # A connection per job, plus the listing's.
        self._connections = max(10, jobs + 2)
        self._s3: S3Client | None = None
        self._lambda: LambdaClient | None = None

    def s3(self) -> S3Client:
        if self._s3 is None:
            import boto3  # noqa: PLC0415 - a local file never needs it; it costs 0.1 s to load
            from botocore.config import Config  # noqa: PLC0415

            # A backfill lists and reads for hours: S3 answers a busy prefix with 503 SlowDown
            # for a while, which botocore's default 3 attempts did not outlast (a listing then
            # failed the whole run). Standard retries back off up to 20 s an attempt.
            # An endpoint that stalls is given 10 s to connect and 30 s to answer, each of
            # the attempts (botocore's 60 s made 8 attempts 8 minutes).
            config = Config(
                max_pool_connections=self._connections,
                retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                connect_timeout=10,
                read_timeout=30,
            )
            with client_setup("s3"):
                self._s3 = boto3.client("s3", config=config, region_name=region())
        return self._s3

    def lambda_client(self) -> LambdaClient:
        if self._lambda is None:
            import boto3  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415

            # Standard retries back off on throttling (429), which a burst of invocations meets.
            config = Config(
                max_pool_connections=self._connections,
                retries={"mode": "standard", "max_attempts": 5},
            )
            with client_setup("lambda"):
                self._lambda = boto3.client("lambda", config=config, region_name=region())
        return self._lambda


@dataclass(slots=True)
class Invocation:
    """One asynchronous invocation: queued, or the error that prevented it (``archived``: the
    object is archived and not restored, so it was not queued: the function would only fail to
    read it)."""

    obj: PlannedObject
    queued: bool = False
    error: str | None = None
    archived: bool = False


# What Lambda answers to an accepted asynchronous invocation.
_ACCEPTED = 202


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
    if status != _ACCEPTED:
        return Invocation(obj, error=f"Lambda answered {status}, not 202 Accepted")
    return Invocation(obj, queued=True)
