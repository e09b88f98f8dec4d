"""
UpgradeSite side by side, in one run (benchmarks/h2server.py servers, each
in its own process, all answering C{GET /plain} with C{b"ok"}):

  1. C{wrk}: plain HTTP/1.1 GETs on keep-alive connections against a plain
     twisted.web L{Site} and L{UpgradeSite}C{(root, h2c=True)}: what
     UpgradeSite costs requests that upgrade nothing;
  2. h2c upgrade cycles (benchmarks/h2client.py; every cycle validated)
     against UpgradeSite(h2c=True) and hypercorn;
  3. C{h2load}: HTTP/2 requests/s against UpgradeSite(h2c=True) with prior
     knowledge (cleartext) and against Twisted's own HTTP/2, which is only
     reachable by TLS + ALPN (so that row pays for TLS: not like-for-like).
     For reference, UpgradeSite on the same kind of TLS listener and
     hypercorn with prior knowledge.

Every part runs C{--rounds} rounds, alternating (rotating) the order of the
servers each round; server CPU time comes from /proc.

Usage::

    cd /work/main && python benchmarks/site.py [--duration 3] [--rounds 3]
        [--parts wrk,h2c,h2load]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from h2client import h2cScript
from procs import ServerProcess
from rawload import LoadResult, Totals, runLoad

PARTS = ("wrk", "h2c", "h2load")
# Which servers each part loads, in table order, with their labels.
WRK_SERVERS = {"plain": "Site", "ours": "UpgradeSite(h2c=True)"}
H2C_SERVERS = {"ours": "UpgradeSite(h2c=True)", "hypercorn": "hypercorn"}
H2LOAD_SERVERS = {
    "ours": "UpgradeSite h2c prior knowledge",
    "twisted-tls": "Site TLS+ALPN h2 (Twisted's)",
    "ours-tls": "UpgradeSite TLS+ALPN h2",
    "hypercorn": "hypercorn h2c prior knowledge",
}


def measured(
    count: int, seconds: float, cpu: float, errors: int, notes: list[str]
) -> LoadResult:
    """
    A wrk or h2load run as a L{LoadResult}, to be added up in L{Totals} like
    the h2c runs: C{count} requests, the server's C{cpu} seconds; C{notes}
    (h2load's protocol as well as errors) go where the error texts go.
    """
    return LoadResult(
        cycles=count,
        errors=errors,
        timeouts=0,
        seconds=seconds,
        errorSamples=notes,
        probeDelta=cpu,
    )


def checkGet(port: int) -> None:
    """
    One HTTP/1.1 GET /plain on a fresh connection: C{200} and C{b"ok"}, or
    raise.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(
            b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or body != b"ok":
        raise RuntimeError(f"port {port}: unexpected answer {received[:200]!r}")


_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(ms|s|m)")
_WRK_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def runWrk(
    port: int, duration: float, connections: int
) -> tuple[int, float, int, list[str]]:
    """
    C{wrk -t1 -c N -d Ds}: requests, seconds, errors, error notes.
    """
    seconds = max(1, round(duration))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"http://127.0.0.1:{port}/plain",
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    ).stdout
    match = _WRK_REQUESTS.search(out)
    if match is None:
        return 0, float(seconds), 1, [f"wrk output not understood: {out[-200:]!r}"]
    requests = int(match.group(1))
    elapsed = float(match.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(3)]
    errors, notes = 0, []
    non2xx = _WRK_NON_2XX.search(out)
    if non2xx:
        errors += int(non2xx.group(1))
        notes.append(f"non-2xx responses: {non2xx.group(1)}")
    socketErrors = _WRK_SOCKET_ERRORS.search(out)
    if socketErrors:
        counts = [int(n) for n in re.findall(r"\d+", socketErrors.group(1))]
        errors += sum(counts)
        notes.append(f"socket errors: {socketErrors.group(1)}")
    return requests, elapsed, errors, notes


_H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s")
_H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
_H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2LOAD_PROTOCOL = re.compile(r"Application protocol: (\S+)")


def runH2load(
    url: str, duration: float, clients: int, streams: int
) -> tuple[int, float, int, list[str]]:
    """
    C{h2load -c C -m M -D duration URL}: requests succeeded, seconds, failed
    ones, notes (the negotiated protocol).
    """
    seconds = max(1, round(duration))
    command = ["h2load", "-c", str(clients), "-m", str(streams), "-D", str(seconds)]
    out = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    requests = _H2LOAD_REQUESTS.search(out)
    status = _H2LOAD_STATUS.search(out)
    protocol = _H2LOAD_PROTOCOL.search(out)
    if requests is None or status is None:
        return 0, float(seconds), 1, [f"h2load output not understood: {out[-200:]!r}"]
    _total, _started, _done, succeeded, failed, errored, timeouts = (
        int(n) for n in requests.groups()
    )
    finished = _H2LOAD_FINISHED.search(out)
    elapsed = float(seconds)
    if finished is not None:
        elapsed = float(finished.group(1)) * (0.001 if finished.group(2) == "ms" else 1)
    ok2xx = int(status.group(1))
    notes = [f"protocol {protocol.group(1) if protocol else '?'}"]
    errors = failed + errored + timeouts
    if errors or ok2xx < succeeded:
        notes.append(
            f"{failed} failed, {errored} errored, {timeouts} timeouts, "
            f"{succeeded - ok2xx} not 2xx"
        )
        errors += max(0, succeeded - ok2xx)
    if protocol is None or protocol.group(1) not in ("h2", "h2c"):
        errors += 1
    return succeeded, elapsed, errors, notes


def printTable(
    title: str,
    unit: str,
    labels: dict[str, str],
    totals: dict[str, Totals],
    withTimeouts: bool = False,
) -> None:
    print(title)
    header = (
        f"{'server':<36}{unit:>11}{'min..max round':>18}{'errors':>8}"
        + (f"{'timeouts':>10}" if withTimeouts else "")
        + f"{'srv CPU':>9}{'srv us/' + unit.split('/')[0]:>16}"
    )
    print(header)
    print("-" * len(header))
    for kind, label in labels.items():
        total = totals[kind]
        spread = f"{min(total.rates):.0f}..{max(total.rates):.0f}"
        perUnit = total.cpuPerCycle
        print(
            f"{label:<36}{total.rate:>11.1f}{spread:>18}{total.errors:>8}"
            + (f"{total.timeouts:>10}" if withTimeouts else "")
            + f"{total.cpuShare:>9.0%}"
            + f"{'-' if perUnit is None else f'{perUnit:.1f}':>16}"
        )
    for kind, label in labels.items():
        for note in totals[kind].errorSamples:
            print(f"  {label}: {note}")
    print()


def printRatio(label: str, a: Totals, b: Totals, target: float | None) -> None:
    """
    C{a}/C{b}: of the rates over all rounds, the median of the per-round
    ratios (each pair ran in the same round, so a disturbance that hit one
    round weighs once), and of server CPU per unit (inverted).
    """
    rate = a.rate / b.rate if b.rate else float("inf")
    ratios = [x / y for x, y in zip(a.rates, b.rates, strict=False) if y]
    median = f"{statistics.median(ratios):.3f}" if ratios else "n/a"
    cpuA, cpuB = a.cpuPerCycle, b.cpuPerCycle
    cpu = f"{cpuB / cpuA:.3f}" if cpuA and cpuB else "n/a"
    goal = "" if target is None else f"  target >= {target:g}"
    verdict = "" if target is None else (" ok" if rate >= target else " MISS")
    print(f"{label}: {rate:.3f}{goal}{verdict}")
    print(f"  median of round ratios {median}; srv CPU per unit, inverted {cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="UpgradeSite vs Site (wrk), vs hypercorn (h2c), vs Twisted h2."
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-rounds", type=int, default=6)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per run")
    parser.add_argument("--wrk-connections", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="h2c client")
    parser.add_argument(
        "--connections", type=int, default=20, help="h2c cycles in flight in total"
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="per h2c cycle")
    parser.add_argument("--h2load-clients", type=int, default=4)
    parser.add_argument("--h2load-streams", type=int, default=8)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    if not set(parts) <= set(PARTS):
        parser.error(f"parts are among {PARTS}")
    if args.rounds < 1 or args.wrk_rounds < 1 or args.duration < 1:
        parser.error("--rounds must be positive and --duration at least 1")
    for tool, part in (("wrk", "wrk"), ("h2load", "h2load")):
        if part in parts and shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")

    kinds: list[str] = []
    for part, labels in (
        ("wrk", WRK_SERVERS),
        ("h2c", H2C_SERVERS),
        ("h2load", H2LOAD_SERVERS),
    ):
        if part in parts:
            kinds.extend(k for k in labels if k not in kinds)
    servers: dict[str, ServerProcess] = {}
    results: dict[str, dict[str, Totals]] = {}
    try:
        for kind in kinds:
            servers[kind] = ServerProcess("h2server.py", kind)
        for kind, server in servers.items():
            if not kind.endswith("-tls"):
                checkGet(server.port)
        print(
            "servers: "
            + ", ".join(f"{k} pid {s.pid} port {s.port}" for k, s in servers.items())
        )
        print(
            f"{args.rounds} rounds ({args.wrk_rounds} for wrk) x {args.duration:g} s "
            f"per server, warm-up {args.warmup:g} s; load average "
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )

        def rounds(
            part: str,
            labels: dict[str, str],
            count: int,
            measure: Callable[[str, float], LoadResult],
        ) -> None:
            totals = results[part] = {kind: Totals() for kind in labels}
            order = list(labels)
            if args.warmup > 0:
                for kind in order:
                    measure(kind, args.warmup)
            for index in range(count):
                shift = index % len(order)
                for kind in order[shift:] + order[:shift]:
                    run = measure(kind, args.duration)
                    totals[kind].add(run)
                    print(
                        f"  {part:<7} round {index + 1} {labels[kind]:<36}"
                        f"{run.rate:>10.1f}/s  errors {run.errors}"
                        + (f"  timeouts {run.timeouts}" if run.timeouts else "")
                        + f"  srv CPU {(run.probeDelta or 0.0) / run.seconds:.0%}",
                        flush=True,
                    )

        def wrk(kind: str, duration: float) -> LoadResult:
            server = servers[kind]
            before = server.cpuSeconds()
            done, seconds, errors, notes = runWrk(
                server.port, duration, args.wrk_connections
            )
            return measured(done, seconds, server.cpuSeconds() - before, errors, notes)

        def h2c(kind: str, duration: float) -> LoadResult:
            server = servers[kind]
            return runLoad(
                h2cScript(server.port),
                server.port,
                duration=duration,
                processes=args.processes,
                concurrency=max(1, args.connections // args.processes),
                timeout=args.timeout,
                probe=server.cpuSeconds,
            )

        def h2load(kind: str, duration: float) -> LoadResult:
            server = servers[kind]
            scheme = "https" if kind.endswith("-tls") else "http"
            url = f"{scheme}://127.0.0.1:{server.port}/plain"
            before = server.cpuSeconds()
            done, seconds, errors, notes = runH2load(
                url, duration, args.h2load_clients, args.h2load_streams
            )
            return measured(done, seconds, server.cpuSeconds() - before, errors, notes)

        if "wrk" in parts:
            rounds("wrk", WRK_SERVERS, args.wrk_rounds, wrk)
        if "h2c" in parts:
            rounds("h2c", H2C_SERVERS, args.rounds, h2c)
        if "h2load" in parts:
            rounds("h2load", H2LOAD_SERVERS, args.rounds, h2load)
    finally:
        for server in servers.values():
            server.stop()

    print()
    failed = False
    if "wrk" in results:
        totals = results["wrk"]
        printTable(
            f"HTTP/1.1 GET /plain, wrk -t1 -c{args.wrk_connections} (keep-alive)",
            "req/s",
            WRK_SERVERS,
            totals,
        )
        printRatio("UpgradeSite/Site req/s", totals["ours"], totals["plain"], 0.97)
        print()
    if "h2c" in results:
        totals = results["h2c"]
        printTable(
            f"h2c upgrade cycles, {args.connections} connections "
            "(connect, upgrade, preface, response on stream 1, close)",
            "cycles/s",
            H2C_SERVERS,
            totals,
            withTimeouts=True,
        )
        ours, hypercorn = totals["ours"], totals["hypercorn"]
        printRatio("UpgradeSite/hypercorn cycles/s", ours, hypercorn, 1.0)
        print()
    if "h2load" in results:
        totals = results["h2load"]
        printTable(
            f"HTTP/2 GET /plain, h2load -c{args.h2load_clients} "
            f"-m{args.h2load_streams} -D{max(1, round(args.duration))}",
            "req/s",
            H2LOAD_SERVERS,
            totals,
        )
        twisted = totals["twisted-tls"]
        printRatio(
            "UpgradeSite h2c / Twisted TLS h2 req/s", totals["ours"], twisted, None
        )
        printRatio(
            "UpgradeSite TLS h2 / Twisted TLS h2 req/s",
            totals["ours-tls"],
            twisted,
            None,
        )
        print(
            "  Twisted's own HTTP/2 is reachable only by TLS + ALPN, so the first "
            "ratio is not like-for-like:\n  the Twisted row pays for TLS; "
            "UpgradeSite on the same TLS listener is the like-for-like row."
        )
        print()
    for part, totals in results.items():
        failed = failed or any(t.errors for t in totals.values())
        if part == "h2c":
            failed = failed or any(t.timeouts for t in totals.values())
    for kind, server in servers.items():
        summary = server.stderrSummary()
        if summary:
            print(f"server {kind}: {summary}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
