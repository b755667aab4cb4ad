"""The network guard's address rules, and connections through it (loopback only)."""

from __future__ import annotations

import ipaddress

import pytest

from mmdata.demo.webserver import FaultServer
from mmdata.download.guard import (
    BlockedAddress,
    NetworkPolicy,
    address_problem,
    guarded_connection,
)

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "not a global address"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is the IPv4 address
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_global_addresses_are_refused(address, kind):
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and kind in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_unicast_addresses_pass(address):
    assert address_problem(ipaddress.ip_address(address)) is None


def test_policy_switches():
    assert NetworkPolicy().problem("127.0.0.1")
    assert NetworkPolicy(allow_private_networks=True).problem("127.0.0.1") is None
    one = NetworkPolicy.build(False, ["127.0.0.1/32"])
    assert one.problem("127.0.0.1") is None and one.problem("127.0.0.2")
    with pytest.raises(ValueError, match="allowed_networks"):
        NetworkPolicy.build(False, ["example.com"])


def test_connection_goes_only_to_a_checked_address():
    with FaultServer() as server:
        policy = NetworkPolicy.build(False, ["127.0.0.1/32"])
        # localhost may resolve to ::1 first: refused, so the socket must be 127.0.0.1's
        sock = guarded_connection("localhost", server.server_port, 2.0, policy)
        with sock:
            assert sock.getpeername()[0] == "127.0.0.1"
        with pytest.raises(BlockedAddress, match="127.0.0.2 is loopback"):
            guarded_connection("127.0.0.2", server.server_port, 2.0, policy)
        with pytest.raises(BlockedAddress):
            guarded_connection("localhost", server.server_port, 2.0, NetworkPolicy())
