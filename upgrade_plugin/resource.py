"""
L{UpgradeResource}: HTTP/1.1 Upgrade at any path of an existing twisted.web
site.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import NOT_DONE_YET

from ._interfaces import (
    Accept,
    AcceptTLS,
    Decision,
    Decline,
    IUpgradeAware,
    Reject,
    UpgradeRequest,
)
from ._registry import ProtocolFactoryTarget, Registration, UpgradeRegistry
from ._switch import (
    canStartTLS,
    canSwitch,
    isAnswered,
    isSecure,
    requestBody,
    startTLS,
    switchProtocol,
    useEncoding,
)
from ._tokens import ProtocolToken, httpVersion

__all__ = ["UpgradeResource"]

# A module-level logger: a Logger class attribute is a descriptor that makes
# a new Logger on every access, on the hot path.
_log = Logger(namespace="upgrade_plugin.resource.UpgradeResource")

_Candidates = Sequence[tuple[ProtocolToken, Registration]]
_Rendered = Any  # bytes, or NOT_DONE_YET (an int)


def _addConnectionUpgrade(request: Request) -> None:
    """
    A sender of C{Upgrade} also sends the C{upgrade} connection option
    (RFC 9110 §7.8), next to whatever twisted.web put there (C{close}).
    """
    existing = request.responseHeaders.getRawHeaders(b"connection", [])
    request.responseHeaders.setRawHeaders(
        b"connection", [b", ".join([*existing, b"Upgrade"])]
    )


def _isHTTP1(request: Request, minor: int = 0) -> bool:
    """
    Is C{request} HTTP/1.C{minor} or a later 1.x (not HTTP/2, where
    C{Upgrade} and C{Connection} are forbidden, RFC 9113 §8.2.2)?
    """
    version = httpVersion(request.clientproto)
    return version is not None and version[0] == 1 and version[1] >= minor


class UpgradeResource(Resource):
    """
    Upgrade requests that offer a protocol in C{registry}; answer the rest
    with C{fallback}.

    A request is upgraded when it is HTTP/1.1 (or a later 1.x), carries the
    C{upgrade} connection option, and offers in C{Upgrade} a protocol whose
    target accepts it; the offers are tried in the client's order (or the
    registry's, see L{UpgradeRegistry}). Anything else, including requests
    that arrive over HTTP/2, is rendered by C{fallback} as if no upgrade had
    been offered. Without a fallback such requests get
    C{426 Upgrade Required} naming the registry's tokens (RFC 9110
    §15.5.22), and the connection stays open.

    @param registry: the protocols to upgrade to.
    @param fallback: the resource for requests that are not upgraded; its
        children are this resource's children.
    @param advertise: add C{Upgrade} (and C{Connection: Upgrade}) to the
        fallback's HTTP/1.1 responses, to tell clients what a future request
        could switch to (RFC 9110 §7.8 MAY).
    @param maxBodySize: a request with a longer body is not offered to the
        targets (its body would be handed over in memory): it is answered as
        if it offered nothing.
    @param logDecisions: emit a debug event for every accepted or declined
        offer, not only the info event for a rejected one. Off by default:
        Twisted's log pipeline costs several microseconds per event, and the
        access log line already records each upgrade.
    """

    def __init__(
        self,
        registry: UpgradeRegistry,
        fallback: IResource | None = None,
        *,
        advertise: bool = False,
        maxBodySize: int = 1024 * 1024,
        logDecisions: bool = False,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.fallback = fallback
        self.advertise = advertise
        self.maxBodySize = maxBodySize
        self.logDecisions = logDecisions
        self.isLeaf = fallback is None or bool(getattr(fallback, "isLeaf", False))

    def putChild(self, path: bytes, child: IResource) -> None:
        """
        Put C{child} at C{path} below this resource, in front of the
        fallback's children; with children this resource is no longer a
        leaf.
        """
        super().putChild(path, child)
        self.isLeaf = False

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        own: IResource | None = self.children.get(path)
        if own is not None:
            return own
        if self.fallback is None:
            # Without children this resource is a leaf: it answers for the
            # paths below it, and still does beside its children.
            return self
        child: IResource = self.fallback.getChildWithDefault(path, request)
        return child

    def render(self, request: Any) -> _Rendered:
        headers = request.requestHeaders
        upgrade = headers.getRawHeaders(b"upgrade")
        if upgrade is not None:
            candidates = self.registry.offered(
                request.clientproto, headers.getRawHeaders(b"connection"), upgrade
            )
            if candidates and canSwitch(request):
                body = requestBody(request, self.maxBodySize)
                if body is not None:
                    return self._tryFrom(request, candidates, 0, body)
        return self._renderFallback(request)

    def _tryFrom(
        self, request: Request, candidates: _Candidates, index: int, body: bytes
    ) -> _Rendered:
        """
        Ask the targets of C{candidates[index:]} in turn until one does not
        decline.
        """
        while index < len(candidates):
            offered, registration = candidates[index]
            target = registration.target
            if type(target) is ProtocolFactoryTarget:
                # A plain factory decides on the method alone: no
                # UpgradeRequest is made unless its protocol asks for one.
                try:
                    protocol = target.protocolFor(
                        request.method, request.getClientAddress()
                    )
                except Exception:
                    return self._serverError(
                        request, Failure(), _snapshot(request, offered, body)
                    )
                if protocol is not None:
                    upgradeRequest = None
                    if self.logDecisions or IUpgradeAware.providedBy(protocol):
                        upgradeRequest = _snapshot(request, offered, body)
                    switchProtocol(
                        request,
                        protocol,
                        upgrade=registration.upgradeValue(offered),
                        headers=(),
                        upgradeRequest=upgradeRequest,
                    )
                    if self.logDecisions and upgradeRequest is not None:
                        self._outcome(LogLevel.debug, "accepted", upgradeRequest)
                    return NOT_DONE_YET
                if self.logDecisions:
                    self._outcome(
                        LogLevel.debug, "declined", _snapshot(request, offered, body)
                    )
                index += 1
                continue
            upgradeRequest = _snapshot(request, offered, body)
            try:
                decision = target.upgradeRequested(upgradeRequest)
            except Exception:
                return self._serverError(request, Failure(), upgradeRequest)
            if isinstance(decision, Deferred):
                self._whenDecided(
                    decision, request, candidates, index, body, upgradeRequest
                )
                return NOT_DONE_YET
            rendered = self._apply(request, registration, upgradeRequest, decision)
            if rendered is not None:
                return rendered
            index += 1
        return self._renderFallback(request)

    def _whenDecided(
        self,
        decision: Deferred[Decision],
        request: Request,
        candidates: _Candidates,
        index: int,
        body: bytes,
        upgradeRequest: UpgradeRequest,
    ) -> None:
        registration = candidates[index][1]

        def decided(result: Decision) -> None:
            if isinstance(result, Accept) and not canSwitch(request):
                result = Decline()

            def carryOut(request: Request) -> _Rendered:
                rendered = self._apply(request, registration, upgradeRequest, result)
                if rendered is None:
                    # Declined: the next offer, if the connection can still
                    # switch after the wait.
                    if canSwitch(request):
                        rendered = self._tryFrom(request, candidates, index + 1, body)
                    else:
                        rendered = self._renderFallback(request)
                return rendered

            _resume(request, carryOut)

        def failed(failure: Failure) -> None:
            _resume(
                request,
                lambda request: self._serverError(request, failure, upgradeRequest),
            )

        decision.addCallbacks(decided, failed)
        # A client that leaves before the decision cancels it: the target
        # can stop waiting and release what it holds.
        request.notifyFinish().addErrback(lambda _: decision.cancel())

    def _apply(
        self,
        request: Request,
        registration: Registration,
        upgradeRequest: UpgradeRequest,
        decision: Decision,
    ) -> _Rendered | None:
        """
        Carry out C{decision}; L{None} means it declined.
        """
        protocol = upgradeRequest.protocol
        if isinstance(decision, Accept):
            upgrade = decision.upgrade or registration.upgradeValue(protocol)
            switchProtocol(
                request,
                decision.protocol,
                upgrade=upgrade,
                headers=decision.headers,
                upgradeRequest=upgradeRequest,
                afterConnect=decision.afterConnect,
            )
            if self.logDecisions:
                self._outcome(LogLevel.debug, "accepted", upgradeRequest)
            return NOT_DONE_YET
        if isinstance(decision, AcceptTLS):
            if not canStartTLS(request):
                return None
            startTLS(
                request,
                decision.contextFactory,
                upgrade=decision.upgrade,
                headers=list(decision.headers),
                handshakeTimeout=decision.handshakeTimeout,
            )
            if self.logDecisions:
                self._outcome(LogLevel.debug, "accepted", upgradeRequest)
            # RFC 2817 §3.3: the request itself is answered inside TLS.
            if self.fallback is None:
                return NoResource().render(request)
            useEncoding(request, self.fallback)
            return self.fallback.render(request)
        if isinstance(decision, Reject):
            self._outcome(
                LogLevel.info, f"rejected with {decision.code}", upgradeRequest
            )
            request.setResponseCode(decision.code, _reason(decision.code))
            for name, value in decision.headers:
                request.responseHeaders.addRawHeader(name, value)
            return decision.body
        if isinstance(decision, Decline):
            if self.logDecisions:
                self._outcome(LogLevel.debug, "declined", upgradeRequest)
            return None
        raise TypeError(f"not an upgrade decision: {decision!r}")

    def _outcome(
        self, level: LogLevel, outcome: str, upgradeRequest: UpgradeRequest
    ) -> None:
        """
        One structured event per decision: C{outcome} is C{accepted},
        C{declined} or C{rejected with CODE}.
        """
        _log.emit(
            level,
            "Upgrade of {uri} to {protocol} {outcome} for {peer}",
            uri=upgradeRequest.uri,
            protocol=str(upgradeRequest.protocol),
            outcome=outcome,
            peer=upgradeRequest.peer,
        )

    def _serverError(
        self, request: Request, failure: Failure, upgradeRequest: UpgradeRequest
    ) -> bytes:
        """
        A target failed: a server error for this request only.
        """
        _log.failure(
            "Upgrade target for {protocol} failed on {uri}",
            failure,
            protocol=str(upgradeRequest.protocol),
            uri=upgradeRequest.uri,
        )
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"500 Internal Server Error\n"

    def _renderFallback(self, request: Request) -> _Rendered:
        if self.fallback is None:
            return self._upgradeRequired(request)
        if self.advertise and len(self.registry) and _isHTTP1(request, 1):
            request.setHeader(b"upgrade", b", ".join(self.registry.tokens()))
            _addConnectionUpgrade(request)
        # twisted.web encodes (gzip) only for the resource traversal ends at.
        useEncoding(request, self.fallback)
        return self.fallback.render(request)

    def _upgradeRequired(self, request: Request) -> bytes:
        """
        426 Upgrade Required: a final response naming the protocols this
        resource needs in descending preference, with C{Connection: Upgrade}
        (RFC 9110 §15.5.22, §7.8) and a short body (RFC 2817 §4.2).
        """
        tokens = b", ".join(self.registry.tokens())
        return upgradeRequired(
            request,
            tokens,
            b"426 Upgrade Required: use one of these protocols: %s\n" % (tokens,),
        )


def upgradeRequired(request: Request, upgrade: bytes, body: bytes) -> bytes:
    """
    Make C{request}'s answer a 426 Upgrade Required (RFC 9110 §15.5.22): a
    final response with C{Upgrade: upgrade} and C{Connection: Upgrade}
    (§7.8; not on HTTP/2, where they are forbidden) and the human-readable
    C{body} (RFC 2817 §4.2), which is returned.
    """
    request.setResponseCode(426, _reason(426))
    if _isHTTP1(request):
        request.setHeader(b"upgrade", upgrade)
        _addConnectionUpgrade(request)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body


def _reason(code: int) -> bytes | None:
    """
    The reason phrase for C{code}: twisted.web's, or the registered one for
    codes twisted.web does not know (it sends C{Unknown Status} for 426,
    421, 429...), or L{None} to let twisted.web choose.
    """
    if code in RESPONSES:
        return None
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return None


def _snapshot(request: Request, offered: ProtocolToken, body: bytes) -> UpgradeRequest:
    return UpgradeRequest(
        method=request.method,
        uri=request.uri,
        version=request.clientproto,
        # Not a copy: after a switch nothing else uses the request's headers.
        headers=request.requestHeaders,
        body=body,
        protocol=offered,
        peer=request.getClientAddress(),
        host=request.getHost(),
        secure=isSecure(request),
    )


class _Continuation(Resource):
    isLeaf = True

    def __init__(self, render: Callable[[Request], _Rendered]) -> None:
        super().__init__()
        self._render = render

    def render(self, request: Any) -> _Rendered:
        return self._render(request)


def _resume(request: Any, render: Callable[[Request], _Rendered]) -> None:
    """
    Go on with a render that was left pending while a target decided,
    through twisted.web's own C{Request.render}, so that the outcome is what
    the same render would have given synchronously: bytes framed, 405 for an
    unsupported method, 500 (logged) for an exception.
    """
    if isAnswered(request):
        return
    try:
        request.render(_Continuation(render))
    except Exception:
        request.processingFailed(Failure())
