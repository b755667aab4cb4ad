"""robots.txt for image URLs, fetched once per site and cached per worker process.

img2dataset honours X-Robots-Tag only; sites that publish their wishes in robots.txt
(``Disallow: /images/``) are a common complaint of its users. Verdicts follow RFC 9309:
a 4xx robots.txt (including 401/403) means no rules, so everything is allowed; a 5xx or an
unreachable robots.txt means the whole site is disallowed, for the rest of the run.
"""

from __future__ import annotations

import threading
import urllib.robotparser
from urllib.parse import urlsplit

from mmdata.download.fetch import DownloadError, Fetcher

MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB; we parse at most that
UNREACHABLE = frozenset({"blocked_address", "blocked_scheme", "connection_error", "timeout"})


class RobotsCache:
    """``allowed(url)`` for one user agent token, one robots.txt fetch per site."""

    def __init__(self, fetcher: Fetcher, user_agent_token: str) -> None:
        self.fetcher, self.token = fetcher, user_agent_token
        self._lock = threading.Lock()
        self._sites: dict[str, tuple[threading.Event, object]] = {}

    def problem(self, url: str) -> str | None:
        """Why robots.txt forbids ``url``, or None when it may be fetched.

        Raises:
            DownloadError: the site cannot be reached at all (blocked, refused, timeout).
        """
        parts = urlsplit(url)
        site = f"{parts.scheme}://{parts.netloc}"
        rules = self._rules(site)
        if isinstance(rules, DownloadError):
            raise rules
        if isinstance(rules, str):
            return rules
        if not rules.can_fetch(self.token, url):
            return f"{site}/robots.txt disallows {parts.path or '/'} for {self.token}"
        return None

    def _rules(self, site: str) -> urllib.robotparser.RobotFileParser | str | DownloadError:
        with self._lock:
            entry = self._sites.get(site)
            owner = entry is None
            if owner:
                entry = (threading.Event(), None)
                self._sites[site] = entry
        if owner:  # one thread fetches, the others for the same site wait for it
            rules = self._fetch(site)
            self._sites[site] = (entry[0], rules)
            entry[0].set()
            return rules
        entry[0].wait()
        return self._sites[site][1]  # type: ignore[return-value]

    def _fetch(self, site: str) -> urllib.robotparser.RobotFileParser | str | DownloadError:
        rules = urllib.robotparser.RobotFileParser(f"{site}/robots.txt")
        try:
            body = self.fetcher.get_once(f"{site}/robots.txt", max_bytes=MAX_ROBOTS_BYTES)
        except DownloadError as exc:
            if exc.reason.startswith("http_4"):
                rules.parse([])  # no robots.txt: no rules
                return rules
            if exc.reason in UNREACHABLE:  # the image would fail the same way: say why
                return DownloadError(exc.reason, f"{site}/robots.txt: {exc}")
            return f"{site}/robots.txt gave {exc.reason} ({exc}): site disallowed"
        rules.parse(body.decode("utf-8", errors="replace").splitlines())
        return rules
