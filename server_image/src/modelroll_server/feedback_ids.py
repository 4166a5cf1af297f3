"""Request ids the server makes, and the signed route in them that names the Pod that answered
(pure: stdlib hmac, no I/O).

An id is ``<8 random hex>-<worker>-<counter in hex>``: a fresh random prefix per worker process,
so ids never repeat across workers, their replacements or Pods. A server that knows its own
address (the Pod IP and ``--port``) and the key every Pod of its ModelDeployment shares puts a
route in front: ``<route>.<8 hex>-<worker>-<counter>``, the route being base64url of the IP (4
or 16 bytes), the port (2) and a MAC of both (8): 19 characters for IPv4, 35 for IPv6.

The MAC is what keeps a client from aiming a server at an address of its choosing (a label's id
decides where the server sends it): only a Pod holding the key can name an address, and a route
that does not verify is never followed. It covers the address, not the counter: the address is
all a forwarded request's destination depends on, and it is fixed per process, so making an id
costs no MAC and stays one string concatenation.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import itertools
import re
import secrets
from typing import NamedTuple

MAC_BYTES = 8  # 2**64 guesses to forge one address, each a request to a server: out of reach
MIN_KEY_BYTES = 16
_DOMAIN = b"modelroll feedback route v1\0"  # the key signs nothing else with this prefix
_ROUTE = re.compile(r"[A-Za-z0-9_-]{19}|[A-Za-z0-9_-]{35}")  # base64url of 4+2+8 or 16+2+8 bytes
SEPARATOR = "."  # in no base64url route and in no id part after it


class Route(NamedTuple):
    host: str  # an IP address literal
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class RouteCodec:
    """Signs this Pod's route and verifies the routes in ids, with the ModelDeployment's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the feedback key must have at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def _mac(self, address: bytes) -> bytes:
        return hmac.digest(self._key, _DOMAIN + address, "sha256")[:MAC_BYTES]

    def encode(self, route: Route) -> str:
        """The route part of an id naming ``route`` (base64url, no padding)."""
        address = ipaddress.ip_address(route.host).packed + route.port.to_bytes(2, "big")
        return base64.urlsafe_b64encode(address + self._mac(address)).rstrip(b"=").decode()

    def decode(self, text: str) -> Route | None:
        """The address a route part names if its MAC verifies, else None (never followed)."""
        if not _ROUTE.fullmatch(text):
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        address, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(address)):
            return None
        port = int.from_bytes(address[-2:], "big")
        if port == 0:
            return None
        return Route(str(ipaddress.ip_address(address[:-2])), port)


def route_part(request_id: str) -> str | None:
    """The route part of an id (None: the id names no Pod; it is looked up here)."""
    route, sep, _ = request_id.partition(SEPARATOR)
    return route if sep else None


class RequestIds:
    """Ids for requests that came without one: unique across workers, their replacements and
    Pods, short, and led by ``route`` (this Pod's signed route) when there is one."""

    def __init__(self, worker: int, route: str | None = None) -> None:
        lead = f"{route}{SEPARATOR}" if route else ""
        self.prefix = f"{lead}{secrets.token_hex(4)}-{worker}-"
        self._next = itertools.count(1).__next__

    def new(self) -> str:
        return f"{self.prefix}{self._next():x}"
