"""urllib, the HTTP client img2dataset uses, with every connection made through the guard.

img2dataset calls ``urllib.request.urlopen`` directly, which gives no hook to check the
address connected to or the target of a redirect. This builds the same client from
urllib's own handlers, swapping in connection classes that connect through
``guarded_connection`` and a redirect handler that refuses non-http(s) targets and
names redirect loops. Proxies from the environment are ignored: through a proxy the
guard would only ever see the proxy's address. Every connection of one opener resolves
names through its ``dns.Resolver`` (one lookup per host per TTL, addresses still checked
by the guard on every connection).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.request
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

from mmdata.download.dns import Resolver
from mmdata.download.guard import NetworkPolicy, guarded_connection

WEB_SCHEMES = ("http", "https")


class BlockedScheme(ValueError):
    """A URL or a redirect target that is not http(s) (reason ``blocked_scheme``)."""


class RedirectLoop(ValueError):
    """A redirect chain that repeats or is too long (reason ``redirect_loop``)."""


def check_scheme(url: str) -> None:
    """Raise BlockedScheme unless ``url`` is http(s)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in WEB_SCHEMES:
        raise BlockedScheme(f"scheme {scheme or '(none)'!r} of {url!r} is not http(s)")


class GuardedHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection whose socket comes from the network guard."""

    def __init__(
        self, *args: Any, policy: NetworkPolicy, resolver: Resolver | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy, self.resolver = policy, resolver

    def connect(self) -> None:
        self.sock = guarded_connection(
            self.host, self.port, self.timeout, self.policy, self.source_address, self.resolver
        )


class GuardedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection whose TCP socket comes from the guard, then TLS with SNI."""

    def __init__(
        self, *args: Any, policy: NetworkPolicy, resolver: Resolver | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy, self.resolver = policy, resolver

    def connect(self) -> None:
        sock = guarded_connection(
            self.host, self.port, self.timeout, self.policy, self.source_address, self.resolver
        )
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: NetworkPolicy, resolver: Resolver | None = None) -> None:
        super().__init__()
        self.policy, self.resolver = policy, resolver

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(GuardedHTTPConnection, policy=self.policy, resolver=self.resolver)
        return self.do_open(connection, req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(
        self, policy: NetworkPolicy, context: ssl.SSLContext, resolver: Resolver | None = None
    ) -> None:
        super().__init__(context=context)
        self.policy, self.resolver = policy, resolver

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(GuardedHTTPSConnection, policy=self.policy, resolver=self.resolver)
        return self.do_open(connection, req, context=self._context)


class GuardedRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib, refusing other schemes and naming loops."""

    max_redirections = 10

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 - urllib's
        location = headers.get("location") or headers.get("uri")
        if location:
            check_scheme(urljoin(req.full_url, location))
        visited = getattr(req, "redirect_dict", {})
        target = urljoin(req.full_url, location or "")
        if visited.get(target, 0) >= self.max_repeats or len(visited) >= self.max_redirections:
            raise RedirectLoop(f"{len(visited) + 1} redirects, last to {target}")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def build_opener(
    policy: NetworkPolicy, resolver: Resolver | None = None
) -> urllib.request.OpenerDirector:
    """An opener for http(s) only, with guarded connections and redirects, no proxies;
    names resolved through ``resolver`` (None: the system resolver, every time)."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        GuardedHTTPHandler(policy, resolver),
        GuardedHTTPSHandler(policy, ssl.create_default_context(), resolver),
        GuardedRedirectHandler(),
    )
