"""Small, dependency-free helpers to write, read and tamper with OCI image layouts in tests.

Everything here is deliberately independent of ``bootc_embed``: the tests must not trust the code
they check. Layouts are written deterministically (gzip with mtime 0, fixed timestamps).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = MT_LAYER + "+gzip"
MT_LAYER_ZSTD = MT_LAYER + "+zstd"
REF_NAME = "org.opencontainers.image.ref.name"

FIXED_TIME = "2024-01-01T00:00:00Z"
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Tar layers


class TarBuilder:
    """Builds an uncompressed layer tar in memory, entry by entry, exactly as asked.

    Names are passed through untouched (``./x``, ``/x``, ``../x`` are all written as given). A name
    may be ``bytes`` to write bytes that are not UTF-8.
    """

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(  # noqa: SIM115 (closed by bytes())
            fileobj=self._buf,
            mode="w",
            format=fmt,
            encoding="utf-8",
            errors="surrogateescape",
        )
        self._closed = False

    @staticmethod
    def _name(name: str | bytes) -> str:
        return os.fsdecode(name) if isinstance(name, bytes) else name

    def _info(
        self, name: str | bytes, type_: bytes, mode: int, uid: int, gid: int, mtime: int
    ) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self._name(name))
        ti.type = type_
        ti.mode = mode
        ti.uid = uid
        ti.gid = gid
        ti.uname = ""
        ti.gname = ""
        ti.mtime = mtime
        return ti

    def add(self, ti: tarfile.TarInfo, data: bytes | None = None) -> TarBuilder:
        if data is not None:
            ti.size = len(data)
            self._tar.addfile(ti, io.BytesIO(data))
        else:
            self._tar.addfile(ti)
        return self

    def dir(
        self,
        name: str | bytes,
        mode: int = 0o755,
        uid: int = 0,
        gid: int = 0,
        mtime: int = FIXED_MTIME,
        xattrs: dict[str, str] | None = None,
    ) -> TarBuilder:
        ti = self._info(name, tarfile.DIRTYPE, mode, uid, gid, mtime)
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        return self.add(ti)

    def file(
        self,
        name: str | bytes,
        data: bytes = b"",
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: int = FIXED_MTIME,
        xattrs: dict[str, str] | None = None,
    ) -> TarBuilder:
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        return self.add(ti, data)

    def symlink(
        self, name: str | bytes, target: str | bytes, uid: int = 0, gid: int = 0
    ) -> TarBuilder:
        ti = self._info(name, tarfile.SYMTYPE, 0o777, uid, gid, FIXED_MTIME)
        ti.linkname = self._name(target)
        return self.add(ti)

    def hardlink(self, name: str | bytes, target: str | bytes) -> TarBuilder:
        ti = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0, FIXED_MTIME)
        ti.linkname = self._name(target)
        return self.add(ti)

    def chardev(self, name: str | bytes, major: int = 0, minor: int = 0, mode=0o600) -> TarBuilder:
        ti = self._info(name, tarfile.CHRTYPE, mode, 0, 0, FIXED_MTIME)
        ti.devmajor = major
        ti.devminor = minor
        return self.add(ti)

    def fifo(self, name: str | bytes, mode: int = 0o644) -> TarBuilder:
        return self.add(self._info(name, tarfile.FIFOTYPE, mode, 0, 0, FIXED_MTIME))

    def whiteout(self, path: str) -> TarBuilder:
        """An OCI whiteout for ``path`` (``dir/.wh.name``); ``dir/`` alone makes it opaque."""
        head, _, tail = path.rstrip("/").rpartition("/")
        prefix = head + "/" if head else ""
        return self.file(prefix + ".wh." + tail, b"", mode=0o644)

    def opaque(self, dirpath: str) -> TarBuilder:
        return self.file(dirpath.rstrip("/") + "/.wh..wh..opq", b"", mode=0o644)

    def bytes(self) -> bytes:
        if not self._closed:
            self._tar.close()
            self._closed = True
        return self._buf.getvalue()


def empty_tar() -> bytes:
    """A layer with no entries: just the two end-of-archive blocks."""
    return b"\0" * 1024


# --------------------------------------------------------------------------------------------
# Compression


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def zstd_bytes(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def decompressed_stream(path: Path) -> Iterator[bytes]:
    """Yield the uncompressed bytes of a layer blob (gzip, zstd or plain), sniffing its magic."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(wbits=31)
            while chunk := f.read(1 << 20):
                out = d.decompress(chunk)
                if out:
                    yield out
                # concatenated gzip members
                while d.eof and d.unused_data:
                    rest = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    out = d.decompress(rest)
                    if out:
                        yield out
            tail = d.flush()
            if tail:
                yield tail
        elif magic == b"\x28\xb5\x2f\xfd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            while chunk := reader.read(1 << 20):
                yield chunk
        else:
            while chunk := f.read(1 << 20):
                yield chunk


def uncompressed_digest(path: Path) -> str:
    h = hashlib.sha256()
    for chunk in decompressed_stream(path):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------------------------
# Layouts


@dataclass
class LayerSpec:
    """A layer to put in a layout: uncompressed tar bytes, or an existing blob to reuse."""

    tar: bytes | None = None
    compression: str = "gzip"  # gzip | zstd | none
    blob_path: Path | None = None  # reuse: hardlinked/copied as is
    descriptor: dict | None = None  # with blob_path
    diff_id: str | None = None  # with blob_path


@dataclass
class Image:
    """One image in an OCI layout, as read back."""

    layout: Path
    tag: str
    manifest_digest: str
    manifest: dict
    config: dict
    config_digest: str
    index: dict = field(repr=False)

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config["rootfs"]["diff_ids"])

    @property
    def layers(self) -> list[dict]:
        return list(self.manifest["layers"])

    def blob(self, digest: str) -> Path:
        return blob_path(self.layout, digest)


def blob_path(layout: Path, digest: str) -> Path:
    algo, hexpart = digest.split(":", 1)
    return Path(layout) / "blobs" / algo / hexpart


def write_blob(layout: Path, data: bytes) -> str:
    d = digest_of(data)
    p = blob_path(layout, d)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(p)
    return d


def _init_layout(layout: Path) -> dict:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    idx_path = layout / "index.json"
    if idx_path.exists():
        return json.loads(idx_path.read_text())
    return {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}


def default_config(diff_ids: list[str], **extra: Any) -> dict:
    cfg: dict[str, Any] = {
        "created": FIXED_TIME,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": FIXED_TIME, "created_by": "test layer"} for _ in diff_ids],
    }
    cfg.update(extra)
    return cfg


def write_image(
    layout: Path,
    layers: Iterable[LayerSpec | bytes],
    *,
    tag: str = "1",
    config: dict | None = None,
    labels: dict[str, str] | None = None,
) -> Image:
    """Write (or add to) an OCI layout one image made of ``layers``; returns what was written.

    ``config`` (optional) is used as the base of the config; its rootfs is always replaced.
    """
    layout = Path(layout)
    index = _init_layout(layout)
    descriptors = []
    diff_ids = []
    for spec in layers:
        if isinstance(spec, bytes):
            spec = LayerSpec(tar=spec)
        if spec.blob_path is not None:
            assert spec.descriptor is not None and spec.diff_id is not None
            dst = blob_path(layout, spec.descriptor["digest"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                try:
                    os.link(spec.blob_path, dst)
                except OSError:
                    shutil.copyfile(spec.blob_path, dst)
            descriptors.append(dict(spec.descriptor))
            diff_ids.append(spec.diff_id)
            continue
        assert spec.tar is not None
        if spec.compression == "gzip":
            blob, mt = gzip_bytes(spec.tar), MT_LAYER_GZIP
        elif spec.compression == "zstd":
            blob, mt = zstd_bytes(spec.tar), MT_LAYER_ZSTD
        elif spec.compression == "none":
            blob, mt = spec.tar, MT_LAYER
        else:
            raise ValueError(spec.compression)
        d = write_blob(layout, blob)
        descriptors.append({"mediaType": mt, "digest": d, "size": len(blob)})
        diff_ids.append(digest_of(spec.tar))

    if config is None:
        cfg = default_config(diff_ids)
    else:
        cfg = json.loads(json.dumps(config))
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cfg.setdefault("history", [])
        real = [h for h in cfg["history"] if not h.get("empty_layer")]
        while len(real) < len(diff_ids):
            h = {"created": FIXED_TIME, "created_by": "test layer"}
            cfg["history"].append(h)
            real.append(h)
    if labels:
        cfg.setdefault("config", {}).setdefault("Labels", {}).update(labels)
    return _write_config_and_manifest(layout, index, tag, cfg, descriptors)


def _write_config_and_manifest(
    layout: Path, index: dict, tag: str, cfg: dict, descriptors: list[dict]
) -> Image:
    cfg_bytes = canonical_json(cfg)
    cfg_digest = write_blob(layout, cfg_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": descriptors,
    }
    man_bytes = canonical_json(manifest)
    man_digest = write_blob(layout, man_bytes)
    entry = {
        "mediaType": MT_MANIFEST,
        "digest": man_digest,
        "size": len(man_bytes),
        "annotations": {REF_NAME: tag},
    }
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag
    ] + [entry]
    (layout / "index.json").write_bytes(canonical_json(index))
    return read_image(layout, tag)


def read_image(layout: Path, tag: str | None = None) -> Image:
    """Read the image tagged ``tag`` (or the only one) from an OCI layout."""
    layout = Path(layout)
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    if tag is not None:
        entries = [m for m in entries if m.get("annotations", {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        raise LookupError(f"{layout}: expected one manifest for tag {tag!r}, found {len(entries)}")
    desc = entries[0]
    manifest = json.loads(blob_path(layout, desc["digest"]).read_bytes())
    if manifest.get("mediaType") == MT_INDEX or "manifests" in manifest:
        raise LookupError(f"{layout}:{tag} is an index, not an image manifest")
    cfg_digest = manifest["config"]["digest"]
    config = json.loads(blob_path(layout, cfg_digest).read_bytes())
    real_tag = desc.get("annotations", {}).get(REF_NAME, tag or "")
    return Image(layout, real_tag, desc["digest"], manifest, config, cfg_digest, index)


def copy_layout(src: Path, dst: Path) -> None:
    """Copy a layout, hardlinking blobs (tamper with a blob only after ``detach_blob``)."""
    src, dst = Path(src), Path(dst)
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            s, d = Path(root) / name, dst / rel / name
            if "blobs" in rel.parts:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass
            shutil.copy2(s, d)


def detach_blob(layout: Path, digest: str) -> Path:
    """Replace a (possibly hardlinked) blob file by a private copy and return its path."""
    p = blob_path(layout, digest)
    tmp = p.with_name(p.name + ".detach")
    shutil.copyfile(p, tmp)
    tmp.rename(p)
    return p


def replace_config(image: Image, new_config: dict, tag: str | None = None) -> Image:
    """Give ``image`` a new config blob (manifest and index fixed up so only the config differs)."""
    index = json.loads((image.layout / "index.json").read_text())
    return _write_config_and_manifest(
        image.layout, index, tag or image.tag, new_config, [dict(d) for d in image.layers]
    )


def layout_snapshot(layout: Path) -> dict[str, bytes | int]:
    """Every file of a layout: relative path → bytes (index.json, oci-layout) or size (blobs)."""
    out: dict[str, bytes | int] = {}
    layout = Path(layout)
    for root, _dirs, files in os.walk(layout):
        for name in files:
            p = Path(root) / name
            rel = str(p.relative_to(layout))
            out[rel] = p.stat().st_size if "blobs" in p.parts else p.read_bytes()
    return out
