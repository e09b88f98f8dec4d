"""
The switch over real sockets on 127.0.0.1 (plain TCP and TLS) and on a UNIX
socket: early data, more than 16 KiB, the idle timeout, closing, leaks.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import weakref
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.portforward import ProxyFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from upgrade_plugin import UpgradeRegistry, UpgradeResource

from .helpers import SWITCHED_FOO, Hello, offer, rawRequest
from .tls import clientOptions, listenLoopback

reactor: Any = _reactor


class EchoUntilBye(Protocol):
    """
    Echoes; on C{bye} closes the connection from the server side.
    """

    def __init__(self, lost: list[EchoUntilBye]) -> None:
        self.lostList = lost

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        if data.endswith(b"bye"):
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lostList.append(self)


class EchoFactory(Factory):
    def __init__(self) -> None:
        self.built: list[weakref.ref[EchoUntilBye]] = []
        self.lost: list[EchoUntilBye] = []

    def buildProtocol(self, addr: IAddress | None) -> EchoUntilBye:
        protocol = EchoUntilBye(self.lost)
        self.built.append(weakref.ref(protocol))
        return protocol


class RawClient(Protocol):
    """
    Collects what the server sends; C{waitFor(n)} fires once n bytes came.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.closed: Deferred[None] = Deferred()
        self._waiting: tuple[int, Deferred[bytes]] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        self._check()

    def waitFor(self, length: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._waiting = (length, d)
        self._check()
        return d

    def _check(self) -> None:
        if self._waiting and len(self.buffer) >= self._waiting[0]:
            _, d = self._waiting
            self._waiting = None
            d.callback(self.buffer)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._waiting:
            self._waiting[1].errback(reason or Failure(ConnectionError()))
        self.closed.callback(None)


def timeout(d: Deferred[Any], seconds: float = 10) -> Deferred[Any]:
    clock: IReactorTime = reactor
    return d.addTimeout(seconds, clock)


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@inlineCallbacks
def waitUntil(predicate: Any, seconds: float = 5) -> Any:
    """
    Poll C{predicate} until it is true, for at most C{seconds}: the other
    end of a loopback connection learns of a close in its own time.
    """
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        yield sleep(0.01)


class LoopbackTests(TestCase):
    tls = False

    def setUp(self) -> Any:
        self.echo = EchoFactory()
        self.registry = registry = UpgradeRegistry()
        registry.register("foo/2", self.echo)
        root = Resource()
        root.putChild(b"up", UpgradeResource(registry))
        root.putChild(b"hello", Hello())
        self.site = Site(root)
        self.site.logFile = _Lines()
        self.channels: list[weakref.ref[Any]] = []
        original = self.site.buildProtocol

        def buildProtocol(addr: IAddress) -> Any:
            protocol = original(addr)
            self.channels.append(weakref.ref(protocol._channel))
            return protocol

        self.site.buildProtocol = buildProtocol  # type: ignore[method-assign]
        return self.listen()

    @inlineCallbacks
    def listen(self) -> Any:
        self.port = yield listenLoopback(self, self.site, self.tls)

    @inlineCallbacks
    def connect(self) -> Any:
        port = self.port.getHost().port
        if self.tls:
            endpoint: Any = SSL4ClientEndpoint(
                reactor, "127.0.0.1", port, clientOptions()
            )
        else:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = RawClient()
        yield connectProtocol(endpoint, client)
        self.addCleanup(self.disconnect, client)
        return client

    def disconnect(self, client: RawClient) -> Deferred[None]:
        if client.transport is not None and not client.closed.called:
            client.transport.loseConnection()
        return client.closed

    @inlineCallbacks
    def test_earlyDataSameSegment(self) -> Any:
        """
        D1, W11: bytes written together with the request reach the new
        protocol (Twisted's and autobahn's resources lose them).
        """
        client = yield self.connect()
        client.transport.write(rawRequest() + b"early")
        data = yield timeout(client.waitFor(len(SWITCHED_FOO) + 5))
        self.assertEqual(data, SWITCHED_FOO + b"early")

    @inlineCallbacks
    def test_moreThan16KiB(self) -> Any:
        """
        More than twisted.web's eager-read limit after the request, in one
        write: every byte, in order.
        """
        client = yield self.connect()
        early = bytes(range(256)) * 1024  # 256 KiB
        client.transport.write(rawRequest() + early)
        data = yield timeout(client.waitFor(len(SWITCHED_FOO) + len(early)))
        self.assertEqual(data, SWITCHED_FOO + early)

    @inlineCallbacks
    def test_trickled(self) -> Any:
        client = yield self.connect()
        for byte in rawRequest() + b"abc":
            client.transport.write(bytes([byte]))
            yield sleep(0)
        data = yield timeout(client.waitFor(len(SWITCHED_FOO) + 3))
        self.assertEqual(data, SWITCHED_FOO + b"abc")

    @inlineCallbacks
    def test_earlyDataToPausingProtocol(self) -> Any:
        """
        D1: a new protocol that pauses its transport while it connects gets
        the bytes sent with the request once it resumes, as a transport
        delivers nothing while paused: Twisted's port forwarder does so
        until its backend is connected.
        """
        backend = EchoFactory()
        listening = reactor.listenTCP(0, backend, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        # The forwarder closes its backend connection after the client
        # leaves: wait for that too.
        self.addCleanup(waitUntil, lambda: len(backend.lost) == len(backend.built))
        self.registry.register(
            "tunnel", ProxyFactory("127.0.0.1", listening.getHost().port)
        )
        client = yield self.connect()
        # Over TLS, more than one record: the later ones arrive while the
        # forwarder still has its transport paused.
        early = bytes(range(256)) * 160
        client.transport.write(offer(b"tunnel") + early)
        switched = SWITCHED_FOO.replace(b"foo/2", b"tunnel")
        data = yield timeout(client.waitFor(len(switched) + len(early)))
        self.assertEqual(data, switched + early)
        self.assertEqual(len(backend.built), 1)

    @inlineCallbacks
    def test_serverCloseCloses(self) -> Any:
        """
        W12, D3: when the new protocol closes, the socket really closes
        (over TLS too: the HTTP channel is no longer the producer).
        """
        client = yield self.connect()
        client.transport.write(rawRequest() + b"bye")
        yield timeout(client.closed, 5)
        self.assertEqual(client.buffer, SWITCHED_FOO + b"bye")
        yield waitUntil(lambda: self.echo.lost)
        self.assertEqual(len(self.echo.lost), 1)

    @inlineCallbacks
    def test_survivesIdleTimeout(self) -> Any:
        """
        D4: the Site's idle timeout does not close an upgraded connection.
        """
        self.site.timeOut = 0.2
        client = yield self.connect()
        client.transport.write(rawRequest())
        yield timeout(client.waitFor(len(SWITCHED_FOO)))
        yield sleep(0.6)
        client.transport.write(b"still")
        data = yield timeout(client.waitFor(len(SWITCHED_FOO) + 5))
        self.assertEqual(data, SWITCHED_FOO + b"still")

    @inlineCallbacks
    def test_clientLeavesAfter101(self) -> Any:
        """
        The client closes right after the 101: the new protocol hears it
        exactly once, nothing is logged, nothing stays referenced.
        """
        client = yield self.connect()
        client.transport.write(rawRequest())
        yield timeout(client.waitFor(len(SWITCHED_FOO)))
        client.transport.loseConnection()
        yield client.closed
        yield waitUntil(lambda: self.echo.lost)
        self.assertEqual(len(self.echo.lost), 1)
        self.echo.lost.clear()
        gc.collect()
        self.assertEqual([ref() for ref in self.echo.built], [None])
        self.assertEqual([ref() for ref in self.channels], [None])

    @inlineCallbacks
    def test_clientLeavesMidRequest(self) -> Any:
        client = yield self.connect()
        client.transport.write(rawRequest()[:20])
        yield sleep(0.05)
        client.transport.loseConnection()
        yield client.closed
        yield sleep(0.05)
        self.assertEqual(self.echo.built, [])
        gc.collect()
        self.assertEqual([ref() for ref in self.channels], [None])

    @inlineCallbacks
    def test_transportCallsProtocol(self) -> Any:
        """
        Once switched, the server's transport (TCP, or TLS's protocol
        wrapper) delivers to the new protocol directly.
        """
        client = yield self.connect()
        client.transport.write(rawRequest() + b"x")
        yield timeout(client.waitFor(len(SWITCHED_FOO) + 1))
        [ref] = self.echo.built
        protocol = ref()
        assert protocol is not None and protocol.transport is not None
        link = "wrappedProtocol" if self.tls else "protocol"
        self.assertIs(getattr(protocol.transport, link), protocol)

    @inlineCallbacks
    def test_plainRequestsUnaffected(self) -> Any:
        client = yield self.connect()
        client.transport.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        data = yield timeout(client.waitFor(1))
        while not data.endswith(b"hello /hello"):
            data = yield timeout(client.waitFor(len(data) + 1))
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))


@implementer(IHalfCloseableProtocol)
class AnswerAtEOF(Protocol):
    """
    Collects bytes until the client has sent all it will (half-close), then
    answers and closes.
    """

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.write(b"got %d bytes" % (len(self.received),))
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class HalfCloseTests(TestCase):
    """
    A new protocol that provides L{IHalfCloseableProtocol} is told when the
    client half-closes a TCP connection, and can still answer: the transport
    calls it directly, not through twisted.web's generic wrapper, which does
    not provide the interface.
    """

    @inlineCallbacks
    def test_halfClose(self) -> Any:
        registry = UpgradeRegistry()
        registry.register("foo/2", Factory.forProtocol(AnswerAtEOF))
        site = Site(UpgradeResource(registry))
        site.logFile = _Lines()
        port = yield listenLoopback(self, site, False)
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield connectProtocol(endpoint, client)
        transport: Any = client.transport
        transport.write(rawRequest() + b"abc")
        yield timeout(client.waitFor(len(SWITCHED_FOO)))
        transport.write(b"de")
        transport.loseWriteConnection()
        yield timeout(client.closed)
        self.assertEqual(client.buffer, SWITCHED_FOO + b"got 5 bytes")


class TLSLoopbackTests(LoopbackTests):
    """
    The same over TLS (C{ssl:} listener, TLSMemoryBIOProtocol).
    """

    tls = True


class UNIXLoopbackTests(LoopbackTests):
    """
    The same on a UNIX socket (C{unix:} listener, twisted.internet.unix),
    as behind a local reverse proxy.
    """

    @inlineCallbacks
    def listen(self) -> Any:
        # Short: a socket path is limited to about 100 bytes, and trial's
        # temporary paths are longer.
        directory = tempfile.mkdtemp(prefix="up", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = directory + "/s"
        endpoint = UNIXServerEndpoint(reactor, self.path)
        self.port = yield endpoint.listen(self.site)
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def connect(self) -> Any:
        client = RawClient()
        yield connectProtocol(UNIXClientEndpoint(reactor, self.path), client)
        self.addCleanup(self.disconnect, client)
        return client


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, data: str) -> None:
        self.lines.append(data)

    def close(self) -> None:
        pass
