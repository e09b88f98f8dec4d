"""
External programs in tests: found on C{PATH} (or in sbin), run in a session
of their own so that they and everything they fork (Chromium's helpers,
nginx's workers, C{timeout}'s child) can be signalled as one process group,
with their output collected and every wait for them bounded.

L{ProcessTestCase} adds the fixtures a test needs to drive them: temporary
directories, spawning with cleanup, headless Chromium and nginx in front of
a backend.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from .helpers import REPO, requireExternal

__all__ = [
    "CHROMIUM",
    "CHROMIUM_MISSING",
    "NGINX",
    "NGINX_CONF",
    "NGINX_MISSING",
    "PROCESS_TIMEOUT",
    "REPO",
    "SHORT_TIMEOUT",
    "ExternalProcess",
    "ProcessTestCase",
    "childEnvironment",
    "findProgram",
    "freePort",
    "needs",
    "websocketsEcho",
]

reactor: Any = _reactor

# The bound on each external program's run; a fresh CI machine's first
# Chromium start is the slowest.
PROCESS_TIMEOUT = 60.0
# The bound on each wait for a connection, a process to stop, a socket to close.
SHORT_TIMEOUT = 10.0
# The longest a server started by a test may live even if the test runner
# itself dies before its cleanup (see L{ProcessTestCase.bounded}).
SERVER_LIFETIME = 300


def findProgram(*names: str) -> str | None:
    """
    The first of C{names} on C{PATH}, or in the sbin directories that a
    non-root C{PATH} may lack (Debian's nginx is C{/usr/sbin/nginx}).
    """
    for name in names:
        found = shutil.which(name) or shutil.which(
            name, path="/usr/local/sbin:/usr/sbin:/sbin"
        )
        if found is not None:
            return found
    return None


CHROMIUM = findProgram("chromium", "chromium-browser")
NGINX = findProgram("nginx")
TIMEOUT = findProgram("timeout")
CHROMIUM_MISSING = None if CHROMIUM else "chromium (or chromium-browser) is not on PATH"
NGINX_MISSING = None if NGINX else "nginx is neither on PATH nor in /usr/sbin"

_TestMethod = TypeVar("_TestMethod", bound=Callable[..., Any])


def needs(*missing: str | None) -> Callable[[_TestMethod], _TestMethod]:
    """
    Skip the decorated test when a program it needs is missing, with the
    reason from L{requireExternal}; under CI the test runs and fails, saying
    what is missing.
    """
    reasons = [reason for reason in missing if reason is not None]

    def decorate(test: _TestMethod) -> _TestMethod:
        if not reasons:
            return test
        reason = "; ".join(reasons)
        skip = requireExternal(reason)
        if skip is not None:
            test.skip = skip  # type: ignore[attr-defined]
            return test

        @wraps(test)
        def fail(self: TestCase, *args: Any, **kwargs: Any) -> None:
            self.fail(f"a required program is missing: {reason}")

        return fail  # type: ignore[return-value]

    return decorate


# Run argv[1:] in a new session: the child's pid is then its process group.
_NEW_SESSION = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"


def childEnvironment(**extra: str) -> dict[str, str]:
    """
    This process's environment without proxy settings (every peer talks to
    127.0.0.1 directly), plus C{extra}.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.lower().endswith("_proxy")
    }
    environment.update(extra)
    return environment


class ExternalProcess(ProcessProtocol):
    """
    An external program in its own session, with its output collected.

    @param path: the working directory, by default this process's.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], path: str | None = None
    ) -> None:
        self.argv = argv
        self.stdout = b""
        self.stderr = b""
        self.exitCode: int | None = None
        self.signal: int | None = None
        self.ended = False
        self._waiting: list[Deferred[None]] = []
        transport = reactor.spawnProcess(
            self,
            sys.executable,
            [sys.executable, "-c", _NEW_SESSION, *argv],
            env=env,
            path=path,
        )
        self.pid: int = transport.pid

    def outReceived(self, data: bytes) -> None:
        self.stdout += data

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        if isinstance(reason.value, (ProcessDone, ProcessTerminated)):
            self.exitCode = reason.value.exitCode
            self.signal = reason.value.signal
        # Whatever the program left behind in its group goes with it.
        self.signalGroup(signal.SIGKILL)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def signalGroup(self, signum: int) -> None:
        # contextlib.suppress, not a module-level "suppress": trial would take
        # that for the module's list of warnings to suppress.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def waitForEnd(self, seconds: float) -> Deferred[None]:
        """
        Fire when the program has ended; fail with Twisted's
        L{defer.TimeoutError} after C{seconds}.
        """
        d: Deferred[None] = Deferred(lambda d: self._waiting.remove(d))
        if self.ended:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d.addTimeout(seconds, reactor)

    async def stop(self, signum: int = signal.SIGTERM) -> None:
        """
        Ask the program to stop with C{signum}; if it has not ended after
        L{SHORT_TIMEOUT}, kill its process group.
        """
        if self.ended:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)
        try:
            await self.waitForEnd(SHORT_TIMEOUT)
        except defer.TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        self.signalGroup(signal.SIGKILL)
        await self.waitForEnd(SHORT_TIMEOUT)

    def describe(self) -> str:
        return (
            f"{self.argv!r} ended with exit code {self.exitCode}, signal"
            f" {self.signal}\n"
            f"stdout: {self.stdout.decode(errors='replace')}\n"
            f"stderr: {self.stderr.decode(errors='replace')}"
        )


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;

events {{
    worker_connections 64;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def websocketsEcho(
    url: str, message: str
) -> tuple[str | bytes, str | None, int | None]:
    """
    In a thread: connect with the Python C{websockets} client, send
    C{message}, and return the echo, the accepted extensions and the close
    code of the closing handshake (RFC 6455 §7.1.5).
    """
    from websockets.sync.client import connect

    with connect(url, proxy=None, open_timeout=10, close_timeout=5) as websocket:
        websocket.send(message)
        echo = websocket.recv(timeout=10)
        response = websocket.response
        assert response is not None
        extensions = response.headers.get("Sec-WebSocket-Extensions")
    return echo, extensions, websocket.close_code


class _Probe(Protocol):
    pass


class ProcessTestCase(TestCase):
    """
    Fixtures for tests that run external programs; every program started
    through them is stopped in the test's cleanup.
    """

    def temporaryDirectory(self) -> str:
        directory = tempfile.mkdtemp(prefix="upgrade-plugin-test-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        return directory

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
    ) -> ExternalProcess:
        process = ExternalProcess(
            argv, childEnvironment() if env is None else env, path
        )
        self.addCleanup(process.stop)
        return process

    def bounded(self, argv: list[str]) -> list[str]:
        """
        C{argv} under coreutils' C{timeout}, when there is one: a server
        that outlives its test (say the test runner was killed before its
        cleanup) is terminated after L{SERVER_LIFETIME} seconds, and killed
        5 seconds later. C{timeout} passes on the C{SIGTERM} of
        L{ExternalProcess.stop}.
        """
        if TIMEOUT is None:
            return argv
        return [TIMEOUT, "-k", "5", str(SERVER_LIFETIME), *argv]

    async def runToEnd(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
        seconds: float = PROCESS_TIMEOUT,
    ) -> ExternalProcess:
        """
        Run a program to its end, for at most C{seconds}; fail if it took
        longer.
        """
        process = self.spawn(argv, env, path)
        try:
            await process.waitForEnd(seconds)
        except defer.TimeoutError:
            await process.kill()
            self.fail(f"timed out after {seconds}s: {process.describe()}")
        return process

    async def runPeer(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
    ) -> ExternalProcess:
        """
        Run a program to its end, for at most L{PROCESS_TIMEOUT}; fail if it
        took longer or exited with an error.
        """
        process = await self.runToEnd(argv, env, path)
        if process.exitCode != 0:
            self.fail(process.describe())
        return process

    async def waitForAccepting(
        self, port: int, process: ExternalProcess, describe: Callable[[], str]
    ) -> None:
        """
        Wait, for at most L{SHORT_TIMEOUT}, until something accepts TCP
        connections on 127.0.0.1:C{port}; fail, with C{describe()}, if
        nothing does or C{process} ends first.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1)
        for _ in range(int(SHORT_TIMEOUT / 0.05)):
            if process.ended:
                break
            try:
                probe = await connectProtocol(endpoint, _Probe())
            except ConnectError:
                await deferLater(reactor, 0.05)
                continue
            probe.transport.loseConnection()
            return
        self.fail(f"nothing accepted on {port}: {process.describe()}\n{describe()}")

    async def chromium(self, url: str) -> str:
        """
        The DOM of C{url} after its scripts ran, from headless Chromium (as
        root, without a display or a sandbox; C{--virtual-time-budget} lets
        the page's script run before the DOM is dumped).
        """
        assert CHROMIUM is not None
        profile = self.temporaryDirectory()
        process = await self.runPeer(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                url,
            ],
            # Chromium keeps its caches and crash reports under HOME.
            childEnvironment(HOME=profile),
        )
        return process.stdout.decode("utf-8", errors="replace")

    async def nginx(self, backend: int) -> int:
        """
        Start nginx as a reverse proxy in front of 127.0.0.1:C{backend} (the
        usual WebSocket set-up: RFC 6455 §4.1's Upgrade and Connection
        fields are hop-by-hop and must be set again by the proxy) and return
        its port once it accepts connections.
        """
        assert NGINX is not None
        directory = self.temporaryDirectory()
        port = freePort()
        # As root, nginx runs its workers as nobody unless told otherwise,
        # and nobody cannot enter the private temporary directory, where a
        # worker puts a response that it buffers to disk.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                NGINX_CONF.format(user=user, dir=directory, port=port, backend=backend)
            )
        errorLog = os.path.join(directory, "error.log")
        process = self.spawn(
            self.bounded([NGINX, "-p", directory, "-e", errorLog, "-c", conf])
        )

        def describe() -> str:
            with open(errorLog, errors="replace") as f:
                return f.read()

        await self.waitForAccepting(port, process, describe)
        return port
