"""``bootc-embed verify``: check an image as a bootc host would see it, reading only the image.

Every layer's tar is streamed once, in order, into the host's merged view of what matters (OCI
whiteout semantics: ``.wh.NAME`` deletes NAME of lower layers, ``.wh..wh..opq`` empties a
directory of lower layers' content): the tree under the store path, the effective
``storage.conf`` and the names under ``/usr/lib/modules``. Only metadata and the store's small
files (JSON records, ``link``, ``lower``, tar-splits, big data) are kept in memory; files under
``overlay/<id>/diff/`` are reduced to their size and CRC-64/ISO while they stream past.

Then the checks (shared/docs/store-format.md, shared/docs/consumers.md):

- store consistency: records, layer directories, ``link``/``lower``/``l/``, lock files, unique
  names, big data, and every layer's tar-split against its ``diff/`` content (CRC per file from
  the first pass; the sha256 of the reassembled tar against ``diff-digest`` in a second
  streaming pass over the layers that hold the content: the tar-split of our layers sits at the
  end of the same layer, after the files it describes);
- bootc import rules for the layers bootc-embed appended (device nodes, ``.wh.`` names, UTF-8,
  hardlinks within the layer, nothing under ``/var``, no empty-valued xattrs), and for stores
  found anywhere in the image (a Containerfile-recipe vfs store and its ``.wh.`` names);
- host readiness: the store listed in the effective storage.conf, and a kernel that knows
  xattr whiteouts when the store has them.

Exit status: 0 clean, 1 on any error, 4 on warnings only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import _storage
from ._contract import IMAGES_JSON, LAYERS_JSON, StorePaths
from ._layerpath import OVERLAY_WHITEOUT, WH_OPAQUE, WH_PREFIX, clean
from ._layertar import open_layer_tar
from ._model import Descriptor, Platform
from ._output import OutputImage, OutputLayer, open_output
from ._tar import (
    BLOCKDEV,
    CHAR,
    CONT,
    DIR,
    FIFO,
    LINK,
    REG,
    SYMLINK,
    XGLOBAL,
    TarEntry,
    TarFormatError,
    TarReader,
)
from ._tarsplit import FILE, SEGMENT, crc64, entry_name, read_entries
from ._transports import TransportOptions
from .errors import BootcEmbedError

ERROR = "error"
WARNING = "warning"
INFO = "info"
EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_WARNINGS = 4

CONF_ETC = "etc/containers/storage.conf"
CONF_USR = "usr/share/containers/storage.conf"
MODULES = "usr/lib/modules"
XATTR_WHITEOUTS_SINCE = (6, 7)

_DEVICES = {CHAR: "character device", BLOCKDEV: "block device", FIFO: "fifo"}
_SMALL_LIMIT = 64 << 20  # store files outside diff/ kept in memory up to this size
_CONF_LIMIT = 1 << 20
_PER_KIND = 20  # findings of one check in one layer before they are summarised
_CHUNK = 1 << 20
_DRIVER_DIR = re.compile(r"^(overlay|vfs|btrfs|zfs|aufs|devicemapper)-(images|layers)$")
_LAYER_CONTENT = re.compile(r"(^|/)(overlay/[^/]+/diff|vfs/dir/[^/]+)(/|$)")
_LINK_ID = re.compile(r"^[A-Z2-7]{26}$")
_KERNEL = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class Finding:
    severity: str  # error, warning or info
    check: str  # e.g. store.link, import.device, host.kernel
    message: str
    image: str | None = None
    layer: str | None = None  # containers-storage layer id, else the image layer's digest
    path: str | None = None  # absolute path in the host's tree

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "check": self.check,
            "message": self.message,
        }
        for key in ("image", "layer", "path"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class StoreInfo:
    path: str  # absolute
    driver: str
    checked: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "driver": self.driver, "checked": self.checked}


@dataclass
class VerifyResult:
    reference: str
    manifest_digest: str
    store: str
    findings: list[Finding]
    images: list[str] = field(default_factory=list)
    store_layers: int = 0
    layers_read: int = 0
    stores: list[StoreInfo] = field(default_factory=list)
    kernel: str | None = None
    storage_conf: str | None = None

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def exit_code(self) -> int:
        if self.count(ERROR):
            return EXIT_ERRORS
        if self.count(WARNING):
            return EXIT_WARNINGS
        return EXIT_OK

    @property
    def status(self) -> str:
        return {EXIT_OK: "ok", EXIT_ERRORS: "errors", EXIT_WARNINGS: "warnings"}[self.exit_code]

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "store": self.store,
            "findings": [f.to_json() for f in self.findings],
            "summary": {
                "status": self.status,
                "exit_code": self.exit_code,
                "errors": self.count(ERROR),
                "warnings": self.count(WARNING),
                "infos": self.count(INFO),
                "images": self.images,
                "store_layers": self.store_layers,
                "image_layers_read": self.layers_read,
                "stores": [s.to_json() for s in self.stores],
                "kernel": self.kernel,
                "storage_conf": self.storage_conf,
            },
        }


class _Findings:
    """Collects findings; a check that fires many times in one layer is summarised."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._counts: dict[tuple[str, str, str | None], int] = {}
        self._first: dict[tuple[str, str, str | None], Finding] = {}

    def add(
        self,
        severity: str,
        check: str,
        message: str,
        *,
        image: str | None = None,
        layer: str | None = None,
        path: str | None = None,
    ) -> None:
        key = (severity, check, layer)
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        finding = Finding(severity, check, message, image, layer, path)
        if n <= _PER_KIND:
            self.items.append(finding)
            self._first.setdefault(key, finding)

    def finish(self) -> list[Finding]:
        out = list(self.items)
        for key, n in self._counts.items():
            if n > _PER_KIND:
                first = self._first[key]
                out.append(
                    Finding(
                        key[0],
                        key[1],
                        f"... and {n - _PER_KIND} more {key[1]} findings like the above",
                        first.image,
                        first.layer,
                    )
                )
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        return sorted(out, key=lambda f: order.get(f.severity, 3))


@dataclass(slots=True)
class _Node:
    """One entry of the merged view."""

    kind: bytes  # REG, DIR, SYMLINK, LINK (a hardlink: content of ``link``), or a device type
    mode: int
    size: int
    layer: int  # index of the image layer that wrote it
    seq: int  # its position in that layer
    crc: int = 0
    link: str = ""  # symlink target, or the hardlink's (cleaned) target path
    xattrs: dict[str, bytes] | None = None
    data: bytes | None = None  # the content, for the small files that are checked


@dataclass(frozen=True)
class _Layer:
    """An image layer (as the output reader classifies it), named as findings name it."""

    out: OutputLayer

    @property
    def index(self) -> int:
        return self.out.index

    @property
    def desc(self) -> Descriptor:
        return self.out.descriptor

    @property
    def diff_id(self) -> str:
        return self.out.diff_id

    @property
    def appended(self) -> bool:
        return self.out.appended

    @property
    def image(self) -> str | None:
        return self.out.image

    @property
    def layer_id(self) -> str:
        return self.out.store_layer_id or self.desc.digest

    def what(self, count: int) -> str:
        kind = self.out.kind_text
        kind_text = f"{kind} layer" if kind else "base layer"
        return f"layer {self.index + 1}/{count} ({kind_text}, {self.desc.digest})"


def _decode(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False


def _shown(path: str) -> str:
    """An absolute path for messages (non-UTF-8 bytes escaped)."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "/" + text if text != "." else "/"


def _kernel_version(name: str) -> tuple[int, int] | None:
    m = _KERNEL.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


class _Verifier:
    def __init__(
        self,
        output: OutputImage,
        store: str,
        progress: Callable[[str], None] | None,
    ) -> None:
        self.source = output.source
        self.store_abs = store
        self.paths = StorePaths.of(store)
        self.s = self.paths.root
        self.s_slash = self.s + "/"
        self.progress = progress or (lambda _msg: None)
        self.f = _Findings()
        self.layers = [_Layer(layer) for layer in output.layers]
        self.nodes: dict[str, _Node] = {}
        self.roots: dict[str, set[str]] = {}  # store root -> drivers seen there
        self.base_whiteouts: list[tuple[int, str]] = []  # .wh. names in base layers
        self.base_devices: list[tuple[int, str, bytes]] = []
        self.layers_read = 0
        self._anchors = (self.s, CONF_ETC, CONF_USR, MODULES)
        # per layer, while it streams
        self._li = 0
        self._seq = 0
        self._regular: set[str] = set()

    # -- pass 1: the merged view ---------------------------------------------------------------

    def _tracked(self, path: str) -> bool:
        if path == self.s or path.startswith(self.s_slash):
            return True
        if path in (CONF_ETC, CONF_USR):
            return True
        return path.startswith(MODULES + "/") and "/" not in path[len(MODULES) + 1 :]

    def _touches(self, path: str) -> bool:
        """Whether deleting ``path`` (and what is below it) can change the tracked view."""
        if path == ".":
            return True
        if self._tracked(path):
            return True
        prefix = path + "/"
        return any(a.startswith(prefix) for a in self._anchors)

    def _delete(self, path: str, below_layer: int, keep_self: bool = False) -> None:
        """Remove ``path`` (unless ``keep_self``) and everything under it written by a lower
        layer."""
        if not self._touches(path):
            return
        prefix = "" if path == "." else path + "/"
        doomed = [
            k
            for k, n in self.nodes.items()
            if n.layer < below_layer and (k.startswith(prefix) or (k == path and not keep_self))
        ]
        for k in doomed:
            del self.nodes[k]

    def _stream(self, layer: _Layer, handle: Callable[[TarEntry, TarReader], None]) -> bool:
        """Stream one layer's tar (blob digest and diff_id verified); False when unreadable."""
        what = layer.what(len(self.layers))
        try:
            with open_layer_tar(self.source, layer.desc, what, diff_hash=True) as tar:
                for e in tar:
                    handle(e, tar.reader)
            actual = tar.diff_digest
            if actual != layer.diff_id:
                self.f.add(
                    ERROR,
                    "image.diff-id",
                    f"{what}: uncompressed content is {actual}, the config says {layer.diff_id}",
                    image=layer.image,
                    layer=layer.layer_id,
                )
        except (BootcEmbedError, TarFormatError) as e:
            self.f.add(
                ERROR,
                "image.layer",
                f"{what}: cannot be read: {e}",
                image=layer.image,
                layer=layer.layer_id,
            )
            return False
        return True

    def pass_one(self) -> None:
        count = len(self.layers)
        for layer in self.layers:
            self.progress(f"reading {layer.what(count)}")
            self._li = layer.index
            self._seq = 0
            self._regular = set()
            self._stream(layer, self._entry)
            self.layers_read += 1
        self._regular = set()

    def _entry(self, e: TarEntry, reader: TarReader) -> None:
        self._seq += 1
        if e.typeflag == XGLOBAL:
            return
        layer = self.layers[self._li]
        name, utf8 = _decode(e.name)
        path = clean(name)
        if layer.appended:
            self._import_rules(layer, e, name, utf8, path)
        if path is None or path == ".":
            return
        base = path.rpartition("/")[2]
        if "-images" in path or "-layers" in path:
            self._note_root(path)
        if base.startswith(WH_PREFIX):
            if not layer.appended:
                self.base_whiteouts.append((self._li, path))
            parent = path.rpartition("/")[0] or "."
            if base == WH_OPAQUE:
                self._delete(parent, self._li, keep_self=True)
            else:
                target = base[len(WH_PREFIX) :]
                self._delete(target if parent == "." else f"{parent}/{target}", self._li)
            return
        if e.typeflag in _DEVICES and not layer.appended:
            self.base_devices.append((self._li, path, e.typeflag))
        if not self._tracked(path):
            return
        self._put(path, e, reader)

    def _note_root(self, path: str) -> None:
        """Note the store a path shows (``<root>/<driver>-images``, ``-layers``). Stores inside
        a store's layer content (an app that carries a store of its own) are the app's."""
        parts = path.split("/")
        for i, c in enumerate(parts):
            m = _DRIVER_DIR.match(c)
            if m and i > 0:
                root = "/".join(parts[:i])
                if not _LAYER_CONTENT.search(root):
                    self.roots.setdefault(root, set()).add(m.group(1))
                return

    def _put(self, path: str, e: TarEntry, reader: TarReader) -> None:
        kind = REG if e.typeflag == CONT else e.typeflag
        node = _Node(kind, e.mode, 0, self._li, self._seq)
        if e.xattrs:
            node.xattrs = dict(e.xattrs)
        if kind == REG:
            node.size = e.size
            in_diff = self._diff_path(path) is not None
            if in_diff:
                state = [0]

                def crc_piece(p: memoryview) -> None:
                    state[0] = crc64(p, state[0])

                reader.read_content(crc_piece)
                node.crc = state[0]
            elif (
                e.size <= _SMALL_LIMIT
                if path.startswith(self.s_slash)
                else (path in (CONF_ETC, CONF_USR) and e.size <= _CONF_LIMIT)
            ):
                buf = bytearray()
                reader.read_content(buf.extend)
                node.data = bytes(buf)
        elif kind == LINK:
            target_name, _ = _decode(e.linkname)
            target = clean(target_name)
            src = self.nodes.get(target) if target else None
            if src is not None and src.kind in (REG, LINK):
                node.size, node.crc, node.data = src.size, src.crc, src.data
                node.link = src.link if src.kind == LINK else (target or "")
            else:
                node.link = target or ""
        elif kind == SYMLINK:
            node.link = _decode(e.linkname)[0]
        old = self.nodes.get(path)
        if old is not None and old.kind == DIR and kind != DIR:
            self._delete(path, self._li + 1, keep_self=True)
        self.nodes[path] = node

    def _diff_path(self, path: str) -> tuple[str, str] | None:
        """(layer id, path inside diff/) for a path under the store's ``overlay/<id>/diff/``."""
        return self.paths.in_diff(path)

    # -- bootc import rules, for appended layers -----------------------------------------------

    def _import_rules(
        self, layer: _Layer, e: TarEntry, name: str, utf8: bool, path: str | None
    ) -> None:
        add = self.f.add
        img, lid = layer.image, layer.layer_id
        shown = _shown(path if path is not None else name)
        if not utf8:
            add(
                ERROR,
                "import.utf8",
                f"entry {shown} has a name that is not UTF-8: bootc's importer rejects it",
                image=img,
                layer=lid,
                path=shown,
            )
        if e.typeflag in (LINK, SYMLINK) and not _decode(e.linkname)[1]:
            add(
                ERROR,
                "import.utf8",
                f"{shown}: link target is not UTF-8: bootc's importer rejects it",
                image=img,
                layer=lid,
                path=shown,
            )
        if path is None or ".." in name.split("/"):
            add(
                ERROR,
                "import.path",
                f"entry {name!r} has a '..' component: bootc's importer rejects it",
                image=img,
                layer=lid,
                path=shown,
            )
            if path is None:
                return
        if path == "var" or path.startswith("var/"):
            add(
                ERROR,
                "import.var",
                f"{shown} is under /var: bootc applies /var content at first install only and "
                f"never updates it",
                image=img,
                layer=lid,
                path=shown,
            )
        if e.typeflag in _DEVICES:
            hint = ""
            if e.typeflag == CHAR and e.devmajor == 0 and e.devminor == 0:
                hint = (
                    " (a 0:0 character device is a podman-style whiteout: build with "
                    "--whiteouts xattr, the default, for hosts that import through ostree)"
                )
            add(
                ERROR,
                "import.device",
                f"{shown} is a {_DEVICES[e.typeflag]}: ostree refuses device nodes and fifos, "
                f"the whole layer fails to import{hint}",
                image=img,
                layer=lid,
                path=shown,
            )
        basename = path.rpartition("/")[2]
        if basename.startswith(WH_PREFIX):
            add(
                ERROR,
                "import.whiteout-name",
                f"{shown}: ostree treats any '.wh.' name as an OCI whiteout and deletes "
                f"{basename[len(WH_PREFIX) :] or 'its sibling'} from the host tree",
                image=img,
                layer=lid,
                path=shown,
            )
        for key, value in e.xattrs.items():
            if value == b"":
                add(
                    ERROR,
                    "import.empty-xattr",
                    f"{shown}: xattr {key} has an empty value: ostree commit drops it",
                    image=img,
                    layer=lid,
                    path=shown,
                )
        if e.typeflag == REG:
            self._regular.add(path)
        elif e.typeflag == LINK:
            target_name, _ = _decode(e.linkname)
            target = clean(target_name)
            if target is None or target not in self._regular:
                add(
                    ERROR,
                    "import.hardlink",
                    f"{shown} is a hardlink to {_shown(target or target_name)}, which is not an "
                    f"earlier regular file of the same layer: bootc's importer cannot resolve it",
                    image=img,
                    layer=lid,
                    path=shown,
                )
            else:
                self._regular.add(path)

    # -- stores found in the image -------------------------------------------------------------

    def other_stores(self) -> list[StoreInfo]:
        stores: list[StoreInfo] = []
        for root, drivers in sorted(self.roots.items()):
            for driver in sorted(drivers):
                checked = root == self.s and driver == "overlay"
                stores.append(StoreInfo("/" + root, driver, checked))
                if checked:
                    continue
                if driver == "vfs":
                    self.f.add(
                        ERROR,
                        "store.vfs",
                        f"/{root} is a vfs store (vfs-images/, vfs-layers/, as `podman --root "
                        f"... --storage-driver vfs pull` in a Containerfile makes it): podman "
                        f"on the host reads additional image stores with its own driver "
                        f"(overlay), so it does not see these images, and every vfs layer is a "
                        f"full copy of its image's files; embed the images with "
                        f"`bootc-embed build` instead",
                        path="/" + root,
                    )
                else:
                    self.f.add(
                        INFO,
                        "store.other",
                        f"a {driver} store at /{root} is not checked (verify checks "
                        f"{self.store_abs}; use --store-path /{root} for that one)",
                        path="/" + root,
                    )
        roots = [*self.roots, self.s]
        for li, path in self.base_whiteouts:
            inside = next((r for r in roots if path.startswith(r + "/")), None)
            if inside is None:
                continue
            layer = self.layers[li]
            self.f.add(
                ERROR,
                "import.whiteout-name",
                f"{_shown(path)} in {layer.what(len(self.layers))} is a '.wh.' name inside the "
                f"store at /{inside}: ostree deletes its sibling from the host tree, and podman "
                f"reads the store's layers without it",
                layer=layer.desc.digest,
                path=_shown(path),
            )
        for li, path, kind in self.base_devices:
            inside = next((r for r in roots if path.startswith(r + "/")), None)
            if inside is None:
                continue
            layer = self.layers[li]
            self.f.add(
                ERROR,
                "import.device",
                f"{_shown(path)} in {layer.what(len(self.layers))} is a {_DEVICES[kind]} inside "
                f"the store at /{inside}: ostree refuses device nodes and fifos",
                layer=layer.desc.digest,
                path=_shown(path),
            )
        return stores

    # -- the store at the store path -----------------------------------------------------------

    def _json(self, path: str, what: str) -> Any:
        node = self.nodes.get(path)
        if node is None or node.kind not in (REG, LINK) or node.data is None:
            return None
        try:
            return json.loads(node.data)
        except (ValueError, UnicodeDecodeError) as e:
            self.f.add(
                ERROR,
                "store.records",
                f"{what} is not valid JSON: {e}",
                path=_shown(path),
            )
            return None

    def has_store(self) -> bool:
        return self.paths.layers_json in self.nodes or self.paths.images_json in self.nodes

    def report_missing_store(self) -> None:
        made_by_us = any(layer.appended for layer in self.layers)
        other = [r for r in self.roots if r != self.s]
        self.f.add(
            ERROR if made_by_us or not other else WARNING,
            "store.missing",
            f"no containers-storage store at {self.store_abs} (neither {LAYERS_JSON} nor "
            f"{IMAGES_JSON})",
            path=self.store_abs,
        )

    def check_store(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The store's consistency checks; returns (image records, layer records)."""
        add = self.f.add
        paths = self.paths
        has_layers = paths.layers_json in self.nodes
        has_images = paths.images_json in self.nodes
        for lock in (paths.layers_lock, paths.images_lock):
            node = self.nodes.get(lock)
            if node is None or node.kind not in (REG, LINK):
                add(
                    ERROR,
                    "store.lock-files",
                    f"{_shown(lock)} is missing: on a read-only store podman 4 fails every "
                    f"command and podman 5 ignores the whole store",
                    path=_shown(lock),
                )
        layers_raw = self._json(paths.layers_json, "layers.json")
        images_raw = self._json(paths.images_json, "images.json")
        if not isinstance(layers_raw, list):
            if has_layers and layers_raw is not None:
                add(ERROR, "store.records", "layers.json is not a JSON array")
            elif not has_layers:
                add(
                    ERROR,
                    "store.records",
                    f"{_shown(paths.layers_json)} is missing",
                )
            layers_raw = []
        if not isinstance(images_raw, list):
            if has_images and images_raw is not None:
                add(ERROR, "store.records", "images.json is not a JSON array")
            elif not has_images:
                add(
                    ERROR,
                    "store.records",
                    f"{_shown(paths.images_json)} is missing",
                )
            images_raw = []
        layers = [r for r in layers_raw if isinstance(r, dict) and isinstance(r.get("id"), str)]
        images = [r for r in images_raw if isinstance(r, dict) and isinstance(r.get("id"), str)]
        if len(layers) != len(layers_raw) or len(images) != len(images_raw):
            add(ERROR, "store.records", "a layers.json or images.json record has no string id")
        self._check_layers(layers)
        self._check_images(images, {r["id"]: r for r in layers})
        return images, layers

    def _link_of(self, lid: str) -> str | None:
        node = self.nodes.get(self.paths.link_file(lid))
        if node is None or node.data is None:
            return None
        return node.data.decode("utf-8", "replace")

    def _check_layers(self, layers: list[dict[str, Any]]) -> None:
        add = self.f.add
        paths = self.paths
        by_id: dict[str, dict[str, Any]] = {}
        for r in layers:
            if r["id"] in by_id:
                add(
                    ERROR,
                    "store.records",
                    f"layer {r['id']} has two records in layers.json",
                    layer=r["id"],
                )
            by_id[r["id"]] = r
        links: dict[str, str] = {}
        for lid, r in by_id.items():
            layer_dir = paths.layer_dir(lid)
            img = self.image_of.get(lid)
            diff = self.nodes.get(paths.diff(lid))
            if diff is None or diff.kind != DIR:
                add(
                    ERROR,
                    "store.layer-missing",
                    f"layer {lid}: {_shown(layer_dir)}/diff/ is missing",
                    image=img,
                    layer=lid,
                    path=_shown(paths.diff(lid)),
                )
            if paths.merged(lid) not in self.nodes:
                add(
                    WARNING,
                    "store.layer-dirs",
                    f"layer {lid}: {_shown(layer_dir)}/merged/ is missing (podman before 5.4 "
                    f"needs it on a read-only store)",
                    image=img,
                    layer=lid,
                )
            parent = r.get("parent")
            if parent is not None and parent not in by_id:
                add(
                    ERROR,
                    "store.parent",
                    f"layer {lid}: its parent {parent} has no record in layers.json",
                    image=img,
                    layer=lid,
                )
            for key in ("diff-digest", "diff-size"):
                if key not in r:
                    add(
                        WARNING,
                        "store.records",
                        f"layer {lid}: no {key!r} in its record (podman's export and size "
                        f"reporting need it)",
                        image=img,
                        layer=lid,
                    )
            link = self._link_of(lid)
            if link is None:
                add(
                    ERROR,
                    "store.link",
                    f"layer {lid}: {_shown(layer_dir)}/link is missing",
                    image=img,
                    layer=lid,
                    path=_shown(paths.link_file(lid)),
                )
                continue
            if not _LINK_ID.match(link):
                add(
                    ERROR,
                    "store.link",
                    f"layer {lid}: link file holds {link!r}, not 26 characters of A-Z2-7",
                    image=img,
                    layer=lid,
                    path=_shown(paths.link_file(lid)),
                )
            if not _LINK_ID.match(link):
                continue  # the l/ symlink and the children's lower files cannot match it
            if link in links:
                add(
                    ERROR,
                    "store.link",
                    f"layers {links[link]} and {lid} have the same link id {link}",
                    image=img,
                    layer=lid,
                )
            links[link] = lid
            sym = self.nodes.get(paths.link(link))
            want = paths.link_target(lid)
            if sym is None or sym.kind != SYMLINK or sym.link != want:
                have = (
                    "missing"
                    if sym is None
                    else (f"points to {sym.link!r}" if sym.kind == SYMLINK else "not a symlink")
                )
                add(
                    ERROR,
                    "store.l-symlink",
                    f"layer {lid}: {_shown(paths.link(link))} is {have}; it must be a "
                    f"symlink to {want!r}",
                    image=img,
                    layer=lid,
                    path=_shown(paths.link(link)),
                )
            self._check_lower(lid, r, by_id, img)
        # l/ entries nobody owns
        prefix = paths.link_dir + "/"
        for path in self.nodes:
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                name = path[len(prefix) :]
                if name not in links:
                    add(
                        WARNING,
                        "store.l-symlink",
                        f"{_shown(path)} belongs to no layer in layers.json",
                        path=_shown(path),
                    )
        self.layer_records = by_id
        for lid in by_id:
            self._check_tarsplit(lid, by_id[lid])

    def _check_lower(
        self, lid: str, r: dict[str, Any], by_id: dict[str, dict[str, Any]], img: str | None
    ) -> None:
        lower_path = self.paths.lower(lid)
        node = self.nodes.get(lower_path)
        if r.get("parent") is None:
            if node is not None:
                self.f.add(
                    ERROR,
                    "store.lower",
                    f"layer {lid} has no parent but has a lower file",
                    image=img,
                    layer=lid,
                    path=_shown(lower_path),
                )
            return
        chain: list[str] = []
        seen = {lid}
        p = r.get("parent")
        while isinstance(p, str) and p in by_id and p not in seen:
            seen.add(p)
            chain.append(self._link_of(p) or "?")
            p = by_id[p].get("parent")
        if isinstance(p, str) and p in seen:
            self.f.add(
                ERROR,
                "store.parent",
                f"layer {lid}: its parent chain loops back to {p}",
                image=img,
                layer=lid,
            )
            return
        if isinstance(p, str):
            return  # a missing parent: reported already
        want = _storage.lower_of_links(chain)
        have = node.data.decode("utf-8", "replace") if node is not None and node.data else None
        if have != want:
            self.f.add(
                ERROR,
                "store.lower",
                f"layer {lid}: lower file holds {have!r} but its ancestors' links, nearest "
                f"first, are {want!r}",
                image=img,
                layer=lid,
                path=_shown(lower_path),
            )

    def _check_images(
        self, images: list[dict[str, Any]], layers: dict[str, dict[str, Any]]
    ) -> None:
        add = self.f.add
        owner: dict[str, str] = {}
        ids: set[str] = set()
        for r in images:
            iid = r["id"]
            names = [n for n in (r.get("names") or []) if isinstance(n, str)]
            shown = names[0] if names else iid[:12]
            if iid in ids:
                add(
                    ERROR,
                    "store.records",
                    f"image {iid} has two records in images.json",
                    image=shown,
                )
            ids.add(iid)
            for n in names:
                if n in owner and owner[n] != iid:
                    add(
                        ERROR,
                        "store.names",
                        f"name {n} is given to images {owner[n]} and {iid}: the store fails "
                        f"to load",
                        image=n,
                    )
                elif n in owner:
                    add(ERROR, "store.names", f"image {iid} lists name {n} twice", image=n)
                owner[n] = iid
            top = r.get("layer")
            if top is not None and top not in layers:
                add(
                    ERROR,
                    "store.layer-missing",
                    f"image {shown}: its top layer {top} has no record in layers.json",
                    image=shown,
                    layer=str(top),
                )
            self._check_big_data(r, shown, layers)

    def _check_big_data(
        self, r: dict[str, Any], shown: str, layers: dict[str, dict[str, Any]]
    ) -> None:
        add = self.f.add
        iid = r["id"]
        names = r.get("big-data-names") or []
        sizes = r.get("big-data-sizes") or {}
        digests = r.get("big-data-digests") or {}
        contents: dict[str, bytes] = {}
        for key in names:
            if not isinstance(key, str):
                continue
            path = self.paths.big_data(iid, key)
            node = self.nodes.get(path)
            if node is None or node.kind not in (REG, LINK):
                add(
                    ERROR,
                    "store.big-data",
                    f"image {shown}: big data {key!r} has no file {_shown(path)}",
                    image=shown,
                    path=_shown(path),
                )
                continue
            if node.data is None:
                add(
                    WARNING,
                    "store.big-data",
                    f"image {shown}: big data {key!r} is too large to check",
                    image=shown,
                    path=_shown(path),
                )
                continue
            contents[key] = node.data
            if key not in sizes or key not in digests:
                add(
                    ERROR,
                    "store.big-data",
                    f"image {shown}: big data {key!r} has no recorded size or digest (podman "
                    f"tag copies every item and fails without them)",
                    image=shown,
                    path=_shown(path),
                )
                continue
            actual = "sha256:" + hashlib.sha256(node.data).hexdigest()
            if sizes[key] != len(node.data) or digests[key] != actual:
                contents.pop(key)
                add(
                    ERROR,
                    "store.big-data",
                    f"image {shown}: big data {key!r} is {len(node.data)} bytes, {actual}; "
                    f"images.json says {sizes[key]} bytes, {digests[key]}",
                    image=shown,
                    path=_shown(path),
                )
        config = contents.get("sha256:" + iid)
        if config is None and ("sha256:" + iid) not in names:
            add(
                ERROR,
                "store.big-data",
                f"image {shown}: no config big data 'sha256:{iid}'",
                image=shown,
            )
        digest = r.get("digest")
        if isinstance(digest, str) and _storage.manifest_key(digest) not in names:
            add(
                WARNING,
                "store.big-data",
                f"image {shown}: no manifest big data for its digest {digest}",
                image=shown,
            )
        manifest = contents.get(_storage.manifest_key(digest)) if isinstance(digest, str) else None
        if manifest is not None and "sha256:" + hashlib.sha256(manifest).hexdigest() != digest:
            add(
                ERROR,
                "store.big-data",
                f"image {shown}: its manifest big data does not hash to the image's digest "
                f"{digest}",
                image=shown,
            )
        if config is not None:
            self._check_chain(r, shown, config, layers)

    def _check_chain(
        self, r: dict[str, Any], shown: str, config: bytes, layers: dict[str, dict[str, Any]]
    ) -> None:
        try:
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            self.f.add(
                ERROR,
                "store.big-data",
                f"image {shown}: its config has no rootfs.diff_ids",
                image=shown,
            )
            return
        chain: list[str] = []
        lid = r.get("layer")
        while isinstance(lid, str) and lid in layers and len(chain) <= len(layers):
            chain.append(str(layers[lid].get("diff-digest")))
            lid = layers[lid].get("parent")
        if lid is not None:
            return  # a broken chain: reported as a missing layer or parent
        chain.reverse()
        if chain != list(diff_ids):
            self.f.add(
                ERROR,
                "store.image-layers",
                f"image {shown}: its layer chain has diff digests {chain}, its config lists "
                f"{diff_ids}",
                image=shown,
            )

    # -- tar-split, first half: sizes and CRCs -------------------------------------------------

    def _check_tarsplit(self, lid: str, r: dict[str, Any]) -> None:
        path = self.paths.tar_split(lid)
        img = self.image_of.get(lid)
        node = self.nodes.get(path)
        if node is None or node.data is None:
            add_sev = ERROR if node is None else WARNING
            self.f.add(
                add_sev,
                "store.tar-split",
                f"layer {lid}: {_shown(path)} is "
                + ("missing: podman cannot export the layer" if node is None else "too large"),
                image=img,
                layer=lid,
                path=_shown(path),
            )
            return
        diff_prefix = self.paths.diff(lid) + "/"
        needs: dict[str, int] = {}
        links: dict[str, str] = {}
        origins: set[int] = set()
        bad = 0
        try:
            for entry in read_entries(io.BytesIO(node.data)):
                if entry.get("type") == SEGMENT:
                    base64.b64decode(str(entry.get("payload") or ""), validate=True)
                if entry.get("type") != FILE:
                    continue
                size = int(entry.get("size") or 0)  # type: ignore[call-overload]
                if size == 0:
                    continue
                name, _ = _decode(entry_name(entry))
                rel = clean(name)
                shown_rel = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                f = self.nodes.get(diff_prefix + rel) if rel else None
                if f is not None and f.kind == LINK:
                    f_src = f.link
                    links[diff_prefix + (rel or "")] = f_src
                    f = self.nodes.get(f_src) if f_src else None
                else:
                    f_src = diff_prefix + (rel or "")
                if f is None or f.kind != REG:
                    bad += 1
                    self.f.add(
                        ERROR,
                        "store.tar-split",
                        f"layer {lid}: tar-split file {shown_rel!r} has no regular file in "
                        f"diff/: the layer cannot be exported",
                        image=img,
                        layer=lid,
                        path=_shown(diff_prefix + (rel or "")),
                    )
                    continue
                payload = base64.b64decode(str(entry.get("payload") or ""))
                if f.size != size or f.crc.to_bytes(8, "big") != payload:
                    bad += 1
                    self.f.add(
                        ERROR,
                        "store.tar-split",
                        f"layer {lid}: diff/{shown_rel} does not match its tar-split record "
                        f"(size {f.size}, record {size}; CRC-64 "
                        + ("differs" if f.size == size else "not compared")
                        + "): the layer cannot be exported as the original",
                        image=img,
                        layer=lid,
                        path=_shown(diff_prefix + (rel or "")),
                    )
                    continue
                needs[f_src] = needs.get(f_src, 0) + 1
                origins.add(f.layer)
        except (BootcEmbedError, ValueError, OSError, EOFError) as e:
            self.f.add(
                ERROR,
                "store.tar-split",
                f"layer {lid}: {_shown(path)} cannot be read: {e}",
                image=img,
                layer=lid,
                path=_shown(path),
            )
            return
        if bad:
            return
        self.reassemblies[lid] = _Reassembly(lid, node.data, needs, links, diff_prefix)
        self.reassembly_layers |= origins

    # -- tar-split, second half: the reassembled tar's sha256 ---------------------------------

    def pass_two(self) -> None:
        count = len(self.layers)
        by_layer: dict[str, _Reassembly] = self.reassemblies
        for li in sorted(self.reassembly_layers):
            self.progress(f"reassembling tar-splits from {self.layers[li].what(count)}")
            self._feed_layer(li, by_layer)
            self.layers_read += 1
        for lid, r in sorted(by_layer.items()):
            img = self.image_of.get(lid)
            rec = self.layer_records[lid]
            try:
                size, digest, missing = r.finish()
            except (BootcEmbedError, ValueError, OSError, EOFError) as e:
                self.f.add(
                    ERROR,
                    "store.tar-split",
                    f"layer {lid}: its tar-split cannot be read: {e}",
                    image=img,
                    layer=lid,
                )
                continue
            if missing is not None:
                self.f.add(
                    ERROR,
                    "store.tar-split",
                    f"layer {lid}: the content of {_shown(missing)} could not be read back",
                    image=img,
                    layer=lid,
                    path=_shown(missing),
                )
                continue
            want_digest, want_size = rec.get("diff-digest"), rec.get("diff-size")
            if (want_digest is not None and digest != want_digest) or (
                want_size is not None and size != want_size
            ):
                self.f.add(
                    ERROR,
                    "store.tar-split",
                    f"layer {lid}: its tar-split and diff/ reassemble to {size} bytes, {digest}; "
                    f"layers.json says {want_size} bytes, {want_digest}: an export would not "
                    f"be the original layer",
                    image=img,
                    layer=lid,
                )

    def _feed_layer(self, li: int, by_layer: dict[str, _Reassembly]) -> None:
        """Stream layer ``li`` again, offering the diff/ content it won to the reassemblies."""
        seq = 0

        def handle(e: TarEntry, reader: TarReader) -> None:
            nonlocal seq
            seq += 1
            if e.typeflag not in (REG, CONT):
                return
            path = clean(_decode(e.name)[0])
            where = self._diff_path(path) if path is not None else None
            if path is None or where is None:
                return
            node = self.nodes.get(path)
            r = by_layer.get(where[0])
            if r is None or node is None or node.layer != li or node.seq != seq:
                return
            r.offer(path, reader)

        self._stream(self.layers[li], handle)

    # -- host readiness ------------------------------------------------------------------------

    def check_host(self, images: list[dict[str, Any]], layers: list[dict[str, Any]]) -> None:
        self._check_conf()
        self._check_kernel(images, layers)

    def _check_conf(self) -> None:
        add = self.f.add
        path = CONF_ETC if CONF_ETC in self.nodes else CONF_USR
        node = self.nodes.get(path)
        if node is None:
            add(
                WARNING,
                "host.storage-conf",
                f"the image has no /{CONF_ETC} or /{CONF_USR}: podman's built-in defaults list "
                f"no additional image store, so podman on the host does not see "
                f"{self.store_abs}",
            )
            return
        self.storage_conf = "/" + path
        if node.kind == SYMLINK:
            add(
                WARNING,
                "host.storage-conf",
                f"/{path} is a symlink to {node.link}: not followed, additionalimagestores not "
                f"checked",
                path="/" + path,
            )
            return
        if node.data is None:
            add(WARNING, "host.storage-conf", f"/{path} is too large to check", path="/" + path)
            return
        try:
            conf = tomllib.loads(node.data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            add(
                ERROR,
                "host.storage-conf",
                f"/{path} is not valid TOML ({e}): podman on the host fails to start",
                path="/" + path,
            )
            return
        storage: dict[str, Any] = conf["storage"] if isinstance(conf.get("storage"), dict) else {}
        options: dict[str, Any] = (
            storage["options"] if isinstance(storage.get("options"), dict) else {}
        )
        stores = options.get("additionalimagestores") or []
        listed = {str(p).rstrip("/") for p in stores} if isinstance(stores, list) else set()
        if self.store_abs.rstrip("/") not in listed:
            add(
                WARNING,
                "host.storage-conf",
                f"/{path} does not list {self.store_abs} in [storage.options] "
                f"additionalimagestores: podman on the host does not see the embedded images "
                f"(bootc-embed build adds it unless --no-storage-conf)",
                path="/" + path,
            )
        driver = storage.get("driver")
        if isinstance(driver, str) and driver and driver != "overlay":
            add(
                WARNING,
                "host.storage-conf",
                f"/{path} sets driver = {driver!r}: the embedded store is an overlay store, "
                f"which podman reads only with the overlay driver",
                path="/" + path,
            )

    def _check_kernel(self, images: list[dict[str, Any]], layers: list[dict[str, Any]]) -> None:
        versions = sorted(
            (v, p.rpartition("/")[2])
            for p, n in self.nodes.items()
            if p.startswith(MODULES + "/") and n.kind == DIR
            for v in [_kernel_version(p.rpartition("/")[2])]
            if v is not None
        )
        self.kernel = versions[-1][1] if versions else None
        per_layer: dict[str, int] = {}
        for path, node in self.nodes.items():
            if node.xattrs and OVERLAY_WHITEOUT in node.xattrs:
                where = self._diff_path(path)
                if where is not None:
                    per_layer[where[0]] = per_layer.get(where[0], 0) + 1
        if not per_layer:
            return
        parents = {r["id"]: r.get("parent") for r in layers}
        names: list[str] = []
        for r in images:
            lid = r.get("layer")
            seen: set[str] = set()
            while isinstance(lid, str) and lid not in seen:
                seen.add(lid)
                if lid in per_layer:
                    image_names = r.get("names") or [r["id"][:12]]
                    names.append(str(image_names[0]))
                    break
                lid = parents.get(lid)
        shown = ", ".join(names) or "no image records"
        count = sum(per_layer.values())
        if not versions:
            self.f.add(
                INFO,
                "host.kernel",
                f"the store has {count} xattr whiteouts (in {shown}) but the image has no "
                f"/{MODULES}/<version>: cannot tell whether the host kernel supports them "
                f"(Linux 6.7 or a backport)",
            )
            return
        version, name = versions[-1]
        if version < XATTR_WHITEOUTS_SINCE:
            self.f.add(
                WARNING,
                "host.kernel",
                f"the kernel /{MODULES}/{name} is older than 6.7 and may not honour the "
                f"store's {count} xattr whiteouts (unless the vendor backported them): files "
                f"deleted inside {shown} would show up again in their containers; build with "
                f"--whiteouts ostree for such hosts",
                path=f"/{MODULES}/{name}",
            )

    # -- the whole run -------------------------------------------------------------------------

    reassemblies: dict[str, _Reassembly]
    reassembly_layers: set[int]
    layer_records: dict[str, dict[str, Any]]
    image_of: dict[str, str]
    kernel: str | None = None
    storage_conf: str | None = None

    def run(self) -> tuple[list[Finding], list[str], int, list[StoreInfo]]:
        self.reassemblies = {}
        self.reassembly_layers = set()
        self.layer_records = {}
        self.image_of = {}
        self.pass_one()
        stores = self.other_stores()
        if not self.has_store():
            self.report_missing_store()
            for st in stores:
                st.checked = False
            return self.f.finish(), [], 0, stores
        if not any(st.checked for st in stores):
            stores.insert(0, StoreInfo(self.store_abs, "overlay", True))
        self._index_images()
        images, layers = self.check_store()
        self.pass_two()
        self.check_host(images, layers)
        names = [str((r.get("names") or [r["id"]])[0]) for r in images]
        return self.f.finish(), names, len(layers), stores

    def _index_images(self) -> None:
        """Which image each layer belongs to, for naming it in findings (first image wins)."""
        records: dict[str, list[dict[str, Any]]] = {}
        for rel in (self.paths.images_json, self.paths.layers_json):
            node = self.nodes.get(rel)
            value: Any = None
            if node is not None and node.data is not None:
                try:
                    value = json.loads(node.data)
                except (ValueError, UnicodeDecodeError):
                    value = None
            records[rel] = [
                r
                for r in (value if isinstance(value, list) else [])
                if isinstance(r, dict) and isinstance(r.get("id"), str)
            ]
        parents = {r["id"]: r.get("parent") for r in records[self.paths.layers_json]}
        for r in records[self.paths.images_json]:
            name = str((r.get("names") or [r["id"][:12]])[0])
            lid = r.get("layer")
            seen: set[str] = set()
            while isinstance(lid, str) and lid not in seen:
                seen.add(lid)
                self.image_of.setdefault(lid, name)
                lid = parents.get(lid)


class _Reassembly:
    """Rebuilds one layer's tar from its tar-split and the ``diff/`` content streaming past,
    hashing instead of writing. Content that streams past before the tar-split needs it is
    spooled (memory up to 16 MiB, then a temporary file); ours comes in order."""

    def __init__(
        self,
        lid: str,
        tarsplit: bytes,
        needs: dict[str, int],
        links: dict[str, str],
        prefix: str,
    ) -> None:
        self.lid = lid
        self._links = links
        self._entries: Iterator[dict[str, object]] = read_entries(io.BytesIO(tarsplit))
        self._needs = needs
        self._prefix = prefix
        self._hash = hashlib.sha256()
        self._size = 0
        self._pending: str | None = None
        self._spool: IO[bytes] | None = None
        self._spooled: dict[str, tuple[int, int]] = {}
        self._done = False
        self._advance()

    def _source(self, name: bytes) -> str:
        rel = clean(_decode(name)[0]) or ""
        return self._prefix + rel

    def _write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self._size += len(data)

    def _advance(self) -> None:
        """Consume records until one needs content that has not streamed past yet."""
        while self._pending is None and not self._done:
            entry = next(self._entries, None)
            if entry is None:
                self._done = True
                return
            if entry.get("type") == SEGMENT:
                self._write(base64.b64decode(str(entry.get("payload") or "")))
                continue
            if not int(entry.get("size") or 0):  # type: ignore[call-overload]
                continue
            src = self._resolve(self._source(entry_name(entry)))
            if src in self._spooled:
                self._from_spool(src)
            else:
                self._pending = src

    def _resolve(self, path: str) -> str:
        """Hardlinked diff files are read from the file they link to."""
        return self._links.get(path, path)

    def _from_spool(self, src: str) -> None:
        assert self._spool is not None
        offset, size = self._spooled[src]
        self._spool.seek(offset)
        left = size
        while left:
            chunk = self._spool.read(min(left, _CHUNK))
            if not chunk:
                break
            self._write(chunk)
            left -= len(chunk)
        self._spool.seek(0, io.SEEK_END)
        self._use(src)

    def _use(self, src: str) -> None:
        self._needs[src] = self._needs.get(src, 1) - 1

    def offer(self, path: str, reader: TarReader) -> None:
        """The content of diff file ``path`` streams past now."""
        wanted = self._needs.get(path, 0)
        if not wanted:
            return
        if self._pending == path:
            more = wanted > 1
            spool_at = self._spool_start() if more else 0

            def piece(p: memoryview) -> None:
                self._write(p)
                if more:
                    self._spool.write(p)  # type: ignore[union-attr]

            reader.read_content(piece)
            if more:
                self._spooled[path] = (spool_at, self._spool.tell() - spool_at)  # type: ignore[union-attr]
            self._use(path)
            self._pending = None
            self._advance()
            return
        spool_at = self._spool_start()
        reader.read_content(self._spool.write)  # type: ignore[union-attr,arg-type]
        self._spooled[path] = (spool_at, self._spool.tell() - spool_at)  # type: ignore[union-attr]

    def _spool_start(self) -> int:
        if self._spool is None:
            self._spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115
        return self._spool.tell()

    def finish(self) -> tuple[int, str, str | None]:
        """(size, sha256 digest, the first content never seen or None)."""
        try:
            self._advance()
            if self._pending is not None:
                return self._size, "", self._pending
            return self._size, "sha256:" + self._hash.hexdigest(), None
        finally:
            if self._spool is not None:
                self._spool.close()


def verify_image(
    ref: str,
    platform: str | None = None,
    store_path: str | None = None,
    progress: Callable[[str], None] | None = None,
    options: TransportOptions | None = None,
) -> VerifyResult:
    """Check the image at ``ref`` as a bootc host would see it; see the module documentation."""
    plat = Platform.parse(platform) if platform else None
    with open_output(ref, plat, options) as output:
        store = "/" + store_path.strip("/") if store_path else output.store_path()
        v = _Verifier(output, store, progress)
        findings, names, store_layers, stores = v.run()
        return VerifyResult(
            reference=ref,
            manifest_digest=output.manifest.digest,
            store=store,
            findings=findings,
            images=names,
            store_layers=store_layers,
            layers_read=v.layers_read,
            stores=stores,
            kernel=v.kernel,
            storage_conf=v.storage_conf,
        )
