"""The transport interface: what the build (and ``--previous``, inspect, verify and diff) asks
of an image source and an image destination, and what every transport shares.

A source hands out verified blobs by descriptor; a destination stages blobs and makes the
image visible only at :meth:`ImageDestination.commit` (an error before that leaves nothing at
the output reference). Both are structural :class:`~typing.Protocol` types: a transport
implements every method listed here, without inheriting from anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .._digest import Tee, VerifyingReader
from .._model import Descriptor, Manifest, Platform
from .._reference import Reference
from ..errors import ImageFormatError

MAX_METADATA_BYTES = 64 << 20


@dataclass(frozen=True)
class TransportOptions:
    """How to reach images: credentials, TLS and registries.conf for registries (skopeo's
    flags)."""

    authfile: str | None = None
    creds: str | None = None  # USER[:PASS]
    tls_verify: bool | None = None  # None: verify (unless registries.conf says insecure),
    # except plain HTTP for localhost as podman
    cert_dir: str | None = None
    registries_conf: str | None = None  # None: $CONTAINERS_REGISTRIES_CONF, then the defaults


class ImageSource(Protocol):
    reference: Reference

    def default_name(self) -> str | None:
        """The full image name the reference carries (a registry reference, a docker-archive
        tag), or None (an OCI layout tag is not a full name)."""
        ...

    def top_descriptor(self) -> Descriptor:
        """The descriptor the reference names (a manifest or an index)."""
        ...

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        """The blob's bytes, unverified (callers use :func:`open_blob`)."""
        ...

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        """(file, offset) holding the blob, when it is a plain local file region."""
        ...

    def interrupt(self) -> None:
        """Stop every transfer now (Ctrl-C, a failed build), from any thread: a read blocked
        in another thread returns at once, no request starts afterwards. A no-op where nothing
        can block (local files)."""
        ...

    def close(self) -> None: ...


class ImageDestination(Protocol):
    reference: Reference

    def has_blob(self, digest: str) -> bool: ...

    def staging_dir(self) -> Path:
        """A directory on the destination's filesystem for temporary blob files."""
        ...

    def add_blob_file(self, path: Path, digest: str) -> None:
        """Stage a finished blob file (moved, not copied)."""
        ...

    def add_blob_bytes(self, data: bytes) -> str: ...

    def try_reuse(self, source: ImageSource, desc: Descriptor, stream: bool = True) -> bool:
        """Make the destination hold ``desc`` without a staged copy: a registry's
        cross-repository mount, or (with ``stream``) the source's bytes streamed straight into
        the destination. False when it cannot, and the caller stages the blob itself."""
        ...

    def commit(self, manifest: bytes, media_type: str) -> None:
        """Make the image visible under the reference (tag added or replaced)."""
        ...

    def interrupt(self) -> None:
        """Stop every upload now (Ctrl-C, a failed build), from any thread; :meth:`abort`
        follows. A no-op where nothing can block (local files)."""
        ...

    def abort(self) -> None: ...


def open_blob(
    source: ImageSource, desc: Descriptor, what: str, copy_to: BinaryIO | None = None
) -> VerifyingReader:
    """``desc``'s bytes, checked against its digest and size; with ``copy_to``, also written
    there as they are read (one read serves a consumer and a copy)."""
    raw = source.open_raw(desc)
    if copy_to is not None:
        raw = Tee(raw, copy_to)  # type: ignore[assignment]
    return VerifyingReader(raw, desc.digest, desc.size, what)


def read_blob(source: ImageSource, desc: Descriptor, what: str) -> bytes:
    """A small blob (manifest, config), verified against its descriptor."""
    if desc.size > MAX_METADATA_BYTES:
        raise ImageFormatError(f"{what}: {desc.size} bytes is too large for metadata")
    with open_blob(source, desc, what) as r:
        data = r.read(desc.size)
        r.verify()
    return data


@dataclass(frozen=True)
class ResolvedImage:
    """One platform's image: its manifest, config, and the index it was reached through."""

    source: ImageSource
    manifest: Manifest
    config_raw: bytes
    config: dict[str, Any]
    index_digest: str | None
    index_raw: bytes | None

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs") or {}
        ids = rootfs.get("diff_ids")
        if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
            raise ImageFormatError(f"{self.source.reference}: config has no rootfs.diff_ids list")
        return list(ids)

    @property
    def platform(self) -> Platform:
        return Platform(
            str(self.config.get("os") or "linux"),
            str(self.config.get("architecture") or ""),
            self.config.get("variant") or None,
        ).normalized()
