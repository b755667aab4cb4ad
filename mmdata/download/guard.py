"""The network guard: downloads reach only global unicast addresses unless told otherwise.

A URL list scraped from the web can name ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:6379/`` or a host whose DNS answers with a private address. Checking
the host name is not enough (DNS can say anything, and say it differently the second
time), so the guard resolves the name itself, checks every address, connects only to an
address it checked, and checks the peer address of the connected socket once more.
Redirects open a new connection, so they pass through the same check. Names may be
resolved through a ``dns.Resolver`` (one lookup per host per TTL): the cache holds
answers, never verdicts, so every address of a cached answer is checked here each time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from mmdata.download.dns import Resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddress(OSError):
    """The host resolves only to addresses the policy refuses (reason ``blocked_address``)."""


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is one."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        return address_problem(mapped)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is {kind.replace('_', '-')}"
    if not address.is_global:  # 100.64/10 (carrier NAT), 192.0.0/24, ...
        return f"{address} is not a global address"
    return None


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses downloads may connect to.

    Attributes:
        allow_private_networks: lift the guard entirely (local test servers, intranets).
        allowed_networks: networks allowed even though they are not global, e.g.
            ``127.0.0.1/32`` for one local server while the rest of loopback stays refused.
    """

    allow_private_networks: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(cls, allow_private_networks: bool, allowed_networks: Iterable[str]) -> NetworkPolicy:
        """A policy from recipe arguments; a bad network raises ValueError naming it."""
        networks = []
        for text in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ValueError(f"allowed_networks: {text!r} is not a network: {exc}") from exc
        return cls(allow_private_networks, tuple(networks))

    def problem(self, address: str) -> str | None:
        """Why connecting to ``address`` is refused, or None when it is allowed."""
        if self.allow_private_networks:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if any(ip in network for network in self.allowed_networks):
            return None
        return address_problem(ip)


def guarded_connection(
    host: str,
    port: int,
    timeout: float | None,
    policy: NetworkPolicy,
    source_address: tuple[str, int] | None = None,
    resolver: Resolver | None = None,
) -> socket.socket:
    """A TCP connection to ``host:port`` through an address the policy allows.

    ``resolver`` answers the name (from its cache while fresh); without one the system
    resolver is asked. Either way every address is checked before connecting.

    Raises:
        BlockedAddress: every address of ``host`` is refused, or the connected peer is.
        OSError: resolution or connection failed for every allowed address.
    """
    if resolver is None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:
        infos = resolver.getaddrinfo(host, port, socket.SOCK_STREAM)
    refused, last_error = [], None
    for family, kind, proto, _, sockaddr in infos:
        problem = policy.problem(sockaddr[0])
        if problem:
            refused.append(problem)
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        _check_peer(sock, policy, host)
        return sock
    if last_error is not None:
        raise last_error
    raise BlockedAddress(f"{host}: {'; '.join(dict.fromkeys(refused))}")


def _check_peer(sock: socket.socket, policy: NetworkPolicy, host: str) -> None:
    """Check the address actually connected to (defence in depth, should never fire)."""
    peer = sock.getpeername()[0]
    problem = policy.problem(peer)
    if problem:
        sock.close()
        raise BlockedAddress(f"{host}: connected to {problem}")
