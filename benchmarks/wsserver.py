"""
WebSocket echo servers for benchmarks/websocket.py, one kind per process,
all on 127.0.0.1 and all echoing every message as it came (text as text,
binary as binary):

  - C{ours}: a twisted.web L{Site} with L{UpgradeResource} at C{/ws}, its
    registry mapping C{websocket} to L{WebSocketUpgrade} of an autobahn
    L{WebSocketServerFactory} of L{AutobahnEcho};
  - C{twisted}: Twisted's own C{twisted.web.websocket.WebSocketResource} at
    C{/ws} (wsproto underneath), with L{TwistedEcho};
  - C{autobahn-resource}: autobahn's C{autobahn.twisted.resource.
    WebSocketResource} of the same kind of factory at C{/ws};
  - C{autobahn}: the autobahn factory listening directly (no twisted.web).

The three autobahn-based servers use identical factories (default options).

Usage::

    PYTHONPATH=. python benchmarks/wsserver.py KIND [PORT] [--cprofile FILE]

Prints C{REACTOR name} and C{PORT n} once listening, and runs until
SIGTERM/SIGINT (which stop the reactor, when C{--cprofile} writes its
stats): see serving.py. No access log, no log observers.
"""

from __future__ import annotations

import sys
from typing import Any

from autobahn.twisted.resource import WebSocketResource as AutobahnResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from serving import parseArguments, serve
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.websocket import WebSocketResource as TwistedResource
from twisted.web.websocket import WebSocketTransport

from upgrade_plugin import UpgradeRegistry, UpgradeResource
from upgrade_plugin.websocket import WebSocketUpgrade

KINDS = ("ours", "twisted", "autobahn-resource", "autobahn")


class AutobahnEcho(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class TwistedEcho:
    """
    Twisted's C{WebSocketProtocol}: the same echo.
    """

    transport: WebSocketTransport

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.transport.sendTextMessage(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.transport.sendBytesMessage(bytes(data))

    def connectionLost(self, reason: Failure) -> None:
        pass


class TwistedEchoFactory:
    """
    Twisted's C{WebSocketServerFactory} of L{TwistedEcho}.
    """

    def buildProtocol(self, request: Request) -> TwistedEcho:
        return TwistedEcho()


def autobahnFactory() -> Any:
    factory = WebSocketServerFactory()
    factory.protocol = AutobahnEcho
    return factory


def makeFactory(kind: str) -> Any:
    """
    What C{kind} listens with: a twisted.web L{Site}, or (C{autobahn}) the
    bare autobahn factory.
    """
    if kind == "autobahn":
        return autobahnFactory()
    root = Resource()
    if kind == "ours":
        registry = UpgradeRegistry()
        registry.register("websocket", WebSocketUpgrade(autobahnFactory()))
        root.putChild(b"ws", UpgradeResource(registry))
    elif kind == "twisted":
        root.putChild(b"ws", TwistedResource(TwistedEchoFactory()))
    elif kind == "autobahn-resource":
        root.putChild(b"ws", AutobahnResource(autobahnFactory()))
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return Site(root)


def main(argv: list[str] | None = None) -> int:
    args = parseArguments("WebSocket echo benchmark server.", argv, KINDS)
    return serve(makeFactory(args.kind), args.port, args.cprofile)


if __name__ == "__main__":
    sys.exit(main())
