"""
Requests that arrive over HTTP/2 (ALPN h2) are never upgraded (RFC 9113
§8.6: HTTP/2 has no 101, and Upgrade is connection-specific there).
"""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from upgrade_plugin import UpgradeRegistry, UpgradeResource

from .helpers import PEER, Hello, RecorderFactory, memorySite


class HTTP2Tests(TestCase):
    """
    Twisted's H2Connection sends DATA from the global reactor, so these run
    on it, with an in-memory transport.
    """

    @inlineCallbacks
    def exchange(self, resource: Resource) -> Any:
        site, _ = memorySite(resource)
        server: Any = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        server.makeConnection(transport)

        client = H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        client.send_headers(
            1,
            [
                (b":method", b"GET"),
                (b":path", b"/up"),
                (b":scheme", b"https"),
                (b":authority", b"example.com"),
            ],
            end_stream=True,
        )
        server.dataReceived(client.data_to_send())
        yield deferLater(reactor, 0.05)
        server.connectionLost(Failure(ConnectionError()))
        headers: dict[bytes, bytes] = {}
        body = b""
        for event in client.receive_data(transport.value()):
            if isinstance(event, ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, DataReceived):
                body += event.data
        return headers, body

    @inlineCallbacks
    def test_fallback(self) -> Any:
        factory = RecorderFactory()
        registry = UpgradeRegistry()
        registry.register("foo/2", factory)
        headers, body = yield self.exchange(UpgradeResource(registry, Hello()))
        self.assertEqual((headers[b":status"], body), (b"200", b"hello /up"))
        self.assertEqual(factory.built, [])

    @inlineCallbacks
    def test_upgradeRequiredWithoutConnectionFields(self) -> Any:
        """
        S22, RFC 9113 §8.2.2: on an HTTP/2 stream the 426 carries no
        Upgrade or Connection field.
        """
        registry = UpgradeRegistry()
        registry.register("foo/2", RecorderFactory())
        headers, body = yield self.exchange(UpgradeResource(registry))
        self.assertEqual(headers[b":status"], b"426")
        self.assertNotIn(b"upgrade", headers)
        self.assertNotIn(b"connection", headers)
        self.assertTrue(body.startswith(b"426 Upgrade Required"))
        self.assertEqual(self.flushLoggedErrors(), [])
