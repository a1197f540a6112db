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

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import _storage
from ._contract import A_LAYER, A_LEFT_OUT_COUNT, A_WHITEOUT_COUNT, LayerKind, ReuseKey, StorePaths
from ._layertar import LayerTar, open_layer_tar
from ._model import Descriptor, Platform
from ._reference import Reference
from ._tar import REG, TarFormatError
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


def _count(text: str | None) -> int:
    try:
        return max(int(text or 0), 0)
    except ValueError:
        return 0


def input_compression(media_type: str) -> int:
    for word, value in _COMPRESSION_OF_MEDIA_TYPE.items():
        if word in media_type:
            return value
    return _storage.COMPRESSION_NONE


def _find_member(tar: LayerTar, name: str) -> bytes | None:
    """One regular file of a layer tar, read by streaming (the last one of that name)."""
    data: bytes | None = None
    for e in tar:
        if e.typeflag == REG and e.name.decode("utf-8", "replace").lstrip("./") == name:
            buf = bytearray()
            tar.reader.read_content(buf.extend)
            data = bytes(buf)
    return data


class Previous:
    """A previous bootc-embed output, read for layers to reuse (``--previous``)."""

    def __init__(
        self, ref: Reference, platform: Platform | None, options: TransportOptions | None = None
    ) -> None:
        self.reference = ref
        self._source = open_source(ref, options)
        try:
            self.image: ResolvedImage = resolve(self._source, platform)
        except BaseException:
            self._source.close()
            raise
        m = self.image.manifest
        diff_ids = self.image.diff_ids
        self._by_key: dict[ReuseKey, tuple[Descriptor, str]] = {}
        self._by_diff_id: dict[str, Descriptor] = {}
        self.metadata: tuple[Descriptor, str] | None = None
        for desc, diff_id in zip(m.layers, diff_ids, strict=True):
            self._by_diff_id.setdefault(diff_id, desc)
            key = ReuseKey.from_annotations(desc.annotations)
            if key is not None:
                self._by_key[key] = (desc, diff_id)
            if desc.annotations.get(A_LAYER) == LayerKind.METADATA:
                self.metadata = (desc, diff_id)
        if self.metadata is None and m.layers:
            self.metadata = (m.layers[-1], diff_ids[-1])  # older outputs: the last layer
        self._records: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _layer_records(self, store: str) -> dict[str, dict[str, Any]]:
        with self._lock:  # layer tasks ask from several threads at once
            if self._records is None:
                self._records = self._read_records(store)
            return self._records

    def _read_records(self, store: str) -> dict[str, dict[str, Any]]:
        """The previous store's layers.json records, by layer id (empty when unreadable)."""
        records: dict[str, dict[str, Any]] = {}
        if self.metadata is None:
            return records
        name = StorePaths.of(store).layers_json
        try:
            with open_layer_tar(self._source, self.metadata[0], f"{self.reference}: metadata") as t:
                data = _find_member(t, name)
        except (BootcEmbedError, TarFormatError):
            data = None
        if data:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                for rec in json.loads(data):
                    records[str(rec["id"])] = rec
        return records

    def _reusable(self, desc: Descriptor, diff_id: str, rec: dict[str, Any] | None) -> Reusable:
        def opener(d: Descriptor = desc) -> BinaryIO:
            return self.open_raw(d)

        rec = rec or {}
        return Reusable(
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            diff_id=diff_id,
            uids=tuple(rec.get("uidset") or ()),
            gids=tuple(rec.get("gidset") or ()),
            input_diff_size=int(rec.get("diff-size") or 0),
            input_compression=int(rec.get("compression") or 0) if rec else None,
            input_digest=rec.get("compressed-diff-digest") if rec else None,
            whiteouts=_count(desc.annotations.get(A_WHITEOUT_COUNT)),
            left_out=_count(desc.annotations.get(A_LEFT_OUT_COUNT)),
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
        if rec is None or rec.get("diff-digest") != key.source_diff_id:
            return None
        return self._reusable(found[0], found[1], rec)

    def by_diff_id(self, diff_id: str) -> Reusable | None:
        """A previous layer with exactly this content (for outputs without annotations)."""
        desc = self._by_diff_id.get(diff_id)
        return None if desc is None else self._reusable(desc, diff_id, None)

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        return self._source.open_raw(desc)

    def interrupt(self) -> None:
        """Stop the previous image's transfers now (a registry's), as the build fails."""
        interrupt = getattr(self._source, "interrupt", None)
        if interrupt is not None:
            interrupt()

    def close(self) -> None:
        self._source.close()
