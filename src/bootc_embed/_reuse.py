"""Finished output layers found elsewhere: a previous output image (here), or the local cache
(``_cache``).

An app layer's output bytes (uncompressed) are a function of its :class:`ReuseKey`: the
containers-storage layer id (which covers the input diff_id and its chain), the input
diff_id, the store path, the whiteout form and the format version. Every appended layer's
descriptor records those values as annotations, so a rebuild can decide reuse without reading
the input layer at all. Reusing the previous image's compressed blob (rather than a new one
with the same content) keeps the layer digest stable across compressor or level changes, and
hosts never fetch it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from . import _storage
from ._contract import LayerRecord, ReuseKey
from ._model import Descriptor, Platform
from ._output import OutputImage, OutputLayer
from ._reference import Reference
from ._transports import ResolvedImage, TransportOptions, open_source, resolve
from .errors import BootcEmbedError

_COMPRESSION_OF_MEDIA_TYPE = {"gzip": _storage.COMPRESSION_GZIP, "zstd": _storage.COMPRESSION_ZSTD}


@dataclass(frozen=True)
class Reusable:
    """A finished output layer: its blob, content digest and the store facts about its input."""

    media_type: str
    digest: str
    size: int
    diff_id: str
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    input_diff_size: int
    input_compression: int | None  # None: take it from the input's media type
    input_digest: str | None  # the input blob the store record was made from
    whiteouts: int
    left_out: int
    left_out_paths: tuple[str, ...]
    open: Callable[[], BinaryIO]
    origin: str  # how messages name where it came from


def input_compression(media_type: str) -> int:
    for word, value in _COMPRESSION_OF_MEDIA_TYPE.items():
        if word in media_type:
            return value
    return _storage.COMPRESSION_NONE


class Previous:
    """A previous bootc-embed output, read for layers to reuse (``--previous``)."""

    def __init__(
        self, ref: Reference, platform: Platform | None, options: TransportOptions | None = None
    ) -> None:
        self.reference = ref
        self._source = open_source(ref, options)
        try:
            self.image: ResolvedImage = resolve(self._source, platform)
            self.output = OutputImage(self.image)
        except BaseException:
            self._source.close()
            raise
        self._by_key: dict[ReuseKey, OutputLayer] = {}
        self._by_diff_id: dict[str, OutputLayer] = {}
        for layer in self.output.layers:
            self._by_diff_id.setdefault(layer.diff_id, layer)
            key = layer.reuse_key
            if key is not None:
                self._by_key[key] = layer
        self.metadata = self.output.records_layer()
        self._records: dict[str, LayerRecord] | None = None
        self._lock = threading.Lock()

    def _layer_records(self, store: str) -> dict[str, LayerRecord]:
        with self._lock:  # layer tasks ask from several threads at once
            if self._records is None:
                self._records = self._read_records(store)
            return self._records

    def _read_records(self, store: str) -> dict[str, LayerRecord]:
        """The previous store's layers.json records, by layer id (empty when unreadable)."""
        if self.metadata is None:
            return {}
        what = f"{self.reference}: metadata"
        try:
            records = self.output.read_records(self.metadata, store, what, images=False)
        except BootcEmbedError:
            return {}
        return {r.id: r for r in records.layers}

    def _reusable(self, layer: OutputLayer, rec: LayerRecord | None) -> Reusable:
        desc = layer.descriptor

        def opener(d: Descriptor = desc) -> BinaryIO:
            return self.open_raw(d)

        return Reusable(
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            diff_id=layer.diff_id,
            uids=(rec.uids or ()) if rec is not None else (),
            gids=(rec.gids or ()) if rec is not None else (),
            input_diff_size=(rec.diff_size or 0) if rec is not None else 0,
            input_compression=rec.compression if rec is not None else None,
            input_digest=rec.compressed_digest if rec is not None else None,
            whiteouts=max(layer.whiteouts or 0, 0),
            left_out=max(layer.left_out or 0, 0),
            left_out_paths=(),
            open=opener,
            origin=f"previous image {self.reference}",
        )

    def lookup(self, key: ReuseKey) -> Reusable | None:
        """The previous layer made from the same input the same way, with its store record."""
        found = self._by_key.get(key)
        if found is None:
            return None
        rec = self._layer_records(key.store).get(key.layer_id)
        if rec is None or rec.diff_digest != key.source_diff_id:
            return None
        return self._reusable(found, rec)

    def by_diff_id(self, diff_id: str) -> Reusable | None:
        """A previous layer with exactly this content (for outputs without annotations)."""
        layer = self._by_diff_id.get(diff_id)
        return None if layer is None else self._reusable(layer, None)

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        return self._source.open_raw(desc)

    def interrupt(self) -> None:
        """Stop the previous image's transfers now (a registry's), as the build fails."""
        self._source.interrupt()

    def close(self) -> None:
        self._source.close()
