"""
L{WebSocketUpgrade} against real WebSocket peers that nobody here wrote, over
127.0.0.1: npm C{ws} under node, headless Chromium, and Python C{websockets}
and Chromium through an nginx reverse proxy.

Each peer runs the opening handshake of RFC 6455 §4.1, sends one text message
(§5.6) and expects it back from an autobahn echo protocol; the echo is
asserted on what the peer itself reports.

The peers are external programs: when one is missing its tests are skipped,
except under C{UPGRADE_PLUGIN_REQUIRE_PEERS=1} (CI), where they fail. The
npm C{ws} module is looked for in C{UPGRADE_PLUGIN_NODE_MODULES} (a
C{node_modules} directory; relative paths are taken from the repository
root), by default C{.ci/node/node_modules}, where C{.ci/run} installs it.

The peers, and nginx, are run by L{tests.processes.ProcessTestCase}: each in
a session of its own, so that it and all it forks (Chromium's helpers,
nginx's workers) can be signalled as one process group, and every wait for
one is bounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from upgrade_plugin import UpgradeRegistry, UpgradeResource
from upgrade_plugin.websocket import WebSocketUpgrade

from .processes import (
    CHROMIUM_MISSING,
    NGINX_MISSING,
    REPO,
    SHORT_TIMEOUT,
    ProcessTestCase,
    childEnvironment,
    findProgram,
    needs,
    websocketsEcho,
)

reactor: Any = _reactor


def _nodeModules() -> Path:
    configured = os.environ.get("UPGRADE_PLUGIN_NODE_MODULES")
    if not configured:
        return REPO / ".ci" / "node" / "node_modules"
    return REPO / configured  # an absolute path stays as it is


NODE_MODULES = _nodeModules()
NODE = findProgram("node")


def _nodeMissing() -> str | None:
    if NODE is None:
        return "node is not on PATH"
    if not (NODE_MODULES / "ws").is_dir():
        return (
            f"npm module ws is not in {NODE_MODULES} (npm install --prefix .ci/node"
            " ws, or set UPGRADE_PLUGIN_NODE_MODULES to a node_modules holding it)"
        )
    return None


NODE_MISSING = _nodeMissing()


class Echo(WebSocketServerProtocol):
    """
    Sends every message back as it came, text as text and binary as binary
    (RFC 6455 §5.6).
    """

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def _acceptDeflate(offers: list[Any]) -> Any:
    """
    Accept the first permessage-deflate offer (RFC 7692 §5): every peer here
    offers it, so their compressed frames are exercised too.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>WebSocket echo</title>
<p id="result">waiting</p>
<p id="extensions"></p>
<script>
const result = document.getElementById("result");
// Chromium dumps the DOM once --virtual-time-budget has run out, and virtual
// time jumps ahead whenever the page is idle, e.g. while it waits for the
// socket. A chain of immediate tasks keeps it busy (and the clock still)
// until the exchange is over, for at most a bounded number of turns.
let waiting = true;
let turns = 0;
const spin = new MessageChannel();
spin.port1.onmessage = () => {
  if (waiting && ++turns < 500000) spin.port2.postMessage(null);
};
spin.port2.postMessage(null);
const ws = new WebSocket("ws://" + location.host + "/ws/echo");
ws.onopen = () => ws.send("ping-123");
ws.onmessage = (event) => {
  result.textContent = "echo ok: " + event.data;
  document.getElementById("extensions").textContent =
    "extensions: " + ws.extensions;
  waiting = false;
  ws.close(1000);
};
ws.onerror = () => {
  result.textContent = "error";
  waiting = false;
};
ws.onclose = (event) => {
  if (waiting) result.textContent = "closed " + event.code;
  waiting = false;
};
</script>
"""

NODE_CLIENT = """\
const WebSocket = require("ws");
const [url, message] = process.argv.slice(2);
const ws = new WebSocket(url);
const timer = setTimeout(() => { console.error("timed out"); process.exit(2); }, 10000);
ws.on("open", () => ws.send(message));
ws.on("message", (data, isBinary) => {
  const echo = data.toString();
  console.log(JSON.stringify({echo, isBinary, extensions: ws.extensions}));
  ws.close(1000);
});
ws.on("close", (code) => {
  clearTimeout(timer);
  console.log(JSON.stringify({close: code}));
});
ws.on("error", (error) => { console.error(error.message); process.exit(1); });
"""


class InteropTests(ProcessTestCase):
    """
    Real peers against a L{Site} with an HTML page at C{/} and
    L{WebSocketUpgrade} at C{/ws/echo}.
    """

    def setUp(self) -> None:
        factory = WebSocketServerFactory()
        factory.protocol = Echo
        factory.setProtocolOptions(perMessageCompressionAccept=_acceptDeflate)
        registry = UpgradeRegistry()
        registry.register("websocket", WebSocketUpgrade(factory))
        ws = Resource()
        ws.putChild(b"echo", UpgradeResource(registry))
        root = Resource()
        root.putChild(b"", Data(PAGE, "text/html; charset=utf-8"))
        root.putChild(b"ws", ws)
        self.site = Site(root)
        self.site.logFile = _NullLog()
        self.listeningPort = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port: int = self.listeningPort.getHost().port
        self.addCleanup(self.stopServing)

    async def stopServing(self) -> None:
        """
        Stop listening and wait, boundedly, for every connection the peers
        made to be closed: an upgraded one belongs to autobahn's protocol
        now, and nothing may be left in the reactor.
        """
        await self.listeningPort.stopListening()
        for _ in range(int(SHORT_TIMEOUT / 0.05)):
            if not self.serverConnections():
                return
            await deferLater(reactor, 0.05)
        for connection in self.serverConnections():
            connection.abortConnection()
        self.fail("the peers left connections open")

    def serverConnections(self) -> list[Any]:
        selectables = {*reactor.getReaders(), *reactor.getWriters()}
        return [
            s for s in selectables if getattr(s, "server", None) is self.listeningPort
        ]

    @needs(NODE_MISSING)
    async def test_nodeWs(self) -> None:
        """
        npm C{ws}: handshake (RFC 6455 §4.1), one text message echoed, and a
        clean closing handshake with 1000 (§7.4.1).
        """
        assert NODE is not None
        script = os.path.join(self.temporaryDirectory(), "client.js")
        with open(script, "w") as f:
            f.write(NODE_CLIENT)
        url = f"ws://127.0.0.1:{self.port}/ws/echo"
        process = await self.runPeer(
            [NODE, script, url, "hello from ws"],
            childEnvironment(NODE_PATH=str(NODE_MODULES)),
        )
        lines = [json.loads(line) for line in process.stdout.splitlines()]
        self.assertEqual(
            lines,
            [
                {
                    "echo": "hello from ws",
                    "isBinary": False,
                    "extensions": "permessage-deflate",
                },
                {"close": 1000},
            ],
        )

    @needs(CHROMIUM_MISSING)
    async def test_chromium(self) -> None:
        """
        A browser's WebSocket: the page's script gets its message echoed.
        """
        dom = await self.chromium(f"http://127.0.0.1:{self.port}/")
        self.assertIn("echo ok: ping-123", dom)
        self.assertIn("extensions: permessage-deflate", dom)

    @needs(NGINX_MISSING)
    async def test_nginxWebsockets(self) -> None:
        """
        Python C{websockets} through nginx: nginx passes the 101 and then
        the connection as a tunnel.
        """
        port = await self.nginx(self.port)
        echo, extensions, closeCode = await deferToThread(
            websocketsEcho, f"ws://127.0.0.1:{port}/ws/echo", "through nginx"
        )
        self.assertEqual(echo, "through nginx")
        self.assertIsNotNone(extensions)
        self.assertTrue(str(extensions).startswith("permessage-deflate"))
        self.assertEqual(closeCode, 1000)

    @needs(NGINX_MISSING, CHROMIUM_MISSING)
    async def test_nginxChromium(self) -> None:
        """
        Chromium through nginx: the page and its WebSocket both come through
        the proxy.
        """
        port = await self.nginx(self.port)
        dom = await self.chromium(f"http://127.0.0.1:{port}/")
        self.assertIn("echo ok: ping-123", dom)


class _NullLog:
    def write(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass
