"""The few exceptions the shipper raises.

Two families, as in h11: the input was bad (a log line, an object, a Lambda event), or the shipper
was configured or used wrongly. Delivery failures are their own family because the caller's answer
differs: retry later, not fix the input.
"""

from __future__ import annotations

__all__ = [
    "ArchivedObjectError",
    "ConfigurationError",
    "DeliveryError",
    "InputError",
    "LineSyntaxError",
    "ObjectChangedError",
    "ParseError",
    "ShipperError",
    "SourceError",
]


class ShipperError(Exception):
    """Base class of every error the shipper raises on purpose."""


class ConfigurationError(ShipperError):
    """A setting is missing or invalid; the message names the setting and what to do."""


class InputError(ShipperError):
    """Something we were given to read is bad."""


class ParseError(InputError):
    """One log line could not be parsed. Never escapes the parser: it becomes an event."""


class LineSyntaxError(ParseError):
    """The line's quoting or field structure is broken."""


class SourceError(InputError):
    """An object or file cannot be read to the end (bad gzip, too large a line or inflation,
    missing object). Lines read before the error have been delivered to the caller.

    ``transient`` says whether reading it again later can succeed, decided where the error
    happens: the network or S3 failing (5xx, throttling, a stream that kept breaking) or access
    denied (a grant people fix) is transient; an object that is gone, changed or holds bad bytes
    is not.

    ``restart``: the lines already read are suspect too (a checksum that failed at the end of
    the object), so a retry ships it from its start, not from where it stopped.

    >>> SourceError("s3://logs/x.log: SlowDown", transient=True).transient
    True
    """

    def __init__(self, message: str, *, transient: bool = False, restart: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.restart = restart


class CredentialsError(SourceError):
    """S3 refused or never got the caller's credentials (expired, wrong, a clock off): every
    other read would fail the same way until they are renewed. Transient."""


class ArchivedObjectError(SourceError):
    """The object is archived (S3 Glacier Flexible Retrieval or Deep Archive, or an archive tier
    of Intelligent-Tiering) and not restored: S3 reads it only once a restore, which takes
    minutes to hours, is done. Transient, but no retry within minutes can read it."""


class ObjectChangedError(SourceError):
    """The object is not the one named: its ETag or version differs from the event's, or it
    changed between the first read and a resumed read (a local file: was written to before its
    second reading). Never transient."""


class DeliveryError(ShipperError):
    """Events could not be delivered to Logstash within the time allowed (or, ``destination``
    says, written to the stream a command ships to)."""

    def __init__(self, message: str, *, destination: str = "Logstash") -> None:
        super().__init__(message)
        self.destination = destination
