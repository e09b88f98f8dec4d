"""
Shared test fixtures: recording protocols, in-memory sites, raw requests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from upgrade_plugin import IUpgradeAware, UpgradeRequest

# The repository root (the tests run with it on sys.path).
REPO = Path(__file__).resolve().parent.parent

PEER = IPv4Address("TCP", "127.0.0.1", 40404)
HOST = IPv4Address("TCP", "127.0.0.1", 8080)


def requireExternal(reason: str) -> str | None:
    """
    The C{skip} value for a test that needs an external program.

    Under CI (C{UPGRADE_PLUGIN_REQUIRE_PEERS=1}) nothing may be skipped: the
    test runs and fails if the program is missing.
    """
    if os.environ.get("UPGRADE_PLUGIN_REQUIRE_PEERS") == "1":
        return None
    return reason


@implementer(IUpgradeAware)
class Recorder(Protocol):
    """
    Records everything that happens to it.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure | None] = []
        self.request: UpgradeRequest | None = None
        self.connectedBeforeRequest = False

    def upgradeAccepted(self, request: UpgradeRequest) -> None:
        self.connectedBeforeRequest = self.transport is not None
        self.request = request

    @property
    def data(self) -> bytes:
        return b"".join(self.received)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.append(reason)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class RecorderFactory(Factory):
    """
    Builds L{Recorder}s and keeps them.
    """

    def __init__(self) -> None:
        self.built: list[Recorder] = []
        self.addresses: list[IAddress | None] = []

    def buildProtocol(self, addr: IAddress | None) -> Recorder:
        protocol = Recorder()
        protocol.factory = self
        self.built.append(protocol)
        self.addresses.append(addr)
        return protocol


class Hello(Resource):
    """
    A fallback that answers every GET or POST with a small fixed body.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"hello " + bytes(request.path)

    render_POST = render_GET


def memorySite(child: Resource, *, path: bytes = b"up") -> tuple[Site, Clock]:
    """
    A L{Site} whose root has C{child} at C{/path}, and a plain L{Hello} at
    C{/hello}, on a fake clock.
    """
    root = Resource()
    root.putChild(path, child)
    root.putChild(b"hello", Hello())
    clock = Clock()
    site = Site(root, reactor=clock)
    site.logFile = _NullLog()  # keep trial's log quiet; tests replace it
    return site, clock


class _NullLog:
    def write(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


class ListLog:
    """
    An access-log file that keeps its lines.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, data: str) -> None:
        self.lines.extend(data.splitlines())

    def close(self) -> None:
        pass


@implementer(IPushProducer)
class IdleProducer:
    """
    A streaming producer that never produces.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, like TCP and TLS transports, knows its
    protocol and lets a producer be unregistered when none is.
    """

    protocol: Any = None

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


def connect(site: Site) -> tuple[Any, StringTransport]:
    """
    Connect a channel of C{site} to a L{TCPLikeTransport}.
    """
    protocol = site.buildProtocol(PEER)
    transport = TCPLikeTransport(hostAddress=HOST, peerAddress=PEER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def rawRequest(
    method: bytes = b"GET",
    path: bytes = b"/up",
    version: bytes = b"HTTP/1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> bytes:
    """
    The bytes of one request; C{headers} default to an upgrade offer of
    C{foo/2}.
    """
    if headers is None:
        headers = [
            (b"Host", b"example.com"),
            (b"Connection", b"Upgrade"),
            (b"Upgrade", b"foo/2"),
        ]
    lines = [method + b" " + path + b" " + version]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def offer(
    upgrade: bytes = b"foo/2",
    connection: bytes | None = b"Upgrade",
    *extra: tuple[bytes, bytes],
    **request: Any,
) -> bytes:
    """
    A request (see L{rawRequest}) with C{Host: x}, C{connection} as its
    Connection (none if L{None}), C{upgrade} as its Upgrade, then C{extra}.
    """
    headers = [(b"Host", b"x")]
    if connection is not None:
        headers.append((b"Connection", connection))
    headers.append((b"Upgrade", upgrade))
    headers.extend(extra)
    return rawRequest(headers=headers, **request)


SWITCHED_FOO = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\nConnection: Upgrade\r\n\r\n"
)


class Response:
    """
    One parsed HTTP/1.1 response.
    """

    def __init__(self, status: bytes, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def code(self) -> int:
        return int(self.status.split(b" ")[1])

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def names(self) -> list[bytes]:
        """
        The header names in order, lower-cased, without the ever-changing
        Date and Server.
        """
        return [
            n.lower() for n, _ in self.headers if n.lower() not in (b"date", b"server")
        ]

    def __repr__(self) -> str:
        return f"Response({self.status!r}, {self.headers!r}, {self.body!r})"


def parseResponses(data: bytes, *, head: bool = False) -> tuple[list[Response], bytes]:
    """
    Parse every complete response in C{data}; return them and the rest.
    1xx responses have no body (RFC 9112 §6.3).
    """
    responses = []
    while b"\r\n\r\n" in data:
        headBytes, data = data.split(b"\r\n\r\n", 1)
        status, *lines = headBytes.split(b"\r\n")
        headers = [tuple(line.split(b": ", 1)) for line in lines]
        response = Response(status, headers, b"")  # type: ignore[arg-type]
        code = response.code
        if 100 <= code < 200 or code in (204, 304) or head:
            pass
        elif response.header(b"content-length"):
            length = int(response.header(b"content-length")[0])
            response.body, data = data[:length], data[length:]
        elif response.header(b"transfer-encoding") == [b"chunked"]:
            body = b""
            while True:
                size, data = data.split(b"\r\n", 1)
                n = int(size, 16)
                body += data[:n]
                data = data[n + 2 :]
                if n == 0:
                    break
            response.body = body
        responses.append(response)
    return responses, data
