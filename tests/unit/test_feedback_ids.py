"""The signed route in generated request ids: it names the Pod that answered, and nothing a
client changes in it verifies (feedback_ids.py)."""

import base64

import pytest
from modelroll_server.feedback_ids import MAC_BYTES, RequestIds, Route, RouteCodec, route_part

KEY = b"k" * 32


def flip(part: str, byte: int) -> str:
    """``part`` with one bit of its decoded bytes changed, re-encoded."""
    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[byte] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(("route", "length"), [(Route("10.244.3.17", 8080), 19), (Route("fd00:10:244::3a", 8080), 35)])
def test_a_route_round_trips_short_for_ipv4_and_ipv6(route, length):
    codec = RouteCodec(KEY)
    part = codec.encode(route)
    assert len(part) == length and "." not in part
    assert codec.decode(part) == route
    ids = RequestIds(3, part)
    first, second = ids.new(), ids.new()
    assert first != second and route_part(first) == part == route_part(second)
    assert codec.decode(route_part(first)) == route


def test_every_changed_bit_and_another_key_fail_to_verify():
    codec = RouteCodec(KEY)
    part = codec.encode(Route("10.244.3.17", 8080))
    raw_len = 4 + 2 + MAC_BYTES
    # the address (where a forward would go), the port and the MAC itself: any bit, anywhere
    for byte in range(raw_len):
        assert codec.decode(flip(part, byte)) is None, byte
    assert RouteCodec(b"x" * 32).decode(part) is None
    # an address of the attacker's choosing with the MAC of another: refused
    forged = base64.urlsafe_b64encode(bytes([127, 0, 0, 1]) + (9999).to_bytes(2, "big") + b"\0" * MAC_BYTES)
    assert codec.decode(forged.rstrip(b"=").decode()) is None


@pytest.mark.parametrize("text", ["", "abc", "a" * 18, "a" * 20, "a" * 19 + "=", "a+b/" * 4 + "abc", "é" * 19])
def test_text_that_is_no_route_is_refused_without_decoding(text):
    assert RouteCodec(KEY).decode(text) is None


def test_ids_without_a_route_name_no_pod():
    plain = RequestIds(0).new()
    assert route_part(plain) is None and plain.count("-") == 2
    assert route_part("a client's own id") is None


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RouteCodec(b"short")
