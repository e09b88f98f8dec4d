"""
h2c: HTTP/2 over cleartext by upgrade (RFC 7540 §3.2), onto Twisted's own
HTTP/2 implementation.

RFC 9113 §3.1 deprecates the h2c upgrade; keep it off unless asked for.

B{Request smuggling}: a reverse proxy that forwards C{Upgrade: h2c} (and
then relays the connection as an opaque tunnel) lets a client speak HTTP/2
directly to this server, past the proxy's access rules. Enable h2c only
where no such proxy stands in front, or make the proxy strip C{Upgrade:
h2c} and C{HTTP2-Settings}. h2c is never accepted over TLS (RFC 7540 §3.3).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from zope.interface import implementer

from ._interfaces import Accept, Decision, Decline, IUpgradeTarget, UpgradeRequest
from ._switch import h2cConnection
from ._tokens import connectionOptions

__all__ = ["H2CUpgrade", "parseHTTP2Settings"]

# RFC 4648 §5 alphabet, no padding (RFC 7540 §3.2.1: token68 "with any
# trailing '=' characters omitted").
_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*\Z")

_ENABLE_PUSH = 0x2
_INITIAL_WINDOW_SIZE = 0x4
_MAX_FRAME_SIZE = 0x5
_ENABLE_CONNECT_PROTOCOL = 0x8


def parseHTTP2Settings(value: bytes) -> dict[int, int] | None:
    """
    Decode an C{HTTP2-Settings} value strictly, or return L{None} if it is
    not a valid SETTINGS payload (RFC 7540 §3.2.1, §6.5.1, §6.5.2): only the
    base64url alphabet without padding, a payload of 6-byte entries, and
    values within their ranges. Unknown settings are ignored, as §6.5.2 says.
    """
    value = value.strip(b" \t")
    if not _BASE64URL.match(value) or len(value) % 4 == 1:
        return None
    payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    if len(payload) % 6:
        return None
    settings = {}
    for offset in range(0, len(payload), 6):
        identifier, setting = struct.unpack_from("!HL", payload, offset)
        if identifier in (_ENABLE_PUSH, _ENABLE_CONNECT_PROTOCOL) and setting > 1:
            return None
        if identifier == _INITIAL_WINDOW_SIZE and setting > 2**31 - 1:
            return None
        if identifier == _MAX_FRAME_SIZE and not 2**14 <= setting <= 2**24 - 1:
            return None
        settings[identifier] = setting
    return settings


@implementer(IUpgradeTarget)
class H2CUpgrade:
    """
    Upgrade a cleartext HTTP/1.1 request to HTTP/2 (RFC 7540 §3.2), register
    under C{h2c}. The connection becomes Twisted's
    C{twisted.web._http2.H2Connection} serving C{site}; the request that
    asked becomes stream 1 and is answered by the same resource.

    Declined (the request is answered over HTTP/1.1) unless: the connection
    is cleartext, the request is HTTP/1.1, C{Connection} lists both
    C{upgrade} and C{HTTP2-Settings}, exactly one C{HTTP2-Settings} carries a
    valid SETTINGS payload, there is at most one C{Host}, and the body is at
    most C{maxBodySize} bytes.

    @param site: the L{twisted.web.server.Site} to serve over HTTP/2.
    @param maxBodySize: the largest request body to carry into stream 1.
    """

    def __init__(self, site: Any, *, maxBodySize: int = 64 * 1024) -> None:
        self.site = site
        self.maxBodySize = maxBodySize

    def upgradeRequested(self, request: UpgradeRequest) -> Decision:
        if request.secure or request.version != b"HTTP/1.1":
            return Decline()
        if b"http2-settings" not in connectionOptions(request.header(b"connection")):
            return Decline()
        values = request.header(b"http2-settings")
        if len(values) != 1 or len(request.header(b"host")) > 1:
            # Several Host lines (a 400 in RFC 9112 §3.2): twisted.web takes
            # the last, :authority would take the first; stay in HTTP/1.1.
            return Decline()
        settings = parseHTTP2Settings(values[0])
        if settings is None or len(request.body) > self.maxBodySize:
            return Decline()
        # h2 decodes the header itself, leniently and only when padded: give
        # it the validated payload, re-encoded with padding.
        payload = b"".join(struct.pack("!HL", k, v) for k, v in settings.items())
        return Accept(
            protocol=h2cConnection(
                self.site,
                settings=base64.urlsafe_b64encode(payload),
                request=request,
            )
        )
