"""Transports: each translates one kind of image storage to and from the image model.

The interface they implement (:class:`ImageSource`, :class:`ImageDestination`) and the blob
helpers are in :mod:`._base`; this module picks the transport for a reference and follows a
reference to one platform's image (:func:`resolve`).
"""

from __future__ import annotations

from .._model import (
    INDEX_TYPES,
    Manifest,
    Platform,
    index_manifests,
    load_json,
    sniff_media_type,
)
from .._reference import Reference
from ..errors import ImageFormatError, ImageReferenceError, UsageError
from ._base import (
    MAX_METADATA_BYTES,
    ImageDestination,
    ImageSource,
    ResolvedImage,
    TransportOptions,
    open_blob,
    read_blob,
)

__all__ = [
    "MAX_METADATA_BYTES",
    "ImageDestination",
    "ImageSource",
    "ResolvedImage",
    "TransportOptions",
    "open_blob",
    "open_destination",
    "open_source",
    "read_blob",
    "resolve",
]


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
