"""
Whether a request offers an upgrade, and to what: pure functions over the
request line and header fields (RFC 9110 §7.8, §7.6.1).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._tokens import ProtocolToken, hasConnectionOption, httpVersion, parseUpgrade

__all__ = ["upgradeOffer"]


def upgradeOffer(
    *,
    version: bytes,
    connection: Sequence[bytes],
    upgrade: Sequence[bytes],
) -> list[ProtocolToken]:
    """
    The protocols a request offers to upgrade to, in the client's order of
    preference; empty when it offers none.

    @param version: the request's HTTP-version, e.g. C{b"HTTP/1.1"}.
    @param connection: every C{Connection} field line.
    @param upgrade: every C{Upgrade} field line.

    An offer needs all of:
      - HTTP/1.1 or a later 1.x: "A server MUST ignore an Upgrade header
        field that is received in an HTTP/1.0 request" (RFC 9110 §7.8), and
        HTTP/2 has no Upgrade (RFC 9113 §8.6);
      - the C{upgrade} connection option, since C{Upgrade} is a
        connection-specific field (RFC 9110 §7.6.1, §7.8);
      - at least one valid protocol in C{Upgrade}; invalid members are
        skipped (RFC 9110 §5.6.2).
    """
    if not upgrade:
        return []
    parsed = httpVersion(version)
    if parsed is None or parsed[0] != 1 or parsed[1] < 1:
        return []
    if not hasConnectionOption(connection, b"upgrade"):
        return []
    return parseUpgrade(upgrade)
