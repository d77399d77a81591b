"""URL ingestion's address check and message sanitising (no network)."""

import pytest

from shared.retrieval.download import DownloadError, check_url, is_public, printable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.2", "::1",                     # loopback
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "fd00::1",  # private
    "169.254.169.254", "fe80::1", "fe80::1%eth0",        # link-local (cloud metadata)
    "224.0.0.1", "ff02::1",                              # multicast
    "240.0.0.1", "0.0.0.0", "::",                        # reserved, unspecified
    "100.64.0.1",                                        # shared address space (CGNAT)
    "::ffff:127.0.0.1", "::ffff:169.254.169.254",        # IPv4-mapped IPv6
    "2002:7f00:1::1", "64:ff9b::a00:1",                  # 6to4 and NAT64 of private IPv4
])
def test_non_public_addresses_are_refused(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert is_public(address)


def test_printable_escapes_control_and_direction_characters():
    shown = printable("Not\x1b[31mFound\x07\r\n\u202eevil")
    assert shown == "Not\\x1b[31mFound\\x07\\r\\n\\u202eevil"
    assert shown.isprintable()
    assert printable("x" * 500, limit=10) == "x" * 10 + "..."


def test_check_url_messages_are_printable():
    with pytest.raises(DownloadError) as info:
        check_url("gopher\x1b://x")
    assert "\x1b" not in str(info.value)
