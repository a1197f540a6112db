"""The image model every transport produces and consumes: descriptors, manifests, platforms."""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from .errors import ImageFormatError, UsageError

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# Layers we can read, and the OCI media type a base layer gets in the output manifest.
LAYER_TYPES = {
    OCI_LAYER: OCI_LAYER,
    OCI_LAYER_GZIP: OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER: OCI_LAYER,
    "application/vnd.oci.image.layer.v1.tar+zstd:chunked": OCI_LAYER_ZSTD,
}
FOREIGN_MARKERS = ("foreign", "nondistributable")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise ImageFormatError(f"{where}: a descriptor is not a JSON object")
        try:
            digest = obj["digest"]
            size = obj["size"]
            media_type = obj.get("mediaType", "")
        except KeyError as e:
            raise ImageFormatError(f"{where}: descriptor lacks {e.args[0]!r}") from None
        if (
            not isinstance(digest, str)
            or not isinstance(media_type, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
        ):
            raise ImageFormatError(f"{where}: malformed descriptor {_short(obj)}")
        plat = obj.get("platform")
        urls = obj.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ImageFormatError(f"{where}: descriptor 'urls' is not a list of strings")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=string_map(obj.get("annotations"), f"{where} annotations"),
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            urls=tuple(urls),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"--platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Platform:
        return cls(
            str(obj.get("os", "")), str(obj.get("architecture", "")), obj.get("variant") or None
        ).normalized()

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch, variant = {
            "x86_64": ("amd64", None),
            "amd64": ("amd64", None),
            "aarch64": ("arm64", None),
            "arm64": ("arm64", None),
            "armv7l": ("arm", "v7"),
            "armv6l": ("arm", "v6"),
            "ppc64le": ("ppc64le", None),
            "s390x": ("s390x", None),
            "riscv64": ("riscv64", None),
            "i686": ("386", None),
        }.get(machine, (machine, None))
        return cls("linux", arch, variant)

    def normalized(self) -> Platform:
        variant = self.variant
        if self.architecture == "arm64" and variant == "v8":
            variant = None
        return Platform(self.os, self.architecture, variant)

    def matches(self, other: Platform) -> bool:
        a, b = self.normalized(), other.normalized()
        if a.os != b.os or a.architecture != b.architecture:
            return False
        return a.variant is None or a.variant == b.variant

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 200 else text[:200] + "..."


def string_map(value: Any, what: str) -> dict[str, str]:
    """An annotations object: string keys to string values (null or absent: empty)."""
    if not value:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImageFormatError(f"{what}: not an object of strings")
    return dict(value)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise ImageFormatError(f"{what} is not usable JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return obj


def sniff_media_type(obj: dict[str, Any]) -> str:
    """A manifest's media type, from its mediaType field or its shape."""
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in obj:
        return OCI_INDEX
    if "layers" in obj and "config" in obj:
        return OCI_MANIFEST
    return ""


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2) with its raw bytes and digest."""

    raw: bytes
    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, digest: str, what: str) -> Manifest:
        obj = load_json(raw, what)
        mt = sniff_media_type(obj)
        if mt not in MANIFEST_TYPES:
            raise ImageFormatError(f"{what}: unsupported manifest type {mt or 'unknown'!r}")
        if obj.get("schemaVersion") != 2:
            raise ImageFormatError(f"{what}: unsupported schemaVersion {obj.get('schemaVersion')}")
        config = Descriptor.from_json(obj.get("config"), f"{what} config")
        layers_obj = obj.get("layers")
        if not isinstance(layers_obj, list):
            raise ImageFormatError(f"{what}: 'layers' is not a list")
        layers = tuple(
            Descriptor.from_json(item, f"{what} layer {i + 1}") for i, item in enumerate(layers_obj)
        )
        annotations = string_map(obj.get("annotations"), f"{what} annotations")
        return cls(raw, digest, mt, config, layers, annotations)


def index_manifests(raw: bytes, what: str) -> list[Descriptor]:
    obj = load_json(raw, what)
    items = obj.get("manifests")
    if not isinstance(items, list):
        raise ImageFormatError(f"{what}: 'manifests' is not a list")
    return [Descriptor.from_json(m, f"{what} entry {i + 1}") for i, m in enumerate(items)]
