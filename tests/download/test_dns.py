"""DNS at crawl scale: one lookup per host per worker (a cache with a TTL), the network
guard still checking every address it connects to. Names under ``.test`` (RFC 2606,
never real) are answered by a counting resolver patched into ``socket.getaddrinfo``;
connections go to the fault server on 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from mmdata.demo.webserver import FaultServer
from mmdata.download.dns import Resolver
from mmdata.download.fetch import DownloadError, Fetcher, FetchOptions
from mmdata.download.guard import BlockedAddress, NetworkPolicy, guarded_connection
from mmdata.stages.download import Download
from tests.stages.helpers import work_batch

URLS = 1000
ALLOW_SERVER = NetworkPolicy.build(False, ["127.0.0.1/32"])


@pytest.fixture(scope="module")
def server():
    with FaultServer(slow_s=1.0) as srv:
        yield srv


class CountingResolver:
    """``names[host]``: the addresses a ``.test`` name resolves to (a missing ``.test``
    name does not exist); ``calls[host]``: how often getaddrinfo was asked for it."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.names: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, host, port, *args, **kwargs):  # noqa: ANN001, ANN204 - socket's
        with self._lock:
            self.calls[host] += 1
        if not (isinstance(host, str) and host.endswith(".test")):
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        time.sleep(self.delay_s)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port or 0))
            for a in self.names[host]
        ]


REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def dns(monkeypatch):
    resolver = CountingResolver()
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _crawl(server: FaultServer, hosts: list[str], dns_ttl_s: float) -> list[dict]:
    """1,000 URLs spread over ``hosts`` through one download stage (one worker)."""
    args = {"timeout_s": 5.0, "retries": 0, "allowed_networks": ["127.0.0.1/32"], "threads": 32}
    download = Download(**args, dns_ttl_s=dns_ttl_s)
    urls = [
        f"http://{hosts[i % len(hosts)]}:{server.server_port}/gen/{i % 8}.jpg?u={i}"
        for i in range(URLS)
    ]
    return download.process(work_batch(url=urls)).to_pylist()


def test_a_thousand_urls_are_one_lookup_per_host(server, dns):
    hosts = ["cdn.test", "img.test"]
    for host in hosts:
        dns.names[host] = ["127.0.0.1"]
    rows = _crawl(server, hosts, dns_ttl_s=300)
    assert [r["status"] for r in rows] == ["ok"] * URLS
    assert {h: dns.calls[h] for h in hosts} == {"cdn.test": 1, "img.test": 1}
    # the figure for the issue: per 1,000 URLs, lookups with the cache and without
    dns.calls.clear()
    rows = _crawl(server, hosts, dns_ttl_s=0)  # 0: resolve for every connection
    assert [r["status"] for r in rows] == ["ok"] * URLS
    # every image URL, plus each host's robots.txt
    assert sum(dns.calls[h] for h in hosts) == URLS + len(hosts)


def test_an_expired_answer_is_looked_up_again_and_a_private_one_refused(server, dns):
    clock = Clock()
    dns.names["rebind.test"] = ["127.0.0.1"]
    fetcher = Fetcher(
        FetchOptions(timeout_s=3.0, retries=0), ALLOW_SERVER, Resolver(300, clock=clock)
    )
    url = f"http://rebind.test:{server.server_port}/gen/1.jpg"
    assert fetcher.get(url)[:2] == b"\xff\xd8"
    dns.names["rebind.test"] = ["10.0.0.7"]  # the name's answer changes to a private one
    clock.now += 299  # within the TTL: the answer in the cache (checked again) is used
    assert fetcher.get(url)[:2] == b"\xff\xd8"
    assert dns.calls["rebind.test"] == 1
    clock.now += 2  # expired: a new lookup, whose address the guard refuses
    with pytest.raises(DownloadError) as refused:
        fetcher.get(url)
    assert refused.value.reason == "blocked_address" and "10.0.0.7 is private" in str(refused.value)
    assert dns.calls["rebind.test"] == 2


def test_a_cached_answer_goes_through_the_guard_every_time(server, dns):
    dns.names["loop.test"] = ["127.0.0.1"]
    resolver = Resolver(300)
    with guarded_connection("loop.test", server.server_port, 2.0, ALLOW_SERVER, None, resolver):
        pass
    # the same cached answer, under the default policy: refused without a new lookup
    with pytest.raises(BlockedAddress, match="127.0.0.1 is loopback"):
        guarded_connection("loop.test", server.server_port, 2.0, NetworkPolicy(), None, resolver)
    assert dns.calls["loop.test"] == 1 and resolver.lookups == 1


def test_a_dead_name_is_one_lookup_until_its_negative_entry_expires(dns):
    clock = Clock()
    fetcher = Fetcher(
        FetchOptions(timeout_s=1.0, retries=0), ALLOW_SERVER, Resolver(300, clock=clock)
    )
    urls = [f"http://dead.test/{i}.jpg" for i in range(URLS)]

    def reason(url: str) -> str:
        with pytest.raises(DownloadError) as failed:
            fetcher.get(url)
        return failed.value.reason

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(reason, urls)) == {"connection_error"}
    assert dns.calls["dead.test"] == 1
    clock.now += 31  # failures are kept min(ttl, 30 s)
    assert reason(urls[0]) == "connection_error"
    assert dns.calls["dead.test"] == 2


def test_threads_asking_at_once_share_one_lookup(monkeypatch):
    slow = CountingResolver(delay_s=0.2)
    slow.names["busy.test"] = ["192.0.2.1"]
    monkeypatch.setattr(socket, "getaddrinfo", slow)
    resolver = Resolver(300)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: resolver.getaddrinfo("busy.test", 443), range(64)))
    assert slow.calls["busy.test"] == 1
    assert {a[0][4] for a in answers} == {("192.0.2.1", 443)}


def test_answers_are_per_host_whatever_the_port_and_the_cache_is_bounded(dns):
    for name in ("a.test", "b.test", "c.test"):
        dns.names[name] = ["192.0.2.7"]
    resolver = Resolver(300, max_entries=2)
    assert resolver.getaddrinfo("a.test", 80)[0][4] == ("192.0.2.7", 80)
    assert resolver.getaddrinfo("A.test", 443)[0][4] == ("192.0.2.7", 443)
    assert dns.calls["a.test"] == 1
    resolver.getaddrinfo("b.test", 80)
    resolver.getaddrinfo("c.test", 80)  # a.test, the least recently used, is dropped
    resolver.getaddrinfo("a.test", 80)
    assert dns.calls["a.test"] == 2 and resolver.lookups == 4


def test_ttl_zero_asks_every_time(dns):
    dns.names["every.test"] = ["192.0.2.9"]
    resolver = Resolver(0)
    for _ in range(5):
        resolver.getaddrinfo("every.test", 80)
    assert dns.calls["every.test"] == 5
