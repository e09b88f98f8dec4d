"""
Pins the twisted.web internals that L{upgrade_plugin._switch} relies on, so
that a Twisted release that changes them fails here, by name, rather than
losing bytes somewhere else.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import NOT_DONE_YET, GzipEncoderFactory
from twisted.web.server import Request as ServerRequest

import twisted
from upgrade_plugin._switch import SUPPORTED_TWISTED

from .helpers import IdleProducer, ListLog, connect, memorySite


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


class Holding(Resource):
    """
    Keeps each request open, like a target that decides later.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


class InternalsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.resource = Holding()
        self.site, _ = memorySite(self.resource, path=b"hold")
        self.wrapper, self.transport = connect(self.site)
        self.channel: Any = self.wrapper._channel

    def test_supportedRange(self) -> None:
        """
        The installed Twisted is in the declared range.
        """
        low, high = re.match(r">=([\d.]+),<([\d.]+)", SUPPORTED_TWISTED).groups()  # type: ignore[union-attr]
        installed = _version(twisted.__version__)
        self.assertTrue(_version(low) <= installed < _version(high), installed)

    def test_genericWrapperForwardsToChannel(self) -> None:
        """
        C{_GenericHTTPChannelProtocol._channel} is the HTTPChannel, and
        replacing it redirects C{dataReceived} and C{connectionLost}.
        """
        self.assertIsInstance(self.wrapper, _GenericHTTPChannelProtocol)
        self.assertIsInstance(self.channel, HTTPChannel)
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")

        class Sink(Protocol):
            received = b""
            lost = 0

            def dataReceived(self, data: bytes) -> None:
                self.received += data

            def connectionLost(self, reason: object = None) -> None:
                self.lost += 1

        sink = Sink()
        self.wrapper._channel = sink
        self.wrapper.dataReceived(b"x")
        self.wrapper.connectionLost(None)
        self.assertEqual((sink.received, sink.lost), (b"x", 1))

    def test_unparsedBytesInBuffers(self) -> None:
        """
        While a request is handled, the rest of its segment is in
        C{_dataBuffer} (moved from LineReceiver's C{_buffer}), and later
        segments are appended to C{_dataBuffer}.
        """
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\nrest")
        channel = self.channel
        self.assertEqual((channel._dataBuffer, channel._buffer), ([b"rest"], b""))
        self.wrapper.dataReceived(b"more")
        self.assertEqual(self.channel._dataBuffer, [b"rest", b"more"])

    def test_unparsedBytesDuringRender(self) -> None:
        """
        During a synchronous render the rest of the segment is still in
        LineReceiver's C{_buffer}.
        """
        seen: list[tuple[list[bytes], bytes]] = []

        def render(request: Any) -> Any:
            seen.append((list(self.channel._dataBuffer), self.channel._buffer))
            return NOT_DONE_YET

        self.resource.render = render  # type: ignore[method-assign]
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\nrest")
        self.assertEqual(seen, [([], b"rest")])

    def test_unparsedBytesAfterBody(self) -> None:
        seen: list[tuple[list[bytes], bytes]] = []

        def render(request: Any) -> Any:
            seen.append((list(self.channel._dataBuffer), self.channel._buffer))
            return NOT_DONE_YET

        self.resource.render = render  # type: ignore[method-assign]
        self.wrapper.dataReceived(
            b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhirest"
        )
        self.assertEqual(seen, [([b"rest"], b"")])

    def test_producerAndTimers(self) -> None:
        """
        The channel registers itself as the transport's producer through
        C{_networkProducer}, and has C{setTimeout} and C{_abortingCall}.
        """
        self.assertIs(self.transport.producer, self.channel)
        self.assertIs(self.channel._networkProducer, self.transport)
        self.assertIsNone(self.channel._abortingCall)
        self.assertIsNotNone(self.channel.setTimeout(None))

    def test_noIdleTimeoutWhileHandling(self) -> None:
        """
        While a request is handled the channel's idle timeout is off
        (C{allContentReceived} saves it and sets C{timeOut} to L{None}), so
        the switch leaves the timer alone then.
        """
        self.assertIsNotNone(self.channel.timeOut)
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(self.resource.requests), 1)
        self.assertIsNone(self.channel.timeOut)
        self.assertIsNone(self.channel._TimeoutMixin__timeoutCall)

    def test_pausesPast16KiB(self) -> None:
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        self.wrapper.dataReceived(b"x" * (self.channel._optimisticEagerReadSize + 1))
        self.assertEqual(self.transport.producerState, "paused")

    def test_finishBookkeeping(self) -> None:
        """
        What C{Request.finish()} does besides writing, which the switch does
        itself: C{notifyFinish()} Deferreds wait in C{notifications}, the
        body is C{content}, the channel lists the request in C{requests},
        and the site's C{log(request)} writes the access-log line with the
        request's C{code}.
        """
        log = ListLog()
        self.site.logFile = log
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        [request] = self.resource.requests
        self.assertIsInstance(request, Request)
        finished = request.notifyFinish()
        self.assertEqual(request.notifications, [finished])
        self.assertEqual(request.content.read(), b"")
        self.assertEqual(self.channel.requests, [request])
        self.assertIs(self.channel.factory, self.site)
        request.code = 101
        self.site.log(request)
        self.assertIn('" 101 -', log.lines[0])
        self.assertFalse(request.finished)

    def test_requestProducerUnregistered(self) -> None:
        """
        A producer still registered on a switched request is unregistered,
        as C{Request.finish()} would: the channel lets go of it.
        """
        from upgrade_plugin._switch import switchProtocol

        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        [request] = self.resource.requests

        request.registerProducer(IdleProducer(), True)
        switchProtocol(
            request, Protocol(), upgrade=b"foo", headers=(), upgradeRequest=None
        )
        self.assertIsNone(request.producer)
        self.assertIsNone(self.channel._requestProducer)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101 "))

    def test_finishDuties(self) -> None:
        """
        The names C{Request.finish()}, C{Request._cleanup()} and
        C{twisted.web.server.Request.finish()} use: the switch does their
        bookkeeping itself for the stock classes, so a release that gives
        them a new duty fails here, by name.
        """
        self.assertEqual(
            sorted(Request.finish.__code__.co_names),
            [
                "RuntimeError",
                "_cleanup",
                "_disconnected",
                "channel",
                "chunked",
                "factory",
                "finished",
                "hasattr",
                "log",
                "queued",
                "startedWriting",
                "warn",
                "warnings",
                "write",
            ],
        )
        self.assertEqual(
            sorted(Request._cleanup.__code__.co_names),
            [
                "Failure",
                "OSError",
                "RuntimeError",
                "_log",
                "callback",
                "channel",
                "close",
                "content",
                "failure",
                "notifications",
                "producer",
                "requestDone",
                "unregisterProducer",
                "uri",
            ],
        )
        self.assertEqual(
            sorted(ServerRequest.finish.__code__.co_names),
            ["_HTTPRequest", "_encoder", "finish", "write"],
        )

    def test_encoderWritesOnFinish(self) -> None:
        """
        Behind C{EncodingResourceWrapper}, C{twisted.web.server.Request}
        keeps the encoder in C{_encoder}, and C{finish()} writes what the
        encoder flushes even when C{startedWriting} is set: one reason the
        switch does its own bookkeeping rather than call C{finish()}.
        """
        wrapped = EncodingResourceWrapper(self.resource, [GzipEncoderFactory()])
        self.site, _ = memorySite(wrapped, path=b"hold")
        self.wrapper, self.transport = connect(self.site)
        self.wrapper.dataReceived(
            b"GET /hold HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        [request] = self.resource.requests
        self.assertIsNotNone(request._encoder)
        request.startedWriting = True
        request.chunked = False
        request.finish()
        self.assertTrue(self.transport.value().startswith(b"\x1f\x8b"))

    def test_firstLineFlag(self) -> None:
        """
        C{HTTPChannel.__first_line} is true while the channel waits for a
        request line, and false inside one (UpgradeSite's channel rejects
        bytes that cannot start a request only at that point).
        """
        self.assertTrue(self.channel._HTTPChannel__first_line)
        self.wrapper.dataReceived(b"GET /hold HTTP/1.1\r\n")
        self.assertFalse(self.channel._HTTPChannel__first_line)
        self.assertTrue(self.channel.line_mode)

    def test_encodingResource(self) -> None:
        """
        twisted.web encodes a response when the resource traversal ends at
        provides C{_IEncodingResource}: C{Request.process} puts its
        C{getEncoder(request)} in C{request._encoder}, L{None} otherwise.
        """
        from twisted.web.resource import _IEncodingResource

        wrapped = EncodingResourceWrapper(self.resource, [GzipEncoderFactory()])
        self.assertTrue(_IEncodingResource.providedBy(wrapped))
        self.assertFalse(_IEncodingResource.providedBy(self.resource))
        self.assertIn("_IEncodingResource", ServerRequest.process.__code__.co_names)
        self.assertIn("_encoder", ServerRequest.process.__code__.co_names)
        self.assertIsNone(ServerRequest._encoder)

    def test_http2SendingLoop(self) -> None:
        """
        The HTTP/2 sending loop that L{upgrade_plugin._switch._H2Connection}
        makes wait on a shut flow-control window: its queues, priority tree,
        restart Deferred and end-of-stream marker.
        """
        from twisted.web import _http2

        names = _http2.H2Connection._sendPrioritisedData.__code__.co_names
        for name in ("priority", "_outboundStreamQueues", "_sendingDeferred"):
            self.assertIn(name, names)
        self.assertIn("_END_STREAM_SENTINEL", names)
        self.assertTrue(callable(_http2.H2Stream.windowUpdated))

    def test_handleStar(self) -> None:
        """
        twisted.web answers a request whose target is C{*} in
        C{Request._handleStar}, after C{process} set the site and the
        default headers, without traversing resources.
        """
        from twisted.web.server import Request as ServerRequest

        seen: list[Any] = []

        class Recording(ServerRequest):
            def _handleStar(self) -> None:
                seen.append((self.site, self.responseHeaders.hasHeader(b"date")))
                super()._handleStar()

        self.site.requestFactory = Recording
        self.wrapper, self.transport = connect(self.site)
        self.wrapper.dataReceived(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(seen, [(self.site, True)])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_respondToBadRequestAndDisconnect(self) -> None:
        """
        twisted.web answers a malformed request line with
        C{HTTPChannel._respondToBadRequestAndDisconnect}: a bare 400 and a
        close.
        """
        seen: list[bool] = []
        original = self.channel._respondToBadRequestAndDisconnect

        def recording() -> None:
            seen.append(True)
            original()

        self.channel._respondToBadRequestAndDisconnect = recording
        self.wrapper.dataReceived(b"GET\r\n")
        self.assertEqual(seen, [True])
        self.assertEqual(self.transport.value(), b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
