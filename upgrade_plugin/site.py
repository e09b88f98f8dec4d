"""
L{UpgradeSite}: a twisted.web L{Site} that sees upgrade offers for the
whole connection before resource traversal.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import EncodingResourceWrapper, IResource, Resource
from twisted.web.server import Site

from ._registry import UpgradeRegistry
from ._switch import asteriskAware, upgradeSiteChannelFactory
from .h2c import H2CUpgrade
from .resource import UpgradeResource

__all__ = ["UpgradeSite", "upgradeLogFormatter"]


def upgradeLogFormatter(timestamp: str, request: Any) -> str:
    """
    Twisted's combined log format, plus C{upgrade="..."} on requests that
    switched protocols: the value of the 101's C{Upgrade} (for example
    C{websocket}, C{h2c}, C{TLS/1.2, HTTP/1.1}). Give it to any L{Site} as
    C{logFormatter}; L{UpgradeSite} uses it by default.
    """
    line: str = combinedLogFormatter(timestamp, request)
    upgraded: bytes | None = getattr(request, "upgradedTo", None)
    if upgraded is None:
        return line
    return line + ' upgrade="' + upgraded.decode("ascii", "replace") + '"'


class _AsteriskForm(Resource):
    """
    The server itself, as in C{OPTIONS *} (RFC 9112 §3.2.4): what
    twisted.web answers for it when nothing is upgraded (an empty 200; 405
    for other methods), so that an upgrade on it (RFC 2817 §3.2) can end in a
    final answer in the new protocol.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        if request.method != b"OPTIONS":
            request.setResponseCode(405)
            request.setHeader(b"allow", b"OPTIONS")
        request.setHeader(b"content-length", b"0")
        return b""


_ASTERISK = _AsteriskForm()


def _upgradeAsterisk(request: Any) -> bool:
    """
    Offer C{OPTIONS *} (which twisted.web answers itself, never traversing
    resources) to the site's registry; C{True} if it was handled.
    """
    site = request.site
    if not (len(site.upgradeRegistry) and request.requestHeaders.hasHeader(b"upgrade")):
        return False
    request.postpath = []
    request.render(
        UpgradeResource(
            site.upgradeRegistry,
            _ASTERISK,
            logDecisions=site.logDecisions,
            maxBodySize=site._maxBodySize,
        )
    )
    return True


class UpgradeSite(Site):
    """
    A L{Site} whose C{registry} applies to every request on the connection,
    before resource traversal: for protocols that belong to the connection
    rather than a path (h2c, TLS), and for C{OPTIONS *}, which never reaches
    a resource.

    Requests that are not upgraded are served exactly as by L{Site}, through
    the same resources (an L{UpgradeResource} among them keeps serving its
    own path's protocols). When a request offers both one of the
    L{UpgradeResource} protocols of its path and one of the site's, the
    path's resource decides alone: its protocols come first.

    @param resource: the root resource.
    @param registry: connection-wide upgrade targets; may be empty. The site
        keeps a copy (as C{upgradeRegistry}), so enabling h2c here does not
        enable it on other sites given the same registry.
    @param h2c: accept h2c upgrades (L{H2CUpgrade}) and HTTP/2 with prior
        knowledge on this site's HTTP/1.1 listeners. Off by default: RFC 9113
        §3.1 deprecates h2c, and see L{upgrade_plugin.h2c} on smuggling.
    @param h2cMaxBodySize: see L{H2CUpgrade}.
    @param logDecisions: see L{UpgradeResource}.
    @param siteArguments: anything else L{Site} takes (C{timeout},
        C{logPath}, C{reactor}...); C{logFormatter} defaults to
        L{upgradeLogFormatter}.
    """

    def __init__(
        self,
        resource: IResource,
        registry: UpgradeRegistry | None = None,
        *,
        h2c: bool = False,
        h2cMaxBodySize: int = 64 * 1024,
        logDecisions: bool = False,
        **siteArguments: Any,
    ) -> None:
        siteArguments.setdefault("logFormatter", upgradeLogFormatter)
        super().__init__(resource, **siteArguments)
        # What super().getResourceFor is for this instance, found once.
        self._traverse = super().getResourceFor
        if "requestFactory" not in vars(self):
            self.requestFactory = type(self).requestFactory
        # The site's own copy: h2c, which belongs to this site only, must
        # not leak into a registry the caller shares with other sites.
        self.upgradeRegistry = (
            registry.copy() if registry is not None else UpgradeRegistry()
        )
        self.h2c = h2c
        self.logDecisions = logDecisions
        # Bodies up to h2c's own limit reach H2CUpgrade (UpgradeResource's
        # default would cut them at 1 MiB).
        self._maxBodySize = max(1024 * 1024, h2cMaxBodySize)
        if type(self).protocol is Site.protocol:
            # Answers what can never be a request at once, and (with h2c)
            # takes HTTP/2 with prior knowledge (RFC 9113 §3.3) on the same
            # port. A subclass's own protocol is kept.
            self.protocol = upgradeSiteChannelFactory  # type: ignore[method-assign]
        if h2c:
            self.upgradeRegistry.register(
                "h2c", H2CUpgrade(self, maxBodySize=h2cMaxBodySize)
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "requestFactory":
            # Whenever it is set: OPTIONS * goes to the registry first.
            value = asteriskAware(value, _upgradeAsterisk)
        super().__setattr__(name, value)

    def getResourceFor(self, request: Any) -> Any:
        # On every request: no super() object (the method it finds is kept),
        # and the cheapest test first (most requests send no Upgrade).
        target = self._traverse(request)
        headers = request.requestHeaders
        if headers.hasHeader(b"upgrade") and len(self.upgradeRegistry):
            # Seen through gzip (an EncodingResourceWrapper proxies its
            # resource as .original).
            path = (
                target.original
                if isinstance(target, EncodingResourceWrapper)
                else target
            )
            if isinstance(path, UpgradeResource) and path.registry.offered(
                request.clientproto,
                headers.getRawHeaders(b"connection"),
                headers.getRawHeaders(b"upgrade", []),
            ):
                # The path's own protocols come first, whatever the order of
                # the offer: they are what the application serves there, and
                # switching the connection (h2c, TLS) instead would answer
                # the request with the path's 426 in the new protocol.
                return target
            return UpgradeResource(
                self.upgradeRegistry,
                target,
                logDecisions=self.logDecisions,
                maxBodySize=self._maxBodySize,
            )
        return target
