"""
The h2c upgrade cycle for benchmarks/site.py, as a L{rawload.Script}:

  1. connect; C{GET /plain HTTP/1.1} with C{Connection: Upgrade,
     HTTP2-Settings}, C{Upgrade: h2c} and C{HTTP2-Settings} (one setting,
     MAX_CONCURRENT_STREAMS = 100); read the head (C{HTTP/1.1 101},
     C{Upgrade: h2c});
  2. send the client connection preface and an empty SETTINGS frame; read
     HTTP/2 frames (they may have come with the 101): a SETTINGS ACK is sent
     for the server's SETTINGS; stream 1 must carry a HEADERS frame whose
     header block starts with HPACK's indexed C{:status: 200} (0x88) and
     DATA that ends the stream with exactly C{b"ok"}; a GOAWAY or
     RST_STREAM is an error; the cycle is complete with that last DATA
     frame, and the socket is closed.

Frames are parsed by hand, just enough to validate: the 9-byte frame header,
padding, and the first byte of the header block.
"""

from __future__ import annotations

import base64
import struct

from rawload import DONE, MORE, ReaderState, Script, Step

__all__ = ["BODY", "PREFACE", "h2cScript", "upgradeRequest"]

BODY = b"ok"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS_PAYLOAD = struct.pack("!HL", 0x3, 100)  # MAX_CONCURRENT_STREAMS
HTTP2_SETTINGS = base64.urlsafe_b64encode(_SETTINGS_PAYLOAD).rstrip(b"=")

_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_END_STREAM, _ACK, _PADDED, _PRIORITY = 0x1, 0x1, 0x8, 0x20
_SETTINGS_FRAME = struct.pack("!HBBBL", 0, 0, _SETTINGS, 0, 0)  # empty
_SETTINGS_ACK = struct.pack("!HBBBL", 0, 0, _SETTINGS, _ACK, 0)
_STATUS_200 = 0x88  # HPACK static table index 8, ":status: 200"
_HEADERS_OK = 0x1  # ReaderState.flags: stream 1's HEADERS were valid


def upgradeRequest(port: int, path: bytes = b"/plain") -> bytes:
    return (
        b"GET %s HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\n"
        b"HTTP2-Settings: %s\r\n"
        b"\r\n"
    ) % (path, port, HTTP2_SETTINGS)


def checkSwitch(head: bytes) -> str | None:
    if not head.startswith(b"HTTP/1.1 101 "):
        return f"not a 101: {head[:40]!r}"
    if b"\r\nupgrade: h2c\r\n" not in head.lower():
        return "no Upgrade: h2c"
    return None


def _afterHead(buffered: bytes, state: ReaderState) -> tuple[int | str, int, bytes]:
    """
    The 101 head is all of step 1: frames behind it are step 2's.
    """
    return DONE, 0, b""


def _unpadded(flags: int, payload: bytes) -> bytes | None:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        return None
    return payload[1 : len(payload) - payload[0]]


def readResponse(buffered: bytes, state: ReaderState) -> tuple[int | str, int, bytes]:
    """
    Consume the complete frames in C{buffered}; see the module docstring.
    """
    offset = 0
    reply = b""
    size = len(buffered)
    while size - offset >= 9:
        high, low, kind, flags, stream = struct.unpack_from("!HBBBL", buffered, offset)
        length = high << 8 | low
        end = offset + 9 + length
        if end > size:
            break
        payload = buffered[offset + 9 : end]
        offset = end
        stream &= 0x7FFFFFFF
        if kind == _SETTINGS:
            if not flags & _ACK:
                reply += _SETTINGS_ACK
        elif kind == _GOAWAY:
            code = struct.unpack_from("!L", payload, 4)[0] if length >= 8 else -1
            return f"GOAWAY, error code {code}", offset, reply
        elif stream != 1:
            continue
        elif kind == _HEADERS:
            block = _unpadded(flags, payload)
            if block is None:
                return "bad HEADERS padding", offset, reply
            if flags & _PRIORITY:
                block = block[5:]
            if not block or block[0] != _STATUS_200:
                return f"not a :status 200: {block[:8]!r}", offset, reply
            if flags & _END_STREAM:
                return "HEADERS ended the stream: no body", offset, reply
            state.flags |= _HEADERS_OK
        elif kind == _DATA:
            data = _unpadded(flags, payload)
            if data is None:
                return "bad DATA padding", offset, reply
            if not state.flags & _HEADERS_OK:
                return "DATA before HEADERS", offset, reply
            state.body += data
            if flags & _END_STREAM:
                if state.body != BODY:
                    return f"wrong body: {state.body[:40]!r}", offset, reply
                return DONE, offset, reply
        elif kind == _RST_STREAM:
            return "RST_STREAM on stream 1", offset, reply
    return MORE, offset, reply


def h2cScript(port: int) -> Script:
    return Script(
        [
            Step(upgradeRequest(port), head=checkSwitch, reader=_afterHead),
            Step(PREFACE + _SETTINGS_FRAME, reader=readResponse),
        ]
    )
