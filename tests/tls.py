"""
A throwaway self-signed certificate for loopback TLS tests, and listening on
127.0.0.1 with it or without TLS.
"""

from __future__ import annotations

import datetime
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor as _reactor
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.trial.unittest import SynchronousTestCase

reactor: Any = _reactor


def issue(
    name: str,
    issuer: tuple[Any, x509.Certificate] | None = None,
    *,
    ca: bool = False,
) -> tuple[Any, x509.Certificate]:
    """
    A key and a certificate for C{name}, signed by C{issuer} (its key and
    certificate) or self-signed; a leaf (not C{ca}) is for C{localhost} and
    127.0.0.1.
    """
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer, issuerName = (
        (key, subject) if issuer is None else (issuer[0], issuer[1].subject)
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    if not ca or issuer is None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return key, builder.sign(signer, hashes.SHA256())


def pem(key: Any = None, certificate: x509.Certificate | None = None) -> bytes:
    """
    C{certificate} and/or C{key} as PEM.
    """
    data = b""
    if certificate is not None:
        data += certificate.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return data


@cache
def certificateAndKeyPEM() -> tuple[bytes, bytes]:
    """
    A self-signed certificate for C{localhost} and 127.0.0.1, and its key.
    """
    key, certificate = issue("localhost", ca=True)
    return pem(certificate=certificate), pem(key=key)


def serverOptions() -> ssl.CertificateOptions:
    certificate, key = certificateAndKeyPEM()
    private = ssl.PrivateCertificate.loadPEM(certificate + key)
    options: ssl.CertificateOptions = private.options()
    return options


def clientOptions() -> object:
    certificate, _ = certificateAndKeyPEM()
    return ssl.optionsForClientTLS(
        "localhost", trustRoot=ssl.Certificate.loadPEM(certificate)
    )


def listenLoopback(
    case: SynchronousTestCase, factory: IProtocolFactory, tls: bool
) -> Deferred[IListeningPort]:
    """
    Listen with C{factory} on a free port of 127.0.0.1, over TLS with
    L{serverOptions} when C{tls}, until C{case}'s cleanup.
    """
    if tls:
        endpoint: Any = SSL4ServerEndpoint(
            reactor, 0, serverOptions(), interface="127.0.0.1"
        )
    else:
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    listening: Deferred[IListeningPort] = endpoint.listen(factory)

    def stopAtCleanup(port: IListeningPort) -> IListeningPort:
        case.addCleanup(port.stopListening)
        return port

    return listening.addCallback(stopAtCleanup)
