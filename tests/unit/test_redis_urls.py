"""Redis URLs: passwords hidden in messages, IPv6 hosts in brackets."""

import pytest
import redis

from broker.connection import redact
from broker.embedded_redis import url_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("url, shown", [
    ("redis://user:hunter2@127.0.0.1:1/0", "redis://user:***@127.0.0.1:1/0"),
    ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://:a/b@c@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://me:x:y@[::1]:6380", "rediss://me:***@[::1]:6380"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_redact_hides_passwords_holding_at_or_slash(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("bind, host", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                        ("::1", "[::1]"), ("::", "[::1]"),
                                        ("fd00::2", "[fd00::2]")])
def test_url_for_brackets_ipv6_hosts(bind, host):
    url = url_for(bind, 6400, "s@cret")
    assert url == f"redis://:s%40cret@{host}:6400/0"
    kwargs = redis.connection.parse_url(url)
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == (host.strip("[]"), 6400, "s@cret")
