"""``bootc-embed inspect``: the images embedded in an image, from its metadata alone.

Reads the manifest, its annotations and the metadata layer (the appended layer annotated
``io.bootc-embed.layer`` = ``metadata``, the last one when an image was embedded in stages):
``images.json`` and ``layers.json`` of the store. App layers are never read; their blob sizes
and whiteout counts come from their descriptors' annotations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import _storage
from ._layertar import open_layer_tar
from ._model import Descriptor, Platform
from ._reference import parse_reference
from ._tar import REG, TarFormatError
from ._transports import ImageSource, TransportOptions, open_source
from ._transports import resolve as resolve_image
from .errors import ImageFormatError

A_LAYER = "io.bootc-embed.layer"
A_LAYER_ID = "io.bootc-embed.layer.id"
A_IMAGE = "io.bootc-embed.image"
A_IMAGES = "io.bootc-embed.images"
A_STORE = "io.bootc-embed.store"
A_FORMAT = "io.bootc-embed.format"
A_WHITEOUT_COUNT = "io.bootc-embed.layer.whiteouts"
A_LEFT_OUT_COUNT = "io.bootc-embed.layer.left-out"
A_BASE_DIGEST = "org.opencontainers.image.base.digest"
_RECORDS_LIMIT = 64 << 20


@dataclass
class InspectedLayer:
    layer_id: str
    diff_digest: str | None  # the app layer's diff_id (layers.json diff-digest)
    diff_size: int | None  # its uncompressed size
    compressed_size: int | None  # the app's own blob size
    digest: str | None  # the output layer holding it (None: not in this manifest)
    size: int | None  # that output blob's size
    images: list[str] = field(default_factory=list)  # every embedded image using it
    whiteouts: int | None = None
    left_out: int | None = None
    brought_by: str | None = None  # the image whose embedding wrote the layer

    @property
    def shared(self) -> bool:
        return len(self.images) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "layer_id": self.layer_id,
            "diff_digest": self.diff_digest,
            "diff_size": self.diff_size,
            "compressed_size": self.compressed_size,
            "digest": self.digest,
            "size": self.size,
            "shared": self.shared,
            "images": self.images,
            "whiteouts": self.whiteouts,
            "left_out": self.left_out,
            "brought_by": self.brought_by,
        }


@dataclass
class InspectedImage:
    name: str
    names: list[str]
    manifest_digest: str
    image_id: str
    created: str | None
    layers: list[InspectedLayer]

    @property
    def diff_size(self) -> int:
        return sum(layer.diff_size or 0 for layer in self.layers)

    @property
    def whiteouts(self) -> int:
        return sum(layer.whiteouts or 0 for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "names": self.names,
            "manifest_digest": self.manifest_digest,
            "image_id": self.image_id,
            "created": self.created,
            "diff_size": self.diff_size,
            "whiteouts": self.whiteouts,
            "layers": [layer.layer_id for layer in self.layers],
        }


@dataclass
class InspectResult:
    reference: str
    manifest_digest: str
    store: str
    format: str | None
    base_digest: str | None
    base_layers: int
    images: list[InspectedImage]
    layers: list[InspectedLayer]  # every store layer, bottom-up per image, once
    metadata_layer: Descriptor

    @property
    def shared_layers(self) -> list[InspectedLayer]:
        return [layer for layer in self.layers if layer.shared]

    @property
    def bytes_added(self) -> int:
        return sum(layer.size or 0 for layer in self.layers) + self.metadata_layer.size

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "store": self.store,
            "format": self.format,
            "base_digest": self.base_digest,
            "base_layers": self.base_layers,
            "images": [
                {
                    **img.to_json(),
                    "layers": [layer.to_json() for layer in img.layers],
                }
                for img in self.images
            ],
            "shared_layers": [
                {"layer_id": layer.layer_id, "images": layer.images} for layer in self.shared_layers
            ],
            "metadata_layer": {
                "digest": self.metadata_layer.digest,
                "size": self.metadata_layer.size,
            },
            "totals": {
                "images": len(self.images),
                "layers": len(self.layers),
                "shared_layers": len(self.shared_layers),
                "whiteouts": sum(layer.whiteouts or 0 for layer in self.layers),
                "diff_size": sum(layer.diff_size or 0 for layer in self.layers),
                "bytes_added": self.bytes_added,
            },
        }


def _read_records(
    source: ImageSource, desc: Descriptor, store: str, what: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """images.json and layers.json from the metadata layer (streamed; only they are kept)."""
    prefix = store.strip("/") + "/"
    wanted = {
        prefix + "overlay-images/images.json": "images",
        prefix + "overlay-layers/layers.json": "layers",
    }
    found: dict[str, bytes] = {}
    try:
        with open_layer_tar(source, desc, what) as tar:
            for e in tar:
                name = e.name.decode("utf-8", "replace").lstrip("/")
                name = name.removeprefix("./")
                key = wanted.get(name)
                if key is None or e.typeflag != REG:
                    continue
                if e.size > _RECORDS_LIMIT:
                    raise ImageFormatError(f"{what}: {name} is too large ({e.size} bytes)")
                buf = bytearray()
                tar.reader.read_content(buf.extend)
                found[key] = bytes(buf)
    except TarFormatError as e:
        raise ImageFormatError(f"{what}: not a valid tar stream: {e}") from None
    out: list[list[dict[str, Any]]] = []
    for key in ("images", "layers"):
        if key not in found:
            raise ImageFormatError(
                f"{what}: no {store}/overlay-{key}/{key}.json (the store path is {store}; "
                f"`bootc-embed verify` checks the whole image)"
            )
        try:
            value = json.loads(found[key])
        except (ValueError, UnicodeDecodeError) as e:
            raise ImageFormatError(f"{what}: {key}.json is not valid JSON: {e}") from None
        if not isinstance(value, list):
            raise ImageFormatError(f"{what}: {key}.json is not a JSON array")
        out.append([r for r in value if isinstance(r, dict) and isinstance(r.get("id"), str)])
    return out[0], out[1]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def inspect_image(
    ref: str, platform: str | None = None, options: TransportOptions | None = None
) -> InspectResult:
    """The embedded images of the image at ``ref``, from its manifest and metadata layer."""
    plat = Platform.parse(platform) if platform else None
    source = open_source(parse_reference(ref), options)
    try:
        image = resolve_image(source, plat)
        manifest = image.manifest
        metadata = [d for d in manifest.layers if d.annotations.get(A_LAYER) == "metadata"]
        if not metadata:
            raise ImageFormatError(
                f"{ref}: no layer annotated {A_LAYER}=metadata: the image was not made by "
                f"bootc-embed (`bootc-embed verify {ref}` checks any image's stores)"
            )
        meta = metadata[-1]
        store = "/" + (
            manifest.annotations.get(A_STORE)
            or meta.annotations.get(A_STORE)
            or _storage.DEFAULT_STORE
        ).strip("/")
        index = manifest.layers.index(meta)
        what = f"{ref}: metadata layer {index + 1}/{len(manifest.layers)} ({meta.digest})"
        images_raw, layers_raw = _read_records(source, meta, store, what)
    finally:
        source.close()

    by_desc: dict[str, Descriptor] = {}
    for d in manifest.layers:
        lid = d.annotations.get(A_LAYER_ID)
        if lid and d.annotations.get(A_LAYER) == "app":
            by_desc[lid] = d
    records = {r["id"]: r for r in layers_raw}
    layers: dict[str, InspectedLayer] = {}

    def layer(lid: str) -> InspectedLayer:
        if lid in layers:
            return layers[lid]
        r = records.get(lid, {})
        d = by_desc.get(lid)
        a = d.annotations if d is not None else {}
        layers[lid] = InspectedLayer(
            layer_id=lid,
            diff_digest=r.get("diff-digest"),
            diff_size=r.get("diff-size"),
            compressed_size=r.get("compressed-size"),
            digest=d.digest if d is not None else None,
            size=d.size if d is not None else None,
            whiteouts=_int(a.get(A_WHITEOUT_COUNT)),
            left_out=_int(a.get(A_LEFT_OUT_COUNT)),
            brought_by=a.get(A_IMAGE),
        )
        return layers[lid]

    # the order of the io.bootc-embed.images annotation, then any other record
    try:
        annotated = json.loads(manifest.annotations.get(A_IMAGES) or "[]")
    except ValueError:
        annotated = []
    rank: dict[str, int] = {}
    for i, item in enumerate(annotated if isinstance(annotated, list) else []):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            rank.setdefault(item["name"], i)

    def order(r: dict[str, Any]) -> tuple[int, str]:
        names = [n for n in r.get("names") or [] if isinstance(n, str)]
        return (min((rank.get(n, len(rank)) for n in names), default=len(rank)), r["id"])

    images: list[InspectedImage] = []
    for r in sorted(images_raw, key=order):
        names = [n for n in r.get("names") or [] if isinstance(n, str)]
        chain: list[InspectedLayer] = []
        lid = r.get("layer")
        seen: set[str] = set()
        while isinstance(lid, str) and lid not in seen:
            seen.add(lid)
            chain.append(layer(lid))
            lid = records.get(lid, {}).get("parent")
        chain.reverse()
        img = InspectedImage(
            name=names[0] if names else r["id"][:12],
            names=names,
            manifest_digest=str(r.get("digest") or ""),
            image_id=r["id"],
            created=r.get("created"),
            layers=chain,
        )
        for item in chain:
            item.images.append(img.name)
        images.append(img)
    return InspectResult(
        reference=ref,
        manifest_digest=manifest.digest,
        store=store,
        format=manifest.annotations.get(A_FORMAT) or meta.annotations.get(A_FORMAT),
        base_digest=manifest.annotations.get(A_BASE_DIGEST),
        base_layers=sum(1 for d in manifest.layers if A_LAYER not in d.annotations),
        images=images,
        layers=list(layers.values()),
        metadata_layer=meta,
    )
