"""
The demo that C{twistd -n upgrade} serves with no options: a page whose
script round-trips a WebSocket message through the upgrade, a WebSocket
echo at C{/ws/echo}, a raw C{echo} protocol at C{/echo}, and (through the
site) h2c.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.static import Data
from zope.interface import implementer

from ._interfaces import IUpgradeAware, UpgradeRequest
from ._registry import UpgradeRegistry
from .resource import UpgradeResource

__all__ = ["EchoProtocol", "WebSocketEcho", "demoResource", "echoFactory"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>upgrade_plugin demo</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
       line-height: 1.5; padding: 0 1rem; }
code, pre { background: #f3f3f3; padding: 0 .2em; }
pre { padding: .6em; overflow-x: auto; }
#status { font-weight: bold; }
</style>
</head>
<body>
<h1>HTTP/1.1 Upgrade on Twisted</h1>
<p>This page opened a WebSocket to <code>/ws/echo</code>: its request carried
<code>Connection: Upgrade</code> and <code>Upgrade: websocket</code>, the server
answered <code>101 Switching Protocols</code>, and the same connection went on
as a WebSocket.</p>
<p>WebSocket round trip: <span id="status">waiting</span></p>
<pre id="log"></pre>
<h2>Try the other targets</h2>
<ul>
<li>h2c (HTTP/2 over cleartext by upgrade):
  <pre>curl -v --http2 http://HOST/
nghttp -nv -u http://HOST/</pre></li>
<li>HTTP/2 with prior knowledge on the same port:
  <pre>curl --http2-prior-knowledge http://HOST/</pre></li>
<li>WebSocket from a terminal:
  <pre>python -m websockets ws://HOST/ws/echo</pre></li>
<li>A raw protocol: <code>Upgrade: echo</code> at <code>/echo</code> switches to
  an echo protocol that first answers the original request:
  <pre>python - &lt;&lt;'EOF'
import socket, time
s = socket.create_connection(("HOSTNAME", PORT))
s.sendall(b"GET /echo HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\n"
          b"Upgrade: echo\\r\\n\\r\\nhello")
time.sleep(0.3); print(s.recv(4096).decode())
EOF</pre></li>
<li>Without an upgrade, <code>/echo</code> and <code>/ws/echo</code> answer
  <code>426 Upgrade Required</code>: <code>curl -i http://HOST/echo</code></li>
</ul>
<script>
(function () {
  var host = location.host, parts = host.split(":");
  document.querySelectorAll("pre, code").forEach(function (pre) {
    pre.textContent = pre.textContent.split("HOSTNAME").join(parts[0])
      .split("PORT").join(parts[1] || "80").split("HOST").join(host);
  });
  var status = document.getElementById("status");
  var log = document.getElementById("log");
  // Headless Chromium's --virtual-time-budget jumps its clock ahead while a
  // page idles on a socket; a short chain of tasks keeps the page busy until
  // the round trip is over (a few ms in a real browser).
  var waiting = true, turns = 0, spin = new MessageChannel();
  spin.port1.onmessage = function () {
    if (waiting && ++turns < 200000) spin.port2.postMessage(null);
  };
  spin.port2.postMessage(null);
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var message = "hello " + Math.floor(Math.random() * 1e6);
  var ws = new WebSocket(scheme + host + "/ws/echo");
  ws.onopen = function () { log.textContent += "open\\n"; ws.send(message); };
  ws.onmessage = function (event) {
    log.textContent += "received: " + event.data + "\\n";
    status.textContent = event.data === message ? "echo ok" : "echo mismatch";
    waiting = false;
    ws.close();
  };
  ws.onerror = function () { status.textContent = "error"; waiting = false; };
  ws.onclose = function (event) {
    log.textContent += "closed " + event.code + "\\n";
    waiting = false;
  };
})();
</script>
</body>
</html>
"""


class WebSocketEcho(WebSocketServerProtocol):
    """
    Echoes every WebSocket message.
    """

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


@implementer(IUpgradeAware)
class EchoProtocol(Protocol):
    """
    A raw echo that first answers the request it was switched for, in its
    own words (RFC 9110 §7.8).
    """

    request: UpgradeRequest | None = None

    def upgradeAccepted(self, request: UpgradeRequest) -> None:
        self.request = request

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.request is not None:
            transport.write(
                b"echo: switched for %s %s\r\n"
                % (self.request.method, self.request.uri)
            )

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)


def echoFactory() -> Factory:
    return Factory.forProtocol(EchoProtocol)


def webSocketEchoFactory(allowedOrigins: list[str] | None = None) -> Any:
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketEcho
    if allowedOrigins:
        factory.setProtocolOptions(allowedOrigins=allowedOrigins)
    return factory


def demoResource(
    *, websocketRegistry: UpgradeRegistry, advertise: bool = False
) -> Resource:
    """
    The demo tree: C{/} (the page), C{/ws/echo} (WebSocket, through
    C{websocketRegistry}) and C{/echo} (the raw echo protocol).
    """
    root = Resource()
    root.putChild(b"", Data(PAGE.encode("utf-8"), "text/html; charset=utf-8"))
    ws = Resource()
    ws.putChild(
        b"echo",
        UpgradeResource(websocketRegistry, advertise=advertise, logDecisions=True),
    )
    root.putChild(b"ws", ws)
    echo = UpgradeRegistry()
    echo.register("echo", echoFactory())
    root.putChild(
        b"echo", UpgradeResource(echo, advertise=advertise, logDecisions=True)
    )
    return root
