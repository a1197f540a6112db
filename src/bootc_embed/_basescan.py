"""What the base image already holds that bootc-embed must respect.

The base's layers are streamed top-down (the topmost layer that names a path, deletes it or
makes its directory opaque decides) to find: the effective ``storage.conf``, an existing store
at the store path (images embedded by an earlier bootc-embed run), bootc's logically bound
images (``/usr/lib/bootc/bound-images.d``) and the Quadlet files they point to, the kernel
versions in ``/usr/lib/modules``, and the metadata of the directories a config layer writes
into. Each layer's findings are cached by its digest, so a rebuild reads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ._contract import IMAGES_JSON, LAYERS_JSON, OVERLAY, OVERLAY_IMAGES, OVERLAY_LAYERS
from ._layerpath import WH_OPAQUE, WH_PREFIX, rooted
from ._layertar import LayerTar
from ._model import Descriptor
from ._progress import Progress
from ._tar import DIR, LINK, REG, SYMLINK, TarEntry, TarFormatError, TarReader
from ._transports import ImageSource
from .errors import CompressionError, ImageFormatError

SCAN_VERSION = "1"
STORAGE_CONF = ("etc/containers/storage.conf", "usr/share/containers/storage.conf")
BOUND_DIR = "usr/lib/bootc/bound-images.d"
QUADLET_DIRS = ("etc/containers/systemd", "usr/share/containers/systemd")
MODULES_DIR = "usr/lib/modules"
_MAX_SMALL = 4 << 20


@dataclass
class Node:
    """One path's state as a layer leaves it."""

    kind: str  # "file", "dir", "symlink", "link", "other" or "deleted"
    mode: int = 0
    uid: int = 0
    gid: int = 0
    data: bytes | None = None  # small files we care about
    target: str = ""  # symlink or hardlink target
    opaque: bool = False  # a directory whose lower contents are hidden

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "mode": self.mode, "uid": self.uid}
        out["gid"] = self.gid
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode()
        if self.target:
            out["target"] = self.target
        if self.opaque:
            out["opaque"] = True
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Node:
        data = obj.get("data")
        return cls(
            kind=obj["kind"],
            mode=obj.get("mode", 0),
            uid=obj.get("uid", 0),
            gid=obj.get("gid", 0),
            data=base64.b64decode(data) if data is not None else None,
            target=obj.get("target", ""),
            opaque=obj.get("opaque", False),
        )


_ROOTS = (*STORAGE_CONF, BOUND_DIR, *QUADLET_DIRS, MODULES_DIR)
_STORE_FILES = (IMAGES_JSON, LAYERS_JSON)
_STORE_DIRS = (OVERLAY, OVERLAY_IMAGES, OVERLAY_LAYERS)


def _interesting(path: str, store: str) -> bool:
    """Paths whose state the build needs: the roots above, one level below the directories
    among them, and the store's own records and layer directories."""
    if path in STORAGE_CONF or path in ("etc", "etc/containers", "usr/share/containers"):
        return True
    for root in (BOUND_DIR, *QUADLET_DIRS, MODULES_DIR):
        if path == root or (path.startswith(root + "/") and "/" not in path[len(root) + 1 :]):
            return True
    if path == store:
        return True
    if path.startswith(store + "/"):
        rest = path[len(store) + 1 :]
        if rest in _STORE_FILES or rest in _STORE_DIRS:
            return True
        return rest.startswith(OVERLAY + "/") and rest.count("/") == 1
    return False


def _covers(path: str, store: str) -> bool:
    """Deleting or making opaque ``path`` changes something the build needs."""
    if _interesting(path, store):
        return True
    return any(r.startswith(path + "/") for r in (*_ROOTS, store))


def _wants_data(path: str, store: str) -> bool:
    if path in STORAGE_CONF:
        return True
    if any(path.startswith(q + "/") for q in QUADLET_DIRS):
        return True
    if path.startswith(store + "/"):
        rest = path[len(store) + 1 :]
        return rest in _STORE_FILES
    return False


class LayerScan:
    """Collects the interesting paths one layer sets or deletes, entry by entry, from a
    :class:`TarReader` that may be serving another consumer too (an app layer's transform,
    when the base and an app share a layer)."""

    def __init__(self, store: str) -> None:
        self.store = store.strip("/")
        self.found: dict[str, Node] = {}
        self._data: list[tuple[Node, list[bytes]]] = []

    def observe(self, e: TarEntry, reader: TarReader) -> None:
        """Take note of entry ``e``, just yielded by ``reader``."""
        try:
            name = e.name.decode("utf-8")
        except UnicodeDecodeError:
            return
        path = rooted(name)
        if not path:
            return
        store, found = self.store, self.found
        parent, _, base = path.rpartition("/")
        if base == WH_OPAQUE:
            if _covers(parent, store):
                found.setdefault(parent, Node("dir")).opaque = True
            return
        if base.startswith(WH_PREFIX):
            target = base[len(WH_PREFIX) :]
            victim = f"{parent}/{target}" if parent else target
            if _covers(victim, store):
                found[victim] = Node("deleted")
            return
        if not _interesting(path, store):
            return
        kind = {DIR: "dir", SYMLINK: "symlink", LINK: "link"}.get(e.typeflag, "other")
        if e.typeflag in (REG, b"7"):
            kind = "file"
        node = Node(kind, e.mode & 0o7777, e.uid, e.gid)
        if e.typeflag in (SYMLINK, LINK):
            node.target = e.linkname.decode("utf-8", "replace")
        if kind == "file" and _wants_data(path, store) and e.data_size <= _MAX_SMALL:
            chunks: list[bytes] = []
            self._data.append((node, chunks))
            reader.tap = lambda piece: chunks.append(bytes(piece))
        if kind == "dir" and path in found and found[path].opaque:
            node.opaque = True
        found[path] = node

    def finish(self) -> dict[str, Node]:
        """The findings, once the whole layer has been read."""
        for node, chunks in self._data:
            node.data = b"".join(chunks)
        self._data.clear()
        return self.found


def scan_layer(reader: TarReader, store: str) -> dict[str, Node]:
    """The interesting paths one layer sets or deletes."""
    scan = LayerScan(store)
    for e in reader:
        scan.observe(e, reader)
    return scan.finish()


@dataclass
class BaseView:
    """The merged view of the interesting paths of the base image."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def file(self, path: str) -> bytes | None:
        node = self.nodes.get(path)
        return node.data if node is not None and node.kind == "file" else None

    def children(self, directory: str) -> list[str]:
        prefix = directory + "/"
        return sorted(
            p
            for p, n in self.nodes.items()
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and n.kind != "deleted"
        )

    def storage_conf(self) -> tuple[str, bytes, Node] | None:
        """The file podman reads: /etc's if present, else /usr/share's."""
        for path in STORAGE_CONF:
            node = self.nodes.get(path)
            if node is not None and node.kind == "file" and node.data is not None:
                return path, node.data, node
        return None

    def kernels(self) -> list[str]:
        return [p.rsplit("/", 1)[1] for p in self.children(MODULES_DIR)]


def merge(layers_top_down: Iterable[dict[str, Node]]) -> BaseView:
    """Top-down: the first layer that names a path decides; an opaque directory or a deleted
    path hides what lower layers say under it."""
    view = BaseView()
    hidden: list[str] = []
    for found in layers_top_down:
        for path, node in found.items():
            if path in view.nodes or any(path == h or path.startswith(h + "/") for h in hidden):
                continue
            view.nodes[path] = node
        for path, node in found.items():
            if node.kind == "deleted" or node.opaque or node.kind in ("file", "symlink"):
                hidden.append(path)
    view.nodes = {p: n for p, n in view.nodes.items() if n.kind != "deleted"}
    return view


class BaseScanner:
    """Scans base layers once, caching each layer's findings by digest and store path."""

    def __init__(self, cache_dir: Path | None) -> None:
        self._dir = cache_dir / "base-scan" if cache_dir is not None else None

    def _key(self, desc: Descriptor, store: str) -> str:
        ident = f"{SCAN_VERSION}\0{desc.digest}\0{store}"
        return hashlib.sha256(ident.encode()).hexdigest()

    def scan(
        self,
        source: ImageSource,
        layers: Iterable[Descriptor],
        store: str,
        progress: Progress | None = None,
    ) -> BaseView:
        """Scan every layer (bottom-up list) and merge the findings."""
        results = []
        for d in layers:
            found = self.cached(d, store)
            if found is None:
                found = self.scan_blob(source, d, store)
            results.append(found)
            if progress is not None:
                progress.advance(d.size)
        return merge(reversed(results))

    def cached(self, desc: Descriptor, store: str) -> dict[str, Node] | None:
        path = self._path(desc, store)
        if path is None or not path.is_file():
            return None
        try:
            obj = json.loads(path.read_bytes())
            return {p: Node.from_json(n) for p, n in obj.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged entry (e.g. JSON that is not an object): scan again

    def _path(self, desc: Descriptor, store: str) -> Path | None:
        return self._dir / self._key(desc, store.strip("/")) if self._dir is not None else None

    def scan_blob(
        self,
        source: ImageSource,
        desc: Descriptor,
        store: str,
        progress: Progress | None = None,
        copy_to: BinaryIO | None = None,
    ) -> dict[str, Node]:
        """Read one base layer (its digest checked on the way) and cache what it holds; with
        ``copy_to``, the blob's bytes are written there as they are read (one download serves
        the scan and the output's copy)."""
        what = f"{source.reference}: base layer {desc.digest}"
        advance = progress.advance if progress is not None else None
        with LayerTar(source, desc, what, copy_to=copy_to, advance=advance) as layer:
            try:
                found = scan_layer(layer.reader, store.strip("/"))
            except (TarFormatError, CompressionError) as e:
                layer.verify()  # a damaged blob is reported as such
                raise ImageFormatError(f"{what}: cannot be read: {e}") from None
            layer.verify()
        self.remember(desc, store, found)
        return found

    def remember(self, desc: Descriptor, store: str, found: dict[str, Node]) -> None:
        """Cache a layer's findings (best effort: a cache that cannot be written is skipped)."""
        path = self._path(desc, store)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent)
                with os.fdopen(fd, "wb") as f:
                    f.write(json.dumps({p: n.to_json() for p, n in found.items()}).encode())
                os.replace(tmp, path)
            except OSError:
                pass
