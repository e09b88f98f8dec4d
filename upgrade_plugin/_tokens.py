"""
RFC 9110 grammar for the fields that drive an upgrade: pure functions, no I/O.

From RFC 9110::

    Upgrade           = #protocol                        ; section 7.8
    protocol          = protocol-name ["/" protocol-version]
    protocol-name     = token
    protocol-version  = token
    Connection        = #connection-option               ; section 7.6.1
    connection-option = token
    token             = 1*tchar                          ; section 5.6.2
    tchar             = "!" / "#" / "$" / "%" / "&" / "'" / "*"
                      / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
                      / DIGIT / ALPHA

"Several field lines with the same name" form one comma-joined list
(section 5.3), and a recipient ignores empty list elements (section 5.6.1.2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ProtocolToken",
    "connectionOptions",
    "hasConnectionOption",
    "httpVersion",
    "isToken",
    "listMembers",
    "parseProtocol",
    "parseUpgrade",
]

_TCHARS = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TCHARS + rb"\Z")
_PROTOCOL = re.compile(rb"(" + _TCHARS + rb")(?:/(" + _TCHARS + rb"))?\Z")
_OWS = b" \t"
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")


def isToken(value: bytes) -> bool:
    """
    Is C{value} an RFC 9110 §5.6.2 C{token}?
    """
    return _TOKEN.match(value) is not None


@dataclass(frozen=True, kw_only=True)
class ProtocolToken:
    """
    One C{protocol} element of an C{Upgrade} field (RFC 9110 §7.8).

    @ivar name: the protocol-name as written (its case is kept for echoing).
    @ivar version: the protocol-version, or L{None}; compared exactly.
    """

    name: str
    version: str | None = None

    @property
    def key(self) -> str:
        """
        The protocol-name folded for comparison: names are case-insensitive
        (RFC 9110 §7.8, "recipients SHOULD ... compare ... case-insensitively").
        """
        return self.name.lower()

    def __str__(self) -> str:
        if self.version is None:
            return self.name
        return f"{self.name}/{self.version}"

    def toBytes(self) -> bytes:
        """
        The element as it goes on the wire.
        """
        return str(self).encode("ascii")


def listMembers(values: Iterable[bytes]) -> list[bytes]:
    """
    Split every line of a C{#element} field into its members, in order.

    Members are separated by C{","} with optional whitespace around them;
    empty members are dropped (RFC 9110 §5.6.1.2), and lines are joined as if
    they had been one comma-separated line (RFC 9110 §5.3).
    """
    members = []
    for line in values:
        for member in line.split(b","):
            member = member.strip(_OWS)
            if member:
                members.append(member)
    return members


def parseProtocol(member: bytes) -> ProtocolToken | None:
    """
    Parse one C{Upgrade} member, or return L{None} if it is not a valid
    C{protocol} (C{foo/1/2}, C{foo/}, C{/1}, a quoted string...): those are
    ignored rather than failing the request (RFC 9110 §7.8, §5.6.2).
    """
    match = _PROTOCOL.match(member)
    if match is None:
        return None
    name, version = match.groups()
    return ProtocolToken(
        name=name.decode("ascii"),
        version=None if version is None else version.decode("ascii"),
    )


def parseUpgrade(values: Sequence[bytes]) -> list[ProtocolToken]:
    """
    The valid protocols offered by all C{Upgrade} lines, in the client's
    order of preference (RFC 9110 §7.8: "listed in descending preference").
    """
    protocols = []
    for member in listMembers(values):
        protocol = parseProtocol(member)
        if protocol is not None:
            protocols.append(protocol)
    return protocols


def hasConnectionOption(values: Iterable[bytes], option: bytes) -> bool:
    """
    Do the C{Connection} lines list C{option} (lower-case)? Options are
    case-insensitive (RFC 9110 §7.6.1); a member that is not a token cannot
    be equal to one, so no further check is needed.
    """
    for line in values:
        for member in line.split(b","):
            if member.strip(_OWS).lower() == option:
                return True
    return False


def connectionOptions(values: Iterable[bytes]) -> frozenset[bytes]:
    """
    The lower-cased connection options of all C{Connection} lines
    (RFC 9110 §7.6.1: "Connection options are case-insensitive").
    Members that are not tokens are ignored.
    """
    return frozenset(m.lower() for m in listMembers(values) if isToken(m))


def httpVersion(version: bytes) -> tuple[int, int] | None:
    """
    Parse C{HTTP/x.y} (case-sensitive, RFC 9112 §2.3) into C{(x, y)}, or
    return L{None} for anything else (including C{HTTP/2} from an HTTP/2
    stream).
    """
    if version == b"HTTP/1.1":
        return (1, 1)
    match = _VERSION.match(version)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))
