"""
The contracts between the upgrade machinery and the targets it switches to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.web.http_headers import Headers
from zope.interface import Interface

from ._tokens import ProtocolToken, isToken

__all__ = [
    "Accept",
    "AcceptTLS",
    "Decision",
    "Decline",
    "IUpgradeAware",
    "IUpgradeTarget",
    "Reject",
    "UpgradeRequest",
]


@dataclass(frozen=True, kw_only=True)
class UpgradeRequest:
    """
    A snapshot of the HTTP/1.1 request that asked for an upgrade.

    After a 101 the new protocol owes this request an answer in its own
    framing (RFC 9110 §7.8: the server "will respond to the original request
    using the new protocol"); this is everything it needs to do so, with no
    reference to twisted.web's L{Request} or channel.

    @ivar method: the request method, e.g. C{b"GET"}.
    @ivar uri: the request-target as sent, e.g. C{b"/chat?room=1"}.
    @ivar version: the request's HTTP version, e.g. C{b"HTTP/1.1"}.
    @ivar headers: a copy of the request's header fields.
    @ivar body: the complete request body (read before the switch).
    @ivar protocol: the protocol chosen from the client's C{Upgrade} offer,
        spelled as the client sent it.
    @ivar peer: the client's address.
    @ivar host: the server's address on this connection.
    @ivar secure: whether the connection is already TLS.
    """

    method: bytes
    uri: bytes
    version: bytes
    headers: Headers
    body: bytes
    protocol: ProtocolToken
    peer: IAddress | None
    host: IAddress | None
    secure: bool

    def header(self, name: bytes) -> list[bytes]:
        """
        All values of header C{name} (case-insensitive), in order; empty if
        absent.
        """
        return list(self.headers.getRawHeaders(name, []))


def _checkFields(headers: Sequence[tuple[bytes, bytes]], upgrade: bytes | None) -> None:
    """
    The 101 is written raw, so what goes in it must be valid fields: names
    are tokens, values have no CR, LF or NUL (RFC 9110 §5.1, §5.5). A value
    taken from a request could otherwise add fields or end the head.

    @raise ValueError: for the first field that is not.
    """
    for name, value in headers:
        if not isToken(name) or not _isFieldValue(value):
            raise ValueError(f"not a valid field for a 101: {name!r}: {value!r}")
    if upgrade is not None and not _isFieldValue(upgrade):
        raise ValueError(f"not a valid Upgrade value for a 101: {upgrade!r}")


def _isFieldValue(value: bytes) -> bool:
    return b"\r" not in value and b"\n" not in value and b"\0" not in value


@dataclass(frozen=True, kw_only=True)
class Accept:
    """
    Switch to C{protocol}.

    @ivar protocol: the new protocol; it is connected to the transport right
        after the 101 is written and receives every byte the client sent
        after the request.
    @ivar headers: extra header fields for the 101 response: token names,
        values without CR, LF or NUL (L{ValueError} otherwise).
    @ivar upgrade: the value of the 101's C{Upgrade} field when it must differ
        from the chosen protocol (several layers, listed bottom-up; RFC 9110
        §7.8).
    @ivar afterConnect: called right after C{protocol.makeConnection} and
        before it receives any byte, for targets that finish setting up a
        protocol on its transport.
    """

    protocol: IProtocol
    headers: Sequence[tuple[bytes, bytes]] = ()
    upgrade: bytes | None = None
    afterConnect: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        # Kept as a tuple: an iterator would be spent by the check.
        object.__setattr__(self, "headers", tuple(self.headers))
        _checkFields(self.headers, self.upgrade)


@dataclass(frozen=True, kw_only=True)
class AcceptTLS:
    """
    Start TLS under the same HTTP/1.1 connection (RFC 2817 §3.3): after the
    101 the server starts TLS, and the request is then answered normally,
    inside TLS, as are the requests after it.

    @ivar contextFactory: the server's TLS context factory.
    @ivar upgrade: the 101's C{Upgrade} value, layers bottom-up
        (RFC 9110 §7.8), e.g. C{b"TLS/1.2, HTTP/1.1"}.
    @ivar headers: extra header fields for the 101 response: token names,
        values without CR, LF or NUL (L{ValueError} otherwise).
    @ivar handshakeTimeout: seconds the client has, from the 101, to
        complete the TLS handshake before the connection is aborted; L{None}
        for no limit (L{ValueError} unless above 0). The answer is already
        waiting inside TLS, and TLS closes gracefully only after a
        handshake: without this, a client that never sends its ClientHello
        outlasts the site's idle timeout by the channel's C{abortTimeout},
        and a L{twisted.protocols.policies.TimeoutFactory} for good.
    """

    contextFactory: object
    upgrade: bytes
    headers: Sequence[tuple[bytes, bytes]] = ()
    handshakeTimeout: float | None = 30.0

    def __post_init__(self) -> None:
        # Kept as a tuple: an iterator would be spent by the check.
        object.__setattr__(self, "headers", tuple(self.headers))
        _checkFields(self.headers, self.upgrade)
        checkHandshakeTimeout(self.handshakeTimeout)


def checkHandshakeTimeout(seconds: float | None) -> None:
    """
    @raise ValueError: unless C{seconds} is L{None} or a finite number of
        seconds above 0 (a handshake cannot complete in the 101's own
        reactor turn).
    """
    if seconds is None:
        return
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds < math.inf
    ):
        raise ValueError(f"handshakeTimeout must be None or above 0: {seconds!r}")


@dataclass(frozen=True, kw_only=True)
class Decline:
    """
    Do not switch to this protocol; the next protocol the client offered is
    tried, and without one the request is answered normally.
    """


@dataclass(frozen=True, kw_only=True)
class Reject:
    """
    Refuse the upgrade with a final HTTP/1.1 response, e.g. 403 for a
    disallowed origin. The connection stays HTTP/1.1.
    """

    code: int
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""


Decision = Accept | AcceptTLS | Decline | Reject


class IUpgradeTarget(Interface):
    """
    A protocol that a request may be upgraded to, with a say in each request.

    Any L{twisted.internet.interfaces.IProtocolFactory} can be registered as
    well; it is adapted to a target that accepts every offer.
    """

    def upgradeRequested(
        request: UpgradeRequest,
    ) -> Decision | Deferred[Decision]:
        """
        Decide on one offered upgrade.

        Return L{Accept} (with the protocol to switch to), L{AcceptTLS},
        L{Decline} or L{Reject}, or a L{Deferred} firing with one of them
        (cancelled if the client disconnects first). An exception is a
        server error: the request is answered with 500 and the connection
        keeps serving.
        """


class IUpgradeAware(Interface):
    """
    Optionally provided by a protocol that is switched to, to learn which
    request it was switched for.
    """

    def upgradeAccepted(request: UpgradeRequest) -> None:
        """
        Called once, after the 101 is written and before C{makeConnection},
        so that C{connectionMade} can already answer C{request} in the new
        protocol.
        """
