"""Sigstore signatures with public keys (``cosign sign --key``, ``skopeo copy
--sign-by-sigstore-private-key``): the base64 signature in a ``dev.cosignproject.cosign/signature``
annotation, over the payload blob, checked with the ``cryptography`` package.

Keys are PEM ``PUBLIC KEY`` (PKIX) or ``RSA PUBLIC KEY`` (PKCS #1), as sigstore's
``UnmarshalPEMToPublicKey`` reads them: ECDSA (any of P-256, P-384, P-521) and RSA PKCS #1 v1.5
verify over SHA-256 (the hash containers/image uses for every key), Ed25519 over the payload
itself.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class UnusableKey(Exception):
    """A public key that cannot be used."""


class SignatureInvalid(Exception):
    pass


@dataclass(frozen=True)
class SigstoreKey:
    key: PublicKey
    what: str  # where it came from, for messages

    def describe(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"ECDSA {self.key.curve.name} key {self.what}"
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"RSA-{self.key.key_size} key {self.what}"
        return f"Ed25519 key {self.what}"


def _first_pem_block(data: bytes, what: str) -> tuple[str, bytes]:
    text = data.decode("ascii", errors="replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        raise UnusableKey(f"{what}: not a PEM public key (no -----BEGIN line)")
    head_end = text.find("-----", start + 11)
    label = text[start + 11 : head_end]
    end_marker = f"-----END {label}-----"
    end = text.find(end_marker, head_end)
    if head_end < 0 or end < 0:
        raise UnusableKey(f"{what}: the PEM block {label!r} has no END line")
    return label, text[start : end + len(end_marker)].encode()


def load_key(data: bytes, what: str) -> SigstoreKey:
    """The public key in the first PEM block of ``data``."""
    label, block = _first_pem_block(data, what)
    if label not in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        raise UnusableKey(
            f"{what}: a PEM {label!r} block is not a public key (expected PUBLIC KEY)"
        )
    try:
        key = serialization.load_pem_public_key(block)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise UnusableKey(f"{what}: not a usable public key: {e}") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise UnusableKey(f"{what}: a {type(key).__name__} is not supported for sigstore")
    return SigstoreKey(key, what)


def verify(key: SigstoreKey, payload: bytes, b64_signature: str) -> None:
    """Raise :class:`SignatureInvalid` unless ``b64_signature`` is ``key``'s over ``payload``."""
    try:
        sig = base64.b64decode(b64_signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("the signature annotation is not valid base64") from None
    k = key.key
    try:
        if isinstance(k, ec.EllipticCurvePublicKey):
            k.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(k, rsa.RSAPublicKey):
            k.verify(sig, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            k.verify(sig, payload)
    except InvalidSignature:
        raise SignatureInvalid(
            f"the cryptographic signature does not verify with the {key.describe()}"
        ) from None
