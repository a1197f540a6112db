"""Write and read small OCI image layouts for the unit tests, with the standard library only.

The layouts are written here, not by ``bootc_embed``, so the tests do not trust the code they
check: blobs, config (with correct ``diff_ids``), manifest and ``index.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import zstandard

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "2024-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tar_of(
    members: Iterable[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    """A tar archive of ``(TarInfo, content)`` pairs, as Python's tarfile writes it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.mtime = fields.pop("mtime", 1700000000)
    for k, v in fields.items():
        setattr(ti, k, v)
    return ti


def write_layout(
    root: Path,
    layers: Sequence[bytes],
    *,
    tag: str = "1",
    compression: str = "gzip",
    architecture: str = "amd64",
) -> str:
    """An OCI layout at ``root`` with one image of ``layers`` (uncompressed tars); returns
    its ``oci:`` reference."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    descriptors = []
    for tar in layers:
        if compression == "gzip":
            blob, mt = gzip.compress(tar, mtime=0), MT_LAYER + "+gzip"
        else:
            blob, mt = tar, MT_LAYER
        descriptors.append({"mediaType": mt, "digest": put(blob), "size": len(blob)})
    config = _json(
        {
            "architecture": architecture,
            "os": "linux",
            "created": CREATED,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]},
            "history": [{"created": CREATED, "created_by": "test"} for _ in layers],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": put(config), "size": len(config)},
            "layers": descriptors,
        }
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": put(manifest),
                "size": len(manifest),
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (root / "index.json").write_bytes(_json(index))
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    return f"oci:{root}:{tag}"


class Layout:
    """One image of an OCI layout, read back without bootc_embed."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = root
        self.index = json.loads((root / "index.json").read_bytes())
        found = [
            d for d in self.index["manifests"] if d.get("annotations", {}).get(REF_NAME) == tag
        ]
        assert len(found) == 1, f"tag {tag!r} in {root}: {self.index}"
        self.descriptor: dict[str, Any] = found[0]
        self.manifest_raw = self.blob(self.descriptor["digest"])
        self.manifest: dict[str, Any] = json.loads(self.manifest_raw)
        self.config_raw = self.blob(self.manifest["config"]["digest"])
        self.config: dict[str, Any] = json.loads(self.config_raw)

    def blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algo / hexpart

    def blob(self, digest: str) -> bytes:
        data = self.blob_path(digest).read_bytes()
        assert sha256(data) == digest
        return data

    def layer_tar(self, desc: dict[str, Any]) -> bytes:
        data = self.blob(desc["digest"])
        mt = desc["mediaType"]
        if mt.endswith("+gzip"):
            return zlib.decompress(data, wbits=31)
        if mt.endswith("+zstd"):
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        assert mt == MT_LAYER, mt
        return data

    def members(self, desc: dict[str, Any]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        """Every entry of a layer with its content (files only)."""
        out = []
        with tarfile.open(fileobj=io.BytesIO(self.layer_tar(desc)), mode="r:") as tf:
            for m in tf:
                f = tf.extractfile(m) if m.isreg() else None
                out.append((m, f.read() if f else None))
        return out


def blob_files(root: Path) -> dict[str, bytes]:
    """Every blob of a layout by digest."""
    return {
        "sha256:" + p.name: p.read_bytes() for p in sorted((root / "blobs" / "sha256").iterdir())
    }
