"""How far into its object a sender's delivery is confirmed: the offset a retry can resume from.

Each batch a sender queues gets a ``Ticket`` from its sender's ``ConfirmedProgress``, in send
order. The ticket travels with the batch (and with the parts it may be cut into, and across
connections when it is resent), so whoever confirms it, a worker of this sender or the final
``LogstashSender(pool).finish()`` of a later one, advances the right sender's progress.
"""

from __future__ import annotations

import collections
import threading

__all__ = ["ConfirmedProgress", "Ticket"]


class Ticket:
    """One queued batch's claim on its sender's progress; confirmed once all its parts are."""

    __slots__ = ("_parts", "_progress", "end_offset")

    def __init__(self, progress: ConfirmedProgress, end_offset: int | None) -> None:
        self._progress = progress
        self.end_offset = end_offset
        self._parts = 1

    def split(self, parts: int) -> None:
        """The batch was cut into ``parts`` batches sharing this ticket: each must be confirmed."""
        self._progress.add_parts(self, parts - 1)

    def confirm(self) -> None:
        """One part of the batch was confirmed (from any thread)."""
        self._progress.confirm(self)


class ConfirmedProgress:
    """The ``end_offset`` of the longest prefix of issued tickets that is confirmed.

    Thread-safe: tickets are issued by the caller's thread and confirmed by worker threads, in any
    order.

    >>> progress = ConfirmedProgress()
    >>> first, second = progress.issue(100), progress.issue(250)
    >>> second.confirm(); progress.offset is None
    True
    >>> first.confirm(); progress.offset
    250
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: collections.deque[Ticket] = collections.deque()
        self._offset: int | None = None

    def issue(self, end_offset: int | None) -> Ticket:
        """A ticket for the next batch in send order; ``None`` when the caller tracks no offset
        (the batch still has to be confirmed before later ones count)."""
        ticket = Ticket(self, end_offset)
        with self._lock:
            self._open.append(ticket)
        return ticket

    @property
    def offset(self) -> int | None:
        """The ``end_offset`` of the last batch of the confirmed prefix, or None."""
        with self._lock:
            return self._offset

    def add_parts(self, ticket: Ticket, extra: int) -> None:
        with self._lock:
            ticket._parts += extra

    def confirm(self, ticket: Ticket) -> None:
        with self._lock:
            ticket._parts -= 1
            while self._open and self._open[0]._parts <= 0:
                done = self._open.popleft()
                if done.end_offset is not None:
                    self._offset = done.end_offset
