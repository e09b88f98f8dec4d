"""
upgrade_plugin: HTTP/1.1 Upgrade for Twisted.

C{Connection: upgrade} + C{Upgrade: proto/ver, ...} -> C{101 Switching
Protocols} -> the same connection continues in the new protocol
(RFC 9110 §7.8), with every byte the client sent after the request.
"""

from ._interfaces import (
    Accept,
    AcceptTLS,
    Decision,
    Decline,
    IUpgradeAware,
    IUpgradeTarget,
    Reject,
    UpgradeRequest,
)
from ._registry import ProtocolFactoryTarget, UpgradeRegistry
from ._tokens import ProtocolToken
from .resource import UpgradeResource
from .site import UpgradeSite, upgradeLogFormatter

__all__ = [
    "Accept",
    "AcceptTLS",
    "Decision",
    "Decline",
    "IUpgradeAware",
    "IUpgradeTarget",
    "ProtocolFactoryTarget",
    "ProtocolToken",
    "Reject",
    "UpgradeRegistry",
    "UpgradeRequest",
    "UpgradeResource",
    "UpgradeSite",
    "upgradeLogFormatter",
]
