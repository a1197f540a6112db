"""The one reader of a bootc-embed output: what its manifest says, and its store's records.

:class:`OutputImage` reads one image (one platform) from its resolved manifest and config, with
no I/O: the manifest's annotations (format, store path, embedded images, base digest) and every
layer classified by its descriptor's annotations (:class:`OutputLayer`: a layer of the base, or
an appended app, metadata or config layer with what its annotations record). The store's
records (``images.json``, ``layers.json``) are read on demand by streaming the metadata layer
(:meth:`OutputImage.read_records`); app layers are never read. Used by ``--previous``
(``_reuse.Previous``), ``inspect``, ``diff`` and ``verify``.

Outputs of earlier versions stay readable: the metadata layer is the last layer annotated
``metadata`` (an image embedded in stages has several) and, for ``--previous``, the last layer
when none is annotated (:meth:`OutputImage.records_layer`); the store path is the manifest's
annotation, else the one the appended layers carry, else the default.

Room for what comes next:

- a layer that carries several store layers (a "pack", for a layer budget) gets a new
  :class:`~._contract.LayerKind` and an annotation listing its store layer ids; readers ask
  :meth:`OutputImage.layer_holding` for the output layer holding a store layer and
  :attr:`OutputLayer.store_layer_ids` for what a layer holds, never the descriptor's
  annotations, so only those two change;
- an index of per-platform images is read one platform at a time: each is a
  :class:`~._transports.ResolvedImage`, so an index reader is a mapping of platform to
  :class:`OutputImage`, made from the same source; nothing here assumes a single platform.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import _storage
from ._contract import (
    A_BASE_DIGEST,
    A_FORMAT,
    A_IMAGE,
    A_IMAGES,
    A_LAYER,
    A_LAYER_ID,
    A_LEFT_OUT_COUNT,
    A_STORE,
    A_WHITEOUT_COUNT,
    AnnotatedImage,
    ImageRecord,
    LayerKind,
    LayerRecord,
    ReuseKey,
    StorePaths,
    load_images,
    load_layers,
    parse_images_annotation,
)
from ._layertar import open_layer_tar
from ._model import Descriptor, Manifest, Platform
from ._reference import parse_reference
from ._tar import REG, TarFormatError
from ._transports import ImageSource, ResolvedImage, TransportOptions, open_source, resolve
from .errors import ImageFormatError

#: images.json and layers.json larger than this are refused (they are kept in memory)
RECORDS_LIMIT = 64 << 20


def _count(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _absolute(store: str) -> str:
    return "/" + store.strip("/")


@dataclass(frozen=True)
class OutputLayer:
    """One layer of an output, as its descriptor's annotations describe it."""

    index: int  # position in the manifest, from 0
    descriptor: Descriptor
    diff_id: str

    @property
    def annotations(self) -> dict[str, str]:
        return self.descriptor.annotations

    @property
    def kind_text(self) -> str | None:
        """The layer kind as annotated (also kinds this version does not know); None for a
        layer of the base."""
        return self.annotations.get(A_LAYER)

    @property
    def appended(self) -> bool:
        """Written by bootc-embed (by this build or an earlier one the base went through)."""
        return A_LAYER in self.annotations

    @property
    def kind(self) -> LayerKind | None:
        """None for a layer of the base, and for a kind this version does not know."""
        try:
            return LayerKind(self.kind_text) if self.kind_text is not None else None
        except ValueError:
            return None

    @property
    def reuse_key(self) -> ReuseKey | None:
        return ReuseKey.from_annotations(self.annotations)

    @property
    def image(self) -> str | None:
        """The embedded image whose embedding wrote the layer (app layers)."""
        return self.annotations.get(A_IMAGE)

    @property
    def store_layer_id(self) -> str | None:
        return self.annotations.get(A_LAYER_ID)

    @property
    def store_layer_ids(self) -> tuple[str, ...]:
        """The store layers this output layer holds (one for an app layer)."""
        lid = self.store_layer_id
        return (lid,) if lid and self.kind is LayerKind.APP else ()

    @property
    def store(self) -> str | None:
        return self.annotations.get(A_STORE)

    @property
    def format(self) -> str | None:
        return self.annotations.get(A_FORMAT)

    @property
    def whiteouts(self) -> int | None:
        """Whiteouts converted, as annotated (None when not annotated or not a number)."""
        return _count(self.annotations.get(A_WHITEOUT_COUNT))

    @property
    def left_out(self) -> int | None:
        """Entries left out, as annotated (None when not annotated or not a number)."""
        return _count(self.annotations.get(A_LEFT_OUT_COUNT))


@dataclass(frozen=True)
class StoreRecords:
    """The store's records, as the metadata layer holds them."""

    images: tuple[ImageRecord, ...]
    layers: tuple[LayerRecord, ...]
    _by_id: dict[str, LayerRecord] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {r.id: r for r in self.layers})

    def layer(self, layer_id: str) -> LayerRecord | None:
        """The record of a layer (the last one when a broken store has several)."""
        return self._by_id.get(layer_id)

    def chain(self, top: str | None) -> list[str]:
        """Layer ids from ``top`` down its parents, bottom-up (ids without a record end it;
        a loop is cut where it closes)."""
        ids: list[str] = []
        seen: set[str] = set()
        lid = top
        while lid is not None and lid not in seen:
            seen.add(lid)
            ids.append(lid)
            rec = self._by_id.get(lid)
            lid = rec.parent if rec is not None else None
        ids.reverse()
        return ids


class OutputImage:
    """One platform's image, read as a bootc-embed output (see the module documentation)."""

    def __init__(self, image: ResolvedImage) -> None:
        self.resolved = image
        self.layers = tuple(
            OutputLayer(i, d, diff_id)
            for i, (d, diff_id) in enumerate(
                zip(image.manifest.layers, image.diff_ids, strict=True)
            )
        )

    @property
    def source(self) -> ImageSource:
        return self.resolved.source

    @property
    def reference(self) -> str:
        return str(self.source.reference)

    @property
    def manifest(self) -> Manifest:
        return self.resolved.manifest

    @property
    def annotations(self) -> dict[str, str]:
        return self.manifest.annotations

    # -- the manifest's annotations --------------------------------------------------------

    @property
    def format(self) -> str | None:
        """The format version: the manifest's, else the metadata layer's."""
        meta = self.metadata_layer
        return self.annotations.get(A_FORMAT) or (meta.format if meta is not None else None)

    @property
    def images(self) -> tuple[AnnotatedImage, ...]:
        """The embedded images the manifest lists, in embedding order."""
        return parse_images_annotation(self.annotations.get(A_IMAGES))

    @property
    def base_digest(self) -> str | None:
        return self.annotations.get(A_BASE_DIGEST)

    def store_path(self, layer: OutputLayer | None = None) -> str:
        """The absolute store path: the manifest's annotation, else ``layer``'s (by default,
        that of the last layer that carries one), else the default store."""
        store = self.annotations.get(A_STORE)
        if not store:
            if layer is not None:
                store = layer.store
            else:
                for each in self.layers:
                    if each.store:
                        store = each.store
        return _absolute(store or _storage.DEFAULT_STORE)

    # -- layers ----------------------------------------------------------------------------

    @property
    def base_layers(self) -> tuple[OutputLayer, ...]:
        return tuple(layer for layer in self.layers if not layer.appended)

    @property
    def app_layers(self) -> tuple[OutputLayer, ...]:
        return tuple(layer for layer in self.layers if layer.kind is LayerKind.APP)

    @property
    def metadata_layer(self) -> OutputLayer | None:
        """The last layer annotated ``metadata`` (the newest store records), if any."""
        found = [layer for layer in self.layers if layer.kind is LayerKind.METADATA]
        return found[-1] if found else None

    def records_layer(self) -> OutputLayer | None:
        """Where the store records are: the metadata layer, else (outputs that did not
        annotate it) the last layer."""
        meta = self.metadata_layer
        if meta is None and self.layers:
            return self.layers[-1]
        return meta

    def layer_holding(self, store_layer_id: str) -> OutputLayer | None:
        """The output layer holding a store layer (the last one, when several do)."""
        found = None
        for layer in self.layers:
            if store_layer_id in layer.store_layer_ids:
                found = layer
        return found

    # -- the store's records ---------------------------------------------------------------

    def read_records(
        self, layer: OutputLayer, store: str, what: str, *, images: bool = True
    ) -> StoreRecords:
        """The records of the store at ``store`` that ``layer`` holds, read by streaming it
        (its digest checked); ``images=False`` reads layers.json only. ``what`` names the
        layer in errors, which are :class:`~.errors.ImageFormatError` for a missing, malformed
        or too large file and :class:`~.errors.BootcEmbedError` for an unreadable blob."""
        store = _absolute(store)
        paths = StorePaths.of(store)
        wanted = {paths.images_json: "images"} if images else {}
        wanted[paths.layers_json] = "layers"
        found: dict[str, bytes] = {}
        try:
            with open_layer_tar(self.source, layer.descriptor, what) as tar:
                for e in tar:
                    name = e.name.decode("utf-8", "replace").lstrip("/").removeprefix("./")
                    key = wanted.get(name)
                    if key is None or e.typeflag != REG:
                        continue
                    if e.size > RECORDS_LIMIT:
                        raise ImageFormatError(f"{what}: {name} is too large ({e.size} bytes)")
                    buf = bytearray()
                    tar.reader.read_content(buf.extend)
                    found[key] = bytes(buf)
        except TarFormatError as e:
            raise ImageFormatError(f"{what}: not a valid tar stream: {e}") from None
        for rel, key in wanted.items():
            if key not in found:
                raise ImageFormatError(
                    f"{what}: no /{rel} (the store path is {store}; `bootc-embed verify` checks "
                    f"the whole image)"
                )
        return StoreRecords(
            images=load_images(found["images"], f"{what}: images.json") if images else (),
            layers=load_layers(found["layers"], f"{what}: layers.json"),
        )


@contextlib.contextmanager
def open_output(
    ref: str, platform: Platform | None = None, options: TransportOptions | None = None
) -> Iterator[OutputImage]:
    """The image at ``ref`` (one platform of an index) as an :class:`OutputImage`; its source
    is closed when the block ends."""
    source = open_source(parse_reference(ref), options)
    try:
        yield OutputImage(resolve(source, platform))
    finally:
        source.close()
