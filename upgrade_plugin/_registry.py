"""
L{UpgradeRegistry}: upgrade tokens mapped to the targets that serve them.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.interfaces import IProtocol, IProtocolFactory
from zope.interface import implementer

from ._interfaces import Accept, Decision, Decline, IUpgradeTarget, UpgradeRequest
from ._negotiate import upgradeOffer
from ._tokens import ProtocolToken, parseProtocol

__all__ = ["ProtocolFactoryTarget", "Registration", "UpgradeRegistry"]


@implementer(IUpgradeTarget)
class ProtocolFactoryTarget:
    """
    Adapts a plain L{IProtocolFactory} to L{IUpgradeTarget}: every offer is
    accepted with C{factory.buildProtocol(peer)}, whatever the method (the
    protocol learns the request through L{IUpgradeAware} and answers it),
    except HEAD; a factory that returns L{None} (Twisted's way of refusing a
    connection) declines.

    The factory's C{doStart}/C{doStop} are not called: the protocols it
    builds arrive on connections that some other factory accepted.
    """

    def __init__(self, factory: IProtocolFactory) -> None:
        self.factory = factory

    def upgradeRequested(self, request: UpgradeRequest) -> Decision:
        protocol = self.protocolFor(request.method, request.peer)
        if protocol is None:
            return Decline()
        return Accept(protocol=protocol)

    def protocolFor(self, method: bytes, peer: object) -> IProtocol | None:
        """
        The protocol to switch a C{method} request from C{peer} to, or
        L{None} to decline: L{UpgradeResource} calls this directly, so that
        no L{UpgradeRequest} is made unless the protocol asks for one.
        """
        if method == b"HEAD":
            # RFC 9110 §7.8: a switch must honour the request's semantics,
            # and a HEAD's answer has no content to continue in.
            return None
        protocol: IProtocol | None = self.factory.buildProtocol(peer)  # type: ignore[arg-type]
        return protocol

    def __repr__(self) -> str:
        return f"ProtocolFactoryTarget({self.factory!r})"


class Registration:
    """
    One registered token and its target.

    @ivar token: the token as registered; its spelling is the one the 101
        echoes (RFC 9110 §16.7: tokens are registered in a preferred case).
    """

    __slots__ = ("_value", "target", "token")

    def __init__(self, token: ProtocolToken, target: IUpgradeTarget) -> None:
        self.token = token
        self.target = target
        self._value = token.toBytes()

    def upgradeValue(self, offered: ProtocolToken) -> bytes:
        """
        The C{Upgrade} value of a 101 that accepts C{offered} through this
        registration: the registered spelling, with the offered version when
        the registration names none.
        """
        if self.token.version is not None or offered.version is None:
            return self._value
        return ProtocolToken(name=self.token.name, version=offered.version).toBytes()

    def __repr__(self) -> str:
        return f"Registration({self.token!r}, {self.target!r})"


_Candidates = tuple[tuple[ProtocolToken, Registration], ...]
_FieldValues = tuple[bytes, bytes | tuple[bytes, ...], bytes | tuple[bytes, ...]]
# Remember offers only while their fields are short and few: they are the
# client's, and the memory is the server's.
_CACHED_FIELDS = 256
_CACHED_LINES = 8
_CACHED_OFFERS = 256


def _target(target: object) -> IUpgradeTarget:
    if IUpgradeTarget.providedBy(target):
        return target
    if IProtocolFactory.providedBy(target):
        return ProtocolFactoryTarget(target)
    raise TypeError(f"{target!r} provides neither IUpgradeTarget nor IProtocolFactory")


class UpgradeRegistry:
    """
    The protocols a server is willing to upgrade to.

    Tokens are C{name} or C{name/version} (RFC 9110 §7.8). Names compare
    case-insensitively, versions exactly: C{foo/2} serves an offer of
    C{FOO/2} but not C{foo/3} or a bare C{foo}. A token registered without
    a version serves an offer of that name with any version or none (so
    C{TLS} serves C{TLS/1.2}); an exact registration is preferred over it.

    The order of registration is the server's order of preference: it is the
    order of C{Upgrade} in a 426 or an advertisement (RFC 9110 §15.5.22
    "descending preference"), and the order of choice when
    C{preferServerOrder} is set. By default the client's order decides
    (RFC 9110 §7.8 lets the server choose either way).
    """

    def __init__(self, *, preferServerOrder: bool = False) -> None:
        self._preferServerOrder = preferServerOrder
        self._registrations: dict[tuple[str, str | None], Registration] = {}
        self._offers: dict[_FieldValues, _Candidates] = {}

    @property
    def preferServerOrder(self) -> bool:
        """
        Choose among the offered protocols in this registry's order rather
        than the client's.
        """
        return self._preferServerOrder

    @preferServerOrder.setter
    def preferServerOrder(self, value: bool) -> None:
        self._preferServerOrder = value
        self._offers.clear()

    def register(self, token: str, target: object) -> None:
        """
        Serve upgrades to C{token} with C{target}: an L{IUpgradeTarget}, or
        any L{IProtocolFactory}. Registering a token again replaces its
        target and keeps its place in the order of preference.

        @raise ValueError: if C{token} is not C{token ["/" token]}.
        """
        parsed = parseProtocol(token.encode("ascii", "replace"))
        if parsed is None:
            raise ValueError(f"not an upgrade token: {token!r}")
        key = (parsed.key, parsed.version)
        self._registrations[key] = Registration(parsed, _target(target))
        self._offers.clear()

    def unregister(self, token: str) -> None:
        """
        Stop serving C{token}.

        @raise KeyError: if it was not registered.
        """
        parsed = parseProtocol(token.encode("ascii", "replace"))
        if parsed is None:
            raise KeyError(token)
        del self._registrations[(parsed.key, parsed.version)]
        self._offers.clear()

    def copy(self) -> UpgradeRegistry:
        """
        A new registry with the same registrations and order.
        """
        copied = UpgradeRegistry(preferServerOrder=self._preferServerOrder)
        copied._registrations = dict(self._registrations)
        return copied

    def tokens(self) -> list[bytes]:
        """
        The registered tokens in descending preference, as they go in an
        C{Upgrade} field.
        """
        return [r._value for r in self._registrations.values()]

    def lookup(self, offered: ProtocolToken) -> Registration | None:
        """
        The registration that serves C{offered}, if any.
        """
        registrations = self._registrations
        return registrations.get((offered.key, offered.version)) or registrations.get(
            (offered.key, None)
        )

    def candidates(
        self, offered: list[ProtocolToken]
    ) -> list[tuple[ProtocolToken, Registration]]:
        """
        The offered protocols this registry serves, each with its
        registration, in the order they are to be tried. Only offered
        protocols are ever returned (RFC 9110 §7.8: a server MUST NOT switch
        to a protocol that was not indicated by the client).
        """
        if len(offered) == 1:
            # The usual offer: one protocol.
            registration = self.lookup(offered[0])
            return [] if registration is None else [(offered[0], registration)]
        found = []
        seen = set()
        for protocol in offered:
            registration = self.lookup(protocol)
            key = (protocol.key, protocol.version)
            if registration is not None and key not in seen:
                seen.add(key)
                found.append((protocol, registration))
        if self._preferServerOrder:
            order = {id(r): i for i, r in enumerate(self._registrations.values())}
            found.sort(key=lambda pair: order[id(pair[1])])
        return found

    def offered(
        self,
        version: bytes,
        connection: Sequence[bytes] | None,
        upgrade: Sequence[bytes],
    ) -> _Candidates:
        """
        L{candidates} for a request's HTTP-version and C{Connection} and
        C{Upgrade} field lines (see L{upgradeOffer}), remembered for the
        next request that sends the same short fields: clients send the
        same few values again and again. The memory is cleared whenever
        the registry changes; a subclass whose L{candidates} answers
        differently over time should override this too.
        """
        connection = connection or ()
        # Each field is usually one line: keyed by the line itself, which
        # never equals a tuple of lines.
        key = (
            version,
            connection[0] if len(connection) == 1 else tuple(connection),
            upgrade[0] if len(upgrade) == 1 else tuple(upgrade),
        )
        found = self._offers.get(key)
        if found is None:
            offer = upgradeOffer(
                version=version, connection=connection, upgrade=upgrade
            )
            found = tuple(self.candidates(offer))
            if (
                len(connection) + len(upgrade) <= _CACHED_LINES
                and sum(map(len, connection)) + sum(map(len, upgrade)) <= _CACHED_FIELDS
            ):
                if len(self._offers) >= _CACHED_OFFERS:
                    self._offers.clear()
                self._offers[key] = found
        return found

    def __len__(self) -> int:
        return len(self._registrations)
