"""A network link of a chosen bandwidth between the shipper and its receivers, for ``ship_bench``.

Over loopback the network is free: a benchmark there compares CPU alone, and the bytes that
json_lines sends (ten times beats') cost nothing. A function in AWS sends them over a network
interface of limited bandwidth, to a Logstash in another subnet or availability zone. This
module puts the shipper in a network namespace of its own, joined to this one by a veth pair,
and limits what the shipper sends with a token bucket (``tc qdisc ... tbf``), so that a run can
show what the bytes cost in lines/s. S3 stays unlimited (the shipper reads a tenth of what it
sends: the object is gzip). There is no added latency: this kernel has no ``netem``.

It needs root (``ip netns``, ``ip link``, ``tc``, from iproute2). Everything it makes is removed
when the ``with`` ends: deleting the namespace deletes both ends of the veth pair.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Link", "network_link"]

# The token bucket: room for 10 ms at the rate (never less than a 64 KiB segment that TSO/GSO
# may hand it at once), and a queue that holds 50 ms at the rate before it drops.
_BURST_SECONDS = 0.01
_MIN_BURST_BYTES = 64 * 1024
_QUEUE_LATENCY = "50ms"


@dataclass(frozen=True)
class Link:
    """The shipper's side of the link: run a command there with ``wrap``; it reaches this
    process's servers at ``host``."""

    namespace: str
    device: str
    host: str

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run in the shipper's namespace."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def limit(self, mbit: int) -> None:
        """Limit what the shipper sends to ``mbit`` Mbit/s (0: no limit, the veth's own speed)."""
        qdisc = ["pfifo"]
        if mbit:
            burst = max(_MIN_BURST_BYTES, int(mbit * 1e6 / 8 * _BURST_SECONDS))
            qdisc = ["tbf", "rate", f"{mbit}mbit", "burst", str(burst), "latency", _QUEUE_LATENCY]
        _run(*self.wrap(["tc", "qdisc", "replace", "dev", self.device, "root", *qdisc]))


@contextmanager
def network_link() -> Iterator[Link]:
    """A namespace for the shipper and a veth pair to it, for the duration of the ``with``."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        raise SystemExit("ship_bench: --link needs root and iproute2 (ip, tc)")
    tag = os.getpid() % 100_000
    namespace = f"elb-bench-{tag}"
    outer, inner = f"elbb{tag}o", f"elbb{tag}i"
    subnet = f"10.231.{tag % 250}"
    link = Link(namespace=namespace, device=inner, host=f"{subnet}.1")
    _run("ip", "netns", "add", namespace)
    try:
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", inner, "netns", namespace)
        _run("ip", "addr", "add", f"{link.host}/24", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        _run(*link.wrap(["ip", "addr", "add", f"{subnet}.2/24", "dev", inner]))
        _run(*link.wrap(["ip", "link", "set", inner, "up"]))
        _run(*link.wrap(["ip", "link", "set", "lo", "up"]))
        yield link
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", outer], check=False, capture_output=True)


def _run(*command: str) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ship_bench: {' '.join(command)} failed: {done.stderr.strip()}")
