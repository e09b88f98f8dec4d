"""
Where a benchmark server spends its CPU, per cycle or request: py-spy
samples one server (benchmarks/wsserver.py or h2server.py) while the same
load as websocket.py or site.py runs against it, and the samples are turned
into microseconds of server CPU per unit of work.

Usage::

    pip install py-spy   # needs ptrace rights (root, or ptrace_scope 0)
    python benchmarks/spy.py ws-handshake [--server ours] [--seconds 10]
    python benchmarks/spy.py ws-early | ws-echo | h2c | wrk [--server KIND]

Targets: C{ws-handshake}, C{ws-early}, C{ws-echo} (websocket.py's modes,
servers: wsserver.py kinds), C{h2c} (site.py's upgrade cycle) and C{wrk}
(site.py's keep-alive GETs, C{wrk -t1 -c16}), servers: h2server.py kinds.

py-spy samples only while the server is on the CPU, so samples are
proportional to CPU time; the server's measured CPU per unit scales them.
The report: self time per package, the top functions by self time, and
every upgrade_plugin function, self and inclusive (callees included).
py-spy slows the server a little; compare the shares, not the totals, with
the benchmarks' numbers.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from h2client import h2cScript
from procs import ServerProcess
from rawload import runLoad
from websocket import script as wsScript

TARGETS = ("ws-handshake", "ws-early", "ws-echo", "h2c", "wrk")
_FRAME = re.compile(r"(.*) \((.*?):\d+\)$")


def frameName(frame: str) -> str:
    """
    C{"function (path:line)"} as C{"path:function"}.
    """
    match = _FRAME.match(frame)
    return f"{match.group(2)}:{match.group(1)}" if match else frame


def package(name: str) -> str:
    """
    The package of a L{frameName}; a standard library module (py-spy shows
    them without a directory) or a benchmark script by its file name.
    """
    path = name.split(":", 1)[0]
    if path.startswith("<"):
        return "other"
    if "/" in path:
        return path.split("/", 1)[0]
    return f"{path} (stdlib or benchmarks/)"


def load(target: str, server: ServerProcess, seconds: float) -> tuple[int, float]:
    """
    Run C{target}'s load for C{seconds}: units done, server CPU seconds.
    """
    if target == "wrk":
        before = server.cpuSeconds()
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                "-c16",
                f"-d{max(1, round(seconds))}s",
                f"http://127.0.0.1:{server.port}/plain",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
        match = re.search(r"(\d+) requests in", out)
        return (int(match.group(1)) if match else 0), server.cpuSeconds() - before
    if target == "h2c":
        script = h2cScript(server.port)
        connections = 20
    else:
        mode = target.removeprefix("ws-")
        script = wsScript(mode, server.port)
        connections = 10 if mode == "echo" else 20
    result = runLoad(
        script,
        server.port,
        duration=seconds,
        processes=2,
        concurrency=connections // 2,
        ramp=0.0,
        probe=server.cpuSeconds,
    )
    if result.errors:
        print(f"warning: {result.errors} errors: {result.errorSamples}")
    return result.cycles, result.probeDelta or 0.0


def report(path: Path, perUnit: float, top: int) -> None:
    selfTime: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = [frameName(f) for f in stack.split(";")]
        selfTime[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    if not total:
        print("no samples")
        return

    def us(n: int) -> float:
        return n / total * perUnit

    packages: Counter[str] = Counter()
    for name, n in selfTime.items():
        packages[package(name)] += n
    print(f"{total} samples; {perUnit:.1f} us of server CPU per unit\n")
    print("self time per package (us/unit):")
    for name, n in packages.most_common():
        print(f"  {us(n):8.1f}  {n / total:6.1%}  {name}")
    print(f"\ntop {top} functions by self time (us/unit):")
    for name, n in selfTime.most_common(top):
        print(f"  {us(n):8.1f}  {n / total:6.1%}  {name}")
    print("\nupgrade_plugin functions (us/unit): inclusive, self")
    ours = [name for name in inclusive if name.startswith("upgrade_plugin/")]
    for name in sorted(ours, key=lambda k: -inclusive[k]):
        print(f"  {us(inclusive[name]):8.1f}  {us(selfTime[name]):8.1f}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="py-spy a benchmark server.")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--server", default="ours", help="wsserver/h2server kind")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--keep", metavar="FILE", help="also keep the raw samples")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        parser.error("py-spy is not installed (pip install py-spy)")

    script = "wsserver.py" if args.target.startswith("ws-") else "h2server.py"
    server = ServerProcess(script, args.server)
    with tempfile.TemporaryDirectory() as directory:
        raw = Path(args.keep or Path(directory) / "samples.txt")
        try:
            load(args.target, server, 1.0)  # warm-up
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(server.pid),
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(max(1, round(args.seconds))),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.5)  # py-spy attaching
            units, cpu = load(args.target, server, args.seconds)
            _, err = recorder.communicate(timeout=args.seconds + 30)
            if recorder.returncode:
                print(err.decode("utf-8", "replace")[-500:])
                return 1
        finally:
            server.stop()
            summary = server.stderrSummary()
            if summary:
                print(f"server: {summary}")
        print(
            f"{args.target} against {args.server}: {units / args.seconds:.1f} units/s "
            f"under py-spy, server CPU {cpu / args.seconds:.0%}"
        )
        if not units:
            return 1
        report(raw, cpu / units * 1e6, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
