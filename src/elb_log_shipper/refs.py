"""References to the things we read: S3 objects and local files, with a resume point."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ObjectRef"]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One log object to ship, and where to start in it.

    ``bucket`` is empty for a local file, whose path is then ``key``. ``start_offset`` is a byte
    offset in the *decompressed* stream at which a line starts (0, or a resume point handed off by
    an earlier invocation); ``hop`` counts those hand-offs. ``etag`` and ``version_id``, when known,
    pin the object: a resumed read of a changed object is an error, not a mix of two objects.
    ``archive``, set by a listing, is the object's storage class when S3 reads it only once
    restored (``GLACIER``, ``DEEP_ARCHIVE``); it is no part of the object's identity.

    >>> ObjectRef("logs", "AWSLogs/1/elasticloadbalancing/x.log.gz").uri
    's3://logs/AWSLogs/1/elasticloadbalancing/x.log.gz'
    """

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    start_offset: int = 0
    hop: int = 0
    archive: str | None = field(default=None, compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        return not self.bucket

    @property
    def uri(self) -> str:
        return self.key if self.is_local else f"s3://{self.bucket}/{self.key}"

    @classmethod
    def local(cls, path: str) -> ObjectRef:
        return cls(bucket="", key=path)
