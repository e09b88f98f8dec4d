"""
L{UpgradeSite} and h2c in memory (RFC 7540 §3.2, §3.5; RFC 9113 §3.3): an
h2 client drives Twisted's HTTP/2 through the upgrade, on a fake clock.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
)
from h2.settings import SettingCodes
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from upgrade_plugin import UpgradeRegistry, UpgradeResource, UpgradeSite
from upgrade_plugin.h2c import parseHTTP2Settings

from .helpers import (
    PEER,
    SWITCHED_FOO,
    ListLog,
    RecorderFactory,
    TCPLikeTransport,
    parseResponses,
    rawRequest,
)

SWITCHED_H2C = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
)


class Show(Resource):
    """
    Answers with what it saw of the request; remembers the requests.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, bytes, dict[bytes, list[bytes]]]] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        headers = {
            name.lower(): list(values)
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.seen.append((request.method, request.uri, request.clientproto, headers))
        request.setHeader(b"content-type", b"text/plain")
        return b"%s %s %s body=%s" % (
            request.method,
            request.uri,
            request.clientproto,
            body,
        )


def settingsHeader(payload: bytes) -> bytes:
    return base64.urlsafe_b64encode(payload).rstrip(b"=")


def h2cRequest(
    settings: bytes | None,
    *,
    method: bytes = b"GET",
    path: bytes = b"/x",
    connection: bytes = b"Upgrade, HTTP2-Settings",
    upgrade: bytes = b"h2c",
    extra: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    headers = [
        (b"Host", b"example.com"),
        (b"Connection", connection),
        (b"Upgrade", upgrade),
    ]
    if settings is not None:
        headers.append((b"HTTP2-Settings", settings))
    if body:
        headers.append((b"Content-Length", b"%d" % (len(body),)))
    headers.extend(extra or [])
    return rawRequest(method, path, version, headers, body)


class H2CBase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.show = Show()
        self.site = UpgradeSite(self.show, h2c=True, reactor=self.clock)
        self.site.logFile = self.log = ListLog()
        self.connect()

    def connect(self, site: Site | None = None) -> None:
        self.server: Any = (site or self.site).buildProtocol(PEER)
        self.transport = TCPLikeTransport(peerAddress=PEER)
        self.transport.protocol = self.server
        self.server.makeConnection(self.transport)
        self.client = H2Connection(H2Configuration(client_side=True))

    def requestGet(self, streamID: int, path: bytes) -> None:
        """
        Have the client send a GET for C{path} on C{streamID}.
        """
        self.client.send_headers(
            streamID,
            [
                (b":method", b"GET"),
                (b":path", path),
                (b":scheme", b"http"),
                (b":authority", b"example.com"),
            ],
            end_stream=True,
        )

    def flush(self) -> bytes:
        # Twisted's H2Connection sends DATA from its reactor: our clock.
        for _ in range(10):
            self.clock.advance(0)
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def upgrade(self, **kw: Any) -> tuple[bytes, list[Any]]:
        """
        Upgrade, then speak HTTP/2; return the 101 head and the client's
        events.
        """
        settings = self.client.initiate_upgrade_connection()
        assert settings is not None
        self.server.dataReceived(h2cRequest(settings, **kw))
        self.server.dataReceived(self.client.data_to_send())
        data = self.flush()
        head, sep, frames = data.partition(b"\r\n\r\n")
        return head + sep, (frames and self.client.receive_data(frames)) or []

    def response(
        self, events: list[Any], streamID: int = 1
    ) -> tuple[dict[bytes, bytes], bytes]:
        headers: dict[bytes, bytes] = {}
        body = b""
        for event in events:
            if getattr(event, "stream_id", None) != streamID:
                continue
            if isinstance(event, ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                body += event.data
        return headers, body


class H2CUpgradeTests(H2CBase):
    def test_stream1(self) -> None:
        """
        H4, H6, H8, S11, S20: the exact 101 (no HTTP2-Settings), then the
        server preface (SETTINGS on stream 0), then the original request's
        response on stream 1.
        """
        settings = self.client.initiate_upgrade_connection()
        self.server.dataReceived(h2cRequest(settings))
        data = self.flush()
        self.assertTrue(data.startswith(SWITCHED_H2C), data)
        frame = data[len(SWITCHED_H2C) :]
        kind, stream = frame[3], int.from_bytes(frame[5:9], "big")
        self.assertEqual((kind, stream), (0x4, 0))
        self.server.dataReceived(self.client.data_to_send())
        events = self.client.receive_data(frame + self.flush())
        headers, body = self.response(events)
        self.assertEqual(headers[b":status"], b"200")
        self.assertEqual(body, b"GET /x HTTP/2 body=")
        self.assertTrue(any(isinstance(e, StreamEnded) for e in events))

    def test_noConnectionFieldsOnStream1(self) -> None:
        """
        H10: stream 1 carries no connection-specific fields; Host came from
        :authority.
        """
        self.upgrade(extra=[(b"Keep-Alive", b"1"), (b"TE", b"trailers, gzip")])
        [(method, uri, version, headers)] = self.show.seen
        self.assertEqual((method, uri, version), (b"GET", b"/x", b"HTTP/2"))
        for name in [b"connection", b"upgrade", b"http2-settings", b"keep-alive"]:
            self.assertNotIn(name, headers)
        self.assertEqual(headers[b"host"], [b"example.com"])
        self.assertEqual(headers[b"te"], [b"trailers"])

    def test_bodyReadFirst(self) -> None:
        """
        S31, H7: the whole body is read before the switch and is stream 1's
        body; HTTP/2 works after it even in the same write.
        """
        settings = self.client.initiate_upgrade_connection()
        self.server.dataReceived(
            h2cRequest(settings, method=b"POST", body=b"hello")
            + self.client.data_to_send()
        )
        data = self.flush()
        self.assertTrue(data.startswith(SWITCHED_H2C))
        events = self.client.receive_data(data[len(SWITCHED_H2C) :])
        self.assertEqual(self.response(events)[1], b"POST /x HTTP/2 body=hello")

    def test_expectContinue(self) -> None:
        """
        H14, S10: 100, then the body, then 101.
        """
        settings = self.client.initiate_upgrade_connection()
        raw = h2cRequest(
            settings,
            method=b"POST",
            body=b"hello",
            extra=[(b"Expect", b"100-continue")],
        )
        self.server.dataReceived(raw[:-5])
        self.assertEqual(self.flush(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.server.dataReceived(raw[-5:] + self.client.data_to_send())
        self.assertTrue(self.flush().startswith(SWITCHED_H2C))
        self.assertNotIn(b"expect", self.show.seen[0][3])

    def test_furtherStreams(self) -> None:
        self.upgrade()
        self.requestGet(3, b"/second")
        self.server.dataReceived(self.client.data_to_send())
        events = self.client.receive_data(self.flush())
        self.assertEqual(self.response(events, 3)[1], b"GET /second HTTP/2 body=")

    def test_accessLog(self) -> None:
        self.upgrade()
        self.assertIn('"GET /x HTTP/1.1" 101 -', self.log.lines[0])
        self.assertIn('"GET /x HTTP/2" 200', self.log.lines[1])

    def test_upgradeOnOptionsAsterisk(self) -> None:
        """
        nghttp -u -d: the upgrade rides on C{OPTIONS *}, answered 200 on
        stream 1; the POST follows on stream 3.
        """
        head, events = self.upgrade(method=b"OPTIONS", path=b"*")
        self.assertEqual(head, SWITCHED_H2C)
        headers, body = self.response(events)
        self.assertEqual((headers[b":status"], body), (b"200", b""))

    def test_garbagePreface(self) -> None:
        """
        H9: garbage instead of the client preface: GOAWAY(PROTOCOL_ERROR)
        and close.
        """
        settings = self.client.initiate_upgrade_connection()
        self.server.dataReceived(h2cRequest(settings) + b"GET / HTTP/1.1\r\n\r\n" * 3)
        data = self.flush()
        self.assertTrue(self.transport.disconnecting)
        events = self.client.receive_data(data[len(SWITCHED_H2C) :])
        [goaway] = [e for e in events if isinstance(e, ConnectionTerminated)]
        self.assertEqual(goaway.error_code, 1)  # PROTOCOL_ERROR

    def test_caseInsensitive(self) -> None:
        """
        G3: C{Upgrade: H2C}.
        """
        head, _ = self.upgrade(upgrade=b"H2C", connection=b"upgrade,http2-settings")
        self.assertEqual(head, SWITCHED_H2C)


class H2CDeclineTests(H2CBase):
    """
    H1-H3, H5, H7, H11: anything else is answered over HTTP/1.1, never 500.
    """

    def declined(self, raw: bytes) -> None:
        self.connect()
        self.server.dataReceived(raw)
        data = self.flush()
        [response], rest = parseResponses(data)
        label = raw[:200]
        self.assertIn(response.status, (b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK"), label)
        self.assertRegex(
            response.body[:30], rb"^(GET|POST) /x HTTP/1\.[01] body=", label
        )
        self.assertEqual(rest, b"", label)
        http10 = raw.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")
        self.assertEqual(self.transport.disconnecting, http10)

    def test_table(self) -> None:
        good = settingsHeader(struct.pack("!HL", 3, 100))
        cases = [
            h2cRequest(None),  # H1: no HTTP2-Settings
            h2cRequest(good, extra=[(b"HTTP2-Settings", good)]),  # H1: two
            h2cRequest(b"!!!!"),  # H2: bad alphabet (h2 would drop it)
            h2cRequest(b"AAMAAABk+A=="),  # H2: padding, "+"
            h2cRequest(settingsHeader(b"\x00\x03\x00\x00\x00")),  # not 6n bytes
            h2cRequest(settingsHeader(b"\x00" * 7)),  # h2 raises binascii.Error
            h2cRequest(settingsHeader(struct.pack("!HL", 2, 2))),  # ENABLE_PUSH=2
            h2cRequest(settingsHeader(struct.pack("!HL", 4, 2**31))),
            h2cRequest(settingsHeader(struct.pack("!HL", 5, 2**14 - 1))),
            h2cRequest(settingsHeader(struct.pack("!HL", 5, 2**24))),
            h2cRequest(good, connection=b"Upgrade"),  # H3
            h2cRequest(good, upgrade=b"h2"),  # H5
            h2cRequest(good, version=b"HTTP/1.0"),  # S9
            h2cRequest(good, method=b"POST", body=b"x" * (64 * 1024 + 1)),  # H7
            # Two Host lines: HTTP/1.1 and :authority would disagree.
            h2cRequest(good, extra=[(b"Host", b"other.example")]),
        ]
        for raw in cases:
            self.declined(raw)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_bodyLimitAbove1MiB(self) -> None:
        """
        An h2c body limit above 1 MiB is the limit: such a body is carried
        into stream 1.
        """
        site = UpgradeSite(
            self.show, h2c=True, h2cMaxBodySize=4 * 1024 * 1024, reactor=self.clock
        )
        site.logFile = ListLog()
        self.connect(site)
        settings = self.client.initiate_upgrade_connection()
        body = b"x" * (1024 * 1024 + 1)
        self.server.dataReceived(h2cRequest(settings, method=b"POST", body=body))
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101 "))
        self.transport.abortConnection()

    def test_parseSettings(self) -> None:
        self.assertEqual(parseHTTP2Settings(b""), {})
        self.assertEqual(
            parseHTTP2Settings(settingsHeader(struct.pack("!HLHL", 3, 100, 99, 7))),
            {3: 100, 99: 7},
        )
        self.assertIsNone(parseHTTP2Settings(b"A"))
        self.assertIsNone(parseHTTP2Settings(b"AAMAAABk=="))


class PriorKnowledgeTests(H2CBase):
    """
    RFC 9113 §3.3: HTTP/2 with prior knowledge on the same listener.
    """

    def test_priorKnowledge(self) -> None:
        self.client.initiate_connection()
        self.requestGet(1, b"/pk")
        for byte in self.client.data_to_send():  # trickled
            self.server.dataReceived(bytes([byte]))
        events = self.client.receive_data(self.flush())
        self.assertEqual(self.response(events)[1], b"GET /pk HTTP/2 body=")

    def runDueCalls(self, limit: int = 1000) -> None:
        """
        Run the calls due on the clock one by one, failing (rather than
        looping forever, as C{Clock.advance} would) if the server keeps
        scheduling new ones.
        """
        for _ in range(limit):
            due = [c for c in self.clock.calls if c.getTime() <= self.clock.seconds()]
            if not due:
                return
            call = due[0]
            self.clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)
        self.fail("the server keeps scheduling itself with nothing to send")

    SIZE = 1024 * 1024

    def bigResponse(self) -> None:
        """
        Connect to a site answering 1 MiB, and request it by prior
        knowledge.
        """
        size = self.SIZE

        class Big(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"x" * size

        site = UpgradeSite(Big(), h2c=True, reactor=self.clock)
        site.logFile = ListLog()
        self.connect(site)
        self.client.initiate_connection()

    def readAll(self, openWindow: Any) -> bytes:
        """
        Read stream 1 to its end, calling C{openWindow(event)} for each
        DATA event to let the client open its window; fail if the server
        keeps scheduling itself meanwhile.
        """
        self.requestGet(1, b"/")
        self.server.dataReceived(self.client.data_to_send())
        body = b""
        for _ in range(200):
            self.runDueCalls()
            events = self.client.receive_data(self.transport.value())
            self.transport.clear()
            for event in events:
                if isinstance(event, DataReceived):
                    body += event.data
                    openWindow(event)
                if isinstance(event, StreamEnded):
                    return body
            self.server.dataReceived(self.client.data_to_send())
        self.fail(f"the response stopped after {len(body)} bytes")

    def test_shutWindowWaits(self) -> None:
        """
        A client that does not open its flow-control window gets what the
        window allows, and the server then waits, with nothing scheduled
        (Twisted's own loop reschedules itself at once until the window
        opens: 100% CPU). Each WINDOW_UPDATE lets more through, to the end
        of the response.
        """
        self.bigResponse()
        body = self.readAll(
            lambda event: self.client.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
        )
        self.assertEqual(len(body), self.SIZE)

    def test_shutWindowOpenedBySettings(self) -> None:
        """
        A stream window opened by raising SETTINGS_INITIAL_WINDOW_SIZE (no
        WINDOW_UPDATE for the stream) lets the rest through too.
        """
        self.bigResponse()
        self.client.increment_flow_control_window(2 * self.SIZE)
        raised: list[bool] = []

        def openWindow(event: Any) -> None:
            if not raised:
                raised.append(True)
                self.client.update_settings(
                    {SettingCodes.INITIAL_WINDOW_SIZE: 2 * self.SIZE}
                )

        body = self.readAll(openWindow)
        self.assertEqual(len(body), self.SIZE)

    def laterSite(self) -> list[Any]:
        """
        Connect to a site whose resource answers later: the requests it
        holds.
        """
        requests: list[Any] = []

        class Later(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> Any:
                requests.append(request)
                return NOT_DONE_YET

        site = UpgradeSite(Later(), h2c=True, reactor=self.clock)
        site.logFile = ListLog()
        self.connect(site)
        self.client.initiate_connection()
        return requests

    def test_writeWhileWindowShut(self) -> None:
        """
        Data a resource writes while the client's window is shut goes out
        as soon as the window opens, not only when the response ends.
        """
        requests = self.laterSite()
        self.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.requestGet(1, b"/")
        self.server.dataReceived(self.client.data_to_send())
        self.runDueCalls()
        [request] = requests
        request.write(b"x" * 100)
        self.runDueCalls()
        self.client.receive_data(self.transport.value())
        self.transport.clear()
        self.client.increment_flow_control_window(1000, stream_id=1)
        self.server.dataReceived(self.client.data_to_send())
        self.runDueCalls()
        events = self.client.receive_data(self.transport.value())
        self.assertEqual(self.response(events)[1], b"x" * 100)
        request.finish()
        self.runDueCalls()

    def shrinkBelowZero(self) -> tuple[Any, int]:
        """
        A response with data queued, then SETTINGS lowering the initial
        window so that the stream's window is below zero: the request, and
        how many bytes had gone out before the SETTINGS.
        """
        requests = self.laterSite()
        self.requestGet(1, b"/")
        self.server.dataReceived(self.client.data_to_send())
        self.runDueCalls()
        [request] = requests
        # The first frame goes out at once; the rest waits for the loop,
        # and the SETTINGS arrive before it runs.
        request.write(b"a" * 40000)
        request.write(b"b" * 30000)
        sent = len(self.transport.value())
        self.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 10000})
        self.server.dataReceived(self.client.data_to_send())
        self.runDueCalls()
        return request, sent

    def test_windowShrunkBelowZero(self) -> None:
        """
        SETTINGS lowering the initial window after data went out leaves a
        stream's window below zero (RFC 9113 §6.9.2): its queued data waits
        (Twisted's loop would slice a frame to a negative size, and h2
        refuse to send it, ending the sending loop).
        """
        sent = self.shrinkBelowZero()[1]
        self.assertEqual(self.flushLoggedErrors(), [])
        # Nothing more than the SETTINGS acknowledgement (9 bytes) went out.
        self.assertEqual(len(self.transport.value()), sent + 9)

    def test_windowStaysShutBelowZero(self) -> None:
        """
        A stream whose window is below zero stays waiting whatever Twisted
        does that would serve it: the response finishing, a WINDOW_UPDATE
        that leaves it below zero, a connection-level WINDOW_UPDATE; once
        positive, all of it arrives.
        """
        request = self.shrinkBelowZero()[0]
        request.finish()
        self.runDueCalls()
        self.client.increment_flow_control_window(1000, stream_id=1)
        self.client.increment_flow_control_window(1000)
        self.server.dataReceived(self.client.data_to_send())
        self.runDueCalls()
        self.assertEqual(self.flushLoggedErrors(), [])
        received: list[Any] = []
        self.client.increment_flow_control_window(100000, stream_id=1)
        self.client.increment_flow_control_window(100000)
        for _ in range(20):
            self.server.dataReceived(self.client.data_to_send())
            self.runDueCalls()
            received.extend(self.client.receive_data(self.transport.value()))
            self.transport.clear()
        self.assertTrue(any(isinstance(e, StreamEnded) for e in received))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_http11Unaffected(self) -> None:
        self.server.dataReceived(b"P")
        self.server.dataReceived(
            b"OST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz"
        )
        [response], _ = parseResponses(self.flush())
        self.assertEqual(response.body, b"POST /p HTTP/1.1 body=z")

    def test_offByDefault(self) -> None:
        site = UpgradeSite(self.show, reactor=self.clock)
        self.connect(site)
        self.server.dataReceived(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertTrue(self.flush().startswith(b"HTTP/1.1 400 "))
        self.connect(site)
        settings = settingsHeader(struct.pack("!HL", 3, 100))
        self.server.dataReceived(h2cRequest(settings))
        [response], _ = parseResponses(self.flush())
        self.assertEqual(response.code, 200)


class UpgradeSiteTests(SynchronousTestCase):
    """
    UpgradeSite serves what Site serves, and composes with UpgradeResource.
    """

    def setUp(self) -> None:
        self.factory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("foo/2", self.factory)
        root = Resource()
        root.putChild(b"up", UpgradeResource(registry))
        root.putChild(b"show", Show())
        self.root = root

    def exchange(self, site: Site, raw: bytes) -> bytes:
        server: Any = site.buildProtocol(PEER)
        transport = TCPLikeTransport(peerAddress=PEER)
        transport.protocol = server
        server.makeConnection(transport)
        server.dataReceived(raw)
        data: bytes = transport.value()
        return data

    def test_sameAsSite(self) -> None:
        raw = (
            b"GET /show?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
            b"DELETE * HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        clock = Clock()
        plain, _ = parseResponses(self.exchange(Site(self.root, reactor=clock), raw))
        ours, _ = parseResponses(
            self.exchange(UpgradeSite(self.root, h2c=True, reactor=clock), raw)
        )
        self.assertEqual(
            [(r.status, r.names(), r.body) for r in ours],
            [(r.status, r.names(), r.body) for r in plain],
        )

    def test_composesWithUpgradeResource(self) -> None:
        site = UpgradeSite(self.root, h2c=True, reactor=Clock())
        self.assertEqual(self.exchange(site, rawRequest()), SWITCHED_FOO)
        self.assertEqual(len(self.factory.built), 1)

    def test_siteRegistry(self) -> None:
        """
        A connection-wide target is offered the request on any path, and
        declines fall through to the path's resource.
        """
        siteFactory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("bar", siteFactory)
        site = UpgradeSite(self.root, registry, reactor=Clock())
        offer = [(b"Host", b"x"), (b"Connection", b"upgrade"), (b"Upgrade", b"bar")]
        self.assertTrue(
            self.exchange(site, rawRequest(path=b"/show", headers=offer)).startswith(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: bar\r\n"
            )
        )
        self.assertEqual(len(siteFactory.built), 1)
        # A connection-wide target that declines: the path's resource goes on.
        siteFactory.buildProtocol = lambda addr: None  # type: ignore[assignment,return-value]
        offer[2] = (b"Upgrade", b"bar, foo/2")
        self.assertEqual(self.exchange(site, rawRequest(headers=offer)), SWITCHED_FOO)

    def test_cooperativeGetResourceFor(self) -> None:
        """
        Found by review: a C{getResourceFor} after L{UpgradeSite}'s in the
        method resolution order of a subclass is still called.
        """

        class Maintenance(Site):
            def getResourceFor(self, request: Any) -> Any:
                return Show()

        class MySite(UpgradeSite, Maintenance):
            pass

        [response], _ = parseResponses(
            self.exchange(MySite(self.root, reactor=Clock()), rawRequest(path=b"/up"))
        )
        self.assertEqual(response.code, 200)

    def test_pathProtocolsFirst(self) -> None:
        """
        A request that offers a protocol of its path's L{UpgradeResource} and
        a connection-wide one gets the path's, in either order of offer;
        where the path serves none of the offers, the site's.
        """
        siteFactory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("bar", siteFactory)
        site = UpgradeSite(self.root, registry, reactor=Clock())
        for offered in [b"foo/2, bar", b"bar, foo/2"]:
            offer = [
                (b"Host", b"x"),
                (b"Connection", b"upgrade"),
                (b"Upgrade", offered),
            ]
            self.assertEqual(
                self.exchange(site, rawRequest(headers=offer)), SWITCHED_FOO
            )
            switched = self.exchange(site, rawRequest(path=b"/show", headers=offer))
            self.assertTrue(
                switched.startswith(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: bar\r\n"
                ),
                switched,
            )
        self.assertEqual((len(self.factory.built), len(siteFactory.built)), (2, 2))

    def test_pathProtocolsFirstBehindGzip(self) -> None:
        """
        Found by fuzzing: the path's L{UpgradeResource} is seen through an
        L{EncodingResourceWrapper}.
        """
        from twisted.web.resource import EncodingResourceWrapper
        from twisted.web.server import GzipEncoderFactory

        registry = UpgradeRegistry()
        registry.register("foo/2", self.factory)
        self.root.putChild(
            b"gz",
            EncodingResourceWrapper(UpgradeResource(registry), [GzipEncoderFactory()]),
        )
        siteRegistry = UpgradeRegistry()
        siteRegistry.register("bar", RecorderFactory())
        site = UpgradeSite(self.root, siteRegistry, reactor=Clock())
        offer = [
            (b"Host", b"x"),
            (b"Accept-Encoding", b"gzip"),
            (b"Connection", b"upgrade"),
            (b"Upgrade", b"bar, foo/2"),
        ]
        self.assertEqual(
            self.exchange(site, rawRequest(path=b"/gz", headers=offer)), SWITCHED_FOO
        )

    def test_h2cAfterThePathsWebSocket(self) -> None:
        """
        Found by fuzzing: C{Upgrade: websocket, h2c} at a WebSocket path of
        an h2c site switched to h2c, and stream 1 got the path's 426 naming
        websocket. The path's WebSocket now wins.
        """
        from upgrade_plugin.websocket import WebSocketUpgrade

        from .wshelpers import SAMPLE_ACCEPT, echoFactory, handshake

        websocket = UpgradeRegistry()
        websocket.register("websocket", WebSocketUpgrade(echoFactory()))
        self.root.putChild(b"ws", UpgradeResource(websocket))
        site = UpgradeSite(self.root, h2c=True, reactor=Clock())
        raw = handshake(
            b"/ws",
            replace={
                b"Upgrade": b"websocket, h2c",
                b"Connection": b"Upgrade, HTTP2-Settings",
            },
            extra=[(b"HTTP2-Settings", b"AAMAAABk")],
        )
        head = self.exchange(site, raw)
        self.assertTrue(
            head.startswith(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            ),
            head,
        )
        self.assertIn(b"\r\nSec-WebSocket-Accept: " + SAMPLE_ACCEPT + b"\r\n", head)

    def test_asteriskUpgrade(self) -> None:
        siteFactory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("bar", siteFactory)
        site = UpgradeSite(self.root, registry, reactor=Clock())
        raw = b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: "
        self.assertTrue(
            self.exchange(site, raw + b"bar\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        )
        [response], _ = parseResponses(self.exchange(site, raw + b"baz\r\n\r\n"))
        self.assertEqual(
            (response.code, response.header(b"content-length")), (200, [b"0"])
        )

    def test_asteriskUpgradeWithRequestFactorySetLater(self) -> None:
        """
        A request factory set on the site after it is made still sends
        C{OPTIONS *} offers to the registry, and is used.
        """
        from twisted.web.server import Request

        made: list[Any] = []

        class Mine(Request):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                made.append(self)

        registry = UpgradeRegistry()
        registry.register("bar", RecorderFactory())
        site = UpgradeSite(self.root, registry, reactor=Clock())
        site.requestFactory = Mine
        site.requestFactory = site.requestFactory  # made so once only
        raw = b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n"
        answer = self.exchange(site, raw + b"Upgrade: bar\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer[:40])
        self.assertEqual(len(made), 1)
        self.assertIsInstance(made[0], Mine)
        self.assertIs(type(made[0]).__mro__[1], Mine)

    def test_subclassRequestFactoryKept(self) -> None:
        """
        A subclass's own C{requestFactory} is the one used.
        """
        from twisted.web.server import Request

        class Mine(Request):
            pass

        class MySite(UpgradeSite):
            requestFactory = Mine

        self.assertTrue(
            issubclass(MySite(self.root, reactor=Clock()).requestFactory, Mine)
        )

    def test_subclassProtocolKept(self) -> None:
        """
        A subclass that sets its own C{protocol} keeps it.
        """
        from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

        class Mine(HTTPChannel):
            pass

        class MySite(UpgradeSite):
            @staticmethod
            def protocol() -> Any:
                return _GenericHTTPChannelProtocol(Mine())

        server: Any = MySite(self.root, reactor=Clock()).buildProtocol(PEER)
        self.assertIsInstance(server._channel, Mine)


class AccessLogTests(SynchronousTestCase):
    """
    One access-log line per upgraded request, with status 101 and the
    chosen protocol.
    """

    def test_upgradeInLogLine(self) -> None:
        factory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("foo/2", factory)
        root = Resource()
        root.putChild(b"up", UpgradeResource(registry))
        root.putChild(b"show", Show())
        site = UpgradeSite(root, reactor=Clock())
        site.logFile = log = ListLog()
        server: Any = site.buildProtocol(PEER)
        transport = TCPLikeTransport(peerAddress=PEER)
        transport.protocol = server
        server.makeConnection(transport)
        server.dataReceived(rawRequest())
        server2: Any = site.buildProtocol(PEER)
        transport2 = TCPLikeTransport(peerAddress=PEER)
        server2.makeConnection(transport2)
        server2.dataReceived(b"GET /show HTTP/1.1\r\nHost: x\r\n\r\n")
        [upgraded, plain] = log.lines
        self.assertRegex(
            upgraded, r'"GET /up HTTP/1\.1" 101 - "-" "-" upgrade="foo/2"$'
        )
        self.assertRegex(plain, r'"GET /show HTTP/1\.1" 200 \d+ "-" "-"$')


class NotARequestTests(SynchronousTestCase):
    """
    RFC 9931, S37: bytes that cannot start a request (a TLS ClientHello sent
    in hope of an upgrade) get 400 and a close at once, not a wait for a
    line end that never comes.
    """

    def serve(self) -> tuple[Any, TCPLikeTransport]:
        site = UpgradeSite(Show(), reactor=Clock())
        server: Any = site.buildProtocol(PEER)
        transport = TCPLikeTransport(peerAddress=PEER)
        transport.protocol = server
        server.makeConnection(transport)
        return server, transport

    def test_afterARequest(self) -> None:
        server, transport = self.serve()
        server.dataReceived(
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            b"Upgrade: TLS/1.2\r\n\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        )
        [ok, bad], _ = parseResponses(transport.value())
        self.assertEqual((ok.code, bad.status), (200, b"HTTP/1.1 400 Bad Request"))
        self.assertTrue(transport.disconnecting)

    def test_first(self) -> None:
        server, transport = self.serve()
        server.dataReceived(b"\x16\x03\x01\x02\x00")
        self.assertEqual(transport.value(), b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_afterEmptyLines(self) -> None:
        """
        Found by fuzzing: empty lines before the record (RFC 9112 §2.2
        allows them before a request) hid it; in one segment or split.
        """
        for segments in [
            [b"\r\n\x16\x03\x01\x00\x05hello"],
            [b"\r\n\r\n", b"\x16\x03\x01"],
            [b"\r", b"\n\x16\x03\x01"],
        ]:
            server, transport = self.serve()
            for segment in segments:
                server.dataReceived(segment)
            self.assertEqual(
                transport.value(), b"HTTP/1.1 400 Bad Request\r\n\r\n", segments
            )
            self.assertTrue(transport.disconnecting, segments)
        server, transport = self.serve()
        server.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\x16\x03\x01")
        [ok, bad], _ = parseResponses(transport.value())
        self.assertEqual((ok.code, bad.status), (200, b"HTTP/1.1 400 Bad Request"))
        self.assertTrue(transport.disconnecting)

    def test_emptyLinesAllowed(self) -> None:
        server, transport = self.serve()
        server.dataReceived(b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        [response], _ = parseResponses(transport.value())
        self.assertEqual(response.code, 200)


class SharedRegistryTests(SynchronousTestCase):
    """
    H12: h2c enabled on one site does not leak into another site given the
    same registry.
    """

    def test_h2cStaysOnItsSite(self) -> None:
        registry = UpgradeRegistry()
        registry.register("foo/2", RecorderFactory())
        withH2C = UpgradeSite(Show(), registry, h2c=True, reactor=Clock())
        without = UpgradeSite(Show(), registry, reactor=Clock())
        self.assertEqual(registry.tokens(), [b"foo/2"])
        self.assertEqual(withH2C.upgradeRegistry.tokens(), [b"foo/2", b"h2c"])
        self.assertEqual(without.upgradeRegistry.tokens(), [b"foo/2"])


class PersistenceTests(SynchronousTestCase):
    """
    S32: on an UpgradeSite, C{close} in any C{Connection} line, in any list
    position, closes the connection after the answer (twisted.web alone
    reads only the first line, split on spaces).
    """

    def exchange(self, connection: list[bytes]) -> TCPLikeTransport:
        site = UpgradeSite(Show(), reactor=Clock())
        server: Any = site.buildProtocol(PEER)
        transport = TCPLikeTransport(peerAddress=PEER)
        transport.protocol = server
        server.makeConnection(transport)
        headers = [(b"Host", b"x")] + [(b"Connection", v) for v in connection]
        server.dataReceived(rawRequest(path=b"/a", headers=headers))
        return transport

    def test_closes(self) -> None:
        for connection in [
            [b"upgrade,close"],
            [b"close,upgrade"],
            [b"keep-alive", b"close"],
            [b"Close"],
        ]:
            transport = self.exchange(connection)
            [response], _ = parseResponses(transport.value())
            self.assertEqual(response.header(b"connection"), [b"close"], connection)
            self.assertTrue(transport.disconnecting, connection)

    def test_persists(self) -> None:
        for connection in [[], [b"keep-alive"], [b"closed"]]:
            transport = self.exchange(connection)
            self.assertFalse(transport.disconnecting, connection)
