"""
What the benchmark servers (server.py, wsserver.py, h2server.py) share: the
command line C{[KIND] [PORT] [--cprofile FILE]}, listening on 127.0.0.1,
the banner (C{REACTOR name}, then C{PORT n}, which procs.py reads), and
running the reactor until SIGTERM/SIGINT, optionally under cProfile (its
stats are written when the reactor stops). No access log, no log observers.
"""

from __future__ import annotations

import argparse
import cProfile
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorCore, IReactorSSL, IReactorTCP

__all__ = ["HOST", "parseArguments", "serve"]

HOST = "127.0.0.1"


def parseArguments(
    description: str,
    argv: list[str] | None = None,
    kinds: Sequence[str] | None = None,
) -> argparse.Namespace:
    """
    C{[KIND] PORT --cprofile FILE}: C{kind} (only if C{kinds} is given),
    C{port} (default 0: a free one) and C{cprofile}.
    """
    parser = argparse.ArgumentParser(description=description)
    if kinds is not None:
        parser.add_argument("kind", choices=kinds)
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument(
        "--cprofile",
        metavar="FILE",
        help="run the reactor under cProfile and dump the stats to FILE on exit",
    )
    return parser.parse_args(argv)


def serve(factory: Any, port: int, cprofile: str | None, tls: Any | None = None) -> int:
    """
    Listen with C{factory} on C{HOST:port} (TCP, or TLS with the server
    options C{tls}), print the banner, and run the reactor until it stops.
    """
    listening: Any
    if tls is None:
        tcp = cast(IReactorTCP, _reactor)
        listening = tcp.listenTCP(port, factory, interface=HOST)
    else:
        ssl = cast(IReactorSSL, _reactor)
        listening = ssl.listenSSL(port, factory, tls, interface=HOST)
    print(f"REACTOR {type(_reactor).__name__}", flush=True)
    print(f"PORT {listening.getHost().port}", flush=True)
    core = cast(IReactorCore, _reactor)
    if cprofile:
        profiler = cProfile.Profile()
        profiler.runcall(core.run)
        profiler.dump_stats(cprofile)
    else:
        core.run()
    return 0
