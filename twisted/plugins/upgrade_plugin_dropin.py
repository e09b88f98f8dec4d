"""
The twistd dropin for C{twistd upgrade}; the options live in
L{upgrade_plugin.tap}, imported only when used.
"""

from twisted.application.service import ServiceMaker

TwistedUpgrade = ServiceMaker(
    "upgrade_plugin",
    "upgrade_plugin.tap",
    "HTTP/1.1 with protocol upgrades: WebSocket, h2c, RFC 2817 TLS, your own.",
    "upgrade",
)
