"""
The cycles of benchmarks/run.py against benchmarks/server.py, as
L{rawload.Script}s (a new connection per cycle, every cycle validated byte
for byte), and a load client to use alone.

Modes (one cycle each):

  - C{get}: connect, C{GET /plain HTTP/1.1}, read the response to the end of
    its C{Content-Length} body (must be C{200} and C{b"ok"}), close;
  - C{upgrade}: connect, C{GET /echo HTTP/1.1} with C{Connection: Upgrade}
    and C{Upgrade: echo}, read the head up to C{\\r\\n\\r\\n} (must be
    C{HTTP/1.1 101} naming C{Upgrade: echo}, with nothing after it), send 16
    bytes, read the same 16 bytes back, close;
  - C{upgrade-early}: the same, but the 16 bytes go in the same C{send} as
    the request; the 101 head and the echo may arrive together;
  - C{switch}, C{switch-early}: C{upgrade} and C{upgrade-early} against
    C{/switch}, the switch without negotiation (a reference point);
  - C{echo}, C{echo-twice}: against server.py's plain Twisted echo port (no
    HTTP): connect, send 16 bytes, read them back, close; C{echo-twice}
    sends and reads twice. Their difference is what one more round trip
    costs Twisted, which is what C{upgrade} does more than C{upgrade-early}.

rawload.py's forked epoll workers play them; a cycle slower than C{timeout}
is an error here (rawload counts it apart, as a timeout: see
L{timeoutsAsErrors}).

Linux only (select.epoll).

Usage::

    python benchmarks/loadclient.py --port N --mode upgrade [--duration 5]
        [--processes 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from rawload import LoadResult, Script, Step, runLoad

__all__ = [
    "ECHO_MODES",
    "MODES",
    "PAYLOAD",
    "requestBytes",
    "script",
    "timeoutsAsErrors",
]

MODES = (
    "get",
    "upgrade",
    "upgrade-early",
    "switch",
    "switch-early",
    "echo",
    "echo-twice",
)
# The modes played against server.py's ECHO_PORT rather than its PORT.
ECHO_MODES = ("echo", "echo-twice")
PAYLOAD = b"0123456789ABCDEF"
assert len(PAYLOAD) == 16
BODY = b"ok"


def requestBytes(mode: str, host: str, port: int) -> bytes:
    """
    The bytes a cycle of C{mode} sends first (for C{upgrade-early}, the
    request and the payload together).
    """
    hostLine = b"Host: %s:%d\r\n" % (host.encode("ascii"), port)
    if mode == "get":
        return b"GET /plain HTTP/1.1\r\n" + hostLine + b"\r\n"
    path = b"/echo"
    if mode.startswith("switch"):
        path = b"/switch"
        mode = "upgrade" + mode[len("switch") :]
    request = (
        b"GET "
        + path
        + b" HTTP/1.1\r\n"
        + hostLine
        + b"Connection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    if mode == "upgrade-early":
        return request + PAYLOAD
    if mode == "upgrade":
        return request
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def checkOK(head: bytes) -> str | None:
    """
    A C{200} whose C{Content-Length} is that of C{b"ok"}.
    """
    if not head.startswith(b"HTTP/1.1 200 "):
        return f"not a 200: {head[:40]!r}"
    lowered = head.lower()
    index = lowered.find(b"\r\ncontent-length:")
    if index < 0:
        return "no Content-Length"
    index += 17
    value = lowered[index : lowered.index(b"\r\n", index)].strip()
    if value != b"%d" % len(BODY):
        return f"Content-Length {value!r}, not {len(BODY)}"
    return None


def checkSwitch(head: bytes) -> str | None:
    """
    A C{101} to C{echo}.
    """
    if not head.startswith(b"HTTP/1.1 101 ") or (
        b"\r\nupgrade: echo\r\n" not in head.lower()
    ):
        return f"not a 101 to echo: {head[:40]!r}"
    return None


def script(mode: str, port: int, host: str = "127.0.0.1") -> Script:
    """
    The cycle of C{mode}; C{port} is server.py's C{PORT}, or its
    C{ECHO_PORT} for L{ECHO_MODES}.
    """
    if mode in ECHO_MODES:
        exchange = Step(PAYLOAD, expect=PAYLOAD)
        return Script([exchange] * (2 if mode == "echo-twice" else 1))
    request = requestBytes(mode, host, port)
    if mode == "get":
        return Script([Step(request, head=checkOK, expect=BODY)])
    if mode in ("upgrade", "switch"):
        # expect=b"": any byte after the 101 head is an error.
        return Script([Step(request, head=checkSwitch), Step(PAYLOAD, expect=PAYLOAD)])
    return Script([Step(request, head=checkSwitch, expect=PAYLOAD)])


def timeoutsAsErrors(result: LoadResult, timeout: float) -> LoadResult:
    """
    C{result} of L{rawload.runLoad} with its timeouts counted as errors.
    """
    if not result.timeouts:
        return result
    return replace(
        result,
        errors=result.errors + result.timeouts,
        timeouts=0,
        errorSamples=[
            *result.errorSamples,
            f"{result.timeouts} timeouts (cycles slower than {timeout:g} s)",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP GET / Upgrade load client.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="get")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="per process")
    parser.add_argument("--timeout", type=float, default=5.0, help="per cycle")
    args = parser.parse_args(argv)
    result = runLoad(
        script(args.mode, args.port, args.host),
        args.port,
        host=args.host,
        duration=args.duration,
        processes=args.processes,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    result = timeoutsAsErrors(result, args.timeout)
    print(
        f"{args.mode}: {result.rate:.1f} cycles/s "
        f"({result.cycles} in {result.seconds:g} s), errors {result.errors}"
    )
    for sample in result.errorSamples:
        print(f"  error: {sample}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
