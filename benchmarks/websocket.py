"""
WebSocket side by side, in one run: upgrade_plugin's WebSocketUpgrade vs
Twisted's WebSocketResource, autobahn's WebSocketResource and a bare
autobahn server, each in its own process (benchmarks/wsserver.py), all
echoing.

Modes (one cycle each; every byte validated):

  - C{handshake}: connect; the handshake (fixed C{Sec-WebSocket-Key}); read
    the 101 head (C{HTTP/1.1 101}, C{Upgrade: websocket}, the exact
    C{Sec-WebSocket-Accept}) with nothing after it; a masked 16-byte text
    frame; read exactly its unmasked echo; a masked close frame (1000); read
    exactly the server's close frame (1000); close the socket;
  - C{early}: the same, but the text frame goes in the same write as the
    handshake, so the 101 head and the echo may come together. Servers that
    lose bytes sent right behind the request never echo: those cycles end
    in the per-cycle timeout (1 s) and count as timeouts;
  - C{echo}: per connection one handshake (not counted), then 1 KiB binary
    messages ping-pong (one outstanding per connection); a cycle is one
    message echoed back exactly.

Usage::

    cd /work/main && python benchmarks/websocket.py [--duration 2]
        [--rounds 3] [--servers ours,autobahn] [--modes echo]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import ServerProcess
from rawload import LoadResult, Script, Step, Totals, runLoad

MODES = ("handshake", "early", "echo")
# benchmarks/wsserver.py KINDS, in table order.
KINDS = ("ours", "twisted", "autobahn-resource", "autobahn")
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(
    hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
)
MASK = b"\x37\xfa\x21\x3d"
TEXT = b"0123456789ABCDEF"
BINARY = bytes(range(256)) * 4
assert len(TEXT) == 16 and len(BINARY) == 1024

TARGETS = (
    # (label, numerator (server, mode), denominator (server, mode), target)
    ("ours/twisted handshake", ("ours", "handshake"), ("twisted", "handshake"), 1.25),
    (
        "ours/autobahn-resource handshake",
        ("ours", "handshake"),
        ("autobahn-resource", "handshake"),
        1.6,
    ),
    ("ours early/ours handshake", ("ours", "early"), ("ours", "handshake"), 0.95),
    ("ours/autobahn echo msgs", ("ours", "echo"), ("autobahn", "echo"), 0.95),
)


def clientFrame(opcode: int, payload: bytes) -> bytes:
    """
    A final, masked client frame (RFC 6455 §5.2, §5.3).
    """
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def serverFrame(opcode: int, payload: bytes) -> bytes:
    """
    A final, unmasked server frame.
    """
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


def handshakeBytes(port: int) -> bytes:
    return (
        b"GET /ws HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    ) % (port, KEY)


_ACCEPT_NAME = b"\r\nsec-websocket-accept:"


def checkSwitch(head: bytes) -> str | None:
    """
    A 101 to websocket with the right C{Sec-WebSocket-Accept}.
    """
    if not head.startswith(b"HTTP/1.1 101 "):
        return f"not a 101: {head[:40]!r}"
    lowered = head.lower()
    if b"\r\nupgrade: websocket\r\n" not in lowered:
        return "no Upgrade: websocket"
    index = lowered.find(_ACCEPT_NAME)
    if index < 0:
        return "no Sec-WebSocket-Accept"
    index += len(_ACCEPT_NAME)
    value = head[index : head.index(b"\r\n", index)].strip()
    if value != ACCEPT:
        return f"wrong Sec-WebSocket-Accept {value!r}"
    return None


def script(mode: str, port: int) -> Script:
    handshake = handshakeBytes(port)
    text = clientFrame(0x1, TEXT)
    close = Step(clientFrame(0x8, struct.pack("!H", 1000)), expect=b"\x88\x02\x03\xe8")
    if mode == "handshake":
        return Script(
            [
                Step(handshake, head=checkSwitch),
                Step(text, expect=serverFrame(0x1, TEXT)),
                close,
            ]
        )
    if mode == "early":
        return Script(
            [
                Step(handshake + text, head=checkSwitch, expect=serverFrame(0x1, TEXT)),
                close,
            ]
        )
    if mode == "echo":
        return Script(
            [
                Step(handshake, head=checkSwitch),
                Step(clientFrame(0x2, BINARY), expect=serverFrame(0x2, BINARY)),
            ],
            loop=1,
        )
    raise ValueError(f"unknown mode {mode!r}")


def printTables(
    totals: dict[tuple[str, str], Totals], servers: list[str], modes: list[str]
) -> None:
    unit = {"handshake": "cycles/s", "early": "cycles/s", "echo": "msgs/s"}
    for mode in modes:
        header = (
            f"{mode + ' (' + unit[mode] + ')':<24}{'rate':>10}{'min..max round':>18}"
            f"{'errors':>8}{'timeouts':>10}{'srv CPU':>9}{'srv us/cycle':>14}"
        )
        print(header)
        print("-" * len(header))
        for server in servers:
            total = totals[server, mode]
            spread = f"{min(total.rates):.0f}..{max(total.rates):.0f}"
            perCycle = total.cpuPerCycle
            print(
                f"{server:<24}{total.rate:>10.1f}{spread:>18}{total.errors:>8}"
                f"{total.timeouts:>10}{total.cpuShare:>9.0%}"
                f"{'-' if perCycle is None else f'{perCycle:.1f}':>14}"
            )
        print()


def pairedMedian(a: list[float], b: list[float]) -> float | None:
    """
    The median over rounds of C{a[i] / b[i]}: each pair ran in the same
    round, so a disturbance that hit one round weighs once.
    """
    ratios = [x / y for x, y in zip(a, b, strict=False) if y]
    return statistics.median(ratios) if ratios else None


def printRatios(totals: dict[tuple[str, str], Totals]) -> None:
    header = (
        f"{'ratio':<34}{'rate':>8}{'target':>8}{'':>6}"
        f"{'median of rounds':>18}{'srv CPU/cycle (inv.)':>22}"
    )
    print(header)
    print("-" * len(header))
    for label, numerator, denominator, target in TARGETS:
        if numerator not in totals or denominator not in totals:
            continue
        a, b = totals[numerator], totals[denominator]
        rate = a.rate / b.rate if b.rate else float("inf")
        verdict = "ok" if rate >= target else "MISS"
        median = pairedMedian(a.rates, b.rates)
        cpuA, cpuB = a.cpuPerCycle, b.cpuPerCycle
        cpu = f"{cpuB / cpuA:.3f}" if cpuA and cpuB else "n/a"
        print(
            f"{label:<34}{rate:>8.3f}{target:>8.2f}{verdict:>6}"
            f"{'n/a' if median is None else f'{median:.3f}':>18}{cpu:>22}"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="WebSocket: ours vs Twisted, autobahn resource, bare autobahn."
    )
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per measurement"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warmup", type=float, default=0.5, help="seconds per server and mode"
    )
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=20,
        help="connections in flight in the handshake and early modes, in total",
    )
    parser.add_argument(
        "--echo-connections",
        type=int,
        default=10,
        help="upgraded connections in the echo mode, in total",
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="per cycle")
    parser.add_argument("--servers", default=",".join(KINDS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--cprofile",
        metavar="FILE",
        help="run the 'ours' server under cProfile and write its stats to FILE",
    )
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if not set(servers) <= set(KINDS) or not set(modes) <= set(MODES):
        parser.error(f"servers are among {KINDS}, modes among {MODES}")
    if args.rounds < 1 or args.duration <= 0 or args.processes < 1:
        parser.error("--rounds, --duration and --processes must be positive")

    processes: dict[str, ServerProcess] = {}
    totals = {(s, m): Totals() for s in servers for m in modes}
    try:
        for server in servers:
            extra = ["--cprofile", args.cprofile] if args.cprofile else []
            processes[server] = ServerProcess(
                "wsserver.py", server, *(extra if server == "ours" else [])
            )
        print(
            "servers: "
            + ", ".join(f"{s} pid {p.pid} port {p.port}" for s, p in processes.items())
        )
        print(
            f"client: {args.processes} processes; {args.connections} connections "
            f"(handshake, early), {args.echo_connections} (echo); "
            f"{args.rounds} rounds x {args.duration:g} s per server and mode, "
            f"warm-up {args.warmup:g} s; per-cycle timeout {args.timeout:g} s; "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )

        def load(server: str, mode: str, duration: float, measure: bool) -> LoadResult:
            process = processes[server]
            connections = args.echo_connections if mode == "echo" else args.connections
            return runLoad(
                script(mode, process.port),
                process.port,
                duration=duration,
                processes=args.processes,
                concurrency=max(1, connections // args.processes),
                timeout=args.timeout,
                ramp=0.3 if measure else 0.1,
                probe=process.cpuSeconds if measure else None,
            )

        if args.warmup > 0:
            for mode in modes:
                for server in servers:
                    load(server, mode, args.warmup, measure=False)
        for index in range(args.rounds):
            for mode in modes[index % len(modes) :] + modes[: index % len(modes)]:
                shift = index % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    result = load(server, mode, args.duration, measure=True)
                    totals[server, mode].add(result)
                    share = (result.probeDelta or 0.0) / result.seconds
                    print(
                        f"  round {index + 1} {mode:<10} {server:<18}"
                        f"{result.rate:>9.1f}/s  errors {result.errors}"
                        f"  timeouts {result.timeouts}  srv CPU {share:.0%}",
                        flush=True,
                    )
    finally:
        for process in processes.values():
            process.stop()

    print()
    printTables(totals, servers, modes)
    printRatios(totals)
    print(
        f"load average at the end {os.getloadavg()[0]:.2f}; srv CPU near 100% "
        "means the server was the bottleneck"
    )
    failed = False
    for (server, mode), total in totals.items():
        for sample in total.errorSamples:
            print(f"error in {server} {mode}: {sample}")
        failed = failed or bool(total.errors or (mode != "early" and total.timeouts))
    for server, process in processes.items():
        summary = process.stderrSummary()
        if summary:
            print(f"server {server}: {summary}")
    if args.cprofile:
        print(f"profile of 'ours' written to {args.cprofile}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
