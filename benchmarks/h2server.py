"""
Servers for benchmarks/site.py, one kind per process, all on 127.0.0.1 and
all answering C{GET /plain} with C{200} and the body C{b"ok"} (server.py's
L{Plain} leaf resource; for hypercorn, an ASGI app answering the same):

  - C{plain}: a twisted.web L{Site}, cleartext;
  - C{ours}: L{UpgradeSite}C{(root, h2c=True)}, cleartext (HTTP/1.1, the h2c
    upgrade, HTTP/2 with prior knowledge);
  - C{twisted-tls}: a L{Site} on an C{ssl:} listener: Twisted's own HTTP/2,
    reached by ALPN (self-signed certificate from tests/tls.py);
  - C{ours-tls}: L{UpgradeSite}C{(root, h2c=True)} on the same kind of
    C{ssl:} listener (its HTTP/2 is then Twisted's, by ALPN): a reference
    for what TLS itself costs;
  - C{hypercorn}: hypercorn (asyncio, one process) on a plain TCP bind,
    which serves HTTP/1.1, the h2c upgrade and HTTP/2 with prior knowledge.

Usage::

    PYTHONPATH=. python benchmarks/h2server.py KIND [PORT] [--cprofile FILE]

Prints C{REACTOR name} (not for hypercorn) and C{PORT n} once listening,
and runs until SIGTERM/SIGINT: see serving.py. No access log, no log
observers.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from server import Plain
from serving import HOST, parseArguments, serve
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.tls import serverOptions
from upgrade_plugin import UpgradeSite

KINDS = ("plain", "ours", "twisted-tls", "ours-tls", "hypercorn")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """
    The ASGI twin of L{Plain}: C{200}, C{text/html}, C{b"ok"}.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def serveHypercorn(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))
    sock.listen(100)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    # Hypercorn closes a connection after 1000 requests by default; Twisted
    # has no such limit, and h2load -D does not reconnect.
    config.keep_alive_max_requests = 2**31

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # At SIGTERM hypercorn cancels the connection tasks still open,
            # and asyncio reports each cancellation: not worth a traceback.
            if not isinstance(context.get("exception"), asyncio.CancelledError):
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        print(f"PORT {sock.getsockname()[1]}", flush=True)
        await serve(app, config)  # type: ignore[arg-type]

    asyncio.run(run())


def makeSite(kind: str) -> Site:
    root = Resource()
    root.putChild(b"plain", Plain())
    if kind in ("ours", "ours-tls"):
        return UpgradeSite(root, h2c=True)
    return Site(root)


def main(argv: list[str] | None = None) -> int:
    args = parseArguments("GET /plain benchmark server.", argv, KINDS)
    if args.kind == "hypercorn":
        serveHypercorn(args.port)
        return 0
    tls = serverOptions() if args.kind.endswith("-tls") else None
    return serve(makeSite(args.kind), args.port, args.cprofile, tls)


if __name__ == "__main__":
    sys.exit(main())
