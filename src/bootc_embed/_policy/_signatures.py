"""Where an image's signatures come from, as containers/image finds them for ``docker://``
images: simple signatures (``signature-1``, ``signature-2``, ... until one is missing) in the
registries.d lookaside, and, when registries.d enables them, sigstore signatures in the
attachment manifest tagged ``sha256-<hex>.sig`` in the image's repository. Layouts and archives
carry none.

Registry access goes through :class:`AttachmentFetcher`, a small interface the transport
provides; lookaside ``http(s)://`` URLs are fetched here (with the system's CAs).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from . import _json
from ._names import Named, valid_digest
from ._registries_d import RegistriesD

MAX_LOOKASIDE_SIGNATURES = 128  # containers/image's bound
MAX_SIGNATURE_BYTES = 4 << 20
MAX_ATTACHMENT_MANIFEST_BYTES = 4 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HTTP_TIMEOUT = 60.0


class SignatureReadError(Exception):
    """Signatures that cannot be read (not: that are missing); the message says where."""


@dataclass(frozen=True)
class SimpleSigning:
    """A simple signing (GPG) signature blob."""

    blob: bytes
    origin: str  # the URL it was read from


@dataclass(frozen=True)
class Sigstore:
    """One layer of a sigstore attachment manifest."""

    media_type: str
    payload: bytes
    annotations: Mapping[str, str]
    origin: str


Signature = SimpleSigning | Sigstore


class SignatureSource(Protocol):
    def signatures(self) -> Sequence[Signature]:
        """Every signature found (read once, on first use)."""
        ...

    def describe(self) -> str:
        """Where signatures were looked for, for a message saying that none was accepted."""
        ...


@dataclass(frozen=True)
class NoSignatures:
    """An image that carries no signatures (``oci:``, ``oci-archive:``, ``docker-archive:``)."""

    why: str

    def signatures(self) -> Sequence[Signature]:
        return ()

    def describe(self) -> str:
        return self.why


def source_without_signatures(transport: str) -> NoSignatures:
    return NoSignatures(f"{transport}: images carry no signatures (as in skopeo)")


class AttachmentFetcher(Protocol):
    """Read access to the repository an image is pulled from (the mirror in use, if any)."""

    def get_manifest(self, tag: str) -> tuple[bytes, str] | None:
        """The manifest tagged ``tag`` and its media type (the response's Content-Type, may be
        ""), or None when the repository has no such tag (HTTP 404)."""
        ...

    def get_blob(self, digest: str, size: int) -> bytes:
        """The blob's bytes (``size`` is its descriptor's size; the caller checks the
        digest)."""
        ...


def attachment_tag(manifest_digest: str) -> str:
    """``sha256-<hex>.sig``: where sigstore signatures of the manifest are."""
    return manifest_digest.replace(":", "-", 1) + ".sig"


def _check_digest(data: bytes, digest: str, what: str) -> None:
    algo, _, hexpart = digest.partition(":")
    if not valid_digest(digest) or hashlib.new(algo, data).hexdigest() != hexpart:
        raise SignatureReadError(f"{what}: content does not match its digest {digest}")


@dataclass
class RegistrySignatures:
    """The signatures of a ``docker://`` image.

    ``image`` is the reference as the registry the image is read from has it (after a
    registries.conf rewrite or mirror: lookaside and attachments belong to that location),
    with its tag or digest; ``manifest_digest`` the digest of the manifest (or index) the
    reference names."""

    image: Named
    manifest_digest: str
    registries_d: RegistriesD
    attachments: AttachmentFetcher | None = None
    _found: list[Signature] | None = field(default=None, init=False, repr=False)
    _looked: list[str] = field(default_factory=list, init=False, repr=False)

    def signatures(self) -> Sequence[Signature]:
        if self._found is None:
            looked: list[str] = []
            found: list[Signature] = self._lookaside(looked)
            found += self._sigstore(looked)
            self._found, self._looked = found, looked
        return self._found

    def describe(self) -> str:
        self.signatures()
        return "; ".join(self._looked)

    # -- lookaside ----------------------------------------------------------------------------

    def _lookaside(self, looked: list[str]) -> list[Signature]:
        lookaside = self.registries_d.lookaside(self.image)
        out: list[Signature] = []
        for index in range(1, MAX_LOOKASIDE_SIGNATURES + 1):
            url = lookaside.url(self.manifest_digest, index)
            blob = _read_url(url)
            if blob is None:
                first = lookaside.url(self.manifest_digest, 1)
                looked.append(
                    f"{len(out)} simple signature(s) at {first.rsplit('/', 1)[0]}/ from the "
                    f"lookaside ({lookaside.origin})"
                    if out
                    else f"no {first} in the lookaside ({lookaside.origin})"
                )
                return out
            out.append(_from_blob(blob, url))
        raise SignatureReadError(
            f"lookaside {lookaside.base}: more than {MAX_LOOKASIDE_SIGNATURES} signatures, "
            f"assuming a server error"
        )

    # -- sigstore attachments -----------------------------------------------------------------

    def _sigstore(self, looked: list[str]) -> list[Signature]:
        enabled, why = self.registries_d.use_sigstore_attachments(self.image)
        tag = attachment_tag(self.manifest_digest)
        where = f"{self.image.name}:{tag}"
        if not enabled:
            looked.append(f"sigstore attachments not read ({why})")
            return []
        if self.attachments is None:
            looked.append(f"sigstore attachments not readable for {self.image.name}")
            return []
        got = self.attachments.get_manifest(tag)
        if got is None:
            looked.append(f"no sigstore attachment {where}")
            return []
        raw, media_type = got
        if len(raw) > MAX_ATTACHMENT_MANIFEST_BYTES:
            raise SignatureReadError(f"sigstore attachment {where}: the manifest is too large")
        try:
            manifest = _json.obj(_json.loads(raw), "the manifest")
            media_type = media_type.partition(";")[0].strip() or str(manifest.get("mediaType", ""))
            if media_type != OCI_MANIFEST:
                raise SignatureReadError(
                    f"sigstore attachment {where}: unexpected manifest type {media_type!r}"
                )
            layers = manifest.get("layers")
            if not isinstance(layers, list):
                raise _json.ShapeError("the manifest has no layers list")
            out: list[Signature] = []
            for i, layer in enumerate(layers):
                out.append(self._layer(layer, f"{where} layer {i + 1}"))
        except _json.ShapeError as e:
            raise SignatureReadError(f"sigstore attachment {where}: {e}") from None
        looked.append(f"{len(out)} layer(s) in the sigstore attachment {where}")
        return out

    def _layer(self, layer: Any, what: str) -> Sigstore:
        d = _json.obj(layer, what)
        digest = _json.string(d.get("digest"), f"{what}.digest")
        size = d.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _json.ShapeError(f"{what}.size must be a byte count")
        if size > MAX_SIGNATURE_BYTES:
            raise SignatureReadError(f"{what}: {size} bytes is too large for a signature")
        annotations = _json.obj(d.get("annotations") or {}, f"{what}.annotations")
        if not all(isinstance(v, str) for v in annotations.values()):
            raise _json.ShapeError(f"{what}.annotations must map strings to strings")
        assert self.attachments is not None
        payload = self.attachments.get_blob(digest, size)
        if len(payload) != size:
            raise SignatureReadError(f"{what}: {len(payload)} bytes, not the {size} announced")
        _check_digest(payload, digest, what)
        media_type = _json.string(d.get("mediaType", ""), f"{what}.mediaType")
        return Sigstore(media_type, payload, dict(annotations), what)


def _from_blob(blob: bytes, origin: str) -> Signature:
    """A lookaside blob: raw simple signing, or containers/image's tagged format
    (``\\0simple-signing\\n``... / ``\\0sigstore-json\\n``...)."""
    if not blob.startswith(b"\x00"):
        return SimpleSigning(blob, origin)
    kind, _, rest = blob[1:].partition(b"\n")
    if kind == b"simple-signing":
        return SimpleSigning(rest, origin)
    if kind == b"sigstore-json":
        try:
            d = _json.fields(
                _json.loads(rest), origin, ("mimeType", "payload", "annotations"), ("mimeType",)
            )
            annotations = _json.obj(d.get("annotations") or {}, f"{origin} annotations")
            return Sigstore(
                _json.string(d["mimeType"], f"{origin} mimeType"),
                _json.b64bytes(d.get("payload", ""), f"{origin} payload"),
                {str(k): str(v) for k, v in annotations.items()},
                origin,
            )
        except _json.ShapeError as e:
            raise SignatureReadError(f"{origin}: {e}") from None
    raise SignatureReadError(f"{origin}: unknown signature format {kind[:40]!r}")


def _read_url(url: str) -> bytes | None:
    """A signature's bytes; None when it does not exist (file missing, HTTP 404)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = urllib.parse.unquote(parts.path)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SIGNATURE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise SignatureReadError(f"{url}: cannot be read: {e.strerror}") from None
    elif parts.scheme in ("http", "https"):
        got = _http_get(url)
        if got is None:
            return None
        data = got
    else:
        raise SignatureReadError(
            f"{url}: the lookaside URL scheme {parts.scheme!r} is not supported (file, http, https)"
        )
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureReadError(f"{url}: larger than {MAX_SIGNATURE_BYTES} bytes")
    return data


def _http_get(url: str) -> bytes | None:
    headers = {"User-Agent": "bootc-embed"}
    try:
        with httpx.stream(
            "GET", url, headers=headers, timeout=HTTP_TIMEOUT, follow_redirects=True
        ) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise SignatureReadError(f"{url}: HTTP {resp.status_code} {resp.reason_phrase}")
            data = bytearray()
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > MAX_SIGNATURE_BYTES:
                    break
            return bytes(data)
    except httpx.HTTPError as e:
        raise SignatureReadError(f"{url}: {e or type(e).__name__}") from None
