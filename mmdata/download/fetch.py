"""Fetch one URL's body: limits, opt-out headers, retries with backoff, reject reasons.

Every failure is a ``DownloadError`` whose ``reason`` is the contract's reject reason
(``http_404``, ``timeout``, ``too_large``, ...). Only 429, 5xx and timeouts are retried:
those are the failures a server expects a polite client to come back for.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from mmdata.download.dns import DEFAULT_TTL_S, Resolver
from mmdata.download.guard import BlockedAddress, NetworkPolicy
from mmdata.download.http import BlockedScheme, RedirectLoop, build_opener, check_scheme

READ_CHUNK = 1 << 16
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DownloadError(Exception):
    """A URL that gave no usable body; ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.retry_after_s = reason, retry_after_s

    @property
    def retryable(self) -> bool:
        return self.reason == "timeout" or self.reason in {f"http_{s}" for s in RETRY_STATUSES}


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch; see the download stage for what each one means."""

    timeout_s: float = 10.0
    total_timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_bytes: int = 20 << 20
    user_agent_token: str = "mmdata"
    opt_out_directives: frozenset[str] = frozenset()
    per_host_connections: int = 8
    dns_ttl_s: float = DEFAULT_TTL_S

    @property
    def user_agent(self) -> str:
        from mmdata import __version__

        return (
            f"Mozilla/5.0 (compatible; {self.user_agent_token}/{__version__}; "
            "+https://github.com/mmdata/mmdata; image-text research corpus builder)"
        )


class HostLimiter:
    """At most ``limit`` requests in flight per host name, per process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.limit))
        with semaphore:
            yield


class Fetcher:
    """Fetches bodies through the guarded opener; thread-safe, one per stage worker.

    Its ``resolver`` caches each host's addresses for ``options.dns_ttl_s`` (one lookup
    per host per worker, robots.txt and redirects included); the guard still checks
    every address it connects to.
    """

    def __init__(
        self, options: FetchOptions, policy: NetworkPolicy, resolver: Resolver | None = None
    ) -> None:
        self.options = options
        self.resolver = Resolver(options.dns_ttl_s) if resolver is None else resolver
        self.opener = build_opener(policy, self.resolver)
        self.hosts = HostLimiter(options.per_host_connections)

    def get(self, url: str) -> bytes:
        """The body of ``url``, retried with exponential backoff on 429/5xx/timeouts."""
        try:
            check_scheme(url)
        except BlockedScheme as exc:
            raise classify(exc) from exc
        for attempt in range(self.options.retries + 1):
            try:
                return self.get_once(url)
            except DownloadError as exc:
                if not exc.retryable or attempt == self.options.retries:
                    raise
                time.sleep(self._backoff_s(attempt, exc.retry_after_s))
        raise AssertionError("unreachable")

    def get_once(self, url: str, max_bytes: int | None = None) -> bytes:
        """One attempt; raises DownloadError with the reject reason."""
        request = urllib.request.Request(url, headers={"User-Agent": self.options.user_agent})
        with self.hosts.slot(urlsplit(url).hostname or ""):
            try:
                with self.opener.open(request, timeout=self.options.timeout_s) as response:
                    self._check_opt_out(response.headers)
                    return self._read(response, max_bytes or self.options.max_bytes)
            except DownloadError:
                raise
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise classify(exc) from exc

    def _check_opt_out(self, headers: Message) -> None:
        directives = self.options.opt_out_directives
        token = self.options.user_agent_token
        # img2dataset's parser loops over the X-Robots-Tag headers: with none there is
        # nothing to refuse, and nothing to import (img2dataset costs seconds per worker).
        tagged = headers.get("X-Robots-Tag") is not None
        if directives and tagged and img2dataset_is_disallowed()(headers, token, directives):
            tags = "; ".join(headers.get_all("X-Robots-Tag", []))
            raise DownloadError("opt_out", f"X-Robots-Tag: {tags}")

    def _read(self, response: http.client.HTTPResponse, max_bytes: int) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise DownloadError("too_large", f"Content-Length {declared} > max_bytes {max_bytes}")
        deadline = time.monotonic() + self.options.total_timeout_s
        chunks, size = [], 0
        while chunk := response.read(READ_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError("too_large", f"body over max_bytes {max_bytes}")
            if time.monotonic() > deadline:
                raise DownloadError("timeout", f"body not read in {self.options.total_timeout_s}s")
            chunks.append(chunk)
        # read(n) returns b"" when the server closes early; the remaining length tells.
        if response.length:
            raise DownloadError("truncated", f"body ended {response.length} bytes short")
        return b"".join(chunks)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        wait = self.options.backoff_s * 2**attempt * random.uniform(0.5, 1.0)  # jitter
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(wait, self.options.max_backoff_s)


def classify(exc: BaseException) -> DownloadError:
    """The reject reason of an exception raised while opening or reading a URL."""
    if isinstance(exc, urllib.error.HTTPError):
        return DownloadError(
            f"http_{exc.code}", f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)
        )
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return classify(exc.reason)
    if isinstance(exc, DownloadError):
        return exc
    detail = f"{type(exc).__name__}: {exc}"
    for kind, reason in (
        (BlockedScheme, "blocked_scheme"),
        (BlockedAddress, "blocked_address"),
        (RedirectLoop, "redirect_loop"),
        (http.client.IncompleteRead, "truncated"),
        (TimeoutError, "timeout"),
        (socket.timeout, "timeout"),
    ):
        if isinstance(exc, kind):
            return DownloadError(reason, detail)
    if isinstance(exc, ValueError):  # a URL urllib cannot parse
        return DownloadError("bad_url", detail)
    return DownloadError("connection_error", detail)


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    return float(value) if value and value.strip().isdigit() else None


def img2dataset_is_disallowed():  # noqa: ANN201 - img2dataset's function
    """img2dataset's X-Robots-Tag parser, imported on first use (the package takes 2 s)."""
    # img2dataset pulls albumentations, which phones home on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from img2dataset.downloader import is_disallowed

    return is_disallowed
