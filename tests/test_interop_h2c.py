"""
h2c against real clients nobody here wrote: curl and nghttp (RFC 7540 §3.2),
plus HTTP/2 with prior knowledge, and h2c refused over TLS (RFC 7540 §3.3).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from upgrade_plugin import UpgradeSite

from .helpers import requireExternal
from .tls import certificateAndKeyPEM, listenLoopback

reactor: Any = _reactor


class Show(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        return b"%s %s %s body=%s" % (
            request.method,
            request.uri,
            request.clientproto,
            body,
        )


def which(program: str) -> str | None:
    return shutil.which(program)


def skipWithout(program: str) -> str | None:
    if which(program) is None:
        return requireExternal(f"{program} is not installed")
    return None


def run(argv: list[str], seconds: float = 20) -> Any:
    """
    Run a client with a deadline; its output and exit code.
    """
    program = which(argv[0]) or argv[0]
    return getProcessOutputAndValue(
        "timeout",
        ["-k", "3", str(seconds), program, *argv[1:]],
        env=os.environ,
        reactor=reactor,
    )


class ListeningBase(TestCase):
    tls = False

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.site = UpgradeSite(Show(), h2c=True)
        self.port = yield listenLoopback(self, self.site, self.tls)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"


class H2CPeerTests(ListeningBase):
    @inlineCallbacks
    def test_curlGet(self) -> Any:
        out, err, code = yield run(["curl", "-sv", "--http2", f"{self.url}/get?a=1"])
        self.assertEqual(code, 0, err)
        self.assertIn(b"< HTTP/1.1 101 Switching Protocols", err)
        self.assertIn(b"< HTTP/2 200", err)
        self.assertEqual(out, b"GET /get?a=1 HTTP/2 body=")

    test_curlGet.skip = skipWithout("curl")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_curlPost(self) -> Any:
        out, err, code = yield run(
            ["curl", "-sv", "--http2", "-d", "x=1", f"{self.url}/post"]
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"< HTTP/2 200", err)
        self.assertEqual(out, b"POST /post HTTP/2 body=x=1")

    test_curlPost.skip = skipWithout("curl")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_curlPriorKnowledge(self) -> Any:
        out, err, code = yield run(
            ["curl", "-sv", "--http2-prior-knowledge", f"{self.url}/pk"]
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out, b"GET /pk HTTP/2 body=")

    test_curlPriorKnowledge.skip = skipWithout("curl")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_nghttpUpgrade(self) -> Any:
        """
        nghttp exits 0 even when the upgrade fails: judge by its output.
        """
        out, err, _ = yield run(["nghttp", "-nv", "-u", f"{self.url}/n"])
        self.assertIn(b"HTTP Upgrade success", out, out + err)
        self.assertNotIn(b"HTTP Upgrade failed", out)
        self.assertIn(b":status: 200", out)

    test_nghttpUpgrade.skip = skipWithout("nghttp")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_nghttpUpgradeWithData(self) -> Any:
        """
        With -d, nghttp upgrades on C{OPTIONS *} and POSTs on a new stream.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "body.txt")
        with open(path, "wb") as f:
            f.write(b"payload-42")
        out, err, _ = yield run(["nghttp", "-v", "-u", "-d", path, f"{self.url}/d"])
        self.assertIn(b"OPTIONS * HTTP/1.1", out, out + err)
        self.assertIn(b"HTTP Upgrade success", out, out + err)
        self.assertIn(b"POST /d HTTP/2 body=payload-42", out)

    test_nghttpUpgradeWithData.skip = skipWithout("nghttp")  # type: ignore[attr-defined]


def tlsExchange(port: int, raw: bytes) -> bytes:
    certificate, _ = certificateAndKeyPEM()
    context = ssl.create_default_context(cadata=certificate.decode("ascii"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        sock = context.wrap_socket(plain, server_hostname="localhost")
        sock.sendall(raw)
        data = b""
        while b"body=" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class H2COverTLSTests(ListeningBase):
    tls = True

    @inlineCallbacks
    def test_refusedOverTLS(self) -> Any:
        """
        H11: h2c is never chosen over TLS: a normal HTTP/1.1 answer.
        """
        raw = (
            b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"
        )
        data = yield deferToThread(tlsExchange, self.port.getHost().port, raw)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertTrue(data.endswith(b"GET /t HTTP/1.1 body="), data)

    @inlineCallbacks
    def test_priorKnowledgeRefusedOverTLS(self) -> Any:
        """
        H11, RFC 9113 §3.3: over TLS, HTTP/2 is chosen by ALPN only; the
        preface without it is not a request: 400 and close.
        """
        raw = (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        )
        data = yield deferToThread(tlsExchange, self.port.getHost().port, raw)
        self.assertEqual(data, b"HTTP/1.1 400 Bad Request\r\n\r\n")
