"""
The server side of the WebSocket opening handshake as pure functions: check
a request (RFC 6455 §4.2.1), compute the accept key (§4.2.2), read the
extension offers (§9.1) and sort permessage-deflate offers into acceptable
and declined ones (RFC 7692 §5, §7).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._tokens import isToken, listMembers

__all__ = [
    "ExtensionOffer",
    "HandshakeError",
    "WebSocketHandshake",
    "acceptKey",
    "checkHandshake",
    "parseExtensions",
    "permessageDeflateParams",
]

SUPPORTED_VERSION = b"13"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 7692 §7.1: the parameters a permessage-deflate offer may carry.
_WINDOW_BITS = re.compile(r"(?:8|9|1[0-5])\Z")
_DEFLATE_FLAGS = {"server_no_context_takeover", "client_no_context_takeover"}


@dataclass(frozen=True)
class HandshakeError(Exception):
    """
    The handshake cannot go on; answer with C{code} (RFC 6455 §4.2.1:
    "an appropriate error code (such as 400 Bad Request)").
    """

    code: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExtensionOffer:
    """
    One element of C{Sec-WebSocket-Extensions}, in autobahn's shape:
    parameter name -> list of values (C{True} for a parameter without one).
    """

    name: str
    params: dict[str, list[str | bool]]


@dataclass(frozen=True, kw_only=True)
class WebSocketHandshake:
    """
    A valid opening handshake request.
    """

    key: bytes
    host: str
    origin: str | None
    protocols: list[str]
    extensions: list[ExtensionOffer]


def acceptKey(key: bytes) -> bytes:
    """
    C{Sec-WebSocket-Accept} for C{key} (RFC 6455 §4.2.2 step 5.4).
    """
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _one(headers: dict[bytes, list[bytes]], name: bytes, label: str) -> bytes:
    values = headers.get(name, [])
    if len(values) != 1:
        raise HandshakeError(
            400,
            f"{label} must appear exactly once" if values else f"{label} is missing",
        )
    return values[0].strip(b" \t")


def checkHandshake(headers: dict[bytes, list[bytes]]) -> WebSocketHandshake:
    """
    Check a WebSocket opening handshake (RFC 6455 §4.2.1).

    The method (GET), the HTTP version, C{Connection: upgrade} and
    C{Upgrade: websocket} have already been checked by the negotiation and
    the target (RFC 9110 §7.8).

    @param headers: lower-cased header names to all their values.
    @raise HandshakeError: with the status to answer.
    """
    host = _one(headers, b"host", "Host")
    if not host:
        raise HandshakeError(400, "Host is empty")
    key = _one(headers, b"sec-websocket-key", "Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    version = _one(headers, b"sec-websocket-version", "Sec-WebSocket-Version")
    if version != SUPPORTED_VERSION:
        # RFC 6455 §4.2.2 /version/, §4.4: list the versions we speak.
        raise HandshakeError(
            426,
            "unsupported WebSocket version",
            (
                (b"Sec-WebSocket-Version", SUPPORTED_VERSION),
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
            ),
        )
    origins = headers.get(b"origin", [])
    if len(origins) > 1:
        raise HandshakeError(400, "Origin must appear at most once")
    offered = listMembers(headers.get(b"sec-websocket-protocol", []))
    if len(set(offered)) != len(offered) or not all(isToken(p) for p in offered):
        raise HandshakeError(400, "Sec-WebSocket-Protocol must list distinct tokens")
    protocols = [p.decode("ascii") for p in offered]
    return WebSocketHandshake(
        key=key,
        host=host.decode("latin-1"),
        origin=origins[0].strip(b" \t").decode("latin-1") if origins else None,
        protocols=protocols,
        extensions=parseExtensions(headers.get(b"sec-websocket-extensions", [])),
    )


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\Z')


def _splitOutsideQuotes(text: str, separator: str) -> list[str]:
    parts = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parseExtensions(lines: Sequence[bytes]) -> list[ExtensionOffer]:
    """
    Parse C{Sec-WebSocket-Extensions} (RFC 6455 §9.1) across all lines.
    Malformed elements are dropped: an extension offer the server cannot
    read is one it does not accept.
    """
    offers = []
    text = ",".join(line.decode("latin-1") for line in lines)
    for element in _splitOutsideQuotes(text, ","):
        name, *rawParams = (
            part.strip(" \t") for part in _splitOutsideQuotes(element, ";")
        )
        if not name:
            continue
        if not isToken(name.encode("latin-1")):
            continue
        params: dict[str, list[str | bool]] = {}
        for raw in rawParams:
            key, equals, value = (p.strip(" \t") for p in raw.partition("="))
            if not isToken(key.encode("latin-1")):
                break
            if not equals:
                params.setdefault(key, []).append(True)
                continue
            quoted = _QUOTED.match(value)
            if quoted:
                value = re.sub(r"\\(.)", r"\1", quoted.group(1))
            if not isToken(value.encode("latin-1")):
                break
            params.setdefault(key, []).append(value)
        else:
            offers.append(ExtensionOffer(name=name.lower(), params=params))
    return offers


def permessageDeflateParams(offer: ExtensionOffer) -> bool:
    """
    Is C{offer} a permessage-deflate offer this server can accept?

    RFC 7692 §7: an offer with an unknown or repeated parameter or an
    invalid value is declined. C{server_max_window_bits=8} is declined too:
    zlib cannot make a raw deflater with an 8-bit window (madler/zlib#171).
    """
    if offer.name != "permessage-deflate":
        return False
    for name, values in offer.params.items():
        if len(values) != 1:
            return False
        [value] = values
        if name in _DEFLATE_FLAGS:
            if value is not True:
                return False
        elif name == "server_max_window_bits":
            if not isinstance(value, str) or value == "8":
                return False
            if not _WINDOW_BITS.match(value):
                return False
        elif name == "client_max_window_bits":
            if isinstance(value, str) and not _WINDOW_BITS.match(value):
                return False
        else:
            return False
    return True
