"""URL tricks against the network guard, on loopback only: decimal, hex and octal IPv4
forms, short forms, upper case and IPv6 forms reach the local server when private
networks are allowed (so the form really names it) and are refused as
``blocked_address`` when they are not; userinfo and trailing-dot forms never reach it."""

from __future__ import annotations

import socket

import pytest

from mmdata.demo.webserver import FaultServer
from mmdata.download.fetch import DownloadError, Fetcher, FetchOptions
from mmdata.download.guard import NetworkPolicy

# host parts that all name 127.0.0.1 (or loopback in IPv6)
IPV4_FORMS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "localhost",
    "LOCALHOST",
]
IPV6_FORMS = ["[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]"]
# urllib passes userinfo on as part of the host name, and a trailing dot skips
# /etc/hosts: resolution fails, so these never connect anywhere, whatever the policy
UNRESOLVABLE_FORMS = ["user:secret@127.0.0.1", "example.com@127.0.0.1", "localhost."]


@pytest.fixture(scope="module")
def server():
    with FaultServer() as running:
        yield running


def _fetch(server: FaultServer, host: str, policy: NetworkPolicy) -> bytes:
    fetcher = Fetcher(FetchOptions(timeout_s=3.0, retries=0), policy)
    return fetcher.get(f"http://{host}:{server.server_port}/gen/1.jpg")


@pytest.mark.parametrize("host", IPV4_FORMS)
def test_each_form_reaches_loopback_only_when_private_networks_are_allowed(server, host):
    assert _fetch(server, host, NetworkPolicy(allow_private_networks=True))[:2] == b"\xff\xd8"
    with pytest.raises(DownloadError) as refused:
        _fetch(server, host, NetworkPolicy())
    assert refused.value.reason == "blocked_address", str(refused.value)


@pytest.mark.parametrize("host", IPV6_FORMS)
def test_ipv6_loopback_forms_are_refused_before_connecting(server, host):
    with pytest.raises(DownloadError) as refused:
        _fetch(server, host, NetworkPolicy())
    assert refused.value.reason == "blocked_address", str(refused.value)
    assert "loopback" in str(refused.value)


@pytest.mark.parametrize("host", UNRESOLVABLE_FORMS)
def test_userinfo_and_trailing_dot_forms_never_reach_the_server(server, host):
    for policy in (NetworkPolicy(allow_private_networks=True), NetworkPolicy()):
        with pytest.raises(DownloadError) as failed:
            _fetch(server, host, policy)
        assert failed.value.reason in {"blocked_address", "connection_error"}, str(failed.value)


def test_an_allowed_network_admits_exactly_its_addresses(server):
    policy = NetworkPolicy.build(False, ["127.0.0.1/32"])
    assert _fetch(server, "2130706433", policy)[:2] == b"\xff\xd8"  # decimal 127.0.0.1
    with pytest.raises(DownloadError) as refused:
        _fetch(server, "127.0.0.2", policy)
    assert refused.value.reason == "blocked_address"


@pytest.fixture
def resolver(monkeypatch):
    """A resolver for names under ``.test`` (RFC 2606, never real): ``names[name]`` is the
    list of addresses it answers with, as a hostile DNS server would; other names go to
    the system resolver."""
    names: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.rstrip(".") in names:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (a, port, 0, 0) if ":" in a else (a, port),
                )
                for a in names[host.rstrip(".")]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_a_dns_name_that_resolves_to_loopback_is_refused(server, resolver, address):
    resolver["images.evil.test"] = [address]
    if address == "127.0.0.1":  # the name really leads to the server when allowed
        allowed = NetworkPolicy(allow_private_networks=True)
        assert _fetch(server, "images.evil.test", allowed)[:2] == b"\xff\xd8"
    with pytest.raises(DownloadError) as refused:
        _fetch(server, "images.evil.test", NetworkPolicy())
    assert refused.value.reason == "blocked_address" and "loopback" in str(refused.value)


def test_a_name_with_a_loopback_and_a_private_address_is_refused_on_every_one(server, resolver):
    resolver["both.evil.test"] = ["10.0.0.7", "127.0.0.1", "169.254.169.254"]
    before = server.hits("/gen/1.jpg")
    with pytest.raises(DownloadError) as refused:
        _fetch(server, "both.evil.test", NetworkPolicy())
    assert refused.value.reason == "blocked_address"
    assert all(kind in str(refused.value) for kind in ("private", "loopback", "link-local"))
    assert server.hits("/gen/1.jpg") == before  # no request reached the server


def test_a_redirect_to_a_name_that_resolves_to_loopback_is_refused(server, resolver):
    # the first hop is an allowed address; the redirect names rebind.test, which the
    # resolver sends to 127.0.0.2, outside the allowed network: refused at that hop
    resolver["rebind.test"] = ["127.0.0.2"]
    policy = NetworkPolicy.build(False, ["127.0.0.1/32"])
    fetcher = Fetcher(FetchOptions(timeout_s=3.0, retries=0), policy)
    with pytest.raises(DownloadError) as refused:
        fetcher.get(f"http://127.0.0.1:{server.server_port}/redirect/named")
    assert refused.value.reason == "blocked_address" and "rebind.test" in str(refused.value)
    resolver["rebind.test"] = ["127.0.0.1"]  # the answer changes to an allowed address:
    # this worker keeps the refused answer for dns_ttl_s (checked, and refused, again) ...
    with pytest.raises(DownloadError, match="127.0.0.2 is loopback"):
        fetcher.get(f"http://127.0.0.1:{server.server_port}/redirect/named")
    # ... and a worker that resolves afresh fetches the same hop
    fetcher = Fetcher(FetchOptions(timeout_s=3.0, retries=0), policy)
    assert fetcher.get(f"http://127.0.0.1:{server.server_port}/redirect/named")[:2] == b"\xff\xd8"
