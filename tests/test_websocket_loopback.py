"""
WebSocket over real sockets, against clients nobody here wrote: the Python
C{websockets} client and autobahn's Twisted client; plain TCP and TLS.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from upgrade_plugin import UpgradeRegistry, UpgradeResource
from upgrade_plugin.websocket import WebSocketUpgrade

from .tls import certificateAndKeyPEM, clientOptions, listenLoopback
from .wshelpers import SAMPLE_ACCEPT, clientFrame, echoFactory, handshake, serverFrame

reactor: Any = _reactor


def clientSSLContext() -> ssl.SSLContext:
    certificate, _ = certificateAndKeyPEM()
    context = ssl.create_default_context(cadata=certificate.decode("ascii"))
    return context


def rawExchange(
    port: int,
    data: bytes,
    expected: int,
    *,
    tls: bool = False,
    untilClosed: bool = False,
) -> tuple[bytes, float | None]:
    """
    Blocking client for a thread: send C{data} in one write, read
    C{expected} bytes (or until the server closes); return what came and
    how long after the last expected byte the server closed, if it did.
    """
    sock: Any = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        sock = clientSSLContext().wrap_socket(sock, server_hostname="localhost")
    try:
        sock.sendall(data)
        received = b""
        while len(received) < expected:
            chunk = sock.recv(65536)
            if not chunk:
                return received, None
            received += chunk
        closedAfter = None
        if untilClosed:
            start = time.monotonic()
            sock.settimeout(3)
            try:
                while sock.recv(65536):
                    pass
                closedAfter = time.monotonic() - start
            except (TimeoutError, OSError):
                closedAfter = None
        return received, closedAfter
    finally:
        sock.close()


class WebSocketLoopbackTests(TestCase):
    tls = False

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.factory = echoFactory()
        registry = UpgradeRegistry()
        registry.register("websocket", WebSocketUpgrade(self.factory))
        root = Resource()
        ws = Resource()
        root.putChild(b"ws", ws)
        ws.putChild(b"echo", UpgradeResource(registry))
        site = Site(root)
        self.port = yield listenLoopback(self, site, self.tls)
        self.portNumber = self.port.getHost().port
        scheme = "wss" if self.tls else "ws"
        self.url = f"{scheme}://localhost:{self.portNumber}/ws/echo"

    def events(self, kind: str) -> list[Any]:
        return [value for name, value in self.factory.events if name == kind]

    def test_websocketsClient(self) -> Deferred[None]:
        """
        The strict C{websockets} client: handshake, subprotocol, a text
        and a binary echo, compression negotiated, clean close.
        """
        from websockets.sync.client import connect

        self.factory.choose = lambda request: "chat"

        def client() -> tuple[Any, ...]:
            extra: dict[str, Any] = {"ssl": clientSSLContext()} if self.tls else {}
            ws: Any
            with connect(self.url, subprotocols=["chat"], **extra) as ws:  # type: ignore[list-item]
                ws.send("hello")
                text = ws.recv(timeout=5)
                ws.send(b"\x00\x01" * 5000)
                binary = ws.recv(timeout=5)
                return (
                    text,
                    binary,
                    ws.subprotocol,
                    ws.response.headers.get("Sec-WebSocket-Extensions"),
                )

        def check(result: tuple[Any, ...]) -> None:
            text, binary, subprotocol, extensions = result
            self.assertEqual(text, "hello")
            self.assertEqual(binary, b"\x00\x01" * 5000)
            self.assertEqual(subprotocol, "chat")
            self.assertTrue(extensions.startswith("permessage-deflate"))

        return deferToThread(client).addCallback(check)

    @inlineCallbacks
    def test_autobahnClient(self) -> Any:
        received: Deferred[bytes] = Deferred()
        closed: Deferred[bool] = Deferred()

        class Client(WebSocketClientProtocol):
            def onOpen(self) -> None:
                self.sendMessage(b"from autobahn")

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                received.callback(payload)
                self.sendClose()

            def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
                closed.callback(wasClean)

        factory = WebSocketClientFactory(self.url)
        factory.protocol = Client
        connector = connectWS(factory, clientOptions() if self.tls else None)
        self.addCleanup(connector.disconnect)
        payload = yield received.addTimeout(10, reactor)
        self.assertEqual(payload, b"from autobahn")
        wasClean = yield closed.addTimeout(10, reactor)
        self.assertTrue(wasClean)
        # autobahn's batched timers outlive the connection by up to a second.
        for _ in range(300):
            if not any(
                "_notify_bucket" in repr(call) for call in reactor.getDelayedCalls()
            ):
                break
            yield deferLaterSeconds(0.01)

    @inlineCallbacks
    def test_frameInHandshakeWrite(self) -> Any:
        """
        W11: a frame written together with the handshake is echoed
        (Twisted's and autobahn's resources lose it).
        """
        raw = handshake(b"/ws/echo") + clientFrame(b"early")
        head = len(_switched())
        data, _ = yield deferToThread(
            rawExchange, self.portNumber, raw, head + 7, tls=self.tls
        )
        self.assertEqual(data, _switched() + serverFrame(b"early"))

    @inlineCallbacks
    def test_largeFrameInHandshakeWrite(self) -> Any:
        payload = bytes(range(256)) * 160  # 40 KB
        raw = handshake(b"/ws/echo") + clientFrame(payload, opcode=2)
        reply = _switched() + serverFrame(payload, opcode=2)
        data, _ = yield deferToThread(
            rawExchange, self.portNumber, raw, len(reply), tls=self.tls
        )
        self.assertEqual(data, reply)

    @inlineCallbacks
    def test_serverClosesAfterCloseHandshake(self) -> Any:
        """
        W12: after the close handshake the server closes the TCP connection,
        over TLS too; onClose fires.
        """
        raw = handshake(b"/ws/echo") + clientFrame(b"\x03\xe8", opcode=8)
        reply = _switched() + serverFrame(b"\x03\xe8", opcode=8)
        data, closedAfter = yield deferToThread(
            rawExchange,
            self.portNumber,
            raw,
            len(reply),
            tls=self.tls,
            untilClosed=True,
        )
        self.assertEqual(data, reply)
        self.assertIsNotNone(closedAfter)
        self.assertLess(closedAfter, 1.0)
        for _ in range(100):
            if self.events("close"):
                break
            yield deferLaterSeconds(0.01)
        self.assertEqual(self.events("close"), [True])


def deferLaterSeconds(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def _switched() -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + SAMPLE_ACCEPT + b"\r\n\r\n"
    )


class SecureWebSocketLoopbackTests(WebSocketLoopbackTests):
    """
    The same over an C{ssl:} listener (wss).
    """

    tls = True
