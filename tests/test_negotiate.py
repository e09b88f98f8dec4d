"""
Pure tests of the RFC 9110 grammar and the choice of protocol.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from upgrade_plugin import ProtocolToken, UpgradeRegistry
from upgrade_plugin._negotiate import upgradeOffer
from upgrade_plugin._tokens import (
    connectionOptions,
    httpVersion,
    listMembers,
    parseProtocol,
    parseUpgrade,
)


def P(name: str, version: str | None = None) -> ProtocolToken:
    return ProtocolToken(name=name, version=version)


class ListMembersTests(SynchronousTestCase):
    """
    RFC 9110 §5.6.1.2 lists and §5.3 field-line combination.
    """

    def test_table(self) -> None:
        cases: list[tuple[list[bytes], list[bytes]]] = [
            ([b"a"], [b"a"]),
            ([b"a,b"], [b"a", b"b"]),
            ([b" a ,\tb\t"], [b"a", b"b"]),
            ([b", websocket ,,"], [b"websocket"]),  # G4: empty members
            ([b""], []),  # G1: an empty Upgrade offers nothing
            ([b",,,"], []),
            ([b"a", b"b, c"], [b"a", b"b", b"c"]),  # G5: several lines
        ]
        for lines, expected in cases:
            self.assertEqual(listMembers(lines), expected, lines)


class ParseProtocolTests(SynchronousTestCase):
    """
    RFC 9110 §7.8 C{protocol = protocol-name ["/" protocol-version]}, both
    C{token}s (§5.6.2).
    """

    def test_valid(self) -> None:
        cases = [
            (b"websocket", P("websocket")),
            (b"WebSocket", P("WebSocket")),
            (b"foo/2", P("foo", "2")),
            (b"TLS/1.2", P("TLS", "1.2")),
            (b"h2c", P("h2c")),
            (b"x!#$%&'*+-.^_`|~9", P("x!#$%&'*+-.^_`|~9")),
        ]
        for member, expected in cases:
            self.assertEqual(parseProtocol(member), expected, member)

    def test_invalid(self) -> None:
        """
        G2: "/" is a delimiter, so these are not protocols; they are ignored.
        """
        for member in [
            b"foo/1/2",
            b"foo/",
            b"/3",
            b"/",
            b'"foo"',
            b'"',
            b"fo o",
            b"foo;bar",
            b"f\xc3\xa9",
            b"foo/\x01",
        ]:
            self.assertIsNone(parseProtocol(member), member)

    def test_parseUpgradeSkipsInvalid(self) -> None:
        self.assertEqual(
            parseUpgrade([b'foo/1/2, "q", /3, websocket', b"foo/2"]),
            [P("websocket"), P("foo", "2")],
        )

    def test_keyIsCaseInsensitiveName(self) -> None:
        self.assertEqual(P("WEBSOCKET").key, "websocket")
        self.assertEqual(str(P("TLS", "1.2")), "TLS/1.2")
        self.assertEqual(P("foo", "2").toBytes(), b"foo/2")


class ConnectionOptionsTests(SynchronousTestCase):
    """
    RFC 9110 §7.6.1: connection options are case-insensitive tokens.
    """

    def test_table(self) -> None:
        cases: list[tuple[list[bytes], bool]] = [
            ([b"Upgrade"], True),
            ([b"UPGRADE"], True),  # G6
            ([b"keep-alive,upgrade"], True),  # G6: no space
            ([b"keep-alive, Upgrade"], True),
            ([b",Upgrade,"], True),  # G4
            ([b"keep-alive", b"Upgrade"], True),  # G5: second line
            ([b"Upgrade", b"keep-alive"], True),  # G5: first line
            ([b"keep-alive, upgrade"], True),  # G7: obs-fold as SP
            ([b"keep-alive"], False),
            ([b"upgraded"], False),
            ([b'"upgrade"'], False),
            ([], False),
        ]
        for lines, expected in cases:
            self.assertEqual(b"upgrade" in connectionOptions(lines), expected, lines)


class HTTPVersionTests(SynchronousTestCase):
    def test_table(self) -> None:
        cases = [
            (b"HTTP/1.1", (1, 1)),
            (b"HTTP/1.0", (1, 0)),
            (b"HTTP/1.9", (1, 9)),
            (b"HTTP/2", None),
            (b"http/1.1", None),  # RFC 9112 §2.3: case-sensitive
            (b"HTTP/1.10", None),
            (b"HTTP/11", None),
        ]
        for raw, expected in cases:
            self.assertEqual(httpVersion(raw), expected, raw)


class UpgradeOfferTests(SynchronousTestCase):
    """
    When a request offers an upgrade at all (RFC 9110 §7.8).
    """

    def test_table(self) -> None:
        up = [b"upgrade"]
        cases: list[tuple[bytes, list[bytes], list[bytes], list[ProtocolToken]]] = [
            (b"HTTP/1.1", up, [b"foo/2"], [P("foo", "2")]),
            (b"HTTP/1.1", up, [b"a, b/1"], [P("a"), P("b", "1")]),
            # S29: a later HTTP/1.x is processed as 1.1.
            (b"HTTP/1.9", up, [b"foo/2"], [P("foo", "2")]),
            # S9: an HTTP/1.0 offer is ignored.
            (b"HTTP/1.0", up, [b"foo/2"], []),
            # H13: HTTP/2 has no Upgrade.
            (b"HTTP/2", up, [b"foo/2"], []),
            # S15: Upgrade without the upgrade connection option.
            (b"HTTP/1.1", [], [b"foo/2"], []),
            (b"HTTP/1.1", [b"keep-alive"], [b"foo/2"], []),
            # G1: an empty Upgrade offers nothing.
            (b"HTTP/1.1", up, [b""], []),
            (b"HTTP/1.1", up, [], []),
            # G2: garbage only.
            (b"HTTP/1.1", up, [b'foo/1/2, "x", /3'], []),
        ]
        for version, connection, upgrade, expected in cases:
            self.assertEqual(
                upgradeOffer(version=version, connection=connection, upgrade=upgrade),
                expected,
                (version, connection, upgrade),
            )


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = UpgradeRegistry()
        self.factory = Factory.forProtocol(Protocol)

    def names(self, offer: bytes) -> list[tuple[str, str]]:
        return [
            (str(offered), str(registration.token))
            for offered, registration in self.registry.candidates(parseUpgrade([offer]))
        ]

    def test_exactVersion(self) -> None:
        """
        Versions compare exactly; names case-insensitively (G3, G9).
        """
        self.registry.register("foo/2", self.factory)
        self.assertEqual(self.names(b"foo/2"), [("foo/2", "foo/2")])
        self.assertEqual(self.names(b"FOO/2"), [("FOO/2", "foo/2")])
        self.assertEqual(self.names(b"foo/3"), [])
        self.assertEqual(self.names(b"foo"), [])
        self.assertEqual(self.names(b"foo/2.0"), [])

    def test_versionlessServesAnyVersion(self) -> None:
        self.registry.register("TLS", self.factory)
        self.assertEqual(
            self.names(b"TLS/1.2, tls/1.0, TLS"),
            [("TLS/1.2", "TLS"), ("tls/1.0", "TLS"), ("TLS", "TLS")],
        )

    def test_exactBeatsVersionless(self) -> None:
        other = Factory.forProtocol(Protocol)
        self.registry.register("foo", self.factory)
        self.registry.register("foo/2", other)
        [(_, registration)] = self.registry.candidates([P("foo", "2")])
        self.assertIs(registration.target.factory, other)  # type: ignore[attr-defined]

    def test_clientOrder(self) -> None:
        """
        S4: by default the client's order of preference decides; an offer
        is tried once even if repeated.
        """
        self.registry.register("a", self.factory)
        self.registry.register("b", self.factory)
        self.assertEqual(self.names(b"b, a, B"), [("b", "b"), ("a", "a")])

    def test_serverOrder(self) -> None:
        registry = UpgradeRegistry(preferServerOrder=True)
        registry.register("a", self.factory)
        registry.register("b", self.factory)
        self.registry = registry
        self.assertEqual(self.names(b"b, c, a"), [("a", "a"), ("b", "b")])

    def test_onlyOffered(self) -> None:
        """
        S3: never a protocol the client did not offer.
        """
        self.registry.register("foo", self.factory)
        self.assertEqual(self.names(b"bar"), [])

    def test_tokensInRegistrationOrder(self) -> None:
        self.registry.register("websocket", self.factory)
        self.registry.register("foo/2", self.factory)
        self.registry.register("WebSocket", self.factory)  # replaces, keeps place
        self.assertEqual(self.registry.tokens(), [b"WebSocket", b"foo/2"])
        self.registry.unregister("websocket")
        self.assertEqual(self.registry.tokens(), [b"foo/2"])

    def test_upgradeValue(self) -> None:
        self.registry.register("websocket", self.factory)
        self.registry.register("TLS", self.factory)
        [(offered, registration)] = self.registry.candidates([P("WEBSOCKET")])
        self.assertEqual(registration.upgradeValue(offered), b"websocket")
        [(offered, registration)] = self.registry.candidates([P("tls", "1.2")])
        self.assertEqual(registration.upgradeValue(offered), b"TLS/1.2")

    def test_badRegistrations(self) -> None:
        self.assertRaises(ValueError, self.registry.register, "foo/1/2", self.factory)
        self.assertRaises(ValueError, self.registry.register, "", self.factory)
        self.assertRaises(TypeError, self.registry.register, "foo", object())
        self.assertRaises(KeyError, self.registry.unregister, "nope")


class OfferedTests(SynchronousTestCase):
    """
    L{UpgradeRegistry.offered}: L{upgradeOffer} then L{candidates} from a
    request's field lines, remembered between requests.
    """

    def setUp(self) -> None:
        self.registry = UpgradeRegistry()
        self.factory = Factory.forProtocol(Protocol)
        self.registry.register("a", self.factory)
        self.registry.register("b/2", self.factory)

    def offered(
        self, upgrade: bytes, connection: list[bytes] | None = None
    ) -> list[str]:
        found = self.registry.offered(
            b"HTTP/1.1",
            [b"Upgrade"] if connection is None else connection,
            [upgrade],
        )
        return [str(offered) for offered, _ in found]

    def test_sameAsUpgradeOfferThenCandidates(self) -> None:
        """
        The answer is the one L{upgradeOffer} and L{candidates} give, for
        every rule of the negotiation (S3, S4, S9, S15, G1, G2, G3).
        """
        up = [b"keep-alive, Upgrade"]
        cases = [
            (b"HTTP/1.1", up, [b"b/2, A"]),
            (b"HTTP/1.1", up, [b"b/3, c, a/1"]),
            (b"HTTP/1.0", up, [b"a"]),
            (b"HTTP/2", up, [b"a"]),
            (b"HTTP/1.1", None, [b"a"]),
            (b"HTTP/1.1", [b"close"], [b"a"]),
            (b"HTTP/1.1", up, [b""]),
            (b"HTTP/1.1", up, [b'a/1/2, "a", /2']),
            (b"HTTP/1.1", [b"x", b"upgrade"], [b"c", b"a"]),
        ]
        for version, connection, upgrade in cases:
            offer = upgradeOffer(
                version=version, connection=connection or [], upgrade=upgrade
            )
            expected = self.registry.candidates(offer)
            for _ in range(2):  # computed, then remembered
                self.assertEqual(
                    list(self.registry.offered(version, connection, upgrade)),
                    expected,
                    (version, connection, upgrade),
                )

    def test_followsRegistrations(self) -> None:
        """
        A remembered answer never outlives a change to the registry:
        registering, replacing, unregistering, or the order of preference.
        """
        self.assertEqual(self.offered(b"c, b/2, a"), ["b/2", "a"])
        self.registry.register("c", self.factory)
        self.assertEqual(self.offered(b"c, b/2, a"), ["c", "b/2", "a"])
        self.registry.preferServerOrder = True
        self.assertEqual(self.offered(b"c, b/2, a"), ["a", "b/2", "c"])
        self.registry.unregister("a")
        self.assertEqual(self.offered(b"c, b/2, a"), ["b/2", "c"])
        other = Factory.forProtocol(Protocol)
        self.registry.register("c", other)
        [(_, registration)] = self.registry.offered(b"HTTP/1.1", [b"upgrade"], [b"c"])
        self.assertEqual(registration.target.factory, other)  # type: ignore[attr-defined]
        self.assertEqual(
            self.offered(b"c", connection=[b"upgrade"]),
            self.offered(b"c", connection=[b"UPGRADE"]),
        )

    def test_copyDoesNotShare(self) -> None:
        self.assertEqual(self.offered(b"c, a"), ["a"])
        copied = self.registry.copy()
        copied.register("c", self.factory)
        self.assertEqual(self.offered(b"c, a"), ["a"])
        self.assertEqual(
            [str(o) for o, _ in copied.offered(b"HTTP/1.1", [b"upgrade"], [b"c, a"])],
            ["c", "a"],
        )

    def test_memoryBounded(self) -> None:
        """
        The field values are the client's: long ones are not remembered,
        and short ones only up to a bound, however many a client invents.
        """
        long = b"a, " + b"x" * 300
        self.assertEqual(self.offered(long), ["a"])
        self.assertEqual(self.registry._offers, {})
        manyLines = self.registry.offered(
            b"HTTP/1.1", [b"upgrade"], [b""] * 500 + [b"a"]
        )
        self.assertEqual([str(offered) for offered, _ in manyLines], ["a"])
        self.assertEqual(self.registry._offers, {})
        for index in range(2000):
            self.assertEqual(self.offered(b"a, x%d" % (index,)), ["a"])
            self.assertLessEqual(len(self.registry._offers), 256)
