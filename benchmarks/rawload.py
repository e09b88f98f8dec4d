"""
A scripted raw-socket load engine, which every benchmark drives (run.py by
way of loadclient.py, websocket.py, site.py, spy.py).

A L{Script} is a list of L{Step}s that every connection plays in order. A
step writes its precomputed C{send} bytes, then reads and validates the
answer:

  - C{head}: first an HTTP response head up to C{\\r\\n\\r\\n}, given (without
    the blank line) to a checker that returns an error text or L{None};
  - C{expect}: then exactly these bytes, byte for byte; anything more in the
    same read is an error too;
  - or C{reader}: a parser for answers that are not byte-exact (HTTP/2
    frames), called with the unconsumed bytes each time more arrive; what
    it leaves unconsumed when it is done goes to the next step (and is
    ignored after the last).

When the last step completes, one cycle is counted, and the connection is
closed and replaced by a new one, or with C{Script.loop} set, plays the
steps again from that index on the same connection (a ping-pong on an
upgraded connection: the steps before C{loop} are its set-up, not counted).

Each of C{processes} forked workers runs one C{select.epoll} loop over
C{concurrency} non-blocking sockets; a finished or failed connection is
replaced after each poll. Only cycles completed inside the measurement
window C{[start, start + duration]} (start = launch + C{ramp}) count.
A cycle slower than C{timeout} is dropped (the socket is closed) and counted
as a timeout, not as an error: some servers never answer some scripts (see
websocket.py's early-frame mode), and that must neither stall the run nor
be mistaken for a wrong byte. Errors and timeouts count over the whole run.

Linux only (select.epoll).
"""

from __future__ import annotations

import errno
import multiprocessing
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

__all__ = [
    "DONE",
    "MORE",
    "LoadResult",
    "Reader",
    "ReaderState",
    "Script",
    "Step",
    "Totals",
    "runLoad",
]

MORE = 0
"""What a L{Reader} returns while the answer is incomplete."""
DONE = 1
"""What a L{Reader} returns once the answer is complete and valid."""

Reader = Callable[[bytes, "ReaderState"], "tuple[int | str, int, bytes]"]
"""
C{reader(buffered, state) -> (status, consumed, reply)}: C{status} is
L{MORE}, L{DONE} or an error text; C{consumed} bytes are dropped from the
front of the buffer; C{reply} (may be empty) is written at once.
"""


class ReaderState:
    """
    Per-step scratch space for a L{Reader}, fresh for every step.
    """

    __slots__ = ("body", "flags", "replied")

    def __init__(self) -> None:
        self.body = b""
        self.flags = 0
        self.replied = False


HeadCheck = Callable[[bytes], "str | None"]


@dataclass(frozen=True)
class Step:
    send: bytes
    head: HeadCheck | None = None
    expect: bytes = b""
    reader: Reader | None = None


@dataclass(frozen=True)
class Script:
    steps: Sequence[Step]
    loop: int | None = None


@dataclass
class LoadResult:
    """
    The outcome of one L{runLoad}: C{cycles} inside the window, C{errors}
    and C{timeouts} over the whole run, the first few distinct error texts.
    """

    cycles: int
    errors: int
    timeouts: int
    seconds: float
    errorSamples: list[str] = field(default_factory=list)
    probeDelta: float | None = None

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Totals:
    """
    The L{LoadResult}s of one kind of run (a mode, a server) over all the
    rounds: C{rates} are the rounds' own, C{rate} is over all seconds.
    """

    cycles: int = 0
    errors: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    serverCPU: float = 0.0
    rates: list[float] = field(default_factory=list)
    errorSamples: list[str] = field(default_factory=list)

    def add(self, result: LoadResult) -> None:
        self.cycles += result.cycles
        self.errors += result.errors
        self.timeouts += result.timeouts
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
        """
        Server CPU time as a share of one core.
        """
        return self.serverCPU / self.seconds if self.seconds else 0.0

    @property
    def cpuPerCycle(self) -> float | None:
        """
        Server CPU microseconds per cycle; L{None} without cycles.
        """
        return self.serverCPU / self.cycles * 1e6 if self.cycles else None


_MAX_HEAD = 16384
_RECV = 16384
_MAX_ERROR_SAMPLES = 5
_SCAN = 0.05  # seconds between timeout scans


class _Conn:
    __slots__ = ("buf", "inHead", "out", "rstate", "sock", "started", "step")

    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.step = 0
        self.out = b""  # bytes still to write (waiting for EPOLLOUT)
        self.buf = b""
        self.inHead = False
        self.rstate: ReaderState | None = None


class _Worker:
    def __init__(
        self,
        script: Script,
        address: tuple[str, int],
        concurrency: int,
        start: float,
        end: float,
        timeout: float,
    ) -> None:
        self.steps = list(script.steps)
        self.last = len(self.steps) - 1
        self.loop = script.loop
        self.address = address
        self.concurrency = concurrency
        self.start = start
        self.end = end
        self.timeout = timeout
        self.cycles = 0
        self.errors = 0
        self.timeouts = 0
        self.samples: list[str] = []
        self.conns: dict[int, _Conn] = {}
        self.ep = select.epoll()

    def fail(self, fd: int, conn: _Conn, why: str) -> None:
        self.errors += 1
        why = f"step {conn.step}: {why}"
        if len(self.samples) < _MAX_ERROR_SAMPLES and why not in self.samples:
            self.samples.append(why)
        self.drop(fd, conn)

    def drop(self, fd: int, conn: _Conn) -> None:
        self.conns.pop(fd, None)
        conn.sock.close()

    def write(self, fd: int, conn: _Conn, data: bytes) -> bool:
        """
        Write C{data}; what does not fit now waits for EPOLLOUT. False if the
        connection failed.
        """
        if conn.out:
            conn.out += data
            return True
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno != errno.ENOTCONN:  # ENOTCONN: still connecting
                self.fail(fd, conn, f"send: {e}")
                return False
            sent = 0
        if sent < len(data):
            conn.out = data[sent:]
            self.ep.modify(fd, select.EPOLLOUT)
        return True

    def begin(self, fd: int, conn: _Conn, index: int) -> bool:
        step = self.steps[index]
        conn.step = index
        conn.inHead = step.head is not None
        conn.rstate = ReaderState() if step.reader is not None else None
        return self.write(fd, conn, step.send) if step.send else True

    def open(self, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        fd = sock.fileno()
        conn = _Conn(sock, now)
        self.conns[fd] = conn
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(fd, conn, f"connect: {errno.errorcode.get(code, code)}")
            return
        self.ep.register(fd, select.EPOLLIN)
        # On loopback the TCP handshake is normally complete by now.
        self.begin(fd, conn, 0)

    def run(self) -> None:
        conns = self.conns
        ep = self.ep
        end = self.end
        monotonic = time.monotonic
        concurrency = self.concurrency
        now = monotonic()
        nextScan = now + _SCAN

        while now < end:
            for _ in range(concurrency - len(conns)):
                self.open(now)
            wait = min(end, nextScan) - now
            events = ep.poll(wait if wait > 0 else 0)
            now = monotonic()
            if now >= nextScan:
                self.expire(now)
                nextScan = now + _SCAN
            for fd, mask in events:
                conn = conns.get(fd)
                if conn is None:
                    continue
                if conn.out and mask & select.EPOLLOUT:
                    data = conn.out
                    conn.out = b""
                    ep.modify(fd, select.EPOLLIN)
                    self.write(fd, conn, data)
                    continue
                try:
                    data = conn.sock.recv(_RECV)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self.fail(fd, conn, f"recv: {e}")
                    continue
                if not data:
                    self.fail(fd, conn, "closed by the server")
                    continue
                self.received(fd, conn, conn.buf + data if conn.buf else data, now)

        for conn in conns.values():
            conn.sock.close()
        conns.clear()
        ep.close()

    def received(self, fd: int, conn: _Conn, buf: bytes, now: float) -> None:
        """
        Validate what has arrived for the current step; on its completion,
        begin the next step, or count the cycle.
        """
        step = self.steps[conn.step]
        if conn.inHead:
            index = buf.find(b"\r\n\r\n")
            if index < 0:
                if len(buf) > _MAX_HEAD:
                    self.fail(fd, conn, "response head too long")
                else:
                    conn.buf = buf
                return
            assert step.head is not None
            why = step.head(buf[: index + 2])
            if why is not None:
                self.fail(fd, conn, why)
                return
            conn.inHead = False
            buf = buf[index + 4 :]
        reader = step.reader
        if reader is not None:
            assert conn.rstate is not None
            status, consumed, reply = reader(buf, conn.rstate)
            if isinstance(status, str):
                self.fail(fd, conn, status)
                return
            if reply and not self.write(fd, conn, reply):
                return
            buf = buf[consumed:]
            if status == MORE:
                conn.buf = buf
                return
            # Complete: what the reader left is the next step's.
        else:
            expect = step.expect
            if len(buf) < len(expect):
                if expect.startswith(buf):
                    conn.buf = buf
                else:
                    self.fail(fd, conn, f"wrong bytes: {buf[:40]!r}")
                return
            if buf != expect:
                self.fail(fd, conn, f"wrong bytes: {buf[:40]!r}")
                return
            buf = b""
        conn.buf = b""
        if conn.step < self.last:
            if self.begin(fd, conn, conn.step + 1) and buf:
                self.received(fd, conn, buf, now)
            return
        if now >= self.start:
            self.cycles += 1
        if self.loop is None:
            self.drop(fd, conn)
        else:
            conn.started = now
            self.begin(fd, conn, self.loop)

    def expire(self, now: float) -> None:
        limit = now - self.timeout
        late = [(fd, c) for fd, c in self.conns.items() if c.started < limit]
        for fd, conn in late:
            self.timeouts += 1
            self.drop(fd, conn)


def _workerMain(makeWorker: Callable[[], _Worker], results: Connection) -> None:
    worker = makeWorker()
    try:
        worker.run()
    except BaseException as e:
        worker.errors += 1
        worker.samples.append(f"worker crashed: {e!r}")
    results.send((worker.cycles, worker.errors, worker.timeouts, worker.samples))
    results.close()


def _sleepUntil(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def runLoad(
    script: Script,
    port: int,
    *,
    host: str = "127.0.0.1",
    duration: float = 3.0,
    processes: int = 2,
    concurrency: int = 10,
    ramp: float = 0.3,
    timeout: float = 1.0,
    probe: Callable[[], float] | None = None,
) -> LoadResult:
    """
    Play C{script} against C{host:port} with C{processes} workers of
    C{concurrency} connections each; count the cycles completed in a
    C{duration}-second window that opens C{ramp} seconds after launch.

    @param probe: called in this process when the window opens and closes
        (e.g. the server's CPU time); the difference is
        L{LoadResult.probeDelta}.
    """
    context = multiprocessing.get_context("fork")
    start = time.monotonic() + ramp
    end = start + duration
    receivers: list[Connection] = []
    workers: list[Any] = []
    for _ in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        # The worker (and its epoll object) is made in the forked process.
        makeWorker = partial(
            _Worker, script, (host, port), concurrency, start, end, timeout
        )
        worker = context.Process(
            target=_workerMain,
            args=(makeWorker, sender),
            daemon=True,
        )
        worker.start()
        sender.close()
        receivers.append(receiver)
        workers.append(worker)

    probeDelta = None
    if probe is not None:
        _sleepUntil(start)
        before = probe()
        _sleepUntil(end)
        probeDelta = probe() - before

    result = LoadResult(0, 0, 0, duration)
    deadline = end + 10.0
    for receiver in receivers:
        if receiver.poll(max(0.0, deadline - time.monotonic())):
            try:
                cycles, errors, timeouts, samples = receiver.recv()
            except EOFError:
                cycles, errors, timeouts, samples = 0, 1, 0, ["worker died"]
        else:
            cycles, errors, timeouts, samples = 0, 1, 0, ["worker did not report"]
        receiver.close()
        result.cycles += cycles
        result.errors += errors
        result.timeouts += timeouts
        for sample in samples:
            if sample not in result.errorSamples:
                result.errorSamples.append(sample)
    for worker in workers:
        worker.join(1.0)
        if worker.is_alive():
            worker.kill()
            worker.join()
    result.probeDelta = probeDelta
    return result
