"""
RFC 2817 TLS upgrade within HTTP/1.1 over real sockets on 127.0.0.1:
L{TLSUpgrade} through L{UpgradeSite} (connection-wide, C{OPTIONS *}) and on
one resource, L{RequireTLS}, C{ssl:} listeners, C{Expect: 100-continue}, a
ClientHello in the request's write, a failed handshake, no TLS target
(S37), L{contextFactoryFromFiles}, and CUPS' ipptool as a real peer.

The clients are blocking Python C{ssl} code run in threads: a socket that
speaks cleartext HTTP/1.1, then TLS through C{ssl.MemoryBIO} and
C{SSLObject} on the same connection, so that the ClientHello can go out in
the same write as the request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from twisted.internet import reactor as _reactor
from twisted.internet import ssl as ssl_
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IAddress, IOpenSSLContextFactory
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Site
from zope.interface import implementer

from upgrade_plugin import UpgradeRegistry, UpgradeResource, UpgradeSite
from upgrade_plugin.tls import RequireTLS, TLSUpgrade, contextFactoryFromFiles
from upgrade_plugin.websocket import WebSocketUpgrade

from .helpers import rawRequest, requireExternal
from .tls import certificateAndKeyPEM, issue, listenLoopback, pem, serverOptions
from .wshelpers import SAMPLE_ACCEPT, clientFrame, echoFactory, handshake, serverFrame

reactor: Any = _reactor

# Every blocking socket operation of a client gives up after this long.
SOCKET_TIMEOUT = 5.0


def switched(version: bytes) -> bytes:
    """
    The exact 101 head for an upgrade to TLS/C{version}: TLS first, then
    HTTP/1.1, the layers bottom-up (RFC 9110 §7.8, RFC 2817 §3.3).
    """
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: TLS/" + version + b", HTTP/1.1\r\n"
        b"Connection: Upgrade\r\n\r\n"
    )


SWITCHED_12 = switched(b"1.2")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What CUPS' libcups (ipptool -E) offers, with exactly its Connection value.
CUPS_OFFER = [
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"TLS/1.2,TLS/1.1,TLS/1.0"),
]


def cupsOptions(port: int) -> bytes:
    """
    The first bytes ipptool -E sends (interop.md), to the letter: a
    mandatory upgrade on C{OPTIONS *} (RFC 2817 §3.2).
    """
    return (
        b"OPTIONS * HTTP/1.1\r\n"
        b"Connection: Upgrade\r\n"
        b"Host: localhost:%d\r\n"
        b"Upgrade: TLS/1.2,TLS/1.1,TLS/1.0\r\n"
        b"User-Agent: CUPS/2.4.2 (Linux 6.1.0; x86_64) IPP/2.0\r\n"
        b"\r\n"
    ) % (port,)


def get(path: bytes, *extra: tuple[bytes, bytes]) -> bytes:
    """
    A GET for C{path} with a Host and the C{extra} fields.
    """
    return rawRequest(b"GET", path, headers=[(b"Host", b"localhost"), *extra])


def offerTLS(path: bytes, offer: bytes, connection: bytes = b"Upgrade") -> bytes:
    """
    A GET for C{path} offering C{Upgrade: offer} with C{Connection:
    connection}.
    """
    return get(path, (b"Connection", connection), (b"Upgrade", offer))


def clientContext() -> ssl.SSLContext:
    """
    A client context that trusts only the throwaway test certificate.
    """
    certificate, _ = certificateAndKeyPEM()
    return ssl.create_default_context(cadata=certificate.decode("ascii"))


@dataclass
class Answer:
    """
    One HTTP/1.1 response as received: the raw head (status line, fields,
    empty line) and the body.
    """

    head: bytes
    body: bytes

    @property
    def status(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def code(self) -> int:
        return int(self.status.split(b" ")[1])

    def names(self) -> list[bytes]:
        """
        The field names, lower-cased, sorted, without Date and Server.
        """
        names = [
            line.split(b":", 1)[0].strip().lower()
            for line in self.head.split(b"\r\n")[1:]
            if b":" in line
        ]
        return sorted(n for n in names if n not in (b"date", b"server"))

    def header(self, name: bytes) -> list[bytes]:
        values = []
        for line in self.head.split(b"\r\n")[1:]:
            if b":" in line:
                field, value = line.split(b":", 1)
                if field.strip().lower() == name.lower():
                    values.append(value.strip())
        return values


class BlockingClient:
    """
    A blocking HTTP/1.1 client on one real socket that can start TLS in
    place (RFC 2817): cleartext first, then TLS through C{ssl.MemoryBIO}, so
    that the ClientHello can be taken before it is sent. Run it in a thread.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=SOCKET_TIMEOUT
        )
        # Received application bytes (cleartext, or decrypted) not yet read.
        self.buffer = b""
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None
        self.secure = False

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """
        Send C{data}: inside TLS once the handshake is done, else as is.
        """
        if self.secure:
            assert self.tls is not None
            self.tls.write(data)
            self._flush()
        else:
            self.sock.sendall(data)

    def clientHello(self) -> bytes:
        """
        Begin a TLS client handshake and return its first flight (the
        ClientHello), unsent.
        """
        self.tls = clientContext().wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def startTLS(self) -> None:
        """
        Complete a TLS handshake on this connection (sending the ClientHello
        unless L{clientHello} was sent already). Bytes already received past
        what was read go to TLS.
        """
        if self.tls is None:
            self.sock.sendall(self.clientHello())
        assert self.tls is not None
        self.incoming.write(self.buffer)
        self.buffer = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._receiveRaw()
                if not raw:
                    raise ConnectionError("closed during the TLS handshake") from None
                self.incoming.write(raw)
        self._flush()
        self.secure = True

    @property
    def tlsVersion(self) -> str | None:
        return None if self.tls is None else self.tls.version()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def _receiveRaw(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def _receive(self) -> bytes:
        """
        The next bytes from the server (decrypted once secure); C{b""} at
        the end of the connection.
        """
        if not self.secure:
            return self._receiveRaw()
        assert self.tls is not None
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._receiveRaw()
                if not raw:
                    return b""
                self.incoming.write(raw)
            except ssl.SSLZeroReturnError:
                return b""

    def _fill(self) -> None:
        data = self._receive()
        if not data:
            raise ConnectionError(f"connection closed; unread: {self.buffer!r}")
        self.buffer += data

    def readHead(self) -> bytes:
        """
        Read one response head, up to and including its empty line, and no
        further.
        """
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def switchToTLS(self, expected: bytes) -> bytes:
        """
        Read the 101's head, which must be C{expected}, then complete the
        TLS handshake; the head.
        """
        head = self.readHead()
        if head != expected:
            raise FailTest(f"{head!r} != {expected!r}")
        self.startTLS()
        return head

    def readResponse(self, *, head: bool = False) -> Answer:
        """
        Read one whole response (RFC 9112 §6.3 framing).
        """
        answer = Answer(self.readHead(), b"")
        code = answer.code
        if head or 100 <= code < 200 or code in (204, 304):
            return answer
        lengths = answer.header(b"content-length")
        if lengths:
            length = int(lengths[0])
            while len(self.buffer) < length:
                self._fill()
            answer.body, self.buffer = self.buffer[:length], self.buffer[length:]
        elif answer.header(b"transfer-encoding") == [b"chunked"]:
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill()
                size, rest = self.buffer.split(b"\r\n", 1)
                n = int(size.split(b";")[0], 16)
                while len(rest) < n + 2:
                    self._fill()
                    size, rest = self.buffer.split(b"\r\n", 1)
                answer.body += rest[:n]
                self.buffer = rest[n + 2 :]
                if n == 0:
                    break
        else:
            answer.body = self.readUntilClosed()
        return answer

    def readUntilClosed(self) -> bytes:
        """
        Everything until the server closes the connection; fails if it
        stays open for L{SOCKET_TIMEOUT} seconds.
        """
        data, self.buffer = self.buffer, b""
        while True:
            try:
                chunk = self._receive()
            except TimeoutError:
                raise FailTest(
                    f"the connection is still open after {SOCKET_TIMEOUT} s;"
                    f" received {data!r}"
                ) from None
            if not chunk:
                return data
            data += chunk


@dataclass
class Seen:
    """
    A request as a test resource saw it.
    """

    method: bytes
    uri: bytes
    secure: bool
    body: bytes


class Report(Resource):
    """
    Answers every request with what it saw of it, and keeps that.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        secure = bool(request.isSecure())
        self.seen.append(Seen(request.method, request.uri, secure, body))
        request.setHeader(b"content-type", b"text/plain")
        return reported(request.method, request.uri, secure, body)


def reported(method: bytes, uri: bytes, secure: bool, body: bytes = b"") -> bytes:
    """
    What L{Report} answers.
    """
    return b"%s %s secure=%s body=%s" % (
        method,
        uri,
        str(secure).encode("ascii"),
        body,
    )


def ippAttribute(tag: int, name: bytes, value: bytes) -> bytes:
    """
    One IPP attribute (RFC 8010 §3.1.4).
    """
    return (
        bytes([tag])
        + struct.pack(">H", len(name))
        + name
        + struct.pack(">H", len(value))
        + value
    )


def ippResponse(requestId: bytes) -> bytes:
    """
    The smallest valid IPP response (RFC 8010 §3.1.1, RFC 8011 §4.1.4):
    version 2.0, successful-ok, the request's request-id, an
    operation-attributes group with attributes-charset and
    attributes-natural-language, end of attributes.
    """
    return (
        b"\x02\x00"
        + b"\x00\x00"
        + requestId
        + b"\x01"
        + ippAttribute(0x47, b"attributes-charset", b"utf-8")
        + ippAttribute(0x48, b"attributes-natural-language", b"en")
        + b"\x03"
    )


class Printer(Resource):
    """
    An IPP printer that answers every operation with a minimal success, and
    records the requests it got.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        self.seen.append(Seen(request.method, request.uri, request.isSecure(), body))
        request.setHeader(b"content-type", b"application/ipp")
        return ippResponse(body[4:8])


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class _ServerConnection:
    """
    One server-side connection: its TCP transport, and whether the HTTP
    channel's protocol heard it end (after a switch, the new protocol does
    instead, and the TCP transport tells).
    """

    transport: Any = None
    lost = False

    def ended(self) -> bool:
        return self.lost or (
            self.transport is not None and not self.transport.connected
        )


class TLSUpgradeTestCase(TestCase):
    """
    Listeners on 127.0.0.1, and cleanup that waits for every server-side
    connection to end (no dirty reactor).
    """

    def setUp(self) -> None:
        self.upgrade = TLSUpgrade(serverOptions())
        self.report = Report()
        self.secret = Report()
        self.printer = Printer()
        self.serverConnections: list[_ServerConnection] = []
        self.addCleanup(self.waitForServerConnections)

    def registry(self, upgrade: TLSUpgrade | None = None) -> UpgradeRegistry:
        registry = UpgradeRegistry()
        registry.register("TLS", upgrade if upgrade is not None else self.upgrade)
        return registry

    def root(self) -> Resource:
        """
        C{/report}, C{/secret} (TLS only) and C{/ipp/print}.
        """
        root = Resource()
        root.putChild(b"report", self.report)
        root.putChild(b"secret", RequireTLS(self.secret, self.upgrade))
        ipp = Resource()
        ipp.putChild(b"print", self.printer)
        root.putChild(b"ipp", ipp)
        return root

    def upgradeSite(self, upgrade: TLSUpgrade | None = None) -> UpgradeSite:
        """
        An L{UpgradeSite} with TLS connection-wide.
        """
        return UpgradeSite(self.root(), self.registry(upgrade))

    @inlineCallbacks
    def listen(self, site: Site, *, tls: bool = False) -> Any:
        """
        Listen with C{site} on 127.0.0.1, in cleartext or (C{tls}) on an
        C{ssl:} listener; the port number.
        """
        original = site.buildProtocol

        def buildProtocol(addr: IAddress) -> Any:
            protocol = original(addr)
            connection = _ServerConnection()
            connectionLost = protocol.connectionLost
            makeConnection = protocol.makeConnection

            def recordLost(reason: Failure | None = None) -> Any:
                connection.lost = True
                return connectionLost(reason)

            def recordTransport(transport: Any) -> Any:
                connection.transport = transport
                return makeConnection(transport)

            protocol.connectionLost = recordLost
            protocol.makeConnection = recordTransport
            self.serverConnections.append(connection)
            return protocol

        site.buildProtocol = buildProtocol  # type: ignore[method-assign]
        port = yield listenLoopback(self, site, tls)
        return port.getHost().port

    @inlineCallbacks
    def waitForServerConnections(self) -> Any:
        """
        Wait (a few seconds at most) for the server side of every
        connection to end after the client closed it; abort stragglers.
        """
        for _ in range(300):
            if all(c.ended() for c in self.serverConnections):
                return
            yield sleep(0.01)
        for connection in self.serverConnections:
            if not connection.ended():
                connection.transport.abortConnection()
        yield sleep(0.05)

    def inThread(self, exchange: Callable[[], Any]) -> Deferred[Any]:
        return deferToThread(exchange)


class UpgradeSiteTests(TLSUpgradeTestCase):
    """
    TLS registered connection-wide in an L{UpgradeSite}.
    """

    @inlineCallbacks
    def test_cupsOptionsAsterisk(self) -> Any:
        """
        T3, T4, T5, T10, T11, G10: CUPS' mandatory upgrade, to the letter
        (RFC 2817 §3.2) gets exactly C{101} with C{Upgrade: TLS/1.2,
        HTTP/1.1} (layers bottom-up, §3.3); the C{200} for C{OPTIONS *} then
        comes inside TLS (§3.3: the client does not resend it), and a second
        request inside TLS sees C{request.isSecure()}.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer, Answer, str | None]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                head = client.switchToTLS(SWITCHED_12)
                options = client.readResponse()
                client.send(get(b"/report?after=1"))
                second = client.readResponse()
                return head, options, second, client.tlsVersion

        head, options, second, version = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(options.status, b"HTTP/1.1 200 OK")
        self.assertEqual(options.header(b"content-length"), [b"0"])
        self.assertEqual(options.header(b"upgrade"), [])
        self.assertEqual(options.body, b"")
        self.assertEqual(second.status, b"HTTP/1.1 200 OK")
        self.assertEqual(second.body, reported(b"GET", b"/report?after=1", True))
        self.assertEqual(
            self.report.seen, [Seen(b"GET", b"/report?after=1", True, b"")]
        )
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))

    @inlineCallbacks
    def test_closeAfterTheUpgradedAnswer(self) -> Any:
        """
        A request that upgrades to TLS and asks to close (C{Connection:
        Upgrade, close}) is answered inside TLS, then the connection closes
        (RFC 9112 §9.6): the channel does not stay the producer of a TLS
        connection that is closing.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, bytes]:
            with BlockingClient(port) as client:
                client.send(
                    offerTLS(b"/report", b"TLS/1.2", connection=b"Upgrade, close")
                )
                client.switchToTLS(SWITCHED_12)
                return client.readResponse(), client.readUntilClosed()

        answer, rest = yield self.inThread(exchange)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.header(b"connection"), [b"close"])
        self.assertEqual(answer.body, reported(b"GET", b"/report", True))
        self.assertEqual(rest, b"")

    @inlineCallbacks
    def test_noClientHello(self) -> Any:
        """
        Found by fuzzing: a client that never starts the TLS handshake after
        the 101 is disconnected after the target's C{handshakeTimeout}; the
        answer waiting inside TLS would otherwise keep the connection
        through every idle timeout. The channel hears it once.
        """
        port = yield self.listen(
            self.upgradeSite(TLSUpgrade(serverOptions(), handshakeTimeout=0.3))
        )

        def exchange() -> tuple[bytes, float]:
            with BlockingClient(port) as client:
                client.send(get(b"/report", *CUPS_OFFER))
                head = client.readHead()
                started = time.monotonic()
                client.readUntilClosed()
                return head, time.monotonic() - started

        head, waited = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertLess(waited, 3)
        [connection] = self.serverConnections
        for _ in range(100):
            if connection.lost:
                break
            yield sleep(0.01)
        self.assertTrue(connection.lost)

    @inlineCallbacks
    def test_badRequestInsideTLS(self) -> Any:
        """
        A malformed request inside the upgraded connection gets twisted.web's
        400 and a close, as in cleartext, and nothing is logged as an error.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, bytes]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                client.switchToTLS(SWITCHED_12)
                options = client.readResponse()
                client.send(b"GET  /report HTTP/1.1\r\nHost: x\r\n\r\n")
                return options, client.readUntilClosed()

        options, rest = yield self.inThread(exchange)
        self.assertEqual(options.status, b"HTTP/1.1 200 OK")
        self.assertEqual(rest, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertEqual(self.report.seen, [])

    @inlineCallbacks
    def test_badRequestInTwoRecords(self) -> Any:
        """
        Found by review: a malformed request whose end comes in a later TLS
        record gets the 400 and a close; the later record, which TLS still
        hands on while it closes, is not parsed as a new request.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> bytes:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                client.switchToTLS(SWITCHED_12)
                client.readResponse()
                client.send(b"GET  /report HTTP/1.1\r\n")
                time.sleep(0.3)
                client.send(b"\r\n")
                return client.readUntilClosed()

        rest = yield self.inThread(exchange)
        self.assertEqual(rest, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertEqual(self.report.seen, [])

    @inlineCallbacks
    def test_webSocketInsideTLS(self) -> Any:
        """
        A WebSocket opened inside the upgraded connection works as on an
        C{ssl:} listener: autobahn is given the TLS protocol as its
        transport, where it reads the TLS channel binding.
        """
        factory = echoFactory()
        websocket = UpgradeRegistry()
        websocket.register("websocket", WebSocketUpgrade(factory))
        root = self.root()
        root.putChild(b"ws", UpgradeResource(websocket))
        port = yield self.listen(UpgradeSite(root, self.registry()))
        expected = serverFrame(b"hello") + serverFrame(b"\x03\xe8", 8)

        def exchange() -> tuple[bytes, bytes]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                client.switchToTLS(SWITCHED_12)
                client.readResponse()
                client.send(handshake(b"/ws"))
                head = client.readHead()
                client.send(clientFrame(b"hello") + clientFrame(b"\x03\xe8", 8))
                return head, client.readUntilClosed()

        head, frames = yield self.inThread(exchange)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        self.assertIn(b"\r\nSec-WebSocket-Accept: " + SAMPLE_ACCEPT + b"\r\n", head)
        self.assertEqual(frames, expected)
        # The server hears the close as the client does, or just after.
        for _ in range(300):
            if factory.events[-1][0] == "close":
                break
            yield sleep(0.01)
        self.assertEqual(
            [name for name, _ in factory.events],
            ["connect", "open", "message", "close"],
        )

    @inlineCallbacks
    def test_offerTLS10AloneDeclined(self) -> Any:
        """
        T2, T10: C{Upgrade: TLS/1.0} alone, which the default context
        disables, is declined: the request is answered in cleartext (RFC
        2817 §3.1, the server MAY ignore an optional upgrade), no 101, and
        the connection goes on in cleartext HTTP/1.1.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(
                    offerTLS(b"/report?tls10", b"TLS/1.0") + get(b"/report?next")
                )
                return client.readResponse(), client.readResponse()

        first, second = yield self.inThread(exchange)
        self.assertEqual(first.status, b"HTTP/1.1 200 OK")
        self.assertEqual(first.header(b"upgrade"), [])
        self.assertEqual(first.body, reported(b"GET", b"/report?tls10", False))
        self.assertEqual(second.status, b"HTTP/1.1 200 OK")
        self.assertEqual(second.body, reported(b"GET", b"/report?next", False))

    @inlineCallbacks
    def test_offerTLS13(self) -> Any:
        """
        T10: C{Upgrade: TLS/1.3}, which the context speaks, is accepted and
        echoed: C{Upgrade: TLS/1.3, HTTP/1.1} (RFC 2817 §3.3); the request
        is answered inside TLS 1.3.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer, str | None]:
            with BlockingClient(port) as client:
                client.send(offerTLS(b"/report?tls13", b"TLS/1.3"))
                head = client.switchToTLS(switched(b"1.3"))
                return head, client.readResponse(), client.tlsVersion

        head, answer, version = yield self.inThread(exchange)
        self.assertEqual(head, switched(b"1.3"))
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.body, reported(b"GET", b"/report?tls13", True))
        self.assertEqual(version, "TLSv1.3")

    @inlineCallbacks
    def test_offerWithSpaces(self) -> Any:
        """
        T10: C{Upgrade: TLS/1.2, TLS/1.1} (a list with spaces, RFC 9110
        §5.6.1) on C{OPTIONS *}: the first offered version the context
        speaks is chosen, C{Upgrade: TLS/1.2, HTTP/1.1} (RFC 2817 §3.3), and
        the C{200} for C{OPTIONS *} comes inside TLS.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer]:
            with BlockingClient(port) as client:
                client.send(
                    rawRequest(
                        b"OPTIONS",
                        b"*",
                        headers=[
                            (b"Host", b"localhost"),
                            (b"Connection", b"Upgrade"),
                            (b"Upgrade", b"TLS/1.2, TLS/1.1"),
                        ],
                    )
                )
                head = client.switchToTLS(SWITCHED_12)
                return head, client.readResponse()

        head, answer = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.header(b"content-length"), [b"0"])

    @inlineCallbacks
    def test_upgradeOnGet(self) -> Any:
        """
        T1, T5, T11: an optional upgrade on a GET to an ordinary path (RFC
        2817 §3.1): 101, TLS, then that GET is answered inside TLS (§3.3)
        with C{request.isSecure()} true; and a new offer inside TLS is
        ignored (the connection is TLS already): a plain 200, no 101.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/report?get", *CUPS_OFFER))
                head = client.switchToTLS(SWITCHED_12)
                first = client.readResponse()
                client.send(get(b"/report?again", *CUPS_OFFER))
                return head, first, client.readResponse()

        head, first, again = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(first.status, b"HTTP/1.1 200 OK")
        self.assertEqual(first.body, reported(b"GET", b"/report?get", True))
        self.assertEqual(again.status, b"HTTP/1.1 200 OK")
        self.assertEqual(again.body, reported(b"GET", b"/report?again", True))
        self.assertEqual(
            [seen.secure for seen in self.report.seen], [True, True], self.report.seen
        )

    @inlineCallbacks
    def test_expectContinue(self) -> Any:
        """
        S10: a POST with C{Expect: 100-continue}, a body and the offer gets
        C{HTTP/1.1 100 Continue} before the 101 (RFC 9110 §7.8, RFC 2817
        §3.3), then the POST's answer inside TLS, which saw the body.
        """
        port = yield self.listen(self.upgradeSite())
        request = rawRequest(
            b"POST",
            b"/report?post",
            headers=[
                (b"Host", b"localhost"),
                *CUPS_OFFER,
                (b"Expect", b"100-continue"),
                (b"Content-Length", b"5"),
            ],
        )

        def exchange() -> tuple[bytes, bytes, Answer]:
            with BlockingClient(port) as client:
                client.send(request)
                continued = client.readHead()
                self.assertEqual(continued, CONTINUE)
                client.send(b"hello")
                head = client.switchToTLS(SWITCHED_12)
                return continued, head, client.readResponse()

        continued, head, answer = yield self.inThread(exchange)
        self.assertEqual(continued, CONTINUE)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(
            answer.body, reported(b"POST", b"/report?post", True, b"hello")
        )

    @inlineCallbacks
    def test_clientHelloInTheRequestWrite(self) -> Any:
        """
        T11: a ClientHello in the same write as the request (RFC 9110 §7.8:
        the bytes after the request belong to the new protocol) is fed to
        TLS, not parsed as HTTP nor lost: 101, the handshake completes, and
        the request is answered inside TLS (RFC 2817 §3.3).
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer]:
            with BlockingClient(port) as client:
                hello = client.clientHello()
                client.send(get(b"/report?early", *CUPS_OFFER) + hello)
                head = client.switchToTLS(SWITCHED_12)
                return head, client.readResponse()

        head, answer = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.body, reported(b"GET", b"/report?early", True))

    @inlineCallbacks
    def test_cupsClientHelloInTheRequestWrite(self) -> Any:
        """
        T11: the same with CUPS' C{OPTIONS *} (RFC 2817 §3.2): the ClientHello
        right behind it reaches TLS, and the 200 comes inside TLS (§3.3).
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port) + client.clientHello())
                head = client.switchToTLS(SWITCHED_12)
                return head, client.readResponse()

        head, answer = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.header(b"content-length"), [b"0"])

    @inlineCallbacks
    def test_failedHandshake(self) -> Any:
        """
        T6: garbage instead of a ClientHello after the 101 is a failed
        handshake (RFC 2817 §3.3: it disconnects): that connection closes
        within a few seconds, no traceback is logged, and the server goes on:
        another connection, open before, still gets answers, and a new one
        too.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[bytes, Answer, Answer]:
            with BlockingClient(port) as other:
                other.send(get(b"/report?before"))
                self.assertEqual(other.readResponse().code, 200)
                with BlockingClient(port) as client:
                    client.send(cupsOptions(port))
                    head = client.readHead()
                    self.assertEqual(head, SWITCHED_12)
                    client.send(b"this is not a ClientHello\r\n\r\n" * 4)
                    client.readUntilClosed()  # a socket timeout fails the test
                other.send(get(b"/report?after"))
                after = other.readResponse()
            with BlockingClient(port) as new:
                new.send(get(b"/report?new"))
                fresh = new.readResponse()
            return head, after, fresh

        head, after, fresh = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(after.body, reported(b"GET", b"/report?after", False))
        self.assertEqual(fresh.body, reported(b"GET", b"/report?new", False))
        yield self.waitForServerConnections()
        self.assertEqual(self.flushLoggedErrors(), [])

    @inlineCallbacks
    def test_requireTLS426ThenPipelined(self) -> Any:
        """
        T8: a TLS-only resource requested in cleartext without an offer gets
        exactly C{426 Upgrade Required} with C{Upgrade: TLS/1.2, HTTP/1.1}
        (the context's version under HTTP/1.1), C{Connection: Upgrade} and a
        human-readable body (RFC 2817 §4.2); the connection stays HTTP/1.1:
        a request pipelined behind it is answered.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/secret") + get(b"/report?pipelined"))
                return client.readResponse(), client.readResponse()

        required, pipelined = yield self.inThread(exchange)
        self.assertEqual(required.status, b"HTTP/1.1 426 Upgrade Required")
        self.assertEqual(
            required.names(),
            [b"connection", b"content-length", b"content-type", b"upgrade"],
        )
        self.assertEqual(required.header(b"upgrade"), [b"TLS/1.2, HTTP/1.1"])
        self.assertEqual(required.header(b"connection"), [b"Upgrade"])
        self.assertEqual(
            required.header(b"content-type"), [b"text/plain; charset=utf-8"]
        )
        self.assertIn(b"TLS", required.body)
        self.assertIn(b"426 Upgrade Required", required.body)
        self.assertEqual(self.secret.seen, [])
        self.assertEqual(pipelined.status, b"HTTP/1.1 200 OK")
        self.assertEqual(pipelined.body, reported(b"GET", b"/report?pipelined", False))

    @inlineCallbacks
    def test_requireTLSAfterUpgrade(self) -> Any:
        """
        T8, T11: once the connection is upgraded (by C{OPTIONS *}, RFC 2817
        §3.2), the TLS-only resource is served normally, secure.
        """
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                self.assertEqual(client.readHead(), SWITCHED_12)
                client.startTLS()
                options = client.readResponse()
                client.send(get(b"/secret"))
                return options, client.readResponse()

        options, secret = yield self.inThread(exchange)
        self.assertEqual(options.status, b"HTTP/1.1 200 OK")
        self.assertEqual(secret.status, b"HTTP/1.1 200 OK")
        self.assertEqual(secret.body, reported(b"GET", b"/secret", True))
        self.assertEqual(self.secret.seen, [Seen(b"GET", b"/secret", True, b"")])


class ResourceLevelTests(TLSUpgradeTestCase):
    """
    TLS on individual resources of a plain L{Site}.
    """

    def plainSite(self) -> Site:
        """
        A plain L{Site}: C{/tls} upgrades to TLS (an L{UpgradeResource}
        whose fallback is a L{Report}), C{/report} does not, C{/secret} is
        L{RequireTLS}.
        """
        root = self.root()
        root.putChild(b"tls", UpgradeResource(self.registry(), self.report))
        return Site(root)

    @inlineCallbacks
    def test_upgradeResource(self) -> Any:
        """
        T1, T4, T5: TLS registered on one resource of a plain L{Site}: an
        offer there gets the exact 101 (RFC 2817 §3.3), and the request is
        answered inside TLS, secure; the next request inside TLS, to another
        resource, is secure too.
        """
        port = yield self.listen(self.plainSite())

        def exchange() -> tuple[bytes, Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/tls", *CUPS_OFFER))
                head = client.switchToTLS(SWITCHED_12)
                first = client.readResponse()
                client.send(get(b"/report?later"))
                return head, first, client.readResponse()

        head, first, later = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(first.status, b"HTTP/1.1 200 OK")
        self.assertEqual(first.body, reported(b"GET", b"/tls", True))
        self.assertEqual(later.body, reported(b"GET", b"/report?later", True))

    @inlineCallbacks
    def test_upgradeResourceFallbackEncoded(self) -> Any:
        """
        The request answered inside TLS by a fallback behind
        C{EncodingResourceWrapper} is answered gzipped, as it would be
        without the upgrade.
        """
        root = self.root()
        wrapped = EncodingResourceWrapper(self.report, [GzipEncoderFactory()])
        root.putChild(b"tls", UpgradeResource(self.registry(), wrapped))
        port = yield self.listen(Site(root))

        def exchange() -> Answer:
            with BlockingClient(port) as client:
                client.send(get(b"/tls", *CUPS_OFFER, (b"Accept-Encoding", b"gzip")))
                client.switchToTLS(SWITCHED_12)
                return client.readResponse()

        answer = yield self.inThread(exchange)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.header(b"content-encoding"), [b"gzip"])
        self.assertEqual(
            zlib.decompress(answer.body, 16 + zlib.MAX_WBITS),
            reported(b"GET", b"/tls", True),
        )

    @inlineCallbacks
    def test_otherResourcesIgnoreOffer(self) -> Any:
        """
        T2: on a plain L{Site} the offer is the resource's business only
        (RFC 2817 §3.1 optional upgrade): elsewhere, and on C{OPTIONS *},
        which twisted.web answers itself, the answers are cleartext, no
        101.
        """
        port = yield self.listen(self.plainSite())

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/report?plain", *CUPS_OFFER) + cupsOptions(port))
                return client.readResponse(), client.readResponse()

        plain, options = yield self.inThread(exchange)
        self.assertEqual(plain.status, b"HTTP/1.1 200 OK")
        self.assertEqual(plain.body, reported(b"GET", b"/report?plain", False))
        self.assertEqual(options.status, b"HTTP/1.1 200 OK")

    @inlineCallbacks
    def assertServedInsideTLS(self, site: Site) -> Any:
        """
        A TLS-only resource requested with an offer: 101 (RFC 2817 §3.3),
        and that same request is served inside TLS (§3.3), secure.
        """
        port = yield self.listen(site)

        def exchange() -> tuple[bytes, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/secret?offered", *CUPS_OFFER))
                head = client.switchToTLS(SWITCHED_12)
                return head, client.readResponse()

        head, answer = yield self.inThread(exchange)
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")
        self.assertEqual(answer.body, reported(b"GET", b"/secret?offered", True))

    def test_requireTLSUpgradeOnTheSameRequest(self) -> Any:
        """
        T1, T5, T8: L{RequireTLS} on a plain L{Site}.
        """
        return self.assertServedInsideTLS(self.plainSite())

    def test_requireTLSUpgradeThroughUpgradeSite(self) -> Any:
        """
        T1, T5, T8: the same through an L{UpgradeSite} with TLS
        connection-wide.
        """
        return self.assertServedInsideTLS(self.upgradeSite())

    @inlineCallbacks
    def test_requireTLS426OnPlainSite(self) -> Any:
        """
        T8: on a plain L{Site} too, the TLS-only resource without an offer
        gets exactly C{426 Upgrade Required}, C{Upgrade: TLS/1.2, HTTP/1.1},
        C{Connection: Upgrade} (RFC 2817 §4.2), and the connection stays.
        """
        port = yield self.listen(self.plainSite())

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                client.send(get(b"/secret/child") + get(b"/report?next"))
                return client.readResponse(), client.readResponse()

        required, following = yield self.inThread(exchange)
        self.assertEqual(required.status, b"HTTP/1.1 426 Upgrade Required")
        self.assertEqual(required.header(b"upgrade"), [b"TLS/1.2, HTTP/1.1"])
        self.assertEqual(required.header(b"connection"), [b"Upgrade"])
        self.assertIn(b"TLS", required.body)
        self.assertEqual(following.body, reported(b"GET", b"/report?next", False))


class SSLListenerTests(TLSUpgradeTestCase):
    """
    On an C{ssl:} listener the connection is TLS already.
    """

    def connectTLS(self, client: BlockingClient) -> None:
        client.startTLS()
        self.assertIn(client.tlsVersion, ("TLSv1.2", "TLSv1.3"))

    @inlineCallbacks
    def test_requireTLSServed(self) -> Any:
        """
        T8, T11: the TLS-only resource is served normally over an C{ssl:}
        listener (RFC 2817 §4.2 is for cleartext), and an offer on it is
        ignored: a 200, no 101 (the connection is TLS already).
        """
        port = yield self.listen(self.upgradeSite(), tls=True)

        def exchange() -> tuple[Answer, Answer]:
            with BlockingClient(port) as client:
                self.connectTLS(client)
                client.send(get(b"/secret?plain") + get(b"/secret?offer", *CUPS_OFFER))
                return client.readResponse(), client.readResponse()

        plain, offered = yield self.inThread(exchange)
        self.assertEqual(plain.status, b"HTTP/1.1 200 OK")
        self.assertEqual(plain.body, reported(b"GET", b"/secret?plain", True))
        self.assertEqual(offered.status, b"HTTP/1.1 200 OK")
        self.assertEqual(offered.body, reported(b"GET", b"/secret?offer", True))

    @inlineCallbacks
    def test_requireTLSServedOnPlainSite(self) -> Any:
        """
        T8: the same with L{RequireTLS} in a plain L{Site}, whose own
        upgrade is then declined (RFC 2817 §3.1): 200, no 101.
        """
        port = yield self.listen(Site(self.root()), tls=True)

        def exchange() -> Answer:
            with BlockingClient(port) as client:
                self.connectTLS(client)
                client.send(get(b"/secret?offer", *CUPS_OFFER))
                return client.readResponse()

        offered = yield self.inThread(exchange)
        self.assertEqual(offered.status, b"HTTP/1.1 200 OK")
        self.assertEqual(offered.body, reported(b"GET", b"/secret?offer", True))

    @inlineCallbacks
    def test_cupsOptionsIgnored(self) -> Any:
        """
        T11: CUPS' C{OPTIONS *} offer over an C{ssl:} listener is ignored
        (RFC 2817 §3.2 upgrades a cleartext connection): C{200}, no 101.
        """
        port = yield self.listen(self.upgradeSite(), tls=True)

        def exchange() -> Answer:
            with BlockingClient(port) as client:
                self.connectTLS(client)
                client.send(cupsOptions(port))
                return client.readResponse()

        options = yield self.inThread(exchange)
        self.assertEqual(options.status, b"HTTP/1.1 200 OK")
        self.assertEqual(options.header(b"content-length"), [b"0"])
        self.assertEqual(options.header(b"upgrade"), [])


class NoTLSTargetTests(TLSUpgradeTestCase):
    """
    S37: no TLS configured.
    """

    @inlineCallbacks
    def test_optimisticClientHello(self) -> Any:
        """
        S37: with no TLS target, C{OPTIONS *} with C{Upgrade: TLS/1.2} and
        a ClientHello in the same write (optimistic, RFC 9110 §7.8 forbids
        it before the 101): the C{200} for C{OPTIONS}, then the ClientHello
        (first octet 0x16, not a method, RFC 9112 §3) gets a C{400} and the
        connection closes; nothing is logged as an error.
        """
        port = yield self.listen(UpgradeSite(self.root()))

        def exchange() -> tuple[Answer, bytes]:
            with BlockingClient(port) as client:
                options = rawRequest(
                    b"OPTIONS",
                    b"*",
                    headers=[
                        (b"Host", b"localhost"),
                        (b"Connection", b"Upgrade"),
                        (b"Upgrade", b"TLS/1.2"),
                    ],
                )
                client.send(options + client.clientHello())
                first = client.readResponse()
                return first, client.readUntilClosed()

        first, rest = yield self.inThread(exchange)
        self.assertEqual(first.status, b"HTTP/1.1 200 OK")
        self.assertEqual(first.header(b"upgrade"), [])
        self.assertTrue(rest.startswith(b"HTTP/1.1 400 Bad Request\r\n"), rest)
        yield self.waitForServerConnections()
        self.assertEqual(self.flushLoggedErrors(), [])


class ContextFromFilesTests(TLSUpgradeTestCase):
    """
    L{contextFactoryFromFiles}: PEM certificate and key files.
    """

    def write(self, name: str, data: bytes) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    @inlineCallbacks
    def upgradeWith(self, upgrade: TLSUpgrade) -> Any:
        """
        Upgrade CUPS' C{OPTIONS *} with C{upgrade}: the 101 and the answer.
        """
        port = yield self.listen(self.upgradeSite(upgrade))

        def exchange() -> tuple[bytes, Answer]:
            with BlockingClient(port) as client:
                client.send(cupsOptions(port))
                head = client.switchToTLS(SWITCHED_12)
                return head, client.readResponse()

        result = yield self.inThread(exchange)
        return result

    @inlineCallbacks
    def test_separateFiles(self) -> Any:
        """
        Certificate and key in separate PEM files: a context factory that
        serves the upgrade (RFC 2817 §3.3), the client verifying the
        certificate.
        """
        certificate, key = certificateAndKeyPEM()
        factory = contextFactoryFromFiles(
            self.write("cert.pem", certificate), self.write("key.pem", key)
        )
        head, answer = yield self.upgradeWith(TLSUpgrade(factory))
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")

    def test_chainSent(self) -> None:
        """
        A "fullchain" file (the certificate, then its intermediate): the
        server sends the chain, so a client that trusts only the root
        verifies it.
        """
        root = issue("root", ca=True)
        middle = issue("middle", root, ca=True)
        leafKey, leaf = issue("localhost", middle)
        factory = contextFactoryFromFiles(
            self.write("chain.pem", pem(certificate=leaf) + pem(certificate=middle[1])),
            self.write("key.pem", pem(key=leafKey)),
        )
        client = ssl.create_default_context(cadata=pem(certificate=root[1]).decode())
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        clientTLS = client.wrap_bio(incoming, outgoing, server_hostname="localhost")
        server = SSL.Connection(factory.getContext(), None)
        server.set_accept_state()
        for _ in range(6):
            with contextlib.suppress(ssl.SSLWantReadError):
                clientTLS.do_handshake()
            sent = outgoing.read()
            if sent:
                server.bio_write(sent)
            with contextlib.suppress(SSL.WantReadError):
                server.do_handshake()
            with contextlib.suppress(SSL.WantReadError):
                incoming.write(server.bio_read(65536))
        # The handshake completed with the root as the only trust anchor.
        clientTLS.do_handshake()
        peer: Any = clientTLS.getpeercert()
        self.assertEqual(peer["subject"], ((("commonName", "localhost"),),))

    @inlineCallbacks
    def test_oneFile(self) -> Any:
        """
        Certificate and key in one PEM file, the key file left out (or the
        same path given twice): the upgrade is served (RFC 2817 §3.3).
        """
        certificate, key = certificateAndKeyPEM()
        path = self.write("both.pem", certificate + key)
        self.assertEqual(
            TLSUpgrade(contextFactoryFromFiles(path, path)).versions, ["1.3", "1.2"]
        )
        head, answer = yield self.upgradeWith(TLSUpgrade(contextFactoryFromFiles(path)))
        self.assertEqual(head, SWITCHED_12)
        self.assertEqual(answer.status, b"HTTP/1.1 200 OK")

    def test_unreadableFile(self) -> None:
        """
        A file that cannot be read (missing, a directory) raises L{OSError}
        naming it, as documented.
        """
        certificate, _ = certificateAndKeyPEM()
        missing = os.path.join(self.mktemp(), "missing.pem")
        error = self.assertRaises(OSError, contextFactoryFromFiles, missing)
        self.assertEqual(error.filename, missing)
        directory = self.mktemp()
        os.makedirs(directory)
        self.assertRaises(OSError, contextFactoryFromFiles, directory)
        error = self.assertRaises(
            OSError,
            contextFactoryFromFiles,
            self.write("cert.pem", certificate),
            missing,
        )
        self.assertEqual(error.filename, missing)

    def test_garbageFile(self) -> None:
        """
        Garbage instead of a PEM certificate, or instead of its key, raises
        the documented C{ValueError}.
        """
        certificate, _ = certificateAndKeyPEM()
        garbage = self.write("garbage.pem", b"this is not PEM\n")
        self.assertRaises(ValueError, contextFactoryFromFiles, garbage)
        self.assertRaises(
            ValueError,
            contextFactoryFromFiles,
            self.write("cert.pem", certificate),
            garbage,
        )

    def test_keyOfAnotherCertificate(self) -> None:
        """
        A key that is not the certificate's raises the documented
        C{ValueError} ("if they are not a certificate and its key").
        """
        certificate, _ = certificateAndKeyPEM()
        other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.assertRaises(
            ValueError,
            contextFactoryFromFiles,
            self.write("cert.pem", certificate),
            self.write("other.pem", other),
        )

    def test_garbageFileNamed(self) -> None:
        """
        The error for a garbage file says which file it is, so that a
        misconfiguration can be found.
        """
        garbage = self.write("garbage.pem", b"this is not PEM\n")
        try:
            contextFactoryFromFiles(garbage)
        except Exception as e:
            self.assertIn(garbage, str(e))
        else:
            self.fail("no error for a garbage certificate file")


@implementer(IOpenSSLContextFactory)
class MinimumTLS13Factory:
    """
    A context factory that is not L{CertificateOptions}: it sets its minimum
    version on the context (C{SSL_CTX_set_min_proto_version}, what
    pyOpenSSL offers instead of the deprecated C{OP_NO_TLSv1_x} options).
    """

    def __init__(self) -> None:
        self._context: SSL.Context | None = None

    def getContext(self) -> SSL.Context:
        if self._context is None:
            certificate, key = certificateAndKeyPEM()
            context = SSL.Context(SSL.TLS_SERVER_METHOD)
            context.set_min_proto_version(SSL.TLS1_3_VERSION)
            context.use_certificate(
                crypto.X509.from_cryptography(
                    x509.load_pem_x509_certificate(certificate)
                )
            )
            context.use_privatekey(
                crypto.PKey.from_cryptography_key(
                    serialization.load_pem_private_key(key, None)  # type: ignore[arg-type]
                )
            )
            self._context = context
        return self._context


def tls13Options() -> ssl_.CertificateOptions:
    """
    L{CertificateOptions} for the test certificate, TLS 1.3 only.
    """
    certificate, key = certificateAndKeyPEM()
    private = ssl_.PrivateCertificate.loadPEM(certificate + key)
    return ssl_.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        raiseMinimumTo=ssl_.TLSVersion.TLSv1_3,
    )


class ContextVersionTests(TLSUpgradeTestCase):
    """
    The versions offered and required are those the context speaks.
    """

    @inlineCallbacks
    def checkTLS13Only(self, contextFactory: Any) -> Any:
        """
        With a TLS 1.3-only context: the 426 requires C{TLS/1.3, HTTP/1.1}
        (RFC 2817 §4.2), CUPS' C{TLS/1.2,TLS/1.1,TLS/1.0} offer is declined
        (a cleartext 200 for C{OPTIONS *}, RFC 2817 §3.1), and a C{TLS/1.3}
        offer is accepted (§3.3).
        """
        self.upgrade = TLSUpgrade(contextFactory)
        port = yield self.listen(self.upgradeSite())

        def exchange() -> tuple[Answer, Answer, bytes | None, Answer | None]:
            with BlockingClient(port) as client:
                client.send(get(b"/secret"))
                required = client.readResponse()
                client.send(cupsOptions(port))
                declined = client.readResponse()
                if declined.code == 101:
                    # Switched to TLS: the cleartext exchange cannot go on.
                    return required, declined, None, None
                client.send(offerTLS(b"/report?tls13", b"TLS/1.3"))
                head = client.switchToTLS(switched(b"1.3"))
                return required, declined, head, client.readResponse()

        required, declined, head, answer = yield self.inThread(exchange)
        self.assertEqual(
            (required.status, required.header(b"upgrade"), declined.status),
            (
                b"HTTP/1.1 426 Upgrade Required",
                [b"TLS/1.3, HTTP/1.1"],
                b"HTTP/1.1 200 OK",
            ),
        )
        self.assertEqual(required.header(b"connection"), [b"Upgrade"])
        self.assertEqual(declined.header(b"upgrade"), [])
        self.assertEqual(head, switched(b"1.3"))
        assert answer is not None
        self.assertEqual(answer.body, reported(b"GET", b"/report?tls13", True))

    def test_certificateOptionsMinimum(self) -> Any:
        """
        L{CertificateOptions} raised to TLS 1.3: see L{checkTLS13Only}.
        """
        return self.checkTLS13Only(tls13Options())

    def test_contextMinimumProtocolVersion(self) -> Any:
        """
        Any context factory (RFC 2817 §3.3 names the version switched to, and
        §4.2 the version required): one whose context sets its minimum with
        C{set_min_proto_version}: see L{checkTLS13Only}.
        """
        return self.checkTLS13Only(MinimumTLS13Factory())


def skipWithout(program: str) -> str | None:
    if shutil.which(program) is None:
        return requireExternal(f"{program} is not installed")
    return None


class IpptoolTests(TLSUpgradeTestCase):
    """
    CUPS' ipptool, a real RFC 2817 client.
    """

    @inlineCallbacks
    def test_ipptoolUpgrade(self) -> Any:
        """
        T3, T5, T10: C{ipptool -E} upgrades with C{OPTIONS *} (RFC 2817
        §3.2), waits for the 200 inside TLS (§3.3), then POSTs its IPP
        request over TLS: the printer resource sees C{POST /ipp/print},
        secure, with an IPP body. Judged by that POST, not by the .test
        file's EXPECT lines.
        """
        ipptool = shutil.which("ipptool") or "ipptool"
        port = yield self.listen(self.upgradeSite())
        url = f"ipp://127.0.0.1:{port}/ipp/print"
        out, err, code = yield getProcessOutputAndValue(
            "timeout",
            [
                "-k",
                "3",
                "30",
                ipptool,
                "-E",
                "-T",
                "5",
                "-tv",
                url,
                "get-printer-attributes.test",
            ],
            env=os.environ,
            reactor=reactor,
        )
        transcript = f"exit {code}\n{out.decode(errors='replace')}\n" + err.decode(
            errors="replace"
        )
        self.assertNotIn(code, (124, 137), transcript)
        self.assertNotIn(b"Encryption is not supported", out + err, transcript)
        self.assertTrue(self.printer.seen, transcript)
        post = self.printer.seen[0]
        self.assertEqual(
            (post.method, post.uri, post.secure), (b"POST", b"/ipp/print", True)
        )
        self.assertGreaterEqual(len(post.body), 9, post.body)
        # ipptool read the minimal IPP answer, over TLS.
        self.assertIn(b"status-code = successful-ok", out, transcript)
        self.assertEqual(post.body[:1], b"\x02", post.body)  # IPP/2.x

    test_ipptoolUpgrade.skip = skipWithout("ipptool")  # type: ignore[attr-defined]


def _upgradeToTLS(
    port: int,
    path: bytes,
    offer: bytes,
    *,
    proxied: bool,
    answered: Callable[[bytes], bool],
) -> tuple[bytes, bytes]:
    """
    Offer C{offer} on C{GET path} (behind a PROXY protocol header, as
    HAProxy's send-proxy sends it, if C{proxied}), start TLS after the 101,
    and read inside TLS until C{answered(what was read)}: the 101's head
    and that answer.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if proxied:
            sock.sendall(b"PROXY TCP4 1.2.3.4 127.0.0.1 5555 80\r\n")
        sock.sendall(
            b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade\r\nUpgrade: " + offer + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        secured = context.wrap_socket(sock, server_hostname="localhost")
        answer = b""
        while not answered(answer):
            chunk = secured.recv(4096)
            if not chunk:
                break
            answer += chunk
        return head, answer


def _proxiedUpgrade(port: int) -> tuple[bytes, bytes]:
    """
    Behind a PROXY protocol header, upgrade GET /admin to TLS; the 101's
    status line and the answer inside TLS.
    """
    head, answer = _upgradeToTLS(
        port,
        b"/admin",
        b"TLS/1.2",
        proxied=True,
        answered=lambda answer: b"isSecure=" in answer or b"426" in answer,
    )
    return head.split(b"\r\n")[0], answer


class HAProxyEndpointTests(TestCase):
    """
    T11: behind the C{haproxy:} endpoint (a protocol wrapper between the
    channel and TCP), the upgraded connection is secure for the requests
    answered inside TLS.
    """

    @inlineCallbacks
    def test_secureAfterUpgrade(self) -> Any:
        from twisted.internet.endpoints import serverFromString

        class Secure(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"isSecure=%r" % (request.isSecure(),)

        tls = TLSUpgrade(serverOptions())
        root = Resource()
        root.putChild(b"admin", RequireTLS(Secure(), tls))
        registry = UpgradeRegistry()
        registry.register("TLS", tls)
        site: Site = UpgradeSite(root, registry)
        endpoint = serverFromString(reactor, "haproxy:tcp:0:interface=127.0.0.1")
        port = yield endpoint.listen(site)
        self.addCleanup(port.stopListening)
        status, answer = yield deferToThread(_proxiedUpgrade, port.getHost().port)
        self.assertEqual(status, b"HTTP/1.1 101 Switching Protocols")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertTrue(answer.endswith(b"isSecure=True"), answer)


class _CountingWrapper(ProtocolWrapper):
    """
    A policies-style wrapper that counts the writes through it.
    """

    writes = 0

    def write(self, data: bytes) -> None:
        type(self).writes += 1
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        type(self).writes += 1
        super().writeSequence(data)


class _ClientAddress(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"client=%s" % (request.getClientAddress().host.encode("ascii"),)


class WrappersAfterUpgradeTests(TestCase):
    """
    Found by review: behind the C{haproxy:} endpoint and another protocol
    wrapper, requests inside the upgraded TLS still go through both: the
    client address is the PROXY header's, and the wrapper sees the writes.
    """

    @inlineCallbacks
    def test_haproxyAndWrappingFactory(self) -> Any:
        from twisted.internet.endpoints import serverFromString

        root = Resource()
        root.putChild(b"show", _ClientAddress())
        tls = UpgradeRegistry()
        tls.register("TLS", TLSUpgrade(serverOptions()))
        site = UpgradeSite(root, tls)
        site.logFile = _NoLog()
        wrapped = WrappingFactory(site)
        wrapped.protocol = _CountingWrapper
        self.patch(_CountingWrapper, "writes", 0)
        endpoint = serverFromString(reactor, "haproxy:tcp:0:interface=127.0.0.1")
        port = yield endpoint.listen(wrapped)
        self.addCleanup(port.stopListening)

        def exchange() -> tuple[Answer, int, Answer, int]:
            with BlockingClient(port.getHost().port) as client:
                client.sock.sendall(b"PROXY TCP4 1.2.3.4 127.0.0.1 5555 80\r\n")
                client.send(get(b"/show", *CUPS_OFFER))
                client.switchToTLS(SWITCHED_12)
                first = client.readResponse()
                writes = _CountingWrapper.writes
                client.send(get(b"/show"))
                return first, writes, client.readResponse(), _CountingWrapper.writes

        first, writes, second, after = yield deferToThread(exchange)
        self.assertEqual((first.body, second.body), (b"client=1.2.3.4",) * 2)
        self.assertGreater(after, writes)


def _tlsThenFoo(port: int, proxied: bool) -> tuple[bytes, bytes]:
    """
    Offer C{TLS/1.2, foo/2} on C{GET /up}; the 101's head, and the answer
    read inside TLS up to the end of its body.
    """
    return _upgradeToTLS(
        port,
        b"/up",
        b"TLS/1.2, foo/2",
        proxied=proxied,
        answered=lambda answer: answer.endswith(b"\n") and b"\r\n\r\n" in answer,
    )


class OneSwitchPerRequestTests(TestCase):
    """
    A request that was upgraded to TLS for the whole connection
    (RFC 2817 §3.3) and is then answered inside TLS by an
    L{UpgradeResource} that also serves one of its offers is not switched a
    second time: one 101, then that resource's answer without an upgrade
    (here 426), with the connection's TLS intact, plain or behind the
    C{haproxy:} wrapper. (L{UpgradeSite} lets a path's own protocols go
    first; an L{UpgradeResource} whose fallback is another one does not.)
    """

    @inlineCallbacks
    def exchange(self, proxied: bool) -> Any:
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory, Protocol

        registry = UpgradeRegistry()
        registry.register("foo/2", Factory.forProtocol(Protocol))
        tls = UpgradeRegistry()
        tls.register("TLS", TLSUpgrade(serverOptions()))
        root = Resource()
        root.putChild(b"up", UpgradeResource(tls, fallback=UpgradeResource(registry)))
        site = Site(root)
        site.logFile = _NoLog()
        prefix = "haproxy:" if proxied else ""
        endpoint = serverFromString(reactor, prefix + "tcp:0:interface=127.0.0.1")
        port = yield endpoint.listen(site)
        self.addCleanup(port.stopListening)
        head, answer = yield deferToThread(_tlsThenFoo, port.getHost().port, proxied)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertIn(b"\r\nUpgrade: TLS/1.2, HTTP/1.1\r\n", head)
        self.assertTrue(answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), answer)
        self.assertTrue(answer.endswith(b"use one of these protocols: foo/2\n"), answer)

    def test_plain(self) -> Any:
        return self.exchange(False)

    def test_behindHAProxy(self) -> Any:
        return self.exchange(True)


class _NoLog:
    def write(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass
