"""
C{twistd upgrade} without a process: the dropin is found by Twisted's plugin
system; C{--option}s are parsed by L{upgrade_plugin.tap.Options} and made
into services by C{makeService}, whose endpoints, L{UpgradeSite} and
resource tree are inspected and driven in memory; every bad value is a
one-line L{usage.UsageError} at parse time (which twistd prints without a
traceback); and the built wheel ships the dropin without Twisted's own
package files.

The C{module.attribute} values name objects defined here (the tests run with
the repository root on C{sys.path}, as the dropin needs).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet import _producer_helpers, endpoints
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.static import Data, File

from upgrade_plugin import ProtocolToken, UpgradeResource, UpgradeSite, tap
from upgrade_plugin.tls import RequireTLSPaths, TLSUpgrade
from upgrade_plugin.websocket import WebSocketUpgrade

from .helpers import (
    REPO,
    SWITCHED_FOO,
    Hello,
    ListLog,
    Recorder,
    RecorderFactory,
    Response,
    connect,
    parseResponses,
    rawRequest,
)
from .tls import certificateAndKeyPEM, serverOptions
from .wshelpers import handshake

reactor: Any = _reactor

# Every option that `twistd upgrade --help` must document.
OPTION_NAMES = [
    "listen",
    "path",
    "resource",
    "websocket",
    "protocol",
    "h2c",
    "no-h2c",
    "h2c-max-body",
    "tls-certificate",
    "tls-key",
    "allowed-origin",
    "advertise",
    "require-upgrade",
    "require-tls",
]

SWITCHED_WEBSOCKET = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"

# An h2c upgrade as curl sends it (RFC 7540 §3.2), with empty settings.
H2C_OFFER = rawRequest(
    path=b"/",
    headers=[
        (b"Host", b"example.com"),
        (b"Connection", b"Upgrade, HTTP2-Settings"),
        (b"Upgrade", b"h2c"),
        (b"HTTP2-Settings", b""),
    ],
)


# Targets for the options, by their module.attribute names.


class ChatProtocol(WebSocketServerProtocol):
    """
    Answers every WebSocket message with C{chat: } and the message.
    """

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(b"chat: " + payload, isBinary)


def chatFactory() -> WebSocketServerFactory:
    """
    A callable returning a WebSocket server factory: C{--websocket} calls it.
    """
    factory = WebSocketServerFactory()
    factory.protocol = ChatProtocol
    return factory


class ChatFactory(WebSocketServerFactory):
    """
    A WebSocket server factory class: a callable returning a factory, too.
    """

    protocol = ChatProtocol


chatFactoryInstance = chatFactory()

fooFactory = RecorderFactory()


class FooFactory(Factory):
    """
    A protocol factory class: not a protocol factory itself.
    """

    protocol = Recorder


notAFactory = "not a factory"


def returnsNone() -> None:
    """
    A callable that does not return a factory.
    """
    return None


resourceRoot = Resource()
resourceRoot.putChild(b"hello", Hello())


def containerRoot() -> Resource:
    """
    A tree whose C{/api} is the application's own plain container.
    """
    root = Resource()
    api = Resource()
    api.putChild(b"users", Hello())
    root.putChild(b"api", api)
    return root


def makeResource() -> Resource:
    """
    A callable returning a resource tree: C{--resource} calls it.
    """
    root = Resource()
    root.putChild(b"made", Data(b"made by a callable", "text/plain"))
    return root


def parse(*arguments: str) -> tap.Options:
    """
    C{twistd upgrade ARGUMENTS}' options.
    """
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options


def endpointShape(endpoint: object) -> object:
    """
    A comparable picture of a server endpoint: its type and its fields,
    wrapped endpoints included, without the reactor; objects that do not
    compare by value (TLS contexts) are pictured by their type.
    """
    fields: dict[str, object] = {}
    for name, value in sorted(vars(endpoint).items()):
        if name == "_reactor":
            continue
        if hasattr(value, "listen"):
            fields[name] = endpointShape(value)
        elif value is None or isinstance(value, (bool, int, float, str, bytes, type)):
            fields[name] = value
        else:
            fields[name] = type(value)
    return (type(endpoint), fields)


class Served:
    """
    The services of C{twistd upgrade ARGUMENTS}, and their site driven in
    memory on a fake clock, with its access log kept.
    """

    def __init__(self, clock: Clock, *arguments: str) -> None:
        self.clock = clock
        self.options = parse(*arguments)
        self.service = tap.makeService(self.options)
        self.services: list[StreamServerEndpointService] = list(self.service)
        sites = {id(service.factory) for service in self.services}
        assert len(sites) == 1, "every --listen serves the same site"
        site = self.services[0].factory
        assert isinstance(site, UpgradeSite)
        self.site: UpgradeSite = site
        self.site.reactor = clock
        self.accessLog = ListLog()
        self.site.logFile = self.accessLog

    def send(self, data: bytes) -> StringTransport:
        """
        Send C{data} on a new connection; return its transport.
        """
        protocol, transport = connect(self.site)
        protocol.dataReceived(data)
        # Let the producers of static.File write their files.
        for _ in range(10):
            self.clock.advance(0)
        return transport

    def get(
        self, path: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Response:
        """
        The one complete response to a GET of C{path} on a new connection.
        """
        headers = [(b"Host", b"example.com"), *(headers or [])]
        transport = self.send(rawRequest(path=path, headers=headers))
        [response], rest = parseResponses(transport.value())
        assert rest == b"", rest
        return response

    def child(self, *segments: bytes) -> Any:
        """
        The static resource at C{segments} under the root.
        """
        resource: Any = self.site.resource
        for segment in segments:
            resource = resource.children[segment]
        return resource


def offer(token: bytes) -> list[tuple[bytes, bytes]]:
    """
    The header fields of an upgrade offer of C{token}.
    """
    return [(b"Connection", b"Upgrade"), (b"Upgrade", token)]


class SiteTestCase(SynchronousTestCase):
    """
    Serves C{twistd upgrade}'s site in memory, entirely on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # twisted.web drives a pull producer (static.File's) with the global
        # cooperator, which would leave calls in the global reactor: drive
        # it on the clock instead.
        cooperator = Cooperator(scheduler=lambda work: self.clock.callLater(0, work))
        self.patch(_producer_helpers, "cooperate", cooperator.cooperate)

    def serve(self, *arguments: str) -> Served:
        """
        The services of C{twistd upgrade ARGUMENTS}.
        """
        return Served(self.clock, *arguments)


class PluginTests(SynchronousTestCase):
    """
    The dropin in twisted/plugins/ makes C{upgrade} a twistd subcommand.
    """

    def test_discovered(self) -> None:
        """
        Twisted's plugin system finds one L{IServiceMaker} named C{upgrade},
        whose options and service come from L{upgrade_plugin.tap}.
        """
        makers = [
            maker for maker in getPlugins(IServiceMaker) if maker.tapname == "upgrade"
        ]
        self.assertEqual(len(makers), 1, makers)
        [maker] = makers
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
        self.assertTrue(maker.description)

    def test_usageDocumentsEveryOption(self) -> None:
        """
        C{twistd upgrade --help} names every option with a description.
        """
        text = str(tap.Options())
        for name in OPTION_NAMES:
            self.assertRegex(text, rf"(?m)^\s+--{re.escape(name)}=?\s+\S")


class DefaultTests(SiteTestCase):
    """
    With no options: the demo on tcp:8080, h2c on.
    """

    def test_listen(self) -> None:
        """
        One listener, on tcp:8080.
        """
        served = self.serve()
        self.assertEqual(served.options["listen"], ["tcp:8080"])
        [service] = served.services
        self.assertIsInstance(service, StreamServerEndpointService)
        self.assertEqual(
            endpointShape(service.endpoint),
            endpointShape(endpoints.serverFromString(reactor, "tcp:8080")),
        )

    def test_demo(self) -> None:
        """
        The page at C{/}, a WebSocket echo at C{/ws/echo}, the raw C{echo}
        protocol at C{/echo}; each upgrade is one access-log line with 101.
        """
        served = self.serve()
        self.assertTrue(served.options["demo"])
        page = served.get(b"/")
        self.assertEqual(page.code, 200)
        self.assertIn(b'<span id="status">', page.body)
        self.assertIn(b"/ws/echo", page.body)

        transport = served.send(handshake(b"/ws/echo"))
        self.assertTrue(transport.value().startswith(SWITCHED_WEBSOCKET))

        transport = served.send(
            rawRequest(path=b"/echo", headers=[(b"Host", b"x"), *offer(b"echo")])
            + b"hello"
        )
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
            b"Connection: Upgrade\r\n\r\necho: switched for GET /echo\r\nhello",
        )
        required = served.get(b"/echo")
        self.assertEqual(required.code, 426)
        self.assertEqual(required.header(b"upgrade"), [b"echo"])

        lines = [line for line in served.accessLog.lines if '" 101 ' in line]
        self.assertEqual(len(lines), 2, served.accessLog.lines)
        self.assertIn('"GET /ws/echo HTTP/1.1" 101 ', lines[0])
        self.assertIn('"GET /echo HTTP/1.1" 101 ', lines[1])

    def test_h2c(self) -> None:
        """
        The demo accepts h2c: the site's own registry has it, and an h2c
        offer at C{/} is switched.
        """
        served = self.serve()
        self.assertTrue(served.site.h2c)
        self.assertEqual(served.site.upgradeRegistry.tokens(), [b"h2c"])
        transport = served.send(H2C_OFFER)
        self.assertTrue(
            transport.value().startswith(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
            ),
            transport.value(),
        )

    def test_noH2c(self) -> None:
        """
        C{--no-h2c} turns h2c off on the demo: an h2c offer gets the page.
        """
        served = self.serve("--no-h2c")
        self.assertFalse(served.site.h2c)
        self.assertEqual(served.site.upgradeRegistry.tokens(), [])
        [response], _ = parseResponses(served.send(H2C_OFFER).value())
        self.assertEqual(response.code, 200)
        self.assertIn(b'<span id="status">', response.body)

    def test_h2cOffWhenServingFiles(self) -> None:
        """
        h2c is off by default with C{--path} (and C{--resource}); C{--h2c}
        turns it on.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        self.assertFalse(self.serve("--path", directory).site.h2c)
        self.assertFalse(
            self.serve("--resource", "tests.test_tap.resourceRoot").site.h2c
        )
        served = self.serve("--path", directory, "--h2c")
        self.assertTrue(served.site.h2c)
        self.assertEqual(served.site.upgradeRegistry.tokens(), [b"h2c"])

    def test_h2cMaxBody(self) -> None:
        """
        C{--h2c-max-body} is the h2c target's limit.
        """
        served = self.serve("--h2c-max-body", "1000")
        registration = served.site.upgradeRegistry.lookup(
            ProtocolToken(name="h2c", version=None)
        )
        assert registration is not None
        target: Any = registration.target
        self.assertEqual(target.maxBodySize, 1000)


class ListenTests(SiteTestCase):
    """
    C{--listen}: any endpoint description, repeatable, one service each.
    """

    def test_several(self) -> None:
        """
        Each C{--listen} is a service, in order, on the endpoint its
        description parses to, all serving the same site.
        """
        socketPath = os.path.abspath(self.mktemp())
        descriptions = [
            "tcp:0:interface=127.0.0.1",
            "haproxy:tcp:0:interface=127.0.0.1",
            f"unix:{socketPath}",
            "tcp6:0:interface=\\:\\:1",
        ]
        arguments = [a for d in descriptions for a in ("--listen", d)]
        served = self.serve(*arguments)
        self.assertEqual(served.options["listen"], descriptions)
        self.assertEqual(
            [endpointShape(service.endpoint) for service in served.services],
            [
                endpointShape(endpoints.serverFromString(reactor, description))
                for description in descriptions
            ],
        )
        # The PROXY protocol listener wraps the site.
        wrapper: Any = served.services[1].endpoint
        self.assertEqual(wrapper._wrapperFactory.__name__, "HAProxyWrappingFactory")

    def test_ssl(self) -> None:
        """
        An C{ssl:} listener with its certificate and key.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        certificate, key = certificateAndKeyPEM()
        certificatePath = os.path.join(directory, "cert.pem")
        keyPath = os.path.join(directory, "key.pem")
        Path(certificatePath).write_bytes(certificate)
        Path(keyPath).write_bytes(key)
        served = self.serve(
            "--listen", f"ssl:0:privateKey={keyPath}:certKey={certificatePath}"
        )
        [service] = served.services
        self.assertIsInstance(service.endpoint, endpoints.SSL4ServerEndpoint)


class TreeTests(SiteTestCase):
    """
    The resource tree: C{--path}, C{--resource}, and what C{--websocket},
    C{--protocol}, C{--require-upgrade}, C{--advertise} and
    C{--allowed-origin} put in it.
    """

    def setUp(self) -> None:
        super().setUp()
        fooFactory.built.clear()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.directory, "sub"))
        for name, content in [
            ("hello.txt", b"hello, file"),
            ("foo", b"foo as a file"),
            ("secret", b"secret file"),
            ("sub/foo", b"sub/foo as a file"),
            ("sub/bar.txt", b"bar in sub"),
        ]:
            Path(self.directory, name).write_bytes(content)

    def test_path(self) -> None:
        """
        C{--path DIR} serves the files under DIR.
        """
        served = self.serve("--path", self.directory)
        self.assertFalse(served.options["demo"])
        root = served.site.resource
        self.assertIsInstance(root, File)
        assert isinstance(root, File)
        self.assertEqual(root.path, self.directory)
        response = served.get(b"/hello.txt")
        self.assertEqual((response.code, response.body), (200, b"hello, file"))
        self.assertEqual(served.get(b"/sub/bar.txt").body, b"bar in sub")
        self.assertEqual(served.get(b"/missing").code, 404)

    def test_resource(self) -> None:
        """
        C{--resource module.attribute} serves that resource.
        """
        served = self.serve("--resource", "tests.test_tap.resourceRoot")
        self.assertIs(served.site.resource, resourceRoot)
        response = served.get(b"/hello")
        self.assertEqual((response.code, response.body), (200, b"hello /hello"))

    def test_resourceCallable(self) -> None:
        """
        A callable given to C{--resource} is called for the resource.
        """
        served = self.serve("--resource", "tests.test_tap.makeResource")
        response = served.get(b"/made")
        self.assertEqual((response.code, response.body), (200, b"made by a callable"))

    def assertWebSocketAt(
        self, served: Served, segments: list[bytes]
    ) -> WebSocketUpgrade:
        """
        The child at C{segments} is an L{UpgradeResource} whose registry
        has C{websocket} only; return its target.
        """
        resource = served.child(*segments)
        self.assertIsInstance(resource, UpgradeResource)
        self.assertEqual(resource.registry.tokens(), [b"websocket"])
        registration = resource.registry.lookup(
            ProtocolToken(name="websocket", version=None)
        )
        self.assertIsInstance(registration.target, WebSocketUpgrade)
        target: WebSocketUpgrade = registration.target
        return target

    def test_websocket(self) -> None:
        """
        C{--websocket /ws/chat=module.callable} on the demo: an
        L{UpgradeResource} at C{ws/chat} with a L{WebSocketUpgrade} on the
        factory the callable returned; the demo's C{/ws/echo} stays.
        """
        served = self.serve("--websocket", "/ws/chat=tests.test_tap.chatFactory")
        target = self.assertWebSocketAt(served, [b"ws", b"chat"])
        self.assertIsInstance(target.factory, WebSocketServerFactory)
        self.assertIs(target.factory.protocol, ChatProtocol)
        self.assertTrue(
            served.send(handshake(b"/ws/chat")).value().startswith(SWITCHED_WEBSOCKET)
        )
        self.assertTrue(
            served.send(handshake(b"/ws/echo")).value().startswith(SWITCHED_WEBSOCKET)
        )

    def test_websocketFactoryInstance(self) -> None:
        """
        A factory given to C{--websocket} is used as it is.
        """
        served = self.serve(
            "--path",
            self.directory,
            "--websocket",
            "/chat=tests.test_tap.chatFactoryInstance",
        )
        target = self.assertWebSocketAt(served, [b"chat"])
        self.assertIs(target.factory, chatFactoryInstance)
        self.assertTrue(
            served.send(handshake(b"/chat")).value().startswith(SWITCHED_WEBSOCKET)
        )

    def test_websocketFactoryClass(self) -> None:
        """
        A factory class is "a callable returning" a factory (as
        C{--websocket}'s help has it): the handshake is switched to its
        protocol.
        """
        served = self.serve("--websocket", "/ws/chat=tests.test_tap.ChatFactory")
        transport = served.send(handshake(b"/ws/chat"))
        self.assertTrue(
            transport.value().startswith(SWITCHED_WEBSOCKET), transport.value()
        )
        target = self.assertWebSocketAt(served, [b"ws", b"chat"])
        self.assertIsInstance(target.factory, ChatFactory)

    def test_protocol(self) -> None:
        """
        C{--protocol /foo:foo/2=module.factory} over a file at C{/foo}: an
        L{UpgradeResource} whose registry has C{foo/2}; an offer of
        C{foo/2} switches to the factory's protocol with the bytes after the
        request, anything else gets the file.
        """
        served = self.serve(
            "--path",
            self.directory,
            "--protocol",
            "/foo:foo/2=tests.test_tap.fooFactory",
        )
        resource = served.child(b"foo")
        self.assertIsInstance(resource, UpgradeResource)
        self.assertEqual(resource.registry.tokens(), [b"foo/2"])
        self.assertIsInstance(resource.fallback, File)

        transport = served.send(rawRequest(path=b"/foo") + b"first bytes")
        self.assertEqual(transport.value(), SWITCHED_FOO)
        [recorder] = fooFactory.built
        self.assertEqual(recorder.data, b"first bytes")
        assert recorder.request is not None
        self.assertEqual(recorder.request.uri, b"/foo")

        for headers in [[], offer(b"foo/3")]:
            response = served.get(b"/foo", headers)
            self.assertEqual((response.code, response.body), (200, b"foo as a file"))
        self.assertEqual(
            [line for line in served.accessLog.lines if '" 101 ' in line],
            [
                line
                for line in served.accessLog.lines
                if '"GET /foo HTTP/1.1" 101 ' in line
            ],
        )
        self.assertEqual(len(served.accessLog.lines), 3)

    def test_protocolUnderSubdirectory(self) -> None:
        """
        A C{--protocol} path under a directory of C{--path}: the file there
        is the fallback, and the directory's other files are still served.
        """
        served = self.serve(
            "--path",
            self.directory,
            "--protocol",
            "/sub/foo:foo/2=tests.test_tap.fooFactory",
        )
        self.assertEqual(served.get(b"/sub/foo").body, b"sub/foo as a file")
        self.assertEqual(served.get(b"/sub/bar.txt").body, b"bar in sub")
        self.assertEqual(served.get(b"/hello.txt").body, b"hello, file")
        self.assertEqual(
            served.send(rawRequest(path=b"/sub/foo")).value(), SWITCHED_FOO
        )

    def test_severalTokensOnOnePath(self) -> None:
        """
        Several C{--websocket} and C{--protocol} at one path share one
        registry.
        """
        served = self.serve(
            "--protocol",
            "/foo:foo/2=tests.test_tap.fooFactory",
            "--protocol",
            "/foo:bar=tests.test_tap.fooFactory",
            "--websocket",
            "/foo=tests.test_tap.chatFactory",
        )
        resource = served.child(b"foo")
        self.assertEqual(
            sorted(resource.registry.tokens()), [b"bar", b"foo/2", b"websocket"]
        )
        self.assertEqual(served.send(rawRequest(path=b"/foo")).value(), SWITCHED_FOO)
        self.assertTrue(
            served.send(handshake(b"/foo")).value().startswith(SWITCHED_WEBSOCKET)
        )

    def test_protocolWithoutFile(self) -> None:
        """
        A C{--protocol} path where nothing else is served answers 426
        naming its token.
        """
        served = self.serve("--protocol", "/foo:foo/2=tests.test_tap.fooFactory")
        response = served.get(b"/foo")
        self.assertEqual(response.code, 426)
        self.assertEqual(response.header(b"upgrade"), [b"foo/2"])

    def test_requireUpgrade(self) -> None:
        """
        C{--require-upgrade /foo}: no fallback, a request without the
        upgrade gets 426 with C{Upgrade: foo/2} instead of the file; other
        files are still served.
        """
        served = self.serve(
            "--path",
            self.directory,
            "--protocol",
            "/foo:foo/2=tests.test_tap.fooFactory",
            "--require-upgrade",
            "/foo",
        )
        resource = served.child(b"foo")
        self.assertIsInstance(resource, UpgradeResource)
        self.assertIsNone(resource.fallback)
        response = served.get(b"/foo")
        self.assertEqual(response.code, 426)
        self.assertEqual(response.header(b"upgrade"), [b"foo/2"])
        self.assertEqual(response.header(b"connection"), [b"Upgrade"])
        self.assertEqual(served.get(b"/hello.txt").code, 200)
        self.assertEqual(served.send(rawRequest(path=b"/foo")).value(), SWITCHED_FOO)

    def test_nestedMounts(self) -> None:
        """
        A protocol mounted below a WebSocket path stays reachable, whichever
        order the options come in, and with C{--require-upgrade} on the
        outer path too.
        """
        for extra in ([], ["--require-upgrade", "/ws"]):
            served = self.serve(
                "--path",
                self.directory,
                "--protocol",
                "/ws/raw:foo/2=tests.test_tap.fooFactory",
                "--websocket",
                "/ws=tests.test_tap.chatFactory",
                *extra,
            )
            self.assertWebSocketAt(served, [b"ws"])
            transport = served.send(rawRequest(path=b"/ws/raw"))
            self.assertEqual(transport.value(), SWITCHED_FOO, extra)
            switched = served.send(handshake(b"/ws")).value()
            self.assertTrue(switched.startswith(b"HTTP/1.1 101 "), extra)
            # As /ws alone: 426 for it and for what is below it.
            self.assertEqual(served.get(b"/ws").code, 426, extra)
            self.assertEqual(served.get(b"/ws/x").code, 426, extra)

    def test_mountOnApplicationContainer(self) -> None:
        """
        A mount on the application's own plain container keeps it as the
        fallback: its children answer, an unknown one is 404.
        """
        served = self.serve(
            "--resource",
            "tests.test_tap.containerRoot",
            "--protocol",
            "/api:foo/2=tests.test_tap.fooFactory",
        )
        self.assertEqual(served.get(b"/api/users").code, 200)
        self.assertEqual(served.get(b"/api/typo").code, 404)
        self.assertEqual(served.send(rawRequest(path=b"/api")).value(), SWITCHED_FOO)

    def test_advertise(self) -> None:
        """
        C{--advertise}: the file at an upgrade path comes with
        C{Upgrade: foo/2} and C{Connection: Upgrade}; without it, not.
        """
        arguments = [
            "--path",
            self.directory,
            "--protocol",
            "/foo:foo/2=tests.test_tap.fooFactory",
        ]
        response = self.serve(*arguments, "--advertise").get(b"/foo")
        self.assertEqual((response.code, response.body), (200, b"foo as a file"))
        self.assertEqual(response.header(b"upgrade"), [b"foo/2"])
        self.assertIn(b"upgrade", response.header(b"connection")[0].lower())

        response = self.serve(*arguments).get(b"/foo")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"upgrade"), [])

    def test_allowedOrigin(self) -> None:
        """
        C{--allowed-origin}: WebSocket handshakes from other origins get
        403, on the demo's C{/ws/echo} and on C{--websocket} paths alike.
        """
        served = self.serve(
            "--allowed-origin",
            "http://good.example:*",
            "--websocket",
            "/ws/chat=tests.test_tap.chatFactory",
        )
        for path in [b"/ws/echo", b"/ws/chat"]:
            good = served.send(
                handshake(path, extra=[(b"Origin", b"http://good.example")])
            )
            self.assertTrue(good.value().startswith(SWITCHED_WEBSOCKET), good.value())
            bad = served.send(
                handshake(path, extra=[(b"Origin", b"http://evil.example")])
            )
            [response], _ = parseResponses(bad.value())
            self.assertEqual(response.code, 403)

    def test_allowedOriginLiteral(self) -> None:
        """
        Only C{*} is special in C{--allowed-origin}: a pattern with regular
        expression characters starts the server (no traceback), and an IPv6
        origin matches itself.
        """
        served = self.serve(
            "--allowed-origin", "[", "--allowed-origin", "http://[::1]:*"
        )
        good = served.send(
            handshake(b"/ws/echo", extra=[(b"Origin", b"http://[::1]:8080")])
        )
        self.assertTrue(good.value().startswith(SWITCHED_WEBSOCKET), good.value())

    def test_anyOriginByDefault(self) -> None:
        """
        Without C{--allowed-origin}, any origin may open the demo's socket.
        """
        served = self.serve()
        transport = served.send(
            handshake(b"/ws/echo", extra=[(b"Origin", b"http://anywhere.example")])
        )
        self.assertTrue(transport.value().startswith(SWITCHED_WEBSOCKET))


class TLSTests(SiteTestCase):
    """
    C{--tls-certificate}, C{--tls-key}, C{--require-tls}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        certificate, key = certificateAndKeyPEM()
        self.certificate = os.path.join(self.directory, "cert.pem")
        self.key = os.path.join(self.directory, "key.pem")
        self.both = os.path.join(self.directory, "both.pem")
        Path(self.certificate).write_bytes(certificate)
        Path(self.key).write_bytes(key)
        Path(self.both).write_bytes(certificate + key)
        Path(self.directory, "secret").write_bytes(b"secret file")
        Path(self.directory, "public").write_bytes(b"public file")

    def test_separateFiles(self) -> None:
        """
        A certificate and its key in two files: the site's registry has
        C{TLS} (RFC 2817, connection-wide).
        """
        served = self.serve(
            "--path",
            self.directory,
            "--tls-certificate",
            self.certificate,
            "--tls-key",
            self.key,
        )
        self.assertEqual(served.site.upgradeRegistry.tokens(), [b"TLS"])

    def test_oneFile(self) -> None:
        """
        The key defaults to the certificate's file; with the demo's h2c.
        """
        served = self.serve("--tls-certificate", self.both)
        self.assertEqual(sorted(served.site.upgradeRegistry.tokens()), [b"TLS", b"h2c"])

    def serveRequiringTLS(self) -> Served:
        """
        Serve the directory with C{/secret} TLS-only.
        """
        return self.serve(
            "--path",
            self.directory,
            "--tls-certificate",
            self.both,
            "--require-tls",
            "/secret",
        )

    def test_requireTLS(self) -> None:
        """
        C{--require-tls /secret}: on cleartext, 426 with
        C{Upgrade: TLS/x.y, HTTP/1.1} (RFC 2817 §4.2); other paths served.
        """
        served = self.serveRequiringTLS()
        self.assertIsInstance(served.site.resource, RequireTLSPaths)
        response = served.get(b"/secret")
        self.assertEqual(response.code, 426)
        [upgrade] = response.header(b"upgrade")
        self.assertRegex(upgrade, rb"^TLS/1\.[0-3], HTTP/1\.1$")
        self.assertEqual(response.header(b"connection"), [b"Upgrade"])
        self.assertNotIn(b"secret file", response.body)
        self.assertEqual(served.get(b"/public").body, b"public file")

    def test_requireTLSNoWayAround(self) -> None:
        """
        The rule holds for every spelling a file tree answers as the same
        path: dot segments, an encoded dot, an encoded slash.
        """
        served = self.serveRequiringTLS()
        for path in [
            b"/./secret",
            b"/%2E/secret",
            b"/secret%2F",
            b"/x/../secret",
            # twisted.web drops a path's first byte, whatever it is.
            b"xsecret",
            b"*secret",
        ]:
            response = served.get(path)
            self.assertEqual(response.code, 426, path)
            self.assertNotIn(b"secret file", response.body, path)

    def test_requireTLSLeafBelow(self) -> None:
        """
        Below a leaf resource that takes the rest of the path, C{..} does
        not lead out of the rule: twisted.web still walks to the leaf.
        """

        class Leaf(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"admin"

        root = Resource()
        root.putChild(b"admin", Leaf())
        root.putChild(b"", Data(b"home", "text/plain"))
        upgrade = TLSUpgrade(serverOptions())
        site = UpgradeSite(
            RequireTLSPaths(root, upgrade, [[b"admin"]]), reactor=Clock()
        )
        site.logFile = ListLog()
        for path in [b"/admin/..", b"/admin/%2e%2e", b"/admin/x/../..", b"xadmin"]:
            protocol, transport = connect(site)
            protocol.dataReceived(rawRequest(path=path, headers=[(b"Host", b"x")]))
            [response], _ = parseResponses(transport.value())
            self.assertEqual((response.code, response.body[:3]), (426, b"426"), path)


class BadValueTests(SynchronousTestCase):
    """
    Every bad value is a L{usage.UsageError} from C{parseOptions}, whose
    message is one line naming what is wrong (twistd prints it under the
    usage, with no traceback).
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def assertUsageError(self, arguments: list[str], fragment: str) -> None:
        """
        Parsing C{arguments} fails with a one-line usage error that
        contains C{fragment}.
        """
        try:
            options = parse(*arguments)
        except usage.UsageError as error:
            message = str(error)
        else:
            try:
                tap.makeService(options)
            except Exception as error:
                outcome = f"makeService then raised {error!r}"
            else:
                outcome = "makeService then succeeded"
            self.fail(f"{arguments!r}: parseOptions raised no UsageError; {outcome}")
        self.assertIn(fragment, message, arguments)
        self.assertNotIn("\n", message.strip(), arguments)

    def test_unknownModule(self) -> None:
        """
        A C{module.attribute} that names no module or no attribute.
        """
        cases = [
            (["--protocol", "/foo:foo/2=tests.noSuchModule.factory"], "noSuchModule"),
            (["--websocket", "/ws=noSuchPackage.factory"], "noSuchPackage"),
            (["--resource", "noSuchPackage.root"], "noSuchPackage"),
            (["--resource", "tests.test_tap.noSuchAttribute"], "noSuchAttribute"),
            (
                ["--protocol", "/foo:foo/2=tests.test_tap.noSuchAttribute"],
                "noSuchAttribute",
            ),
            (["--resource", "root"], "root"),
        ]
        for arguments, fragment in cases:
            self.assertUsageError(arguments, fragment)

    def test_notAFactory(self) -> None:
        """
        An attribute that is not what the option takes.
        """
        cases = [
            ["--protocol", "/foo:foo/2=tests.test_tap.notAFactory"],
            ["--protocol", "/foo:foo/2=tests.test_tap.chatFactory"],
            ["--websocket", "/ws=tests.test_tap.notAFactory"],
            ["--websocket", "/ws=tests.test_tap.returnsNone"],
            ["--resource", "tests.test_tap.notAFactory"],
            ["--resource", "tests.test_tap.returnsNone"],
        ]
        for arguments in cases:
            self.assertUsageError(arguments, arguments[1].rpartition("=")[2])

    def test_protocolFactoryClass(self) -> None:
        """
        A protocol factory may be named by its class: it is instantiated,
        and the registry holds the instance (not the class, which
        C{UpgradeRegistry} would refuse).
        """
        config = parse("--protocol", "/foo:foo/2=tests.test_tap.FooFactory")
        [(path, token, factory)] = config["protocols"]
        self.assertEqual((path, token), ([b"foo"], "foo/2"))
        self.assertIsInstance(factory, FooFactory)

    def test_malformedProtocol(self) -> None:
        """
        C{--protocol} values that are not C{PATH:TOKEN=module.factory}.
        """
        cases = [
            ("garbage", "garbage"),
            ("/foo:foo/2", "/foo:foo/2"),
            ("/foo=tests.test_tap.fooFactory", "/foo=tests.test_tap.fooFactory"),
            (":foo/2=tests.test_tap.fooFactory", ":foo/2=tests.test_tap.fooFactory"),
            ("/foo:foo/2=", "/foo:foo/2="),
            ("foo:foo/2=tests.test_tap.fooFactory", "foo"),
        ]
        for value, fragment in cases:
            self.assertUsageError(["--protocol", value], fragment)

    def test_badToken(self) -> None:
        """
        C{--protocol} tokens that are not C{token ["/" token]}.
        """
        for token in ["foo/1/2", "foo/", "/2", "foo bar", "fo@o"]:
            self.assertUsageError(
                ["--protocol", f"/foo:{token}=tests.test_tap.fooFactory"], token
            )

    def test_malformedWebSocket(self) -> None:
        """
        C{--websocket} values that are not C{PATH=module.factory}.
        """
        cases = [
            ("garbage", "garbage"),
            ("/ws=", "/ws="),
            ("=tests.test_tap.chatFactory", "=tests.test_tap.chatFactory"),
            ("ws=tests.test_tap.chatFactory", "ws"),
        ]
        for value, fragment in cases:
            self.assertUsageError(["--websocket", value], fragment)

    def test_unreadableCertificate(self) -> None:
        """
        A certificate or key file that cannot be read.
        """
        certificate, _ = certificateAndKeyPEM()
        existing = os.path.join(self.directory, "cert.pem")
        Path(existing).write_bytes(certificate)
        missing = os.path.join(self.directory, "missing.pem")
        cases = [
            ["--tls-certificate", missing],
            ["--tls-certificate", self.directory],
            ["--tls-certificate", existing, "--tls-key", missing],
        ]
        for arguments in cases:
            self.assertUsageError(arguments, arguments[1])

    def test_garbageCertificate(self) -> None:
        """
        Files that are not a PEM certificate and its key.
        """
        certificate, key = certificateAndKeyPEM()
        garbage = os.path.join(self.directory, "garbage.pem")
        Path(garbage).write_bytes(b"-----BEGIN GARBAGE-----\nnot base64\n")
        onlyCertificate = os.path.join(self.directory, "cert.pem")
        Path(onlyCertificate).write_bytes(certificate)
        onlyKey = os.path.join(self.directory, "key.pem")
        Path(onlyKey).write_bytes(key)
        cases = [
            ["--tls-certificate", garbage],
            ["--tls-certificate", onlyCertificate],
            ["--tls-certificate", onlyKey],
            ["--tls-certificate", onlyCertificate, "--tls-key", garbage],
        ]
        for arguments in cases:
            self.assertUsageError(arguments, arguments[1])

    def test_badEndpoint(self) -> None:
        """
        C{--listen} values that are not endpoint descriptions.
        """
        for description in [
            "nonsense:",
            "tcp:notaport",
            "tcp:",
            "ssl:0:privateKey=/nonexistent/key.pem",
        ]:
            self.assertUsageError(["--listen", description], description)

    def test_pathAndResource(self) -> None:
        """
        C{--path} and C{--resource} together.
        """
        self.assertUsageError(
            ["--path", self.directory, "--resource", "tests.test_tap.resourceRoot"],
            "--resource",
        )

    def test_pathNotADirectory(self) -> None:
        """
        A C{--path} that is not a directory.
        """
        file = os.path.join(self.directory, "file")
        Path(file).write_bytes(b"")
        for path in [os.path.join(self.directory, "missing"), file]:
            self.assertUsageError(["--path", path], path)

    def test_tlsKeyWithoutCertificate(self) -> None:
        """
        C{--tls-key} without C{--tls-certificate}.
        """
        _, key = certificateAndKeyPEM()
        keyPath = os.path.join(self.directory, "key.pem")
        Path(keyPath).write_bytes(key)
        self.assertUsageError(["--tls-key", keyPath], "--tls-certificate")

    def test_requireTLSWithoutCertificate(self) -> None:
        """
        C{--require-tls} without C{--tls-certificate}.
        """
        self.assertUsageError(["--require-tls", "/secret"], "--tls-certificate")

    def test_badPath(self) -> None:
        """
        A path option that is not an absolute URL path.
        """
        for option in ["--require-upgrade", "--require-tls"]:
            self.assertUsageError([option, "secret"], "secret")

    def test_requireUpgradeWithoutTarget(self) -> None:
        """
        C{--require-upgrade} at a path with no C{--websocket} or
        C{--protocol}: a usage error when the options are parsed, not when
        C{makeService} runs (twistd prints a traceback for that).
        """
        self.assertUsageError(["--require-upgrade", "/nothing"], "/nothing")

    def test_h2cMaxBody(self) -> None:
        """
        A C{--h2c-max-body} that is not a number.
        """
        self.assertUsageError(["--h2c-max-body", "lots"], "--h2c-max-body")
        self.assertUsageError(["--h2c-max-body", "-1"], "--h2c-max-body")


# What building the wheel must not copy from a working tree.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "_trial_temp*",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    "node_modules",
)


class WheelTests(TestCase):
    """
    The wheel installs the dropin into the C{twisted.plugins} namespace
    without Twisted's own package files.
    """

    # pip builds in an isolated environment, which it may have to download.
    timeout = 600

    async def test_contents(self) -> None:
        """
        Built from a copy of the working tree (with a C{dropin.cache} next
        to the dropin, as after any twistd run), the wheel has
        C{twisted/plugins/upgrade_plugin_dropin.py} and the package, and no
        C{twisted/__init__.py}, C{twisted/plugins/__init__.py} or
        C{dropin.cache}.
        """
        work = tempfile.mkdtemp(prefix="upgrade-plugin-wheel-")
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        source = os.path.join(work, "source")
        out = os.path.join(work, "out")
        shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
        Path(source, "twisted", "plugins", "dropin.cache").write_bytes(b"")
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "pip", "wheel", "--no-deps", "-w", out, source],
            env=dict(os.environ),
            path=work,
        )
        self.assertEqual(code, 0, (stdout + stderr).decode(errors="replace"))
        [wheel] = Path(out).glob("upgrade_plugin-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        self.assertIn("twisted/plugins/upgrade_plugin_dropin.py", names)
        self.assertIn("upgrade_plugin/tap.py", names)
        self.assertIn("upgrade_plugin/demo.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual([name for name in names if "dropin.cache" in name], [])
        self.assertEqual(
            [name for name in names if name.startswith("twisted/")],
            ["twisted/plugins/upgrade_plugin_dropin.py"],
        )
