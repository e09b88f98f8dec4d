"""
Benchmark servers as subprocesses: start one, learn its port from its
banner, read its CPU time from /proc, stop it.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["HERE", "ROOT", "ServerProcess"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """
    C{python -u SCRIPT ARGS...} from benchmarks/, with the repository root on
    C{PYTHONPATH}. The script prints C{PORT n} once listening (and may print
    other C{KEY value} lines before it); it runs until SIGTERM. Its stderr
    goes to a temporary file, so that what a server logs does not interleave
    with the tables: see L{stderrSummary}.

    @ivar banner: every C{KEY value} line printed up to C{PORT}.
    """

    def __init__(self, script: str, *args: str, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        command = [sys.executable, "-u", str(HERE / script), *args]
        self.name = " ".join([script, *args])
        label = re.sub(r"[^A-Za-z0-9_.]+", "-", " ".join([Path(script).stem, *args]))
        self.stderrFile = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"bench-{label[:60]}-",
            suffix=".stderr",
            delete=False,
        )
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.stderrFile, env=env
        )
        self.pid = self.process.pid
        self.port = 0
        self.banner: dict[str, str] = {}
        self._readBanner(timeout)

    def _readBanner(self, timeout: float) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        received = b""
        while not self.port:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                self.stop()
                raise RuntimeError(f"{self.name}: no PORT line in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise RuntimeError(f"{self.name}: exited before printing PORT")
            received += chunk
            for line in received.decode("ascii", "replace").splitlines():
                words = line.split(None, 1)
                if len(words) == 2:
                    self.banner[words[0]] = words[1].strip()
            if "PORT" in self.banner:
                self.port = int(self.banner["PORT"])

    def cpuSeconds(self) -> float:
        """
        User + system CPU time of the server process so far.
        """
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)
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
        self.stderrFile.close()

    def stderrSummary(self) -> str | None:
        """
        After L{stop}: L{None} if the server wrote nothing to stderr (the
        file is removed), else a line saying how much, where, and its last
        line.
        """
        path = Path(self.stderrFile.name)
        lines = [
            line for line in path.read_text("utf-8", "replace").splitlines() if line
        ]
        if not lines:
            path.unlink()
            return None
        tracebacks = sum(line.startswith("Traceback") for line in lines)
        return (
            f"{len(lines)} lines ({tracebacks} tracebacks) of stderr in {path}; "
            f"last: {lines[-1][:120]}"
        )
