"""Image surgery for the ``verify`` tests: small bases, and broken copies of good outputs.

Everything here uses the standard library only (tarfile, gzip, json), not bootc_embed, so the
tests do not trust the code they check. A layer is edited as a list of ``(TarInfo, bytes)``
members; :func:`edit_layer` writes the new tar, compresses it, and fixes everything that
depends on it: the layer descriptor's digest and size, the config's ``rootfs.diff_ids``, the
config descriptor, the manifest and ``index.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bootc_embed._demo import host_architecture

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
A_LAYER = "io.bootc-embed.layer"
A_LAYER_ID = "io.bootc-embed.layer.id"
A_IMAGE = "io.bootc-embed.image"
STORE = "usr/lib/containers/storage"

Member = tuple[tarfile.TarInfo, bytes]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# tar members


def members(tar: bytes) -> list[Member]:
    """Every member of a tar stream with its content (names as surrogate-escaped text)."""
    out: list[Member] = []
    with tarfile.open(
        fileobj=io.BytesIO(tar), mode="r:", encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for m in tf:
            data = b""
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                data = f.read()
            out.append((m, data))
    return out


def tar_bytes(items: Iterable[Member]) -> bytes:
    """A PAX tar of ``items``; a name that is not UTF-8 gets a ``hdrcharset=BINARY`` record."""
    out = io.BytesIO()
    for info, data in items:
        info.size = len(data) if info.isreg() else 0
        out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.isreg():
            out.write(data)
            out.write(bytes(-len(data) % 512))
    out.write(bytes(1024))
    return out.getvalue()


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    mode: int | None = None,
    linkname: str = "",
    xattrs: dict[str, str] | None = None,
    devmajor: int = 0,
    devminor: int = 0,
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.linkname = linkname
    ti.devmajor, ti.devminor = devmajor, devminor
    ti.mtime = 0
    ti.uname = ti.gname = ""
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return ti


def find(items: list[Member], predicate: Callable[[str], bool]) -> int:
    """Index of the first member whose name satisfies ``predicate``."""
    for i, (info, _) in enumerate(items):
        if predicate(info.name):
            return i
    raise LookupError("no such member")


# --------------------------------------------------------------------------------------------
# OCI layouts


class Layout:
    """One tagged image in an OCI layout directory, editable in place."""

    def __init__(self, path: Path, tag: str = "latest") -> None:
        self.path = Path(path)
        self.tag = tag
        self.index = json.loads((self.path / "index.json").read_bytes())
        self._entry = next(
            m for m in self.index["manifests"] if (m.get("annotations") or {}).get(REF_NAME) == tag
        )
        self.manifest: dict[str, Any] = json.loads(self.blob(self._entry["digest"]))
        self.config: dict[str, Any] = json.loads(self.blob(self.manifest["config"]["digest"]))

    @property
    def ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def write_blob(self, data: bytes) -> str:
        digest = sha256(data)
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return digest

    def layer_index(self, kind: str, image: str | None = None, nth: int = 0) -> int:
        """Index of the ``nth`` appended layer of ``kind`` (``app``, ``metadata``, ...), of
        ``image`` when given (the image that brought the layer)."""
        found = [
            i
            for i, d in enumerate(self.layers)
            if (d.get("annotations") or {}).get(A_LAYER) == kind
            and (image is None or d["annotations"].get(A_IMAGE) == image)
        ]
        return found[nth]

    def layer_id(self, i: int) -> str:
        return str(self.layers[i]["annotations"][A_LAYER_ID])

    def layer_tar(self, i: int) -> bytes:
        data = self.blob(self.layers[i]["digest"])
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    def replace_layer(self, i: int, tar: bytes) -> None:
        """Put ``tar`` in place of layer ``i`` and fix every digest that depends on it."""
        blob = gzip.compress(tar, mtime=0)
        desc = dict(self.manifest["layers"][i])
        desc["mediaType"] = MT_LAYER_GZIP
        desc["digest"] = self.write_blob(blob)
        desc["size"] = len(blob)
        self.manifest["layers"][i] = desc
        self.config["rootfs"]["diff_ids"][i] = sha256(tar)
        self._commit()

    def append_layer(self, tar: bytes, annotations: dict[str, str] | None = None) -> None:
        blob = gzip.compress(tar, mtime=0)
        desc: dict[str, Any] = {
            "mediaType": MT_LAYER_GZIP,
            "digest": self.write_blob(blob),
            "size": len(blob),
        }
        if annotations:
            desc["annotations"] = annotations
        self.manifest["layers"].append(desc)
        self.config["rootfs"]["diff_ids"].append(sha256(tar))
        self.config.setdefault("history", []).append({"created_by": "verify_support"})
        self._commit()

    def _commit(self) -> None:
        config = _json(self.config)
        self.manifest["config"] = {
            "mediaType": MT_CONFIG,
            "digest": self.write_blob(config),
            "size": len(config),
        }
        manifest = _json(self.manifest)
        self._entry["digest"] = self.write_blob(manifest)
        self._entry["size"] = len(manifest)
        self._entry["mediaType"] = MT_MANIFEST
        (self.path / "index.json").write_bytes(_json(self.index))


def copy_layout(src: Path, dst: Path, tag: str = "latest") -> Layout:
    shutil.copytree(src, dst)
    return Layout(dst, tag)


def edit_layer(layout: Layout, i: int, edit: Callable[[list[Member]], list[Member] | None]) -> None:
    """Rewrite layer ``i``: ``edit`` changes the member list in place or returns a new one."""
    items = members(layout.layer_tar(i))
    new = edit(items)
    layout.replace_layer(i, tar_bytes(new if new is not None else items))


def edit_json(name: str, change: Callable[[Any], None]) -> Callable[[list[Member]], None]:
    """An edit for :func:`edit_layer`: ``change`` the JSON value of member ``name`` in place."""

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n == name)
        value = json.loads(items[k][1])
        change(value)
        items[k] = (items[k][0], json.dumps(value).encode())

    return edit


def write_image(
    path: Path,
    layers: list[list[Member]],
    tag: str = "latest",
    labels: dict[str, str] | None = None,
) -> Layout:
    """A new OCI layout holding one image made of ``layers``."""
    path.mkdir(parents=True)
    (path / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_bytes(
        _json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []})
    )
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descs, diff_ids = [], []
    for items in layers:
        tar = tar_bytes(items)
        blob = gzip.compress(tar, mtime=0)
        (blobs / sha256(blob).split(":")[1]).write_bytes(blob)
        descs.append({"mediaType": MT_LAYER_GZIP, "digest": sha256(blob), "size": len(blob)})
        diff_ids.append(sha256(tar))
    config = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": labels or {"containers.bootc": "1"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "verify_support"} for _ in layers],
    }
    config_raw = _json(config)
    (blobs / sha256(config_raw).split(":")[1]).write_bytes(config_raw)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_raw), "size": len(config_raw)},
        "layers": descs,
    }
    manifest_raw = _json(manifest)
    (blobs / sha256(manifest_raw).split(":")[1]).write_bytes(manifest_raw)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": sha256(manifest_raw),
                "size": len(manifest_raw),
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (path / "index.json").write_bytes(_json(index))
    return Layout(path, tag)


def dirs(path: str) -> list[Member]:
    """Directory members for ``path`` and each of its parents, outermost first."""
    parts = path.strip("/").split("/")
    return [(entry("/".join(parts[:i]), tarfile.DIRTYPE), b"") for i in range(1, len(parts) + 1)]


def storage_conf(stores: list[str], driver: str = "overlay") -> bytes:
    listed = ", ".join(f'"{s}"' for s in stores)
    return (
        f'[storage]\ndriver = "{driver}"\nrunroot = "/run/containers/storage"\n'
        f'graphroot = "/var/lib/containers/storage"\n\n'
        f"[storage.options]\nadditionalimagestores = [{listed}]\n"
        f'pull_options = {{enable_partial_images = "false"}}\n'
    ).encode()


def write_base(
    path: Path,
    *,
    conf: bytes | None = None,
    conf_path: str = "etc/containers/storage.conf",
    kernel: str | None = None,
) -> Layout:
    """A small bootc-like base: a shell script, os-release, and optionally a storage.conf and
    a kernel under /usr/lib/modules/<kernel>/."""
    first: list[Member] = [
        *dirs("usr/bin"),
        (entry("usr/bin/hello", mode=0o755), b"#!/bin/sh\necho hello\n"),
        *dirs("etc"),
        (entry("etc/os-release"), b"ID=verify-test\n"),
    ]
    layers = [first]
    second: list[Member] = []
    if kernel is not None:
        second += dirs(f"usr/lib/modules/{kernel}")
        second.append((entry(f"usr/lib/modules/{kernel}/vmlinuz"), b"not a kernel\n"))
    if conf is not None:
        second += dirs(conf_path.rpartition("/")[0])
        second.append((entry(conf_path), conf))
    if second:
        layers.append(second)
    return write_image(path, layers, labels={"containers.bootc": "1", "ostree.bootable": "1"})


VFS_STORE = "usr/share/containers/storage"
VFS_LAYER = "a" * 64
VFS_IMAGE = "b" * 64


def write_recipe_image(path: Path) -> Layout:
    """What the Containerfile recipe makes: a base, then a layer holding a vfs store at
    /usr/share/containers/storage (``podman --root ... --storage-driver vfs pull``) whose layer
    directory carries a ``.wh.`` name, and a storage.conf listing that store."""
    base = [
        *dirs("usr/bin"),
        (entry("usr/bin/hello", mode=0o755), b"#!/bin/sh\necho hello\n"),
        *dirs("usr/lib/modules/6.12.0-55.el10.x86_64"),
        (entry("usr/lib/modules/6.12.0-55.el10.x86_64/vmlinuz"), b"not a kernel\n"),
        *dirs("etc/containers"),
        (entry("etc/containers/storage.conf"), storage_conf([f"/{VFS_STORE}"])),
    ]
    s = VFS_STORE
    layer_dir = f"{s}/vfs/dir/{VFS_LAYER}"
    images = [{"id": VFS_IMAGE, "names": ["quay.io/example/app:1"], "layer": VFS_LAYER}]
    store: list[Member] = [
        *dirs(f"{layer_dir}/etc"),
        (entry(f"{layer_dir}/etc/app.conf"), b"x=1\n"),
        (entry(f"{layer_dir}/etc/.wh.foo"), b""),
        (entry(f"{s}/storage.lock"), b""),
        (entry(f"{s}/vfs-images", tarfile.DIRTYPE), b""),
        (entry(f"{s}/vfs-images/images.json"), json.dumps(images).encode()),
        (entry(f"{s}/vfs-images/images.lock"), b""),
        (entry(f"{s}/vfs-layers", tarfile.DIRTYPE), b""),
        (entry(f"{s}/vfs-layers/layers.json"), json.dumps([{"id": VFS_LAYER}]).encode()),
        (entry(f"{s}/vfs-layers/layers.lock"), b""),
    ]
    return write_image(path, [base, store])
