"""
WebSocket test fixtures: an autobahn echo protocol, frames, handshakes.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.types import ConnectionDeny

SAMPLE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


class EchoProtocol(WebSocketServerProtocol):
    """
    Echoes every message; its factory records what happened.
    """

    def onConnect(self, request: Any) -> Any:
        self.factory.events.append(("connect", request))
        choose = self.factory.choose
        return choose(request) if choose is not None else None

    def onOpen(self) -> None:
        self.factory.events.append(("open", self))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.events.append(("message", payload))
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.events.append(("close", wasClean))


def echoFactory(**options: Any) -> Any:
    """
    An autobahn factory of L{EchoProtocol}s that accepts permessage-deflate
    offers and keeps C{events}; C{choose} answers C{onConnect}.
    """
    factory: Any = WebSocketServerFactory()
    factory.protocol = EchoProtocol
    factory.events = []
    factory.choose = None

    def acceptDeflate(offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(offer)
        return None

    factory.setProtocolOptions(perMessageCompressionAccept=acceptDeflate, **options)
    return factory


def deny(code: int, reason: str) -> Any:
    def choose(request: Any) -> Any:
        raise ConnectionDeny(code, reason)

    return choose


def handshake(
    path: bytes = b"/ws",
    *,
    method: bytes = b"GET",
    version: bytes = b"HTTP/1.1",
    extra: list[tuple[bytes, bytes]] | None = None,
    drop: tuple[bytes, ...] = (),
    replace: dict[bytes, bytes] | None = None,
) -> bytes:
    """
    A valid client handshake (RFC 6455 §4.1), with fields dropped, replaced
    or added.
    """
    fields = [
        (b"Host", b"example.com"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", SAMPLE_KEY),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    replace = replace or {}
    fields = [
        (name, replace.get(name, value)) for name, value in fields if name not in drop
    ]
    fields.extend(extra or [])
    lines = [method + b" " + path + b" " + version]
    lines.extend(name + b": " + value for name, value in fields)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def clientFrame(payload: bytes, opcode: int = 1, *, fin: bool = True) -> bytes:
    """
    A masked client frame (RFC 6455 §5.2, §5.3).
    """
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def serverFrame(payload: bytes, opcode: int = 1) -> bytes:
    """
    An unmasked, unfragmented server frame.
    """
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, length])
    elif length < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", length)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", length)
    return head + payload
