"""
RFC 2817: upgrading to TLS within HTTP/1.1.

    registry.register("TLS", TLSUpgrade(contextFactory))

A client offers C{Upgrade: TLS/1.2,TLS/1.1,TLS/1.0} with C{Connection:
Upgrade}; the server answers C{101 Switching Protocols} with C{Upgrade:
TLS/1.2, HTTP/1.1}, starts TLS on the same connection, and answers the
original request inside TLS (§3.3); the HTTP/1.1 connection goes on there.
A mandatory upgrade rides on C{OPTIONS *} (§3.2), which L{UpgradeSite}
routes to its registry. L{RequireTLS} marks resources as TLS-only (§4.2).
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from ._interfaces import (
    AcceptTLS,
    Decision,
    Decline,
    IUpgradeTarget,
    UpgradeRequest,
    checkHandshakeTimeout,
)
from ._registry import UpgradeRegistry
from ._switch import useEncoding
from .resource import UpgradeResource, upgradeRequired

__all__ = [
    "RequireTLS",
    "RequireTLSPaths",
    "TLSUpgrade",
    "contextFactoryFromFiles",
    "contextVersions",
]

# Newest first.
_PROTOCOL_VERSIONS = [
    ("1.3", SSL.TLS1_3_VERSION),
    ("1.2", SSL.TLS1_2_VERSION),
    ("1.1", SSL.TLS1_1_VERSION),
    ("1.0", SSL.TLS1_VERSION),
]


def contextFactoryFromFiles(certificate: str, privateKey: str | None = None) -> Any:
    """
    A server context factory from PEM files: the certificate (with its
    chain), and the key (default: in the certificate's file).

    @raise OSError: if a file cannot be read.
    @raise ValueError: naming the files, if they are not a certificate and
        its private key.
    """
    with open(certificate, "rb") as f:
        certificatePEM = pem = f.read()
    names = certificate
    if privateKey is not None and privateKey != certificate:
        with open(privateKey, "rb") as f:
            pem += b"\n" + f.read()
        names = f"{certificate} and {privateKey}"
    try:
        private = ssl.PrivateCertificate.loadPEM(pem)
        # The certificates after the first (a "fullchain" file) are the
        # chain the server sends along.
        chain = [
            crypto.X509.from_cryptography(c)
            for c in x509.load_pem_x509_certificates(certificatePEM)[1:]
        ]
        return ssl.CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            extraCertChain=chain or None,
        )
    except Exception as error:
        raise ValueError(
            f"{names}: not a PEM certificate and its private key ({error})"
        ) from None


def _handshakes(contextFactory: Any, version: int) -> bool:
    """
    Does a server context from C{contextFactory} complete a handshake, in
    memory, with a client that speaks only C{version}?
    """
    client = SSL.Context(SSL.TLS_METHOD)
    client.set_min_proto_version(version)
    client.set_max_proto_version(version)
    client.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    clientConnection = SSL.Connection(client, None)
    clientConnection.set_connect_state()
    serverConnection = SSL.Connection(contextFactory.getContext(), None)
    serverConnection.set_accept_state()
    done = set()
    for _ in range(6):
        for connection, peer in (
            (clientConnection, serverConnection),
            (serverConnection, clientConnection),
        ):
            try:
                connection.do_handshake()
                done.add(id(connection))
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return False
            with contextlib.suppress(SSL.WantReadError):
                peer.bio_write(connection.bio_read(65536))
        if len(done) == 2:
            return True
    return False


def contextVersions(contextFactory: Any) -> list[str]:
    """
    The TLS versions a server context from C{contextFactory} completes a
    handshake with, newest first. They are tried in memory, so every way of
    limiting them counts: options, minimum and maximum versions, the
    system's OpenSSL policy.
    """
    return [
        version
        for version, protocol in _PROTOCOL_VERSIONS
        if _handshakes(contextFactory, protocol)
    ]


@implementer(IUpgradeTarget)
class TLSUpgrade:
    """
    Upgrade a cleartext HTTP/1.1 connection to TLS (RFC 2817), registered
    under C{TLS}.

    The first offered C{TLS/x.y} (or a bare C{TLS}) that the context speaks
    is accepted; offers on a connection that is already TLS are declined.

    @param contextFactory: a server TLS context factory, such as
        L{twisted.internet.ssl.CertificateOptions}; see
        L{contextFactoryFromFiles}.
    @param versions: the C{x.y} versions to accept, newest first; by
        default those the context has not disabled.
    @param handshakeTimeout: see L{AcceptTLS}.
    """

    def __init__(
        self,
        contextFactory: Any,
        *,
        versions: list[str] | None = None,
        handshakeTimeout: float | None = 30.0,
    ) -> None:
        checkHandshakeTimeout(handshakeTimeout)
        self.contextFactory = contextFactory
        self.handshakeTimeout = handshakeTimeout
        self.versions = (
            versions if versions is not None else contextVersions(contextFactory)
        )
        if not self.versions:
            raise ValueError("the TLS context completes no handshake: no version")

    def requiredUpgrade(self) -> bytes:
        """
        The C{Upgrade} value of a 426 (RFC 2817 §4.2): the oldest version
        accepted (the one most clients can reach; the handshake still picks
        the best both speak), layered under HTTP/1.1.
        """
        return _layered(self.versions[-1])

    def upgradeRequested(self, request: UpgradeRequest) -> Decision:
        if request.secure:
            return Decline()
        offered = request.protocol.version
        if offered is None:
            offered = self.versions[-1]
        elif offered not in self.versions:
            return Decline()
        return AcceptTLS(
            contextFactory=self.contextFactory,
            upgrade=_layered(offered),
            handshakeTimeout=self.handshakeTimeout,
        )


def _layered(version: str) -> bytes:
    """
    TLS C{version} under HTTP/1.1, layers bottom-up (RFC 9110 §7.8,
    RFC 2817 §3.3).
    """
    return b"TLS/%s, HTTP/1.1" % (version.encode("ascii"),)


class _SecureOnly(Resource):
    """
    C{resource} on a TLS connection; 426 naming TLS otherwise.
    """

    isLeaf = True

    def __init__(self, resource: IResource, upgrade: TLSUpgrade) -> None:
        super().__init__()
        self.resource = resource
        self.upgrade = upgrade

    def render(self, request: Any) -> Any:
        if request.isSecure():
            useEncoding(request, self.resource)
            return self.resource.render(request)
        return upgradeRequired(
            request,
            self.upgrade.requiredUpgrade(),
            b"426 Upgrade Required: this resource is served over TLS only. "
            b"Upgrade this connection (RFC 2817) or use https.\n",
        )


class RequireTLS(Resource):
    """
    Serve C{resource} (and its children) over TLS only (RFC 2817 §4.2).

    On a TLS connection (an C{ssl:} listener, or one upgraded before) the
    resource is served as usual. On cleartext, an offer of TLS is accepted
    and the request answered inside TLS; anything else gets C{426 Upgrade
    Required} with C{Upgrade: TLS/x.y, HTTP/1.1}, C{Connection: Upgrade} and
    a short body, and the connection stays open.
    """

    def __init__(self, resource: IResource, upgrade: TLSUpgrade) -> None:
        super().__init__()
        self.resource = resource
        self.upgrade = upgrade
        registry = UpgradeRegistry()
        registry.register("TLS", upgrade)
        self._upgrading = UpgradeResource(registry, _SecureOnly(resource, upgrade))
        self.isLeaf = bool(getattr(resource, "isLeaf", False))

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        child = self.resource.getChildWithDefault(path, request)
        return RequireTLS(child, self.upgrade)

    def render(self, request: Any) -> Any:
        return self._upgrading.render(request)


def _normalizedPath(path: bytes) -> list[bytes]:
    """
    The segments of a request path as a file system sees them: decoded
    (C{%2F} is a separator, C{%2E} a dot), without empty and C{.} segments,
    with C{..} applied (RFC 3986 §5.2.4).
    """
    segments: list[bytes] = []
    for raw in path.split(b"?", 1)[0].split(b"/"):
        for segment in unquote_to_bytes(raw).split(b"/"):
            if segment in (b"", b"."):
                continue
            if segment == b"..":
                if segments:
                    segments.pop()
                continue
            segments.append(segment)
    return segments


class RequireTLSPaths(Resource):
    """
    Serve C{root}, with the subtrees under C{paths} TLS-only as by
    L{RequireTLS}.

    Which requests are protected is decided on the whole request path
    before traversal, read two ways: as the segments twisted.web walks
    (C{/admin/..} reaches C{admin}, and so does C{xadmin}: the first byte is
    dropped whatever it is), and normalised as a file system would see it
    (a L{twisted.web.static.File} tree answers C{/./admin} or C{/admin%2F}
    as C{/admin}). A request that either reading puts under a protected
    path is protected. C{root} is the site's root.

    @param paths: path segments, e.g. C{[[b"admin"], [b"api", b"v1"]]}.
    """

    def __init__(
        self, root: IResource, upgrade: TLSUpgrade, paths: list[list[bytes]]
    ) -> None:
        super().__init__()
        self.root = root
        self.upgrade = upgrade
        self.paths = [tuple(s for s in path if s) for path in paths]
        self.isLeaf = bool(getattr(root, "isLeaf", False))

    def _protected(self, request: Any) -> bool:
        # Both readings of the path: the segments twisted.web walks (it drops
        # the first byte, whatever it is, and keeps ".."), and the path as a
        # file system resolves it.
        walked = tuple(map(unquote_to_bytes, request.path[1:].split(b"/")))
        normalized = tuple(_normalizedPath(request.path))
        return any(
            walked[: len(path)] == path or normalized[: len(path)] == path
            for path in self.paths
        )

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        child: IResource = self.root.getChildWithDefault(path, request)
        if self._protected(request):
            return RequireTLS(child, self.upgrade)
        return child

    def render(self, request: Any) -> Any:
        if self._protected(request):
            return RequireTLS(self.root, self.upgrade).render(request)
        return self.root.render(request)
