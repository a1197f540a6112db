"""``bootc-embed inspect``: the images embedded in an image, from its metadata alone.

Reads the manifest, its annotations and the metadata layer (the appended layer annotated
``io.bootc-embed.layer`` = ``metadata``, the last one when an image was embedded in stages):
``images.json`` and ``layers.json`` of the store, through the output reader (``_output``). App
layers are never read; their blob sizes and whiteout counts come from their descriptors'
annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._contract import A_LAYER, ImageRecord, LayerKind
from ._model import Descriptor, Platform
from ._output import open_output
from ._transports import TransportOptions
from .errors import ImageFormatError


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


def inspect_image(
    ref: str, platform: str | None = None, options: TransportOptions | None = None
) -> InspectResult:
    """The embedded images of the image at ``ref``, from its manifest and metadata layer."""
    plat = Platform.parse(platform) if platform else None
    with open_output(ref, plat, options) as out:
        meta = out.metadata_layer
        if meta is None:
            raise ImageFormatError(
                f"{ref}: no layer annotated {A_LAYER}={LayerKind.METADATA}: the image was not "
                f"made by bootc-embed (`bootc-embed verify {ref}` checks any image's stores)"
            )
        store = out.store_path(meta)
        what = (
            f"{ref}: metadata layer {meta.index + 1}/{len(out.layers)} ({meta.descriptor.digest})"
        )
        records = out.read_records(meta, store, what)

    layers: dict[str, InspectedLayer] = {}

    def layer(lid: str) -> InspectedLayer:
        if lid in layers:
            return layers[lid]
        r = records.layer(lid)
        d = out.layer_holding(lid)
        layers[lid] = InspectedLayer(
            layer_id=lid,
            diff_digest=r.diff_digest if r is not None else None,
            diff_size=r.diff_size if r is not None else None,
            compressed_size=r.compressed_size if r is not None else None,
            digest=d.descriptor.digest if d is not None else None,
            size=d.descriptor.size if d is not None else None,
            whiteouts=d.whiteouts if d is not None else None,
            left_out=d.left_out if d is not None else None,
            brought_by=d.image if d is not None else None,
        )
        return layers[lid]

    # the order of the io.bootc-embed.images annotation, then any other record
    rank: dict[str, int] = {}
    for i, annotated in enumerate(out.images):
        rank.setdefault(annotated.name, i)

    def order(r: ImageRecord) -> tuple[int, str]:
        return (min((rank.get(n, len(rank)) for n in r.names), default=len(rank)), r.id)

    images: list[InspectedImage] = []
    for r in sorted(records.images, key=order):
        chain = [layer(lid) for lid in records.chain(r.top_layer)]
        img = InspectedImage(
            name=r.names[0] if r.names else r.id[:12],
            names=list(r.names),
            manifest_digest=r.digest or "",
            image_id=r.id,
            created=r.created,
            layers=chain,
        )
        for item in chain:
            item.images.append(img.name)
        images.append(img)
    return InspectResult(
        reference=ref,
        manifest_digest=out.manifest.digest,
        store=store,
        format=out.format,
        base_digest=out.base_digest,
        base_layers=len(out.base_layers),
        images=images,
        layers=list(layers.values()),
        metadata_layer=meta.descriptor,
    )
