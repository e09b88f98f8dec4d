"""
L{UpgradeResource} driven in memory: exact bytes of the 101, the switch,
and every bad input's exact answer.
"""

from __future__ import annotations

import gc
import weakref
import zlib
from typing import Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory
from zope.interface import implementer

from upgrade_plugin import (
    Accept,
    AcceptTLS,
    Decision,
    Decline,
    IUpgradeTarget,
    Reject,
    UpgradeRegistry,
    UpgradeRequest,
    UpgradeResource,
    UpgradeSite,
)

from .helpers import (
    PEER,
    SWITCHED_FOO,
    Hello,
    IdleProducer,
    ListLog,
    Recorder,
    RecorderFactory,
    connect,
    memorySite,
    offer,
    parseResponses,
    rawRequest,
)

UPGRADE_REQUIRED_BODY = b"426 Upgrade Required: use one of these protocols: foo/2\n"


@implementer(IUpgradeTarget)
class Scripted:
    """
    A target that answers with whatever the test says.
    """

    def __init__(self, decide: Any) -> None:
        self.decide = decide
        self.requests: list[UpgradeRequest] = []

    def upgradeRequested(
        self, request: UpgradeRequest
    ) -> Decision | Deferred[Decision]:
        self.requests.append(request)
        result: Decision | Deferred[Decision] = self.decide(request)
        return result


class Capture(Resource):
    """
    Remembers the twisted.web requests that reach C{wrapped}.
    """

    isLeaf = True

    def __init__(self, wrapped: Resource) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return self.wrapped.render(request)


class Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.factory = RecorderFactory()
        self.registry = UpgradeRegistry()
        self.registry.register("foo/2", self.factory)

    def serve(
        self,
        fallback: Resource | None = None,
        *,
        timeout: float | None = None,
        capture: bool = True,
        **kw: Any,
    ) -> None:
        self.resource = UpgradeResource(self.registry, fallback, **kw)
        self.capture = Capture(self.resource)
        self.site, self.clock = memorySite(self.capture if capture else self.resource)
        if timeout is not None:
            self.site.timeOut = timeout
        self.accessLog = ListLog()
        self.site.logFile = self.accessLog
        self.protocol, self.transport = connect(self.site)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    @property
    def upgraded(self) -> Recorder:
        [protocol] = self.factory.built
        return protocol


class SwitchTests(Base):
    """
    The 101 and the in-place switch (RFC 9110 §7.8, §15.2.2).
    """

    def test_exactHead(self) -> None:
        """
        S19, S21: the status line is exact and the 101 carries only
        Upgrade and Connection: no Content-Length, Transfer-Encoding,
        Content-Type, Date or Server.
        """
        self.serve()
        self.send(rawRequest())
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(self.factory.addresses, [PEER])
        self.assertIs(self.upgraded.transport, self.transport)

    def test_registeredSpellingEchoed(self) -> None:
        """
        G3: names compare case-insensitively; the 101 uses the registered
        spelling.
        """
        self.serve()
        self.send(offer(b"FOO/2", b"UPGRADE"))
        self.assertEqual(self.transport.value(), SWITCHED_FOO)

    def test_headerVariants(self) -> None:
        """
        G4-G6: offers spread over several lines, with empty members, in any
        case, without OWS.
        """
        variants = [
            [(b"Connection", b"keep-alive"), (b"Connection", b"Upgrade")],
            [(b"Connection", b"Upgrade"), (b"Connection", b"keep-alive")],
            [(b"Connection", b"keep-alive,upgrade")],
            [(b"Connection", b",Upgrade,")],
        ]
        for connection in variants:
            self.factory.built.clear()
            self.serve()
            self.send(
                rawRequest(
                    headers=[
                        (b"Host", b"x"),
                        *connection,
                        (b"Upgrade", b", bar"),
                        (b"Upgrade", b"foo/1/2, foo/2 ,,"),
                    ]
                )
            )
            self.assertEqual(self.transport.value(), SWITCHED_FOO, connection)

    def test_obsFold(self) -> None:
        """
        G7: an obs-folded Connection value is read with the fold as SP, so
        the upgrade option is recognised (twisted.web unfolds it).
        """
        self.serve()
        self.send(
            b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: keep-alive,\r\n"
            b" upgrade\r\nUpgrade: foo/2\r\n\r\n"
        )
        self.assertEqual(self.transport.value(), SWITCHED_FOO)

    def acceptWithHeaders(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        Serve a target that accepts with C{headers} for the 101, and send it
        an offer.
        """
        self.registry.register(
            "foo/2", Scripted(lambda r: Accept(protocol=Recorder(), headers=headers))
        )
        self.serve()
        self.send(rawRequest())

    def test_targetHeaders(self) -> None:
        self.acceptWithHeaders([(b"X-Chosen", b"yes")])
        self.assertEqual(
            self.transport.value(),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\n"
            b"Connection: Upgrade\r\nX-Chosen: yes\r\n\r\n",
        )

    def test_bytesInSameWrite(self) -> None:
        """
        S12, S33(b), D1: bytes in the same segment as the request belong to
        the new protocol, in order.
        """
        self.serve()
        self.send(rawRequest() + b"first")
        self.send(b" second")
        self.assertEqual(self.upgraded.data, b"first second")
        self.assertEqual(self.transport.value(), SWITCHED_FOO)

    def test_trickled(self) -> None:
        """
        S12, D1: the same bytes one at a time give the identical outcome.
        """
        self.serve()
        for byte in rawRequest() + b"first second":
            self.send(bytes([byte]))
        self.assertEqual(self.upgraded.data, b"first second")
        self.assertEqual(self.transport.value(), SWITCHED_FOO)

    def test_splitMidHeader(self) -> None:
        self.serve()
        raw = rawRequest() + b"early"
        self.send(raw[:30])
        self.send(raw[30:])
        self.assertEqual(self.upgraded.data, b"early")

    def test_largeEarlyData(self) -> None:
        """
        More than twisted.web's 16 KiB eager-read limit in the request's
        segment: all of it is delivered and the transport reads on.
        """
        self.serve()
        early = bytes(range(256)) * 256  # 64 KiB
        self.send(rawRequest() + early)
        self.assertEqual(self.upgraded.data, early)
        self.assertEqual(self.transport.producerState, "producing")

    def test_newProtocolSeesRequest(self) -> None:
        """
        The new protocol learns the original request before connectionMade,
        to answer it in the new protocol (RFC 9110 §7.8).
        """
        self.serve()
        self.send(
            rawRequest(
                method=b"POST",
                path=b"/up?x=1",
                headers=[
                    (b"Host", b"example.com"),
                    (b"Connection", b"Upgrade"),
                    (b"Upgrade", b"foo/2"),
                    (b"Content-Length", b"5"),
                    (b"X-Custom", b"1"),
                ],
                body=b"hello",
            )
        )
        request = self.upgraded.request
        assert request is not None
        self.assertFalse(self.upgraded.connectedBeforeRequest)
        self.assertEqual(
            (request.method, request.uri, request.version, request.body),
            (b"POST", b"/up?x=1", b"HTTP/1.1", b"hello"),
        )
        self.assertEqual(request.header(b"x-custom"), [b"1"])
        self.assertEqual(str(request.protocol), "foo/2")
        self.assertEqual(request.peer, PEER)
        self.assertFalse(request.secure)
        self.assertEqual(self.upgraded.data, b"")

    def test_expectContinue(self) -> None:
        """
        S10, S24, S31: 100 goes out when the headers are in, the whole body
        is read, then 101; the body is never new-protocol data.
        """
        self.serve()
        self.send(
            offer(
                b"foo/2",
                b"Upgrade",
                (b"Content-Length", b"5"),
                (b"Expect", b"100-continue"),
                method=b"POST",
            )
        )
        self.assertEqual(self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(self.factory.built, [])
        self.send(b"hel")
        self.assertEqual(self.factory.built, [])
        self.send(b"lo" + b"NEW")
        self.assertEqual(
            self.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCHED_FOO
        )
        assert self.upgraded.request is not None
        self.assertEqual(self.upgraded.request.body, b"hello")
        self.assertEqual(self.upgraded.data, b"NEW")

    def test_chunkedBody(self) -> None:
        self.serve()
        self.send(
            offer(
                b"foo/2",
                b"Upgrade",
                (b"Transfer-Encoding", b"chunked"),
                method=b"POST",
                body=b"5\r\nhello\r\n0\r\n\r\nNEW",
            )
        )
        assert self.upgraded.request is not None
        self.assertEqual(self.upgraded.request.body, b"hello")
        self.assertEqual(self.upgraded.data, b"NEW")

    def test_accessLogAndNotifyFinish(self) -> None:
        """
        D5: the upgraded request is finished for twisted.web: one access-log
        line with status 101, and notifyFinish() fires.
        """
        self.serve()
        finished: list[object] = []
        original = self.capture.render

        def render(request: Any) -> Any:
            request.notifyFinish().addBoth(finished.append)
            return original(request)

        self.capture.render = render  # type: ignore[method-assign]
        self.send(rawRequest())
        self.assertEqual(finished, [None])
        [line] = self.accessLog.lines
        self.assertIn('"GET /up HTTP/1.1" 101 -', line)

    def test_producerHandedOver(self) -> None:
        """
        D3: the HTTP channel is no longer the transport's producer, so the
        new protocol can register one.
        """
        self.serve()
        self.assertIsNotNone(self.transport.producer)
        self.send(rawRequest())
        self.assertIsNone(self.transport.producer)

        self.upgraded.transport.registerProducer(IdleProducer(), True)  # type: ignore[union-attr]

    def test_transportResumed(self) -> None:
        """
        A target that decides later: twisted.web buffers (and past 16 KiB
        pauses) what arrives meanwhile; the switch delivers all of it and
        resumes the transport.
        """
        decision: Deferred[Decision] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve()
        self.send(rawRequest() + b"a" * 10)
        self.send(b"b" * 20000)
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.transport.value(), b"")
        protocol = Recorder()
        decision.callback(Accept(protocol=protocol))
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(protocol.data, b"a" * 10 + b"b" * 20000)
        self.assertEqual(self.transport.producerState, "producing")
        self.send(b"c")
        self.assertEqual(protocol.data[-1:], b"c")

    def test_timeoutRemoved(self) -> None:
        """
        D4: the Site's idle timeout no longer applies to the connection.
        """
        self.serve(timeout=10)
        self.send(rawRequest())
        self.clock.advance(1000)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connectionLostOnce(self) -> None:
        """
        A client that goes away right after the 101: the new protocol hears
        it exactly once, and nothing is logged.
        """
        self.serve()
        self.send(rawRequest())
        self.protocol.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(len(self.upgraded.lost), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_noReferenceToChannel(self) -> None:
        """
        Once switched, nothing refers to the HTTP channel or the request.
        """
        self.serve()
        channel = weakref.ref(self.protocol._channel)
        self.assertIsInstance(channel(), HTTPChannel)
        self.send(rawRequest())
        request = weakref.ref(self.capture.requests.pop())
        self.assertIs(self.protocol._channel, self.upgraded)
        gc.collect()
        self.assertIsNone(channel())
        self.assertIsNone(request())

    def test_clientVersionsEchoed(self) -> None:
        """
        A token registered without a version echoes each client's version
        in the 101, however many different ones clients send (the plugin's
        store of ready-made 101 heads stays small).
        """
        from upgrade_plugin import _switch

        self.registry.register("bar", self.factory)
        self.serve()
        for version in range(100):
            protocol, transport = connect(self.site)
            token = b"bar/%d" % (version,)
            protocol.dataReceived(offer(token))
            self.assertEqual(
                transport.value(), SWITCHED_FOO.replace(b"foo/2", token), version
            )
            self.assertLessEqual(len(_switch._HEADS), 32)

    def test_behindGzipEncoding(self) -> None:
        """
        Behind twisted.web's C{EncodingResourceWrapper}, with a client that
        accepts gzip, nothing follows the 101 but the new protocol's bytes:
        the encoder's trailer (an empty gzip stream) is not written, and the
        101 has no C{Content-Encoding}.
        """
        self.serve()
        wrapped = EncodingResourceWrapper(self.resource, [GzipEncoderFactory()])
        self.site, _ = memorySite(wrapped)
        self.site.logFile = self.accessLog
        self.protocol, self.transport = connect(self.site)
        self.send(offer(b"foo/2", b"Upgrade", (b"Accept-Encoding", b"gzip")) + b"early")
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(self.upgraded.data, b"early")
        self.assertIn('" 101 -', self.accessLog.lines[0])

    def gzipSite(self, requestFactory: Any = None) -> list[Any]:
        """
        Serve the resource behind C{EncodingResourceWrapper} (gzip), with
        C{requestFactory}; the requests made, as weak references.
        """
        self.serve()
        wrapped = EncodingResourceWrapper(self.resource, [GzipEncoderFactory()])
        self.site, _ = memorySite(wrapped)
        made: list[Any] = []
        base = requestFactory or self.site.requestFactory

        def recording(*args: Any, **kwargs: Any) -> Any:
            request = base(*args, **kwargs)
            made.append(weakref.ref(request))
            return request

        self.site.requestFactory = recording  # type: ignore[assignment]
        self.site.logFile = self.accessLog
        self.protocol, self.transport = connect(self.site)
        return made

    def gzipOffer(self) -> bytes:
        return offer(b"foo/2", b"Upgrade", (b"Accept-Encoding", b"gzip"))

    def test_freedWithoutCycleCollector(self) -> None:
        """
        Once switched, the request is freed at once, even behind gzip
        encoding, whose encoder and the request refer to each other (the
        encoder holds a zlib stream): nothing waits for the cycle collector.
        """
        made = self.gzipSite()
        gc.disable()
        self.addCleanup(gc.enable)
        self.send(self.gzipOffer())
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual([ref() for ref in made], [None])

    def test_requestFactoryFinishHook(self) -> None:
        """
        A request factory whose C{finish()} does more (metrics, tracing, an
        access log of its own) has it called once for a switched request,
        with the 101, and it writes nothing after the 101.
        """
        from twisted.web.server import Request as ServerRequest

        finished: list[int] = []

        class Hooked(ServerRequest):
            def finish(self) -> Any:
                finished.append(self.code)
                return super().finish()

        self.gzipSite(Hooked)
        self.send(self.gzipOffer() + b"early")
        self.assertEqual(finished, [101])
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(self.upgraded.data, b"early")
        self.assertIn('" 101 -', self.accessLog.lines[0])
        self.send(b" late")
        self.assertEqual(self.upgraded.data, b"early late")

    def test_transportCallsNewProtocol(self) -> None:
        """
        After the switch the transport calls the new protocol itself, not
        through twisted.web's generic wrapper (which hides whether the
        protocol is L{IHalfCloseableProtocol}); the wrapper forwards to it
        as well, for anything still holding it.
        """
        self.serve()
        wrapper = self.protocol
        self.send(rawRequest())
        self.assertIs(self.transport.protocol, self.upgraded)  # type: ignore[attr-defined]
        self.assertIs(wrapper._channel, self.upgraded)
        self.transport.protocol.dataReceived(b"direct")  # type: ignore[attr-defined]
        wrapper.dataReceived(b" wrapped")
        self.assertEqual(self.upgraded.data, b"direct wrapped")

    def test_opaqueTransport(self) -> None:
        """
        D8: a transport that does not say which protocol it delivers to (no
        C{protocol} attribute) still gets switched, through the channel.
        """
        self.serve()
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(rawRequest() + b"early")
        self.assertEqual(transport.value(), SWITCHED_FOO)
        protocol.dataReceived(b" late")
        self.assertEqual(self.upgraded.data, b"early late")
        protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(len(self.upgraded.lost), 1)

    def test_newProtocolRaises(self) -> None:
        """
        An exception in the new protocol while it receives the early bytes
        is the new protocol's: logged, the connection aborted, and no HTTP
        response after the 101.
        """

        class Raising(Recorder):
            def dataReceived(self, data: bytes) -> None:
                raise ZeroDivisionError("in the new protocol")

        self.registry.register("foo/2", Scripted(lambda r: Accept(protocol=Raising())))
        self.serve()
        self.send(rawRequest() + b"early")
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(self.transport.disconnecting)

    def pausingProtocol(
        self, *, resumeAtOnce: bool = False, onData: Any = None
    ) -> Recorder:
        """
        Serve C{foo/2} with a L{Recorder} that pauses its transport in
        C{connectionMade} (and resumes at once if C{resumeAtOnce}); it calls
        C{onData(protocol, data)} for what it receives, if given.
        """

        class Pausing(Recorder):
            def connectionMade(self) -> None:
                transport: Any = self.transport
                transport.pauseProducing()
                if resumeAtOnce:
                    transport.resumeProducing()

            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                if onData is not None:
                    onData(self, data)

        protocol = Pausing()
        self.registry.register("foo/2", Scripted(lambda r: Accept(protocol=protocol)))
        self.serve()
        return protocol

    def test_earlyBytesWaitForResume(self) -> None:
        """
        D1: a new protocol that pauses its transport while it connects gets
        the bytes sent with the request only when it resumes it, as a
        transport delivers nothing while paused; then the transport is
        itself again.
        """
        protocol = self.pausingProtocol()
        self.send(rawRequest() + b"early")
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(protocol.received, [])
        self.assertEqual(self.transport.producerState, "paused")
        self.transport.resumeProducing()
        self.assertEqual(protocol.received, [b"early"])
        self.assertEqual(self.transport.producerState, "producing")
        self.assertNotIn("resumeProducing", vars(self.transport))
        self.assertNotIn("pauseProducing", vars(self.transport))

    def test_earlyBytesWaitForResumeAfterConnect(self) -> None:
        """
        The same when the pause comes from the target's C{afterConnect}
        (a WebSocket's C{onOpen} runs there).
        """
        protocol = Recorder()

        def pause() -> None:
            self.transport.pauseProducing()

        self.registry.register(
            "foo/2",
            Scripted(lambda r: Accept(protocol=protocol, afterConnect=pause)),
        )
        self.serve()
        self.send(rawRequest() + b"early")
        self.assertEqual(protocol.received, [])
        self.transport.resumeProducing()
        self.assertEqual(protocol.received, [b"early"])
        self.assertEqual(self.transport.producerState, "producing")

    def test_moreBytesWhilePausedQueueBehind(self) -> None:
        """
        What the transport still delivers while the protocol keeps it
        paused (TLS hands on the rest of the records it has already read)
        queues up behind the held bytes, in order.
        """
        protocol = self.pausingProtocol()
        self.send(rawRequest() + b"early ")
        delivers: Any = self.transport
        delivers.protocol.dataReceived(b"more")
        self.assertEqual(protocol.received, [])
        self.transport.resumeProducing()
        self.assertEqual(protocol.data, b"early more")
        self.assertNotIn("dataReceived", vars(protocol))

    def test_heldBytesToReboundHandler(self) -> None:
        """
        A protocol that binds its own C{dataReceived} as it connects (as
        twisted.web's own protocols do) gets the held bytes there.
        """
        handled: list[bytes] = []

        class Rebinding(Recorder):
            def connectionMade(self) -> None:
                transport: Any = self.transport
                transport.pauseProducing()
                self.dataReceived = handled.append  # type: ignore[method-assign,assignment]

        protocol = Rebinding()
        self.registry.register("foo/2", Scripted(lambda r: Accept(protocol=protocol)))
        self.serve()
        self.send(rawRequest() + b"early")
        self.transport.resumeProducing()
        self.assertEqual(handled, [b"early"])
        self.assertEqual(protocol.received, [])

    def test_earlyBytesAfterPauseAndResume(self) -> None:
        """
        A protocol that pauses and resumes while it connects gets the early
        bytes at once.
        """
        protocol = self.pausingProtocol(resumeAtOnce=True)
        self.send(rawRequest() + b"early")
        self.assertEqual(protocol.received, [b"early"])
        self.assertEqual(self.transport.producerState, "producing")
        self.assertNotIn("pauseProducing", vars(self.transport))

    def test_earlyBytesPausedAgain(self) -> None:
        """
        A protocol that pauses again as it receives the held bytes keeps
        its transport paused.
        """
        protocol = self.pausingProtocol(
            onData=lambda protocol, data: protocol.transport.pauseProducing()
        )
        self.send(rawRequest() + b"early")
        self.transport.resumeProducing()
        self.assertEqual(protocol.received, [b"early"])
        self.assertEqual(self.transport.producerState, "paused")

    def test_earlyBytesRaiseOnResume(self) -> None:
        """
        An exception in the new protocol as it receives the held bytes is
        handled as at the switch: logged, the connection aborted.
        """

        def raising(protocol: Any, data: bytes) -> None:
            raise ZeroDivisionError("in the new protocol")

        self.pausingProtocol(onData=raising)
        self.send(rawRequest() + b"early")
        self.transport.resumeProducing()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(self.transport.disconnecting)

    def test_noEarlyBytesNoWatch(self) -> None:
        """
        Without early bytes the transport is left as it is.
        """
        protocol = self.pausingProtocol()
        self.send(rawRequest())
        self.assertEqual(self.transport.producerState, "paused")
        self.assertNotIn("resumeProducing", vars(self.transport))
        self.transport.resumeProducing()
        self.assertEqual(protocol.received, [])

    def test_invalidFieldForThe101(self) -> None:
        """
        The 101 is written raw, so a target's header fields must be valid
        fields (RFC 9110 §5.1, §5.5): an L{Accept} or L{AcceptTLS} with a
        name that is not a token, or a CR, LF or NUL in a value or in
        C{upgrade}, is refused when it is made.
        """
        protocol = Recorder()
        for headers, upgrade in [
            ([(b"X-Ok", b"1\r\nX-Evil: 1")], None),
            ([(b"X Bad", b"1")], None),
            ([(b"X-Ok", b"1\n")], None),
            ([(b"X-Ok", b"\x00")], None),
            ([], b"foo/2\r\nX-Evil: 1"),
        ]:
            with self.assertRaises(ValueError):
                Accept(protocol=protocol, headers=headers, upgrade=upgrade)
            with self.assertRaises(ValueError):
                AcceptTLS(contextFactory=None, headers=headers, upgrade=upgrade or b"x")
        once: Any = iter([(b"X-Ok", b"a, b\tc")])
        accepted = Accept(protocol=protocol, headers=once)
        self.assertEqual(accepted.headers, ((b"X-Ok", b"a, b\tc"),))

    def test_invalidHandshakeTimeout(self) -> None:
        """
        Found by review: an L{AcceptTLS} or L{TLSUpgrade} whose
        C{handshakeTimeout} is not L{None} or a number of seconds above 0 is
        refused when it is made, not after its 101 went out.
        """
        from upgrade_plugin.tls import TLSUpgrade

        from .tls import serverOptions

        for seconds in [0, -1, float("nan"), float("inf"), "30", True]:
            with self.assertRaises(ValueError, msg=repr(seconds)):
                AcceptTLS(contextFactory=None, upgrade=b"x", handshakeTimeout=seconds)  # type: ignore[arg-type]
            with self.assertRaises(ValueError, msg=repr(seconds)):
                TLSUpgrade(serverOptions(), handshakeTimeout=seconds)  # type: ignore[arg-type]
        for seconds in [None, 0.5, 30]:
            accepted = AcceptTLS(
                contextFactory=None, upgrade=b"x", handshakeTimeout=seconds
            )
            self.assertEqual(accepted.handshakeTimeout, seconds)
            self.assertEqual(
                TLSUpgrade(serverOptions(), handshakeTimeout=seconds).handshakeTimeout,
                seconds,
            )

    def test_invalidFieldIsServerError(self) -> None:
        """
        A target that tries to accept with an invalid field fails: 500 for
        that request, nothing of the field written, the connection kept.
        """
        self.acceptWithHeaders([(b"X", b"1\r\nY: 2")])
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 500)
        self.assertEqual(response.header(b"y"), [])
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_connectionCloseStillSwitches(self) -> None:
        """
        S32 policy: C{Connection: upgrade, close} is honoured as an upgrade;
        after the 101 the connection belongs to the new protocol.
        """
        self.serve()
        self.send(offer(b"foo/2", b"upgrade, close"))
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertFalse(self.transport.disconnecting)

    def test_declineThenNext(self) -> None:
        """
        A declining target passes to the next offered protocol.
        """
        bar = Scripted(lambda r: Decline())
        self.registry.register("bar", bar)
        self.serve()
        self.send(offer(b"bar, foo/2", b"Upgrade") + b"x")
        self.assertEqual(len(bar.requests), 1)
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        self.assertEqual(self.upgraded.data, b"x")

    def test_factoryReturningNoneDeclines(self) -> None:
        class Refusing(RecorderFactory):
            def buildProtocol(self, addr: Any) -> Any:
                return None

        self.registry.register("foo/2", Refusing())
        self.serve(Hello())
        self.send(rawRequest())
        [response], _rest = parseResponses(self.transport.value())
        self.assertEqual((response.code, response.body), (200, b"hello /up"))


class BadInputTests(Base):
    """
    Each bad offer gets the fallback's normal answer, or a 426 without one,
    and the connection stays open (RFC 9110 §7.8, D10).
    """

    offers: ClassVar[list[tuple[str, bytes]]] = [
        ("HTTP/1.0 (S9)", rawRequest(version=b"HTTP/1.0")),
        ("no Connection (S15)", offer(b"foo/2", connection=None)),
        ("Connection without upgrade", offer(b"foo/2", connection=b"keep-alive")),
        ("unregistered (S3)", offer(b"bar")),
        ("version mismatch", offer(b"foo/3")),
        ("empty Upgrade (G1)", offer(b"")),
        ("garbage members (G2)", offer(b'foo/1/2, "foo/2", /3, foo/, "')),
    ]

    def test_fallback(self) -> None:
        for name, raw in self.offers:
            self.serve(Hello())
            self.send(raw)
            [response], rest = parseResponses(self.transport.value())
            self.assertEqual(
                (response.code, response.body, rest), (200, b"hello /up", b""), name
            )
            self.assertEqual(response.header(b"upgrade"), [], name)
            self.assertEqual(self.factory.built, [], name)
            http10 = raw.split(b"\r\n", 1)[0].endswith(b"1.0")
            self.assertEqual(self.transport.disconnecting, http10, name)

    def test_upgradeRequired(self) -> None:
        """
        S5, S22: without a fallback, 426 naming the registry's tokens, with
        Connection: Upgrade and a framed human-readable body.
        """
        for name, raw in self.offers:
            self.serve()
            self.send(raw)
            [response], _rest = parseResponses(self.transport.value())
            self.assertEqual(
                response.status.split(b" ", 1)[1], b"426 Upgrade Required", name
            )
            self.assertEqual(response.header(b"upgrade"), [b"foo/2"], name)
            self.assertEqual(response.header(b"connection"), [b"Upgrade"], name)
            self.assertEqual(
                response.header(b"content-type"), [b"text/plain; charset=utf-8"], name
            )
            self.assertEqual(response.body, UPGRADE_REQUIRED_BODY, name)
            self.assertEqual(self.factory.built, [], name)

    def test_upgradeRequiredListsPreference(self) -> None:
        self.registry.register("websocket", RecorderFactory())
        self.serve()
        self.send(rawRequest(headers=[(b"Host", b"x")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"upgrade"), [b"foo/2, websocket"])

    def test_upgradeRequiredKeepsConnection(self) -> None:
        """
        S22, D10: after a 426 a pipelined request is answered.
        """
        self.serve(None)
        self.send(rawRequest(headers=[(b"Host", b"x")]) + rawRequest(path=b"/hello"))
        [first, second], _rest = parseResponses(self.transport.value())
        self.assertEqual((first.code, second.code), (426, 200))
        self.assertEqual(second.body, b"hello /hello")
        self.assertFalse(self.transport.disconnecting)

    def test_upgradeRequiredHead(self) -> None:
        self.serve()
        self.send(rawRequest(method=b"HEAD", headers=[(b"Host", b"x")]))
        [response], rest = parseResponses(self.transport.value(), head=True)
        self.assertEqual(response.code, 426)
        self.assertEqual(rest, b"")

    def test_declinedPipelined(self) -> None:
        """
        S1, S33(a), D2: a declined upgrade with a request pipelined behind
        it: both answered, in order, on HTTP/1.1.
        """
        self.registry.register("foo/2", Scripted(lambda r: Decline()))
        self.serve(Hello())
        self.send(rawRequest() + rawRequest(path=b"/hello", headers=[(b"Host", b"x")]))
        [first, second], _rest = parseResponses(self.transport.value())
        self.assertEqual((first.body, second.body), (b"hello /up", b"hello /hello"))
        self.assertFalse(self.transport.disconnecting)

    def test_unregisteredPipelined(self) -> None:
        self.serve(Hello())
        offer = [(b"Host", b"x"), (b"Connection", b"upgrade"), (b"Upgrade", b"bar")]
        self.send(rawRequest(headers=offer) + rawRequest(path=b"/up", headers=offer))
        responses, _rest = parseResponses(self.transport.value())
        self.assertEqual([r.body for r in responses], [b"hello /up", b"hello /up"])

    def test_reject(self) -> None:
        self.registry.register(
            "foo/2",
            Scripted(
                lambda r: Reject(
                    code=403, headers=[(b"X-Why", b"origin")], body=b"no thanks"
                )
            ),
        )
        self.serve(Hello())
        self.send(rawRequest() + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        [response, after], _rest = parseResponses(self.transport.value())
        self.assertEqual(
            (response.code, response.header(b"x-why"), response.body),
            (403, [b"origin"], b"no thanks"),
        )
        self.assertEqual(after.body, b"hello /hello")

    def test_rejectReasonPhrase(self) -> None:
        """
        A rejection with a status twisted.web has no reason phrase for gets
        the registered one, not C{Unknown Status}; an unregistered status
        gets twisted.web's own.
        """
        cases = {
            426: b"HTTP/1.1 426 Upgrade Required",
            429: b"HTTP/1.1 429 Too Many Requests",
            403: b"HTTP/1.1 403 Forbidden",
            599: b"HTTP/1.1 599 Unknown Status",
        }
        for code, status in cases.items():
            self.registry.register("foo/2", Scripted(lambda r, c=code: Reject(code=c)))
            self.serve(Hello())
            self.send(rawRequest())
            [response], _rest = parseResponses(self.transport.value())
            self.assertEqual(response.status, status)

    def test_targetRaises(self) -> None:
        """
        A target raising in buildProtocol: 500 for that request only, the
        connection keeps serving, and the failure is logged as a server
        error.
        """

        class Broken(RecorderFactory):
            def buildProtocol(self, addr: Any) -> Any:
                raise ZeroDivisionError("broken target")

        self.registry.register("foo/2", Broken())
        self.serve(Hello())
        self.send(rawRequest() + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        [error, after], _rest = parseResponses(self.transport.value())
        self.assertEqual(
            (error.code, error.body), (500, b"500 Internal Server Error\n")
        )
        self.assertEqual(after.body, b"hello /hello")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(self.transport.disconnecting)

    def test_asyncTargetFails(self) -> None:
        decision: Deferred[Decision] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve(Hello())
        self.send(rawRequest())
        decision.errback(Failure(ZeroDivisionError()))
        [error], _rest = parseResponses(self.transport.value())
        self.assertEqual(error.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_asyncDecline(self) -> None:
        decision: Deferred[Decision] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve(Hello())
        self.send(rawRequest() + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        decision.callback(Decline())
        [first, second], _rest = parseResponses(self.transport.value())
        self.assertEqual((first.body, second.body), (b"hello /up", b"hello /hello"))

    def test_asyncReject426(self) -> None:
        decision: Deferred[Decision] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve()
        self.send(rawRequest())
        decision.callback(Decline())
        [response], _rest = parseResponses(self.transport.value())
        self.assertEqual(response.code, 426)
        self.assertEqual(response.body, UPGRADE_REQUIRED_BODY)

    def test_disconnectBeforeDecision(self) -> None:
        """
        The client leaves while the target decides: nothing is switched,
        nothing logged.
        """
        decision: Deferred[Decision] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve()
        self.send(rawRequest())
        self.protocol.connectionLost(Failure(ConnectionError()))
        protocol = Recorder()
        decision.callback(Accept(protocol=protocol))
        self.assertIsNone(protocol.transport)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_disconnectMidRequest(self) -> None:
        self.serve()
        self.send(rawRequest()[:-10])
        self.protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.factory.built, [])
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])


class AdvertiseTests(Base):
    """
    S6, S8: advertising on other responses.
    """

    def test_advertised(self) -> None:
        self.registry.register("websocket", RecorderFactory())
        self.serve(Hello(), advertise=True)
        self.send(rawRequest(headers=[(b"Host", b"x")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"upgrade"), [b"foo/2, websocket"])
        self.assertEqual(response.header(b"connection"), [b"Upgrade"])
        self.assertFalse(self.transport.disconnecting)

    def test_advertisedWithClose(self) -> None:
        self.serve(Hello(), advertise=True)
        self.send(rawRequest(headers=[(b"Host", b"x"), (b"Connection", b"close")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"connection"), [b"close, Upgrade"])

    def test_notAdvertisedToHTTP10(self) -> None:
        self.serve(Hello(), advertise=True)
        self.send(rawRequest(version=b"HTTP/1.0", headers=[(b"Host", b"x")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"upgrade"), [])

    def test_notAdvertisedByDefault(self) -> None:
        self.serve(Hello())
        self.send(rawRequest(headers=[(b"Host", b"x")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.header(b"upgrade"), [])


class TraversalTests(Base):
    def test_childrenFromFallback(self) -> None:
        fallback = Resource()
        fallback.putChild(b"child", Hello())
        self.serve(fallback, capture=False)
        self.assertFalse(self.resource.isLeaf)
        self.send(rawRequest(path=b"/up/child", headers=[(b"Host", b"x")]))
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.body, b"hello /up/child")

    def test_ownChildren(self) -> None:
        """
        Children put on the resource are found in front of the fallback's,
        with or without a fallback.
        """
        for fallback in (None, Hello()):
            self.serve(fallback, capture=False)
            self.resource.putChild(b"child", Hello())
            self.assertFalse(self.resource.isLeaf)
            self.send(rawRequest(path=b"/up/child", headers=[(b"Host", b"x")]))
            [response], _ = parseResponses(self.transport.value())
            self.assertEqual(response.body, b"hello /up/child")

    def test_leafWithoutFallback(self) -> None:
        self.serve(capture=False)
        self.assertTrue(self.resource.isLeaf)
        self.send(rawRequest(path=b"/up/anything"))
        self.assertEqual(self.transport.value(), SWITCHED_FOO)


class Big(Resource):
    """
    A body worth compressing.
    """

    isLeaf = True
    BODY = b"compress me " * 100

    def render_GET(self, request: Any) -> bytes:
        return self.BODY


class EncodingTests(Base):
    """
    A fallback behind twisted.web's C{EncodingResourceWrapper} (gzip)
    answers encoded, as it does when traversal ends at it: whether the
    request offered nothing, offered what is not registered, or reached it
    through an L{UpgradeSite}.
    """

    def wrapped(self) -> Resource:
        return EncodingResourceWrapper(Big(), [GzipEncoderFactory()])

    def assertGzipped(self, transport: StringTransport) -> None:
        [response], rest = parseResponses(transport.value())
        self.assertEqual(rest, b"")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"content-encoding"), [b"gzip"])
        self.assertEqual(zlib.decompress(response.body, 16 + zlib.MAX_WBITS), Big.BODY)

    def test_fallbackEncoded(self) -> None:
        self.serve(self.wrapped())
        self.send(rawRequest(headers=[(b"Host", b"x"), (b"Accept-Encoding", b"gzip")]))
        self.assertGzipped(self.transport)

    def test_unregisteredOfferEncoded(self) -> None:
        self.serve(self.wrapped(), advertise=True)
        self.send(offer(b"bar/1", b"Upgrade", (b"Accept-Encoding", b"gzip")))
        self.assertGzipped(self.transport)

    def test_requireTLSEncoded(self) -> None:
        """
        Over TLS, a resource behind L{RequireTLS} that is behind
        C{EncodingResourceWrapper} answers encoded.
        """
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import alsoProvides

        from upgrade_plugin.tls import RequireTLS, TLSUpgrade

        from .tls import serverOptions

        secure = RequireTLS(self.wrapped(), TLSUpgrade(serverOptions()))
        self.site, _ = memorySite(secure)
        self.site.logFile = ListLog()
        self.protocol, self.transport = connect(self.site)
        alsoProvides(self.transport, ISSLTransport)
        self.send(rawRequest(headers=[(b"Host", b"x"), (b"Accept-Encoding", b"gzip")]))
        self.assertGzipped(self.transport)

    def test_upgradeSiteEncoded(self) -> None:
        """
        On an L{UpgradeSite} with a registry, a request that offers a
        protocol the site does not serve (C{curl --http2} offers h2c) still
        gets the traversed resource's encoded answer.
        """
        root = Resource()
        root.putChild(b"big", self.wrapped())
        site = UpgradeSite(root, self.registry, reactor=Clock())
        site.logFile = ListLog()
        protocol, transport = connect(site)
        protocol.dataReceived(
            offer(
                b"h2c",
                b"Upgrade, HTTP2-Settings",
                (b"HTTP2-Settings", b"AAMAAABkAAQAoAAAAAIAAAAA"),
                (b"Accept-Encoding", b"gzip"),
                path=b"/big",
            )
        )
        self.assertGzipped(transport)


class EventTests(Base):
    """
    One structured event per decision, with named fields.
    """

    def test_events(self) -> None:
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.registry.register("bar", Scripted(lambda r: Decline()))
        self.registry.register("baz", Scripted(lambda r: Reject(code=403, body=b"no")))
        self.serve(logDecisions=True)
        offer = [(b"Host", b"x"), (b"Connection", b"Upgrade")]
        self.send(rawRequest(headers=[*offer, (b"Upgrade", b"bar, baz")]))
        self.send(rawRequest(headers=[*offer, (b"Upgrade", b"foo/2")]))
        outcomes = [
            (e["outcome"], e["protocol"], e["uri"], e["log_level"].name)
            for e in events
            if "outcome" in e
        ]
        self.assertEqual(
            outcomes,
            [
                ("declined", "bar", b"/up", "debug"),
                ("rejected with 403", "baz", b"/up", "info"),
                ("accepted", "foo/2", b"/up", "debug"),
            ],
        )

    def test_onlyRejectsByDefault(self) -> None:
        """
        Without C{logDecisions}, only rejections are events (accepts are in
        the access log line; per-event cost stays off the hot path).
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.registry.register("bar", Scripted(lambda r: Decline()))
        self.registry.register("baz", Scripted(lambda r: Reject(code=403, body=b"no")))
        self.serve()
        offer = [(b"Host", b"x"), (b"Connection", b"Upgrade")]
        self.send(rawRequest(headers=[*offer, (b"Upgrade", b"bar, baz")]))
        self.send(rawRequest(headers=[*offer, (b"Upgrade", b"foo/2")]))
        self.assertEqual(
            [e["outcome"] for e in events if "outcome" in e], ["rejected with 403"]
        )


class AsyncOutcomeTests(Base):
    """
    A decision that arrives later ends the request exactly as the same
    decision made at once would.
    """

    def test_fallbackMethodNotAllowed(self) -> None:
        class PostOnly(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                return b"posted"

        for later in (False, True):
            decision: Deferred[Decision] = Deferred()
            self.registry.register(
                "foo/2",
                Scripted(lambda r, d=decision, later=later: d if later else Decline()),
            )
            self.serve(PostOnly())
            self.send(rawRequest())
            if later:
                decision.callback(Decline())
            [response], _ = parseResponses(self.transport.value())
            self.assertEqual(response.code, 405, later)

    def test_declinedLaterNextNeedsSwitchableConnection(self) -> None:
        """
        After a later L{Decline}, the next offered protocol is tried only if
        the connection can still switch: one that began closing meanwhile
        gets the normal answer, not a 101.
        """
        decision: Deferred[Decision] = Deferred()
        self.registry.register("bar", Scripted(lambda r: decision))
        self.serve(Hello())
        self.send(offer(b"bar, foo/2"))
        # As a real transport: closing, and still resumable (twisted.web
        # resumes it when the request is done).
        self.transport._lenient = True
        self.transport.loseConnection()
        decision.callback(Decline())
        self.assertEqual(self.factory.built, [])
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual((response.code, response.body), (200, b"hello /up"))

    def test_clientLeavesCancelsDecision(self) -> None:
        """
        A client that disconnects before a target decides cancels the
        target's Deferred; nothing is written or logged.
        """
        cancelled: list[Deferred[Decision]] = []
        decision: Deferred[Decision] = Deferred(cancelled.append)
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve(Hello())
        self.send(rawRequest())
        self.protocol.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(cancelled, [decision])
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_notADecision(self) -> None:
        decision: Deferred[Any] = Deferred()
        self.registry.register("foo/2", Scripted(lambda r: decision))
        self.serve(Hello())
        self.send(rawRequest())
        decision.callback(None)
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class FakeHeadTests(Base):
    """
    D6, W1: twisted.web retries a HEAD as GET when the resource has no
    render_HEAD; that retry is never upgraded.
    """

    def test_noUpgradeOnFakeHead(self) -> None:
        from twisted.web.error import UnsupportedMethod

        class GetOnly(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                if request.method != b"GET":
                    raise UnsupportedMethod([b"GET"])
                return upgrading.render(request)

        upgrading = UpgradeResource(self.registry, Hello())
        self.site, self.clock = memorySite(GetOnly())
        self.protocol, self.transport = connect(self.site)
        self.send(rawRequest(method=b"HEAD"))
        self.assertNotIn(b" 101 ", self.transport.value())
        self.assertEqual(self.factory.built, [])


class BodyLimitTests(Base):
    """
    D9: a body longer than C{maxBodySize} is not brought into memory for the
    targets; the request is answered as if it offered nothing.
    """

    def post(self, size: int) -> None:
        self.send(
            offer(
                b"foo/2",
                b"Upgrade",
                (b"Content-Length", b"%d" % (size,)),
                method=b"POST",
                body=b"x" * size,
            )
        )

    def test_overLimit(self) -> None:
        self.serve(Hello(), maxBodySize=1000)
        self.post(1001)
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual((response.code, response.body), (200, b"hello /up"))
        self.assertEqual(self.factory.built, [])

    def test_overLimitInTemporaryFile(self) -> None:
        """
        twisted.web keeps bodies past 100 kB in a temporary file: measured
        there too.
        """
        self.serve(Hello(), maxBodySize=150_000)
        self.post(200_000)
        [response], _ = parseResponses(self.transport.value())
        self.assertEqual(response.code, 200)
        self.assertEqual(self.factory.built, [])

    def test_atLimit(self) -> None:
        self.serve(Hello(), maxBodySize=200_000)
        self.post(200_000)
        self.assertEqual(self.transport.value(), SWITCHED_FOO)
        assert self.upgraded.request is not None
        self.assertEqual(len(self.upgraded.request.body), 200_000)


class HeadTests(Base):
    def test_factoryTargetDeclinesHead(self) -> None:
        """
        D6: a HEAD is never switched to a plain factory's protocol.
        """
        self.serve(Hello())
        self.send(rawRequest(method=b"HEAD"))
        [response], _ = parseResponses(self.transport.value(), head=True)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.factory.built, [])
