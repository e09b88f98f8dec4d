"""
L{WebSocketUpgrade} in memory: the opening handshake's exact answers
(RFC 6455 §4.2), permessage-deflate declines (RFC 7692 §7), and frames that
arrive with the handshake.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from upgrade_plugin import UpgradeRegistry, UpgradeResource
from upgrade_plugin._wshandshake import (
    ExtensionOffer,
    acceptKey,
    parseExtensions,
    permessageDeflateParams,
)
from upgrade_plugin.websocket import WebSocketUpgrade

from .helpers import Hello, ListLog, connect, memorySite, parseResponses
from .wshelpers import (
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    clientFrame,
    deny,
    echoFactory,
    handshake,
    serverFrame,
)

SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + SAMPLE_ACCEPT + b"\r\n"
    b"\r\n"
)


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.factory = echoFactory()

    def serve(self, fallback: Resource | None = None, **targetOptions: Any) -> None:
        registry = UpgradeRegistry()
        registry.register("websocket", WebSocketUpgrade(self.factory, **targetOptions))
        self.site, self.clock = memorySite(
            UpgradeResource(registry, fallback), path=b"ws"
        )
        self.accessLog = ListLog()
        self.site.logFile = self.accessLog
        self.protocol, self.transport = connect(self.site)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def answer(self, data: bytes) -> Any:
        self.serve()
        self.send(data)
        [response], rest = parseResponses(self.transport.value())
        self.assertEqual(rest, b"")
        return response

    def events(self, kind: str) -> list[Any]:
        return [value for name, value in self.factory.events if name == kind]


class TargetURITests(SynchronousTestCase):
    def test_unsplittableTarget(self) -> None:
        """
        A request-target that autobahn's URL split refuses (C{//[x}) is a
        bad request: 400, not a server error.
        """
        registry = UpgradeRegistry()
        registry.register("websocket", WebSocketUpgrade(echoFactory()))
        site = Site(UpgradeResource(registry), reactor=Clock())
        site.logFile = ListLog()
        protocol, transport = connect(site)
        protocol.dataReceived(handshake(path=b"//[x/ws"))
        [response], _ = parseResponses(transport.value())
        self.assertEqual(response.code, 400)
        self.assertEqual(self.flushLoggedErrors(), [])


class ImportTests(SynchronousTestCase):
    def test_noReactorInstalled(self) -> None:
        """
        Importing the WebSocket target installs no reactor: an application
        may still install the one it wants (asyncio's, say).
        """
        import os
        import subprocess
        import sys

        from .helpers import REPO

        code = (
            "import sys, upgrade_plugin.websocket;"
            " print('twisted.internet.reactor' in sys.modules)"
        )
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.assertEqual((result.stdout.strip(), result.stderr), ("False", ""))


class AcceptKeyTests(SynchronousTestCase):
    def test_rfcSample(self) -> None:
        """
        W8: RFC 6455 §1.3's sample key.
        """
        self.assertEqual(acceptKey(SAMPLE_KEY), SAMPLE_ACCEPT)


class HandshakeTests(Base):
    """
    RFC 6455 §4.2.1, §4.2.2: one request per rule.
    """

    def test_accepted(self) -> None:
        """
        W8: the exact 101; autobahn's protocol is open and the access log
        has the 101.
        """
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        self.assertEqual(len(self.events("open")), 1)
        self.assertIn('"GET /ws HTTP/1.1" 101 -', self.accessLog.lines[0])

    def test_upgradeSpellings(self) -> None:
        """
        G2, G3, W1(3): "websocket" as one member of a list, in any case,
        among invalid members.
        """
        for upgrade in [b"WEBSOCKET", b"h2c, websocket", b"foo/1/2, WebSocket"]:
            self.factory.events.clear()
            self.serve()
            self.send(handshake(replace={b"Upgrade": upgrade}))
            self.assertEqual(self.transport.value(), SWITCHED, upgrade)

    def test_connectionOnAnyLine(self) -> None:
        self.serve()
        self.send(
            handshake(
                replace={b"Connection": b"keep-alive"},
                extra=[(b"Connection", b"upgrade")],
            )
        )
        self.assertEqual(self.transport.value(), SWITCHED)

    def test_badRequests(self) -> None:
        """
        W1, W9, S30: each violation is a 400, never a 500, and nothing is
        switched.
        """
        cases = [
            ("missing Host", handshake(drop=(b"Host",))),
            ("two Hosts", handshake(extra=[(b"Host", b"other.example")])),
            ("missing key", handshake(drop=(b"Sec-WebSocket-Key",))),
            ("short key", handshake(replace={b"Sec-WebSocket-Key": b"AAAA"})),
            (
                "key not base64",
                handshake(replace={b"Sec-WebSocket-Key": b"!!!!!!!!!!!!!!!!!!!!!!=="}),
            ),
            (
                "key of 17 bytes",
                handshake(replace={b"Sec-WebSocket-Key": b"AAAAAAAAAAAAAAAAAAAAAAA="}),
            ),
            (
                "two keys",
                handshake(extra=[(b"Sec-WebSocket-Key", SAMPLE_KEY)]),
            ),
            ("missing version", handshake(drop=(b"Sec-WebSocket-Version",))),
            (
                "two versions",
                handshake(extra=[(b"Sec-WebSocket-Version", b"13")]),
            ),
            (
                "non-ASCII subprotocol",
                handshake(extra=[(b"Sec-WebSocket-Protocol", b"chat\xe9")]),
            ),
            (
                "duplicate subprotocol",
                handshake(extra=[(b"Sec-WebSocket-Protocol", b"chat, chat")]),
            ),
            (
                "two Origins",
                handshake(extra=[(b"Origin", b"http://a"), (b"Origin", b"http://b")]),
            ),
        ]
        for name, raw in cases:
            response = self.answer(raw)
            self.assertEqual(response.code, 400, name)
            self.assertEqual(
                response.header(b"content-type"), [b"text/plain; charset=utf-8"], name
            )
            self.assertNotIn(b"HTTP/1.1 101", self.transport.value(), name)
            self.assertEqual(self.events("connect"), [], name)
            self.assertFalse(self.transport.disconnecting, name)

    def test_unsupportedVersion(self) -> None:
        """
        W4: 426 with the version we speak, and the Upgrade/Connection every
        426 owes (S5, S8).
        """
        for version in [b"14", b"8", b"abc"]:
            response = self.answer(
                handshake(replace={b"Sec-WebSocket-Version": version})
            )
            self.assertEqual(response.status, b"HTTP/1.1 426 Upgrade Required")
            self.assertEqual(response.header(b"sec-websocket-version"), [b"13"])
            self.assertEqual(response.header(b"upgrade"), [b"websocket"])
            self.assertEqual(response.header(b"connection"), [b"Upgrade"])

    def test_notUpgraded(self) -> None:
        """
        S7, S9, D6: HEAD, POST and HTTP/1.0 are answered as if nothing had
        been offered (here: the fallback).
        """
        cases = [
            handshake(method=b"HEAD"),
            handshake(method=b"POST", extra=[(b"Content-Length", b"2")]) + b"hi",
            handshake(version=b"HTTP/1.0"),
        ]
        for raw in cases:
            self.serve(Hello())
            self.send(raw)
            self.assertNotIn(b" 101 ", self.transport.value(), raw)
            head = raw.startswith(b"HEAD")
            [response], _ = parseResponses(self.transport.value(), head=head)
            self.assertEqual(response.code, 200, raw)
            self.assertEqual(self.events("connect"), [])

    def test_notUpgradedWithoutFallback(self) -> None:
        response = self.answer(handshake(method=b"POST"))
        self.assertEqual(response.code, 426)
        self.assertEqual(response.header(b"upgrade"), [b"websocket"])

    def test_originDisallowed(self) -> None:
        """
        W3: a disallowed Origin gets 403 and no 101.
        """
        self.factory.setProtocolOptions(allowedOrigins=["https://good.example"])
        response = self.answer(handshake(extra=[(b"Origin", b"https://evil.example")]))
        self.assertEqual(response.code, 403)
        self.assertEqual(self.events("connect"), [])

    def test_originAllowed(self) -> None:
        self.factory.setProtocolOptions(allowedOrigins=["https://good.example:443"])
        self.serve()
        self.send(handshake(extra=[(b"Origin", b"https://good.example")]))
        self.assertEqual(self.transport.value(), SWITCHED)

    def test_nullOriginWithAllowList(self) -> None:
        """
        W3: with an allow-list on the target, the opaque origin of sandboxed
        frames and file: pages is refused unless the list names "null".
        """
        for origin in [b"null", b"file:///tmp/x.html"]:
            self.serve(allowedOrigins=["https://example.com:*"])
            self.send(handshake(extra=[(b"Origin", origin)]))
            [response], _ = parseResponses(self.transport.value())
            self.assertEqual(response.code, 403, origin)
        self.serve(allowedOrigins=["https://example.com:*", "null"])
        self.send(handshake(extra=[(b"Origin", b"null")]))
        self.assertEqual(self.transport.value(), SWITCHED)

    def test_originPatternsLiteral(self) -> None:
        """
        In the target's origin patterns only C{*} is special: an IPv6
        origin in brackets matches itself, and C{[} is no error.
        """
        self.serve(allowedOrigins=["http://[::1]:8080", "["])
        self.send(handshake(extra=[(b"Origin", b"http://[::1]:8080")]))
        self.assertEqual(self.transport.value(), SWITCHED)
        self.serve(allowedOrigins=["http://[::1]:8080", "["])
        self.send(handshake(extra=[(b"Origin", b"http://1:8080")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 403)

    def test_originOptionOnTarget(self) -> None:
        self.serve(allowedOrigins=["http://mine.example:*"])
        self.send(handshake(extra=[(b"Origin", b"http://other.example")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 403)
        self.serve(allowedOrigins=["http://mine.example:*"])
        self.send(handshake(extra=[(b"Origin", b"http://mine.example")]))
        self.assertEqual(self.transport.value(), SWITCHED)


class SubprotocolTests(Base):
    """
    W6: onConnect chooses at most one of the offered subprotocols.
    """

    offer: ClassVar = [(b"Sec-WebSocket-Protocol", b"chat, superchat")]

    def test_chosen(self) -> None:
        self.factory.choose = lambda request: request.protocols[1]
        self.serve()
        self.send(handshake(extra=self.offer))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"sec-websocket-protocol"), [b"superchat"])
        [request] = self.events("connect")
        self.assertEqual(request.protocols, ["chat", "superchat"])
        self.assertEqual(request.path, "/ws")
        self.assertEqual(request.host, "example.com")
        self.assertEqual(request.headers["sec-websocket-protocol"], "chat, superchat")

    def test_noneChosen(self) -> None:
        self.serve()
        self.send(handshake(extra=self.offer))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"sec-websocket-protocol"), [])

    def test_chosenWithHeaders(self) -> None:
        self.factory.choose = lambda request: ("chat", {"X-Room": "1"})
        self.serve()
        self.send(handshake(extra=self.offer))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"x-room"), [b"1"])
        self.assertEqual(response.header(b"sec-websocket-protocol"), [b"chat"])

    def test_headerWithLineBreakIsServerError(self) -> None:
        """
        A header from C{onConnect} whose value would break the raw 101's
        head (say, a request value echoed back) is a server error: 500, and
        no 101 and no injected field.
        """
        self.factory.choose = lambda request: ("chat", {"X-Room": "1\r\nX-Evil: 1"})
        response = self.answer(handshake(extra=self.offer))
        self.assertEqual(response.code, 500)
        self.assertEqual(response.header(b"x-evil"), [])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_headerValuesAsAutobahnTakesThem(self) -> None:
        """
        Extra headers from C{onConnect} as autobahn's own server takes
        them: a value that is not a string is one value, written as text;
        an iterable gives several lines.
        """
        self.factory.choose = lambda request: (
            None,
            {"X-Count": 5, "X-Many": ["a", "b"]},
        )
        self.serve()
        self.send(handshake())
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 101)
        self.assertEqual(response.header(b"x-count"), [b"5"])
        self.assertEqual(response.header(b"x-many"), [b"a", b"b"])

    def test_denied(self) -> None:
        self.factory.choose = deny(403, "not you")
        response = self.answer(handshake(extra=self.offer))
        self.assertEqual((response.code, response.body), (403, b"not you\n"))

    def test_notOfferedIsServerError(self) -> None:
        self.factory.choose = lambda request: "other"
        response = self.answer(handshake(extra=self.offer))
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_asyncOnConnect(self) -> None:
        later: Deferred[Any] = Deferred()
        self.factory.choose = lambda request: later
        self.serve()
        self.send(handshake(extra=self.offer) + clientFrame(b"early"))
        self.assertEqual(self.transport.value(), b"")
        later.callback("chat")
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(self.events("message"), [b"early"])

    def test_asyncDeny(self) -> None:
        later: Deferred[Any] = Deferred()
        self.factory.choose = lambda request: later
        self.serve()
        self.send(handshake())
        from autobahn.websocket.types import ConnectionDeny

        later.errback(ConnectionDeny(401, "who?"))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual((response.code, response.body), (401, b"who?\n"))


class OneConnectionBase(Base):
    """
    A factory with C{maxConnections=1}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.factory.maxConnections = 1

    def handshakeOnNewConnection(self) -> Any:
        protocol, transport = connect(self.site)
        protocol.dataReceived(handshake())
        return transport

    def answerOf(self, transport: Any) -> tuple[int, bytes]:
        [response], _ = parseResponses(transport.value())
        return response.code, response.body

    def waitOnce(self) -> list[Deferred[Any]]:
        """
        Make C{onConnect} wait on a Deferred the first time (it is appended
        to the list returned), and accept at once after that.
        """
        waiting: list[Deferred[Any]] = []

        def choose(request: Any) -> Deferred[Any] | None:
            if waiting:
                return None
            waiting.append(Deferred())
            return waiting[-1]

        self.factory.choose = choose
        return waiting


class MaxConnectionsTests(OneConnectionBase):
    """
    The factory's C{maxConnections}: beyond it a handshake gets 503, and a
    handshake still waiting on an asynchronous C{onConnect} holds a place.
    """

    TOO_MANY = (503, b"too many WebSocket connections\n")

    def test_beyondLimit(self) -> None:
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        other = self.handshakeOnNewConnection()
        self.assertEqual(self.answerOf(other), self.TOO_MANY)

    def test_pendingHandshakeHoldsPlace(self) -> None:
        """
        Two handshakes arrive while the first waits on C{onConnect}: the
        second is refused at once, not let through to exceed the limit
        when both are accepted.
        """
        waiting: list[Deferred[Any]] = []

        def choose(request: Any) -> Deferred[Any]:
            waiting.append(Deferred())
            return waiting[-1]

        self.factory.choose = choose
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), b"")
        second = self.handshakeOnNewConnection()
        self.assertEqual(self.answerOf(second), self.TOO_MANY)
        self.assertEqual(len(waiting), 1)
        waiting[0].callback(None)
        self.assertEqual(self.transport.value(), SWITCHED)
        third = self.handshakeOnNewConnection()
        self.assertEqual(self.answerOf(third), self.TOO_MANY)

    def test_deniedHandshakeFreesPlace(self) -> None:
        from autobahn.websocket.types import ConnectionDeny

        waiting = self.waitOnce()
        self.serve()
        self.send(handshake())
        waiting[0].errback(ConnectionDeny(403, "no"))
        self.assertEqual(self.answerOf(self.transport), (403, b"no\n"))
        other = self.handshakeOnNewConnection()
        self.assertEqual(other.value(), SWITCHED)


class AsyncOnConnectTests(OneConnectionBase):
    """
    An asynchronous C{onConnect} that is slow, outlived by its client, or
    not a coroutine: the handshake ends, its place under C{maxConnections}
    is freed, and the protocol is closed (C{onClose}) as autobahn's own
    server closes one whose opening handshake failed.
    """

    def closes(self) -> list[Any]:
        return self.events("close")

    def test_timesOut(self) -> None:
        """
        After the factory's C{openHandshakeTimeout} the request is answered
        503 and the place is free again.
        """
        self.factory.setProtocolOptions(openHandshakeTimeout=2)
        self.waitOnce()
        self.serve()
        self.factory.reactor = self.clock
        self.send(handshake())
        self.clock.advance(1.9)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(0.2)
        self.assertEqual(
            self.answerOf(self.transport), (503, b"the WebSocket handshake timed out\n")
        )
        self.assertEqual(self.closes(), [False])
        self.assertEqual(self.handshakeOnNewConnection().value(), SWITCHED)

    def test_clientLeaves(self) -> None:
        """
        A client that leaves while C{onConnect} is pending cancels it: the
        place is free at once, the protocol is closed, and a decision that
        comes anyway is ignored.
        """
        waiting = self.waitOnce()
        self.serve()
        self.send(handshake())
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.closes(), [False])
        self.assertEqual(self.handshakeOnNewConnection().value(), SWITCHED)
        waiting[0].callback(None)
        self.assertEqual(self.events("open"), [self.events("open")[0]])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_deniedLaterCloses(self) -> None:
        from autobahn.websocket.types import ConnectionDeny

        waiting = self.waitOnce()
        self.serve()
        self.send(handshake())
        waiting[0].errback(ConnectionDeny(403, "no"))
        self.assertEqual(self.closes(), [False])

    def test_deniedAtOnceCloses(self) -> None:
        self.factory.choose = deny(403, "no")
        self.serve()
        self.send(handshake())
        self.assertEqual(self.answerOf(self.transport), (403, b"no\n"))
        self.assertEqual(self.closes(), [False])

    def test_otherAwaitable(self) -> None:
        """
        Any awaitable, not only a coroutine or a Deferred, is waited for,
        and holds no place once it is done.
        """
        from upgrade_plugin import websocket

        class Ready:
            def __await__(self) -> Any:
                if False:
                    yield
                return None

        self.factory.choose = lambda request: Ready()
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        self.assertEqual(websocket._pending.get(self.factory, 0), 0)


class PeerTests(Base):
    """
    The peer as autobahn's own server names it, in C{onConnect} and after.
    """

    def test_peer(self) -> None:
        self.serve()
        self.send(handshake())
        [request] = self.events("connect")
        [protocol] = self.events("open")
        self.assertEqual(request.peer, "tcp4:127.0.0.1:40404")
        self.assertEqual(protocol.peer, "tcp4:127.0.0.1:40404")

    def test_trustXForwardedFor(self) -> None:
        """
        With C{trustXForwardedFor=N}, the address N proxies back in
        C{X-Forwarded-For}.
        """
        self.factory.setProtocolOptions(trustXForwardedFor=1)
        self.serve()
        forwarded = [(b"X-Forwarded-For", b"198.51.100.1, 203.0.113.7")]
        self.send(handshake(extra=forwarded))
        [request] = self.events("connect")
        [protocol] = self.events("open")
        self.assertEqual(request.peer, "203.0.113.7")
        self.assertEqual(protocol.peer, "203.0.113.7")


class DeflateTests(Base):
    """
    RFC 7692 §5, §7: invalid, unknown or unsupported offers are declined,
    and the handshake goes on.
    """

    def negotiated(self, offer: bytes) -> list[bytes]:
        self.factory.events.clear()
        self.serve()
        self.send(handshake(extra=[(b"Sec-WebSocket-Extensions", offer)]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 101, offer)
        return response.header(b"sec-websocket-extensions")

    def test_declined(self) -> None:
        for offer in [
            b"permessage-deflate; foo=1",
            b"permessage-deflate; server_no_context_takeover;"
            b" server_no_context_takeover",
            b"permessage-deflate; server_max_window_bits=8",
            b"permessage-deflate; server_max_window_bits=16",
            b"permessage-deflate; server_max_window_bits",
            b"permessage-deflate; client_max_window_bits=7",
            b"permessage-deflate; server_no_context_takeover=1",
            b"x-webkit-deflate-frame",
            b'permessage-deflate; client_max_window_bits="1 0"',
        ]:
            self.assertEqual(self.negotiated(offer), [], offer)

    def test_laterValidOfferAccepted(self) -> None:
        """
        P2: the first offer is invalid, the second is accepted.
        """
        [accepted] = self.negotiated(
            b"permessage-deflate; server_max_window_bits=16, permessage-deflate"
        )
        self.assertEqual(accepted, b"permessage-deflate")

    def test_accepted(self) -> None:
        [accepted] = self.negotiated(
            b"permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        )
        self.assertTrue(accepted.startswith(b"permessage-deflate"), accepted)
        self.assertIn(b"server_max_window_bits=10", accepted)

    def test_quotedValue(self) -> None:
        [accepted] = self.negotiated(b'permessage-deflate; client_max_window_bits="10"')
        self.assertTrue(accepted.startswith(b"permessage-deflate"))

    def test_compressedEcho(self) -> None:
        """
        A compressed message from the client is decompressed for onMessage.
        """
        import zlib

        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(b"hello hello hello") + compressor.flush(
            zlib.Z_SYNC_FLUSH
        )
        frame = bytearray(clientFrame(data[:-4]))
        frame[0] |= 0x40  # RSV1: compressed (RFC 7692 §6)
        self.negotiated(b"permessage-deflate")
        self.send(bytes(frame))
        self.assertEqual(self.events("message"), [b"hello hello hello"])

    def test_parseExtensions(self) -> None:
        self.assertEqual(
            parseExtensions([b'a; x=1; y, b; z="q"', b"c"]),
            [
                ExtensionOffer(name="a", params={"x": ["1"], "y": [True]}),
                ExtensionOffer(name="b", params={"z": ["q"]}),
                ExtensionOffer(name="c", params={}),
            ],
        )
        self.assertEqual(parseExtensions([b"a; =1", b"; x", b'"a"']), [])

    def test_permessageDeflateParams(self) -> None:
        def ok(params: dict[str, list[str | bool]]) -> bool:
            return permessageDeflateParams(
                ExtensionOffer(name="permessage-deflate", params=params)
            )

        self.assertTrue(ok({}))
        self.assertTrue(ok({"client_max_window_bits": [True]}))
        self.assertTrue(ok({"client_max_window_bits": ["8"]}))
        self.assertTrue(ok({"server_max_window_bits": ["9"]}))
        self.assertFalse(ok({"server_max_window_bits": ["8"]}))
        self.assertFalse(ok({"server_max_window_bits": ["015"]}))
        self.assertFalse(ok({"client_no_context_takeover": [True, True]}))


class FramesTests(Base):
    """
    W11, D1: frames that arrive with the handshake are not lost.
    """

    def test_frameInSameWrite(self) -> None:
        self.serve()
        self.send(handshake() + clientFrame(b"early bird"))
        self.assertEqual(self.transport.value(), SWITCHED + serverFrame(b"early bird"))
        self.assertEqual(self.events("message"), [b"early bird"])

    def test_largeFrameSplit(self) -> None:
        """
        A 40 KB frame behind the handshake, split across writes.
        """
        payload = bytes(range(256)) * 160
        raw = handshake() + clientFrame(payload, opcode=2)
        self.serve()
        cut = len(handshake()) + 1000
        self.send(raw[:cut])
        self.send(raw[cut:30000])
        self.send(raw[30000:])
        self.assertEqual(self.events("message"), [payload])
        self.assertEqual(
            self.transport.value(), SWITCHED + serverFrame(payload, opcode=2)
        )

    def test_closeHandshake(self) -> None:
        """
        The server answers a close frame and closes the connection; onClose
        fires once.
        """
        self.serve()
        self.send(handshake() + clientFrame(b"\x03\xe8", opcode=8))
        self.assertTrue(self.transport.value().endswith(serverFrame(b"\x03\xe8", 8)))
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events("close"), [True])


class DebugFormattingTests(Base):
    """
    autobahn pretty-prints its configuration for a debug message on every
    connection; the switch skips that unless debug logging is on, and puts
    the module's C{pformat} back.
    """

    def test_skippedAndRestored(self) -> None:
        from autobahn.websocket import protocol as module

        calls: list[object] = []

        def spy(value: object) -> str:
            calls.append(value)
            return ""

        self.patch(module, "pformat", spy)
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        self.assertEqual(calls, [])
        self.assertIs(module.pformat, spy)  # type: ignore[attr-defined]

    def test_keptForDebug(self) -> None:
        from autobahn.websocket import protocol as module

        calls: list[object] = []

        def spy(value: object) -> str:
            calls.append(value)
            return ""

        self.patch(module, "pformat", spy)
        self.patch(self.factory.protocol.log, "_log_level", "debug")
        self.serve()
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        self.assertEqual(len(calls), 1)


class HandOverTests(Base):
    """
    After the switch nothing of the HTTP channel stays referenced, and
    autobahn's protocol is the transport's: closing it closes the
    connection, and onClose fires once.
    """

    def test_channelCollected(self) -> None:
        import gc
        import weakref

        self.serve()
        channel = weakref.ref(self.protocol._channel)
        self.send(handshake())
        self.assertEqual(self.transport.value(), SWITCHED)
        [opened] = self.events("open")
        self.assertIs(self.protocol._channel, opened)
        self.assertIsNone(self.transport.producer)
        gc.collect()
        self.assertIsNone(channel())

    def test_serverClose(self) -> None:
        self.serve()
        self.send(handshake())
        [opened] = self.events("open")
        opened.sendClose(1000)
        self.send(clientFrame(b"\x03\xe8", opcode=8))
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events("close"), [True])
