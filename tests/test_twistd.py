"""
C{twistd upgrade} as a process, with real clients and proxies on loopback:
the plugin's help, usage errors without tracebacks, the demo in headless
Chromium and over h2c with curl, the access log, nginx in front, and HAProxy
speaking the PROXY protocol to two twistd processes.

twistd finds the dropin in the repository's twisted/plugins/ because the
repository root is on C{PYTHONPATH}; each twistd runs in a temporary
directory, logs to a file there, and listens on port 0 (its port is read
from its log). Programs that are missing skip their tests, except under
C{UPGRADE_PLUGIN_REQUIRE_PEERS=1} (CI), where they fail. Every process is
stopped (its whole process group killed if need be) in the test's cleanup,
every wait is bounded, and servers run under coreutils' C{timeout} in case
the cleanup never runs.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

import twisted

from .processes import (
    CHROMIUM,
    CHROMIUM_MISSING,
    NGINX_MISSING,
    PROCESS_TIMEOUT,
    REPO,
    SHORT_TIMEOUT,
    ExternalProcess,
    ProcessTestCase,
    childEnvironment,
    findProgram,
    freePort,
    needs,
    websocketsEcho,
)
from .test_tap import OPTION_NAMES

reactor: Any = _reactor

CURL = findProgram("curl")
HAPROXY = findProgram("haproxy")
CURL_MISSING = None if CURL else "curl is not on PATH"
HAPROXY_MISSING = None if HAPROXY else "haproxy is neither on PATH nor in /usr/sbin"

# twistd itself, as the console script runs it.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]

# How long a twistd may take to start listening (a cold CI machine imports
# Twisted, autobahn and h2 first).
STARTUP_TIMEOUT = 30.0

# A --listen on a free port of 127.0.0.1.
LOCAL = ["--listen", "tcp:0:interface=127.0.0.1"]

# The address the clients behind HAProxy connect from: all of 127/8 is
# loopback on Linux, so HAProxy (on 127.0.0.1) and the client differ.
CLIENT_ADDRESS = "127.0.0.2"

# The demo page's verdict once its WebSocket round trip worked.
ECHO_OK = '<span id="status">echo ok</span>'

# A line of the access log (combined log format): the peer and the request.
ACCESS_LINE = re.compile(
    r'"(?P<peer>[^"]*)" - - \[[^]]*\] "(?P<request>[^"]*)" (?P<code>\d+) '
)

HAPROXY_CONF = """\
global
    maxconn 64

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h

frontend web
    bind 127.0.0.1:{port}
    default_backend twistd

backend twistd
    balance roundrobin
{servers}
"""


def twistdEnvironment() -> dict[str, str]:
    """
    The environment of a twistd: the repository root first on
    C{PYTHONPATH}, for the dropin and the C{upgrade_plugin} being tested.
    """
    path = [str(REPO)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return childEnvironment(PYTHONPATH=os.pathsep.join(path))


class Twistd:
    """
    A running C{twistd -n upgrade}: its process, log file and ports.
    """

    def __init__(self, process: ExternalProcess, logPath: str) -> None:
        self.process = process
        self.logPath = logPath
        self.ports: list[int] = []

    def log(self) -> str:
        try:
            with open(self.logPath, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def accessLines(self, request: str) -> list[tuple[str, int]]:
        """
        The peer and status code of each access-log line for C{request}
        (say C{GET /ws/echo HTTP/1.1}).
        """
        found = []
        for line in self.log().splitlines():
            match = ACCESS_LINE.search(line)
            if match is not None and match["request"] == request:
                found.append((match["peer"], int(match["code"])))
        return found

    def describe(self) -> str:
        return f"{self.process.describe()}\ntwistd log:\n{self.log()}"


def rawEcho(port: int) -> bytes:
    """
    In a thread: upgrade to the demo's raw C{echo} protocol at C{/echo} with
    data in the request's own write; return what came back once the data
    has been echoed.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=SHORT_TIMEOUT) as s:
        s.sendall(
            b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: echo\r\n\r\nhello, echo"
        )
        received = b""
        deadline = time.monotonic() + SHORT_TIMEOUT
        while not received.endswith(b"hello, echo") and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            received += data
    return received


def websocketsEchoFrom(
    source: str, port: int, messages: list[str]
) -> list[str | bytes]:
    """
    In a thread: for each of C{messages}, open a new connection from
    C{source} to 127.0.0.1:C{port}, upgrade it to WebSocket at C{/ws/echo}
    with the Python C{websockets} client, and collect the echo.
    """
    from websockets.sync.client import connect

    echoes = []
    for message in messages:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(SHORT_TIMEOUT)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
            with connect(
                f"ws://127.0.0.1:{port}/ws/echo",
                sock=sock,
                open_timeout=SHORT_TIMEOUT,
                close_timeout=5,
            ) as websocket:
                websocket.send(message)
                echoes.append(websocket.recv(timeout=SHORT_TIMEOUT))
        finally:
            sock.close()
    return echoes


class TwistdTests(ProcessTestCase):
    """
    C{twistd upgrade} processes and real clients.
    """

    # Each test: twistd starts, Chromium, proxies, each wait bounded.
    timeout = int(4 * PROCESS_TIMEOUT)

    async def twistd(self, *options: str) -> Twistd:
        """
        Start C{twistd -n upgrade OPTIONS} (give it C{--listen}s on port 0)
        and return it once it listens on all of them.
        """
        directory = self.temporaryDirectory()
        logPath = os.path.join(directory, "twistd.log")
        argv = [*TWISTD, "-n", "--pidfile=", f"--logfile={logPath}", "upgrade"]
        process = self.spawn(
            self.bounded([*argv, *options]), twistdEnvironment(), directory
        )
        server = Twistd(process, logPath)
        listeners = options.count("--listen")
        starting = re.compile(r"UpgradeSite(?: \(PROXY\))? starting on (\d+)")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and not process.ended:
            ports = [int(port) for port in starting.findall(server.log())]
            if len(ports) >= listeners:
                server.ports = ports
                return server
            await deferLater(reactor, 0.05)
        self.fail(f"twistd did not start listening: {server.describe()}")

    async def waitForLog(
        self, server: Twistd, request: str, count: int
    ) -> list[tuple[str, int]]:
        """
        The access-log lines for C{request} once there are C{count} of them
        (the log is written a moment after the client saw the answer), or
        after L{SHORT_TIMEOUT}, however many there are.
        """
        deadline = time.monotonic() + SHORT_TIMEOUT
        lines = server.accessLines(request)
        while len(lines) < count and time.monotonic() < deadline:
            await deferLater(reactor, 0.05)
            lines = server.accessLines(request)
        return lines

    async def test_help(self) -> None:
        """
        C{twistd --help} lists C{upgrade}; C{twistd upgrade --help}
        documents every option.
        """
        directory = self.temporaryDirectory()
        environment = twistdEnvironment()
        commands, plugin = await gatherResults(
            [
                Deferred.fromCoroutine(
                    self.runPeer([*TWISTD, "--help"], environment, directory)
                ),
                Deferred.fromCoroutine(
                    self.runPeer(
                        [*TWISTD, "-n", "upgrade", "--help"], environment, directory
                    )
                ),
            ]
        )
        self.assertRegex(commands.stdout.decode(), r"(?m)^\s+upgrade\s+\S")
        text = plugin.stdout.decode()
        for name in OPTION_NAMES:
            self.assertRegex(text, rf"(?m)^\s+--{re.escape(name)}=?\s+\S")

    async def test_badOptions(self) -> None:
        """
        A bad option value: a non-zero exit, a one-line usage error naming
        it, no traceback, and no server started (were one started by
        mistake, it would listen on a free port until it is killed).
        """
        directory = self.temporaryDirectory()
        environment = twistdEnvironment()
        cases = [
            (["--protocol", "garbage"], "garbage"),
            (["--listen", "nonsense:"], "nonsense:"),
            (["--websocket", "/ws=tests.noSuchModule.factory"], "noSuchModule"),
            (["--protocol", "/foo:foo/1/2=tests.test_tap.fooFactory"], "foo/1/2"),
            (["--tls-certificate", os.path.join(directory, "none.pem")], "none.pem"),
            (["--require-tls", "/secret"], "--tls-certificate"),
            (["--require-upgrade", "/nothing"], "/nothing"),
            (["--protocol", "/foo:foo/2=tests.test_tap.parse"], "tests.test_tap.parse"),
        ]
        runs = await gatherResults(
            [
                Deferred.fromCoroutine(
                    self.runToEnd(
                        [*TWISTD, "-n", "--pidfile=", "upgrade", *LOCAL, *arguments],
                        environment,
                        directory,
                        STARTUP_TIMEOUT,
                    )
                )
                for arguments, _ in cases
            ]
        )
        problems = []
        for (arguments, fragment), process in zip(cases, runs, strict=True):
            output = (process.stdout + process.stderr).decode(errors="replace")
            # twistd prints the usage, then "ARGV[0] ARGV[1]: MESSAGE".
            last = output.strip().splitlines()[-1:] or [""]
            # twistd of Twisted 25.x printed a usage error and exited with 0.
            failed = process.exitCode not in (0, None) or (
                process.exitCode == 0 and int(twisted.__version__.split(".")[0]) < 26
            )
            if (
                not failed
                or "Traceback" in output
                or "starting up" in output
                or not last[0].startswith("-c -n: ")
                or fragment not in last[0]
            ):
                problems.append(
                    f"{arguments!r}: exit code {process.exitCode}, last line"
                    f" {last[0]!r}, output:\n{output}"
                )
        if problems:
            self.fail("\n\n".join(problems))

    @needs(CHROMIUM_MISSING, CURL_MISSING)
    async def test_demo(self) -> None:
        """
        One C{twistd -n upgrade} process: headless Chromium loads C{/} and
        its WebSocket round trip says C{echo ok}; curl gets HTTP/2 by h2c;
        the raw echo protocol answers at C{/echo}; each upgraded request is
        one access-log line with 101.
        """
        assert CHROMIUM is not None and CURL is not None
        server = await self.twistd(*LOCAL)
        [port] = server.ports

        dom = await self.chromium(f"http://127.0.0.1:{port}/")
        self.assertIn(ECHO_OK, dom, server.describe())

        curl = await self.runPeer(
            [
                CURL,
                "-s",
                "--max-time",
                str(SHORT_TIMEOUT),
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version}",
                f"http://127.0.0.1:{port}/",
            ]
        )
        self.assertEqual(curl.stdout, b"2")

        echoed = await deferToThread(rawEcho, port)
        self.assertTrue(echoed.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertTrue(
            echoed.endswith(b"\r\n\r\necho: switched for GET /echo\r\nhello, echo")
        )

        self.assertEqual(
            await self.waitForLog(server, "GET /ws/echo HTTP/1.1", 1),
            [("127.0.0.1", 101)],
            server.log(),
        )
        self.assertEqual(
            await self.waitForLog(server, "GET /echo HTTP/1.1", 1),
            [("127.0.0.1", 101)],
            server.log(),
        )
        # curl's h2c upgrade, then its request answered over HTTP/2.
        self.assertEqual(
            await self.waitForLog(server, "GET / HTTP/1.1", 2),
            [("127.0.0.1", 200), ("127.0.0.1", 101)],
            server.log(),
        )
        self.assertEqual(
            await self.waitForLog(server, "GET / HTTP/2", 1),
            [("127.0.0.1", 200)],
            server.log(),
        )

    @needs(NGINX_MISSING, CHROMIUM_MISSING)
    async def test_behindNginx(self) -> None:
        """
        nginx as the usual WebSocket reverse proxy in front of the demo:
        the page's WebSocket in Chromium and the Python C{websockets}
        client both get their echo through it.
        """
        server = await self.twistd(*LOCAL)
        [backend] = server.ports
        port = await self.nginx(backend)

        dom = await self.chromium(f"http://127.0.0.1:{port}/")
        self.assertIn(ECHO_OK, dom, server.describe())

        echo, _, closeCode = await deferToThread(
            websocketsEcho, f"ws://127.0.0.1:{port}/ws/echo", "through nginx"
        )
        self.assertEqual((echo, closeCode), ("through nginx", 1000))
        self.assertEqual(
            await self.waitForLog(server, "GET /ws/echo HTTP/1.1", 2),
            [("127.0.0.1", 101), ("127.0.0.1", 101)],
            server.log(),
        )

    async def haproxy(self, servers: list[int]) -> int:
        """
        Start HAProxy in HTTP mode in front of C{servers} (round robin,
        speaking the PROXY protocol to each) and return its port once it
        accepts connections.
        """
        assert HAPROXY is not None
        directory = self.temporaryDirectory()
        port = freePort()
        conf = os.path.join(directory, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(
                HAPROXY_CONF.format(
                    port=port,
                    servers="\n".join(
                        f"    server twistd{i} 127.0.0.1:{server} send-proxy"
                        for i, server in enumerate(servers)
                    ),
                )
            )
        process = self.spawn(self.bounded([HAPROXY, "-db", "-f", conf]))
        await self.waitForAccepting(port, process, lambda: "")
        return port

    @needs(HAPROXY_MISSING)
    async def test_behindHAProxy(self) -> None:
        """
        HAProxy with C{send-proxy} in front of two twistd processes on
        C{haproxy:} endpoints: WebSocket upgrades from 127.0.0.2 reach both,
        and both log the client's address, not HAProxy's.
        """
        servers = await gatherResults(
            [
                Deferred.fromCoroutine(
                    self.twistd("--listen", "haproxy:tcp:0:interface=127.0.0.1")
                )
                for _ in range(2)
            ]
        )
        port = await self.haproxy([server.ports[0] for server in servers])

        messages = [f"message {i}" for i in range(4)]
        echoes = await deferToThread(websocketsEchoFrom, CLIENT_ADDRESS, port, messages)
        self.assertEqual(echoes, messages)

        upgrades = []
        for server in servers:
            lines = await self.waitForLog(server, "GET /ws/echo HTTP/1.1", 2)
            self.assertNotEqual(lines, [], server.describe())
            upgrades.extend(lines)
        self.assertEqual(
            upgrades,
            [(CLIENT_ADDRESS, 101)] * len(messages),
            "\n".join(server.log() for server in servers),
        )
