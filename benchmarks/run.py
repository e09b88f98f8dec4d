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

Usage::

    PYTHONPATH=. python benchmarks/run.py [--duration 5] [--rounds 3]
        [--processes 2] [--concurrency 16] [--warmup 1]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadclient import MODES, LoadResult, runLoad

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ModeTotals:
    mode: str
    cycles: int = 0
    errors: int = 0
    seconds: float = 0.0
    serverCPU: float = 0.0
    rates: list[float] = field(default_factory=list)
    errorSamples: list[str] = field(default_factory=list)

    def add(self, result: LoadResult) -> None:
        self.cycles += result.cycles
        self.errors += result.errors
        self.seconds += result.seconds
        self.serverCPU += result.probeDelta or 0.0
        self.rates.append(result.rate)
        for sample in result.errorSamples:
            if sample not in self.errorSamples:
                self.errorSamples.append(sample)

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0

    @property
    def cpuShare(self) -> float:
        return self.serverCPU / self.seconds if self.seconds else 0.0

    @property
    def cpuPerCycle(self) -> float:
        return self.serverCPU / self.cycles * 1e6 if self.cycles else 0.0


class Server:
    """
    benchmarks/server.py as a subprocess.
    """

    def __init__(self, cprofile: str | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        command = [sys.executable, "-u", str(HERE / "server.py"), "0"]
        if cprofile:
            command += ["--cprofile", cprofile]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        self.port = 0
        self.reactor = "?"
        self._readBanner(timeout=15.0)

    def _readBanner(self, timeout: float) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        received = b""
        while not (self.port and self.reactor != "?"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                self.stop()
                raise RuntimeError("server did not print its port in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise RuntimeError("server exited before printing its port")
            received += chunk
            for line in received.decode("ascii", "replace").splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "PORT":
                    self.port = int(words[1])
                elif len(words) == 2 and words[0] == "REACTOR":
                    self.reactor = words[1]

    def cpuSeconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)
        values = fields[1].split()
        # utime and stime are fields 14 and 15 of stat(5); values[0] is 3.
        return (int(values[11]) + int(values[12])) / CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def printTable(totals: dict[str, ModeTotals]) -> None:
    header = (
        f"{'mode':<15}{'cycles/s':>10}{'min..max per round':>22}"
        f"{'errors':>8}{'srv CPU':>9}{'srv us/cycle':>14}"
    )
    print(header)
    print("-" * len(header))
    for total in totals.values():
        spread = f"{min(total.rates):.0f}..{max(total.rates):.0f}"
        print(
            f"{total.mode:<15}{total.rate:>10.1f}{spread:>22}{total.errors:>8}"
            f"{total.cpuShare:>9.0%}{total.cpuPerCycle:>14.1f}"
        )
    print()

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.3f}" if b else "n/a"

    get, upgrade, early = totals["get"], totals["upgrade"], totals["upgrade-early"]
    print(
        f"upgrade/get           cycles/s {ratio(upgrade.rate, get.rate)}"
        f"   (server CPU per cycle get/upgrade "
        f"{ratio(get.cpuPerCycle, upgrade.cpuPerCycle)})"
    )
    print(
        f"upgrade-early/upgrade cycles/s {ratio(early.rate, upgrade.rate)}"
        f"   (server CPU per cycle upgrade/upgrade-early "
        f"{ratio(upgrade.cpuPerCycle, early.cpuPerCycle)})"
    )
    for total in totals.values():
        for sample in total.errorSamples:
            print(f"error in {total.mode}: {sample}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Upgrade cycles vs plain GET cycles on one Twisted server."
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per mode per round"
    )
    parser.add_argument("--rounds", type=int, default=3)
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

    totals = {mode: ModeTotals(mode) for mode in MODES}
    server = Server(args.server_cprofile)
    try:
        print(
            f"server pid {server.process.pid} on 127.0.0.1:{server.port} "
            f"({server.reactor}); client {args.processes} processes x "
            f"{args.concurrency} connections; {args.rounds} rounds x "
            f"{args.duration:g} s per mode, warm-up {args.warmup:g} s per mode; "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )

        def load(mode: str, duration: float, measure: bool) -> LoadResult:
            return runLoad(
                mode,
                server.port,
                duration=duration,
                processes=args.processes,
                concurrency=args.concurrency,
                timeout=args.timeout,
                ramp=0.3 if measure else 0.1,
                probe=server.cpuSeconds if measure else None,
            )

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
    if args.server_cprofile:
        print(f"server profile written to {args.server_cprofile}")
    return 1 if any(t.errors for t in totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
