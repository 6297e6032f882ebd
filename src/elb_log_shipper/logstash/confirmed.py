"""How far into its object a sender's delivery is confirmed: the offset a retry can resume from.

Each batch a sender queues gets a ``Ticket`` from its sender's ``ConfirmedProgress``, in send
order. The ticket travels with the batch (and across connections when it is resent), so whoever
confirms it, a worker of this sender or the final ``LogstashSender(pool).finish()`` of a later
one, advances the right sender's progress. A batch cut into parts (beats windows smaller than the
batch) hands each part a ticket of its own, ending at the part's last line, when the batch knows
where its lines start; otherwise the parts share its ticket.

The bytes of the open tickets (the oldest unconfirmed batch and every one sent after it, confirmed
or not) are what a hand-off or a retry from the confirmed offset sends again: the sender keeps
them bounded (``open_bytes``, ``wait_below``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

__all__ = ["ConfirmedProgress", "Ticket"]


class Ticket:
    """One queued batch's claim on its sender's progress; confirmed once all its parts are."""

    __slots__ = ("_parts", "_progress", "end_offset", "size")

    def __init__(self, progress: ConfirmedProgress, end_offset: int | None, size: int = 0) -> None:
        self._progress = progress
        self.end_offset = end_offset
        self.size = size
        self._parts = 1

    def split(self, parts: int) -> None:
        """The batch was cut into ``parts`` batches sharing this ticket: each must be confirmed."""
        self._progress.add_parts(self, parts - 1)

    def confirm(self) -> None:
        """One part of the batch was confirmed (from any thread)."""
        self._progress.confirm(self)

    def divide(self, end_offsets: list[int]) -> list[Ticket]:
        """Tickets for the parts the batch was cut into, in order, the ``i``-th confirming up to
        ``end_offsets[i]`` (the last part's end is this ticket's own); they replace this one."""
        return self._progress.divide(self, end_offsets)


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
    >>> third = progress.issue(400)
    >>> head, tail = third.divide([320])
    >>> head.confirm(); progress.offset
    320
    >>> tail.confirm(); progress.offset
    400
    """

    def __init__(self, on_advance: Callable[[int], None] | None = None) -> None:
        # Told each new offset as it is confirmed, under the lock: in the order they come, from
        # whichever thread confirms (a worker process posts its checkpoint there).
        self._on_advance = on_advance
        self._lock = threading.Condition()
        self._open: collections.deque[Ticket] = collections.deque()
        self._offset: int | None = None
        self._open_bytes = 0

    def issue(self, end_offset: int | None, size: int = 0) -> Ticket:
        """A ticket for the next batch in send order, of ``size`` bytes; ``None`` when the caller
        tracks no offset (the batch still has to be confirmed before later ones count)."""
        ticket = Ticket(self, end_offset, size)
        with self._lock:
            self._open.append(ticket)
            self._open_bytes += size
        return ticket

    @property
    def open_bytes(self) -> int:
        """Bytes of the oldest unconfirmed ticket and of every one issued after it."""
        with self._lock:
            return self._open_bytes

    def wait_below(self, limit: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``open_bytes`` to be at most ``limit``."""
        with self._lock:
            return self._lock.wait_for(lambda: self._open_bytes <= limit, timeout)

    @property
    def offset(self) -> int | None:
        """The ``end_offset`` of the last batch of the confirmed prefix, or None."""
        with self._lock:
            return self._offset

    def divide(self, ticket: Ticket, end_offsets: list[int]) -> list[Ticket]:
        """``Ticket.divide``: the new tickets take ``ticket``'s place in send order."""
        # The bytes stay with the last part: they are sent again until it is confirmed.
        parts = [Ticket(self, end) for end in end_offsets]
        parts.append(Ticket(self, ticket.end_offset, ticket.size))
        with self._lock:
            if ticket._parts != 1:
                raise ValueError("a ticket shared by parts cannot be divided")
            at = self._open.index(ticket)
            del self._open[at]
            for offset, part in enumerate(parts):
                self._open.insert(at + offset, part)
        return parts

    def add_parts(self, ticket: Ticket, extra: int) -> None:
        with self._lock:
            ticket._parts += extra

    def confirm(self, ticket: Ticket) -> None:
        with self._lock:
            ticket._parts -= 1
            before = self._offset
            while self._open and self._open[0]._parts <= 0:
                done = self._open.popleft()
                self._open_bytes -= done.size
                if done.end_offset is not None:
                    self._offset = done.end_offset
            self._lock.notify_all()
            if self._on_advance is not None and self._offset is not None and self._offset != before:
                self._on_advance(self._offset)
