"""
A runnable example: C{python -m upgrade_plugin.example [PORT]}.

Serves on 127.0.0.1 (default port 8080):
  - C{/}: a short page saying how to try it;
  - C{/echo}: C{Upgrade: echo} switches the connection to a raw echo
    protocol, which first answers the original request in its own way.

Try it with the snippet in README.md.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface import implementer

from . import IUpgradeAware, UpgradeRegistry, UpgradeRequest, UpgradeResource

PAGE = b"""<!doctype html>
<title>upgrade_plugin example</title>
<h1>upgrade_plugin example</h1>
<p><code>/echo</code> upgrades to a raw echo protocol on
<code>Connection: Upgrade</code> + <code>Upgrade: echo</code>; without them it
answers <code>426 Upgrade Required</code>.</p>
"""


@implementer(IUpgradeAware)
class Echo(Protocol):
    """
    Greets with the request it was switched for, then echoes.
    """

    request: UpgradeRequest | None = None

    def upgradeAccepted(self, request: UpgradeRequest) -> None:
        self.request = request

    def connectionMade(self) -> None:
        assert self.transport is not None and self.request is not None
        self.transport.write(
            b"echo: switched for %s %s\r\n" % (self.request.method, self.request.uri)
        )

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def makeSite() -> Site:
    registry = UpgradeRegistry()
    registry.register("echo", Factory.forProtocol(Echo))
    root = Resource()
    root.putChild(b"", Data(PAGE, "text/html; charset=utf-8"))
    root.putChild(b"echo", UpgradeResource(registry))
    return Site(root)


def main(argv: list[str]) -> None:
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    port = int(argv[1]) if len(argv) > 1 else 8080
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.listenTCP(port, makeSite(), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
