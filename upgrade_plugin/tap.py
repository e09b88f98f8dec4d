"""
C{twistd upgrade}: serve HTTP/1.1 with upgrades (WebSocket, h2c, RFC 2817
TLS, raw protocols), in the style of C{twistd web}.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from twisted.application import service, strports
from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IProtocolFactory
from twisted.python import reflect, usage
from twisted.web.resource import IResource, Resource
from twisted.web.static import File

from ._registry import UpgradeRegistry
from ._tokens import parseProtocol
from .demo import demoResource, webSocketEchoFactory
from .resource import UpgradeResource
from .site import UpgradeSite
from .tls import RequireTLSPaths, TLSUpgrade, contextFactoryFromFiles
from .websocket import WebSocketUpgrade

__all__ = ["Options", "makeService"]


def _load(name: str, what: str) -> Any:
    """
    The object at C{module.attribute}, or a one-line usage error.
    """
    if "." not in name:
        raise usage.UsageError(f"{what} must be module.attribute, not {name!r}")
    try:
        return reflect.namedAny(name)
    except Exception as error:
        raise usage.UsageError(f"cannot load {what} {name!r}: {error}") from None


def _instance(value: Any, name: str, *, always: bool = False) -> Any:
    """
    C{value}, or what calling it returns when it is a class (or C{always}):
    a factory may be named by its class or by a function that makes one.
    """
    if not (always or isinstance(value, type)):
        return value
    try:
        return value()
    except Exception as error:
        raise usage.UsageError(f"calling {name} failed: {error}") from None


def _path(text: str) -> list[bytes]:
    """
    A URL path as resource segments: C{/ws/chat} -> C{[b"ws", b"chat"]}.
    """
    if not text.startswith("/"):
        raise usage.UsageError(f"a path starts with /: {text!r}")
    return [segment.encode("utf-8") for segment in text.strip("/").split("/")] or [b""]


class Options(usage.Options):
    synopsis = "[upgrade options]"
    longdesc = (
        "Serve HTTP/1.1 with protocol upgrades (RFC 9110 7.8): WebSocket on "
        "autobahn, h2c onto Twisted's HTTP/2, RFC 2817 TLS, and raw protocols. "
        "With no --path or --resource it serves a demo on tcp:8080."
    )

    optParameters: ClassVar[list[list[str | None]]] = [
        ["path", None, None, "Serve the files under this directory."],
        [
            "resource",
            None,
            None,
            "Serve this resource tree, given as module.attribute.",
        ],
        ["tls-certificate", None, None, "PEM certificate for RFC 2817 TLS upgrade."],
        [
            "tls-key",
            None,
            None,
            "PEM private key for --tls-certificate (default: in the same file).",
        ],
        ["h2c-max-body", None, "65536", "Largest request body carried into h2c."],
    ]

    optFlags: ClassVar[list[list[str | None]]] = [
        ["advertise", None, "Advertise the upgrades on other responses."],
    ]

    compData = usage.Completions(
        optActions={
            "path": usage.CompleteDirs(),
            "tls-certificate": usage.CompleteFiles("*.pem"),
            "tls-key": usage.CompleteFiles("*.pem"),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["websockets"] = []
        self["protocols"] = []
        self["origins"] = []
        self["required"] = []
        self["tlsOnly"] = []
        self["h2c"] = None

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on this endpoint (tcp:, ssl:, unix:, haproxy:...); repeatable.
        [default: tcp:8080]
        """
        try:
            endpoints.serverFromString(reactor, endpoint)
        except Exception as error:
            raise usage.UsageError(
                f"cannot parse endpoint {endpoint!r}: {error}"
            ) from None
        self["listen"].append(endpoint)

    def opt_h2c(self) -> None:
        """
        Accept h2c upgrades and HTTP/2 with prior knowledge (RFC 7540 3.2).
        Beware h2c smuggling behind a proxy that forwards Upgrade: h2c.
        """
        self["h2c"] = True

    def opt_no_h2c(self) -> None:
        """
        Do not accept h2c (the default unless serving the demo).
        """
        self["h2c"] = False

    def opt_websocket(self, value: str) -> None:
        """
        PATH=module.factory: a WebSocket endpoint at PATH run by this autobahn
        WebSocketServerFactory (or a callable returning one); repeatable.
        """
        path, equals, name = value.partition("=")
        if not equals or not path or not name:
            raise usage.UsageError(f"--websocket takes PATH=module.factory: {value!r}")
        factory = _load(name, "WebSocket factory")
        if callable(factory) and not IProtocolFactory.providedBy(factory):
            factory = _instance(factory, name, always=True)
        if not IProtocolFactory.providedBy(factory) or not hasattr(
            factory, "allowedOriginsPatterns"
        ):
            raise usage.UsageError(f"{name} is not a WebSocket server factory")
        self["websockets"].append((_path(path), factory))

    def opt_protocol(self, value: str) -> None:
        """
        PATH:TOKEN=module.factory: upgrade requests at PATH offering TOKEN
        (e.g. foo/2) to this Twisted protocol factory; repeatable.
        """
        where, equals, name = value.partition("=")
        path, colon, token = where.rpartition(":")
        if not equals or not colon or not path or not name:
            raise usage.UsageError(
                f"--protocol takes PATH:TOKEN=module.factory: {value!r}"
            )
        if parseProtocol(token.encode("ascii", "replace")) is None:
            raise usage.UsageError(f"not an upgrade token: {token!r}")
        factory = _instance(_load(name, "protocol factory"), name)
        if not IProtocolFactory.providedBy(factory):
            raise usage.UsageError(f"{name} is not a protocol factory")
        self["protocols"].append((_path(path), token, factory))

    def opt_allowed_origin(self, pattern: str) -> None:
        """
        Accept WebSocket handshakes from this Origin (* matches anything,
        e.g. https://*.example.com:*); repeatable. Others get 403.
        """
        self["origins"].append(pattern)

    def opt_require_upgrade(self, path: str) -> None:
        """
        Answer 426 Upgrade Required at PATH unless the request upgrades;
        repeatable.
        """
        self["required"].append(_path(path))

    def opt_require_tls(self, path: str) -> None:
        """
        Serve PATH over TLS only: 426 on cleartext unless it upgrades to TLS
        (needs --tls-certificate); repeatable.
        """
        self["tlsOnly"].append(_path(path))

    def postOptions(self) -> None:
        if self["path"] and self["resource"]:
            raise usage.UsageError("give --path or --resource, not both")
        if self["path"] is not None and not os.path.isdir(self["path"]):
            raise usage.UsageError(f"not a directory: {self['path']!r}")
        if self["resource"] is not None:
            root = _load(self["resource"], "resource")
            if callable(root) and not IResource.providedBy(root):
                root = _instance(root, self["resource"], always=True)
            if not IResource.providedBy(root):
                raise usage.UsageError(f"{self['resource']} is not a resource")
            self["root"] = root
        try:
            self["h2c-max-body"] = int(self["h2c-max-body"])
        except ValueError:
            raise usage.UsageError("--h2c-max-body takes a number of bytes") from None
        if self["h2c-max-body"] < 0:
            raise usage.UsageError("--h2c-max-body takes a number of bytes, not < 0")
        self["tls"] = None
        if self["tls-key"] and not self["tls-certificate"]:
            raise usage.UsageError("--tls-key needs --tls-certificate")
        if self["tls-certificate"]:
            try:
                self["tls"] = TLSUpgrade(
                    contextFactoryFromFiles(self["tls-certificate"], self["tls-key"])
                )
            except Exception as error:
                raise usage.UsageError(
                    f"cannot use certificate {self['tls-certificate']!r}: {error}"
                ) from None
        if self["tlsOnly"] and self["tls"] is None:
            raise usage.UsageError("--require-tls needs --tls-certificate")
        self["demo"] = self["path"] is None and self["resource"] is None
        if self["h2c"] is None:
            self["h2c"] = self["demo"]
        if not self["listen"]:
            self["listen"] = ["tcp:8080"]
        targets = {tuple(path) for path, _ in self["websockets"]}
        targets.update(tuple(path) for path, _, _ in self["protocols"])
        for path in self["required"]:
            if tuple(path) not in targets:
                raise usage.UsageError(
                    "--require-upgrade needs a --websocket or --protocol at /"
                    + b"/".join(path).decode()
                )


def _existing(parent: Any, segment: bytes) -> Any:
    """
    The child C{segment} of C{parent} if there is one: put there, or a file
    or directory of a L{File}.
    """
    child = getattr(parent, "children", {}).get(segment)
    if child is None and isinstance(parent, File):
        found = parent.getChild(segment, None)
        child = None if getattr(found, "code", None) == 404 else found
    return child


def _child(parent: Any, segment: bytes) -> Any:
    """
    The static child C{segment} of C{parent}, creating an empty one.
    """
    child = _existing(parent, segment)
    if child is None:
        child = _Placeholder()
    parent.putChild(segment, child)
    return child


class _Placeholder(Resource):
    """
    An empty resource made only to hold a deeper mount.
    """


def _mount(root: Any, path: list[bytes], make: Any) -> None:
    """
    Replace the resource at C{path} under C{root} by C{make(existing)}.
    """
    parent = root
    for segment in path[:-1]:
        parent = _child(parent, segment)
    parent.putChild(path[-1], make(_existing(parent, path[-1])))


def makeService(config: Options) -> service.MultiService:
    """
    One L{UpgradeSite} on every C{--listen} endpoint.
    """
    websocketOptions: dict[str, Any] = {}
    if config["origins"]:
        websocketOptions["allowedOrigins"] = config["origins"]
    if config["demo"]:
        registry = UpgradeRegistry()
        registry.register(
            "websocket",
            WebSocketUpgrade(webSocketEchoFactory(), **websocketOptions),
        )
        root: Any = demoResource(
            websocketRegistry=registry, advertise=config["advertise"]
        )
    elif config["path"] is not None:
        root = File(os.path.abspath(config["path"]))
    else:
        root = config["root"]

    targets: dict[tuple[bytes, ...], UpgradeRegistry] = {}
    for path, factory in config["websockets"]:
        registry = targets.setdefault(tuple(path), UpgradeRegistry())
        registry.register("websocket", WebSocketUpgrade(factory, **websocketOptions))
    for path, token, factory in config["protocols"]:
        targets.setdefault(tuple(path), UpgradeRegistry()).register(token, factory)
    required = {tuple(path) for path in config["required"]}

    def upgradeAt(
        existing: Any, registry: UpgradeRegistry, key: tuple[bytes, ...]
    ) -> UpgradeResource:
        # A placeholder (made here to hold a deeper mount) has nothing to
        # answer: no fallback, as if this path were mounted alone.
        placeholder = isinstance(existing, _Placeholder)
        fallback = None if key in required or placeholder else existing
        upgrade = UpgradeResource(
            registry, fallback, advertise=config["advertise"], logDecisions=True
        )
        if fallback is None:
            # No fallback, but what is mounted below stays reachable.
            for name, child in getattr(existing, "children", {}).items():
                upgrade.putChild(name, child)
        return upgrade

    # Deeper paths first: a mount at /ws/raw is then below the one at /ws.
    for key, registry in sorted(targets.items(), key=lambda item: -len(item[0])):
        _mount(
            root,
            list(key),
            lambda existing, registry=registry, key=key: upgradeAt(
                existing, registry, key
            ),
        )
    if config["tlsOnly"]:
        root = RequireTLSPaths(root, config["tls"], config["tlsOnly"])

    siteRegistry = UpgradeRegistry()
    if config["tls"] is not None:
        siteRegistry.register("TLS", config["tls"])
    site = UpgradeSite(
        root,
        siteRegistry,
        h2c=config["h2c"],
        h2cMaxBodySize=config["h2c-max-body"],
        logDecisions=True,
    )
    top = service.MultiService()
    for endpoint in config["listen"]:
        strports.service(endpoint, site).setServiceParent(top)
    return top
