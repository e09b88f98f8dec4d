"""
Upgrade cycles vs plain GET cycles against benchmarks/server.py, in one run.

Starts the server (127.0.0.1, a free port), warms each mode up, then runs
C{--rounds} rounds of every mode back to back, rotating the order each round
to spread drift and noise, and prints one table:

  - cycles/s: all cycles of a mode over all its measured seconds, with the
    slowest and fastest round;
  - errors: failed cycles (the exit status is 1 if there were any);
  - srv CPU: the server's CPU time (user + system, /proc) during the
    measurement windows, as a share of one core; near 100% means the
    single-threaded server is the bottleneck, as intended;
  - srv us/cycle: server CPU time per completed cycle.

then the ratios to C{get}: the median of the rounds' own ratios (each
round's modes run within seconds of each other, so a machine that speeds up
or slows down between rounds moves both sides of a ratio together), with
the lowest and highest round, and the ratio of the totals.

Usage::

    PYTHONPATH=. python benchmarks/run.py [--duration 2] [--rounds 7]
        [--processes 2] [--concurrency 16] [--warmup 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadclient import ECHO_MODES, MODES, script, timeoutsAsErrors
from procs import ServerProcess
from rawload import LoadResult, Totals, runLoad


def printTable(totals: dict[str, Totals]) -> None:
    header = (
        f"{'mode':<15}{'cycles/s':>10}{'min..max per round':>22}"
        f"{'errors':>8}{'srv CPU':>9}{'srv us/cycle':>14}"
    )
    print(header)
    print("-" * len(header))
    for mode, total in totals.items():
        spread = f"{min(total.rates):.0f}..{max(total.rates):.0f}"
        print(
            f"{mode:<15}{total.rate:>10.1f}{spread:>22}{total.errors:>8}"
            f"{total.cpuShare:>9.0%}{total.cpuPerCycle or 0.0:>14.1f}"
        )
    print()

    print(f"{'ratio to get':<22}{'median':>8}{'min..max per round':>22}{'totals':>8}")
    get = totals["get"]
    for mode, total in totals.items():
        if mode == "get" or mode in ECHO_MODES:
            # Another server (no HTTP): compared in printRoundTrip.
            continue
        perRound = sorted(
            rate / getRate
            for rate, getRate in zip(total.rates, get.rates, strict=True)
            if getRate
        )
        if not perRound:
            continue
        spread = f"{perRound[0]:.3f}..{perRound[-1]:.3f}"
        print(
            f"{mode + '/get':<22}{statistics.median(perRound):>8.3f}{spread:>22}"
            f"{total.rate / get.rate if get.rate else 0.0:>8.3f}"
        )
    printRoundTrip(totals)
    for mode, total in totals.items():
        for sample in total.errorSamples:
            print(f"error in {mode}: {sample}")


def printRoundTrip(totals: dict[str, Totals]) -> None:
    """
    What C{upgrade} pays over C{upgrade-early} (the client waits for the 101
    before it sends: one more read and write on the server) beside what one
    more round trip costs a plain Twisted echo server, in server CPU per
    cycle.
    """
    perCycle = {mode: total.cpuPerCycle for mode, total in totals.items()}
    pairs = [("upgrade", "upgrade-early"), ("switch", "switch-early")]
    pairs.append(("echo-twice", "echo"))
    print()
    print("one more round trip, srv us/cycle")
    for more, fewer in pairs:
        a, b = perCycle.get(more), perCycle.get(fewer)
        if a is not None and b is not None:
            print(f"  {more + ' - ' + fewer:<28}{a - b:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Upgrade cycles vs plain GET cycles on one Twisted server."
    )
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per mode per round"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds per mode, not counted"
    )
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="connections per client process"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="per cycle")
    parser.add_argument(
        "--server-cprofile",
        metavar="FILE",
        help="run the server under cProfile and write its stats to FILE",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.processes < 1:
        parser.error("--rounds, --duration and --processes must be positive")
    if args.processes * args.concurrency > 40:
        # twisted.internet.tcp.Port listens with a backlog of 50: beyond it
        # SYNs are dropped and retried after a second.
        print("warning: more than 40 connections in flight", file=sys.stderr)

    totals = {mode: Totals() for mode in MODES}
    extra = ["--cprofile", args.server_cprofile] if args.server_cprofile else []
    server = ServerProcess("server.py", "0", *extra)
    reactorName = server.banner.get("REACTOR", "?")
    try:
        print(
            f"server pid {server.pid} on 127.0.0.1:{server.port} "
            f"({reactorName}); client {args.processes} processes x "
            f"{args.concurrency} connections; {args.rounds} rounds x "
            f"{args.duration:g} s per mode, warm-up {args.warmup:g} s per mode; "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )

        echoPort = int(server.banner["ECHO_PORT"])

        def load(mode: str, duration: float, measure: bool) -> LoadResult:
            port = echoPort if mode in ECHO_MODES else server.port
            result = runLoad(
                script(mode, port),
                port,
                duration=duration,
                processes=args.processes,
                concurrency=args.concurrency,
                timeout=args.timeout,
                ramp=0.3 if measure else 0.1,
                probe=server.cpuSeconds if measure else None,
            )
            return timeoutsAsErrors(result, args.timeout)

        if args.warmup > 0:
            for mode in MODES:
                load(mode, args.warmup, measure=False)
        for index in range(args.rounds):
            shift = index % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                result = load(mode, args.duration, measure=True)
                totals[mode].add(result)
                print(
                    f"  round {index + 1} {mode:<14} {result.rate:>9.1f} cycles/s"
                    f"  errors {result.errors}",
                    flush=True,
                )
        print()
        printTable(totals)
        print(
            f"load average at the end {os.getloadavg()[0]:.2f} (other busy "
            "processes on the machine make the numbers noisier; compare srv CPU "
            "and the per-round spread)"
        )
    finally:
        server.stop()
    summary = server.stderrSummary()
    if summary:
        print(f"server: {summary}")
    if args.server_cprofile:
        print(f"server profile written to {args.server_cprofile}")
    return 1 if any(t.errors for t in totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
