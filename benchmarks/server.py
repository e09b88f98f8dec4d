"""
Benchmark server: one twisted.web L{Site} on 127.0.0.1 with

  - C{/plain}: a leaf resource answering C{b"ok"} (the plain GET cycle);
  - C{/echo}: an L{UpgradeResource} whose registry maps the token C{echo} to
    a raw echo protocol (the upgrade cycle).

Usage::

    PYTHONPATH=. python benchmarks/server.py [PORT] [--cprofile FILE]

Prints C{PORT n} (and then C{REACTOR name}) on stdout once listening, and
runs until killed (SIGTERM/SIGINT stop the reactor cleanly, which is when
C{--cprofile} writes its stats). No access log file and no log observers.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
from typing import cast

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorCore, IReactorTCP
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from upgrade_plugin import UpgradeRegistry, UpgradeResource

HOST = "127.0.0.1"


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


def makeSite() -> Site:
    registry = UpgradeRegistry()
    registry.register("echo", Factory.forProtocol(Echo))
    root = Resource()
    root.putChild(b"plain", Plain())
    root.putChild(b"echo", UpgradeResource(registry))
    return Site(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark server: /plain (GET) and /echo (Upgrade: echo)."
    )
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument(
        "--cprofile",
        metavar="FILE",
        help="run the reactor under cProfile and dump the stats to FILE on exit",
    )
    args = parser.parse_args(argv)

    tcp = cast(IReactorTCP, _reactor)
    core = cast(IReactorCore, _reactor)
    # Site's protocol is twisted.web's proxyForInterface wrapper, which
    # Twisted's own annotations do not accept as a ServerFactory protocol.
    site = makeSite()
    port = tcp.listenTCP(args.port, site, interface=HOST)  # type: ignore[arg-type]
    print(f"PORT {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    print(f"REACTOR {type(_reactor).__name__}", flush=True)

    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.runcall(core.run)
        profiler.dump_stats(args.cprofile)
    else:
        core.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
