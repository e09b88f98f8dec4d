"""
Benchmark server: one twisted.web L{Site} on 127.0.0.1 with

  - C{/plain}: a leaf resource answering C{b"ok"} (the plain GET cycle);
  - C{/echo}: an L{UpgradeResource} whose registry maps the token C{echo} to
    a raw echo protocol (the upgrade cycle);
  - C{/switch}: the switch alone, for reference: every request is answered
    with a 101 to the echo protocol through the plugin's C{switchProtocol}
    at once, with no negotiation, registry or checks (do not serve this);

and, on a second port, the same echo protocol listening directly (no HTTP):
what one round trip costs Twisted itself, for reference.

Usage::

    PYTHONPATH=. python benchmarks/server.py [PORT] [--cprofile FILE]

Prints C{ECHO_PORT n}, C{REACTOR name} and C{PORT n} on stdout once
listening, and runs until killed (SIGTERM/SIGINT stop the reactor cleanly,
which is when C{--cprofile} writes its stats): see serving.py. No access log file and no
log observers.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from serving import HOST, parseArguments, serve
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from upgrade_plugin import UpgradeRegistry, UpgradeResource
from upgrade_plugin._switch import switchProtocol


class Echo(Protocol):
    """
    Write back every byte received.
    """

    def dataReceived(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)


class Plain(Resource):
    """
    The smallest GET: C{200}, C{b"ok"}.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"ok"


class SwitchOnly(Resource):
    """
    Switch every request to L{Echo} without looking at it: what the switch
    itself costs, with nothing of L{UpgradeResource}'s negotiation.
    """

    isLeaf = True

    def render(self, request: Request) -> int:
        switchProtocol(
            request, Echo(), upgrade=b"echo", headers=(), upgradeRequest=None
        )
        return NOT_DONE_YET


def makeSite() -> Site:
    registry = UpgradeRegistry()
    registry.register("echo", Factory.forProtocol(Echo))
    root = Resource()
    root.putChild(b"plain", Plain())
    root.putChild(b"echo", UpgradeResource(registry))
    root.putChild(b"switch", SwitchOnly())
    return Site(root)


def main(argv: list[str] | None = None) -> int:
    args = parseArguments(
        "Benchmark server: /plain (GET), /echo (Upgrade: echo) and /switch.",
        argv,
    )
    tcp = cast(IReactorTCP, reactor)
    echoFactory: Any = Factory.forProtocol(Echo)
    echo: Any = tcp.listenTCP(0, echoFactory, interface=HOST)
    print(f"ECHO_PORT {echo.getHost().port}", flush=True)
    return serve(makeSite(), args.port, args.cprofile)


if __name__ == "__main__":
    sys.exit(main())
