"""
WebSocket (RFC 6455) on autobahn, as an upgrade target.

    registry.register("websocket", WebSocketUpgrade(factory))

C{factory} is an ordinary autobahn L{WebSocketServerFactory} with its
protocol class and C{setProtocolOptions}; the protocols keep their
C{onConnect}, C{onOpen}, C{onMessage}, C{sendMessage}, C{sendClose},
pings, size limits and permessage-deflate.

The handshake is checked here, strictly, before anything is written
(RFC 6455 §4.2.1), from the request twisted.web already parsed: there is no
second HTTP parse. Then C{onConnect} chooses a subprotocol or denies, the
101 carries C{Sec-WebSocket-Accept}, and autobahn's protocol is put straight
into the OPEN state on the live transport, with every frame the client sent
behind its request.

One difference from autobahn's own server: C{onConnect} runs before the
protocol is connected, so it must not use C{self.transport} (its
C{request} argument and C{self.peer} are there).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit
from weakref import WeakKeyDictionary

import txaio
from autobahn.websocket import protocol as _protocolModule
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from autobahn.websocket.protocol import (
    WebSocketProtocol,
    _is_same_origin,
    _url_to_origin,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    ensureDeferred,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._interfaces import (
    Accept,
    Decision,
    Decline,
    IUpgradeTarget,
    Reject,
    UpgradeRequest,
)
from ._wshandshake import (
    HandshakeError,
    WebSocketHandshake,
    acceptKey,
    checkHandshake,
    permessageDeflateParams,
)

__all__ = ["WebSocketUpgrade"]

_log = Logger()

# Handshakes waiting on an asynchronous onConnect, by factory.
_pending: WeakKeyDictionary[Any, int] = WeakKeyDictionary()


def _reject(error: HandshakeError) -> Reject:
    return Reject(
        code=error.code,
        headers=[
            *error.headers,
            (b"Content-Type", b"text/plain; charset=utf-8"),
        ],
        body=error.reason.encode("utf-8") + b"\n",
    )


def _autobahnHeaders(headers: dict[bytes, list[bytes]]) -> dict[str, str]:
    """
    The request headers as autobahn's C{ConnectionRequest.headers}: lower-cased
    names, repeated fields joined with ", ".
    """
    return {
        name.decode("latin-1"): b", ".join(values).decode("latin-1")
        for name, values in headers.items()
    }


@implementer(IUpgradeTarget)
class WebSocketUpgrade:
    """
    Upgrade to WebSocket with autobahn protocols built by C{factory}.

    @param factory: an autobahn C{WebSocketServerFactory}.
    @param allowedOrigins: C{Origin} patterns to accept (C{*} matches
        anything, every other character is literal, e.g.
        C{"https://*.example.com:*"}; C{"null"} for the opaque origin of
        sandboxed frames and C{file:} pages); default: the factory's
        C{allowedOrigins} (autobahn's own patterns) and C{allowNullOrigin}.
        A request from another origin gets 403 (RFC 6455 §4.2.2 /origin/,
        §10.2).
    """

    def __init__(
        self, factory: Any, *, allowedOrigins: Sequence[str] | None = None
    ) -> None:
        self.factory = factory
        self._originPatterns: Any = (
            _wildcardPatterns([o for o in allowedOrigins if o != "null"])
            if allowedOrigins is not None
            else None
        )
        self._allowNull = allowedOrigins is not None and "null" in allowedOrigins

    def upgradeRequested(
        self, request: UpgradeRequest
    ) -> Decision | Deferred[Decision]:
        if request.method != b"GET":
            # RFC 9110 §7.8: a switch must honour the request's semantics;
            # HEAD and POST are answered as if nothing had been offered.
            return Decline()
        headers = {
            name.lower(): list(values)
            for name, values in request.headers.getAllRawHeaders()
        }
        try:
            handshake = checkHandshake(headers)
            self._checkOrigin(handshake, request)
            target = _splitTarget(request.uri)
        except HandshakeError as error:
            _log.info(
                "WebSocket handshake from {peer} refused: {code} {reason}",
                peer=request.peer,
                code=error.code,
                reason=error.reason,
            )
            return _reject(error)

        factory = self.factory
        if (
            0
            < factory.maxConnections
            <= factory.countConnections + _pending.get(factory, 0)
        ):
            return _reject(HandshakeError(503, "too many WebSocket connections"))

        protocol = factory.buildProtocol(request.peer)
        if protocol is None:
            return Decline()
        connectionRequest = self._connectionRequest(
            protocol, handshake, request, headers, target
        )
        try:
            chosen = protocol.onConnect(connectionRequest)
            if isinstance(chosen, Deferred) or inspect.isawaitable(chosen):
                return self._later(protocol, handshake, _asDeferred(chosen))
            return self._accept(protocol, handshake, chosen)
        except ConnectionDeny as deny:
            _abandon(protocol, f"onConnect denied the handshake ({deny.code})")
            return _deny(deny)
        except Exception:
            _abandon(protocol, "the opening handshake failed on the server")
            raise

    def _later(
        self, protocol: Any, handshake: WebSocketHandshake, chosen: Deferred[Any]
    ) -> Deferred[Decision]:
        """
        Wait for an asynchronous C{onConnect}, at most the factory's
        C{openHandshakeTimeout} (autobahn's own server drops the connection
        then; here the request is answered 503). Meanwhile this handshake
        holds a place under C{maxConnections}: autobahn counts a connection
        only once it is made.
        """
        factory = self.factory
        _pending[factory] = _pending.get(factory, 0) + 1

        def decided(result: Any) -> Any:
            _pending[factory] -= 1
            return result

        timeout = factory.openHandshakeTimeout
        if timeout:
            clock: Any = getattr(factory, "reactor", None)
            if clock is None:
                # Not at import: importing the plugin must not install one.
                from twisted.internet import reactor as clock
            chosen.addTimeout(timeout, clock)
        decision: Deferred[Decision] = chosen.addBoth(decided).addCallback(
            lambda result: self._accept(protocol, handshake, result)
        )
        return decision.addErrback(_notAccepted, protocol)

    def _checkOrigin(
        self, handshake: WebSocketHandshake, request: UpgradeRequest
    ) -> None:
        """
        RFC 6455 §4.2.2 /origin/: refuse a disallowed Origin with 403.
        """
        if handshake.origin is None:
            return
        try:
            origin = _url_to_origin(handshake.origin)
        except ValueError:
            raise HandshakeError(400, "Origin is not a valid origin") from None
        patterns = self._originPatterns
        if patterns is None:
            patterns = self.factory.allowedOriginsPatterns
            allowNull = bool(self.factory.allowNullOrigin)
        else:
            # An allow-list given here admits the opaque origin ("null":
            # sandboxed frames, file: pages) only when it names it.
            allowNull = self._allowNull
        if origin == "null":
            allowed = allowNull
        else:
            port = getattr(request.host, "port", None)
            scheme, host, originPort = origin
            allowed = _is_same_origin(
                origin, "https" if request.secure else "http", port, patterns
            ) or (
                # autobahn matches an IPv6 host without its brackets; the
                # origin as the browser sends it matches too.
                ":" in host
                and any(p.match(f"{scheme}://[{host}]:{originPort}") for p in patterns)
            )
        if not allowed:
            raise HandshakeError(403, f"origin {handshake.origin!r} not allowed")

    def _connectionRequest(
        self,
        protocol: Any,
        handshake: WebSocketHandshake,
        request: UpgradeRequest,
        headers: dict[bytes, list[bytes]],
        target: SplitResult,
    ) -> ConnectionRequest:
        """
        Set on C{protocol} what autobahn's own handshake would have, and make
        the C{ConnectionRequest} for C{onConnect}.
        """
        host = handshake.host
        if ":" in host and not host.endswith("]"):
            host = host.rsplit(":", 1)[0]
        protocol.http_headers = _autobahnHeaders(headers)
        protocol.peer = _peer(request.peer, protocol.http_headers, self.factory)
        protocol.http_request_uri = request.uri.decode("latin-1")
        protocol.http_request_path = target.path
        protocol.http_request_params = parse_qs(target.query) if target.query else {}
        protocol.http_request_host = host
        protocol.websocket_version = 13
        protocol.websocket_origin = handshake.origin or ""
        protocol.websocket_protocols = handshake.protocols
        protocol.websocket_extensions = [
            (offer.name, offer.params) for offer in handshake.extensions
        ]
        return ConnectionRequest(
            protocol.peer,
            protocol.http_headers,
            host,
            target.path,
            protocol.http_request_params,
            13,
            protocol.websocket_origin,
            handshake.protocols,
            protocol.websocket_extensions,
        )

    def _accept(
        self, protocol: Any, handshake: WebSocketHandshake, chosen: Any
    ) -> Decision:
        """
        Build the 101 for what C{onConnect} returned: a subprotocol or
        L{None}, or C{(subprotocol, headers)}.
        """
        subprotocol = chosen
        extraHeaders: dict[str, Any] = {}
        if isinstance(chosen, tuple):
            subprotocol = chosen[0] if chosen else None
            extraHeaders = chosen[1] if len(chosen) > 1 else {}
        if subprotocol is not None and subprotocol not in handshake.protocols:
            # RFC 6455 §4.2.2 /subprotocol/: one of the client's, or none.
            raise ValueError(
                f"onConnect chose {subprotocol!r}, not offered: {handshake.protocols}"
            )

        headers: list[tuple[bytes, bytes]] = []
        for source in (self.factory.headers, extraHeaders):
            for name, value in source.items():
                headers.extend(
                    (str(name).encode("utf-8"), str(v).encode("utf-8"))
                    for v in _headerValues(value)
                )
        if subprotocol is not None:
            headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")))
        headers.append((b"Sec-WebSocket-Accept", acceptKey(handshake.key)))

        compressor = self._negotiateDeflate(protocol, handshake)
        if compressor is not None:
            headers.append((b"Sec-WebSocket-Extensions", compressor[1].encode("ascii")))

        peer = protocol.peer

        def opened() -> None:
            # Twisted's adapter sets the peer from the transport as it
            # connects; the handshake's (X-Forwarded-For) is the one to keep.
            protocol.peer = peer
            _open(protocol, subprotocol, compressor[0] if compressor else None)

        _connectWithoutDebugFormatting(protocol)
        return Accept(protocol=protocol, headers=headers, afterConnect=opened)

    def _negotiateDeflate(
        self, protocol: Any, handshake: WebSocketHandshake
    ) -> tuple[Any, str] | None:
        """
        RFC 7692 §5, §7: decline invalid, unknown or unsupported offers; give
        the valid ones, in the client's order, to the factory's
        C{perMessageCompressionAccept}.
        """
        accept = getattr(protocol, "perMessageCompressionAccept", None)
        if accept is None:
            accept = self.factory.perMessageCompressionAccept
        offers = []
        pmce: Any = PERMESSAGE_COMPRESSION_EXTENSION.get("permessage-deflate")
        if pmce is None:
            return None
        for offer in handshake.extensions:
            if not permessageDeflateParams(offer):
                continue
            try:
                offers.append(pmce["Offer"].parse(offer.params))
            except Exception:
                continue
        if not offers:
            return None
        accepted = accept(offers)
        if accepted is None:
            return None
        extension: Any = PERMESSAGE_COMPRESSION_EXTENSION[accepted.EXTENSION_NAME]
        compressor = extension["PMCE"].create_from_offer_accept(True, accepted)
        return compressor, accepted.get_extension_string()


def _wildcardPatterns(wildcards: Sequence[str]) -> list[re.Pattern[str]]:
    """
    Origin patterns in autobahn's wildcard syntax (C{*} matches anything),
    with every other character literal: autobahn's own conversion escapes
    only dots, so C{http://[::1]:8080} never matches and C{[} cannot be
    compiled.
    """
    return [
        re.compile("^" + ".*".join(map(re.escape, wildcard.split("*"))) + "$")
        for wildcard in wildcards
    ]


def _splitTarget(uri: bytes) -> SplitResult:
    """
    The request-target split as autobahn's handshake does.

    @raise HandshakeError: 400 for a target C{urlsplit} refuses.
    """
    try:
        return urlsplit(uri.decode("latin-1"))
    except ValueError:
        raise HandshakeError(400, "the request-target is not a valid URI") from None


def _peer(address: object, headers: dict[str, str], factory: Any) -> str:
    """
    The peer as autobahn names it (C{tcp4:HOST:PORT}, C{tcp6:...},
    C{unix:PATH}), or with C{trustXForwardedFor} the address that many
    proxies back in C{X-Forwarded-For}, as in autobahn's own handshake.
    """
    trusted = factory.trustXForwardedFor
    forwarded = headers.get("x-forwarded-for")
    if trusted and forwarded is not None:
        return [a.strip() for a in forwarded.split(",")][-trusted:][0]
    if isinstance(address, IPv4Address):
        return f"tcp4:{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"tcp6:{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return f"unix:{os.fsdecode(address.name)}" if address.name else "unix"
    return str(address)


def _headerValues(value: Any) -> list[Any]:
    """
    The values of one extra 101 header as autobahn takes them: a string, an
    iterable of values, or any other single value.
    """
    if isinstance(value, str | bytes):
        return [value.decode("utf-8") if isinstance(value, bytes) else value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _asDeferred(result: Any) -> Deferred[Any]:
    """
    A Deferred for what an asynchronous C{onConnect} returned: a Deferred,
    a coroutine, or any other awaitable.
    """
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return ensureDeferred(result)

    async def awaiting() -> Any:
        return await result

    return ensureDeferred(awaiting())


def _abandon(protocol: Any, reason: str) -> None:
    """
    C{onConnect} ran, but the protocol will never be connected: close it as
    autobahn's own server closes one whose opening handshake failed, with
    C{is_closed} resolved and C{onClose(False, 1006, ...)}, so that what
    C{onConnect} set up can be released.
    """
    if getattr(protocol, "state", None) == WebSocketProtocol.STATE_CLOSED:
        return
    protocol.state = WebSocketProtocol.STATE_CLOSED
    protocol.wasClean = False
    protocol.wasNotCleanReason = reason
    txaio.resolve(protocol.is_closed, protocol)  # type: ignore[attr-defined]
    try:
        protocol._onClose(
            False,
            WebSocketProtocol.CLOSE_STATUS_CODE_ABNORMAL_CLOSE,
            f'connection was closed uncleanly ("{reason}")',
        )
    except Exception:
        _log.failure("onClose failed for {protocol}", protocol=protocol)


def _deny(deny: ConnectionDeny) -> Reject:
    return Reject(
        code=deny.code,
        headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
        body=(deny.reason or "").encode("utf-8") + b"\n",
    )


def _notAccepted(failure: Failure, protocol: Any) -> Any:
    """
    An asynchronous C{onConnect} that did not accept: denied (its status),
    too slow (503), cancelled because the client left, or failed (a server
    error). The protocol is closed in each case.
    """
    if failure.check(ConnectionDeny):
        deny: Any = failure.value
        _abandon(protocol, f"onConnect denied the handshake ({deny.code})")
        return _deny(deny)
    if failure.check(TimeoutError):
        _abandon(protocol, "opening handshake timeout")
        _log.info("WebSocket onConnect of {protocol} timed out", protocol=protocol)
        return _reject(HandshakeError(503, "the WebSocket handshake timed out"))
    if failure.check(CancelledError):
        _abandon(protocol, "peer dropped the TCP connection during the handshake")
    else:
        _abandon(protocol, "the opening handshake failed on the server")
    return failure


def _unformatted(value: object) -> object:
    return value


def _connectWithoutDebugFormatting(protocol: Any) -> None:
    """
    autobahn's C{_connectionMade} pretty-prints the protocol's whole
    configuration (C{pprint.pformat}) for a debug message on every
    connection, whether or not debug messages are wanted: about a fifth of
    a handshake's cost here. Unless the protocol's logger is at debug level,
    make that argument free while it connects (the reactor is single
    threaded, and the module's C{pformat} is put back at once).
    """
    if getattr(protocol.log, "_log_level", "debug") in ("debug", "trace"):
        return
    connectionMade = type(protocol).connectionMade
    module: Any = _protocolModule

    def quietly() -> None:
        formatting = module.pformat
        module.pformat = _unformatted
        try:
            connectionMade(protocol)
        finally:
            module.pformat = formatting

    protocol.connectionMade = quietly


def _open(protocol: Any, subprotocol: str | None, compressor: Any) -> None:
    """
    What autobahn's C{succeedHandshake} does once its 101 is written: the
    protocol is OPEN, with its subprotocol and extension, its handshake
    timeout cancelled and auto-ping started; then C{onOpen}.
    """
    protocol.websocket_protocol_in_use = subprotocol
    protocol._perMessageCompress = compressor
    protocol.websocket_extensions_in_use = [compressor] if compressor else []
    protocol.state = WebSocketProtocol.STATE_OPEN
    timeout = protocol.openHandshakeTimeoutCall
    if timeout is not None:
        timeout.cancel()
        protocol.openHandshakeTimeoutCall = None
    protocol.inside_message = False
    protocol.current_frame = None
    if protocol.autoPingInterval:
        protocol.autoPingPendingCall = protocol.factory._batched_timer.call_later(
            protocol.autoPingInterval, protocol._sendAutoPing
        )
    if protocol.trackedTimings:
        protocol.trackedTimings.track("onOpen")
    protocol._onOpen()
    txaio.resolve(protocol.is_open, None)  # type: ignore[attr-defined]
