"""The output contract: what a bootc-embed output image says, and where its store keeps what.

Everything another program (or a later bootc-embed) may read from an output is named here and
nowhere else: the format version, the ``io.bootc-embed.*`` annotations (on the manifest and on
each appended layer's descriptor), the kinds of appended layers, the whiteout forms and reuse
origins, every path inside the containers-storage store (relative to ``/``, no leading slash, as
tar entries name them), the ``layers.json`` / ``images.json`` records with both directions of
their JSON, and the one JSON encoder of everything we write.

Readers are lenient where the contract grew: a key this version does not model is kept on the
record (``extra``) and written back after the modelled ones; an unknown layer kind is kept as
its annotation text. New layer kinds (a "pack" layer carrying several store layers, for a layer
budget) and per-platform outputs (an index) extend this module with new keys and values; no
existing key changes meaning. See docs/store-format.md for the store itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ._storage import bigdata_filename
from .errors import ImageFormatError

#: Bumped when the bytes of an app layer made from the same input change (reuse keys carry it).
FORMAT_VERSION = "1"

# -- annotations ---------------------------------------------------------------------------------

_PREFIX = "io.bootc-embed."

#: On every appended layer: its :class:`LayerKind`. Layers without it are the base's.
A_LAYER = _PREFIX + "layer"
#: On app layers: the containers-storage layer id the output layer holds.
A_LAYER_ID = _PREFIX + "layer.id"
#: On app layers: the diff_id of the app's input layer.
A_SOURCE_DIFF_ID = _PREFIX + "source.diff-id"
#: On the manifest and every appended layer: the absolute store path.
A_STORE = _PREFIX + "store"
#: On every appended layer: the :class:`WhiteoutForm` of the build.
A_WHITEOUTS = _PREFIX + "whiteouts"
#: On the manifest and every appended layer: :data:`FORMAT_VERSION`.
A_FORMAT = _PREFIX + "format"
#: On app layers: the name of the embedded image whose embedding wrote the layer.
A_IMAGE = _PREFIX + "image"
#: On the manifest: JSON list of ``{"name", "digest"}`` of the images embedded (see
#: :func:`images_annotation`).
A_IMAGES = _PREFIX + "images"
#: On app layers: how many whiteouts the layer's transform converted.
A_WHITEOUT_COUNT = _PREFIX + "layer.whiteouts"
#: On app layers: how many entries (devices, fifos, hardlinks to them) were left out.
A_LEFT_OUT_COUNT = _PREFIX + "layer.left-out"
#: On the manifest (OCI's key): the digest of the base image's manifest.
A_BASE_DIGEST = "org.opencontainers.image.base.digest"


class LayerKind(StrEnum):
    """The value of :data:`A_LAYER`."""

    APP = "app"  # one store layer: an app layer re-rooted under overlay/<id>/diff/
    METADATA = "metadata"  # the store's records: layers.json, images.json, big data, locks
    CONFIG = "config"  # storage.conf listing the store, Quadlet files


class WhiteoutForm(StrEnum):
    """How an app layer's whiteouts are written in the store (``--whiteouts``)."""

    XATTR = "xattr"  # a 0-byte file with trusted.overlay.whiteout=y (overlayfs, Linux 6.7)
    CHARDEV = "chardev"  # a 0:0 character device, as podman writes it
    OSTREE = "ostree"  # .ostree-wh.NAME, converted by ostree on import


class ReuseOrigin(StrEnum):
    """Where an output layer came from when it was not made by this build."""

    PREVIOUS = "previous"  # the --previous image
    CACHE = "cache"  # the local layer cache
    BASE = "base"  # the base image's store already holds it


@dataclass(frozen=True)
class ReuseKey:
    """What an app layer's output content depends on (its annotations say it)."""

    layer_id: str
    source_diff_id: str
    store: str
    whiteouts: str
    format: str

    @classmethod
    def from_annotations(cls, a: Mapping[str, str]) -> ReuseKey | None:
        try:
            return cls(a[A_LAYER_ID], a[A_SOURCE_DIFF_ID], a[A_STORE], a[A_WHITEOUTS], a[A_FORMAT])
        except KeyError:
            return None

    def annotations(self) -> dict[str, str]:
        return {
            A_LAYER: LayerKind.APP,
            A_LAYER_ID: self.layer_id,
            A_SOURCE_DIFF_ID: self.source_diff_id,
            A_STORE: self.store,
            A_WHITEOUTS: self.whiteouts,
            A_FORMAT: self.format,
        }


@dataclass(frozen=True)
class AnnotatedImage:
    """One entry of the manifest's :data:`A_IMAGES` annotation."""

    name: str
    digest: str  # the embedded image's manifest digest ("" when a writer left it out)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest}


def images_annotation(images: Iterable[AnnotatedImage]) -> str:
    """The :data:`A_IMAGES` value: compact JSON, in embedding order."""
    return dumps([i.to_json() for i in images]).decode()


def parse_images_annotation(text: str | None) -> tuple[AnnotatedImage, ...]:
    """The entries of an :data:`A_IMAGES` value; what cannot be read is left out (the
    annotation only orders what the store records say)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return ()
    out: list[AnnotatedImage] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            digest = item.get("digest")
            out.append(AnnotatedImage(item["name"], digest if isinstance(digest, str) else ""))
    return tuple(out)


# -- JSON ----------------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, in the order given, UTF-8 kept as is.
    Every JSON document bootc-embed writes (manifests, configs, store records) is made here."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- store paths ---------------------------------------------------------------------------------

OVERLAY = "overlay"
OVERLAY_LAYERS = "overlay-layers"
OVERLAY_IMAGES = "overlay-images"
LAYERS_JSON = OVERLAY_LAYERS + "/layers.json"
LAYERS_LOCK = OVERLAY_LAYERS + "/layers.lock"
IMAGES_JSON = OVERLAY_IMAGES + "/images.json"
IMAGES_LOCK = OVERLAY_IMAGES + "/images.lock"
LINK_DIR = OVERLAY + "/l"


@dataclass(frozen=True)
class StorePaths:
    """Every path of the store at ``store`` that bootc-embed writes or reads.

    Paths are relative to ``/`` without a leading slash (as layer tars name them); the store
    root itself is :attr:`root`, its absolute form :attr:`absolute`.
    """

    root: str

    @classmethod
    def of(cls, store: str) -> StorePaths:
        return cls(store.strip("/"))

    @property
    def absolute(self) -> str:
        return "/" + self.root

    @property
    def prefix(self) -> str:
        """What every path in the store starts with."""
        return self.root + "/" if self.root else ""

    def join(self, rel: str) -> str:
        return self.prefix + rel

    def ancestors(self) -> Iterator[str]:
        """The store root's directories, top-down, ending with the root itself."""
        parts = self.root.split("/") if self.root else []
        for i in range(1, len(parts) + 1):
            yield "/".join(parts[:i])

    # the records and their lock files
    @property
    def layers_json(self) -> str:
        return self.join(LAYERS_JSON)

    @property
    def layers_lock(self) -> str:
        return self.join(LAYERS_LOCK)

    @property
    def images_json(self) -> str:
        return self.join(IMAGES_JSON)

    @property
    def images_lock(self) -> str:
        return self.join(IMAGES_LOCK)

    @property
    def overlay(self) -> str:
        return self.join(OVERLAY)

    @property
    def overlay_layers(self) -> str:
        return self.join(OVERLAY_LAYERS)

    @property
    def overlay_images(self) -> str:
        return self.join(OVERLAY_IMAGES)

    @property
    def link_dir(self) -> str:
        """``overlay/l``: one symlink per layer, named by its link id."""
        return self.join(LINK_DIR)

    # one layer
    def layer_dir(self, layer_id: str) -> str:
        return self.join(f"{OVERLAY}/{layer_id}")

    def diff(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/diff"

    def link_file(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/link"

    def lower(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/lower"

    def empty(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/empty"

    def work(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/work"

    def merged(self, layer_id: str) -> str:
        return self.layer_dir(layer_id) + "/merged"

    def link(self, link: str) -> str:
        """``overlay/l/<link>``, the symlink to a layer's ``diff``."""
        return f"{self.link_dir}/{link}"

    @staticmethod
    def link_target(layer_id: str) -> str:
        """What ``overlay/l/<link>`` points to (relative to ``overlay/l``)."""
        return f"../{layer_id}/diff"

    def tar_split(self, layer_id: str) -> str:
        return self.join(f"{OVERLAY_LAYERS}/{layer_id}.tar-split.gz")

    # one image
    def image_dir(self, image_id: str) -> str:
        return self.join(f"{OVERLAY_IMAGES}/{image_id}")

    def big_data(self, image_id: str, key: str) -> str:
        return f"{self.image_dir(image_id)}/{bigdata_filename(key)}"

    # reading paths back
    def in_diff(self, path: str) -> tuple[str, str] | None:
        """(layer id, path inside ``diff/``) for a path under ``overlay/<id>/diff/``."""
        head = self.join(OVERLAY + "/")
        if not path.startswith(head):
            return None
        lid, _, tail = path[len(head) :].partition("/")
        if not tail.startswith("diff/"):
            return None
        return lid, tail[len("diff/") :]


# -- records -------------------------------------------------------------------------------------


def _fail(what: str, message: str) -> ImageFormatError:
    return ImageFormatError(f"{what}: {message}")


def _str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _fail(what, f"{key!r} is {_shown(value)}, not a string")
    return value


def _int(obj: Mapping[str, Any], key: str, what: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(what, f"{key!r} is {_shown(value)}, not an integer")
    return value


def _ints(obj: Mapping[str, Any], key: str, what: str) -> tuple[int, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise _fail(what, f"{key!r} is {_shown(value)}, not a list of integers")
    return tuple(value)


def _strs(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(what, f"{key!r} is {_shown(value)}, not a list of strings")
    return tuple(value)


def _map(obj: Mapping[str, Any], key: str, what: str, kind: type) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value.values()
    ):
        raise _fail(what, f"{key!r} is {_shown(value)}, not a map of {kind.__name__} values")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "missing"
    return text if len(text) <= 60 else text[:57] + "..."


def _record(obj: Any, what: str) -> tuple[dict[str, Any], str]:
    """A record object and how messages name it (by its id)."""
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what} is {_shown(obj)}, not a JSON object")
    rid = obj.get("id")
    if not isinstance(rid, str):
        raise ImageFormatError(f"{what} has no string 'id' ({_shown(rid)})")
    return obj, f"{what} ({rid})"


_LAYER_KEYS = frozenset(
    (
        "id",
        "parent",
        "created",
        "compressed-diff-digest",
        "compressed-size",
        "diff-digest",
        "diff-size",
        "compression",
        "uidset",
        "gidset",
    )
)


@dataclass(frozen=True)
class LayerRecord:
    """One ``layers.json`` record (containers/storage ``Layer``)."""

    id: str
    parent: str | None
    created: str | None
    compressed_digest: str | None
    compressed_size: int | None
    diff_digest: str | None
    diff_size: int | None
    compression: int
    uids: tuple[int, ...] | None  # None: no uidset (podman leaves it out when empty)
    gids: tuple[int, ...] | None
    #: keys this version does not model (podman's names, flags, uidmap...), in their order
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The record as podman writes it: its keys, in its order (extra keys last)."""
        rec: dict[str, Any] = {"id": self.id}
        if self.parent is not None:
            rec["parent"] = self.parent
        if self.created is not None:
            rec["created"] = self.created
        if self.compressed_digest is not None:
            rec["compressed-diff-digest"] = self.compressed_digest
        if self.compressed_size is not None:
            rec["compressed-size"] = self.compressed_size
        if self.diff_digest is not None:
            rec["diff-digest"] = self.diff_digest
        if self.diff_size is not None:
            rec["diff-size"] = self.diff_size
        if self.compression:  # omitempty, as podman writes it
            rec["compression"] = self.compression
        if self.uids is not None:
            rec["uidset"] = list(self.uids)
        if self.gids is not None:
            rec["gidset"] = list(self.gids)
        for key, value in self.extra.items():
            rec.setdefault(key, value)
        return rec

    @classmethod
    def from_json(cls, obj: Any, what: str) -> LayerRecord:
        """A record read back; ``what`` names it in errors (e.g. ``.../layers.json record 3``)."""
        rec, what = _record(obj, what)
        return cls(
            id=rec["id"],
            parent=_str(rec, "parent", what),
            created=_str(rec, "created", what),
            compressed_digest=_str(rec, "compressed-diff-digest", what),
            compressed_size=_int(rec, "compressed-size", what),
            diff_digest=_str(rec, "diff-digest", what),
            diff_size=_int(rec, "diff-size", what),
            compression=_int(rec, "compression", what) or 0,
            uids=_ints(rec, "uidset", what),
            gids=_ints(rec, "gidset", what),
            extra={k: v for k, v in rec.items() if k not in _LAYER_KEYS},
        )


@dataclass(frozen=True)
class BigData:
    """One big-data item of an image: written with its content (a file of its own beside
    ``images.json``); read back from ``images.json``, only its recorded size and digest."""

    key: str
    data: bytes | None = field(default=None, repr=False)
    recorded_size: int | None = None
    recorded_digest: str | None = None

    @property
    def filename(self) -> str:
        return bigdata_filename(self.key)

    @property
    def content(self) -> bytes:
        """The content to write (an item read back from images.json has none)."""
        if self.data is None:
            raise ValueError(f"big data {self.key!r} was read without its content")
        return self.data

    @property
    def size(self) -> int | None:
        return len(self.data) if self.data is not None else self.recorded_size

    @property
    def digest(self) -> str | None:
        if self.data is not None:
            return "sha256:" + hashlib.sha256(self.data).hexdigest()
        return self.recorded_digest


_IMAGE_KEYS = frozenset(
    (
        "id",
        "digest",
        "names",
        "layer",
        "big-data-names",
        "big-data-sizes",
        "big-data-digests",
        "created",
    )
)


@dataclass(frozen=True)
class ImageRecord:
    """One ``images.json`` record (containers/storage ``Image``)."""

    id: str
    digest: str | None
    names: tuple[str, ...]
    top_layer: str | None
    created: str | None
    big_data: tuple[BigData, ...]
    #: keys this version does not model (names-history, metadata, podman's digests...)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The record as podman 5 writes it (names-history = names and metadata ``{}`` unless
        the record was read with others)."""
        extra = self.extra
        rec: dict[str, Any] = {"id": self.id}
        if self.digest is not None:
            rec["digest"] = self.digest
        rec["names"] = list(self.names)
        rec["names-history"] = extra.get("names-history", list(self.names))
        if self.top_layer is not None:
            rec["layer"] = self.top_layer
        rec["metadata"] = extra.get("metadata", "{}")
        rec["big-data-names"] = [b.key for b in self.big_data]
        rec["big-data-sizes"] = {b.key: b.size for b in self.big_data if b.size is not None}
        rec["big-data-digests"] = {b.key: b.digest for b in self.big_data if b.digest is not None}
        if self.created is not None:
            rec["created"] = self.created
        for key, value in extra.items():
            rec.setdefault(key, value)
        return rec

    @classmethod
    def from_json(cls, obj: Any, what: str) -> ImageRecord:
        """A record read back; ``what`` names it in errors."""
        rec, what = _record(obj, what)
        sizes = _map(rec, "big-data-sizes", what, int)
        digests = _map(rec, "big-data-digests", what, str)
        return cls(
            id=rec["id"],
            digest=_str(rec, "digest", what),
            names=_strs(rec, "names", what),
            top_layer=_str(rec, "layer", what),
            created=_str(rec, "created", what),
            big_data=tuple(
                BigData(key, recorded_size=sizes.get(key), recorded_digest=digests.get(key))
                for key in _strs(rec, "big-data-names", what)
            ),
            extra={k: v for k, v in rec.items() if k not in _IMAGE_KEYS},
        )

    def big_data_item(self, key: str) -> BigData | None:
        return next((b for b in self.big_data if b.key == key), None)


def layers_json(records: Iterable[LayerRecord]) -> bytes:
    return dumps([r.to_json() for r in records])


def images_json(records: Iterable[ImageRecord]) -> bytes:
    return dumps([r.to_json() for r in records])


def _records(data: bytes, what: str) -> list[Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, list):
        raise ImageFormatError(f"{what} is not a JSON array")
    return value


def load_layers(data: bytes, what: str) -> tuple[LayerRecord, ...]:
    """The records of a ``layers.json`` (``what`` names the file in errors)."""
    return tuple(
        LayerRecord.from_json(r, f"{what} record {i + 1}")
        for i, r in enumerate(_records(data, what))
    )


def load_images(data: bytes, what: str) -> tuple[ImageRecord, ...]:
    """The records of an ``images.json`` (``what`` names the file in errors)."""
    return tuple(
        ImageRecord.from_json(r, f"{what} record {i + 1}")
        for i, r in enumerate(_records(data, what))
    )
