"""Transports: each translates one kind of image storage to and from the image model.

A source hands out verified blobs by descriptor; a destination stages blobs and makes the
image visible only at :meth:`ImageDestination.commit` (an error before that leaves nothing at
the output reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from .._contract import dumps
from .._digest import Tee, VerifyingReader, sha256_digest
from .._model import (
    INDEX_TYPES,
    Descriptor,
    Manifest,
    Platform,
    index_manifests,
    load_json,
    sniff_media_type,
)
from .._reference import Reference
from ..errors import DigestMismatchError, ImageFormatError, ImageReferenceError, UsageError

MAX_METADATA_BYTES = 64 << 20

json_bytes = dumps  # the one JSON encoder of what we write (``_contract.dumps``)


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


def resolve(source: ImageSource, platform: Platform | None) -> ResolvedImage:
    """Follow the reference to one image manifest (choosing a platform in an index)."""
    ref = str(source.reference)
    desc = source.top_descriptor()
    raw = read_blob(source, desc, f"{ref}: manifest")
    index_digest: str | None = None
    index_raw: bytes | None = None
    mt = desc.media_type or sniff_media_type(load_json(raw, f"{ref}: manifest"))
    if mt in INDEX_TYPES:
        index_digest, index_raw = desc.digest, raw
        entries = index_manifests(raw, f"{ref}: index")
        want = platform or Platform.host()
        chosen = [e for e in entries if e.platform is not None and e.platform.matches(want)] or [
            e for e in entries if e.platform is None and len(entries) == 1
        ]
        if not chosen:
            have = ", ".join(str(e.platform) for e in entries if e.platform) or "none"
            raise ImageReferenceError(
                f"{ref}: the index has no image for platform {want} (it has: {have}); "
                f"choose one with --platform"
            )
        desc = chosen[0]
        raw = read_blob(source, desc, f"{ref}: manifest for {want}")
    manifest = Manifest.parse(raw, desc.digest, f"{ref}: manifest")
    config_raw = read_blob(source, manifest.config, f"{ref}: config")
    config = load_json(config_raw, f"{ref}: config")
    resolved = ResolvedImage(source, manifest, config_raw, config, index_digest, index_raw)
    if len(resolved.diff_ids) != len(manifest.layers):
        raise ImageFormatError(
            f"{ref}: the manifest lists {len(manifest.layers)} layers but the config has "
            f"{len(resolved.diff_ids)} diff_ids"
        )
    return resolved


def verify_bytes(data: bytes, desc: Descriptor, what: str) -> None:
    if len(data) != desc.size or sha256_digest(data) != desc.digest:
        raise DigestMismatchError(f"{what}: content does not match {desc.digest}")


def open_source(ref: Reference, options: TransportOptions | None = None) -> ImageSource:
    """The source for a reference, whatever its transport."""
    from . import oci

    options = options or TransportOptions()
    if ref.transport in ("oci", "oci-archive"):
        return oci.open_source(ref)
    if ref.transport == "docker":
        from .registry import RegistrySource

        return RegistrySource(ref, options)
    if ref.transport == "docker-archive":
        from ._docker_archive import DockerArchiveSource

        return DockerArchiveSource(ref)
    if ref.transport == "containers-storage":
        from ._storage_skopeo import StorageSource

        return StorageSource(ref)
    raise UsageError(f"{ref}: the {ref.transport}: transport is not supported yet")


def open_destination(ref: Reference, options: TransportOptions | None = None) -> ImageDestination:
    """The destination for a reference, whatever its transport."""
    from . import oci

    options = options or TransportOptions()
    if ref.transport in ("oci", "oci-archive"):
        return oci.open_destination(ref)
    if ref.transport == "docker":
        from .registry import RegistryDestination

        return RegistryDestination(ref, options)
    if ref.transport == "containers-storage":
        from ._storage_skopeo import StorageDestination

        return StorageDestination(ref)
    if ref.transport == "docker-archive":
        raise UsageError(f"{ref}: docker-archive: is an input only; write oci-archive: instead")
    raise UsageError(f"{ref}: the {ref.transport}: transport is not supported yet")
