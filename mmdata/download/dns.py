"""Name resolution for the download stage: one lookup per host per worker, not per URL.

A crawl list holds thousands of URLs per host (a CDN, an image host). Asking the
system resolver for every one of them is a DNS query per URL (``getaddrinfo`` has no
cache of its own on most systems), which is slow and rude to the resolver. ``Resolver``
keeps each host's answer for ``ttl_s`` seconds; ``getaddrinfo`` reports no TTL, so the
time is the recipe's (the download stage's ``dns_ttl_s``, 300 s by default; 0 asks the
system resolver every time).

Only the resolution is cached, never a verdict: the network guard checks every address
of a cached answer against its policy before connecting, and the peer after, each time
(``guard.guarded_connection``), so a cached answer cannot let through what a fresh one
would not. A name whose answer changes to a refused address is refused once its entry
expires. Choices:

- Failures (``socket.gaierror``: no such name, no answer, resolver unreachable) are
  cached too, for ``min(ttl_s, NEGATIVE_TTL_S)``, so a thousand URLs on a dead host are
  one lookup, not a thousand (each may take the resolver's whole timeout).
- One lookup per name at a time: threads asking for a name being resolved wait for that
  answer instead of asking again.
- Answers are kept per host name, whatever the port: the port is written into the
  addresses of a cached answer (http and https of one host are one lookup).
- At most ``max_entries`` names per worker, the least recently used dropped first.
- A connection that fails does not drop the answer: a host that refuses connections is
  still one lookup per TTL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: The download stage's default ``dns_ttl_s``: how long an answer is used.
DEFAULT_TTL_S = 300.0
#: Longest time a failed lookup is remembered (capped by the TTL).
NEGATIVE_TTL_S = 30.0
MAX_ENTRIES = 65_536

AddrInfo = tuple  # (family, type, proto, canonname, sockaddr), as socket.getaddrinfo


@dataclass
class _Entry:
    expires: float
    infos: list[AddrInfo] | None = None  # the answer, with port 0
    error: tuple | None = None  # the gaierror's args when the lookup failed


class Resolver:
    """``getaddrinfo`` with a per-process cache of ``ttl_s`` seconds; thread-safe.

    ``lookups`` counts the calls made to ``socket.getaddrinfo`` (for tests and logs).
    """

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        negative_ttl_s: float = NEGATIVE_TTL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or negative_ttl_s < 0:
            raise ValueError("dns ttl must be >= 0")
        self.ttl_s = ttl_s
        self.negative_ttl_s = min(negative_ttl_s, ttl_s)
        self.max_entries = max_entries
        self.clock = clock
        self.lookups = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._pending: dict[tuple, threading.Event] = {}

    def getaddrinfo(self, host: str, port: int, kind: int = socket.SOCK_STREAM) -> list[AddrInfo]:
        """``socket.getaddrinfo(host, port, type=kind)``, answered from the cache while the
        host's entry is fresh. Raises ``socket.gaierror`` as the lookup did."""
        if self.ttl_s <= 0:
            with self._lock:
                self.lookups += 1
            return socket.getaddrinfo(host, port, type=kind)
        key = (host.lower(), kind)
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.expires > self.clock():
                    self._entries.move_to_end(key)
                    return _answer(entry, port)
                event = self._pending.get(key)
                if event is None:  # this thread resolves; others asking now wait for it
                    event = self._pending[key] = threading.Event()
                    self.lookups += 1
                    break
            event.wait()
        entry = None
        try:
            try:
                infos = socket.getaddrinfo(host, 0, type=kind)
                entry = _Entry(self.clock() + self.ttl_s, infos=list(infos))
            except socket.gaierror as exc:  # the resolver's answer: no such name, ...
                entry = _Entry(self.clock() + self.negative_ttl_s, error=exc.args)
        finally:  # anything else (a name that cannot be encoded) is raised, uncached
            with self._lock:
                del self._pending[key]
                if entry is not None:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
            event.set()
        return _answer(entry, port)

    def clear(self) -> None:
        """Forget every answer."""
        with self._lock:
            self._entries.clear()


def _answer(entry: _Entry, port: int) -> list[AddrInfo]:
    if entry.error is not None:
        raise socket.gaierror(*entry.error)  # a new exception per caller (threads)
    assert entry.infos is not None
    return [
        (family, kind, proto, name, (sockaddr[0], port, *sockaddr[2:]))
        for family, kind, proto, name, sockaddr in entry.infos
    ]
