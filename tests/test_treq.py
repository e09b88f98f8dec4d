"""
Decline paths through a real twisted.web.client Agent, in memory
(C{treq.testing.StubTreq}). The Agent ignores 1xx, so a 101 is never
tested here: only answers that a client sees as final. The Agent also keeps
connection-control fields (Connection, Upgrade) out of C{response.headers};
their exact values are asserted on raw bytes in C{test_resource}.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from upgrade_plugin import UpgradeRegistry, UpgradeResource

from .helpers import Hello, RecorderFactory


class StubTreqTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.factory = RecorderFactory()
        self.registry = UpgradeRegistry()
        self.registry.register("foo/2", self.factory)
        self.registry.register("websocket", self.factory)

    def get(self, resource: Resource, headers: dict[bytes, list[bytes]]) -> Any:
        root = Resource()
        root.putChild(b"up", resource)
        treq = StubTreq(root)
        response = self.successResultOf(
            treq.get("http://example.com/up", headers=headers)  # type: ignore[attr-defined]
        )
        body = self.successResultOf(treq.content(response))  # type: ignore[attr-defined]
        return response, body

    def test_upgradeRequired(self) -> None:
        """
        S5, S8, S22: a 426 lists the tokens in descending preference, with
        Connection: Upgrade and a body.
        """
        response, body = self.get(UpgradeResource(self.registry), {})
        self.assertEqual(response.code, 426)
        self.assertEqual(response.phrase, b"Upgrade Required")
        self.assertEqual(
            body,
            b"426 Upgrade Required: use one of these protocols: foo/2, websocket\n",
        )

    def test_unregisteredOfferFallsBack(self) -> None:
        response, body = self.get(
            UpgradeResource(self.registry, Hello()),
            {b"Connection": [b"Upgrade"], b"Upgrade": [b"bar/1, foo/3"]},
        )
        self.assertEqual((response.code, body), (200, b"hello /up"))
        self.assertEqual(self.factory.built, [])

    def test_advertised(self) -> None:
        response, body = self.get(
            UpgradeResource(self.registry, Hello(), advertise=True), {}
        )
        # C8: an advertising response is an ordinary one to the client.
        self.assertEqual((response.code, body), (200, b"hello /up"))
