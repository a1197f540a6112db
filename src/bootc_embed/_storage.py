"""The containers-storage format (overlay driver) as pure functions.

Facts from containers/storage (``layers.go``, ``images.go``, ``drivers/overlay``) and
containers/image (``storage/storage_dest.go``); see docs/store-format.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_STORE = "/usr/lib/containers/storage"
MAX_LOWER_CHAIN = 500

# layers.json "compression" values (containers/storage pkg/archive.Compression)
COMPRESSION_NONE = 0
COMPRESSION_GZIP = 2
COMPRESSION_ZSTD = 4

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BIGDATA_PLAIN = re.compile(r"^[.0-9a-z]+$")


def digest_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX64.match(hexpart):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def layer_id(parent_id: str | None, diff_id: str) -> str:
    """containers/image's layer id: hex(diffID) for a base layer, else
    sha256_hex(parent_id + "+" + hex(diffID)). Not the OCI ChainID."""
    hexpart = digest_hex(diff_id)
    if parent_id is None:
        return hexpart
    return hashlib.sha256(f"{parent_id}+{hexpart}".encode()).hexdigest()


def layer_ids(diff_ids: Sequence[str]) -> list[str]:
    """Layer ids of a whole chain, bottom-up."""
    ids: list[str] = []
    parent: str | None = None
    for d in diff_ids:
        parent = layer_id(parent, d)
        ids.append(parent)
    return ids


def link_id(layer: str) -> str:
    """26 characters of base32 (A-Z2-7) of sha256 over the layer id's hex string.

    podman draws link ids at random; ours are derived so that builds are reproducible and
    distinct layers get distinct links."""
    return base64.b32encode(hashlib.sha256(layer.encode("ascii")).digest()).decode("ascii")[:26]


def lower_chain(ancestors_nearest_first: Sequence[str]) -> str:
    """Contents of a layer's ``lower`` file: ``l/<link>`` of each ancestor, nearest first."""
    if len(ancestors_nearest_first) > MAX_LOWER_CHAIN:
        raise ValueError(f"a layer chain may hold at most {MAX_LOWER_CHAIN} layers")
    return ":".join("l/" + link_id(a) for a in ancestors_nearest_first)


def bigdata_filename(key: str) -> str:
    """``makeBigDataBaseName``: keys of ``.``, ``0-9``, ``a-z`` only are used as they are,
    any other key becomes ``=`` + standard base64 of the key."""
    if _BIGDATA_PLAIN.match(key):
        return key
    return "=" + base64.b64encode(key.encode("utf-8")).decode("ascii")


def manifest_key(digest: str) -> str:
    return "manifest-" + digest


def dumps(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, in the order given."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class LayerRecord:
    id: str
    parent: str | None
    created: str
    compressed_digest: str
    compressed_size: int
    diff_digest: str
    diff_size: int
    compression: int
    uids: tuple[int, ...]
    gids: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id}
        if self.parent is not None:
            rec["parent"] = self.parent
        rec["created"] = self.created
        rec["compressed-diff-digest"] = self.compressed_digest
        rec["compressed-size"] = self.compressed_size
        rec["diff-digest"] = self.diff_digest
        rec["diff-size"] = self.diff_size
        if self.compression:  # omitempty, as podman writes it
            rec["compression"] = self.compression
        rec["uidset"] = list(self.uids)
        rec["gidset"] = list(self.gids)
        return rec


@dataclass(frozen=True)
class BigData:
    key: str
    data: bytes

    @property
    def filename(self) -> str:
        return bigdata_filename(self.key)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ImageRecord:
    id: str
    digest: str
    names: tuple[str, ...]
    top_layer: str | None
    created: str
    big_data: tuple[BigData, ...]

    def to_json(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id, "digest": self.digest, "names": list(self.names)}
        rec["names-history"] = list(self.names)
        if self.top_layer is not None:
            rec["layer"] = self.top_layer
        rec["metadata"] = "{}"
        rec["big-data-names"] = [b.key for b in self.big_data]
        rec["big-data-sizes"] = {b.key: len(b.data) for b in self.big_data}
        rec["big-data-digests"] = {b.key: b.digest for b in self.big_data}
        rec["created"] = self.created
        return rec


def layers_json(records: Iterable[LayerRecord]) -> bytes:
    return dumps([r.to_json() for r in records])


def images_json(records: Iterable[ImageRecord]) -> bytes:
    return dumps([r.to_json() for r in records])


def sorted_ids(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(values)))
