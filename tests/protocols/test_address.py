"""protocols.address: the one HOST:PORT parser."""

from __future__ import annotations

import pytest

from protocols.address import parse_host_port


def test_host_port_forms() -> None:
    assert parse_host_port("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_host_port("broker.shop.ir:8883") == ("broker.shop.ir", 8883)
    assert parse_host_port("[::1]:1883") == ("::1", 1883)
    assert parse_host_port("[fe80::1]:65535") == ("fe80::1", 65535)
    assert parse_host_port("127.0.0.1:0", port_zero=True) == ("127.0.0.1", 0)


@pytest.mark.parametrize("bad", ["", "nohost", ":1883", "host:", "host:abc", "host:-1",
                                 "host:65536", "host:0", "host:۱۸۸۳", "::1:1883", "[::1]1883",
                                 "[nothost]:1883", "[::1]:", "a b:1883", "host:123456"])
def test_bad_values_are_named_in_the_error(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT") as info:
        parse_host_port(bad)
    assert repr(bad) in str(info.value)


def test_ipv6_without_brackets_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match=r"\[::1\]:1883"):
        parse_host_port("::1:1883")
