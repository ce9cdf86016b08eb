"""Public-key signatures made by others: a provider's ECDSA key, an X.509 certificate's
RSA key. Reading a key is strict (a key we cannot use refuses at start-up, not per
request); verifying answers True or False and never raises on hostile input."""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def load_ec_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key given as PEM or as the base64 of its DER (SubjectPublicKeyInfo),
    the form SendGrid shows; ValueError saying why it cannot be used."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not a public key in PEM or base64 DER form") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


def ecdsa_valid(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """An ECDSA-SHA256 signature (DER) of `data` by `key`."""
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_certificate(pem: bytes) -> x509.Certificate:
    """An X.509 certificate in PEM; ValueError when it is not one or has no RSA key."""
    cert = x509.load_pem_x509_certificate(pem)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ValueError("the certificate's key is not RSA")
    return cert


def rsa_valid(cert: x509.Certificate, signature: bytes, data: bytes, *, sha256: bool) -> bool:
    """An RSA PKCS#1 v1.5 signature of `data` by the certificate's key (SHA-256 or SHA-1)."""
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    algorithm = hashes.SHA256() if sha256 else hashes.SHA1()  # noqa: S303 - SNS version 1
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError):
        return False
    return True
