"""
The in-place switch from twisted.web's HTTP/1.1 channel to a new protocol.

This is the ONLY module that touches twisted.web internals. It relies on:

  - C{HTTPChannel._dataBuffer} (bytes received while a request is being
    handled) and C{LineReceiver._buffer} (the unparsed rest of the segment
    the request arrived in): together, every byte the client sent after the
    request;
  - C{HTTPChannel._networkProducer}, C{setTimeout},
    C{_abortingCall}: the channel's producer registration and timers (the
    idle timeout is off, C{timeOut} L{None}, while a request is handled);
  - C{_GenericHTTPChannelProtocol._channel}, documented there as replaceable
    "if a HTTP protocol upgrade takes place", the same route Twisted takes
    for ALPN h2; and the link to that wrapper, C{protocol} of a TCP
    transport or C{wrappedProtocol} of a protocol wrapper (TLS, HAProxy),
    which is pointed at the new protocol;
  - C{Request.startedWriting}, C{finished}, C{code}, C{code_message},
    C{content}, C{notifications} (the Deferreds of C{notifyFinish()}),
    C{_disconnected}, C{HTTPChannel.requests} and C{factory.log(request)},
    to finish a switched request as C{Request.finish()} would, without
    writing anything or serving the next request;
  - C{twisted.web.resource._IEncodingResource} and C{Request._encoder}: how
    C{Request.process} applies an L{EncodingResourceWrapper} (gzip) to the
    resource it traversed to, done again for a fallback rendered from
    inside an upgrade resource;
  - C{twisted.web.server.Request._handleStar}, where twisted.web answers
    C{OPTIONS *} without traversing resources, and
    C{HTTPChannel._respondToBadRequestAndDisconnect}, its 400 and close;
  - for h2c, C{twisted.web._http2.H2Connection}: its C{conn} (the h2 state
    machine), C{_requestReceived} and C{_requestEnded}, C{streams}, and
    C{H2Stream._request}, to make the upgraded request stream 1; and its
    sending loop (C{_sendPrioritisedData}, C{_outboundStreamQueues},
    C{_END_STREAM_SENTINEL}, C{priority}, C{_sendingDeferred},
    C{H2Stream.windowUpdated}), so that a stream with a shut flow-control
    window waits instead of spinning.

Supported Twisted: L{SUPPORTED_TWISTED}. C{tests/test_switch_internals.py}
pins each of these.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any

import h2.errors
import h2.events
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IHandshakeListener,
    IProtocol,
    ISSLTransport,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.protocol import BaseProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._http2 import _END_STREAM_SENTINEL, H2Connection
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol
from twisted.web.resource import _IEncodingResource
from twisted.web.server import Request as ServerRequest
from zope.interface import alsoProvides, noLongerProvides

from ._interfaces import IUpgradeAware, UpgradeRequest
from ._tokens import hasConnectionOption, listMembers

__all__ = [
    "SUPPORTED_TWISTED",
    "asteriskAware",
    "canStartTLS",
    "canSwitch",
    "h2cConnection",
    "isAnswered",
    "isSecure",
    "requestBody",
    "switchProtocol",
    "upgradeSiteChannelFactory",
    "useEncoding",
    "writeSwitchingProtocols",
]

SUPPORTED_TWISTED = ">=25.5.0,<27"

_log = Logger()

# How far to walk from a channel's transport to the protocol the transport
# delivers to: TCP -> [HAProxy wrapper ->] generic channel, or
# TLSMemoryBIOProtocol -> generic channel.
_MAX_WRAPPER_DEPTH = 8


def canSwitch(request: Request) -> bool:
    """
    Can C{request}'s connection be switched now?

    Only an HTTP/1.x channel (never an HTTP/2 stream, RFC 9113 §8.6) whose
    head-of-line request is C{request}, still connected, with nothing of the
    response written yet.
    """
    channel = getattr(request, "channel", None)
    if not isinstance(channel, HTTPChannel):
        return False
    transport = channel.transport
    return (
        transport is not None
        and not getattr(transport, "disconnecting", False)
        and not request._disconnected
        # twisted.web's retry of a HEAD as a GET is still a HEAD.
        and not getattr(request, "_inFakeHead", False)
        and not request.startedWriting
        and not request.finished
        # One switch per request: after an RFC 2817 TLS upgrade the request
        # is answered inside TLS, not switched again.
        and getattr(request, "upgradedTo", None) is None
        and len(channel.requests) == 1
        and channel.requests[0] is request
    )


def isAnswered(request: Request) -> bool:
    """
    Is C{request} finished, or its client gone? Then nothing more may be
    written for it.
    """
    return bool(request._disconnected or request.finished)


def useEncoding(request: Request, resource: Any) -> None:
    """
    Give C{request} the encoder of C{resource} (an L{EncodingResourceWrapper},
    gzip), as C{Request.process} does for the resource traversal ends at:
    a fallback rendered by an upgrade resource then answers encoded, exactly
    as it would have alone.
    """
    if getattr(request, "_encoder", False) is None and _IEncodingResource.providedBy(
        resource
    ):
        encoder = resource.getEncoder(request)
        if encoder is not None:
            request._encoder = encoder  # type: ignore[attr-defined]


def isSecure(request: Request) -> bool:
    """
    L{Request.isSecure}, without the adapter lookup it does on every call:
    the transport I{provides} L{ISSLTransport} once TLS is on (an C{ssl:}
    listener, or C{startTLS}).
    """
    if request._forceSSL:
        return True
    channel = request.channel
    return channel is not None and ISSLTransport.providedBy(channel.transport)


def canStartTLS(request: Request) -> bool:
    """
    Can C{request}'s connection start TLS in place? A cleartext transport
    that supports C{startTLS}, as well as L{canSwitch}.
    """
    if not canSwitch(request):
        return False
    transport = request.channel.transport
    return ITLSTransport.providedBy(transport) and not ISSLTransport.providedBy(
        transport
    )


def requestBody(request: Request, limit: int) -> bytes | None:
    """
    The whole body of C{request}, or L{None} if it is longer than C{limit}:
    twisted.web reads a body completely before rendering (into a temporary
    file past 100 kB), so nothing of it can be mistaken for new-protocol
    bytes (RFC 9112 §6.3, RFC 7540 §3.2), and it is measured before it is
    brought into memory.
    """
    content = request.content
    if content is None:
        return b""
    if type(content) is BytesIO:
        # Already in memory; getvalue() shares it rather than copying.
        body = content.getvalue()
        return None if len(body) > limit else body
    position = content.tell()
    size = content.seek(0, 2)
    if size > limit:
        content.seek(position)
        return None
    content.seek(0)
    body = content.read()
    content.seek(position)
    return bytes(body)


def writeSwitchingProtocols(
    transport: Any, upgrade: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    """
    Write a 101 head raw (RFC 9110 §15.2.2): through C{Request} it would get
    C{Content-Type} and C{Transfer-Encoding}, which a 1xx must not carry
    (RFC 9110 §8.6, RFC 9112 §6.1).
    """
    head = _HEADS.get(upgrade) if not headers else None
    if head is None:
        lines = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: " + upgrade,
            b"Connection: Upgrade",
        ]
        lines.extend(name + b": " + value for name, value in headers)
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        if not headers and len(upgrade) <= 64:
            # Upgrade values can carry the client's version (a token
            # registered without one): new values push the old ones out.
            if len(_HEADS) >= 32:
                _HEADS.clear()
            _HEADS[upgrade] = head
    transport.write(head)


# The usual 101s, by their Upgrade value (the registered tokens).
_HEADS: dict[bytes, bytes] = {}


def _handOver(channel: Any, protocol: IProtocol) -> None:
    """
    Make the transport deliver to C{protocol} instead of C{channel}.

    The transport (or the wrapper in front of it) then calls the protocol
    directly: one call less per read, and it sees whether the protocol
    provides L{IHalfCloseableProtocol}, which the generic wrapper hides. The
    wrapper forwards too, for anyone holding it. Through a transport we
    cannot see through, the channel forwards, as twisted.web.websocket does.
    """
    # Find the _GenericHTTPChannelProtocol that the transport delivers to and
    # that forwards to the channel, and the link to it: the object that calls
    # it and the attribute it is kept in (protocol of a TCP transport,
    # wrappedProtocol of TLS or another protocol wrapper). Each wrapper
    # delivers to one protocol, so this follows a chain. Only the objects'
    # own attributes count: Twisted's protocol wrappers answer any other
    # attribute from their transport.
    holder: Any = channel.transport
    for _ in range(_MAX_WRAPPER_DEPTH):
        attributes = getattr(holder, "__dict__", {})
        name = "wrappedProtocol" if "wrappedProtocol" in attributes else "protocol"
        delivered = attributes.get(name)
        if isinstance(delivered, _GenericHTTPChannelProtocol):
            wrapper: Any = delivered
            if wrapper._channel is channel:
                setattr(holder, name, protocol)
                wrapper._channel = protocol
                return
            break
        if delivered is None:
            break
        holder = delivered
    # Looked up on each call: the protocol may rebind it (see _HeldBytes).
    channel.dataReceived = lambda data: protocol.dataReceived(data)
    channel.connectionLost = protocol.connectionLost


def _takeUnparsedBytes(channel: HTTPChannel) -> bytes:
    """
    Remove and return every byte the channel has received but not parsed:
    those buffered while the request was handled, then the rest of the
    segment being parsed now (RFC 9110 §7.8: the bytes after the request are
    the new protocol's).
    """
    buffered = b"".join(channel._dataBuffer) + channel._buffer
    channel._dataBuffer = []
    channel._buffer = b""
    return buffered


def _finishRequest(request: Request, upgrade: bytes) -> None:
    """
    Finish C{request} as a 101 for twisted.web's bookkeeping, as
    C{Request.finish()} does but without writing anything (the 101 head went
    out raw) and without handing the channel the next request: one
    access-log line, the request marked finished and dropped by the channel,
    its body closed, C{notifyFinish()} fired.
    """
    request.upgradedTo = upgrade  # type: ignore[attr-defined]
    request.code = 101
    request.code_message = b"Switching Protocols"
    # Behind EncodingResourceWrapper the encoder and the request refer to
    # each other, and the encoder holds a live zlib stream: drop it, so the
    # request is freed at once (and a later finish() writes nothing).
    request._encoder = None  # type: ignore[attr-defined]
    channel: Any = request.channel
    cls = type(request)
    if cls.finish not in _STOCK_FINISH or cls._cleanup is not Request._cleanup:
        # A request factory that hooks finish() (metrics, tracing, its own
        # access log) gets it called. With startedWriting set and chunked
        # clear it writes nothing; the channel's requestDone() must then
        # neither re-arm the idle timeout nor close a "Connection: upgrade,
        # close" connection, which now belongs to the new protocol.
        channel._savedTimeOut = None
        channel.persistent = True
        request.startedWriting = True
        request.chunked = False
        request.finish()
        return
    factory = getattr(channel, "factory", None)
    if factory is not None:
        factory.log(request)
    request.finished = 1
    if request.producer is not None:
        # What Request._cleanup does (it also logs an error).
        request.unregisterProducer()
    channel.requests = []
    del request.channel
    content = request.content
    if content is not None:
        # As Request._cleanup: a temporary file may fail to close (win32).
        # Not contextlib.suppress: three Python calls on every switch.
        try:  # noqa: SIM105
            content.close()
        except OSError:
            pass
        del request.content
    for notification in request.notifications:
        notification.callback(None)
    request.notifications = []


_STOCK_FINISH = (ServerRequest.finish, Request.finish)


def _detach(channel: Any) -> None:
    """
    Take the channel off the transport: no timers, not the producer, and the
    transport reading again (twisted.web pauses it past 16 KiB of pipelined
    bytes).
    """
    if channel.timeOut is not None:
        # Already None while a request is handled (allContentReceived).
        channel.setTimeout(None)
    aborting = channel._abortingCall
    if aborting is not None and aborting.active():
        aborting.cancel()
    channel._abortingCall = None
    networkProducer = channel._networkProducer
    networkProducer.unregisterProducer()
    networkProducer.resumeProducing()


def switchProtocol(
    request: Request,
    protocol: IProtocol,
    *,
    upgrade: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    upgradeRequest: UpgradeRequest | None,
    afterConnect: Callable[[], object] | None = None,
) -> None:
    """
    Answer C{request} with a 101 and continue the connection in C{protocol}.

    The caller has checked L{canSwitch}. After this returns, nothing refers
    to the request or the HTTP channel: the transport delivers to
    C{protocol}, which has received every byte the client sent after the
    request, and will get C{connectionLost} exactly once.

    @param upgradeRequest: given to C{protocol} if it is L{IUpgradeAware};
        L{None} when it is not.
    """
    channel: Any = request.channel
    transport: Any = channel.transport
    unparsed = _takeUnparsedBytes(channel)

    writeSwitchingProtocols(transport, upgrade, headers)

    _finishRequest(request, upgrade)
    _detach(channel)

    _handOver(channel, protocol)

    held = None
    if unparsed and _mayPause(protocol, afterConnect, transport):
        held = _HeldBytes(transport, protocol, unparsed, upgrade)
        unparsed = b""
    try:
        if upgradeRequest is not None and IUpgradeAware.providedBy(protocol):
            protocol.upgradeAccepted(upgradeRequest)
        protocol.makeConnection(transport)
        if afterConnect is not None:
            afterConnect()
    except Exception:
        if held is not None:
            held.stopWatching()
        _failed(protocol, transport, upgrade)
        return
    if held is not None:
        held.connected()
    elif unparsed:
        _deliver(protocol, transport, unparsed, upgrade)


def _deliver(protocol: IProtocol, transport: Any, data: bytes, upgrade: bytes) -> None:
    """
    Give the new protocol the bytes the client sent behind the request.
    """
    if transport.disconnecting:
        return
    try:
        protocol.dataReceived(data)
    except Exception:
        _failed(protocol, transport, upgrade)


def _failed(protocol: IProtocol, transport: Any, upgrade: bytes) -> None:
    """
    The 101 is out: the connection is the new protocol's, and an error in it
    is handled as the reactor handles one in C{dataReceived}.
    """
    _log.failure(
        "{protocol} failed right after switching {peer} to {upgrade}",
        protocol=protocol,
        peer=transport.getPeer(),
        upgrade=upgrade.decode("ascii"),
    )
    transport.abortConnection()


_QUIET_CONNECT = (BaseProtocol.makeConnection, BaseProtocol.connectionMade)


def _mayPause(protocol: IProtocol, afterConnect: object, transport: Any) -> bool:
    """
    Could C{protocol} pause its transport while it connects? Not if it does
    nothing on connecting (an echo, most raw protocols). Only a transport
    whose pausing methods can be watched is watched (see L{_HeldBytes}).
    """
    cls = type(protocol)
    if (
        afterConnect is None
        and (getattr(cls, "makeConnection", None), getattr(cls, "connectionMade", None))
        == _QUIET_CONNECT
    ):
        return False
    attributes = getattr(transport, "__dict__", None)
    own = getattr(protocol, "__dict__", None)
    return (
        attributes is not None
        and "pauseProducing" not in attributes
        and "resumeProducing" not in attributes
        and own is not None
        and "dataReceived" not in own
        # A method, which an instance attribute can stand in for.
        and inspect.isfunction(getattr(cls, "dataReceived", None))
    )


class _HeldBytes:
    """
    The bytes the client sent behind the request, for a new protocol that
    may pause its transport while it connects (Twisted's port forwarder
    does, until its backend is connected): a paused transport delivers
    nothing, so they wait for its C{resumeProducing}. Until then the
    transport's C{pauseProducing} (and, once paused, C{resumeProducing}) is
    watched: shadowed on the instance, and calling through. While they
    wait, what still arrives (TLS delivers the rest of the records it has
    already read) queues up behind them, in order.
    """

    __slots__ = (
        "bound",
        "connecting",
        "data",
        "paused",
        "protocol",
        "transport",
        "upgrade",
    )

    def __init__(
        self, transport: Any, protocol: IProtocol, data: bytes, upgrade: bytes
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.data = data
        self.upgrade = upgrade
        self.paused = False
        self.connecting = True
        self.bound: Any = None
        transport.pauseProducing = self._pauseProducing

    def _pauseProducing(self) -> None:
        transport = self.transport
        del transport.pauseProducing
        transport.resumeProducing = self._resumeProducing
        self.paused = True
        transport.pauseProducing()

    def _resumeProducing(self) -> None:
        transport = self.transport
        del transport.resumeProducing
        self.paused = False
        if self.connecting:
            # Paused and resumed while connecting: watch for another pause.
            transport.pauseProducing = self._pauseProducing
            transport.resumeProducing()
            return
        own = vars(self.protocol)
        if own.get("dataReceived") == self._more:
            # Unless the protocol bound another since: then it is its own.
            if self.bound is None:
                del own["dataReceived"]
            else:
                own["dataReceived"] = self.bound
        transport.resumeProducing()
        _deliver(self.protocol, transport, self.data, self.upgrade)

    def _more(self, data: bytes) -> None:
        self.data += data

    def connected(self) -> None:
        """
        The protocol is connected: deliver now, unless it left its
        transport paused.
        """
        self.connecting = False
        if not self.paused:
            del self.transport.pauseProducing
            _deliver(self.protocol, self.transport, self.data, self.upgrade)
        else:
            # connectionMade may have bound its own: put back on resume.
            self.bound = vars(self.protocol).get("dataReceived")
            self.protocol.dataReceived = self._more  # type: ignore[method-assign]

    def stopWatching(self) -> None:
        """
        The protocol failed to connect: leave the transport as it was.
        """
        self.connecting = False
        attributes = self.transport.__dict__
        attributes.pop("pauseProducing", None)
        attributes.pop("resumeProducing", None)


def startTLS(
    request: Request,
    contextFactory: Any,
    *,
    upgrade: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    handshakeTimeout: float | None = None,
) -> None:
    """
    Answer C{request} with a 101 and start TLS under its HTTP/1.1 channel
    (RFC 2817 §3.3). The channel goes on: the caller then answers the
    request as usual, and the answer goes out inside TLS. A client that has
    not completed the handshake C{handshakeTimeout} seconds after the 101
    is disconnected.

    Bytes the client sent after the request (its ClientHello, RFC 9110 §7.8)
    are fed to TLS, not parsed as HTTP. The caller has checked
    L{canStartTLS}.
    """
    channel: Any = request.channel
    transport: Any = channel.transport
    unparsed = _takeUnparsedBytes(channel)
    writeSwitchingProtocols(transport, upgrade, headers)
    request.upgradedTo = upgrade  # type: ignore[attr-defined]
    # TLS pauses its producer while it buffers writes made before the
    # handshake, and the HTTP channel, paused, would stop reading: the
    # ClientHello would never be read. So the channel is not the producer
    # until the handshake is done.
    networkProducer = channel._networkProducer
    networkProducer.unregisterProducer()
    transport.startTLS(contextFactory)
    if not ISSLTransport.providedBy(transport):
        # A wrapper between the channel and the TCP transport (the haproxy:
        # endpoint's) forwards startTLS, but copied its interfaces before it;
        # the channel judges isSecure() by them.
        alsoProvides(transport, ISSLTransport)
    tlsProtocol = transport.protocol
    wrapper = tlsProtocol.wrappedProtocol
    # Above TLS the connection now looks as on an ssl: listener: what TLS
    # delivers to has the TLS protocol as its transport, and so has the
    # channel when that is its own generic wrapper. The TCP transport hides
    # TLS's state: its disconnecting stays False while TLS closes, so the
    # channel would parse on after a 400 and hold a closing connection open
    # as its producer; and autobahn finds no TLS connection in it. Protocol
    # wrappers between (the haproxy: endpoint's, policies') stay the
    # channel's transport: they keep their own disconnecting flag, and
    # their peer address and accounting.
    wrapper.transport = tlsProtocol
    if isinstance(wrapper, _GenericHTTPChannelProtocol) and wrapper._channel is channel:
        channel.transport = tlsProtocol

    deadline: Any = None
    if handshakeTimeout is not None:
        # Answers wait inside TLS for the handshake, and TLS closes
        # gracefully only after one: a client that sends no ClientHello
        # would outlast the idle timeout by the channel's abortTimeout, and
        # a TimeoutFactory for good.
        deadline = channel.callLater(handshakeTimeout, tlsProtocol.abortConnection)

        def lost(reason: Failure) -> None:
            # The TCP transport tells the TLS protocol (made just now, so
            # this instance attribute is ours) that the connection is gone.
            del tlsProtocol.connectionLost
            if deadline.active():
                deadline.cancel()
            tlsProtocol.connectionLost(reason)

        tlsProtocol.connectionLost = lost

    def handshakeCompleted() -> None:
        del wrapper.handshakeCompleted
        noLongerProvides(wrapper, IHandshakeListener)
        if deadline is not None and deadline.active():
            del tlsProtocol.connectionLost
            deadline.cancel()
        if channel.transport is not None and not channel.transport.disconnecting:
            networkProducer.registerProducer(channel, True)

    wrapper.handshakeCompleted = handshakeCompleted
    alsoProvides(wrapper, IHandshakeListener)
    if unparsed:
        # startTLS put the TLS protocol between the transport and the
        # channel: what arrives from the network goes there.
        tlsProtocol.dataReceived(unparsed)


# RFC 9113 §3.4: the client connection preface.
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 §8.2.2: fields that must not appear in an HTTP/2 request (TE is
# allowed only as "trailers"); Host becomes :authority; Expect was answered
# in HTTP/1.1 already; HTTP2-Settings is spent.
_NOT_IN_HTTP2 = frozenset(
    {
        b"connection",
        b"upgrade",
        b"http2-settings",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"host",
        b"expect",
        b"content-length",
    }
)


def _stream1Headers(request: UpgradeRequest) -> list[tuple[bytes, bytes]]:
    """
    The HTTP/1.1 request as HTTP/2 request headers (RFC 7540 §3.2, RFC 9113
    §8.3.1): pseudo-headers first, no connection-specific fields.
    """
    hosts = request.header(b"host")
    headers = [
        (b":method", request.method),
        (b":scheme", b"http"),
        (b":path", request.uri),
    ]
    if hosts:
        headers.append((b":authority", hosts[0]))
    for name, values in request.headers.getAllRawHeaders():
        lowered = name.lower()
        if lowered in _NOT_IN_HTTP2:
            continue
        if lowered == b"te":
            values = [v for v in listMembers(values) if v.lower() == b"trailers"]
        headers.extend((lowered, value) for value in values)
    if request.body:
        headers.append((b"content-length", b"%d" % (len(request.body),)))
    return headers


class _ChosenStream:
    """
    An h2 priority tree that remembers the stream it last chose.
    """

    __slots__ = ("chosen", "tree", "waits")

    def __init__(self, tree: Any, waits: Any = None) -> None:
        self.tree = tree
        self.waits = waits
        self.chosen: int | None = None

    def __iter__(self) -> _ChosenStream:
        return self

    def __next__(self) -> int:
        self.chosen = None
        while True:
            chosen: int = next(self.tree)
            if self.waits is None or not self.waits(chosen):
                break
            # Unblocked by Twisted (endRequest, a WINDOW_UPDATE) on a window
            # still shut: block it again rather than serve it.
            self.tree.block(chosen)
        self.chosen = chosen
        return chosen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tree, name)


class _H2Connection(H2Connection):
    """
    Twisted's HTTP/2 connection, with its sending loop waiting on a stream
    whose flow-control window is shut.

    Twisted's loop (C{_sendPrioritisedData}, 25.5 to 26.10) keeps such a
    stream in its priority tree and reschedules itself with C{callLater(0)}
    until the client opens the window: a client that never does (a
    WINDOW_UPDATE-less reader) keeps the server at 100% CPU. Here the
    stream the loop served is blocked once its window is shut, as is one
    written to while shut (Twisted leaves that blocked too), and after each
    read those whose window has opened are unblocked and the loop
    restarted: a WINDOW_UPDATE, or SETTINGS raising
    SETTINGS_INITIAL_WINDOW_SIZE (which h2 reports only as a settings
    change, and Twisted ignores), opens it.
    """

    def __init__(self, reactor: Any = None) -> None:
        super().__init__(reactor)
        self._shut: set[int] = set()
        self.priority = _ChosenStream(self.priority, self._waits)

    def _waits(self, streamID: int) -> bool:
        """
        Must C{streamID} wait for its window (data next, no window)? If so
        it is remembered, to be unblocked when the window opens.
        """
        queue = self._outboundStreamQueues.get(streamID)
        if (
            queue
            # An END_STREAM needs no window.
            and queue[0] is not _END_STREAM_SENTINEL
            and self.conn.local_flow_control_window(streamID) <= 0
        ):
            self._shut.add(streamID)
            return True
        return False

    def _sendPrioritisedData(self, *args: Any) -> None:
        chooser: Any = self.priority
        chooser.chosen = None
        super()._sendPrioritisedData(*args)
        streamID = chooser.chosen
        if streamID is not None and self._waits(streamID):
            chooser.block(streamID)

    def writeDataToStream(self, streamID: int, data: bytes) -> None:
        super().writeDataToStream(streamID, data)
        # Twisted leaves a stream written to with no window blocked.
        self._waits(streamID)

    def dataReceived(self, data: bytes) -> None:
        initialWindow = self.conn.remote_settings.initial_window_size
        super().dataReceived(data)
        shut = self._shut
        if self.conn.remote_settings.initial_window_size < initialWindow:
            # SETTINGS shrank every stream's window, possibly below zero,
            # where Twisted's loop would slice a frame to a negative size
            # and h2 refuse it: those streams wait too.
            for streamID in list(self._outboundStreamQueues):
                if self._waits(streamID):
                    self.priority.block(streamID)
        if not shut:
            return
        opened = False
        for streamID in list(shut):
            if streamID not in self._outboundStreamQueues:
                shut.discard(streamID)
            elif self.conn.local_flow_control_window(streamID) > 0:
                shut.discard(streamID)
                self.priority.unblock(streamID)
                opened = True
                stream = self.streams.get(streamID)
                if stream is not None:
                    # May end the stream (a producer that aborts).
                    stream.windowUpdated()
        waiting = self._sendingDeferred
        if opened and waiting is not None:
            self._sendingDeferred = None
            waiting.callback(None)


class _UpgradedH2Connection(_H2Connection):
    """
    Twisted's HTTP/2 connection, started by an h2c upgrade: the server
    preface reflects C{HTTP2-Settings}, and the request that asked for the
    upgrade is stream 1, half-closed (remote) (RFC 7540 §3.2).
    """

    def __init__(self, reactor: Any, settings: bytes, request: UpgradeRequest) -> None:
        super().__init__(reactor)
        self._upgradeSettings = settings
        self._upgradeRequest: UpgradeRequest | None = request

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        self.setTimeout(self.timeOut)
        self.conn.initiate_upgrade_connection(self._upgradeSettings)
        transport.write(self.conn.data_to_send())
        # The transport applies back pressure to HTTP/2 as it does for ALPN.
        transport.registerProducer(self, True)

        request = self._upgradeRequest
        assert request is not None
        self._upgradeRequest = None
        self._requestReceived(
            h2.events.RequestReceived(stream_id=1, headers=_stream1Headers(request))
        )
        if request.body:
            self.streams[1]._request.handleContentChunk(request.body)
        self._requestEnded(h2.events.StreamEnded(stream_id=1))

    _prefaceSeen = 0

    def dataReceived(self, data: bytes) -> None:
        seen = self._prefaceSeen
        if seen < len(_PREFACE):
            expected = _PREFACE[seen : seen + len(data)]
            if data[: len(expected)] != expected:
                # RFC 7540 §3.5: an invalid preface is a connection error of
                # type PROTOCOL_ERROR; say so with a GOAWAY (h2 raises
                # without queueing one) and close.
                self.conn.close_connection(
                    error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR,
                    additional_data=b"invalid connection preface",
                )
                # What H2Connection.dataReceived does on a ProtocolError
                # (Twisted 25.5 to 26.x).
                if self._tryToWriteControlData():
                    transport: Any = self.transport
                    transport.loseConnection()
                    self.connectionLost(
                        Failure(ConnectionLost("invalid connection preface")),
                        _cancelTimeouts=False,
                    )
                return
            self._prefaceSeen = seen + len(expected)
        super().dataReceived(data)


def _configure(connection: Any, site: Any) -> Any:
    """
    Set up an H2Connection for C{site} as C{_GenericHTTPChannelProtocol}
    does for ALPN.
    """
    connection.requestFactory = site.requestFactory
    connection.site = site
    connection.factory = site
    connection.timeOut = site.timeOut
    connection.callLater = site.reactor.callLater
    return connection


def h2cConnection(site: Any, *, settings: bytes, request: UpgradeRequest) -> IProtocol:
    """
    The protocol an h2c upgrade switches to: Twisted's own HTTP/2 serving
    C{site}, with C{request} as stream 1.

    @param settings: the C{HTTP2-Settings} value, validated and padded.
    """
    protocol: IProtocol = _configure(
        _UpgradedH2Connection(site.reactor, settings, request), site
    )
    return protocol


class _PriorKnowledgeH2Connection(_H2Connection):
    """
    Twisted's HTTP/2 connection, registered as the transport's producer as
    it is after ALPN.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        transport: Any = self.transport
        transport.registerProducer(self, True)


# RFC 9112 §2.2, §3: a request starts with a method (a token), after at most
# a few empty lines. Anything else, such as a TLS record (0x16) sent in
# hope of an upgrade, can never become a request (RFC 9931).
_METHOD_START = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


def _cannotStartRequest(pending: bytes) -> bool:
    """
    Can C{pending}, received where a request must start, never become one?
    Empty lines before it are allowed (RFC 9112 §2.2).
    """
    first = pending.lstrip(b"\r\n")
    return bool(first) and first[0] not in _METHOD_START


class _UpgradeSiteChannel(HTTPChannel):
    """
    The HTTP/1.1 channel of an L{UpgradeSite}:
      - bytes that cannot start a request get 400 and a close at once,
        rather than waiting for a line end that never comes;
      - with h2c on, a connection that opens with the HTTP/2 preface
        (RFC 9113 §3.3, §3.4), which twisted.web would reject as an
        HTTP/2.0 request line, is handed to HTTP/2.
    """

    _sniffed: bytes | None = b""

    def _atRequestStart(self) -> bool:
        return bool(
            self.line_mode
            and not self._handlingRequest
            and self._HTTPChannel__first_line  # type: ignore[attr-defined]
        )

    def _respondToBadRequestAndDisconnect(self) -> None:
        # TLS still hands on the records it has read while it closes: after
        # this 400 they must not be parsed (as the rest of a rejected
        # request, or a new one).
        self.dataReceived = _ignoreData  # type: ignore[method-assign]
        HTTPChannel._respondToBadRequestAndDisconnect(self)

    def dataReceived(self, data: bytes) -> None:
        sniffed = self._sniffed
        if sniffed is None and data and data[0] in _METHOD_START:
            # The common case: the next bytes of a request (or its start).
            HTTPChannel.dataReceived(self, data)
            return
        if sniffed is not None:
            # Over TLS, HTTP/2 is chosen by ALPN only (RFC 9113 §3.3).
            site = getattr(self, "site", None)
            if not getattr(site, "h2c", False) or ISSLTransport.providedBy(
                self.transport
            ):
                self._sniffed = None
            else:
                data = sniffed + data
                if len(data) < len(_PREFACE) and _PREFACE.startswith(data):
                    self._sniffed = data
                    return
                self._sniffed = None
                if data.startswith(_PREFACE):
                    self._switchToHTTP2(data)
                    return
        if (
            data
            and not self._buffer.lstrip(b"\r\n")
            and _cannotStartRequest(data)
            and self._atRequestStart()
        ):
            self._respondToBadRequestAndDisconnect()
            return
        HTTPChannel.dataReceived(self, data)

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        """
        RFC 9112 §9.3, §9.6: HTTP/1.1 persists unless C{close} is among the
        connection options of any C{Connection} line (twisted.web reads only
        the first line, split on spaces). HTTP/1.0 does not persist.
        """
        if version != b"HTTP/1.1":
            return False
        lines = request.requestHeaders.getRawHeaders(b"connection", [])
        if lines and hasConnectionOption(lines, b"close"):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return True

    def requestDone(self, request: Request) -> None:
        HTTPChannel.requestDone(self, request)
        pending = self._buffer
        transport: Any = self.transport
        if (
            pending
            and _cannotStartRequest(pending)
            and transport is not None
            and not transport.disconnecting
            and self._atRequestStart()
        ):
            self._buffer = b""
            self._respondToBadRequestAndDisconnect()

    def _switchToHTTP2(self, data: bytes) -> None:
        transport = self.transport
        _detach(self)
        site: Any = self.site  # type: ignore[attr-defined]
        connection = _configure(_PriorKnowledgeH2Connection(site.reactor), site)
        _handOver(self, connection)
        connection.makeConnection(transport)
        connection.dataReceived(data)


def _ignoreData(data: bytes) -> None:
    pass


def upgradeSiteChannelFactory() -> _GenericHTTPChannelProtocol:
    """
    A C{Site.protocol} for L{UpgradeSite}: see L{_UpgradeSiteChannel}.
    """
    return _GenericHTTPChannelProtocol(_UpgradeSiteChannel())


def asteriskAware(requestFactory: Any, handle: Callable[[Any], bool]) -> Any:
    """
    C{requestFactory}, made to call C{handle(request)} for requests whose
    target is C{*} before twisted.web's own answer, which it keeps when
    C{handle} returns C{False}. Other requests pay nothing. A factory that
    is not a C{twisted.web.server.Request} subclass is returned as it is.
    """
    if (
        not (
            isinstance(requestFactory, type)
            and issubclass(requestFactory, ServerRequest)
        )
        or requestFactory.__dict__.get("_asteriskHandler") is handle
    ):
        # Not a twisted.web request, or made so already.
        return requestFactory

    def _handleStar(self: Any) -> None:
        if not handle(self):
            requestFactory._handleStar(self)

    return type(
        requestFactory.__name__,
        (requestFactory,),
        {"_handleStar": _handleStar, "_asteriskHandler": handle},
    )
