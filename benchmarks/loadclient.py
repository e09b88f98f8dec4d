"""
Load client for benchmarks/server.py: new connection per cycle, every cycle
validated byte for byte.

Modes (one cycle each):

  - C{get}: connect, C{GET /plain HTTP/1.1}, read the response to the end of
    its C{Content-Length} body (must be C{200} and C{b"ok"}), close;
  - C{upgrade}: connect, C{GET /echo HTTP/1.1} with C{Connection: Upgrade}
    and C{Upgrade: echo}, read the head up to C{\\r\\n\\r\\n} (must be
    C{HTTP/1.1 101} naming C{Upgrade: echo}, with nothing after it), send 16
    bytes, read the same 16 bytes back, close;
  - C{upgrade-early}: the same, but the 16 bytes go in the same C{send} as
    the request; the 101 head and the echo may arrive together.

Each of C{processes} forked workers runs one epoll loop over C{concurrency}
non-blocking sockets, with the request bytes precomputed; a finished or
failed connection is replaced by a new one after each poll. Workers start
hitting the server at once; only cycles completed inside the measurement
window C{[start, start + duration]} (start = launch + C{ramp}) are counted,
so process start-up and the ramp do not skew cycles/s. Connections still in
flight at the end are dropped without being counted. Errors (a wrong byte, a
refused or reset connection, the server closing early, a cycle slower than
C{timeout}) are counted over the whole run.

Linux only (select.epoll).

Usage::

    python benchmarks/loadclient.py --port N --mode upgrade [--duration 5]
        [--processes 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import select
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

__all__ = ["MODES", "PAYLOAD", "LoadResult", "requestBytes", "runLoad"]

MODES = ("get", "upgrade", "upgrade-early")
PAYLOAD = b"0123456789ABCDEF"
assert len(PAYLOAD) == 16

_GET, _UPGRADE, _EARLY = 0, 1, 2
_KINDS = {"get": _GET, "upgrade": _UPGRADE, "upgrade-early": _EARLY}

# Connection states.
_SENDING = 0  # bytes left in _Conn.out; waiting for EPOLLOUT
_HEAD = 1  # reading the response head
_BODY = 2  # get: reading the Content-Length body
_ECHO = 3  # upgrade: reading the echoed payload

_STATE_NAMES = {_SENDING: "sending", _HEAD: "head", _BODY: "body", _ECHO: "echo"}
_MAX_HEAD = 16384
_RECV = 4096
_MAX_ERROR_SAMPLES = 5


def requestBytes(mode: str, host: str, port: int) -> bytes:
    """
    The bytes a cycle of C{mode} sends first (for C{upgrade-early}, the
    request and the payload together).
    """
    hostLine = b"Host: %s:%d\r\n" % (host.encode("ascii"), port)
    if mode == "get":
        return b"GET /plain HTTP/1.1\r\n" + hostLine + b"\r\n"
    request = (
        b"GET /echo HTTP/1.1\r\n"
        + hostLine
        + b"Connection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    if mode == "upgrade-early":
        return request + PAYLOAD
    if mode == "upgrade":
        return request
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


@dataclass
class LoadResult:
    """
    The outcome of one L{runLoad}.

    @ivar cycles: cycles completed inside the measurement window.
    @ivar errors: failed cycles over the whole run.
    @ivar seconds: the length of the measurement window.
    @ivar errorSamples: the first few distinct error descriptions.
    @ivar probeDelta: C{probe()} at the end of the window minus at its start,
        if a probe was given.
    """

    mode: str
    cycles: int
    errors: int
    seconds: float
    processes: int
    concurrency: int
    errorSamples: list[str] = field(default_factory=list)
    probeDelta: float | None = None

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else 0.0


class _Conn:
    __slots__ = ("buf", "need", "next", "out", "sock", "started", "state")

    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.state = _SENDING
        self.next = _HEAD
        self.out = b""
        self.buf = b""
        self.need = 0


def _contentLength(head: bytes) -> int:
    lowered = head.lower()
    index = lowered.find(b"\r\ncontent-length:")
    if index < 0:
        return -1
    index += 17
    end = lowered.find(b"\r\n", index)
    value = lowered[index:] if end < 0 else lowered[index:end]
    try:
        return int(value.strip())
    except ValueError:
        return -1


class _Worker:
    """
    One process's event loop.
    """

    def __init__(
        self,
        kind: int,
        address: tuple[str, int],
        request: bytes,
        concurrency: int,
        start: float,
        end: float,
        timeout: float,
    ) -> None:
        self.kind = kind
        self.address = address
        self.request = request
        self.concurrency = concurrency
        self.start = start
        self.end = end
        self.timeout = timeout
        self.cycles = 0
        self.errors = 0
        self.samples: list[str] = []
        self.conns: dict[int, _Conn] = {}
        self.ep = select.epoll()

    def fail(self, fd: int, conn: _Conn, why: str) -> None:
        self.errors += 1
        if len(self.samples) < _MAX_ERROR_SAMPLES and why not in self.samples:
            self.samples.append(why)
        self.conns.pop(fd, None)
        conn.sock.close()

    def send(self, fd: int, conn: _Conn, data: bytes, nextState: int) -> None:
        """
        Write C{data}, then go to C{nextState}; what does not fit now waits
        for EPOLLOUT. C{fd} is registered for EPOLLIN afterwards.
        """
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            if e.errno != errno.ENOTCONN:  # still connecting
                self.fail(fd, conn, f"send: {e}")
                return
            sent = 0
        if sent == len(data):
            conn.state = nextState
            return
        conn.out = data[sent:]
        conn.next = nextState
        conn.state = _SENDING
        self.ep.modify(fd, select.EPOLLOUT)

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
        # On loopback the handshake is normally complete by now: send at once
        # rather than wait a poll round for writability.
        self.send(fd, conn, self.request, _HEAD)

    def run(self) -> None:
        kind = self.kind
        conns = self.conns
        ep = self.ep
        start = self.start
        end = self.end
        monotonic = time.monotonic
        payload = PAYLOAD
        payloadSize = len(PAYLOAD)
        upgradeName = b"\r\nupgrade: echo\r\n"

        concurrency = self.concurrency
        now = monotonic()
        nextScan = now + 0.25

        while now < end:
            # Top up to `concurrency` connections: those that finished or
            # failed are replaced here, at most once per poll, so that a
            # refusing server costs one round of errors per poll timeout.
            for _ in range(concurrency - len(conns)):
                self.open(now)
            wait = min(end, nextScan) - now
            events = ep.poll(wait if wait > 0 else 0)
            now = monotonic()
            if now >= nextScan:
                self._expire(now)
                nextScan = now + 0.25
            for fd, _mask in events:
                conn = conns.get(fd)
                if conn is None:
                    continue
                state = conn.state
                if state == _SENDING:
                    data = conn.out
                    conn.out = b""
                    ep.modify(fd, select.EPOLLIN)
                    self.send(fd, conn, data, conn.next)
                    continue
                try:
                    data = conn.sock.recv(_RECV)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self.fail(fd, conn, f"recv in {_STATE_NAMES[state]}: {e}")
                    continue
                if not data:
                    self.fail(fd, conn, f"closed by server in {_STATE_NAMES[state]}")
                    continue
                buf = conn.buf + data if conn.buf else data

                if state == _HEAD:
                    index = buf.find(b"\r\n\r\n")
                    if index < 0:
                        if len(buf) > _MAX_HEAD:
                            self.fail(fd, conn, "response head too long")
                        else:
                            conn.buf = buf
                        continue
                    head = buf[: index + 2]
                    buf = buf[index + 4 :]
                    if kind == _GET:
                        if not head.startswith(b"HTTP/1.1 200 "):
                            self.fail(fd, conn, f"not a 200: {head[:40]!r}")
                            continue
                        conn.need = _contentLength(head)
                        if conn.need < 0:
                            self.fail(fd, conn, "no Content-Length")
                            continue
                        state = conn.state = _BODY
                    else:
                        if not head.startswith(b"HTTP/1.1 101 ") or (
                            upgradeName not in head.lower()
                        ):
                            self.fail(fd, conn, f"not a 101 to echo: {head[:40]!r}")
                            continue
                        if kind == _UPGRADE:
                            if buf:
                                self.fail(fd, conn, "bytes after the 101 head")
                                continue
                            conn.buf = b""
                            self.send(fd, conn, payload, _ECHO)
                            continue
                        state = conn.state = _ECHO

                if state == _BODY:
                    if len(buf) < conn.need:
                        conn.buf = buf
                        continue
                    if buf != b"ok":
                        self.fail(fd, conn, f"wrong body: {buf[:40]!r}")
                        continue
                else:
                    if len(buf) < payloadSize:
                        conn.buf = buf
                        continue
                    if buf != payload:
                        self.fail(fd, conn, f"wrong echo: {buf[:40]!r}")
                        continue

                # A complete, valid cycle.
                del conns[fd]
                conn.sock.close()
                if now >= start:
                    self.cycles += 1

        for conn in conns.values():
            conn.sock.close()
        conns.clear()
        ep.close()

    def _expire(self, now: float) -> None:
        limit = now - self.timeout
        late = [(fd, c) for fd, c in self.conns.items() if c.started < limit]
        for fd, conn in late:
            self.fail(fd, conn, f"timeout in {_STATE_NAMES[conn.state]}")


def _workerMain(
    kind: int,
    address: tuple[str, int],
    request: bytes,
    concurrency: int,
    start: float,
    end: float,
    timeout: float,
    results: Connection,
) -> None:
    worker = _Worker(kind, address, request, concurrency, start, end, timeout)
    try:
        worker.run()
    except BaseException as e:
        worker.errors += 1
        worker.samples.append(f"worker crashed: {e!r}")
    results.send((worker.cycles, worker.errors, worker.samples))
    results.close()


def _sleepUntil(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def runLoad(
    mode: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    duration: float = 5.0,
    processes: int = 2,
    concurrency: int = 16,
    ramp: float = 0.3,
    timeout: float = 5.0,
    probe: Callable[[], float] | None = None,
) -> LoadResult:
    """
    Run C{mode} against C{host:port} with C{processes} workers of
    C{concurrency} connections each, and count the cycles completed in a
    C{duration}-second window that opens C{ramp} seconds after launch.

    @param probe: called when the window opens and when it closes, in this
        process (e.g. the server's CPU time); the difference is
        L{LoadResult.probeDelta}.
    """
    kind = _KINDS[mode]
    request = requestBytes(mode, host, port)
    context = multiprocessing.get_context("fork")
    start = time.monotonic() + ramp
    end = start + duration
    receivers: list[Connection] = []
    workers = []
    for _ in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        worker = context.Process(
            target=_workerMain,
            args=(
                kind,
                (host, port),
                request,
                concurrency,
                start,
                end,
                timeout,
                sender,
            ),
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

    result = LoadResult(mode, 0, 0, duration, processes, concurrency)
    deadline = end + timeout + 5.0
    for receiver in receivers:
        if receiver.poll(max(0.0, deadline - time.monotonic())):
            try:
                cycles, errors, samples = receiver.recv()
            except EOFError:
                cycles, errors, samples = 0, 1, ["worker died"]
        else:
            cycles, errors, samples = 0, 1, ["worker did not report"]
        receiver.close()
        result.cycles += cycles
        result.errors += errors
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
        args.mode,
        args.port,
        host=args.host,
        duration=args.duration,
        processes=args.processes,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    print(
        f"{result.mode}: {result.rate:.1f} cycles/s "
        f"({result.cycles} in {result.seconds:g} s), errors {result.errors}"
    )
    for sample in result.errorSamples:
        print(f"  error: {sample}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
